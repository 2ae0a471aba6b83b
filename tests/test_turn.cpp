// run_turn() end to end against scripted fake clouds (microlm's HTTP server in the test, which
// streams chosen SSE deltas, or fails): keep, pivot, retract in text vs retract-as-pivot in
// speech, prefill, the extra cloud delay, cancellation, and a failing cloud -> local close + error.
// The local model is a tiny random one; its opener is pinned by forcing a one-phrase hedge.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <stop_token>
#include <thread>

#include "microlm/http_server.h"
#include "microlm/model.h"
#include "microlm/opener.h"
#include "microlm/pacer.h"
#include "microlm/random_model.h"
#include "microlm/tokenizer.h"
#include "microlm/turn.h"

using namespace microlm;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kOpener = "Well, the short answer is";

// A cloud that answers every chat request with `deltas` as OpenAI stream chunks then [DONE],
// or with `status` and an error body; `silent` holds the response open without a byte.
class FakeCloud {
public:
    struct Script {
        std::vector<std::string> deltas;
        int status = 200;
        bool silent = false;
    };

    explicit FakeCloud(std::vector<std::string> deltas, int status = 200, bool silent = false)
        : script_{std::move(deltas), status, silent} {
        server_.route("POST", "/v1/chat/completions", [this](const http::Request& req, http::Response& res) {
            {
                std::lock_guard l(mu_);
                bodies_.push_back(req.body);
                order_.push_back("chat");
            }
            if (script_.status != 200) {
                res.status = script_.status;
                res.set_content(R"({"error":{"message":"scripted failure","type":"server_error"}})",
                                "application/json");
                return;
            }
            res.set_stream("text/event-stream", [this](http::BodyWriter& sink) {
                if (script_.silent) {
                    for (int i = 0; i < 500 && !stopping_; ++i)
                        std::this_thread::sleep_for(std::chrono::milliseconds(10));
                    return;
                }
                // The first cut_streams_ streams stop early ([DONE], no finish_reason), as
                // llama-cpp-python's does when another request arrives; after the first, the
                // streams send rest_.
                const int call = calls_++;
                const bool cut = call < cut_streams_;
                for (const auto& d : call == 0 || cut_streams_ == 0 ? script_.deltas : rest_) {
                    const json chunk = {
                        {"choices",
                         {{{"index", 0}, {"delta", {{"content", d}}}, {"finish_reason", nullptr}}}}};
                    const std::string ev = "data: " + chunk.dump() + "\n\n";
                    sink.write(ev);
                }
                const json last = {{"choices", {{{"index", 0}, {"delta", json::object()}, {"finish_reason", "stop"}}}}};
                if (!cut) sink.write("data: " + last.dump() + "\n\n");
                sink.write("data: [DONE]\n\n");
            });
        });
        // Raw completions with echo + logprobs, for the opener check: the prompt comes back cut
        // into 3-byte tokens, each scored neutral_lp after the neutral conversation (an empty
        // user message) and conversation_lp otherwise. Off unless a test sets them.
        server_.route("POST", "/v1/completions", [this](const http::Request& req, http::Response& res) {
            if (!scores_) {
                res.status = 404;
                res.set_content(R"({"error":{"message":"no such route","type":"not_found"}})", "application/json");
                return;
            }
            {
                std::lock_guard l(mu_);
                order_.push_back("completions");
            }
            const json body = json::parse(req.body);
            const std::string prompt = body["prompt"];
            {
                std::lock_guard l(mu_);
                prompts_.push_back(prompt);
            }
            const bool neutral = prompt.find("user\n<|im_end|>") != std::string::npos;
            json tokens = json::array(), lps = json::array(), offsets = json::array();
            for (size_t at = 0; at < prompt.size(); at += 3) {
                tokens.push_back(prompt.substr(at, 3));
                lps.push_back(at == 0 ? json(nullptr) : json(neutral ? scores_->second : scores_->first));
                offsets.push_back(at);
            }
            const json out = {{"choices",
                               {{{"index", 0},
                                 {"text", prompt},
                                 {"logprobs", {{"tokens", tokens}, {"token_logprobs", lps}, {"text_offset", offsets}}},
                                 {"finish_reason", "length"}}}}};
            res.set_content(out.dump(), "application/json");
        });
        port_ = server_.bind("127.0.0.1", 0, "fake cloud");
        thread_ = std::thread([this] { server_.run(); });
    }
    ~FakeCloud() {
        stopping_ = true;
        server_.stop();
        thread_.join();
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
    // The opener check's scores: mean log p after the conversation, and after the neutral one.
    void set_scores(double conversation_lp, double neutral_lp) { scores_ = {conversation_lp, neutral_lp}; }
    // The first `n` chat streams are cut after their deltas; the requests after the first send `rest`.
    void cut_streams(int n, std::vector<std::string> rest) {
        cut_streams_ = n;
        rest_ = std::move(rest);
    }
    std::vector<json> chat_requests() {
        std::lock_guard l(mu_);
        std::vector<json> out;
        for (const auto& b : bodies_) out.push_back(json::parse(b));
        return out;
    }
    // The routes of the requests, in the order they arrived ("chat", "completions").
    std::vector<std::string> order() {
        std::lock_guard l(mu_);
        return order_;
    }
    // The completions requests' prompts, in the order they arrived.
    std::vector<std::string> completion_prompts() {
        std::lock_guard l(mu_);
        return prompts_;
    }
    json last_request() {
        std::lock_guard l(mu_);
        return bodies_.empty() ? json() : json::parse(bodies_.back());
    }

private:
    Script script_;
    std::optional<std::pair<double, double>> scores_;
    std::vector<std::string> prompts_;
    int cut_streams_ = 0;
    std::vector<std::string> rest_;
    std::atomic<int> calls_{0};
    http::Server server_;
    std::thread thread_;
    int port_ = 0;
    std::atomic<bool> stopping_{false};
    std::mutex mu_;
    std::vector<std::string> bodies_;
    std::vector<std::string> order_;
};

// A port nothing listens on: bound, then closed.
int closed_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
}

struct Recorded {
    TurnResult result;
    std::vector<TurnEvent> events;
    double ms = 0;

    std::vector<TurnEvent::Kind> kinds() const {
        std::vector<TurnEvent::Kind> k;
        for (const auto& e : events) k.push_back(e.kind);
        return k;
    }
    bool has(TurnEvent::Kind k) const {
        for (const auto& e : events)
            if (e.kind == k) return true;
        return false;
    }
    std::string text_of(TurnEvent::Kind k) const {
        std::string s;
        for (const auto& e : events)
            if (e.kind == k) s += e.text;
        return s;
    }
};

class TurnTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        path_ = new std::string(
            (std::filesystem::temp_directory_path() / ("microlm_turn_" + std::to_string(getpid()) + ".gguf"))
                .string());
        write_random_llama(*path_, *model_shape_preset("tiny"), DType::Q8_0, 11);
    }
    static void TearDownTestSuite() {
        std::filesystem::remove(*path_);
        delete path_;
    }

    void SetUp() override {
        model_ = Model::load(*path_);
        tok_ = std::make_unique<Tokenizer>(vocab_from_gguf(model_->file()));
        ctx_ = std::make_unique<Context>(*model_, 512, 1);
        OpenerConfig oc;
        // A random model is never sure of itself: forcing the hedge with one phrase pins the
        // opener, so the cloud's scripted text can be checked against it.
        oc.hedge = true;
        oc.hedge_min_mean_logprob = 0.0f;
        oc.hedge_phrases = {kOpener};
        oc.system_prompt = "You are a test.";
        opener_ = std::make_unique<Opener>(*ctx_, *tok_, oc);
    }

    Recorded run(const std::string& url, TurnConfig cfg, std::stop_token stop = {}) {
        CloudConfig cc;
        cc.base_url = url;
        cc.model = "fake";
        cc.connect_timeout_ms = 1000;
        cc.first_byte_timeout_ms = 2000;
        cc.retries = 0;
        CloudClient cloud(cc);
        cfg.temperature = 0.0f;
        Recorded rec;
        const auto t0 = Clock::now();
        rec.result = run_turn(
            *opener_, cloud, {{"user", "What is the capital of Australia?"}}, cfg,
            [&](const TurnEvent& e) { rec.events.push_back(e); }, stop);
        rec.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        return rec;
    }

    // The cloud half alone, for an opener that was not hedged (the opener check skips hedges).
    Recorded run_continue(const std::string& url, TurnConfig cfg) {
        CloudConfig cc;
        cc.base_url = url;
        cc.model = "fake";
        cc.first_byte_timeout_ms = 2000;
        cc.retries = 0;
        CloudClient cloud(cc);
        cfg.temperature = 0.0f;
        OpenerResult shown;
        shown.text = kOpener;
        Recorded rec;
        rec.result = continue_turn(shown, cloud, {{"user", "What is the capital of Australia?"}}, cfg,
                                   [&](const TurnEvent& e) { rec.events.push_back(e); });
        return rec;
    }

    static TurnConfig instruct(Modality m) {
        TurnConfig c;
        c.mode = ContinuationMode::kInstruct;
        c.modality = m;
        return c;
    }

    static inline std::string* path_ = nullptr;
    std::unique_ptr<Model> model_;
    std::unique_ptr<Tokenizer> tok_;
    std::unique_ptr<Context> ctx_;
    std::unique_ptr<Opener> opener_;
};

using K = TurnEvent::Kind;

bool ends_sentence(const std::string& s) {
    const size_t i = s.find_last_not_of(" \"')");
    return i != std::string::npos && (s[i] == '.' || s[i] == '!' || s[i] == '?');
}

}  // namespace

TEST_F(TurnTest, KeepAppendsTheContinuationAfterTheOpenerWords) {
    FakeCloud cloud({"[ke", "ep] that it ", "depends on the season."});
    const Recorded r = run(cloud.url(), instruct(Modality::kText));
    ASSERT_FALSE(r.result.error);
    EXPECT_EQ(r.result.opener.text, kOpener);
    EXPECT_TRUE(r.result.opener.hedged);
    ASSERT_TRUE(r.result.verdict);
    EXPECT_EQ(*r.result.verdict, Verdict::kKeep);
    EXPECT_EQ(r.result.text, std::string(kOpener) + " that it depends on the season.");
    // Local words first, then the hedge marker, then only cloud text.
    EXPECT_EQ(r.text_of(K::kOpener), kOpener);
    ASSERT_GE(r.events.size(), 3u);
    EXPECT_EQ(r.events.front().kind, K::kOpener);
    EXPECT_EQ(r.events.back().kind, K::kContinuation);
    EXPECT_FALSE(r.has(K::kPivot) || r.has(K::kRetract) || r.has(K::kError) || r.has(K::kLocalClose));
    // Instruct mode: the continuator is told the opener and asked for a tag.
    const json req = cloud.last_request();
    EXPECT_EQ(req["messages"][0]["role"], "system");
    EXPECT_NE(req["messages"][0]["content"].get<std::string>().find(kOpener), std::string::npos);
    EXPECT_EQ(req["messages"].back()["role"], "user");
    const auto& t = r.result.timings;
    EXPECT_GE(t.first_word_ms, 0);
    EXPECT_GE(t.cloud_first_token_ms, 0);
    EXPECT_GE(t.stall_ms, 0);
    EXPECT_GE(t.total_ms, t.opener_ms);
}

TEST_F(TurnTest, PivotKeepsTheOpenerAndMarksTheBridge) {
    FakeCloud cloud({"[pivot] ", "or rather, it is Canberra."});
    const Recorded r = run(cloud.url(), instruct(Modality::kSpeech));
    ASSERT_TRUE(r.result.verdict);
    EXPECT_EQ(*r.result.verdict, Verdict::kPivot);
    EXPECT_EQ(r.result.text, std::string(kOpener) + " or rather, it is Canberra.");
    // The pivot marker comes right before the bridge text.
    size_t pivot = r.events.size();
    for (size_t i = 0; i < r.events.size(); ++i)
        if (r.events[i].kind == K::kPivot) pivot = i;
    ASSERT_LT(pivot + 1, r.events.size());
    EXPECT_EQ(r.events[pivot + 1].kind, K::kContinuation);
    EXPECT_FALSE(r.has(K::kRetract));
}

TEST_F(TurnTest, RetractReplacesTheOpenerInText) {
    FakeCloud cloud({"[retract] The capital of Australia ", "is Canberra."});
    const Recorded r = run(cloud.url(), instruct(Modality::kText));
    ASSERT_TRUE(r.result.verdict);
    EXPECT_EQ(*r.result.verdict, Verdict::kRetract);
    EXPECT_EQ(r.result.text, "The capital of Australia is Canberra.");
    ASSERT_TRUE(r.has(K::kRetract));
    // The retract event carries the start of the replacement; continuations complete it.
    EXPECT_EQ(r.text_of(K::kRetract) + r.text_of(K::kContinuation), "The capital of Australia is Canberra.");
    EXPECT_FALSE(r.has(K::kPivot));
}

TEST_F(TurnTest, RetractBecomesAPivotInSpeech) {
    FakeCloud cloud({"[retract] The capital of Australia is Canberra."});
    const Recorded r = run(cloud.url(), instruct(Modality::kSpeech));
    ASSERT_TRUE(r.result.verdict);
    EXPECT_EQ(*r.result.verdict, Verdict::kPivot);
    EXPECT_FALSE(r.has(K::kRetract));
    EXPECT_TRUE(r.has(K::kPivot));
    // What was spoken stays: the correction follows the opener.
    EXPECT_EQ(r.result.text.rfind(kOpener, 0), 0u) << r.result.text;
    EXPECT_NE(r.result.text.find("Canberra."), std::string::npos);
}

TEST_F(TurnTest, PrefillSendsTheOpenerAsTheFinalAssistantMessage) {
    FakeCloud cloud({" that", " it depends."});
    TurnConfig c;
    c.mode = ContinuationMode::kPrefill;
    const Recorded r = run(cloud.url(), c);
    ASSERT_FALSE(r.result.error);
    EXPECT_EQ(r.result.text, std::string(kOpener) + " that it depends.");
    const json req = cloud.last_request();
    EXPECT_EQ(req["messages"].back()["role"], "assistant");
    EXPECT_EQ(req["messages"].back()["content"], kOpener);
    EXPECT_EQ(req["continue_final_message"], true);
}

// A stream cut short after its text began resumes once, as a prefill of what was shown: the
// reply reads as one, with no error and no local close.
TEST_F(TurnTest, AContinuationCutShortResumesFromTheShownText) {
    for (const ContinuationMode mode : {ContinuationMode::kInstruct, ContinuationMode::kPrefill}) {
        const bool instruct = mode == ContinuationMode::kInstruct;
        FakeCloud cloud({instruct ? "[keep] that it" : " that it", " depends"});
        cloud.cut_streams(1, {" on the", " season."});
        TurnConfig c = this->instruct(Modality::kText);
        c.mode = mode;
        const Recorded r = run(cloud.url(), c);
        ASSERT_FALSE(r.result.error) << r.result.error_message;
        EXPECT_EQ(r.result.resumed_from, std::string(kOpener) + " that it depends");
        EXPECT_EQ(r.result.text, std::string(kOpener) + " that it depends on the season.");
        EXPECT_EQ(r.text_of(K::kOpener) + r.text_of(K::kContinuation), r.result.text);
        EXPECT_FALSE(r.has(K::kError) || r.has(K::kLocalClose) || r.has(K::kRetract));
        ASSERT_TRUE(r.result.verdict);
        EXPECT_EQ(*r.result.verdict, Verdict::kKeep);
        EXPECT_EQ(r.result.tag_found, instruct);
        const std::vector<json> reqs = cloud.chat_requests();
        ASSERT_EQ(reqs.size(), 2u);
        EXPECT_EQ(reqs[1]["messages"].back()["role"], "assistant");
        EXPECT_EQ(reqs[1]["messages"].back()["content"], std::string(kOpener) + " that it depends");
        EXPECT_EQ(reqs[1]["continue_final_message"], true);
    }
}

// Only once: a resumed stream that is cut again ends the turn as a cloud failure does, with
// the local close after what was shown.
TEST_F(TurnTest, AContinuationCutTwiceEndsWithALocalCloseAndAnError) {
    FakeCloud cloud({" that it", " depends"});
    cloud.cut_streams(2, {" on the"});
    TurnConfig c;
    c.mode = ContinuationMode::kPrefill;
    const Recorded r = run(cloud.url(), c);
    ASSERT_TRUE(r.result.error);
    EXPECT_EQ(*r.result.error, CloudErrorKind::kReset) << r.result.error_message;
    EXPECT_TRUE(r.result.resumed_from);
    EXPECT_EQ(cloud.chat_requests().size(), 2u);
    EXPECT_EQ(r.result.text.rfind(std::string(kOpener) + " that it depends on the", 0), 0u) << r.result.text;
    EXPECT_TRUE(r.has(K::kLocalClose));
    EXPECT_EQ(r.events.back().kind, K::kError);
}

TEST_F(TurnTest, RefusedCloudEndsWithALocalCloseAndAnError) {
    const Recorded r = run("http://127.0.0.1:" + std::to_string(closed_port()), instruct(Modality::kText));
    ASSERT_TRUE(r.result.error);
    EXPECT_EQ(*r.result.error, CloudErrorKind::kRefused);
    EXPECT_FALSE(r.has(K::kContinuation));
    ASSERT_TRUE(r.has(K::kError));
    EXPECT_EQ(r.text_of(K::kError).rfind("refused: ", 0), 0u) << r.text_of(K::kError);
    // The opener is kept and the sentence is closed by the local model.
    EXPECT_EQ(r.result.text.rfind(kOpener, 0), 0u);
    EXPECT_TRUE(r.has(K::kLocalClose));
    EXPECT_EQ(r.result.text, std::string(kOpener) + r.text_of(K::kLocalClose));
    EXPECT_TRUE(ends_sentence(r.result.text)) << r.result.text;
    EXPECT_LT(r.ms, 3000);
}

TEST_F(TurnTest, ErrorStatusEndsWithALocalCloseAndAnError) {
    FakeCloud cloud({}, 500);
    const Recorded r = run(cloud.url(), instruct(Modality::kText));
    ASSERT_TRUE(r.result.error);
    EXPECT_EQ(*r.result.error, CloudErrorKind::kHttpStatus);
    ASSERT_TRUE(r.has(K::kError) && r.has(K::kLocalClose));
    EXPECT_TRUE(ends_sentence(r.result.text)) << r.result.text;
    EXPECT_FALSE(r.result.verdict && *r.result.verdict != Verdict::kKeep);
}

TEST_F(TurnTest, CloudDelayIsAddedBeforeTheRequestAndCountsInTheStall) {
    FakeCloud cloud({"[keep] ok."});
    TurnConfig c = instruct(Modality::kText);
    c.cloud_delay_ms = 300;
    const Recorded r = run(cloud.url(), c);
    ASSERT_FALSE(r.result.error);
    EXPECT_GE(r.result.timings.stall_ms, 300);
    EXPECT_LT(r.result.timings.cloud_first_token_ms, r.result.timings.stall_ms);
}

TEST_F(TurnTest, StopCancelsASilentCloudWithoutALocalClose) {
    FakeCloud cloud({}, 200, /*silent=*/true);
    std::stop_source stop;
    std::thread canceller([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        stop.request_stop();
    });
    const Recorded r = run(cloud.url(), instruct(Modality::kText), stop.get_token());
    canceller.join();
    ASSERT_TRUE(r.result.error);
    EXPECT_EQ(*r.result.error, CloudErrorKind::kCancelled);
    EXPECT_FALSE(r.has(K::kLocalClose));
    EXPECT_LT(r.ms, 1500);
}

// ---- The opener check: a verdict without the cloud's tag ------------------------------------

TEST_F(TurnTest, CheckThatScoresTheOpenerWellKeepsTheContinuation) {
    FakeCloud cloud({" that it ", "depends on the season."});  // prefill: the seam's space is the cloud's
    cloud.set_scores(-0.5, -3.0);  // pmi 2.5: the conversation makes the opener likelier
    TurnConfig c;
    c.mode = ContinuationMode::kPrefill;
    c.check.signal = CheckSignal::kPmi;
    const Recorded r = run_continue(cloud.url(), c);
    ASSERT_FALSE(r.result.error);
    ASSERT_TRUE(r.result.check);
    EXPECT_EQ(r.result.check->error, "");
    EXPECT_NEAR(r.result.check->scores.given_conversation, -0.5, 1e-9);
    EXPECT_NEAR(r.result.check->scores.pmi(), 2.5, 1e-9);
    EXPECT_GT(r.result.check->tokens, 0);
    EXPECT_FALSE(r.result.verdict_by_check);
    EXPECT_EQ(*r.result.verdict, Verdict::kKeep);
    EXPECT_EQ(r.result.text, std::string(kOpener) + " that it depends on the season.");
    EXPECT_EQ(cloud.chat_requests().size(), 1u);
}

TEST_F(TurnTest, CheckThatFindsTheOpenerOffRetractsWithAPlainAnswerInText) {
    FakeCloud cloud({"The capital of Australia ", "is Canberra."});
    cloud.set_scores(-4.0, -2.0);  // pmi -2: the opener talks past the question
    TurnConfig c;
    c.mode = ContinuationMode::kPrefill;
    c.modality = Modality::kText;
    c.check.signal = CheckSignal::kPmi;
    const Recorded r = run_continue(cloud.url(), c);
    ASSERT_FALSE(r.result.error);
    EXPECT_TRUE(r.result.verdict_by_check);
    ASSERT_TRUE(r.result.verdict);
    EXPECT_EQ(*r.result.verdict, Verdict::kRetract);
    EXPECT_EQ(r.result.text, "The capital of Australia is Canberra.");
    EXPECT_EQ(r.text_of(K::kRetract) + r.text_of(K::kContinuation), "The capital of Australia is Canberra.");
    // The dropped prefill request's text was never shown; the recovery asked for a plain answer:
    // the conversation alone, no opener, no continuator prompt.
    const std::vector<json> reqs = cloud.chat_requests();
    ASSERT_EQ(reqs.size(), 2u);
    EXPECT_EQ(reqs[0]["messages"].back()["role"], "assistant");
    EXPECT_EQ(reqs[1]["messages"].size(), 1u);
    EXPECT_EQ(reqs[1]["messages"][0]["role"], "user");
    EXPECT_FALSE(reqs[1].contains("continue_final_message"));
}

// --check-first: the continuation is asked for only after the check's two requests answered;
// an opener the check finds off costs no continuation at all (one chat request: the recovery).
TEST_F(TurnTest, CheckFirstAsksForTheContinuationAfterTheCheck) {
    for (const bool off : {false, true}) {
        FakeCloud cloud({" that it ", "depends on the season."});
        if (off)
            cloud.set_scores(-4.0, -2.0);
        else
            cloud.set_scores(-0.5, -3.0);
        TurnConfig c;
        c.mode = ContinuationMode::kPrefill;
        c.modality = Modality::kText;
        c.check.signal = CheckSignal::kPmi;
        c.check.before_continuation = true;
        const Recorded r = run_continue(cloud.url(), c);
        ASSERT_FALSE(r.result.error) << r.result.error_message;
        EXPECT_EQ(cloud.order(), (std::vector<std::string>{"completions", "completions", "chat"}));
        const std::vector<json> reqs = cloud.chat_requests();
        ASSERT_EQ(reqs.size(), 1u);
        EXPECT_EQ(r.result.verdict_by_check, off);
        EXPECT_EQ(r.result.abandoned_text, "");
        if (off) {
            EXPECT_EQ(*r.result.verdict, Verdict::kRetract);
            EXPECT_EQ(reqs[0]["messages"].size(), 1u);  // the plain answer's request
            EXPECT_EQ(r.result.text, "that it depends on the season.");
        } else {
            EXPECT_EQ(*r.result.verdict, Verdict::kKeep);
            EXPECT_EQ(reqs[0]["messages"].back()["role"], "assistant");
            EXPECT_EQ(r.result.text, std::string(kOpener) + " that it depends on the season.");
        }
    }
}

TEST_F(TurnTest, CheckFirstScoresTheConversationLastSoTheContinuationFindsItsStartCached) {
    // A server that keeps its last prompt's cache then computes only what follows the opener.
    FakeCloud cloud({" that it ", "depends on the season."});
    cloud.set_scores(-0.5, -3.0);
    TurnConfig c;
    c.mode = ContinuationMode::kPrefill;
    c.check.signal = CheckSignal::kPmi;
    c.check.before_continuation = true;
    const Recorded r = run_continue(cloud.url(), c);
    ASSERT_FALSE(r.result.error) << r.result.error_message;
    const std::vector<std::string> prompts = cloud.completion_prompts();
    ASSERT_EQ(prompts.size(), 2u);
    EXPECT_EQ(prompts[0], prefill_prompt(neutral_history(), kOpener, std::nullopt));
    EXPECT_EQ(prompts[1], prefill_prompt({{"user", "What is the capital of Australia?"}}, kOpener, std::nullopt));
    EXPECT_EQ(cloud.order().back(), "chat");
    EXPECT_NEAR(r.result.check->scores.pmi(), 2.5, 1e-9);
}

TEST_F(TurnTest, CheckThatFindsTheOpenerOffPivotsInSpeechWithTheBridgeThenAPlainAnswer) {
    FakeCloud cloud({"It is ", "Canberra."});
    cloud.set_scores(-4.0, -2.0);
    TurnConfig c = instruct(Modality::kSpeech);
    c.check.signal = CheckSignal::kPmi;
    c.check.pivot_bridge = "or rather, to answer your question:";
    const Recorded r = run_continue(cloud.url(), c);
    ASSERT_FALSE(r.result.error);
    EXPECT_TRUE(r.result.verdict_by_check);
    EXPECT_EQ(*r.result.verdict, Verdict::kPivot);
    // The opener stays (it was spoken); the bridge, then the plain answer, follow it.
    EXPECT_EQ(r.result.text, std::string(kOpener) + " or rather, to answer your question: It is Canberra.");
    ASSERT_TRUE(r.has(K::kPivot));
    EXPECT_FALSE(r.has(K::kRetract));
    const std::vector<json> reqs = cloud.chat_requests();
    ASSERT_EQ(reqs.size(), 2u);
    ASSERT_EQ(reqs[1]["messages"].size(), 1u);  // the conversation alone
    EXPECT_EQ(reqs[1]["messages"][0]["role"], "user");
}

TEST_F(TurnTest, WithNoBridgeConfiguredTheCloudIsToldToWriteOne) {
    FakeCloud cloud({"or rather, ", "it is Canberra."});
    cloud.set_scores(-4.0, -2.0);
    TurnConfig c = instruct(Modality::kSpeech);
    c.check.signal = CheckSignal::kPmi;
    c.check.pivot_bridge = "";
    const Recorded r = run_continue(cloud.url(), c);
    ASSERT_FALSE(r.result.error);
    EXPECT_EQ(*r.result.verdict, Verdict::kPivot);
    EXPECT_EQ(r.result.text, std::string(kOpener) + " or rather, it is Canberra.");
    const std::vector<json> reqs = cloud.chat_requests();
    ASSERT_EQ(reqs.size(), 2u);
    const std::string system = reqs[1]["messages"][0]["content"];
    EXPECT_NE(system.find("head the wrong way"), std::string::npos);
    EXPECT_NE(system.find(kOpener), std::string::npos);
}

TEST_F(TurnTest, AHedgedOpenerIsNotChecked) {
    FakeCloud cloud({" that it ", "depends."});
    cloud.set_scores(-9.0, -1.0);  // would be off
    TurnConfig c;
    c.mode = ContinuationMode::kPrefill;
    c.check.signal = CheckSignal::kAny;
    const Recorded r = run(cloud.url(), c);  // the fixture's opener is a forced hedge
    ASSERT_TRUE(r.result.opener.hedged);
    EXPECT_FALSE(r.result.check);
    EXPECT_FALSE(r.result.verdict_by_check);
    EXPECT_EQ(r.result.text, std::string(kOpener) + " that it depends.");
}

TEST_F(TurnTest, CheckOnAnEndpointWithoutLogprobsSaysKeepAndReportsWhy) {
    FakeCloud cloud({" that it ", "depends."});  // no scores: /v1/completions answers 404
    TurnConfig c;
    c.mode = ContinuationMode::kPrefill;
    c.check.signal = CheckSignal::kAny;
    const Recorded r = run_continue(cloud.url(), c);
    ASSERT_FALSE(r.result.error);
    ASSERT_TRUE(r.result.check);
    EXPECT_NE(r.result.check->error.find("404"), std::string::npos) << r.result.check->error;
    EXPECT_TRUE(std::isnan(r.result.check->scores.given_conversation));
    EXPECT_FALSE(r.result.verdict_by_check);
    EXPECT_EQ(r.result.text, std::string(kOpener) + " that it depends.");
}

TEST(OpenerCheck, TheOpenersTokensAreFoundInTheEchoHoweverTheServerRendersIt) {
    // serve-model echoes special tokens' text; llama.cpp's server drops it. Either way the
    // opener's tokens are the ones over its last occurrence, a generated token after it not counted.
    const CloudLogprobs ours{{"<|im_start|>", "user\nHi", "<|im_end|>\n<|im_start|>", "assistant\n", "Hi", " there", "!"},
                             {NAN, -1.0, -1.0, -1.0, -2.0, -4.0, -9.0},
                             {}};
    EXPECT_NEAR(mean_echo_logprob(ours, "Hi there"), -3.0, 1e-9);
    const CloudLogprobs theirs{{"user", "\nHi", "\n", "assistant", "\n", "Hi", " there", "!"},
                               {NAN, -1.0, -1.0, -1.0, -1.0, -2.0, -4.0, -9.0},
                               {0, 4, 7, 8, 17, 18, 20, 26}};
    EXPECT_NEAR(mean_echo_logprob(theirs, "Hi there"), -3.0, 1e-9);
    // A token that straddles the opener's start counts; an opener that is not there is NaN.
    const CloudLogprobs merged{{"user\nHi", "\nHi", " there"}, {NAN, -2.0, -4.0}, {}};
    EXPECT_NEAR(mean_echo_logprob(merged, "Hi there"), -3.0, 1e-9);
    EXPECT_TRUE(std::isnan(mean_echo_logprob(merged, "Bye")));
    // Byte tokens of "—" come back as U+FFFD each: matched on the ASCII bytes, those inside count.
    const std::string r = "\xef\xbf\xbd";
    const CloudLogprobs bytes{{"\n", "Hi", " ", r, r, r, " there", "!"}, {NAN, -2.0, -2.0, -2.0, -2.0, -2.0, -8.0, -9.0}, {}};
    EXPECT_NEAR(mean_echo_logprob(bytes, "Hi \xe2\x80\x94 there"), -3.0, 1e-9);
}

// ---- Pacer --------------------------------------------------------------------------------

namespace {

struct Delivered {
    std::vector<std::pair<TurnEvent::Kind, std::string>> events;
    std::vector<double> ms;  // when each arrived, from the start
    Clock::time_point t0 = Clock::now();
    std::mutex mu;
    Pacer::Sink sink() {
        return [this](const TurnEvent& e) {
            std::lock_guard l(mu);
            events.push_back({e.kind, e.text});
            ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        };
    }
};

TurnEvent text_event(TurnEvent::Kind k, std::string text) {
    TurnEvent e;
    e.kind = k;
    e.text = std::move(text);
    return e;
}

}  // namespace

TEST(Pacer, WithoutAPaceEventsPassAtOnceInOrder) {
    Delivered d;
    Pacer p({}, d.sink());
    p.push(text_event(TurnEvent::Kind::kOpener, "Well,"));
    p.push(text_event(TurnEvent::Kind::kOpener, " it"));
    p.push(text_event(TurnEvent::Kind::kHedge, "Well, it"));
    p.push(text_event(TurnEvent::Kind::kContinuation, " depends."));
    ASSERT_EQ(d.events.size(), 4u);  // already delivered, in the caller's thread
    EXPECT_EQ(d.events[2].first, TurnEvent::Kind::kHedge);
    EXPECT_EQ(d.events[3].second, " depends.");
}

// Words go out one word-interval apart, the first at once; the continuation's words join the
// same queue, so a cloud that answers while the opener is still going out leaves no gap; a piece
// that continues a word is not paced again; a pivot marker keeps its place.
TEST(Pacer, WordsGoOutAtThePaceAndTheContinuationJoinsTheQueue) {
    Delivered d;
    Pacer p({300.0}, d.sink());  // 200 ms a word
    p.push(text_event(TurnEvent::Kind::kOpener, "The"));
    p.push(text_event(TurnEvent::Kind::kOpener, " capital"));
    p.push(text_event(TurnEvent::Kind::kOpener, " of France is"));
    std::this_thread::sleep_for(std::chrono::milliseconds(250));  // the "cloud" answers mid-opener
    p.push(text_event(TurnEvent::Kind::kPivot, ""));
    p.push(text_event(TurnEvent::Kind::kContinuation, " Par"));
    p.push(text_event(TurnEvent::Kind::kContinuation, "is."));
    p.finish();
    std::vector<std::string> texts;
    for (const auto& [k, t] : d.events) texts.push_back(t);
    EXPECT_EQ(texts, (std::vector<std::string>{"The", " capital", " of", " France", " is", "", " Par", "is."}));
    EXPECT_LT(d.ms[0], 100);  // the first word at once
    for (const auto& [a, b] : std::vector<std::pair<size_t, size_t>>{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 6}})
        EXPECT_GE(d.ms[b] - d.ms[a], 195) << a << " -> " << b;
    EXPECT_LT(d.ms[7] - d.ms[6], 100);  // "is." continues "Par": not paced again
    EXPECT_LT(p.visible_stall_ms(), 100);  // nothing waited beyond the pace
}

TEST(Pacer, TheVisibleStallIsTheWaitBeyondThePace) {
    Delivered d;
    Pacer p({600.0}, d.sink());  // 100 ms a word
    p.push(text_event(TurnEvent::Kind::kOpener, "Sure,"));
    p.push(text_event(TurnEvent::Kind::kOpener, " here"));
    std::this_thread::sleep_for(std::chrono::milliseconds(600));  // a slow cloud
    p.push(text_event(TurnEvent::Kind::kContinuation, " it is."));
    p.finish();
    // "here" went out at ~100 ms, " it" at ~600 ms: about 400 ms beyond the 100 ms pace.
    EXPECT_GE(p.visible_stall_ms(), 350);
    EXPECT_LT(p.visible_stall_ms(), 600);
    EXPECT_EQ(d.events.size(), 4u);
}

TEST(Pacer, AStopFlushesWhatIsQueued) {
    Delivered d;
    std::stop_source stop;
    Pacer p({60.0}, d.sink(), stop.get_token());  // a second a word
    p.push(text_event(TurnEvent::Kind::kOpener, "one two three four five six"));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    stop.request_stop();
    const auto t = Clock::now();
    p.finish();
    const double flush_ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    EXPECT_LT(flush_ms, 500);
    EXPECT_EQ(d.events.size(), 6u);
}

TEST(Pacer, AnOpenerIsSizedToCoverTheCloudsWait) {
    const PaceConfig reading{250};  // 240 ms a word
    EXPECT_EQ(size_opener(1600, reading, 4, 8, 12).min_words, 7);  // ceil(1600 / 240)
    EXPECT_EQ(size_opener(1600, reading, 4, 8, 12).max_words, 11);
    EXPECT_EQ(size_opener(900, reading, 4, 8, 12).min_words, 0);   // 4 words already cover it
    EXPECT_EQ(size_opener(9000, reading, 4, 8, 12).min_words, 12);  // at most most_words
    EXPECT_EQ(size_opener(1600, PaceConfig{}, 4, 8, 12).min_words, 0);  // not pacing: not sized

    CloudWait wait(800);
    EXPECT_EQ(wait.quantile(0.9), 800);  // the prior before any turn
    for (int ms = 100; ms <= 1000; ms += 100) wait.observe(ms);
    wait.observe(std::nan(""));
    EXPECT_EQ(wait.observed(), 10u);
    EXPECT_EQ(wait.quantile(0.9), 900);
    EXPECT_EQ(wait.quantile(0.5), 500);
    EXPECT_EQ(wait.quantile(1.0), 1000);
    for (int i = 0; i < 100; ++i) wait.observe(50);  // only the last kWindow count
    EXPECT_EQ(wait.quantile(1.0), 50);
}
