// Tests of `microlm convert`: converted random-weight checkpoints (a Swen torch.save file and a
// Hugging Face folder, written by tests/convert/make_fixtures.py) give the logits of the script's
// own float64 PyTorch forward pass; the Swen tokenizer survives conversion; and the zip, pickle
// and safetensors readers turn truncated or corrupted input into microlm::Error, never a crash.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "microlm/convert.h"
#include "microlm/quantize.h"
#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/model.h"
#include "microlm/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using microlm::CheckpointTensor;
using microlm::ConvertOptions;
using microlm::DType;
using microlm::Error;
using microlm::TensorMap;
using nlohmann::json;

const fs::path kFixtures = MICROLM_CONVERT_FIXTURE_DIR;

// Largest |microlm - reference| over all logits, as a fraction of the largest |reference logit|
// (at least 1), by matrix type. The reference is float64 over the stored values; microlm keeps K
// and V in fp16 and rounds queries to fp16, which alone costs ~2e-4 of that scale. F16 and Q8_0
// add their weight rounding on top.
constexpr double kTolF32 = 1e-3;
constexpr double kTolF16 = 3e-3;
constexpr double kTolQ8_0 = 4e-2;

std::string tmp(const std::string& name) {
    return (fs::temp_directory_path() / ("microlm_test_convert_" + std::to_string(::getpid()) + "_" + name))
        .string();
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& p, std::string_view bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::span<const uint8_t> as_bytes(std::string_view s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

#define REQUIRE_FIXTURES()                                                       \
    ASSERT_TRUE(fs::exists(kFixtures / "reference.json"))                        \
        << "no fixtures in " << kFixtures                                        \
        << ": run `ctest -R convert_fixtures` (tests/convert/make_fixtures.py, " \
           "Debian's /usr/bin/python3 with python3-torch)"

json reference() {
    return json::parse(read_file(kFixtures / "reference.json"));
}

// Runs `tokens` through the GGUF with microlm and returns max |logit - reference| over every
// position, divided by max(1, max |reference logit|).
double max_logit_diff(const std::string& gguf, const json& ref, const std::string& which) {
    const std::vector<int32_t> tokens = ref["tokens"].get<std::vector<int32_t>>();
    const int64_t n_vocab = ref[which]["vocab"].get<int64_t>();
    const std::string raw = read_file(kFixtures / ref[which]["logits"].get<std::string>());
    EXPECT_EQ(raw.size(), tokens.size() * static_cast<size_t>(n_vocab) * 4);
    std::vector<float> want(raw.size() / 4);
    std::memcpy(want.data(), raw.data(), raw.size());

    const auto model = microlm::Model::load(gguf);
    EXPECT_EQ(model->config().n_vocab, n_vocab);
    microlm::Context ctx(*model, 64, 2);
    ctx.eval(tokens, /*all_logits=*/true);
    const std::span<const float> got = ctx.logits();
    EXPECT_EQ(got.size(), want.size());
    double diff = 0, mag = 0;
    for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
        diff = std::max(diff, std::abs(static_cast<double>(got[i]) - want[i]));
        mag = std::max(mag, std::abs(static_cast<double>(want[i])));
    }
    std::printf("  %s %s: max |logit diff| %.3g, largest |logit| %.3g, relative %.3g\n", which.c_str(),
                fs::path(gguf).filename().c_str(), diff, mag, diff / std::max(1.0, mag));
    return diff / std::max(1.0, mag);
}

std::string convert_swen_fixture(DType type, const std::string& out_name) {
    ConvertOptions o;
    o.type = type;
    const std::string out = tmp(out_name);
    microlm::convert_swen((kFixtures / "swen/swen_tiny.pth").string(), (kFixtures / "hf").string(), out, o,
                          {});
    return out;
}

std::string convert_hf_fixture(DType type, const std::string& out_name) {
    ConvertOptions o;
    o.type = type;
    const std::string out = tmp(out_name);
    microlm::convert_hf((kFixtures / "hf").string(), out, o);
    return out;
}

// ---- End to end: logits -------------------------------------------------------------------------

struct Case {
    const char* which;
    DType type;
    double tol;
};

void PrintTo(const Case& c, std::ostream* os) {
    *os << c.which << " " << microlm::dtype_name(uint32_t(c.type));
}

class ConvertLogits : public ::testing::TestWithParam<Case> {};

TEST_P(ConvertLogits, MatchTheReferenceForward) {
    REQUIRE_FIXTURES();
    const Case c = GetParam();
    const std::string name =
        std::string(c.which) + "_" + std::string(microlm::dtype_name(uint32_t(c.type))) + ".gguf";
    const std::string out = std::string(c.which) == "swen" ? convert_swen_fixture(c.type, name)
                                                           : convert_hf_fixture(c.type, name);
    EXPECT_LE(max_logit_diff(out, reference(), c.which), c.tol);
    fs::remove(out);
}

INSTANTIATE_TEST_SUITE_P(All, ConvertLogits,
                         ::testing::Values(Case{"swen", DType::F32, kTolF32},
                                           Case{"swen", DType::F16, kTolF16},
                                           Case{"swen", DType::Q8_0, kTolQ8_0},
                                           Case{"hf", DType::F32, kTolF32}, Case{"hf", DType::F16, kTolF16},
                                           Case{"hf", DType::Q8_0, kTolQ8_0}),
                         [](const auto& info) {
                             return std::string(info.param.which) + "_" +
                                    std::string(microlm::dtype_name(uint32_t(info.param.type)));
                         });

// ---- Metadata of the converted files --------------------------------------------------------------

TEST(Convert, SwenKeysAndTiedOutput) {
    REQUIRE_FIXTURES();
    const std::string out = convert_swen_fixture(DType::F32, "swen_keys.gguf");
    const auto f = microlm::GgufFile::open(out);
    EXPECT_EQ(f->get_str("general.architecture"), "llama");
    EXPECT_EQ(f->get_str("general.name"), "swen_tiny");
    EXPECT_EQ(f->get_int("llama.attention.head_count"), 8);
    EXPECT_EQ(f->get_int("llama.attention.head_count_kv"), 2);
    EXPECT_EQ(f->get_int("llama.context_length"), 32768);
    EXPECT_EQ(f->get_int("llama.block_count"), 2);
    EXPECT_EQ(f->get_int("llama.feed_forward_length"), 352);
    EXPECT_FLOAT_EQ(static_cast<float>(f->get_float("llama.rope.freq_base")), 1e6f);
    EXPECT_FLOAT_EQ(static_cast<float>(f->get_float("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
    EXPECT_EQ(f->find_tensor("output.weight"), nullptr) << "lm_head is tied to the embedding";
    EXPECT_EQ(f->get_str("tokenizer.ggml.pre"), "gpt-2");
    EXPECT_EQ(f->tensors().size(), 2u + 2 * 9);
    fs::remove(out);
}

TEST(Convert, HfUntiedOutputAndPaddedVocab) {
    REQUIRE_FIXTURES();
    const std::string out = convert_hf_fixture(DType::F16, "hf_keys.gguf");
    const auto f = microlm::GgufFile::open(out);
    EXPECT_NE(f->find_tensor("output.weight"), nullptr);
    EXPECT_EQ(f->get_int("llama.attention.head_count"), 6);
    EXPECT_EQ(f->get_int("llama.context_length"), 1024);
    // The config's vocab_size (12352) pads the tokenizer's 12288 tokens, as llama.cpp's converter does.
    const microlm::VocabData v = microlm::vocab_from_gguf(*f);
    ASSERT_EQ(v.tokens.size(), 12352u);
    EXPECT_EQ(v.tokens[12300], "[PAD12300]");
    EXPECT_EQ(v.token_types[12300], static_cast<int32_t>(microlm::TokenType::UNUSED));
    EXPECT_EQ(f->find_tensor("blk.0.attn_norm.weight")->type, uint32_t(DType::F32)) << "norms stay F32";
    EXPECT_EQ(f->find_tensor("blk.0.attn_q.weight")->type, uint32_t(DType::F16));
    fs::remove(out);
}

// ---- The Swen tokenizer through the converted GGUF --------------------------------------------------

microlm::Tokenizer swen_tokenizer() {
    const std::string out = convert_swen_fixture(DType::Q8_0, "swen_tok.gguf");
    const auto f = microlm::GgufFile::open(out);
    microlm::Tokenizer t(microlm::vocab_from_gguf(*f));
    fs::remove(out);
    return t;
}

TEST(ConvertTokenizer, SpecialTokensAndIds) {
    REQUIRE_FIXTURES();
    const microlm::Tokenizer t = swen_tokenizer();
    EXPECT_EQ(t.n_vocab(), 12288);
    EXPECT_EQ(t.token_id("<|endoftext|>"), 0);
    EXPECT_EQ(t.token_id("<|im_start|>"), 1);
    EXPECT_EQ(t.token_id("<|im_end|>"), 2);
    EXPECT_EQ(t.bos_id(), 1);
    EXPECT_EQ(t.eos_id(), 2);
    const microlm::VocabData& v = t.vocab();
    for (int id = 0; id < 3; ++id)
        EXPECT_EQ(v.token_types[id], static_cast<int32_t>(microlm::TokenType::CONTROL));
    EXPECT_EQ(v.pad_id, 0);
    EXPECT_FALSE(v.add_bos);
    EXPECT_NE(v.chat_template.find("<|im_start|>"), std::string::npos);
    EXPECT_TRUE(t.is_end_of_generation(2));

    const std::string prompt = "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n";
    const auto ids = t.encode(prompt, false, /*parse_special=*/true);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 2);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 1);
    EXPECT_EQ(t.decode(ids, true), prompt);
    // Without parse_special the marker is ordinary text, spelled with several tokens.
    EXPECT_GT(t.encode("<|im_end|>", false, false).size(), 1u);
    EXPECT_TRUE(t.encode("", false, false).empty());
}

TEST(ConvertTokenizer, RoundTrips) {
    REQUIRE_FIXTURES();
    const microlm::Tokenizer t = swen_tokenizer();
    // GGUF "gpt-2" cleans " ." and " 's" on decode as llama.cpp does, so these texts avoid them.
    const char* texts[] = {
        "Hello world",
        "Sure! Here's a quick answer: 42, then 3.14159 and 1000000.",
        "   leading spaces and  double  spaces   ",
        "tabs\tand\nnewlines\n\n\nand\r\nCRLF",
        "café naïve über 日本語 中文 한국어 Ελληνικά русский",
        "emoji 😀👍🏽 🇫🇷 family 👨‍👩‍👧‍👦 and ❤️",
        "code: for (int i = 0; i < n; ++i) { x[i] *= 2; }",
        "<|im_start|> as plain text",
        "x",
    };
    for (const char* s : texts) {
        const auto ids = t.encode(s, false, false);
        for (const int32_t id : ids) EXPECT_GE(id, 3) << "plain text never yields a control token: " << s;
        EXPECT_EQ(t.decode(ids, false), s);
    }
    // Invalid UTF-8: each byte that starts no complete sequence decodes as U+FFFD, as in llama.cpp.
    const std::pair<std::string, std::string> invalid[] = {
        {"a\xff"
         "b",
         "a\xEF\xBF\xBD"
         "b"},
        {"\xc3", "\xEF\xBF\xBD"},
        {"caf\xc3\xa9 \x80\x80!", "caf\xc3\xa9 \xEF\xBF\xBD\xEF\xBF\xBD!"},
        {"\xf0\x9f\x98", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
    };
    for (const auto& [in, want] : invalid) EXPECT_EQ(t.decode(t.encode(in, false, false), false), want);
    // Any byte sequence encodes without error to ids of the vocabulary.
    std::mt19937 rng(7);
    for (int i = 0; i < 300; ++i) {
        std::string s(rng() % 24, '\0');
        for (char& c : s) c = static_cast<char>(rng() % 256);
        for (const int32_t id : t.encode(s, false, false)) ASSERT_TRUE(id >= 0 && id < t.n_vocab());
    }
}

TEST(ConvertTokenizer, MergesAsPairsAndPreTokenizerChecks) {
    REQUIRE_FIXTURES();
    json tok = json::parse(read_file(kFixtures / "hf/tokenizer.json"));
    const microlm::VocabData base =
        microlm::vocab_from_hf_tokenizer((kFixtures / "hf").string(), std::nullopt, 0);
    const fs::path dir = tmp("tok_pairs");
    fs::create_directories(dir);
    // Newer tokenizers write merges as ["a", "b"] pairs; the strings must come out the same.
    json pairs = json::array();
    for (const json& m : tok["model"]["merges"]) {
        const std::string s =
            m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>();
        pairs.push_back(json::array({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)}));
    }
    tok["model"]["merges"] = pairs;
    write_file((dir / "tokenizer.json").string(), tok.dump());
    const microlm::VocabData v = microlm::vocab_from_hf_tokenizer(dir.string(), std::nullopt, 0);
    EXPECT_EQ(v.merges, base.merges);
    EXPECT_EQ(v.tokens, base.tokens);
    EXPECT_EQ(v.bos_id, -1) << "no tokenizer_config.json: no specials";

    // A pre-tokenizer other than GPT-2's needs --pre, and says so.
    tok["pre_tokenizer"] =
        json::parse(R"({"type": "Sequence", "pretokenizers": [{"type": "Digits"}, {"type": "ByteLevel"}]})");
    write_file((dir / "tokenizer.json").string(), tok.dump());
    try {
        microlm::vocab_from_hf_tokenizer(dir.string(), std::nullopt, 0);
        ADD_FAILURE() << "expected an error asking for --pre";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--pre"), std::string::npos) << e.what();
    }
    EXPECT_EQ(microlm::vocab_from_hf_tokenizer(dir.string(), "smollm", 0).pre, "smollm");
    // More tokens than embedding rows cannot be converted.
    EXPECT_THROW(microlm::vocab_from_hf_tokenizer(dir.string(), "smollm", 100), Error);
    fs::remove_all(dir);
}

// ---- Name mapping and the RoPE permutation --------------------------------------------------------

TEST(Convert, TensorNames) {
    using microlm::gguf_tensor_name;
    EXPECT_EQ(gguf_tensor_name("model.embed_tokens.weight"), "token_embd.weight");
    EXPECT_EQ(gguf_tensor_name("model.norm.weight"), "output_norm.weight");
    EXPECT_EQ(gguf_tensor_name("lm_head.weight"), "output.weight");
    EXPECT_EQ(gguf_tensor_name("model.layers.0.input_layernorm.weight"), "blk.0.attn_norm.weight");
    EXPECT_EQ(gguf_tensor_name("model.layers.11.self_attn.q_proj.weight"), "blk.11.attn_q.weight");
    EXPECT_EQ(gguf_tensor_name("model.layers.3.self_attn.k_proj.weight"), "blk.3.attn_k.weight");
    EXPECT_EQ(gguf_tensor_name("model.layers.3.self_attn.v_proj.weight"), "blk.3.attn_v.weight");
    EXPECT_EQ(gguf_tensor_name("model.layers.3.self_attn.o_proj.weight"), "blk.3.attn_output.weight");
    EXPECT_EQ(gguf_tensor_name("model.layers.7.post_attention_layernorm.weight"), "blk.7.ffn_norm.weight");
    EXPECT_EQ(gguf_tensor_name("model.layers.7.mlp.gate_proj.weight"), "blk.7.ffn_gate.weight");
    EXPECT_EQ(gguf_tensor_name("model.layers.7.mlp.up_proj.weight"), "blk.7.ffn_up.weight");
    EXPECT_EQ(gguf_tensor_name("model.layers.7.mlp.down_proj.weight"), "blk.7.ffn_down.weight");
    for (const char* bad : {"model.layers.0.self_attn.q_proj.bias", "model.layers.x.mlp.up_proj.weight",
                            "model.layers.-1.mlp.up_proj.weight", "model.layers.01.mlp.up_proj.weight",
                            "model.layers..mlp.up_proj.weight", "transformer.wte.weight", ""}) {
        EXPECT_FALSE(gguf_tensor_name(bad).has_value()) << bad;
    }
}

TEST(Convert, RopePermutationPairsHalves) {
    // Two heads of size 4, one column: rows (0 1 | 2 3) pair as (0,2) (1,3) in HF; GGUF wants them adjacent.
    const std::vector<float> w = {0, 1, 2, 3, 10, 11, 12, 13};
    EXPECT_EQ(microlm::permute_rope_rows(w, 2, 4, 1), (std::vector<float>{0, 2, 1, 3, 10, 12, 11, 13}));
    // Whole rows move: two columns.
    const std::vector<float> w2 = {0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5};
    EXPECT_EQ(microlm::permute_rope_rows(w2, 1, 4, 2), (std::vector<float>{0, 0.5, 2, 2.5, 1, 1.5, 3, 3.5}));
}

TEST(Convert, SwenFlagErrors) {
    REQUIRE_FIXTURES();
    ConvertOptions o;
    microlm::SwenOptions s;
    s.n_kv_heads = 4;  // the fixture has 2
    try {
        microlm::convert_swen((kFixtures / "swen/swen_tiny.pth").string(), (kFixtures / "hf").string(),
                              tmp("x.gguf"), o, s);
        ADD_FAILURE() << "expected a --kv-heads error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--kv-heads 4"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(tmp("x.gguf")));
    s = {};
    s.n_heads = 6;  // 128 is not 6 heads
    EXPECT_THROW(microlm::convert_swen((kFixtures / "swen/swen_tiny.pth").string(),
                                       (kFixtures / "hf").string(), tmp("x.gguf"), o, s),
                 Error);
}

// ---- torch.save checkpoints: the pickle machine ------------------------------------------------------

// Builds protocol-2 pickles by hand, opcode by opcode.
struct Pickle {
    std::string b = "\x80\x02";
    Pickle& op(char c) {
        b.push_back(c);
        return *this;
    }
    Pickle& u8(int v) {
        b.push_back(static_cast<char>(v));
        return *this;
    }
    Pickle& str(const std::string& s) {
        op('X');
        for (int k = 0; k < 4; ++k) u8(static_cast<int>((s.size() >> (8 * k)) & 0xFF));
        b += s;
        return *this;
    }
    Pickle& global(const std::string& module, const std::string& name) {
        b += "c" + module + "\n" + name + "\n";
        return *this;
    }
    Pickle& small(int v) { return op('K').u8(v); }  // BININT1
    Pickle& ints(const std::vector<int>& v) {
        op('(');
        for (const int x : v) small(x);
        return op('t');
    }
};

// {"model": {name: tensor}} with the tensor rebuilt from storage "0".
std::string tensor_pickle(const std::string& storage_type, int numel, int offset,
                          const std::vector<int>& size, const std::vector<int>& stride,
                          const std::string& name = "w") {
    Pickle p;
    p.op('}').str("model").op('}').str(name);
    p.global("torch._utils", "_rebuild_tensor_v2").op('(');
    p.op('(').str("storage").global("torch", storage_type).str("0").str("cpu").small(numel).op('t').op('Q');
    p.small(offset).ints(size).ints(stride).op('\x89');
    p.global("collections", "OrderedDict").op(')').op('R');
    p.op('t').op('R').op('s').op('s').op('.');
    return p.b;
}

microlm::StorageBytes storage_of(const std::string& bytes) {
    return [&bytes](const std::string& key) -> std::span<const uint8_t> {
        if (key != "0") throw Error("no storage " + key);
        return as_bytes(bytes);
    };
}

std::string floats(const std::vector<float>& v) {
    return {reinterpret_cast<const char*>(v.data()), v.size() * 4};
}

TEST(TorchPickle, HandBuiltTensorsWithOffsetsAndTypes) {
    const std::string f32 = floats({0, 1, 2, 3, 4, 5, 6, 7});
    TensorMap t = microlm::unpickle_state_dict(
        "hand", as_bytes(tensor_pickle("FloatStorage", 8, 2, {2, 3}, {3, 1})), storage_of(f32));
    ASSERT_EQ(t.count("w"), 1u);
    EXPECT_EQ(t["w"].shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(t["w"].data, (std::vector<float>{2, 3, 4, 5, 6, 7}));
    EXPECT_EQ(t["w"].stored_type, "F32");

    const std::string f16 = std::string("\x00\x3c\x00\xc0\x00\x38", 6);  // 1, -2, 0.5
    t = microlm::unpickle_state_dict("hand", as_bytes(tensor_pickle("HalfStorage", 3, 0, {3}, {1})),
                                     storage_of(f16));
    EXPECT_EQ(t["w"].data, (std::vector<float>{1, -2, 0.5}));
    const std::string bf16 = std::string("\x80\x3f\x40\xc0\x00\x00", 6);  // 1, -3, 0
    t = microlm::unpickle_state_dict("hand", as_bytes(tensor_pickle("BFloat16Storage", 3, 0, {3}, {1})),
                                     storage_of(bf16));
    EXPECT_EQ(t["w"].data, (std::vector<float>{1, -3, 0}));
    // Size-1 dimensions may have any stride.
    t = microlm::unpickle_state_dict("hand", as_bytes(tensor_pickle("FloatStorage", 8, 0, {1, 4}, {99, 1})),
                                     storage_of(f32));
    EXPECT_EQ(t["w"].data, (std::vector<float>{0, 1, 2, 3}));
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
    try {
        f();
        ADD_FAILURE() << "expected microlm::Error containing '" << needle << "'";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

TEST(TorchPickle, RefusesBadTensors) {
    const std::string f32 = floats({0, 1, 2, 3, 4, 5, 6, 7});
    auto run = [&](const std::string& pickle, const std::string& storage) {
        return [pickle, storage] {
            microlm::unpickle_state_dict("hand.pkl", as_bytes(pickle), storage_of(storage));
        };
    };
    expect_error(run(tensor_pickle("FloatStorage", 8, 0, {2, 3}, {1, 2}), f32), "not contiguous");
    expect_error(run(tensor_pickle("FloatStorage", 8, 3, {2, 3}, {3, 1}), f32), "outside its storage");
    expect_error(run(tensor_pickle("FloatStorage", 9, 0, {2, 3}, {3, 1}), f32), "36 bytes");
    expect_error(run(tensor_pickle("FloatStorage", 8, 0, {2, 3}, {3}), f32), "strides");
    expect_error(run(tensor_pickle("LongStorage", 8, 0, {2, 3}, {3, 1}), f32), "no float tensors");
}

// A string literal with its embedded NULs.
template <size_t N>
std::string lit(const char (&s)[N]) {
    return {s, N - 1};
}

TEST(TorchPickle, HostilePickles) {
    const std::string none;
    auto run = [&](const std::string& body) {
        return [body, &none] { microlm::unpickle_state_dict("evil.pkl", as_bytes(body), storage_of(none)); };
    };
    expect_error(run(""), "offset 0");
    expect_error(run("\x80\x02"), "without STOP");
    expect_error(run("\x80\x06."), "protocol 6");
    expect_error(run("\x80\x02\xff"), "unsupported pickle opcode 0xff");
    expect_error(run("\x80\x02h\x05."), "memo entry 5");
    expect_error(run("\x80\x02."), "underflow");
    expect_error(run("\x80\x02X\xff\xff\xff\x7f"
                     "abc."),
                 "operand bytes");
    expect_error(run(std::string("\x80\x02\x8a\x09", 4) + std::string(9, '\x01') + "."), "64 bits");
    expect_error(run("\x80\x02"
                     "cmodule_without_newline"),
                 "unterminated");
    expect_error(run("\x80\x02N}u."), "no MARK");
    expect_error(run("\x80\x02(N}u."), "underflow");
    expect_error(run("\x80\x02}(N"
                     "u."),
                 "odd number");
    expect_error(run("\x80\x02Ns."), "underflow");
    expect_error(run("\x80\x02N(NN"
                     "u."),
                 "expected a dict");
    // A list that contains itself: no recursion, no leak; the result is just not a dict.
    expect_error(run(lit("\x80\x02]q\x00h\x00"
                         "a.")),
                 "is of type list");
    // A stack that never ends.
    expect_error(run("\x80\x02" + std::string((1 << 20) + 1, 'N') + "."), "stack deeper");
    // Deep nesting of tuples costs one arena entry each, nothing recursive.
    expect_error(run("\x80\x02N" + std::string(200000, '\x85') + "."), "is of type tuple");
    expect_error(run("\x80\x02NN\x86Q."), "persistent id");
    expect_error(run("\x80\x02"
                     "cbuiltins\nprint\n(t"
                     "R."),
                 "is of type object");
    // No tensors at all.
    expect_error(run(lit("\x80\x02}X\x01\x00\x00\x00"
                         "aK\x01s.")),
                 "no float tensors");
}

TEST(TorchPickle, EveryTruncationAndMutationIsAnErrorOrValid) {
    // Truncations of the real torch.save pickle: all must fail cleanly.
    REQUIRE_FIXTURES();
    const auto zip = microlm::ZipArchive::open((kFixtures / "swen/swen_tiny.pth").string());
    const auto* pkl = zip->find("swen_tiny/data.pkl");
    ASSERT_NE(pkl, nullptr);
    const std::span<const uint8_t> real = zip->data(*pkl);
    const microlm::StorageBytes no_storage = [](const std::string& key) -> std::span<const uint8_t> {
        throw Error("storage " + key + " not offered");
    };
    for (size_t n = 0; n < real.size(); ++n) {
        EXPECT_THROW(microlm::unpickle_state_dict("trunc", real.subspan(0, n), no_storage), Error) << n;
    }
    // Random byte changes of a small hand-built one: either a valid result or microlm::Error.
    const std::string f32 = floats({0, 1, 2, 3, 4, 5, 6, 7});
    const std::string good = tensor_pickle("FloatStorage", 8, 2, {2, 3}, {3, 1});
    std::mt19937 rng(11);
    int ok = 0;
    for (int i = 0; i < 20000; ++i) {
        std::string p = good;
        for (int k = 0, n = 1 + static_cast<int>(rng() % 3); k < n; ++k)
            p[rng() % p.size()] = static_cast<char>(rng() % 256);
        try {
            microlm::unpickle_state_dict("mut", as_bytes(p), storage_of(f32));
            ++ok;
        } catch (const Error&) {
        }
    }
    std::printf("  %d of 20000 mutated pickles still parsed\n", ok);
}

TEST(TorchPickle, CheckpointFixtures) {
    REQUIRE_FIXTURES();
    // Views into one storage: offsets honoured; a bare state dict (no {"model": ...}).
    const TensorMap off = microlm::read_torch_checkpoint((kFixtures / "swen/offset.pth").string());
    const json want = json::parse(read_file(kFixtures / "swen/offset.json"));
    ASSERT_EQ(off.size(), want.size());
    for (const auto& [name, w] : want.items()) {
        ASSERT_EQ(off.count(name), 1u) << name;
        EXPECT_EQ(off.at(name).shape, w["shape"].get<std::vector<int64_t>>()) << name;
        EXPECT_EQ(off.at(name).data, w["data"].get<std::vector<float>>()) << name;
    }
    expect_error([] { microlm::read_torch_checkpoint((kFixtures / "swen/noncontig.pth").string()); },
                 "not contiguous");
    expect_error([] { microlm::read_torch_checkpoint((kFixtures / "swen/compressed.pth").string()); },
                 "compressed");

    // Optimizer state, floats, None, tuples and big ints around the model: the model is what is read.
    const TensorMap tiny = microlm::read_torch_checkpoint((kFixtures / "swen/swen_tiny.pth").string());
    const TensorMap extra = microlm::read_torch_checkpoint((kFixtures / "swen/swen_extra.pth").string());
    ASSERT_EQ(tiny.size(), extra.size());
    for (const auto& [name, t] : tiny) {
        ASSERT_EQ(extra.count(name), 1u) << name;
        EXPECT_EQ(extra.at(name).data, t.data) << name;
    }
    EXPECT_EQ(tiny.at("model.layers.0.self_attn.q_proj.weight").stored_type, "F16");
    EXPECT_EQ(tiny.at("model.layers.1.mlp.up_proj.weight").stored_type, "BF16");
    EXPECT_EQ(tiny.at("lm_head.weight").data, tiny.at("model.embed_tokens.weight").data);
}

// ---- ZIP ----------------------------------------------------------------------------------------------

uint32_t crc32_bitwise(std::string_view s) {
    uint32_t c = 0xFFFFFFFFu;
    for (const char ch : s) {
        c ^= static_cast<uint8_t>(ch);
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

struct ZipIn {
    std::string name, data;
    uint16_t method = 0;
    bool bad_crc = false;
};

// A minimal zip writer: stored entries, classic or ZIP64 directory (sizes and offsets as 0xFFFFFFFF
// with the 8-byte values in the extra field, ZIP64 end record and locator).
std::string make_zip(const std::vector<ZipIn>& entries, bool zip64) {
    std::string out, cd;
    auto le = [](std::string& s, uint64_t v, int n) {
        for (int k = 0; k < n; ++k) s.push_back(static_cast<char>((v >> (8 * k)) & 0xFF));
    };
    for (const ZipIn& e : entries) {
        const uint64_t local = out.size();
        const uint32_t crc = crc32_bitwise(e.data) ^ (e.bad_crc ? 1u : 0u);
        le(out, 0x04034b50, 4), le(out, 20, 2), le(out, 0, 2), le(out, e.method, 2), le(out, 0, 4);
        le(out, crc, 4), le(out, e.data.size(), 4), le(out, e.data.size(), 4);
        le(out, e.name.size(), 2), le(out, 3, 2);
        out += e.name + "pad" + e.data;  // 3 bytes of extra, as torch.save pads for alignment
        std::string extra;
        if (zip64) {
            le(extra, 1, 2), le(extra, 24, 2), le(extra, e.data.size(), 8), le(extra, e.data.size(), 8),
                le(extra, local, 8);
        }
        const uint64_t small_size = zip64 ? 0xFFFFFFFFu : e.data.size(),
                       small_off = zip64 ? 0xFFFFFFFFu : local;
        le(cd, 0x02014b50, 4), le(cd, 45, 2), le(cd, 45, 2), le(cd, 0, 2), le(cd, e.method, 2), le(cd, 0, 4);
        le(cd, crc, 4), le(cd, small_size, 4), le(cd, small_size, 4), le(cd, e.name.size(), 2),
            le(cd, extra.size(), 2);
        le(cd, 0, 2), le(cd, 0, 2), le(cd, 0, 2), le(cd, 0, 4), le(cd, small_off, 4);
        cd += e.name + extra;
    }
    const uint64_t cd_off = out.size();
    out += cd;
    if (zip64) {
        const uint64_t z64 = out.size();
        le(out, 0x06064b50, 4), le(out, 44, 8), le(out, 45, 2), le(out, 45, 2), le(out, 0, 4), le(out, 0, 4);
        le(out, entries.size(), 8), le(out, entries.size(), 8), le(out, cd.size(), 8), le(out, cd_off, 8);
        le(out, 0x07064b50, 4), le(out, 0, 4), le(out, z64, 8), le(out, 1, 4);
    }
    le(out, 0x06054b50, 4), le(out, 0, 2), le(out, 0, 2);
    le(out, zip64 ? 0xFFFF : entries.size(), 2), le(out, zip64 ? 0xFFFF : entries.size(), 2);
    le(out, zip64 ? 0xFFFFFFFFu : cd.size(), 4), le(out, zip64 ? 0xFFFFFFFFu : cd_off, 4), le(out, 0, 2);
    return out;
}

std::vector<ZipIn> checkpoint_entries() {
    return {{"ckpt/data.pkl", tensor_pickle("FloatStorage", 8, 2, {2, 3}, {3, 1})},
            {"ckpt/data/0", floats({0, 1, 2, 3, 4, 5, 6, 7})},
            {"ckpt/version", "3\n"}};
}

TEST(ZipReader, ClassicAndZip64) {
    for (const bool zip64 : {false, true}) {
        const std::string path = tmp(zip64 ? "z64.pth" : "zip.pth");
        write_file(path, make_zip(checkpoint_entries(), zip64));
        const auto z = microlm::ZipArchive::open(path);
        ASSERT_EQ(z->entries().size(), 3u);
        EXPECT_EQ(z->entries()[1].name, "ckpt/data/0");
        const TensorMap t = microlm::read_torch_checkpoint(path);
        EXPECT_EQ(t.at("w").data, (std::vector<float>{2, 3, 4, 5, 6, 7})) << (zip64 ? "ZIP64" : "classic");
        fs::remove(path);
    }
}

TEST(ZipReader, RefusesCompressedCorruptAndMissing) {
    const std::string path = tmp("bad.pth");
    auto entries = checkpoint_entries();
    entries[1].method = 8;
    write_file(path, make_zip(entries, false));
    expect_error([&] { microlm::ZipArchive::open(path); }, "compressed (method 8)");
    entries = checkpoint_entries();
    entries[1].bad_crc = true;
    write_file(path, make_zip(entries, false));
    expect_error([&] { microlm::read_torch_checkpoint(path); }, "CRC-32");
    entries = checkpoint_entries();
    entries.erase(entries.begin() + 1);
    write_file(path, make_zip(entries, false));
    expect_error([&] { microlm::read_torch_checkpoint(path); }, "has no entry ckpt/data/0");
    entries = checkpoint_entries();
    entries.erase(entries.begin());
    write_file(path, make_zip(entries, false));
    expect_error([&] { microlm::read_torch_checkpoint(path); }, "data.pkl");
    write_file(path, "not a zip at all, just some text that is long enough");
    expect_error([&] { microlm::read_torch_checkpoint(path); }, "end-of-central-directory");
    write_file(path, "");
    expect_error([&] { microlm::read_torch_checkpoint(path); }, "too small");
    // A central directory pointing past the end of the file.
    std::string z = make_zip(checkpoint_entries(), false);
    z[z.size() - 6] = '\x7f';
    write_file(path, z);
    expect_error([&] { microlm::ZipArchive::open(path); }, "central directory");
    expect_error([] { microlm::read_torch_checkpoint("/nonexistent/ckpt.pth"); }, "cannot open");
    fs::remove(path);
}

TEST(ZipReader, EveryTruncationAndByteFlip) {
    for (const bool zip64 : {false, true}) {
        const std::string z = make_zip(checkpoint_entries(), zip64);
        const std::string path = tmp("flip.pth");
        for (size_t n = 0; n < z.size(); ++n) {
            write_file(path, std::string_view(z).substr(0, n));
            EXPECT_THROW(microlm::read_torch_checkpoint(path), Error) << "truncated to " << n;
        }
        int ok = 0;
        for (size_t i = 0; i < z.size(); ++i) {
            std::string bad = z;
            bad[i] = static_cast<char>(bad[i] ^ 0xA5);
            write_file(path, bad);
            try {
                microlm::read_torch_checkpoint(path);
                ++ok;  // a flip in a field nobody reads (times, versions, padding)
            } catch (const Error&) {
            }
        }
        std::printf("  %s: %d of %zu byte flips still read\n", zip64 ? "ZIP64" : "classic", ok, z.size());
        fs::remove(path);
    }
}

// ---- safetensors --------------------------------------------------------------------------------------

std::string safetensors(const std::string& header, const std::string& data) {
    std::string out;
    for (int k = 0; k < 8; ++k) out.push_back(static_cast<char>((header.size() >> (8 * k)) & 0xFF));
    return out + header + data;
}

TEST(Safetensors, ReadsAndRefuses) {
    const std::string path = tmp("t.safetensors");
    const std::string data = floats({1, 2, 3, 4}) + std::string("\x00\x3c\x00\xc0", 4) +
                             std::string("\x80\x3f", 2) + std::string(8, '\x07');
    const std::string header =
        R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"h":{"dtype":"F16","shape":[2],"data_offsets":[16,20]},)"
        R"("b":{"dtype":"BF16","shape":[1],"data_offsets":[20,22]},"i":{"dtype":"I64","shape":[1],"data_offsets":[22,30]},)"
        R"("__metadata__":{"format":"pt"}})";
    const std::string good = safetensors(header, data);
    write_file(path, good);
    const TensorMap t = microlm::read_safetensors(path);
    EXPECT_EQ(t.at("a").data, (std::vector<float>{1, 2, 3, 4}));
    EXPECT_EQ(t.at("a").shape, (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(t.at("h").data, (std::vector<float>{1, -2}));
    EXPECT_EQ(t.at("b").data, (std::vector<float>{1}));
    EXPECT_EQ(t.count("i"), 0u) << "integer tensors are not weights";

    auto refuse = [&](const std::string& bytes, const std::string& needle) {
        write_file(path, bytes);
        expect_error([&] { microlm::read_safetensors(path); }, needle);
    };
    refuse("", "too small");
    refuse(safetensors("{", ""), "not valid JSON");
    refuse(std::string("\xff\xff\xff\xff\x00\x00\x00\x00{}", 10), "exceeds the file");
    refuse(safetensors(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,32]}})", data),
           "do not lie within");
    refuse(safetensors(R"({"a":{"dtype":"F32","shape":[3,2],"data_offsets":[0,16]}})", data),
           "needs 24 bytes");
    refuse(safetensors(R"({"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", data),
           "not supported");
    refuse(safetensors(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data), "non-negative");
    refuse(safetensors(R"({"a":{"dtype":"F32","shape":[2]}})", data), "data_offsets");
    refuse(safetensors(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}})",
                       data),
           "too large");
    for (size_t n = 0; n < good.size(); ++n) {
        write_file(path, std::string_view(good).substr(0, n));
        EXPECT_THROW(microlm::read_safetensors(path), Error) << "truncated to " << n;
    }
    fs::remove(path);
}

// ---- The CLI -------------------------------------------------------------------------------------------

int shell(const std::string& cmd) {
    const int rc = std::system((cmd + " 2>" + tmp("cli.err")).c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(ConvertCli, SwenAndHf) {
    REQUIRE_FIXTURES();
    const std::string bin = MICROLM_BINARY, out = tmp("cli.gguf");
    ASSERT_EQ(shell(bin + " convert swen " + (kFixtures / "swen/swen_tiny.pth").string() + " --tokenizer " +
                    (kFixtures / "hf").string() + " -o " + out + " --type q8_0 --name cli-test"),
              0)
        << read_file(tmp("cli.err"));
    EXPECT_EQ(microlm::GgufFile::open(out)->get_str("general.name"), "cli-test");
    ASSERT_EQ(shell(bin + " convert hf " + (kFixtures / "hf").string() + " -o " + out + " --type f16"), 0)
        << read_file(tmp("cli.err"));
    EXPECT_NE(microlm::GgufFile::open(out)->find_tensor("output.weight"), nullptr);
    EXPECT_EQ(shell(bin + " convert hf /nonexistent -o " + out), 1);
    EXPECT_NE(read_file(tmp("cli.err")).find("no config.json"), std::string::npos)
        << read_file(tmp("cli.err"));
    EXPECT_EQ(shell(bin + " convert hf " + (kFixtures / "hf").string() + " -o " + out + " --type q4_0"), 1);
    fs::remove(out);
    fs::remove(tmp("cli.err"));
}

}  // namespace

// The K-quant mixes' rule (llama.cpp's use_more_bits for attn_v and ffn_down, Q6_K output) and
// the fallback for rows that are not whole 256-element blocks. On SmolLM2 the rule gives the
// same type counts as llama.cpp's Q4_K_M file (Q4_K x16, Q5_0 x166, Q6_K x14, Q8_0 x15).
TEST(Quantize, MixRuleAndFallbacks) {
    using namespace microlm;
    const auto m = quantize_target("Q4_K_M");
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->file_type, 15u);
    EXPECT_FALSE(quantize_target("q3_k_m").has_value());
    EXPECT_FALSE(quantize_target("").has_value());
    const int64_t n = 30;  // SmolLM2's layers: more bits for 0-2, 26-29 and every third from 5
    EXPECT_EQ(quantized_type(*m, "output.weight", n, 1536), DType::Q6_K);
    EXPECT_EQ(quantized_type(*m, "token_embd.weight", n, 1536), DType::Q6_K);  // tied: the output
    EXPECT_EQ(quantized_type(*m, "blk.0.attn_v.weight", n, 1536), DType::Q6_K);
    EXPECT_EQ(quantized_type(*m, "blk.4.attn_v.weight", n, 1536), DType::Q4_K);
    EXPECT_EQ(quantized_type(*m, "blk.5.ffn_down.weight", n, 1536), DType::Q6_K);
    EXPECT_EQ(quantized_type(*m, "blk.27.ffn_down.weight", n, 1536), DType::Q6_K);
    EXPECT_EQ(quantized_type(*m, "blk.5.attn_q.weight", n, 1536), DType::Q4_K);
    EXPECT_EQ(quantized_type(*m, "blk.5.attn_q.weight", n, 576), DType::Q5_0);  // 576 = 2.25 blocks
    EXPECT_EQ(quantized_type(*m, "blk.0.attn_v.weight", n, 576), DType::Q8_0);
    const auto k5 = quantize_target("q5_k_m");
    EXPECT_EQ(quantized_type(*k5, "blk.5.attn_q.weight", n, 576), DType::Q5_1);
    EXPECT_EQ(quantized_type(*quantize_target("q8_0"), "output.weight", n, 48), DType::F16);  // not whole blocks
}
