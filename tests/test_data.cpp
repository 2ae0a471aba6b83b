// Tests of the data pipeline on a miniature copy of the shared data tree that the test writes
// itself (zstd via libzstd, gzip via zlib): stream readers, each corpus format, hold-outs, loss
// masks, split determinism, the manifest, and that a failed run leaves no files behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "microlm/bpe_trainer.h"
#include "microlm/chat.h"
#include "microlm/data.h"
#include "microlm/error.h"

#ifdef MICROLM_HAVE_ZSTD
#include <zstd.h>
#endif
#ifdef MICROLM_HAVE_ZLIB
#include <zlib.h>
#endif

namespace {

namespace fs = std::filesystem;
namespace data = microlm::data;
using microlm::ChatMessage;
using microlm::Tokenizer;
using nlohmann::json;

TEST(DataPlan, SharesAreEvenBetweenSourcesAndProportionalWithin) {
    using S = data::Source;
    const std::vector<S> src = {S::kBooks, S::kBooks, S::kAlpacaEval, S::kHhRlhf};
    // hh (50) takes all of itself; books (400) and AlpacaEval split the remaining 550.
    const auto sh = data::source_shares(src, {100, 300, 1000, 50}, 600);
    ASSERT_EQ(sh.size(), 4u);
    EXPECT_DOUBLE_EQ(sh[0], 68.75);
    EXPECT_DOUBLE_EQ(sh[1], 206.25);
    EXPECT_DOUBLE_EQ(sh[2], 275);
    EXPECT_DOUBLE_EQ(sh[3], 50);
    EXPECT_EQ(data::source_shares(src, {100, 300, 1000, 50}, 1e9), (std::vector<double>{100, 300, 1000, 50}));
    EXPECT_EQ(data::source_shares(src, {0, 0, 0, 0}, 10), (std::vector<double>{0, 0, 0, 0}));
}

#if defined(MICROLM_HAVE_ZSTD) && defined(MICROLM_HAVE_ZLIB)

fs::path fresh_dir(const std::string& name) {
    const fs::path p = fs::path(testing::TempDir()) / ("microlm_data_" + name);
    fs::remove_all(p);
    fs::create_directories(p);
    return p;
}

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

void write_file(const fs::path& p, const std::string& bytes) {
    fs::create_directories(p.parent_path());
    std::ofstream f(p, std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// `content` cut into `frames` pieces, each its own zstd frame, concatenated.
std::string zstd_bytes(const std::string& content, int frames = 1) {
    std::string out;
    const auto frame = [&](const std::string& part) {
        std::string buf(ZSTD_compressBound(part.size()), '\0');
        const size_t n = ZSTD_compress(buf.data(), buf.size(), part.data(), part.size(), 3);
        EXPECT_FALSE(ZSTD_isError(n));
        out.append(buf.data(), n);
    };
    const size_t piece = content.size() / static_cast<size_t>(frames) + 1;
    for (size_t at = 0; at < content.size(); at += piece) frame(content.substr(at, piece));
    if (content.empty()) frame(content);
    return out;
}

// `content` as `members` concatenated gzip members.
std::string gzip_bytes(const std::string& content, int members = 1) {
    std::string out;
    const size_t piece = content.size() / static_cast<size_t>(members) + 1;
    for (size_t at = 0; at < content.size(); at += piece) {
        const std::string part = content.substr(at, piece);
        z_stream z{};
        EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
        std::string buf(deflateBound(&z, part.size()) + 32, '\0');
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(part.data()));
        z.avail_in = static_cast<uInt>(part.size());
        z.next_out = reinterpret_cast<Bytef*>(buf.data());
        z.avail_out = static_cast<uInt>(buf.size());
        EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
        out.append(buf.data(), buf.size() - z.avail_out);
        deflateEnd(&z);
    }
    return out;
}

std::vector<std::string> all_lines(const std::string& path) {
    data::LineReader r(path);
    std::vector<std::string> out;
    std::string line;
    while (r.next(line)) out.push_back(line);
    return out;
}

TEST(DataReaders, LinesFromZstdGzipAndPlainFiles) {
    const fs::path dir = fresh_dir("lines");
    // A line longer than the reader's chunk, empty lines, and no '\n' after the last line.
    const std::vector<std::string> want = {"first",      "", std::string(300000, 'x') + "y",
                                           "{\"k\": 1}", "", "last"};
    std::string text;
    for (size_t i = 0; i < want.size(); ++i) text += want[i] + (i + 1 < want.size() ? "\n" : "");
    write_file(dir / "a.jsonl.zst", zstd_bytes(text, 3));
    write_file(dir / "a.jsonl.gz", gzip_bytes(text, 2));
    write_file(dir / "a.jsonl", text);
    for (const char* name : {"a.jsonl.zst", "a.jsonl.gz", "a.jsonl"}) {
        EXPECT_EQ(all_lines((dir / name).string()), want) << name;
    }
    write_file(dir / "empty.jsonl.zst", zstd_bytes(""));
    EXPECT_TRUE(all_lines((dir / "empty.jsonl.zst").string()).empty());
}

TEST(DataReaders, CorruptAndTruncatedFilesThrow) {
    const fs::path dir = fresh_dir("corrupt");
    std::mt19937 rng(3);
    std::string text;
    for (int i = 0; i < 20000; ++i) text += std::to_string(rng()) + "\n";
    const std::string z = zstd_bytes(text), g = gzip_bytes(text);
    write_file(dir / "cut.jsonl.zst", z.substr(0, z.size() / 2));
    write_file(dir / "cut.jsonl.gz", g.substr(0, g.size() / 2));
    write_file(dir / "junk.jsonl.zst", "this is not zstd at all");
    write_file(dir / "junk.jsonl.gz", "this is not gzip at all");
    for (const char* name : {"cut.jsonl.zst", "cut.jsonl.gz", "junk.jsonl.zst", "junk.jsonl.gz"}) {
        EXPECT_THROW(all_lines((dir / name).string()), microlm::Error) << name;
    }
    EXPECT_THROW(data::LineReader((dir / "missing.jsonl").string()), microlm::Error);
}

TEST(DataReaders, JsonArrayElementsOneAtATime) {
    const fs::path dir = fresh_dir("array");
    const std::string arr =
        "\xEF\xBB\xBF [\n {\"a\": \"x]}\\\"{\"},\n{\"b\":[1,[2,{}]]} ,{\"c\":\"\\\\\"}\n]\n";
    write_file(dir / "x.json.zst", zstd_bytes(arr));
    data::JsonArrayReader r((dir / "x.json.zst").string());
    std::vector<json> got;
    std::string el;
    while (r.next(el)) got.push_back(json::parse(el));
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0]["a"], "x]}\"{");
    EXPECT_EQ(got[1]["b"][1][0], 2);
    EXPECT_EQ(got[2]["c"], "\\");

    write_file(dir / "empty.json", " [ ] ");
    data::JsonArrayReader e((dir / "empty.json").string());
    EXPECT_FALSE(e.next(el));
    write_file(dir / "obj.json", "{\"a\": 1}");
    data::JsonArrayReader o((dir / "obj.json").string());
    EXPECT_THROW(o.next(el), microlm::Error);
    write_file(dir / "cut.json", "[{\"a\": \"unterminated");
    data::JsonArrayReader c((dir / "cut.json").string());
    EXPECT_THROW(c.next(el), microlm::Error);
}

// ---- A miniature data tree -------------------------------------------------------------------

// Every text that must never reach a shard carries "SECRET".
struct Tree {
    fs::path root;
    std::string books, alpaca, sgd, gpteacher, hh, arena, eval;
    std::vector<std::string> inputs() const { return {books, alpaca, sgd, gpteacher, hh, arena}; }
};

std::string jl(const json& j) {
    return j.dump() + "\n";
}

Tree make_tree(const std::string& name) {
    Tree t;
    t.root = fresh_dir(name);
    const fs::path r = t.root;
    write_file(
        r / "eval/mt_bench_questions.jsonl",
        jl({{"question_id", 81},
            {"turns", {"Compose an engaging travel blog post about Zanzibar.", "Rewrite it in verse."}}}));
    write_file(r / "eval/vicuna_questions.jsonl",
               jl({{"question_id", 1}, {"turns", {"How can I improve my time management skills?"}}}));
    write_file(r / "eval/arena_hard_v0.1_questions.jsonl",
               jl({{"uid", "u1"}, {"prompt", "Write a SCIM server in PHP."}}));
    write_file(
        r / "eval/mt_bench_gpt4_answers.jsonl",
        jl({{"question_id", 81}, {"choices", {{{"index", 0}, {"turns", {"An answer, not a question."}}}}}}));

    std::mt19937 rng(5);
    const char* words[] = {"river",  "castle", "morning", "quiet", "letters",
                           "garden", "storm",  "window",  "road",  "friend"};
    const auto prose = [&](int n) {
        std::string s;
        for (int i = 0; i < n; ++i)
            s += std::string(i ? " " : "") + words[rng() % 10] + (rng() % 9 == 0 ? ".\n\n" : "");
        return s;
    };

    std::string books;
    for (int b = 0; b < 4; ++b) {
        books += jl({{"id", "book" + std::to_string(b)},
                     {"author", "A"},
                     {"title", "T"},
                     {"text", "BOOK" + std::to_string(b) + " " + prose(150)}});
    }
    t.books = (r / "pretrain/gutenberg-00.jsonl.zst").string();
    write_file(t.books, zstd_bytes(books, 2));

    std::string alpaca;
    for (int pid = 0; pid < 60; ++pid) {
        const bool held = pid % 10 == 0;
        for (const char* gen : {"modelA", "modelB", "modelC"}) {
            std::string instruction =
                "Question " + std::to_string(pid) + ": tell me about the " + words[pid % 10] + ".";
            std::string output = "Reply " + std::to_string(pid) + "/" + gen + ": " + prose(20);
            if (held) {
                instruction += " SECRET";
                output += " SECRET";
            }
            alpaca += jl({{"prompt_id", pid},
                          {"dataset", "oasst"},
                          {"generator", gen},
                          {"instruction", instruction},
                          {"output", output}});
        }
    }
    // The vicuna subset, and an eval question written with other spacing and case.
    alpaca += jl({{"prompt_id", 61},
                  {"dataset", "vicuna"},
                  {"generator", "m"},
                  {"instruction", "SECRET vicuna"},
                  {"output", "SECRET"}});
    alpaca += jl({{"prompt_id", 63},
                  {"dataset", "koala"},
                  {"generator", "m"},
                  {"instruction", "  how can I improve my\n time management SKILLS? "},
                  {"output", "SECRET eval question"}});
    t.alpaca = (r / "chat/alpaca_eval_outputs.jsonl.zst").string();
    write_file(t.alpaca, zstd_bytes(alpaca));

    std::string sgd;
    for (int d = 0; d < 6; ++d) {
        json turns = json::array();
        turns.push_back({{"speaker", "USER"}, {"text", "Find me a restaurant " + std::to_string(d)}});
        turns.push_back({{"speaker", "SYSTEM"}, {"text", "Which city, dialogue " + std::to_string(d) + "?"}});
        turns.push_back(
            {{"speaker", "USER"}, {"text", d == 5 ? "Write a SCIM server in PHP." : "San Jose please."}});
        turns.push_back(
            {{"speaker", "SYSTEM"}, {"text", d == 5 ? "SECRET sgd" : "Booked " + std::to_string(d) + "."}});
        sgd += jl({{"dialogue_id", "1_0000" + std::to_string(d)},
                   {"split", "train"},
                   {"services", {"R"}},
                   {"turns", turns}});
    }
    t.sgd = (r / "chat/sgd_dialogues.jsonl.zst").string();
    write_file(t.sgd, zstd_bytes(sgd));

    json gpt = json::array();
    gpt.push_back({{"instruction", "Play a pirate."}, {"input", ""}, {"output", "Arr, matey."}});
    gpt.push_back({{"instruction", "Summarise."}, {"input", "A long story."}, {"output", "A story."}});
    gpt.push_back({{"instruction", "Rewrite it in verse."}, {"input", ""}, {"output", "SECRET gpteacher"}});
    t.gpteacher = (r / "chat/gpteacher_roleplay.json.zst").string();
    write_file(t.gpteacher, zstd_bytes(gpt.dump(2)));

    std::string hh;
    hh += jl({{"chosen",
               "\n\nHuman: Hi, who are you?\n\nAssistant: A helpful assistant.\n\nHuman: "
               "Thanks\n\nAssistant: Welcome!"},
              {"rejected", "\n\nHuman: Hi\n\nAssistant: SECRET rejected"}});
    hh += jl({{"chosen", "\n\nHuman: How can I improve my time management skills?\n\nAssistant: SECRET hh"},
              {"rejected", "x"}});
    t.hh = (r / "chat/hh_rlhf_harmless_base_test.jsonl.gz").string();
    write_file(t.hh, gzip_bytes(hh));

    t.arena = (r / "chat/arena_hard_v0.1_gpt-4-0314.jsonl.zst").string();
    write_file(t.arena,
               zstd_bytes(jl({{"uid", "u1"},
                              {"messages",
                               {{{"role", "user"}, {"content", "Write a SCIM server in PHP."}},
                                {{"role", "assistant"}, {"content", {{"answer", "SECRET arena"}}}}}}})));
    t.eval = (r / "eval").string();
    return t;
}

std::vector<data::Document> read_all(const std::string& path, const data::HoldOut& h,
                                     data::ReadStats* stats = nullptr) {
    data::DocumentReader r(path, h);
    std::vector<data::Document> out;
    data::Document d;
    while (r.next(d)) out.push_back(d);
    if (stats) *stats = r.stats();
    return out;
}

// A small tokenizer trained on the fixtures' kind of text.
const Tokenizer& test_tokenizer(std::optional<std::string> system = {}) {
    static std::map<std::optional<std::string>, std::unique_ptr<Tokenizer>> cache;
    auto& slot = cache[system];
    if (!slot) {
        microlm::BpeTrainerOptions o;
        o.vocab_size = 320;
        o.default_system = system;
        microlm::BpeTrainer t(o);
        std::mt19937 rng(1);
        const char* words[] = {"river", "castle", "morning", "quiet",  "letters",  "garden",
                               "storm", "window", "road",    "friend", "Question", "Reply",
                               "tell",  "me",     "about",   "the",    "model"};
        for (int d = 0; d < 200; ++d) {
            std::string s;
            for (int i = 0; i < 30; ++i)
                s += std::string(" ") + words[rng() % std::size(words)] + std::to_string(rng() % 100);
            t.add_text(s);
        }
        slot = std::make_unique<Tokenizer>(t.train());
    }
    return *slot;
}

TEST(DataSources, EachFormatAndItsHoldOuts) {
    const Tree t = make_tree("sources");
    const data::HoldOut h = data::HoldOut::from_eval_dir(t.eval);
    EXPECT_EQ(h.size(), 4u);  // 2 MT-Bench turns, 1 Vicuna, 1 Arena-Hard; the answers file has none
    EXPECT_TRUE(h.is_eval_question("how can i improve my TIME management skills?"));
    EXPECT_FALSE(h.is_eval_question("An answer, not a question."));

    data::ReadStats s;
    auto books = read_all(t.books, h, &s);
    ASSERT_EQ(books.size(), 4u);
    EXPECT_FALSE(books[0].is_chat());
    EXPECT_EQ(books[0].id, "books:book0:0");
    EXPECT_EQ(books[0].group, "books:book0");
    EXPECT_EQ(books[0].text.substr(0, 6), "BOOK0 ");

    auto alpaca = read_all(t.alpaca, h, &s);
    EXPECT_EQ(alpaca.size(), 54u * 3u);
    EXPECT_EQ(s.held_out_prompt_id, 6u * 3u);
    EXPECT_EQ(s.held_out_eval, 2u);  // the vicuna subset and the respaced eval question
    EXPECT_EQ(alpaca[0].group, "alpaca_eval:1");
    ASSERT_EQ(alpaca[0].messages.size(), 2u);
    EXPECT_EQ(alpaca[0].messages[0].role, "user");
    EXPECT_EQ(alpaca[0].messages[1].role, "assistant");

    auto sgd = read_all(t.sgd, h, &s);
    ASSERT_EQ(sgd.size(), 5u);
    EXPECT_EQ(s.held_out_eval, 1u);
    EXPECT_EQ(sgd[0].messages.size(), 4u);
    EXPECT_EQ(sgd[0].messages[1].role, "assistant");
    EXPECT_EQ(sgd[0].messages[1].content, "Which city, dialogue 0?");

    auto gpt = read_all(t.gpteacher, h, &s);
    ASSERT_EQ(gpt.size(), 2u);
    EXPECT_EQ(s.held_out_eval, 1u);
    EXPECT_EQ(gpt[1].messages[0].content, "Summarise.\n\nA long story.");

    auto hh = read_all(t.hh, h, &s);
    ASSERT_EQ(hh.size(), 1u);
    EXPECT_EQ(s.held_out_eval, 1u);
    const std::vector<std::pair<std::string, std::string>> want = {{"user", "Hi, who are you?"},
                                                                   {"assistant", "A helpful assistant."},
                                                                   {"user", "Thanks"},
                                                                   {"assistant", "Welcome!"}};
    ASSERT_EQ(hh[0].messages.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(hh[0].messages[i].role, want[i].first);
        EXPECT_EQ(hh[0].messages[i].content, want[i].second);
    }

    EXPECT_TRUE(read_all(t.arena, h, &s).empty());
    EXPECT_TRUE(s.skipped_file);
    EXPECT_EQ(s.records, 0u);

    EXPECT_THROW(data::source_of_path("/x/unknown.jsonl.zst"), microlm::Error);
    EXPECT_THROW(data::HoldOut::from_eval_dir((t.root / "nowhere").string()), microlm::Error);
    EXPECT_EQ(data::eval_dir_beside({t.alpaca}), t.eval);
}

TEST(DataSources, BooksAreCutIntoPassagesAtParagraphBreaks) {
    const fs::path dir = fresh_dir("passages");
    std::mt19937 rng(9);
    std::vector<std::string> paragraphs;
    std::string text;
    for (int i = 0; i < 400; ++i) {
        std::string p = "Paragraph " + std::to_string(i) + std::string(50 + rng() % 400, 'w');
        text += (i ? "\n\n" : "") + p;
        paragraphs.push_back(p);
    }
    write_file(
        dir / "pretrain/gutenberg-07.jsonl.zst",
        zstd_bytes(jl({{"id", "b"}, {"text", text}}) + jl({{"id", "small"}, {"text", "Short book."}})));
    write_file(dir / "eval/q.jsonl", jl({{"prompt", "q"}}));
    const data::HoldOut h = data::HoldOut::from_eval_dir((dir / "eval").string());
    const auto docs = read_all((dir / "pretrain/gutenberg-07.jsonl.zst").string(), h);
    ASSERT_GE(docs.size(), 5u);
    std::string joined;
    for (size_t i = 0; i + 1 < docs.size(); ++i) {
        EXPECT_EQ(docs[i].group, "books:b");
        EXPECT_EQ(docs[i].id, "books:b:" + std::to_string(i));
        // Each passage is at least kPassageBytes, except the book's last: at least a quarter.
        EXPECT_GE(docs[i].text.size(), data::DocumentReader::kPassageBytes / (i + 2 < docs.size() ? 1 : 4));
        EXPECT_LT(docs[i].text.size(), data::DocumentReader::kPassageBytes * 2);
        EXPECT_EQ(docs[i].text.substr(0, 10), "Paragraph ");
        joined += (i ? "\n\n" : "") + docs[i].text;
    }
    EXPECT_EQ(joined, text) << "passages must be the book, cut only at paragraph breaks";
    EXPECT_EQ(docs.back().text, "Short book.");
    EXPECT_EQ(docs.back().id, "books:small:0");
}

TEST(DataSources, BadRecordsNameTheFileAndLine) {
    const fs::path dir = fresh_dir("bad");
    write_file(dir / "eval/q.jsonl", jl({{"prompt", "q"}}));
    const data::HoldOut h = data::HoldOut::from_eval_dir((dir / "eval").string());
    const auto message = [&](const std::string& name, const std::string& content) {
        write_file(dir / "chat" / name, content);
        try {
            read_all((dir / "chat" / name).string(), h);
        } catch (const microlm::Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    const std::string ok = jl({{"dialogue_id", "1"}, {"turns", {{{"speaker", "USER"}, {"text", "hi"}}}}});
    EXPECT_NE(message("sgd_dialogues.jsonl", ok + "{not json\n").find("sgd_dialogues.jsonl:2: "),
              std::string::npos);
    EXPECT_NE(
        message("sgd_dialogues.jsonl", ok + jl({{"dialogue_id", 7}})).find(":2: expected a string field"),
        std::string::npos);
    EXPECT_NE(message("sgd_dialogues.jsonl",
                      jl({{"dialogue_id", "1"}, {"turns", {{{"speaker", "BOT"}, {"text", "x"}}}}}))
                  .find("expected USER or SYSTEM"),
              std::string::npos);
    // A field of another type deep inside nlohmann's accessors still becomes a microlm::Error.
    EXPECT_NE(message("alpaca_eval_outputs.jsonl",
                      jl({{"prompt_id", 1}, {"dataset", 5}, {"instruction", "i"}, {"output", "o"}}))
                  .find("alpaca_eval_outputs.jsonl:1: "),
              std::string::npos);
    EXPECT_NE(message("gpteacher_x.json", "[{\"instruction\": \"i\", \"input\": [], \"output\": \"o\"}]")
                  .find("element 0"),
              std::string::npos);
}

TEST(DataSources, SamplingKeepsTheSameDocumentsEveryTime) {
    const Tree t = make_tree("sample");
    const data::HoldOut h = data::HoldOut::from_eval_dir(t.eval);
    const auto ids = [&] {
        data::DocumentReader r(t.alpaca, h, 0.3);
        std::vector<std::string> out;
        data::Document d;
        while (r.next(d)) out.push_back(d.id);
        return out;
    };
    const auto a = ids(), b = ids();
    EXPECT_EQ(a, b);
    EXPECT_GT(a.size(), 162u * 15 / 100);
    EXPECT_LT(a.size(), 162u * 45 / 100);
}

// Tokens of [begin, end) decoded with specials shown.
std::string text_of(const Tokenizer& tok, const std::vector<uint16_t>& ids, size_t begin, size_t end) {
    const std::vector<int32_t> v(ids.begin() + static_cast<std::ptrdiff_t>(begin),
                                 ids.begin() + static_cast<std::ptrdiff_t>(end));
    return tok.decode(v, true);
}

// The targets of an encoded document as decoded runs of consecutive mask-1 tokens.
std::vector<std::string> target_runs(const Tokenizer& tok, const data::EncodedDocument& e) {
    std::vector<std::string> runs;
    for (size_t i = 0; i < e.ids.size();) {
        if (!e.mask[i]) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < e.ids.size() && e.mask[j]) ++j;
        runs.push_back(text_of(tok, e.ids, i, j));
        i = j;
    }
    return runs;
}

TEST(DataEncoding, ChatLossMaskCoversOnlyTheAssistant) {
    const Tokenizer& tok = test_tokenizer();
    data::Document doc;
    doc.messages = {{"user", "Hi there, what is 2+2?"},
                    {"assistant", "It is 4."},
                    {"user", "Thanks!"},
                    {"assistant", "You're welcome."}};
    data::EncodedDocument e;
    data::encode_document(tok, doc, std::nullopt, e);
    ASSERT_EQ(e.ids.size(), e.mask.size());
    EXPECT_EQ(text_of(tok, e.ids, 0, e.ids.size()),
              microlm::format_chatml(doc.messages, false, std::nullopt) + "<|endoftext|>");
    EXPECT_EQ(target_runs(tok, e),
              (std::vector<std::string>{"It is 4.<|im_end|>", "You're welcome.<|im_end|>"}));
    // The reply's tokens are those the model generates after "<|im_start|>assistant\n".
    const auto reply = tok.encode("It is 4.", false, false);
    const auto first = std::find(e.mask.begin(), e.mask.end(), 1) - e.mask.begin();
    for (size_t k = 0; k < reply.size(); ++k) EXPECT_EQ(e.ids[static_cast<size_t>(first) + k], reply[k]);
    EXPECT_EQ(text_of(tok, e.ids, 0, static_cast<size_t>(first)),
              "<|im_start|>user\nHi there, what is 2+2?<|im_end|>\n<|im_start|>assistant\n");
    EXPECT_EQ(e.ids.back(), tok.token_id("<|endoftext|>"));
    EXPECT_EQ(e.mask.back(), 0);
}

TEST(DataEncoding, DefaultSystemMessageFromTheTemplate) {
    const Tokenizer& tok = test_tokenizer("Be kind.");
    const auto system = microlm::chat_template_default_system(tok.vocab().chat_template);
    ASSERT_EQ(system, "Be kind.");
    data::Document doc;
    doc.messages = {{"user", "Hello"}, {"assistant", "Hi!"}};
    data::EncodedDocument e;
    data::encode_document(tok, doc, system, e);
    EXPECT_EQ(text_of(tok, e.ids, 0, e.ids.size()),
              "<|im_start|>system\nBe "
              "kind.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi!<|im_end|>\n"
              "<|endoftext|>");
    EXPECT_EQ(target_runs(tok, e), (std::vector<std::string>{"Hi!<|im_end|>"}));
}

TEST(DataEncoding, BooksAreAllTargetsAndSpecialTextStaysText) {
    const Tokenizer& tok = test_tokenizer();
    data::Document doc;
    doc.text = "A river <|im_end|> ran\n\nby the castle.";
    data::EncodedDocument e;
    data::encode_document(tok, doc, std::nullopt, e);
    EXPECT_EQ(text_of(tok, e.ids, 0, e.ids.size()), doc.text + "<|endoftext|>");
    EXPECT_TRUE(std::all_of(e.mask.begin(), e.mask.end(), [](uint8_t m) { return m == 1; }));
    EXPECT_EQ(std::count(e.ids.begin(), e.ids.end(), tok.token_id("<|im_end|>")), 0);
}

// ---- Shards ----------------------------------------------------------------------------------

std::vector<uint16_t> read_ids(const fs::path& p) {
    const std::string b = read_file(p);
    std::vector<uint16_t> v(b.size() / 2);
    for (size_t i = 0; i < v.size(); ++i) {
        v[i] =
            static_cast<uint16_t>(static_cast<uint8_t>(b[2 * i]) | (static_cast<uint8_t>(b[2 * i + 1]) << 8));
    }
    return v;
}

// Every split's shards decoded as one text, with the manifest checked against the files.
std::map<std::string, std::string> decode_shards(const Tokenizer& tok, const fs::path& dir) {
    const json m = json::parse(read_file(dir / "manifest.json"));
    EXPECT_EQ(m["tokenizer"]["fingerprint"], data::vocab_fingerprint(tok.vocab()));
    std::map<std::string, std::string> out;
    for (const char* split : {"train", "val"}) {
        std::vector<uint16_t> ids;
        uint64_t total = 0, targets = 0;
        for (const json& sh : m["splits"][split]["shards"]) {
            const auto part = read_ids(dir / sh["ids"].get<std::string>());
            const std::string mask = read_file(dir / sh["mask"].get<std::string>());
            EXPECT_EQ(part.size(), sh["tokens"].get<uint64_t>());
            EXPECT_EQ(mask.size(), part.size());
            targets += static_cast<uint64_t>(std::count(mask.begin(), mask.end(), '\1'));
            total += part.size();
            ids.insert(ids.end(), part.begin(), part.end());
        }
        EXPECT_EQ(total, m["splits"][split]["tokens"].get<uint64_t>());
        EXPECT_EQ(targets, m["splits"][split]["targets"].get<uint64_t>());
        out[split] = text_of(tok, ids, 0, ids.size());
    }
    return out;
}

std::map<std::string, std::string> folder_contents(const fs::path& dir) {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out[e.path().filename().string()] = read_file(e.path());
    return out;
}

data::ShardOptions options(const Tree& t, const fs::path& out) {
    data::ShardOptions o;
    o.inputs = t.inputs();
    o.out_dir = out.string();
    o.tokenizer_path = "test";
    o.val_fraction = 0.3;
    o.shard_tokens = 1000;
    return o;
}

TEST(DataShards, HeldOutPromptsNeverReachAShard) {
    const Tree t = make_tree("holdout");
    const data::HoldOut h = data::HoldOut::from_eval_dir(t.eval);
    const Tokenizer& tok = test_tokenizer();
    const fs::path out = t.root / "shards";
    const data::ShardSummary s = data::build_shards(tok, h, options(t, out));
    const auto text = decode_shards(tok, out);
    for (const auto& [split, body] : text) {
        EXPECT_EQ(body.find("SECRET"), std::string::npos) << split;
        EXPECT_EQ(body.find("time management"), std::string::npos) << split;
        EXPECT_EQ(body.find("SCIM"), std::string::npos) << split;
        EXPECT_EQ(body.find("Rewrite it in verse"), std::string::npos) << split;
        for (int pid = 0; pid < 60; pid += 10) {
            EXPECT_EQ(body.find("Question " + std::to_string(pid) + ":"), std::string::npos)
                << split << " " << pid;
        }
    }
    // Everything else is there: 54 prompts x 3 answers, 4 books, 5 + 2 + 1 conversations.
    EXPECT_EQ(s.train.docs + s.val.docs, 162u + 4u + 5u + 2u + 1u);
    const std::string all = text.at("train") + text.at("val");
    for (int pid = 1; pid < 60; ++pid) {
        if (pid % 10 == 0) continue;
        EXPECT_NE(all.find("Question " + std::to_string(pid) + ":"), std::string::npos) << pid;
    }
    EXPECT_NE(all.find("BOOK3 "), std::string::npos);
    EXPECT_NE(all.find("Welcome!<|im_end|>"), std::string::npos);
}

TEST(DataShards, SplitIsByGroupAndDeterministic) {
    const Tree t = make_tree("split");
    const data::HoldOut h = data::HoldOut::from_eval_dir(t.eval);
    const Tokenizer& tok = test_tokenizer();
    auto o = options(t, t.root / "a");
    data::build_shards(tok, h, o);
    o.out_dir = (t.root / "b").string();
    o.threads = 3;
    data::build_shards(tok, h, o);
    const auto a = folder_contents(t.root / "a"), b = folder_contents(t.root / "b");
    EXPECT_EQ(a.size(), b.size());
    for (const auto& [name, bytes] : a) {
        EXPECT_TRUE(b.count(name) && b.at(name) == bytes) << name << " differs between runs";
    }

    // All answers to one prompt sit on one side; both sides are used.
    const auto text = decode_shards(tok, t.root / "a");
    int in_val = 0;
    for (int pid = 1; pid < 60; ++pid) {
        if (pid % 10 == 0) continue;
        const std::string key = "Question " + std::to_string(pid) + ":";
        const bool tr = text.at("train").find(key) != std::string::npos,
                   va = text.at("val").find(key) != std::string::npos;
        EXPECT_NE(tr, va) << "prompt " << pid << " is in both splits or in neither";
        in_val += va;
    }
    EXPECT_GT(in_val, 3);
    EXPECT_LT(in_val, 30);
}

TEST(DataShards, MaxTokensInterleavesSourcesAndRewritesCleanly) {
    const Tree t = make_tree("max");
    const data::HoldOut h = data::HoldOut::from_eval_dir(t.eval);
    const Tokenizer& tok = test_tokenizer();
    const fs::path out = t.root / "out";
    auto o = options(t, out);
    o.shard_tokens = 100;
    data::build_shards(tok, h, o);  // many small shards
    const size_t many = folder_contents(out).size();

    o.max_tokens = 3000;
    o.shard_tokens = 1000;
    const data::ShardSummary s = data::build_shards(tok, h, o);
    EXPECT_GE(s.train.tokens + s.val.tokens, 3000u);
    EXPECT_LT(s.train.tokens + s.val.tokens, 3000u + 2000u);
    int sources = 0;
    for (const auto& in : s.inputs) sources += (in.train.docs + in.val.docs) > 0;
    EXPECT_GE(sources, 4) << "a token limit must not fill up on the first input alone";
    // ... nor take the beginning of a file: a fifth of AlpacaEval has early and late prompts.
    const fs::path alpaca_only = t.root / "alpaca_only";
    auto oa = options(t, alpaca_only);
    oa.inputs = {t.alpaca};
    const data::ShardSummary whole = data::build_shards(tok, h, oa);
    oa.max_tokens = static_cast<int64_t>((whole.train.tokens + whole.val.tokens) / 5);
    data::build_shards(tok, h, oa);
    const auto text = decode_shards(tok, alpaca_only);
    const std::string all = text.at("train") + text.at("val");
    int early = 0, late = 0;
    for (int pid = 1; pid < 60; ++pid) {
        const bool found = all.find("Question " + std::to_string(pid) + ":") != std::string::npos;
        early += pid < 20 && found;
        late += pid >= 40 && found;
    }
    EXPECT_GT(early, 0);
    EXPECT_GT(late, 0);
    // The earlier run's extra shards are gone; what is left is exactly what the manifest names.
    const auto files = folder_contents(out);
    EXPECT_LT(files.size(), many);
    const json m = json::parse(files.at("manifest.json"));
    size_t named = 1;
    for (const char* split : {"train", "val"}) named += 2 * m["splits"][split]["shards"].size();
    EXPECT_EQ(files.size(), named);
}

TEST(DataShards, AFailedRunLeavesNothingBehind) {
    const Tree t = make_tree("fail");
    const data::HoldOut h = data::HoldOut::from_eval_dir(t.eval);
    const Tokenizer& tok = test_tokenizer();
    // Valid records, then the file breaks off mid-frame.
    std::string lines;
    for (int i = 0; i < 3000; ++i)
        lines += jl({{"dialogue_id", std::to_string(i)},
                     {"turns",
                      {{{"speaker", "USER"}, {"text", "hi " + std::to_string(i)}},
                       {{"speaker", "SYSTEM"}, {"text", "hello"}}}}});
    const std::string z = zstd_bytes(lines);
    write_file(t.sgd, z.substr(0, z.size() * 3 / 4));
    const fs::path out = t.root / "out";
    auto o = options(t, out);
    o.shard_tokens = 200;
    EXPECT_THROW(data::build_shards(tok, h, o), microlm::Error);
    EXPECT_TRUE(!fs::exists(out) || fs::is_empty(out)) << "a failed run left files in " << out;

    o.inputs = {t.books, (t.root / "chat/missing_sgd_dialogues.jsonl.zst").string()};
    EXPECT_THROW(data::build_shards(tok, h, o), microlm::Error);
}

#else

TEST(DataReaders, NeedsZstdAndZlib) {
    GTEST_SKIP() << "this build has no zstd or zlib";
}

#endif

}  // namespace

// The prompt-diverse {prompt, reply} files: each is its own source, ShareGPT rows not marked
// en_like are skipped, and eval questions are held out however they are spelled.
TEST(DataShards, PromptReplyPairsKeepTheHoldOuts) {
    const Tree t = make_tree("pairs");
    const fs::path chat = t.root / "chat";
    std::string share;
    share += jl({{"prompt", "Tell me about the river."}, {"reply", "The river runs by the castle."},
                 {"id", "c1"}, {"turn", 0}, {"first_turn", true}, {"en_like", true}});
    share += jl({{"prompt", "How can I improve my time management SKILLS?"}, {"reply", "SECRET share"},
                 {"id", "c2"}, {"turn", 0}, {"first_turn", true}, {"en_like", true}});
    share += jl({{"prompt", "Erzähl mir vom Fluss."}, {"reply", "SECRET lang"}, {"id", "c3"}, {"turn", 0},
                 {"first_turn", true}, {"en_like", false}});
    write_file(chat / "sharegpt.jsonl.zst", zstd_bytes(share));
    std::string chit;
    chit += jl({{"prompt", "Hello friend"}, {"reply", "Hi, quiet morning."}, {"id", "x"}, {"turn", 0}});
    chit += jl({{"prompt", "Hi, quiet morning."}, {"reply", "Storm soon."}, {"id", "x"}, {"turn", 1}});
    write_file(chat / "chitchat.jsonl.zst", zstd_bytes(chit));
    write_file(chat / "gsm8k.jsonl.zst",
               zstd_bytes(jl({{"prompt", "write a scim server in php."}, {"reply", "SECRET gsm8k"}}) +
                          jl({{"prompt", "Two roads and a garden?"}, {"reply", "The answer is 3."}})));
    for (const char* name : {"sharegpt", "chitchat", "gsm8k"}) {
        EXPECT_EQ(data::source_name(data::source_of_path((chat / (std::string(name) + ".jsonl.zst")).string())), name);
    }
    EXPECT_EQ(data::source_of_path("x/gpteacher_codegen.jsonl.zst"), data::Source::kGpteacherCodegen);
    EXPECT_EQ(data::source_of_path("x/gpteacher_roleplay.json.zst"), data::Source::kGpteacher);

    const data::HoldOut h = data::HoldOut::from_eval_dir(t.eval);
    data::ReadStats st;
    const auto docs = read_all((chat / "sharegpt.jsonl.zst").string(), h, &st);
    ASSERT_EQ(docs.size(), 1u);
    EXPECT_EQ(st.not_english, 1u);
    EXPECT_EQ(st.held_out_eval, 1u);
    EXPECT_EQ(docs[0].group, "sharegpt:c1");

    const Tokenizer& tok = test_tokenizer();
    data::ShardOptions o = options(t, t.root / "shards");
    for (const char* name : {"sharegpt", "chitchat", "gsm8k"}) o.inputs.push_back((chat / (std::string(name) + ".jsonl.zst")).string());
    o.limits.opener_tokens = 6;
    const data::ShardSummary s = data::build_shards(tok, h, o);
    const auto text = decode_shards(tok, t.root / "shards");
    const std::string all = text.at("train") + text.at("val");
    for (const char* secret : {"SECRET", "time management", "scim", "SCIM", "Fluss"}) {
        EXPECT_EQ(all.find(secret), std::string::npos) << secret;
    }
    for (const char* kept : {"Tell me about the river.", "Hello friend", "Storm", "Two roads"}) {
        EXPECT_NE(all.find(kept), std::string::npos) << kept;
    }
    EXPECT_EQ(s.train.docs + s.val.docs, 162u + 4u + 5u + 2u + 1u + 1u + 2u + 1u);
}

// A teacher's replies (microlm generate-batch's output, plain or compressed) are pairs like the
// others, and an eval question among them is held out as everywhere.
TEST(DataShards, TeacherRepliesKeepTheHoldOuts) {
    const Tree t = make_tree("teacher");
    const fs::path file = t.root / "chat" / "teacher-smollm2.jsonl";
    write_file(file, jl({{"prompt", "Tell me about the river."}, {"reply", "The river runs by the castle."}, {"id", "sharegpt:1"}}) +
                         jl({{"prompt", "how can i improve my time management skills?"}, {"reply", "SECRET teacher"},
                             {"id", "sharegpt:2"}}));
    EXPECT_EQ(data::source_of_path(file.string()), data::Source::kTeacher);
    const data::HoldOut h = data::HoldOut::from_eval_dir(t.eval);
    data::ReadStats st;
    const auto docs = read_all(file.string(), h, &st);
    ASSERT_EQ(docs.size(), 1u);
    EXPECT_EQ(st.held_out_eval, 1u);
    EXPECT_EQ(docs[0].messages.at(1).content, "The river runs by the castle.");
    EXPECT_TRUE(docs[0].reply_cut);  // no "ended": written before the field, cut at --max-tokens
}

// A teacher's reply cut at generate-batch's --max-tokens is an opener, not a whole reply: the
// data adds an end of turn only where the teacher ended it. (The first distilled 8M learned to
// end its turn after ten tokens because every cut teacher reply was given one.)
TEST(DataShards, TeacherRepliesEndTheirTurnOnlyWhereTheTeacherDid) {
    const Tree t = make_tree("teacher_end");
    const fs::path file = t.root / "chat" / "teacher-test.jsonl";
    write_file(file, jl({{"prompt", "Tell me about the river."}, {"reply", "The river runs by"}, {"id", "a:1"}, {"ended", false}}) +
                         jl({{"prompt", "Say hello."}, {"reply", "Hello!"}, {"id", "a:2"}, {"ended", true}}));
    const Tokenizer& tok = test_tokenizer();
    const data::HoldOut h = data::HoldOut::from_eval_dir(t.eval);
    const auto docs = read_all(file.string(), h, nullptr);
    ASSERT_EQ(docs.size(), 2u);
    data::EncodeLimits lim;
    lim.opener_tokens = 16;
    data::EncodedDocument e;
    data::encode_document(tok, docs[0], std::nullopt, e, lim);
    EXPECT_EQ(target_runs(tok, e), (std::vector<std::string>{"The river runs by"}));
    data::encode_document(tok, docs[1], std::nullopt, e, lim);
    EXPECT_EQ(target_runs(tok, e), (std::vector<std::string>{"Hello!<|im_end|>"}));
}

// Opener examples: the first question and the reply's first N tokens, no end of turn when the
// reply was cut; long prompts keep their head and tail around " [...] ".
TEST(DataEncoding, OpenerExamplesCutTheReplyAndShortenThePrompt) {
    const Tokenizer& tok = test_tokenizer();
    data::Document doc;
    std::string prompt;
    for (int i = 0; i < 40; ++i) prompt += (i ? " river" : "river") + std::to_string(i);
    doc.messages = {{"user", prompt},
                    {"assistant", "The quiet castle stood by the road in the morning storm."},
                    {"user", "And then?"},
                    {"assistant", "More."}};
    data::EncodeLimits lim;
    lim.opener_tokens = 5;
    data::EncodedDocument e;
    data::encode_document(tok, doc, std::nullopt, e, lim);
    const auto reply = tok.encode(doc.messages[1].content, false, false);
    ASSERT_GT(reply.size(), 5u);
    EXPECT_EQ(target_runs(tok, e), (std::vector<std::string>{text_of(tok, std::vector<uint16_t>(reply.begin(), reply.begin() + 5), 0, 5)}));
    EXPECT_EQ(text_of(tok, e.ids, 0, e.ids.size()).find("And then"), std::string::npos);
    EXPECT_EQ(e.ids.back(), tok.token_id("<|endoftext|>"));

    lim.opener_tokens = 64;  // the whole reply fits: it ends its turn
    data::encode_document(tok, doc, std::nullopt, e, lim);
    EXPECT_EQ(target_runs(tok, e), (std::vector<std::string>{doc.messages[1].content + "<|im_end|>"}));

    lim.prompt_tokens = 12;
    data::encode_document(tok, doc, std::nullopt, e, lim);
    const std::string t = text_of(tok, e.ids, 0, e.ids.size());
    const auto p = tok.encode(prompt, false, false);
    ASSERT_GT(p.size(), 12u);
    const std::vector<uint16_t> head(p.begin(), p.begin() + 8), tail(p.end() - 4, p.end());
    EXPECT_NE(t.find(text_of(tok, head, 0, 8) + " [...] " + text_of(tok, tail, 0, 4) + "<|im_end|>"), std::string::npos) << t;
    EXPECT_EQ(t.find("river20 "), std::string::npos);
}
