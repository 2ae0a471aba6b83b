// Parity with llama.cpp on real and random models: last-token logits within a stated
// tolerance, identical greedy tokens, identical chat formatting, and `microlm run` printing
// llama.cpp's greedy answer. References come from tests/oracle/model_cases.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "microlm/chat.h"
#include "microlm/dtype.h"
#include "microlm/generate.h"
#include "microlm/model.h"
#include "microlm/tokenizer.h"

using namespace microlm;

namespace {

// SmolLM2 is Q4_1 with a Q8_0 embedding. microlm reproduces llama.cpp's arithmetic order
// (activation quantization, dot products, 16-lane attention sums, fused RoPE), and many prompts
// give bit-identical logits. It does not copy llama.cpp's vectorised expf approximation in
// SiLU; the last-bit differences that leaves grow over 30 layers of a trained model to
// tenths of a logit on some prompts (max |logit| is ~30).
constexpr float kSmolLogitMaxAbsDiff = 1.0f;
// K-quant mixes that llama.cpp wrote: the K-quant, Q5_0 and Q5_1 dots now sum in llama.cpp's
// x86 order (kernels/k_sum.h, kernels_scalar.cpp), and short prompts match to 1e-6 (Gemma's
// 6-token one); longer prompts still part by 0.8-1.4 (2026-12-06), as SmolLM2 Q4_1 does by
// 0.7: a difference that comes with batched prompts, not yet located (llama.cpp multiplies
// batches with other kernels, e.g. llamafile's tinyBLAS for Q5_0/Q8_0/F16, not mirrored here).
constexpr float kKQuantLogitMaxAbsDiff = 1.5f;
// Gemma-3-270M Q4_K_M: its residual stream is scaled by sqrt(640) and its logits reach ~30.
// With the K-quant dots in llama.cpp's order (2026-12-06): 0.0000 on the 6-token prompt,
// 0.84-1.25 on the 9-31-token ones (the batched-prompt difference above), the scalar and AVX2
// tables identical; greedy continuations identical up to near-ties.
constexpr float kGemmaLogitMaxAbsDiff = 2.0f;
// Random tiny models: the same arithmetic on far smaller sums.
// K-quant files that `microlm quantize` wrote are held to the same bound and identical greedy
// tokens: the K-quant dots sum in llama.cpp's x86 order (kernels/k_sum.h). Before that (until
// 2026-12-06) they differed by 0.03-0.045, and greedy decoding parted within 11 tokens on one.
constexpr float kRandomLogitMaxAbsDiff = 0.01f;
constexpr int kGreedyTokens = 64;
// Greedy decoding may part only where llama.cpp's two best tokens are closer than the logit
// tolerance: there the difference between the engines can reorder them.
constexpr float kNearTieMargin = kSmolLogitMaxAbsDiff;
// A floor that a wrong forward pass (or tokenizer) could not reach; the real check is that
// every divergence is at a near-tie.
constexpr int kMinIdenticalPrompts = 3;

nlohmann::json load_ref() {
    std::ifstream f(std::string(MICROLM_ORACLE_DIR) + "/model.json");
    if (!f) {
        ADD_FAILURE() << "missing " << MICROLM_ORACLE_DIR << "/model.json: run the oracle first "
                      << "(ctest runs it as the fixture 'oracle_setup'; by hand: .venv/bin/python "
                      << "tests/oracle/run_oracle.py --microlm build/microlm --smollm2 " << MICROLM_SMOLLM2
                      << " --out " << MICROLM_ORACLE_DIR << ")";
        return {};
    }
    return nlohmann::json::parse(f);
}

std::vector<float> read_f32(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    std::vector<float> v(static_cast<size_t>(f.tellg()) / sizeof(float));
    f.seekg(0);
    f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
    return v;
}

float max_abs_diff(std::span<const float> a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    float m = 0.0f;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

std::vector<int32_t> greedy(const Model& model, const Tokenizer& tok, const std::vector<int32_t>& prompt, int n,
                            const Kernels* kernels = nullptr) {
    Context ctx(model, static_cast<int64_t>(prompt.size()) + n + 1, 2, 64, kernels);
    SamplerParams sp;
    sp.temperature = 0.0f;
    Sampler sampler(sp);
    std::vector<int32_t> out;
    generate(ctx, sampler, tok, prompt, n, [&](int32_t id) {
        out.push_back(id);
        return true;
    });
    return out;
}

}  // namespace

TEST(ParityModel, SmolLM2LogitsMatchLlamaCpp) {
    const auto ref = load_ref();
    ASSERT_FALSE(ref.empty());
    auto model = Model::load(MICROLM_SMOLLM2);
    for (const auto& p : ref["logit_prompts"]) {
        const auto ids = p["ids"].get<std::vector<int32_t>>();
        Context ctx(*model, 512, 2);
        auto logits = ctx.eval(ids);
        const auto expected = read_f32(std::string(MICROLM_ORACLE_DIR) + "/" + p["file"].get<std::string>());
        const float d = max_abs_diff(logits, expected);
        std::printf("logits of %-40.40s max |diff| = %.5f (tolerance %.3f)\n", p["text"].get<std::string>().c_str(), d,
                    kSmolLogitMaxAbsDiff);
        EXPECT_LE(d, kSmolLogitMaxAbsDiff) << p["text"];
        EXPECT_EQ(argmax(logits), argmax(expected)) << p["text"];
    }
}

TEST(ParityModel, SmolLM2GreedyTokensMatchLlamaCpp) {
    const auto ref = load_ref();
    ASSERT_FALSE(ref.empty());
    auto model = Model::load(MICROLM_SMOLLM2);
    Tokenizer tok(vocab_from_gguf(model->file()));
    const auto default_system = chat_template_default_system(tok.vocab().chat_template);
    int identical = 0;
    for (const auto& c : ref["chat"]) {
        const std::string user = c["user"];
        EXPECT_EQ(format_chatml({{"user", user}}, true, default_system), c["text"].get<std::string>());
        const auto ids = c["ids"].get<std::vector<int32_t>>();
        EXPECT_EQ(tok.encode(c["text"].get<std::string>(), true, true), ids) << user;
        const auto want = c["greedy"].get<std::vector<int32_t>>();
        const auto margins = c["margins"].get<std::vector<float>>();
        const auto got = greedy(*model, tok, ids, kGreedyTokens);
        size_t same = 0;
        while (same < got.size() && same < want.size() && got[same] == want[same]) ++same;
        if (got == want) {
            ++identical;
            std::printf("identical %3zu tokens  %s\n", got.size(), user.c_str());
            continue;
        }
        // A divergence is only acceptable where llama.cpp itself saw a near-tie: two
        // candidates closer than the logit noise between two correct engines.
        const float margin = same < margins.size() ? margins[same] : 0.0f;
        std::printf("diverges at token %2zu  (llama.cpp top-2 margin there %.3f, tie tolerance %.2f)  %s\n", same,
                    margin, kNearTieMargin, user.c_str());
        EXPECT_LT(margin, kNearTieMargin) << user << "\nmicrolm:   " << tok.decode(got, false)
                                          << "\nllama.cpp: " << c["reply"].get<std::string>();
    }
    std::printf("%d of %zu chat prompts: %d greedy tokens identical to llama.cpp\n", identical, ref["chat"].size(),
                kGreedyTokens);
    EXPECT_GE(identical, kMinIdenticalPrompts);
}

TEST(ParityModel, RandomModelsWrittenByMicrolmRunIdenticallyInLlamaCpp) {
    const auto ref = load_ref();
    ASSERT_FALSE(ref.empty());
    for (const auto& r : ref["random"]) {
        auto model = Model::load(std::string(MICROLM_ORACLE_DIR) + "/" + r["file"].get<std::string>());
        Tokenizer tok(vocab_from_gguf(model->file()));
        const auto prompt = r["prompt"].get<std::vector<int32_t>>();
        const auto expected = r["greedy"].get<std::vector<int32_t>>();
        const auto got = greedy(*model, tok, prompt, static_cast<int>(expected.size()));
        const std::string type = r["type"].get<std::string>();
        size_t same = 0;
        while (same < got.size() && same < expected.size() && got[same] == expected[same]) ++same;
        EXPECT_EQ(got, expected) << type;

        std::vector<int32_t> all = prompt;
        all.insert(all.end(), expected.begin(), expected.end());
        Context ctx(*model, static_cast<int64_t>(all.size()), 1);
        auto logits = ctx.eval(all);
        const float d = max_abs_diff(logits, read_f32(std::string(MICROLM_ORACLE_DIR) + "/" + r["logits_file"].get<std::string>()));
        const float tol = kRandomLogitMaxAbsDiff;
        std::printf("random %-6s max |logit diff| = %.6f (tolerance %.3f), greedy identical for %zu of %zu tokens\n",
                    type.c_str(), d, tol, same, expected.size());
        EXPECT_LE(d, tol) << type;
    }
}

// SmolLM2 requantized by llama.cpp to K-quant mixes (Q5_0, Q5_1, Q8_0 and Q2_K ... Q6_K
// tensors): the logits after a chat prompt plus llama.cpp's greedy reply within
// kKQuantLogitMaxAbsDiff, and the greedy reply identical up to a near-tie.
TEST(ParityModel, KQuantFilesFromLlamaCppRunAlike) {
    const auto ref = load_ref();
    ASSERT_FALSE(ref.empty());
    ASSERT_TRUE(ref.contains("kquant")) << "the oracle predates the K-quant cases: rerun it";
    for (const auto& r : ref["kquant"]) {
        const std::string ftype = r["ftype"].get<std::string>();
        auto model = Model::load(std::string(MICROLM_ORACLE_DIR) + "/" + r["file"].get<std::string>());
        std::map<std::string, int> types;
        for (const auto& t : model->file().tensors()) types[std::string(dtype_name(t.type))]++;
        std::string mix;
        for (const auto& [name, n] : types) mix += " " + name + " x" + std::to_string(n);
        Tokenizer tok(vocab_from_gguf(model->file()));
        const auto prompt = r["prompt"].get<std::vector<int32_t>>();
        const auto expected = r["greedy"].get<std::vector<int32_t>>();
        const auto margins = r["margins"].get<std::vector<float>>();
        const auto got = greedy(*model, tok, prompt, static_cast<int>(expected.size()));
        size_t same = 0;
        while (same < got.size() && same < expected.size() && got[same] == expected[same]) ++same;
        std::vector<int32_t> all = prompt;
        all.insert(all.end(), expected.begin(), expected.end());
        Context ctx(*model, static_cast<int64_t>(all.size()), 1);
        const float d = max_abs_diff(ctx.eval(all), read_f32(std::string(MICROLM_ORACLE_DIR) + "/" +
                                                             r["logits_file"].get<std::string>()));
        std::printf("%-7s (%s): max |logit diff| %.4f (tolerance %.2f), greedy identical for %zu of %zu tokens\n",
                    ftype.c_str(), mix.c_str() + 1, d, kKQuantLogitMaxAbsDiff, same, expected.size());
        EXPECT_LE(d, kKQuantLogitMaxAbsDiff) << ftype;
        if (same < expected.size()) {
            const float margin = same < margins.size() ? margins[same] : 0.0f;
            EXPECT_LT(margin, kKQuantLogitMaxAbsDiff) << ftype << ": diverges at token " << same << " where llama.cpp's top-2 "
                                              << "margin is " << margin << "\nmicrolm:   " << tok.decode(got, false)
                                              << "\nllama.cpp: " << tok.decode(expected, false);
        }
    }
}

// Gemma-3-270M (Q4_K_M: Q5_0, Q8_0, Q4_K and Q6_K tensors), a different architecture run from
// the same forward pass (LlamaHparams' Gemma 3 differences): logits after plain-text prompts
// within kGemmaLogitMaxAbsDiff, greedy continuations identical up to a near-tie.
TEST(ParityModel, Gemma3RunsLikeLlamaCpp) {
    const auto ref = load_ref();
    ASSERT_FALSE(ref.empty());
    if (!ref.contains("gemma")) GTEST_SKIP() << "no Gemma file when the oracle ran (scripts/setup.sh --tests fetches it)";
    const auto& g = ref["gemma"];
    auto model = Model::load(g["file"].get<std::string>());
    ASSERT_EQ(model->config().arch, "gemma3");
    Tokenizer tok(vocab_from_gguf(model->file()));
    float worst = 0.0f;
    for (const auto& p : g["logits"]) {
        const auto ids = p["ids"].get<std::vector<int32_t>>();
        Context ctx(*model, static_cast<int64_t>(ids.size()), 1);
        const float d = max_abs_diff(ctx.eval(ids), read_f32(std::string(MICROLM_ORACLE_DIR) + "/" +
                                                             p["file"].get<std::string>()));
        std::printf("gemma3: %zu-token prompt, max |logit diff| %.4f\n", ids.size(), d);
        worst = std::max(worst, d);
    }
    std::printf("gemma3: max |logit diff| over %zu prompts %.4f (tolerance %.2f)\n", g["logits"].size(), worst,
                kGemmaLogitMaxAbsDiff);
    EXPECT_LE(worst, kGemmaLogitMaxAbsDiff);
    for (const auto& c : g["greedy"]) {
        const auto ids = c["ids"].get<std::vector<int32_t>>();
        const auto expected = c["greedy"].get<std::vector<int32_t>>();
        const auto margins = c["margins"].get<std::vector<float>>();
        const auto got = greedy(*model, tok, ids, static_cast<int>(expected.size()));
        size_t same = 0;
        while (same < got.size() && same < expected.size() && got[same] == expected[same]) ++same;
        std::printf("gemma3: greedy identical for %zu of %zu tokens: %s\n", same, expected.size(),
                    tok.decode(got, false).substr(0, 60).c_str());
        if (same < expected.size()) {
            const float margin = same < margins.size() ? margins[same] : 0.0f;
            EXPECT_LT(margin, kGemmaLogitMaxAbsDiff) << "diverges at token " << same << "\nmicrolm:   " << tok.decode(got, false)
                                              << "\nllama.cpp: " << tok.decode(expected, false);
        }
    }
}

// `microlm run --chat --temp 0` prints exactly what greedy decoding in the library gives,
// and that agrees with llama.cpp's answer up to its first near-tie.
TEST(ParityModel, CliRunPrintsTheGreedyAnswer) {
    const auto ref = load_ref();
    ASSERT_FALSE(ref.empty());
    auto model = Model::load(MICROLM_SMOLLM2);
    Tokenizer tok(vocab_from_gguf(model->file()));
    for (const auto& c : ref["chat"]) {
        if (c["user"] != "What is the capital of France?") continue;
        const std::string cmd = std::string(MICROLM_BINARY) + " run -m " + MICROLM_SMOLLM2 +
                                " --chat -p \"What is the capital of France?\" -n " + std::to_string(kGreedyTokens) +
                                " --temp 0 2>/dev/null";
        FILE* p = popen(cmd.c_str(), "r");
        ASSERT_NE(p, nullptr);
        std::string out;
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        ASSERT_EQ(pclose(p), 0) << cmd;
        const auto ids = greedy(*model, tok, c["ids"].get<std::vector<int32_t>>(), kGreedyTokens);
        EXPECT_EQ(out, tok.decode(ids, false) + "\n");
        const std::string llama = c["reply"].get<std::string>() + "\n";
        std::printf("microlm run:  %s", out.c_str());
        std::printf("llama.cpp:    %s", llama.c_str());
        std::printf("identical to llama.cpp: %s\n", out == llama ? "yes" : "no (parted at a near-tie, see above)");
        return;
    }
    FAIL() << "the oracle has no 'capital of France' case";
}

// `microlm generate-batch` on a small corpus: every question not held out gets exactly the
// greedy reply the library gives one prompt at a time; an eval question is kept out; a second
// run resumes (an interrupted last line is dropped, done ids are not redone). Exactly: on a
// table whose products do not depend on how many rows a pass has, so not AMX (whose 16-row
// groups round in another order: "What is the capital of France?" is a near-tie for SmolLM2
// that the last bits decide), which the CLI is told to leave aside as the library is.
TEST(ParityModel, CliGenerateBatchWritesGreedyRepliesAndResumes) {
    const Kernels* kernels = &kernels_best();
    std::string env;
    if (std::string_view(kernels->name) == "amx") {
        kernels = kernels_avx512();
        env = "MICROLM_KERNELS=avx512 ";
    }
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("microlm_generate_batch_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir / "chat");
    fs::create_directories(dir / "eval");
    const std::string out = (dir / "teacher.jsonl").string();
    const std::vector<std::string> questions = {"What is the capital of France?", "Name three colours.",
                                                "How can I improve my time management skills?",
                                                "Write a haiku about rain.", "Why is the sky blue?"};
    {
        std::ofstream c(dir / "chat" / "sharegpt.jsonl");
        for (size_t i = 0; i < questions.size(); ++i) {
            nlohmann::json rec = {{"prompt", questions[i]}, {"reply", "x"}, {"en_like", true}};
            rec["id"] = std::to_string(i);
            c << rec.dump() << "\n";
        }
        std::ofstream e(dir / "eval" / "vicuna_questions.jsonl");
        e << nlohmann::json{{"question_id", 1}, {"turns", {questions[2]}}}.dump() << "\n";
    }
    const auto run = [&](int limit, int seqs) {
        // Appended piece by piece: GCC 12's -Wrestrict misfires on a long chain of operator+.
        std::string cmd = env + MICROLM_BINARY;
        for (const std::string& part : {std::string(" generate-batch -m "), std::string(MICROLM_SMOLLM2),
                                        std::string(" --chat "), (dir / "chat" / "sharegpt.jsonl").string(),
                                        std::string(" -o "), out, std::string(" -n 8 --limit "), std::to_string(limit),
                                        std::string(" --seqs "), std::to_string(seqs), std::string(" -t 2 2>/dev/null")})
            cmd += part;
        ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    };
    const auto records = [&] {
        std::vector<nlohmann::json> r;
        std::ifstream f(out);
        for (std::string line; std::getline(f, line);) r.push_back(nlohmann::json::parse(line));
        return r;
    };
    run(2, 2);
    ASSERT_EQ(records().size(), 2u);
    std::ofstream(out, std::ios::app) << R"({"id":"c9","prompt":"cut sho)";  // a crash mid-line
    run(0, 3);
    const auto recs = records();
    ASSERT_EQ(recs.size(), 4u);  // five questions, one held out, none twice
    auto model = Model::load(MICROLM_SMOLLM2);
    Tokenizer tok(vocab_from_gguf(model->file()));
    const auto system = chat_template_default_system(tok.vocab().chat_template);
    std::set<std::string> seen;
    for (const auto& r : recs) {
        const std::string q = r["prompt"];
        EXPECT_NE(q, questions[2]);
        EXPECT_TRUE(seen.insert(r["id"].get<std::string>()).second) << r["id"];
        const auto ids = tok.encode(format_chatml({{"user", q}}, true, system), true, true);
        EXPECT_EQ(r["reply"].get<std::string>(), tok.decode(greedy(*model, tok, ids, 8, kernels), false)) << q;
    }
    fs::remove_all(dir);
}
