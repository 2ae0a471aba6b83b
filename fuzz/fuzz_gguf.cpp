// libFuzzer target for the GGUF reader, the Llama loader and a tokenizer built from the file's
// vocabulary: any byte string must open cleanly or throw microlm::Error. Built by
// fuzz/CMakeLists.txt (MICROLM_FUZZ, clang, ASan, UBSan); fuzz/run.sh seeds and runs it.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/model.h"
#include "microlm/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // The reader takes a path: each input goes through one file in $TMPDIR (fuzz/run.sh's own).
    static const std::string path =
        (std::filesystem::temp_directory_path() / ("microlm_fuzz_" + std::to_string(::getpid()) + ".gguf"))
            .string();
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
            for (int32_t id = 0; id < tok.n_vocab(); ++id) (void)tok.token_to_piece(id, true);
        } catch (const microlm::Error&) {
        }
        auto model = microlm::Model::load(path);
        (void)model;
    } catch (const microlm::Error&) {
    }
    return 0;
}
