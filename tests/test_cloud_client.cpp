// The cloud client against the real serve-model server (in-process, tiny random model, port 0)
// and against a scripted raw-socket server that misbehaves: refused, silent, 500, reset
// mid-stream, malformed events, redirects. Each must end promptly with the right typed error.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "logprob_reference.h"
#include "microlm/cloud_client.h"
#include "microlm/model.h"
#include "microlm/model_server.h"
#include "microlm/random_model.h"
#include "microlm/tokenizer.h"

using namespace microlm;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kKeyEnv = "MICROLM_TEST_CLOUD_KEY";
constexpr const char* kKey = "sk-test-SECRET-7f3a9c";

// ---- A scripted HTTP server on raw sockets ------------------------------------------------

class FakeServer {
public:
    // script(fd, request) answers one connection; it may return early or hold the socket.
    using Script = std::function<void(int fd, const std::string& request, const std::atomic<bool>& stop)>;

    explicit FakeServer(Script script) : script_(std::move(script)) {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        socklen_t len = sizeof a;
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        listen(fd_, 8);
        thread_ = std::thread([this] { loop(); });
    }
    ~FakeServer() {
        stop_ = true;
        thread_.join();
        close(fd_);
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
    std::string last_request() {
        std::lock_guard l(mu_);
        return last_;
    }
    int connections() const { return connections_; }

private:
    void loop() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 20) <= 0) continue;
            const int c = accept(fd_, nullptr, nullptr);
            if (c < 0) continue;
            ++connections_;
            const std::string req = read_request(c);
            {
                std::lock_guard l(mu_);
                last_ = req;
            }
            script_(c, req, stop_);
            close(c);
        }
    }
    // Headers, then Content-Length bytes of body; gives up after 2 s so the test never hangs.
    static std::string read_request(int c) {
        std::string r;
        const auto until = Clock::now() + std::chrono::seconds(2);
        size_t need = std::string::npos;
        while (Clock::now() < until) {
            const size_t h = r.find("\r\n\r\n");
            if (h != std::string::npos && need == std::string::npos) {
                const size_t cl = r.find("Content-Length: ");
                need = h + 4 + (cl == std::string::npos ? 0 : std::stoul(r.substr(cl + 16)));
            }
            if (need != std::string::npos && r.size() >= need) break;
            pollfd p{c, POLLIN, 0};
            if (poll(&p, 1, 20) <= 0) continue;
            char buf[4096];
            const ssize_t n = read(c, buf, sizeof buf);
            if (n <= 0) break;
            r.append(buf, static_cast<size_t>(n));
        }
        return r;
    }

    Script script_;
    int fd_ = -1;
    int port_ = 0;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::atomic<int> connections_{0};
    std::mutex mu_;
    std::string last_;
};

void send_all(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
        const ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return;
        off += static_cast<size_t>(n);
    }
}

std::string chunk(const std::string& s) {
    char len[32];
    std::snprintf(len, sizeof len, "%zx\r\n", s.size());
    return len + s + "\r\n";
}

const std::string kStreamHeaders =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

std::string delta_event(const std::string& text) {
    return "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + text + "\"},\"finish_reason\":null}]}\n\n";
}

const std::string kStopEvent = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";

// The Authorization header the server received, echoed back as servers sometimes do.
std::string auth_line(const std::string& req) {
    const size_t p = req.find("Authorization: ");
    return p == std::string::npos ? "" : req.substr(p, req.find("\r\n", p) - p);
}

CloudConfig fast_config(const std::string& url) {
    CloudConfig c;
    c.base_url = url;
    c.model = "test";
    c.api_key_env = kKeyEnv;
    c.connect_timeout_ms = 1000;
    c.first_byte_timeout_ms = 300;
    c.stall_timeout_ms = 300;
    c.total_timeout_ms = 5000;
    c.retries = 0;
    return c;
}

CloudRequest hello_request() {
    CloudRequest r;
    r.messages = {{"user", "Hello"}};
    r.max_tokens = 8;
    return r;
}

struct Outcome {
    std::optional<CloudError> error;
    std::string delivered;
    double ms = 0;
};

Outcome call(const CloudConfig& cfg, const CloudRequest& req = hello_request()) {
    Outcome o;
    const auto t0 = Clock::now();
    try {
        CloudClient(cfg).chat(req, [&](std::string_view d) { o.delivered += d; });
    } catch (const CloudError& e) {
        o.error = e;
    }
    o.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    return o;
}

class CloudClientTest : public ::testing::Test {
protected:
    void SetUp() override { setenv(kKeyEnv, kKey, 1); }
};

}  // namespace

// ---- SSE parsing --------------------------------------------------------------------------

TEST(SseParser, EveryByteSplitGivesTheSameEvents) {
    const std::string stream =
        ": keep-alive\r\n\r\ndata: {\"a\":1}\r\n\r\ndata:{\"b\":2}\n\nevent: x\nid: 3\ndata: one\ndata: two\n\n"
        "retry: 10\r\rdata: [DONE]\n\n";
    const std::vector<std::string> want = {"{\"a\":1}", "{\"b\":2}", "one\ntwo", "[DONE]"};
    for (size_t i = 0; i <= stream.size(); ++i) {
        SseParser p;
        auto got = p.push(std::string_view(stream).substr(0, i));
        for (auto& e : p.push(std::string_view(stream).substr(i))) got.push_back(e);
        EXPECT_FALSE(p.finish());
        EXPECT_EQ(got, want) << "split at " << i;
    }
}

TEST(SseParser, AnEventWithoutItsBlankLineIsReturnedAtTheEnd) {
    SseParser p;
    EXPECT_TRUE(p.push("data: [DONE]").empty());
    EXPECT_EQ(p.finish(), "[DONE]");
}

// ---- Against serve-model ------------------------------------------------------------------

class ModelServerTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        path_ = (std::filesystem::temp_directory_path() / ("microlm_cloud_" + std::to_string(getpid()) + ".gguf")).string();
        write_random_llama(path_, *model_shape_preset("tiny"), DType::Q8_0, 7);
        ModelServerConfig c;
        c.model_path = path_;
        c.port = 0;
        c.model_name = "tiny-test";
        server_ = new ModelServer(c);
        server_->start();
    }
    static void TearDownTestSuite() {
        delete server_;
        std::filesystem::remove(path_);
    }
    static CloudConfig config() {
        CloudConfig c;
        c.base_url = server_->base_url();
        c.model = "tiny-test";
        c.first_byte_timeout_ms = 5000;
        return c;
    }
    static inline std::string path_;
    static inline ModelServer* server_ = nullptr;
};

TEST_F(ModelServerTest, BindsAFreePort) { EXPECT_GT(server_->port(), 0); }

TEST_F(ModelServerTest, StreamedChatMatchesTheWholeResponse) {
    CloudClient client(config());
    CloudRequest r = hello_request();
    r.max_tokens = 12;
    r.temperature = 0.0f;
    std::vector<std::string> deltas;
    const CloudResult streamed = client.chat(r, [&](std::string_view d) { deltas.emplace_back(d); });
    ASSERT_FALSE(deltas.empty());
    std::string joined;
    for (auto& d : deltas) joined += d;
    EXPECT_EQ(joined, streamed.text);
    EXPECT_FALSE(streamed.finish_reason.empty());
    EXPECT_GE(streamed.first_token_ms, 0);

    r.stream = false;
    const CloudResult whole = client.chat(r, {});
    EXPECT_EQ(whole.text, streamed.text);
    EXPECT_EQ(whole.finish_reason, streamed.finish_reason);
}

TEST_F(ModelServerTest, RawCompletionsStreamAndStopStrings) {
    CloudClient client(config());
    CloudRequest r;
    r.prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nWell";
    r.max_tokens = 16;
    r.temperature = 0.0f;
    r.seed = 3;
    const CloudResult a = client.complete(r, {});
    // A stop string taken from the text (an ASCII character, so valid UTF-8 on its own) ends
    // it just before its first occurrence, and is not sent.
    size_t at = a.text.size() / 2;
    while (at < a.text.size() && (static_cast<unsigned char>(a.text[at]) >= 0x80 || a.text[at] == ' ')) ++at;
    ASSERT_LT(at, a.text.size()) << a.text;
    const std::string stop = a.text.substr(at, 1);
    r.stop = {stop};
    const CloudResult b = client.complete(r, {});
    EXPECT_EQ(b.text, a.text.substr(0, a.text.find(stop)));
    EXPECT_EQ(b.finish_reason, "stop");
}

TEST_F(ModelServerTest, AFinalAssistantMessageIsContinued) {
    CloudClient client(config());
    // Continuing "Well" through chat must give what the raw prompt "...assistant\nWell" gives.
    CloudRequest chat = hello_request();
    chat.messages = {{"system", "S"}, {"user", "Hi"}, {"assistant", "Well"}};
    chat.max_tokens = 10;
    chat.temperature = 0.0f;
    chat.continue_final_message = true;
    CloudRequest raw;
    raw.prompt = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nWell";
    raw.max_tokens = 10;
    raw.temperature = 0.0f;
    EXPECT_EQ(client.chat(chat, {}).text, client.complete(raw, {}).text);
}

TEST_F(ModelServerTest, EchoWithLogprobsScoresThePromptAsTokenByTokenDecodingDoes) {
    CloudClient client(config());
    CloudRequest r;
    r.prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nWell, hello";
    r.max_tokens = 1;
    r.temperature = 0.0f;
    r.stream = false;
    r.echo = true;
    r.logprobs = 1;
    const CloudResult res = client.complete(r, {});
    ASSERT_TRUE(res.logprobs);
    const CloudLogprobs& lp = *res.logprobs;
    // The prompt's tokens then the one generated; the text is the prompt, then that token.
    ASSERT_GE(lp.tokens.size(), 2u);
    std::string joined;
    for (const auto& t : lp.tokens) joined += t;
    EXPECT_EQ(joined.substr(0, r.prompt.size()), r.prompt);
    EXPECT_EQ(res.text.substr(0, r.prompt.size()), r.prompt);
    EXPECT_TRUE(std::isnan(lp.logprobs[0]));
    ASSERT_EQ(lp.offsets.size(), lp.tokens.size());
    for (size_t i = 1; i < lp.tokens.size(); ++i) {
        EXPECT_EQ(lp.offsets[i], lp.offsets[i - 1] + static_cast<int64_t>(lp.tokens[i - 1].size()));
        EXPECT_LE(lp.logprobs[i], 0.0);
    }
    // The reference: the same model decoding the prompt one token at a time, log-softmax by hand.
    auto model = Model::load(path_);
    const Tokenizer tok(vocab_from_gguf(model->file()));
    const std::vector<int32_t> ids = tok.encode(r.prompt, true, true);
    ASSERT_EQ(ids.size() + 1, lp.tokens.size());
    Context ctx(*model, 256, 1);
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
        const auto l = ctx.eval(std::span<const int32_t>(&ids[i], 1));
        EXPECT_NEAR(lp.logprobs[i + 1], reference_logprob(l, ids[i + 1]), 1e-3) << "token " << i + 1;
    }
    // Streaming cannot carry the echo here: a clear 400, not a silent drop.
    r.stream = true;
    try {
        client.complete(r, {});
        ADD_FAILURE() << "echo with stream was accepted";
    } catch (const CloudError& e) {
        EXPECT_EQ(e.http_status, 400);
        EXPECT_NE(std::string(e.what()).find("stream"), std::string::npos) << e.what();
    }
}

TEST_F(ModelServerTest, BadRequestsGetAStatusNotAHang) {
    CloudRequest r;  // no messages
    const Outcome o = call(config(), r);
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind, CloudErrorKind::kHttpStatus);
    EXPECT_EQ(o.error->http_status, 400);
    EXPECT_NE(std::string(o.error->what()).find("messages"), std::string::npos) << o.error->what();
}

TEST_F(ModelServerTest, CancellationStopsAStream) {
    CloudClient client(config());
    CloudRequest r = hello_request();
    r.max_tokens = 200;
    std::stop_source src;
    int n = 0;
    try {
        client.chat(r, [&](std::string_view) {
            if (++n == 2) src.request_stop();
        }, src.get_token());
        FAIL() << "expected a cancellation";
    } catch (const CloudError& e) {
        EXPECT_EQ(e.kind, CloudErrorKind::kCancelled);
    }
}

// ---- Against a misbehaving server ---------------------------------------------------------

TEST_F(CloudClientTest, RefusedConnection) {
    // A bound socket that does not listen: the port is ours and connecting is refused.
    const int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
    CloudConfig cfg = fast_config("http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)));
    cfg.retries = 2;
    cfg.retry_backoff_ms = 10;
    const Outcome o = call(cfg);
    close(s);
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind, CloudErrorKind::kRefused) << o.error->what();
    EXPECT_LT(o.ms, 2000);
}

// Issue 13 item 15: with a retry, the first-byte timeout was paid twice (20.2 s for the
// documented 10 s). It counts from the request now, retries included, so a silent server costs
// the caller the timeout once and no retry is started with nothing left of it.
TEST_F(CloudClientTest, SilentServerTimesOutBeforeTheFirstByte) {
    // Holds each connection a little past the client's 300 ms, then takes the next one.
    FakeServer srv([](int, const std::string&, const std::atomic<bool>&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(400));
    });
    CloudConfig cfg = fast_config(srv.url());
    cfg.retries = 1;
    cfg.retry_backoff_ms = 10;
    const Outcome o = call(cfg);
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind, CloudErrorKind::kTimeout) << o.error->what();
    EXPECT_EQ(srv.connections(), 1);
    EXPECT_LT(o.ms, 550);  // the 300 ms bound once (the old code: 2 x 300 ms + the backoff)
}

// Issue 13 item 15: a cloud that ignores max_tokens streamed on without end (48 MB for 40
// tokens asked); the stream is cut after max_tokens deltas, as a "length" finish.
TEST_F(CloudClientTest, AStreamIsCutAtMaxTokens) {
    FakeServer srv([](int fd, const std::string&, const std::atomic<bool>& stop) {
        send_all(fd, kStreamHeaders);
        for (int i = 0; i < 5000 && !stop; ++i) send_all(fd, chunk(delta_event(" w")));
        send_all(fd, chunk("data: [DONE]\n\n") + "0\r\n\r\n");
    });
    CloudRequest req = hello_request();
    req.max_tokens = 40;
    std::string delivered;
    const CloudResult r = CloudClient(fast_config(srv.url())).chat(req, [&](std::string_view d) { delivered += d; });
    EXPECT_EQ(delivered.size(), 80u) << delivered.substr(0, 100);
    EXPECT_EQ(r.text, delivered);
    EXPECT_EQ(r.finish_reason, "length");
}

// Issue 13 item 15: an HTML page answering 200 (a proxy's or a login page) was reported as a
// reset; it is a malformed answer.
TEST_F(CloudClientTest, AnHtmlPageIsMalformedNotAReset) {
    FakeServer srv([](int fd, const std::string&, const std::atomic<bool>&) {
        const std::string body = "<!doctype html>\n<html><body>Please sign in</body></html>\n";
        send_all(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    });
    const Outcome o = call(fast_config(srv.url()));
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind, CloudErrorKind::kMalformed) << o.error->what();
}

TEST_F(CloudClientTest, StatusErrorCarriesAnExcerptButNeverTheKey) {
    FakeServer srv([](int fd, const std::string& req, const std::atomic<bool>&) {
        const std::string body = "{\"error\":{\"message\":\"overloaded; you sent " + auth_line(req) + "\"}}";
        send_all(fd, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    });
    const Outcome o = call(fast_config(srv.url()));
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind, CloudErrorKind::kHttpStatus);
    EXPECT_EQ(o.error->http_status, 500);
    const std::string msg = o.error->what();
    EXPECT_NE(msg.find("overloaded"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(kKey), std::string::npos) << msg;
    EXPECT_NE(srv.last_request().find(std::string("Authorization: Bearer ") + kKey), std::string::npos);
}

// Issue 13 item 4: the excerpt was cut to 300 characters before the key was masked, so a key
// straddling the cut leaked its first characters.
TEST_F(CloudClientTest, AKeyStraddlingTheExcerptCutNeverLeaks) {
    for (const size_t pad : {290, 295, 299, 300}) {
        FakeServer srv([pad](int fd, const std::string&, const std::atomic<bool>&) {
            const std::string body = std::string(pad, 'x') + kKey + " and more";
            send_all(fd, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
        });
        const Outcome o = call(fast_config(srv.url()));
        ASSERT_TRUE(o.error);
        const std::string msg = o.error->what();
        EXPECT_EQ(msg.find(std::string(kKey).substr(0, 6)), std::string::npos) << "pad " << pad << ": " << msg;
    }
}

// Issue 13 item 5: a password in the cloud URL reached every error message.
TEST_F(CloudClientTest, UrlCredentialsNeverReachAnError) {
    FakeServer srv([](int fd, const std::string& req, const std::atomic<bool>&) {
        const std::string body = "{\"error\":{\"message\":\"echo: " + auth_line(req) + "\"}}";
        send_all(fd, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    });
    CloudConfig cfg = fast_config(srv.url());
    cfg.base_url.replace(0, 7, "http://user:secretpw@");
    cfg.base_url += "/v1?api_key=querysecret";
    const Outcome o = call(cfg);
    ASSERT_TRUE(o.error);
    const std::string msg = o.error->what();
    EXPECT_EQ(msg.find("secretpw"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("querysecret"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(kKey), std::string::npos) << msg;
}

TEST(CloudSecrets, RedactedUrlsAndMaskedTexts) {
    EXPECT_EQ(redact_url("http://user:pw@h:8080/v1?key=k#frag"), "http://h:8080/v1");
    EXPECT_EQ(redact_url("https://api.example.com/v1"), "https://api.example.com/v1");
    EXPECT_EQ(redact_url("http://a@b@host/x"), "http://host/x");
    EXPECT_EQ(mask_secrets("k=abcdefgh u:longpassword", "abcdefgh", "http://u:longpassword@h/"), "k=*** ***");
    EXPECT_EQ(mask_secrets("tok1234567 stays? no", "", "http://h/v1?access_token=tok1234567&x=1"), "*** stays? no");
    EXPECT_EQ(mask_secrets("nothing here", "", "http://h/v1"), "nothing here");
}

TEST_F(CloudClientTest, ResetMidStreamAfterText) {
    FakeServer srv([](int fd, const std::string&, const std::atomic<bool>&) {
        send_all(fd, kStreamHeaders + chunk(delta_event("Hello") + delta_event(" there")));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        linger l{1, 0};  // an RST, not a clean close
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    });
    CloudConfig cfg = fast_config(srv.url());
    cfg.retries = 3;
    const Outcome o = call(cfg);
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind, CloudErrorKind::kReset) << o.error->what();
    EXPECT_EQ(o.delivered, "Hello there");
    EXPECT_EQ(srv.connections(), 1);  // text had reached the caller: no retry
}

TEST_F(CloudClientTest, StreamClosedCleanlyWithoutDoneIsAReset) {
    FakeServer srv([](int fd, const std::string&, const std::atomic<bool>&) {
        send_all(fd, kStreamHeaders + chunk(delta_event("Hi")) + "0\r\n\r\n");
    });
    const Outcome o = call(fast_config(srv.url()));
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind, CloudErrorKind::kReset) << o.error->what();
}

TEST_F(CloudClientTest, MalformedEventIsAnErrorWithoutTheKey) {
    FakeServer srv([](int fd, const std::string& req, const std::atomic<bool>&) {
        send_all(fd, kStreamHeaders + chunk(delta_event("Hi") + "data: {not json " + auth_line(req) + "\n\n") + "0\r\n\r\n");
    });
    const Outcome o = call(fast_config(srv.url()));
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind, CloudErrorKind::kMalformed) << o.error->what();
    EXPECT_EQ(std::string(o.error->what()).find(kKey), std::string::npos) << o.error->what();
    EXPECT_EQ(o.delivered, "Hi");
}

TEST_F(CloudClientTest, StallAfterTheFirstEventTimesOut) {
    FakeServer srv([](int fd, const std::string&, const std::atomic<bool>& stop) {
        send_all(fd, kStreamHeaders + chunk(delta_event("Hi")));
        while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    });
    const Outcome o = call(fast_config(srv.url()));
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind, CloudErrorKind::kTimeout) << o.error->what();
    EXPECT_LT(o.ms, 1500);
}

TEST_F(CloudClientTest, KeepAlivesAndCompactDataLinesAreRead) {
    FakeServer srv([](int fd, const std::string&, const std::atomic<bool>&) {
        send_all(fd, kStreamHeaders + chunk(": ping\r\n\r\n") +
                         chunk("data:{\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n") + chunk(delta_event("A")) +
                         chunk(": ping\n\n") + chunk(delta_event(" b")) + chunk(kStopEvent) + chunk("data: [DONE]\n\n") +
                         "0\r\n\r\n");
    });
    const Outcome o = call(fast_config(srv.url()));
    EXPECT_FALSE(o.error) << o.error->what();
    EXPECT_EQ(o.delivered, "A b");
}

// llama-cpp-python's server stops a stream when another request arrives (its default
// --interrupt_requests true) and still sends [DONE], with no finish_reason: the opener check's
// requests beside a continuation cut it to nothing. That is an early end, not a reply.
TEST_F(CloudClientTest, DoneWithoutAFinishReasonIsAnEarlyEnd) {
    FakeServer srv([](int fd, const std::string&, const std::atomic<bool>&) {
        send_all(fd, kStreamHeaders + chunk(delta_event("Half a")) + chunk("data: [DONE]\n\n") + "0\r\n\r\n");
    });
    const Outcome o = call(fast_config(srv.url()));
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind, CloudErrorKind::kReset) << o.error->what();
    EXPECT_NE(std::string(o.error->what()).find("finish_reason"), std::string::npos) << o.error->what();
    EXPECT_EQ(o.delivered, "Half a");
}

TEST_F(CloudClientTest, RedirectsAreNotFollowed) {
    FakeServer other([](int fd, const std::string&, const std::atomic<bool>&) {
        send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    });
    FakeServer srv([&](int fd, const std::string&, const std::atomic<bool>&) {
        send_all(fd, "HTTP/1.1 307 Temporary Redirect\r\nLocation: " + other.url() +
                         "/v1/chat/completions\r\nContent-Length: 0\r\n\r\n");
    });
    const Outcome o = call(fast_config(srv.url()));
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind, CloudErrorKind::kHttpStatus);
    EXPECT_EQ(other.connections(), 0);
}

TEST_F(CloudClientTest, MissingKeyVariableIsAConfigErrorNamingIt) {
    unsetenv(kKeyEnv);
    const Outcome o = call(fast_config("http://127.0.0.1:1"));
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind, CloudErrorKind::kConfig);
    EXPECT_NE(std::string(o.error->what()).find(kKeyEnv), std::string::npos);
}
