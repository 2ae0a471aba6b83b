// `microlm prune` (convert/prune_model.cpp) and cutting a BPE vocabulary (tokenizer
// keep_first_tokens), checked against references built another way: keeping every layer and
// token changes nothing; a cut vocabulary leaves the kept tokens' logits as they were (the output
// rows are the same); dropping a layer is the same as keeping it with its two residual writers
// (attn_output, ffn_down) zeroed, which the forward pass then adds as exact zeros.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/model.h"
#include "microlm/prune.h"
#include "microlm/random_model.h"
#include "microlm/tokenizer.h"

using namespace microlm;

namespace {

std::string temp_path(const std::string& name) {
    return (std::filesystem::temp_directory_path() /
            ("microlm_test_prune_" + std::to_string(::getpid()) + "_" + name + ".gguf"))
        .string();
}

std::string random_model(const std::string& name, int64_t layers, bool tied) {
    LlamaHparams s = *model_shape_preset("tiny");
    s.n_layers = layers;
    s.tied = tied;
    const std::string path = temp_path(name);
    write_random_llama(path, s, DType::F32, 7);
    return path;
}

const std::vector<int32_t> kPrompt = {257, 260, 61, 17, 42, 99, 270, 12, 5, 6, 290, 8};

std::vector<float> all_logits(const std::string& path) {
    auto m = Model::load(path);
    Context c(*m, 64, 1);
    c.eval(kPrompt, true);
    const auto l = c.logits();
    return {l.begin(), l.end()};
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST(PruneModel, KeepingEverythingChangesNothing) {
    const std::string src = random_model("all_src", 2, true), out = temp_path("all_out");
    PruneOptions o;
    o.layers = {0, 1};
    const PruneSummary s = prune_model(src, out, o);
    EXPECT_EQ(s.params_in, s.params_out);
    EXPECT_EQ(all_logits(src), all_logits(out));
    std::filesystem::remove(src);
    std::filesystem::remove(out);
}

TEST(PruneModel, CutVocabularyKeepsTheKeptTokensLogits) {
    for (const bool tied : {true, false}) {
        const std::string src = random_model(tied ? "vocab_tied" : "vocab_untied", 2, tied);
        const std::string out = temp_path(tied ? "vocab_tied_out" : "vocab_untied_out");
        PruneOptions o;
        o.layers = {0, 1};
        o.vocab = 300;
        prune_model(src, out, o);
        const auto pruned = Model::load(out);
        EXPECT_EQ(pruned->config().n_vocab, 300);
        EXPECT_EQ(pruned->tied_output, tied);
        const std::vector<float> a = all_logits(src), b = all_logits(out);
        ASSERT_EQ(b.size(), kPrompt.size() * 300);
        for (size_t pos = 0; pos < kPrompt.size(); ++pos) {
            for (size_t v = 0; v < 300; ++v) ASSERT_EQ(b[pos * 300 + v], a[pos * 512 + v]) << pos << " " << v;
        }
        std::filesystem::remove(src);
        std::filesystem::remove(out);
    }
}

TEST(PruneModel, ADroppedLayerIsALayerThatWritesNothing) {
    const std::string src = random_model("drop_src", 4, true), out = temp_path("drop_out"),
                      zeroed = temp_path("drop_zeroed");
    PruneOptions o;
    o.layers = {0, 2, 3};
    prune_model(src, out, o);
    {  // the reference: layer 1 kept, its attention and FFN outputs multiplied by zero
        const auto f = GgufFile::open(src);
        GgufWriter w;
        for (const auto& [key, value] : f->metadata()) w.set(key, value);
        for (const GgufTensor& t : f->tensors()) {
            std::vector<uint8_t> bytes(t.data, t.data + t.bytes);
            if (t.name == "blk.1.attn_output.weight" || t.name == "blk.1.ffn_down.weight") bytes.assign(t.bytes, 0);
            w.add_tensor(t.name, static_cast<DType>(t.type), t.dims, bytes.data(), bytes.size());
        }
        w.write(zeroed);
    }
    EXPECT_EQ(Model::load(out)->config().n_layers, 3);
    const std::vector<float> a = all_logits(zeroed), b = all_logits(out);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5f) << i;
    EXPECT_NE(all_logits(src), b);  // and layer 1 did matter
    const auto pruned = GgufFile::open(out);
    EXPECT_EQ(pruned->get_str("general.source.pruned_layers"), "0,2,3");
    for (const std::string& p : {src, out, zeroed}) std::filesystem::remove(p);
}

TEST(PruneModel, BadRequestsAreNamedErrors) {
    const std::string src = random_model("bad_src", 2, true), out = temp_path("bad_out");
    PruneOptions o;
    o.layers = {0, 2};
    EXPECT_NE(error_of([&] { prune_model(src, out, o); }).find("not 2"), std::string::npos);
    o.layers = {0};
    o.vocab = 600;
    EXPECT_NE(error_of([&] { prune_model(src, out, o); }).find("600 asked"), std::string::npos);
    o.vocab = 200;  // the special tokens are 256-258
    EXPECT_NE(error_of([&] { prune_model(src, out, o); }).find("past the first 200"), std::string::npos);
    EXPECT_FALSE(std::filesystem::exists(out));
    std::filesystem::remove(src);
}

TEST(PruneModel, LayerLists) {
    EXPECT_EQ(parse_layer_list("0-2,27-29"), (std::vector<int64_t>{0, 1, 2, 27, 28, 29}));
    EXPECT_EQ(parse_layer_list("5"), (std::vector<int64_t>{5}));
    for (const char* bad : {"", "a", "3,1", "1,1", "2-1", "1-", "-1", "1.5", "0-2x"}) {
        EXPECT_NE(error_of([&] { parse_layer_list(bad); }), "no error") << bad;
    }
}

TEST(KeepFirstTokens, CutVocabularyEncodesEveryTextWithinIt) {
    const std::string src = random_model("tok_src", 1, true);
    const auto f = GgufFile::open(src);
    const VocabData full = vocab_from_gguf(*f);
    const VocabData cut = keep_first_tokens(full, 300);
    EXPECT_EQ(cut.tokens.size(), 300u);
    EXPECT_EQ(cut.token_types.size(), 300u);
    // Each merge of the random vocabulary makes the token after the previous merge's.
    EXPECT_EQ(cut.merges.size(), 300u - (full.tokens.size() - full.merges.size()));
    const Tokenizer a(full), b(cut);
    const std::string text = "Hello there, general Kenobi! 12345 \xc3\xa9t\xc3\xa9 <|im_start|> tab\tnew\nline";
    const std::vector<int32_t> ids = b.encode(text, false, false);
    for (const int32_t id : ids) ASSERT_LT(id, 300);
    EXPECT_EQ(b.decode(ids, true), text);
    EXPECT_GE(ids.size(), a.encode(text, false, false).size());
    EXPECT_EQ(keep_first_tokens(full, static_cast<int32_t>(full.tokens.size())).merges, full.merges);
    EXPECT_NE(error_of([&] { keep_first_tokens(full, 0); }), "no error");
    VocabData spm = full;
    spm.model = "llama";
    EXPECT_NE(error_of([&] { keep_first_tokens(spm, 300); }).find("only byte-level BPE"), std::string::npos);
    std::filesystem::remove(src);
}
