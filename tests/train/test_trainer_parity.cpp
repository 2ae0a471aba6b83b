// The trainer's exported fixture model in microlm's runtime against llama.cpp: the same 24
// greedy tokens (reference written by tests/train/export_llama_cpp.py).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "microlm/model.h"

TEST(TrainerExport, GreedyTokensMatchLlamaCpp) {
    const std::string dir = MICROLM_TRAIN_FIXTURE_DIR;
    std::ifstream in(dir + "/llama_cpp_greedy.json");
    ASSERT_TRUE(in) << dir << "/llama_cpp_greedy.json missing: run the train_export fixtures";
    const auto ref = nlohmann::json::parse(in);
    const std::vector<int32_t> prompt = ref["prompt"].get<std::vector<int32_t>>();
    for (const auto& [type, greedy] : ref["models"].items()) {
        auto model = microlm::Model::load(dir + "/trained-" + type + ".gguf");
        microlm::Context ctx(*model, 128, 1);
        auto logits = ctx.eval(prompt);
        std::vector<int32_t> got;
        for (size_t i = 0; i < greedy.size(); ++i) {
            const int32_t tok = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
            got.push_back(tok);
            logits = ctx.eval(std::span<const int32_t>(&got.back(), 1));
        }
        EXPECT_EQ(got, greedy.get<std::vector<int32_t>>()) << type;
        std::printf("%s: %zu greedy tokens compared with llama.cpp\n", type.c_str(), got.size());
    }
}
