// The forward pass on random-weight models microlm writes itself: batched prefill equals
// token-by-token decoding, threads do not change results, truncate() reuses a prefix
// exactly, every weight type runs, and bad inputs are errors. (Agreement with llama.cpp is
// test_parity_model.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "logprob_reference.h"
#include "microlm/error.h"
#include "microlm/generate.h"
#include "microlm/model.h"
#include "microlm/random_model.h"
#include "microlm/sampler.h"

using namespace microlm;

namespace {

std::string random_model(DType type, bool tied = true) {
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("microlm_test_model_" + std::to_string(::getpid()) + "_" +
                               std::string(dtype_name(uint32_t(type))) + (tied ? "" : "_untied") + ".gguf"))
                                 .string();
    LlamaHparams s = *model_shape_preset("tiny");
    s.tied = tied;
    write_random_llama(path, s, type, 3);
    return path;
}

float max_diff(std::span<const float> a, std::span<const float> b) {
    float d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
    return d;
}

const std::vector<int32_t> kPrompt = {257, 300, 301, 17, 42, 99, 400, 12, 5, 6, 7, 8, 260, 261, 262, 263, 264};

}  // namespace

TEST(Model, BatchedPrefillEqualsTokenByTokenForEveryType) {
    for (DType t : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
        const std::string path = random_model(t);
        auto m = Model::load(path);
        EXPECT_EQ(m->config().n_vocab, 512);
        EXPECT_TRUE(m->tied_output);
        Context batched(*m, 64, 1, 8), single(*m, 64, 1, 1);
        std::vector<float> a(batched.eval(kPrompt, true).size());
        const auto all = batched.logits();
        ASSERT_EQ(all.size(), kPrompt.size() * 512);
        for (size_t i = 0; i < kPrompt.size(); ++i) {
            auto l = single.eval(std::span<const int32_t>(&kPrompt[i], 1));
            const float d = max_diff(l, all.subspan(i * 512, 512));
            EXPECT_LE(d, 1e-4f) << dtype_name(uint32_t(t)) << " position " << i;
        }
        std::filesystem::remove(path);
    }
}

TEST(Model, ThreadsGiveTheSameLogits) {
    const std::string path = random_model(DType::Q8_0, false);
    auto m = Model::load(path);
    EXPECT_FALSE(m->tied_output);
    Context one(*m, 64, 1), three(*m, 64, 3);
    auto a = one.eval(kPrompt);
    std::vector<float> va(a.begin(), a.end());
    EXPECT_EQ(max_diff(va, three.eval(kPrompt)), 0.0f);
    std::filesystem::remove(path);
}

TEST(Model, TruncateReusesAPrefixExactly) {
    const std::string path = random_model(DType::Q4_1);
    auto m = Model::load(path);
    Context ctx(*m, 64, 1), fresh(*m, 64, 1);
    ctx.eval(std::span<const int32_t>(kPrompt.data(), 10));
    ctx.eval(std::vector<int32_t>{1, 2, 3});
    ctx.truncate(10);
    EXPECT_EQ(ctx.n_past(), 10);
    auto a = ctx.eval(std::span<const int32_t>(kPrompt.data() + 10, kPrompt.size() - 10));
    std::vector<float> va(a.begin(), a.end());
    EXPECT_EQ(max_diff(va, fresh.eval(kPrompt)), 0.0f);
    EXPECT_THROW(ctx.truncate(100), Error);
    std::filesystem::remove(path);
}

TEST(Model, BadTokensAndFullContextAreErrors) {
    const std::string path = random_model(DType::Q8_0);
    auto m = Model::load(path);
    Context ctx(*m, 8, 1);
    EXPECT_THROW(ctx.eval(std::vector<int32_t>{512}), Error);
    EXPECT_THROW(ctx.eval(std::vector<int32_t>{-1}), Error);
    EXPECT_THROW(ctx.eval(std::vector<int32_t>{}), Error);
    EXPECT_EQ(ctx.n_past(), 0);
    EXPECT_THROW(ctx.eval(std::vector<int32_t>(9, 1)), Error);
    ctx.eval(std::vector<int32_t>(8, 1));
    EXPECT_THROW(ctx.eval(std::vector<int32_t>{1}), Error);
    std::filesystem::remove(path);
}

// Hostile Gemma 3 files: a missing head size, and a Llama model relabelled gemma3 (so its
// QK-norm and post-norm tensors are missing), give errors that name what is wrong.
TEST(Model, HostileGemma3FilesAreNamed) {
    const std::string path = (std::filesystem::temp_directory_path() / "microlm_test_gemma3.gguf").string();
    const std::string tiny = (std::filesystem::temp_directory_path() / "microlm_test_gemma3_src.gguf").string();
    write_random_llama(tiny, *model_shape_preset("tiny"), DType::Q8_0, 3);
    const auto src = GgufFile::open(tiny);
    const auto relabelled = [&](bool with_key_length) {
        GgufWriter w;
        for (const auto& [key, value] : src->metadata()) {
            std::string k = key;
            if (k.rfind("llama.", 0) == 0) k = "gemma3." + k.substr(6);
            w.set(k, value);
        }
        w.set("general.architecture", GgufValue::str("gemma3"));
        if (with_key_length) w.set("gemma3.attention.key_length", GgufValue::u32(16));
        for (const GgufTensor& t : src->tensors()) w.add_tensor(t.name, static_cast<DType>(t.type), t.dims, t.data, t.bytes);
        w.write(path);
    };
    const auto error_of = [&] {
        try {
            Model::load(path);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    relabelled(false);
    std::string e = error_of();
    EXPECT_NE(e.find("gemma3.attention.key_length"), std::string::npos) << e;
    relabelled(true);
    e = error_of();
    EXPECT_NE(e.find("attn_q_norm.weight"), std::string::npos) << e;
    std::filesystem::remove(path);
    std::filesystem::remove(tiny);
}

TEST(Model, NonLlamaArchitectureAndMissingTensorsAreNamed) {
    GgufWriter w;
    w.set("general.architecture", GgufValue::str("mamba"));
    const std::string path = (std::filesystem::temp_directory_path() / "microlm_test_mamba.gguf").string();
    w.write(path);
    try {
        Model::load(path);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("'mamba', which this build cannot run (supported: llama, gemma3)"), std::string::npos);
    }
    w.set("general.architecture", GgufValue::str("llama"));
    w.set("llama.embedding_length", GgufValue::u32(64));
    w.set("llama.block_count", GgufValue::u32(1));
    w.set("llama.attention.head_count", GgufValue::u32(4));
    w.set("llama.feed_forward_length", GgufValue::u32(128));
    w.write(path);
    try {
        Model::load(path);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("token_embd.weight"), std::string::npos) << e.what();
    }
    std::filesystem::remove(path);
}

// Issue 13 item 15: a rope base or an epsilon of infinity (or NaN) was accepted and made every
// logit NaN; now the file is refused, naming the key.
TEST(Model, NonFiniteRopeBaseOrEpsilonIsRefused) {
    for (const char* key : {"llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon"})
        for (const float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
            GgufWriter w;
            w.set("general.architecture", GgufValue::str("llama"));
            w.set("llama.embedding_length", GgufValue::u32(64));
            w.set("llama.block_count", GgufValue::u32(1));
            w.set("llama.attention.head_count", GgufValue::u32(4));
            w.set("llama.feed_forward_length", GgufValue::u32(128));
            w.set(key, GgufValue::f32(bad));
            const std::string path = (std::filesystem::temp_directory_path() / "microlm_test_inf.gguf").string();
            w.write(path);
            try {
                Model::load(path);
                FAIL() << key << " = " << bad << " was accepted";
            } catch (const Error& e) {
                EXPECT_NE(std::string(e.what()).find("finite"), std::string::npos) << e.what();
            }
            std::filesystem::remove(path);
        }
}

TEST(Model, ReusePrefixKeepsTheCommonPrefixAndGivesTheSameLogits) {
    const std::string path = random_model(DType::Q8_0);
    auto m = Model::load(path);
    Context ctx(*m, 64, 1), fresh(*m, 64, 1);
    // Turn 1: system prompt + question; turn 2 shares the system prompt only.
    std::vector<int32_t> turn1(kPrompt.begin(), kPrompt.begin() + 12);
    turn1.insert(turn1.end(), {40, 41, 42});
    ctx.eval(turn1);
    std::vector<int32_t> turn2(kPrompt.begin(), kPrompt.begin() + 12);
    turn2.insert(turn2.end(), {50, 51});
    EXPECT_EQ(ctx.reuse_prefix(turn2), 12);
    EXPECT_EQ(ctx.n_past(), 12);
    auto a = ctx.eval(std::span<const int32_t>(turn2).subspan(12));
    std::vector<float> va(a.begin(), a.end());
    EXPECT_EQ(max_diff(va, fresh.eval(turn2)), 0.0f);
    EXPECT_TRUE(std::equal(ctx.tokens().begin(), ctx.tokens().end(), turn2.begin(), turn2.end()));
    // A prompt identical to the cache keeps all but its last token, so eval yields logits.
    EXPECT_EQ(ctx.reuse_prefix(turn2), static_cast<int64_t>(turn2.size()) - 1);
    std::filesystem::remove(path);
}

TEST(Model, ScoreTokensEqualsLogSoftmaxOfTokenByTokenDecoding) {
    const std::string path = random_model(DType::Q8_0);
    auto m = Model::load(path);
    // Chunks of 5 rows: the chunk edges must not lose a position.
    Context scorer(*m, 64, 1), single(*m, 64, 1);
    scorer.eval(std::vector<int32_t>{9, 9, 9});  // stale state, which scoring must not reuse
    const std::vector<double> lp = score_tokens(scorer, kPrompt, 5);
    ASSERT_EQ(lp.size(), kPrompt.size());
    EXPECT_TRUE(std::isnan(lp[0]));
    for (size_t i = 0; i + 1 < kPrompt.size(); ++i) {
        const auto l = single.eval(std::span<const int32_t>(&kPrompt[i], 1));
        EXPECT_NEAR(lp[i + 1], reference_logprob(l, kPrompt[i + 1]), 1e-4) << "position " << i + 1;
    }
    // The context holds the scored tokens: a request that continues them reuses the KV state.
    EXPECT_EQ(scorer.n_past(), static_cast<int64_t>(kPrompt.size()));
    EXPECT_EQ(scorer.reuse_prefix(kPrompt), static_cast<int64_t>(kPrompt.size()) - 1);
    std::filesystem::remove(path);
}
