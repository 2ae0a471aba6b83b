// libFuzzer target for the GGUF reader and the Llama loader: any byte string must open
// cleanly or throw microlm::Error. Build and run with fuzz/run.sh (clang, ASan, UBSan).
#include <unistd.h>

#include <cstdio>
#include <string>

#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/model.h"
#include "microlm/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = "/tmp/microlm_fuzz_" + std::to_string(::getpid()) + ".gguf";
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return 0;
    std::fwrite(data, 1, size, f);
    std::fclose(f);
    try {
        auto file = microlm::GgufFile::open(path);
        for (const auto& [k, v] : file->metadata()) (void)v.to_string();
        try {
            microlm::Tokenizer tok(microlm::vocab_from_gguf(*file));
            (void)tok.encode("Hello <|im_start|> wörld 123", true, true);
        } catch (const microlm::Error&) {
        }
        auto model = microlm::Model::load(path);
        (void)model;
    } catch (const microlm::Error&) {
    }
    return 0;
}
