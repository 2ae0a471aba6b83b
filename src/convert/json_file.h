// Reading a whole JSON file (config.json, tokenizer.json, safetensors indexes) for the
// converters, with errors that name the file. Private to src/convert/.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>

namespace microlm::convert_detail {

nlohmann::json read_json_file(const std::filesystem::path& p);

}  // namespace microlm::convert_detail
