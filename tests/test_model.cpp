// The forward pass on random-weight models microlm writes itself: batched prefill equals
// token-by-token decoding, several sequences in one pass equal each one alone (and batched
// generation equals generate()), threads do not change results, truncate() reuses a prefix
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
#include "microlm/tokenizer.h"

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

TEST(Model, SequencesInOnePassEqualEachSequenceAlone) {
    for (DType t : {DType::F32, DType::Q8_0, DType::Q4_1}) {
        const std::string path = random_model(t);
        auto m = Model::load(path);
        Context multi(*m, 64, 2, 16, nullptr, 3);
        std::vector<std::unique_ptr<Context>> alone;
        for (int s = 0; s < 3; ++s) alone.push_back(std::make_unique<Context>(*m, 64, 1));
        // Prompts of different lengths, interleaved in one pass; logits for each one's last row.
        const std::vector<std::vector<int32_t>> prompts = {
            {kPrompt.begin(), kPrompt.begin() + 5}, {7, 8, 9}, {kPrompt.begin() + 4, kPrompt.end() - 6}};
        std::vector<Context::SeqToken> rows;
        for (size_t i = 0; i < 11; ++i)
            for (int32_t s = 0; s < 3; ++s)
                if (i < prompts[s].size()) rows.push_back({prompts[s][i], s, i + 1 == prompts[s].size()});
        ASSERT_LE(rows.size(), 16u);
        std::vector<float> got;
        {
            const auto l = multi.eval_seqs(rows);
            got.assign(l.begin(), l.end());
        }
        ASSERT_EQ(got.size(), 3u * 512);
        // Rows asking for logits came in the order seq 1 (3 tokens), seq 0 (5), seq 2 (7).
        const int order[3] = {1, 0, 2};
        for (int j = 0; j < 3; ++j) {
            const int s = order[j];
            const auto l = alone[s]->eval(prompts[s]);
            EXPECT_LE(max_diff(l, std::span<const float>(got).subspan(j * 512, 512)), 1e-4f)
                << dtype_name(uint32_t(t)) << " sequence " << s;
            EXPECT_EQ(multi.n_past(s), static_cast<int64_t>(prompts[s].size()));
        }
        // Decode steps: one row per sequence, every pass.
        for (int step = 0; step < 4; ++step) {
            std::vector<Context::SeqToken> dec;
            for (int32_t s = 0; s < 3; ++s) dec.push_back({100 + step * 3 + s, s, true});
            const auto l = multi.eval_seqs(dec);
            std::vector<float> lv(l.begin(), l.end());
            for (int32_t s = 0; s < 3; ++s) {
                const int32_t id = dec[s].token;
                const auto a = alone[s]->eval(std::span<const int32_t>(&id, 1));
                EXPECT_LE(max_diff(a, std::span<const float>(lv).subspan(s * 512, 512)), 1e-4f)
                    << dtype_name(uint32_t(t)) << " step " << step << " sequence " << s;
            }
        }
        // A cleared sequence starts again from position 0, beside the others.
        multi.clear_seq(1);
        EXPECT_EQ(multi.n_past(1), 0);
        Context fresh(*m, 64, 1);
        const std::vector<Context::SeqToken> again = {{5, 1, false}, {6, 1, true}, {1, 0, true}};
        const auto l = multi.eval_seqs(again);
        EXPECT_LE(max_diff(fresh.eval(std::vector<int32_t>{5, 6}), l.subspan(0, 512)), 1e-4f) << dtype_name(uint32_t(t));
        std::filesystem::remove(path);
    }
}

TEST(Model, BadSequenceRowsAreErrors) {
    const std::string path = random_model(DType::Q8_0);
    auto m = Model::load(path);
    EXPECT_THROW(Context(*m, 8, 1, 4, nullptr, 0), Error);
    Context ctx(*m, 8, 1, 4, nullptr, 2);
    using Row = Context::SeqToken;
    EXPECT_THROW(ctx.eval_seqs(std::vector<Row>{}), Error);
    EXPECT_THROW(ctx.eval_seqs(std::vector<Row>{{1, 2, true}}), Error);   // no sequence 2
    EXPECT_THROW(ctx.eval_seqs(std::vector<Row>{{512, 0, true}}), Error);  // outside the vocabulary
    EXPECT_THROW(ctx.eval_seqs(std::vector<Row>(5, Row{1, 0, true})), Error);  // 5 rows > batch of 4
    EXPECT_THROW(ctx.n_past(-1), Error);
    EXPECT_EQ(ctx.n_past(0), 0);
    for (int i = 0; i < 2; ++i) ctx.eval_seqs(std::vector<Row>(4, Row{1, 1, false}));
    EXPECT_EQ(ctx.n_past(1), 8);
    EXPECT_THROW(ctx.eval_seqs(std::vector<Row>{{1, 0, false}, {1, 1, true}}), Error);  // sequence 1 is full
    EXPECT_EQ(ctx.n_past(0), 0);  // a refused pass changes nothing
    std::filesystem::remove(path);
}

TEST(Model, GenerateBatchEqualsGenerateForEachPrompt) {
    const std::string path = random_model(DType::Q8_0);
    auto m = Model::load(path);
    const Tokenizer tok(vocab_from_gguf(m->file()));
    std::vector<std::vector<int32_t>> prompts;
    for (size_t i = 0; i < 7; ++i) prompts.emplace_back(kPrompt.begin() + static_cast<long>(i), kPrompt.end() - static_cast<long>(i % 3));
    // The scalar table: its products do not depend on a pass's row count (AMX's 16-row groups
    // round differently in the last bits, which a near-tie could show as another token).
    const Kernels* scalar = &kernels_scalar();
    const auto one_by_one = [&](const SamplerParams& sp, size_t i, int64_t n) {
        Context ctx(*m, 64, 1, 64, scalar);
        SamplerParams p = sp;
        p.seed = sp.seed + i;
        Sampler sampler(p);
        std::vector<int32_t> out;
        generate(ctx, sampler, tok, prompts[i], n, [&](int32_t id) {
            out.push_back(id);
            return true;
        });
        return out;
    };
    SamplerParams greedy;
    greedy.temperature = 0.0f;
    SamplerParams sampled;  // the defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05
    for (const SamplerParams& sp : {greedy, sampled}) {
        // Three slots for seven prompts (slots are reused) and a batch of 5 rows (prefill is
        // split across passes and shares them with decode rows), then one slot per prompt.
        for (const auto& [seqs, batch] : {std::pair{3, 5}, std::pair{7, 64}}) {
            Context ctx(*m, 64, 2, batch, scalar, seqs);
            BatchStats st;
            std::vector<size_t> finished;
            const auto got = generate_batch(ctx, tok, prompts, 12, sp, &st,
                                            [&](size_t i, const BatchReply&) { finished.push_back(i); });
            ASSERT_EQ(got.size(), prompts.size());
            EXPECT_EQ(finished.size(), prompts.size());
            int64_t gen = 0, prompt_tokens = 0;
            for (size_t i = 0; i < prompts.size(); ++i) {
                EXPECT_EQ(got[i].tokens, one_by_one(sp, i, 12)) << "prompt " << i << " seqs " << seqs << " temperature "
                                                                << sp.temperature;
                // Ended by the model exactly when it stopped short of the 12-token budget.
                EXPECT_EQ(got[i].ended, got[i].tokens.size() < 12) << "prompt " << i;
                gen += static_cast<int64_t>(got[i].tokens.size());
                prompt_tokens += static_cast<int64_t>(prompts[i].size());
            }
            EXPECT_EQ(st.gen_tokens, gen);
            EXPECT_GT(gen, static_cast<int64_t>(prompts.size()) * 6);  // the comparison is not of empty outputs
            EXPECT_EQ(st.prompt_tokens, prompt_tokens);
            EXPECT_GT(st.passes, 0);
        }
    }
    // A prompt that leaves no room is named; budgets are cut to what a sequence holds, and a reply
    // cut there did not end, though it is shorter than max_tokens.
    Context small(*m, 16, 1, 8, nullptr, 2);
    const std::vector<std::vector<int32_t>> short_prompts = {{1, 2}, {3}};
    const auto cut = generate_batch(small, tok, short_prompts, 40, greedy);
    for (size_t i = 0; i < cut.size(); ++i) {
        const size_t budget = 16 - short_prompts[i].size();
        EXPECT_LE(cut[i].tokens.size(), budget) << "prompt " << i;
        EXPECT_EQ(cut[i].ended, cut[i].tokens.size() < budget) << "prompt " << i;
    }
    const std::vector<std::vector<int32_t>> too_long = {{1, 2}, kPrompt};
    try {
        generate_batch(small, tok, too_long, 4, greedy);
        ADD_FAILURE() << "a 17-token prompt fit a 16-position sequence";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("prompt 1"), std::string::npos) << e.what();
    }
    const std::vector<std::vector<int32_t>> near_full = {std::vector<int32_t>(kPrompt.begin(), kPrompt.begin() + 14)};
    const BatchReply last = generate_batch(small, tok, near_full, 10, greedy)[0];
    EXPECT_LE(last.tokens.size(), 2u);
    EXPECT_EQ(last.ended, last.tokens.size() < 2);
    std::filesystem::remove(path);
}
