// ModelServer: OpenAI-compatible /v1/chat/completions, /v1/completions and /v1/models over
// microlm's HTTP server (src/http/), one generation at a time on one Context (its KV prefix reused across requests);
// a completions request with an array of prompts is decoded as one batch (generate_batch).
// Not here: openers, stitching or recovery (that is the gateway); no auth (loopback by default).
#include "microlm/model_server.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "microlm/chat.h"
#include "microlm/error.h"
#include "microlm/generate.h"
#include "microlm/handoff.h"
#include "microlm/http_server.h"
#include "microlm/local_model.h"
#include "microlm/sampler.h"
#include "microlm/tokenizer.h"
#include "http_util.h"

namespace microlm {
namespace {

using json = nlohmann::json;
using http::BadRequest;
using http::dump;
using http::error_body;
using http::send_error;

// Holds back streamed text that may be the start of a stop string, so that a stop string is
// never sent, even split across tokens.
class StopFilter {
public:
    explicit StopFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {}

    // Text that can be sent now; sets stopped() when a stop string completed.
    std::string push(const std::string& text) {
        buf_ += text;
        size_t cut = std::string::npos;
        for (const auto& s : stops_) cut = std::min(cut, buf_.find(s));
        if (cut != std::string::npos) {
            stopped_ = true;
            std::string out = buf_.substr(0, cut);
            buf_.clear();
            return out;
        }
        size_t hold = 0;
        for (const auto& s : stops_)
            for (size_t n = std::min(s.size() - 1, buf_.size()); n > hold; --n)
                if (buf_.compare(buf_.size() - n, n, s, 0, n) == 0) {
                    hold = n;
                    break;
                }
        std::string out = buf_.substr(0, buf_.size() - hold);
        buf_.erase(0, buf_.size() - hold);
        return out;
    }
    std::string finish() { return std::exchange(buf_, {}); }
    bool stopped() const { return stopped_; }

private:
    std::vector<std::string> stops_;
    std::string buf_;
    bool stopped_ = false;
};

// The most prompts one completions request may carry, the most decoded together, and the KV
// cache one batch may allocate (fewer sequences run together when long prompts need more).
constexpr size_t kMaxBatchPrompts = 256;
constexpr int32_t kBatchSequences = 16;
constexpr int64_t kBatchKvBytes = int64_t{256} << 20;

struct Request {
    std::string prompt;  // the text the model continues, chat template already applied
    std::vector<std::string> batch;  // completions with an array of 2+ prompts: all of them (prompt unused)
    int64_t max_tokens = 0;
    SamplerParams sampling;
    std::vector<std::string> stops;
    bool stream = false;
    // Completions only: return the prompt before the completion (`echo`) and the log p of each
    // token (`logprobs`, OpenAI's legacy shape; top_logprobs is not computed and is null).
    bool echo = false;
    bool logprobs = false;
};

// OpenAI's legacy completions `logprobs` object: one entry per token of the returned text.
struct TokenLogprobs {
    std::vector<std::string> tokens;
    std::vector<double> logprobs;  // NaN where there is none (the first prompt token)
    std::vector<size_t> offsets;   // byte offset of each token in the returned text
    void add(std::string piece, double lp) {
        offsets.push_back(offsets.empty() ? 0 : offsets.back() + tokens.back().size());
        tokens.push_back(std::move(piece));
        logprobs.push_back(lp);
    }
    json to_json() const {
        json lp = json::array();
        for (const double v : logprobs) lp.push_back(std::isnan(v) ? json(nullptr) : json(v));
        return {{"tokens", tokens}, {"token_logprobs", lp}, {"top_logprobs", nullptr}, {"text_offset", offsets}};
    }
};

}  // namespace

struct ModelServer::Impl {
    ModelServerConfig cfg;
    std::unique_ptr<LocalModel> local;
    std::optional<std::string> default_system;
    std::mutex gen_mutex;  // one generation at a time: the Context is one conversation's state
    // Requests for logprobs (an opener check's echo) run on a second Context, beside a running
    // generation, as servers with parallel slots do: a check never waits for a continuation.
    std::mutex score_mutex;
    std::unique_ptr<Context> score_ctx;  // made on first use
    std::unique_ptr<http::Server> server;  // made in routes(), with the limits of cfg
    std::thread thread;
    std::atomic<int> port{0};
    std::atomic<bool> stopping{false};
    std::atomic<uint64_t> next_id{1};

    explicit Impl(ModelServerConfig c) : cfg(std::move(c)) {
        local = LocalModel::open(cfg.model_path, cfg.n_ctx, cfg.threads);
        default_system = chat_template_default_system(local->tokenizer().vocab().chat_template);
        if (cfg.model_name.empty()) cfg.model_name = std::filesystem::path(cfg.model_path).stem().string();
        routes();
    }

    Request common(const json& body) const {
        Request r;
        r.max_tokens = cfg.default_max_tokens;
        auto num = [&](const char* key) { return http::number_field(body, key); };
        // OpenAI's sampling: temperature and top_p only (no top-k, no min-p), defaults 1.
        r.sampling = SamplerParams{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f};
        // Integers in range, checked before any cast (a cast of 1e300 is undefined behaviour).
        if (auto v = http::integer_field(body, "max_tokens")) r.max_tokens = *v;
        if (auto v = http::integer_field(body, "max_completion_tokens")) r.max_tokens = *v;
        if (r.max_tokens < 0) throw BadRequest("'max_tokens' must be >= 0", "max_tokens");
        if (auto v = num("temperature")) {
            if (*v < 0 || *v > 2) throw BadRequest("'temperature' must be between 0 and 2", "temperature");
            r.sampling.temperature = static_cast<float>(*v);
        }
        if (auto v = num("top_p")) {
            if (*v <= 0 || *v > 1) throw BadRequest("'top_p' must be in (0, 1]", "top_p");
            r.sampling.top_p = static_cast<float>(*v);
        }
        if (auto v = http::integer_field(body, "seed")) r.sampling.seed = static_cast<uint64_t>(*v);
        else r.sampling.seed = std::random_device{}();
        if (body.contains("stop") && !body["stop"].is_null()) {
            const json& s = body["stop"];
            if (s.is_string()) r.stops.push_back(s.get<std::string>());
            else if (s.is_array()) {
                for (const auto& x : s) {
                    if (!x.is_string()) throw BadRequest("'stop' must be a string or an array of strings", "stop");
                    r.stops.push_back(x.get<std::string>());
                }
            } else throw BadRequest("'stop' must be a string or an array of strings", "stop");
            std::erase_if(r.stops, [](const std::string& x) { return x.empty(); });
        }
        if (auto v = http::bool_field(body, "stream")) r.stream = *v;
        return r;
    }

    // A chat request whose last message is the assistant's is continued: its text stays open
    // (no end token), which is how the prefill handoff asks the cloud to finish a sentence.
    // vLLM's fields are honoured: continue_final_message false, or add_generation_prompt true
    // without continue_final_message, start a new assistant turn instead.
    Request chat_request(const json& body) const {
        Request r = common(body);
        std::vector<ChatMessage> msgs = http::parse_messages(body);
        bool cont = msgs.back().role == "assistant";
        auto flag = [&](const char* key) { return http::bool_field(body, key); };
        const auto cfm = flag("continue_final_message");
        const auto agp = flag("add_generation_prompt");
        if (cfm) cont = *cfm && cont;
        else if (agp && *agp) cont = false;
        if (cfm && *cfm && msgs.back().role != "assistant")
            throw BadRequest("continue_final_message needs the last message to be the assistant's", "continue_final_message");
        if (cont) {
            const std::string opener = msgs.back().content;
            msgs.pop_back();
            r.prompt = prefill_prompt(msgs, opener, default_system);
        } else {
            r.prompt = format_chatml(msgs, true, default_system);
        }
        return r;
    }

    Request completion_request(const json& body) const {
        Request r = common(body);
        if (!body.contains("prompt")) throw BadRequest("'prompt' is required", "prompt");
        const json& p = body["prompt"];
        if (p.is_string()) r.prompt = p.get<std::string>();
        else if (p.is_array() && p.size() == 1 && p[0].is_string()) r.prompt = p[0].get<std::string>();
        else if (p.is_array() && p.size() > 1) {
            if (p.size() > kMaxBatchPrompts)
                throw BadRequest("at most " + std::to_string(kMaxBatchPrompts) + " prompts per request", "prompt");
            for (const json& x : p) {
                if (!x.is_string()) throw BadRequest("'prompt' must be a string or an array of strings", "prompt");
                r.batch.push_back(x.get<std::string>());
            }
        } else throw BadRequest("'prompt' must be a string or an array of strings", "prompt");
        if (auto v = http::bool_field(body, "echo")) r.echo = *v;
        if (auto v = http::number_field(body, "logprobs")) {
            if (*v < 0 || *v > 5) throw BadRequest("'logprobs' must be between 0 and 5", "logprobs");
            r.logprobs = true;
        }
        if ((r.echo || r.logprobs) && r.stream)
            throw BadRequest("'echo' and 'logprobs' need \"stream\": false on this server", "stream");
        if (!r.batch.empty() && (r.stream || r.echo || r.logprobs))
            throw BadRequest("an array of prompts is answered whole: \"stream\", \"echo\" and \"logprobs\" take one prompt",
                             "prompt");
        return r;
    }

    struct Generated {
        std::string finish_reason = "stop";
        int64_t prompt_tokens = 0;
        int64_t completion_tokens = 0;
        std::optional<TokenLogprobs> logprobs;  // when the request asked for them
    };

    // Runs one request, handing text to emit as it is decoded; emit returns false when the
    // client has gone, which stops generation.
    Generated generate_text(const Request& r, const std::function<bool(const std::string&)>& emit) {
        Generated g;
        const auto ids = local->tokenizer().encode(r.prompt, /*add_special=*/true, /*parse_special=*/true);
        if (ids.empty()) throw BadRequest("the prompt is empty");
        g.prompt_tokens = static_cast<int64_t>(ids.size());
        if (g.prompt_tokens >= local->n_ctx())
            throw BadRequest("the prompt has " + std::to_string(ids.size()) + " tokens; this server's context holds " +
                             std::to_string(local->n_ctx()));
        const int64_t budget = std::min<int64_t>(r.max_tokens, local->n_ctx() - g.prompt_tokens);

        for (int waited = 0; waited < cfg.delay_ms && !stopping; waited += 10)
            std::this_thread::sleep_for(std::chrono::milliseconds(std::min(10, cfg.delay_ms - waited)));

        std::unique_lock lock(r.logprobs ? score_mutex : gen_mutex);
        if (r.logprobs && !score_ctx) score_ctx = local->new_context();
        Context& ctx = r.logprobs ? *score_ctx : local->context();
        const Tokenizer& tok = local->tokenizer();
        if (r.logprobs) {
            g.logprobs.emplace();
            if (r.echo) {
                // The prompt's own tokens, scored teacher-forced; a BOS the tokenizer added is
                // not part of the text, so it shows as an empty token.
                const std::vector<double> lp = score_tokens(ctx, ids);
                for (size_t i = 0; i < ids.size(); ++i) {
                    const bool added_bos = i == 0 && tok.vocab().add_bos && ids[0] == tok.bos_id();
                    g.logprobs->add(added_bos ? std::string() : tok.token_to_piece(ids[i], true), lp[i]);
                }
            }
        }
        if (budget == 0) {
            g.finish_reason = "length";
            return g;
        }
        Sampler sampler(r.sampling);
        Utf8Streamer utf8;
        StopFilter stop(r.stops);
        bool gone = false;
        std::vector<double> gen_lp;
        const GenerateStats st = generate(
            ctx, sampler, tok, ids, budget,
            [&](int32_t id) {
                const std::string piece = tok.token_to_piece(id, false);
                // generate() appends the token's log p before handing it over.
                if (g.logprobs) g.logprobs->add(piece, gen_lp.back());
                const std::string text = stop.push(utf8.push(piece));
                if (!text.empty() && !emit(text)) gone = true;
                return !gone && !stop.stopped() && !stopping;
            },
            g.logprobs ? &gen_lp : nullptr);
        g.completion_tokens = st.gen_tokens;
        if (!stop.stopped() && !gone) {
            const std::string rest = stop.push(utf8.flush());
            const std::string tail = stop.stopped() ? rest : rest + stop.finish();
            if (!tail.empty()) emit(tail);
        }
        if (!stop.stopped() && st.gen_tokens == budget) g.finish_reason = "length";
        return g;
    }

    // An array of prompts: decoded together on a Context sized to them (kBatchSequences
    // sequences, continuous batching), then each text cut at its first stop string. Prompt i
    // is sampled with seed + i. One choice per prompt, in order; usage is the sum.
    json generate_batch_choices(const Request& r, int64_t& prompt_tokens, int64_t& completion_tokens) {
        const Tokenizer& tok = local->tokenizer();
        std::vector<std::vector<int32_t>> prompts;
        int64_t longest = 0;
        for (size_t i = 0; i < r.batch.size(); ++i) {
            prompts.push_back(tok.encode(r.batch[i], /*add_special=*/true, /*parse_special=*/true));
            const auto n = static_cast<int64_t>(prompts.back().size());
            if (n == 0) throw BadRequest("prompt " + std::to_string(i) + " is empty", "prompt");
            if (n >= local->n_ctx())
                throw BadRequest("prompt " + std::to_string(i) + " has " + std::to_string(n) +
                                     " tokens; this server's context holds " + std::to_string(local->n_ctx()),
                                 "prompt");
            longest = std::max(longest, n);
            prompt_tokens += n;
        }
        const int64_t n_ctx = std::min(local->n_ctx(), longest + std::max<int64_t>(r.max_tokens, 1));
        const LlamaHparams& hp = local->model().config();
        const int64_t seq_kv_bytes = 2 * hp.n_layers * n_ctx * hp.n_kv_heads * hp.head_dim() * 2;  // K and V, fp16
        const auto seqs = static_cast<int32_t>(std::clamp<int64_t>(
            std::min<int64_t>(static_cast<int64_t>(r.batch.size()), kBatchKvBytes / seq_kv_bytes), 1, kBatchSequences));
        std::vector<BatchReply> out;
        {
            std::unique_lock lock(gen_mutex);
            Context ctx(local->model(), n_ctx, cfg.threads, std::max<int64_t>(64, seqs), nullptr, seqs);
            if (r.max_tokens > 0) out = generate_batch(ctx, tok, prompts, r.max_tokens, r.sampling);
            else out.resize(prompts.size());
        }
        json choices = json::array();
        for (size_t i = 0; i < out.size(); ++i) {
            completion_tokens += static_cast<int64_t>(out[i].tokens.size());
            StopFilter stop(r.stops);
            std::string text = stop.push(tok.decode(out[i].tokens, false));
            if (!stop.stopped()) text += stop.finish();
            const char* finish = stop.stopped() || out[i].ended ? "stop" : "length";
            choices.push_back({{"index", i}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish}});
        }
        return choices;
    }

    // Shared by both endpoints: chat differs in the request's shape and the chunk's shape.
    void serve(const http::Request& req, http::Response& res, bool chat) {
        json body;
        Request r;
        try {
            body = http::parse_body(req.body);
            r = chat ? chat_request(body) : completion_request(body);
        } catch (const BadRequest& e) {
            return send_error(res, 400, e.what(), "invalid_request_error", e.param);
        } catch (const Error& e) {
            return send_error(res, 400, e.what(), "invalid_request_error");
        }
        const std::string id = std::string(chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++);
        const int64_t created = http::unix_now_s();
        const std::string object = chat ? "chat.completion.chunk" : "text_completion";

        auto chunk = [=, this](const std::string* text, const char* finish, bool first) {
            json choice = {{"index", 0}};
            if (chat) {
                json delta = json::object();
                if (first) delta["role"] = "assistant";
                if (text) delta["content"] = *text;
                choice["delta"] = delta;
            } else {
                choice["text"] = text ? *text : "";
                choice["logprobs"] = nullptr;
            }
            choice["finish_reason"] = finish ? json(finish) : json(nullptr);
            json c = {{"id", id}, {"object", object}, {"created", created}, {"model", cfg.model_name},
                      {"choices", json::array({choice})}};
            return "data: " + dump(c) + "\n\n";
        };

        if (r.stream) {
            res.set_header("Cache-Control", "no-cache");
            res.set_stream("text/event-stream", [this, r, chunk, chat](http::BodyWriter& sink) {
                auto write = [&](const std::string& s) { return sink.write(s); };
                std::string end;
                try {
                    bool first = chat;
                    if (chat) {
                        // The role comes first, as OpenAI sends it, before any content.
                        const std::string empty;
                        if (!write(chunk(&empty, nullptr, true))) return;
                        first = false;
                    }
                    const Generated g = generate_text(r, [&](const std::string& t) { return write(chunk(&t, nullptr, first)); });
                    end = chunk(nullptr, g.finish_reason.c_str(), false);
                } catch (const BadRequest& e) {
                    // Headers are gone: the error travels as an event, as OpenAI's API does.
                    end = "data: " + dump(error_body(e.what(), "invalid_request_error")) + "\n\n";
                } catch (const std::exception&) {
                    end = "data: " + dump(error_body(http::kInternalErrorMessage, "server_error")) + "\n\n";
                }
                write(end + "data: [DONE]\n\n");
            });
            return;
        }

        if (!r.batch.empty()) {
            int64_t pt = 0, ct = 0;
            json choices;
            try {
                choices = generate_batch_choices(r, pt, ct);
            } catch (const BadRequest& e) {
                return send_error(res, 400, e.what(), "invalid_request_error", e.param);
            } catch (const std::exception&) {
                return send_error(res, 500, http::kInternalErrorMessage, "server_error");
            }
            const json out = {{"id", id},          {"object", "text_completion"}, {"created", created},
                              {"model", cfg.model_name}, {"choices", choices},
                              {"usage", {{"prompt_tokens", pt}, {"completion_tokens", ct}, {"total_tokens", pt + ct}}}};
            res.set_content(dump(out), "application/json");
            return;
        }
        std::string text;
        Generated g;
        try {
            g = generate_text(r, [&](const std::string& t) {
                text += t;
                return true;
            });
        } catch (const BadRequest& e) {
            return send_error(res, 400, e.what(), "invalid_request_error", e.param);
        } catch (const std::exception&) {
            return send_error(res, 500, http::kInternalErrorMessage, "server_error");
        }
        json choice = {{"index", 0}, {"finish_reason", g.finish_reason}};
        if (chat) choice["message"] = {{"role", "assistant"}, {"content", text}};
        else {
            choice["text"] = r.echo ? r.prompt + text : text;
            choice["logprobs"] = g.logprobs ? g.logprobs->to_json() : json(nullptr);
        }
        json out = {{"id", id},
                    {"object", chat ? "chat.completion" : "text_completion"},
                    {"created", created},
                    {"model", cfg.model_name},
                    {"choices", json::array({choice})},
                    {"usage",
                     {{"prompt_tokens", g.prompt_tokens},
                      {"completion_tokens", g.completion_tokens},
                      {"total_tokens", g.prompt_tokens + g.completion_tokens}}}};
        res.set_content(dump(out), "application/json");
    }

    void routes() {
        http::ServerLimits limits;
        limits.max_body_bytes = cfg.max_body_bytes;
        limits.header_timeout_ms = cfg.read_timeout_s * 1000;
        limits.body_timeout_ms = cfg.read_timeout_s * 3000;
        server = std::make_unique<http::Server>(limits);
        server->route("POST", "/v1/chat/completions", [this](const http::Request& q, http::Response& s) { serve(q, s, true); });
        server->route("POST", "/v1/completions", [this](const http::Request& q, http::Response& s) { serve(q, s, false); });
        server->route("GET", "/v1/models", [this](const http::Request&, http::Response& s) {
            json m = {{"id", cfg.model_name}, {"object", "model"}, {"created", http::unix_now_s()}, {"owned_by", "microlm"}};
            s.set_content(dump(json{{"object", "list"}, {"data", json::array({m})}}), "application/json");
        });
        server->route("GET", "/health", [](const http::Request&, http::Response& s) { s.set_content("{\"status\":\"ok\"}", "application/json"); });
        http::install_error_handlers(*server);
    }

    void bind() { port = server->bind(cfg.host, cfg.port, "serve-model"); }
};

ModelServer::ModelServer(ModelServerConfig cfg) : impl_(std::make_unique<Impl>(std::move(cfg))) {}

ModelServer::~ModelServer() {
    stop();
    if (impl_->thread.joinable()) impl_->thread.join();
}

int ModelServer::start() {
    impl_->bind();
    impl_->thread = std::thread([this] { impl_->server->run(); });
    return impl_->port;
}

void ModelServer::run(const std::function<void(int)>& on_listening) {
    impl_->bind();
    if (on_listening) on_listening(impl_->port);
    impl_->server->run();
}

void ModelServer::stop() {
    impl_->stopping = true;
    impl_->server->stop();
}

int ModelServer::port() const { return impl_->port; }
std::string ModelServer::base_url() const { return "http://" + impl_->cfg.host + ":" + std::to_string(impl_->port); }
const std::string& ModelServer::model_name() const { return impl_->cfg.model_name; }

}  // namespace microlm
