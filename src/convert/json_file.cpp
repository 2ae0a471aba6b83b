// read_json_file: the converters' one JSON reader.
#include "json_file.h"

#include <fstream>
#include <sstream>

#include "microlm/error.h"

namespace microlm::convert_detail {

nlohmann::json read_json_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw Error(p.string() + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    try {
        return nlohmann::json::parse(ss.str());
    } catch (const nlohmann::json::exception& e) {
        throw Error(p.string() + ": not valid JSON: " + e.what());
    }
}

}  // namespace microlm::convert_detail
