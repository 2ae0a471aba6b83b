// `microlm info FILE`: the metadata and the tensor table of a GGUF file, after validation.
#include <cstdio>
#include <string>

#include "commands.h"
#include "microlm/gguf.h"

namespace microlm::cli {

void register_info(CLI::App& app) {
    auto* cmd = app.add_subcommand("info", "Print the metadata and tensor table of a GGUF file");
    auto path = std::make_shared<std::string>();
    auto full = std::make_shared<bool>(false);
    cmd->add_option("file", *path, "GGUF file")->required();
    cmd->add_flag("--full", *full, "Print every element of arrays (tokens, merges, ...)");
    cmd->callback([path, full] {
        auto f = GgufFile::open(*path);
        std::printf("%s: GGUF v%u, %zu bytes, alignment %llu\n", path->c_str(), f->version(), f->file_size(),
                    static_cast<unsigned long long>(f->alignment()));
        std::printf("\nmetadata (%zu keys)\n", f->metadata().size());
        for (const auto& [k, v] : f->metadata()) {
            size_t items = *full && v.as_array() ? v.as_array()->items.size() : 8;
            std::printf("  %-42s %-7s %s\n", k.c_str(), std::string(gguf_type_name(v.type)).c_str(),
                        v.to_string(items).c_str());
        }
        std::printf("\ntensors (%zu)\n", f->tensors().size());
        std::printf("  %-32s %-5s %-22s %12s %12s\n", "name", "type", "shape", "bytes", "offset");
        uint64_t total = 0, params = 0;
        for (const auto& t : f->tensors()) {
            std::string shape;
            for (size_t i = 0; i < t.dims.size(); ++i) shape += (i ? " x " : "") + std::to_string(t.dims[i]);
            std::printf("  %-32s %-5s %-22s %12zu %12llu\n", t.name.c_str(), std::string(dtype_name(t.type)).c_str(),
                        shape.c_str(), t.bytes, static_cast<unsigned long long>(t.offset));
            total += t.bytes;
            params += static_cast<uint64_t>(t.elements());
        }
        std::printf("\n%zu tensors, %llu parameters, %.2f MiB of tensor data\n", f->tensors().size(),
                    static_cast<unsigned long long>(params), static_cast<double>(total) / (1024.0 * 1024.0));
    });
}

}  // namespace microlm::cli
