// Hedge calibration: prompts come only from the validation side of the training split and
// never from the eval sets; the chosen thresholds respect the rate bounds and reproduce the
// rate they claim when the Opener reads them back from the rewritten GGUF; a model without the
// keys keeps the SmolLM2 defaults and an explicit config wins over both.
#include <gtest/gtest.h>
#include <unistd.h>
#ifdef MICROLM_HAVE_ZSTD
#include <zstd.h>
#endif

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "microlm/data.h"
#include "microlm/error.h"
#include "microlm/eval.h"
#include "microlm/opener.h"
#include "microlm/random_model.h"

namespace fs = std::filesystem;
using namespace microlm;

namespace {

fs::path scratch() {
    fs::path p = fs::temp_directory_path() / ("microlm_test_hedge_" + std::to_string(::getpid()));
    fs::remove_all(p);
    fs::create_directories(p / "chat");
    fs::create_directories(p / "eval");
    return p;
}

#ifdef MICROLM_HAVE_ZSTD
void write_zstd(const fs::path& path, const std::string& text) {
    std::string out(ZSTD_compressBound(text.size()), '\0');
    out.resize(ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 3));
    std::ofstream(path, std::ios::binary) << out;
}
#endif

}  // namespace

TEST(HedgeCalibration, ValidationPromptsAreHeldBackAndNeverEvalQuestions) {
#ifndef MICROLM_HAVE_ZSTD
    GTEST_SKIP() << "this build reads no .zst files";
#else
    const fs::path d = scratch();
    std::ofstream(d / "eval/vicuna_questions.jsonl") << R"({"question_id": 1, "turns": ["What is an eval question?"]})" << "\n";
    std::string rows;
    for (int i = 0; i < 400; ++i) {
        rows += nlohmann::json({{"prompt", "question " + std::to_string(i)}, {"reply", "answer " + std::to_string(i)}}).dump() + "\n";
    }
    rows += nlohmann::json({{"prompt", "what is an EVAL question?"}, {"reply", "SECRET"}}).dump() + "\n";
    write_zstd(d / "chat/gsm8k.jsonl.zst", rows);

    const double val = 0.1;
    const auto got = eval::validation_prompts(d.string(), 1000, val);
    ASSERT_FALSE(got.empty());
    for (const auto& p : got) {
        EXPECT_NE(p.reply, "SECRET");
        // The same split rule as `microlm data`: these groups went to its val shards.
        const int line = std::stoi(p.prompt.substr(9)) + 1;
        EXPECT_LT(data::unit_hash("gsm8k:gsm8k:" + std::to_string(line)), val) << p.prompt;
    }
    std::printf("%zu of 400 prompts are on the validation side at val_fraction %.2f\n", got.size(), val);
    EXPECT_GT(got.size(), 20u);
    EXPECT_LT(got.size(), 80u);
    EXPECT_EQ(eval::validation_prompts(d.string(), 5, val).size(), 5u);
    fs::remove_all(d);
#endif
}

TEST(HedgeCalibration, ThresholdsRespectTheRateAndTheOpenerReadsThemBack) {
    const fs::path d = scratch();
    const std::string model = (d / "m.gguf").string(), calibrated = (d / "m-cal.gguf").string();
    write_random_llama(model, *model_shape_preset("tiny"), DType::Q8_0, 5);
    std::vector<eval::ReplyPrompt> prompts;
    for (int i = 0; i < 60; ++i) prompts.push_back({"tell me about number " + std::to_string(i), "Sure, it is " + std::to_string(i)});

    const eval::HedgeCalibration c = eval::calibrate_hedge(model, prompts, 0.2, 0.4, 1);
    std::printf("tiny random model: mean log p < %.3f or max entropy > %.3f hedges %.0f%% (bounds 20-40%%); "
                "score %.3f vs never %.3f\n",
                static_cast<double>(c.min_mean_logprob), static_cast<double>(c.max_entropy), 100 * c.hedge_rate,
                c.score_shown, c.score_never);
    EXPECT_EQ(c.prompts, 60u);
    EXPECT_GE(c.hedge_rate, 0.2 - 1e-9);
    EXPECT_LE(c.hedge_rate, 0.4 + 1e-9);
    EXPECT_THROW(eval::calibrate_hedge(model, prompts, 0.5, 0.4, 1), Error);

    eval::write_hedge_thresholds(model, calibrated, c);
    auto m = Model::load(calibrated);
    Tokenizer tok(vocab_from_gguf(m->file()));
    Context ctx(*m, 256, 1);
    Opener op(ctx, tok);
    EXPECT_EQ(op.hedge_min_mean_logprob(), c.min_mean_logprob);
    EXPECT_EQ(op.hedge_max_entropy(), c.max_entropy);
    size_t hedged = 0;
    for (const auto& p : prompts) hedged += op.run({{"user", p.prompt}}).hedged ? 1 : 0;
    EXPECT_NEAR(static_cast<double>(hedged) / 60.0, c.hedge_rate, 1e-9);

    OpenerConfig explicit_cfg;
    explicit_cfg.hedge_max_entropy = 99.0f;
    EXPECT_EQ(Opener(ctx, tok, explicit_cfg).hedge_max_entropy(), 99.0f);
    EXPECT_EQ(Opener(ctx, tok, explicit_cfg).hedge_min_mean_logprob(), c.min_mean_logprob);

    auto plain = Model::load(model);
    Context pctx(*plain, 256, 1);
    Opener defaults(pctx, tok);
    EXPECT_EQ(defaults.hedge_min_mean_logprob(), kDefaultHedgeMinMeanLogprob);
    EXPECT_EQ(defaults.hedge_max_entropy(), kDefaultHedgeMaxEntropy);
    fs::remove_all(d);
}
