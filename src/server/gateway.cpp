// Gateway: loading and checking at construction, the routes, the bearer token, the web demo's
// static files (no path outside web_dir is ever read), /health, /metrics and the lifecycle.
// Not here: the chat-completions stream itself (gateway_stream.cpp).
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "microlm/error.h"
#include "gateway_impl.h"
#include "http_util.h"

namespace microlm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Compares in time that does not depend on where the first difference is (the length is no
// secret worth hiding).
bool same_secret(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

std::string content_type(const fs::path& p) {
    const std::string ext = p.extension().string();
    if (ext == ".html") return "text/html; charset=utf-8";
    if (ext == ".js") return "text/javascript; charset=utf-8";
    if (ext == ".css") return "text/css; charset=utf-8";
    if (ext == ".json") return "application/json";
    if (ext == ".svg") return "image/svg+xml";
    if (ext == ".png") return "image/png";
    if (ext == ".ico") return "image/x-icon";
    if (ext == ".txt") return "text/plain; charset=utf-8";
    return "application/octet-stream";
}

// A request path the demo may serve: segments of letters, digits, '.', '-' and '_', none of
// them "." or ".." or hidden (".git"). Anything else is refused before the disk is touched.
bool safe_relative_path(std::string_view rel) {
    if (rel.empty() || rel.size() > 200) return false;
    size_t start = 0;
    while (start <= rel.size()) {
        const size_t end = std::min(rel.find('/', start), rel.size());
        const std::string_view seg = rel.substr(start, end - start);
        if (seg.empty() || seg.front() == '.') return false;
        for (char c : seg)
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_')
                return false;
        start = end + 1;
    }
    return true;
}

}  // namespace

Gateway::Impl::Impl(GatewayConfig c) : cfg(std::move(c)), cloud_wait(cfg.expected_cloud_wait_ms) {
    if (!cfg.token_env.empty()) {
        const char* v = std::getenv(cfg.token_env.c_str());
        if (!v || !*v)
            throw Error("the bearer token's environment variable " + cfg.token_env +
                        " is not set; export it, or leave out --token-env to run without a token");
        token = v;
    }
    if (cfg.cloud.base_url.rfind("http://", 0) != 0 && cfg.cloud.base_url.rfind("https://", 0) != 0)
        throw Error("--cloud '" + redact_url(cfg.cloud.base_url) + "' must start with http:// or https://");
    if (!cfg.cloud.api_key_env.empty()) {
        const char* v = std::getenv(cfg.cloud.api_key_env.c_str());
        if (!v || !*v)
            throw Error("the cloud API key's environment variable " + cfg.cloud.api_key_env +
                        " is not set; export it, or leave out --api-key-env for a cloud without a key");
    }
    if (!cfg.web_dir.empty()) {
        std::error_code ec;
        web_root = fs::canonical(cfg.web_dir, ec);
        if (ec || !fs::is_directory(web_root))
            throw Error(
                cfg.web_dir +
                ": the web demo directory does not exist; pass --web-dir DIR (the repository's web/)");
    }
    local = LocalModel::open(cfg.model_path, cfg.n_ctx, cfg.threads);
    for (int i = 0; i < std::max(1, cfg.local_slots); ++i) {
        auto slot = std::make_unique<LocalSlot>();
        if (i > 0) slot->own_ctx = local->new_context();
        slot->opener = std::make_unique<Opener>(i == 0 ? local->context() : *slot->own_ctx, local->tokenizer(), cfg.opener);
        slot->opener->warm_up();
        slots.push_back(std::move(slot));
    }
    if (cfg.model_name.empty()) cfg.model_name = fs::path(cfg.model_path).stem().string();
    routes();
    watcher = std::thread([this] {
        while (!stopping) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        shutdown.request_stop();
    });
}

Gateway::Impl::~Impl() {
    stopping = true;
    if (watcher.joinable()) watcher.join();
}

LocalSlot& Gateway::Impl::pick_slot() {
    const size_t start = next_slot.fetch_add(1);
    for (size_t i = 0; i < slots.size(); ++i) {
        LocalSlot& s = *slots[(start + i) % slots.size()];
        if (s.mutex.try_lock()) {
            s.mutex.unlock();
            return s;
        }
    }
    return *slots[start % slots.size()];
}

void Gateway::Impl::log(const std::string& line) const {
    if (cfg.log) cfg.log(line);
}

bool Gateway::Impl::authorized(const http::Request& req, http::Response& res) {
    if (token.empty()) return true;
    const std::string h = req.header("Authorization");
    constexpr std::string_view kBearer = "Bearer ";
    if (h.size() > kBearer.size() && h.compare(0, kBearer.size(), kBearer) == 0 &&
        same_secret(std::string_view(h).substr(kBearer.size()), token))
        return true;
    metrics.count_rejected("unauthorized");
    res.set_header("WWW-Authenticate", "Bearer");
    http::send_error(res, 401,
                     h.empty() ? "this gateway needs a bearer token (Authorization: Bearer ...)"
                               : "the bearer token is wrong",
                     "invalid_request_error", {}, "invalid_api_key");
    return false;
}

void Gateway::Impl::serve_static(const http::Request& req, http::Response& res) {
    if (web_root.empty())
        return http::send_error(res, 404, "this gateway serves no web demo (start it with --web-dir DIR)",
                                "invalid_request_error");
    const std::string rel = req.path == "/" ? "index.html" : req.path.substr(1);
    if (!safe_relative_path(rel))
        return http::send_error(res, 403, "that path is not served", "invalid_request_error");
    // A symbolic link inside web_dir that leads out of it is refused too.
    std::error_code ec;
    const fs::path file = fs::weakly_canonical(web_root / rel, ec);
    const auto [root_end, file_it] =
        std::mismatch(web_root.begin(), web_root.end(), file.begin(), file.end());
    if (ec || root_end != web_root.end())
        return http::send_error(res, 403, "that path is not served", "invalid_request_error");
    if (!fs::is_regular_file(file, ec))
        return http::send_error(res, 404, "no such file", "invalid_request_error");
    std::ifstream in(file, std::ios::binary);
    std::ostringstream body;
    body << in.rdbuf();
    if (!in) return http::send_error(res, 500, "the file could not be read", "server_error");
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Content-Type-Options", "nosniff");
    // The demo loads nothing from elsewhere: the page may only talk to this gateway.
    res.set_header(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'");
    res.set_content(body.str(), content_type(file));
}

void Gateway::Impl::health(http::Response& res) const {
    const json j = {{"status", "ok"},
                    {"model", cfg.model_name},
                    {"local_model", cfg.model_name},
                    {"cloud_model", cfg.cloud.model.empty() ? json(nullptr) : json(cfg.cloud.model)},
                    {"mode", cfg.mode == ContinuationMode::kPrefill ? "prefill" : "instruct"},
                    {"auth", !token.empty()},
                    {"turns_waiting", std::max(0, queued.load() - running.load())}};
    res.set_header("Cache-Control", "no-cache");
    res.set_content(http::dump(j), "application/json");
}

void Gateway::Impl::routes() {
    // The body is capped by the server as it arrives (after chunked framing and gzip/deflate
    // inflation), before the token is checked: memory stays bounded for anyone.
    http::ServerLimits limits;
    limits.max_body_bytes = cfg.max_body_bytes;
    limits.header_timeout_ms = cfg.read_timeout_s * 1000;
    limits.body_timeout_ms = cfg.read_timeout_s * 3000;
    server = std::make_unique<http::Server>(limits);
    server->route("POST", "/v1/chat/completions", [this](const http::Request& q, http::Response& s) {
        if (authorized(q, s)) chat_completions(q, s);
    });
    server->route("GET", "/v1/models", [this](const http::Request& q, http::Response& s) {
        if (!authorized(q, s)) return;
        const json m = {{"id", cfg.model_name},
                        {"object", "model"},
                        {"created", http::unix_now_s()},
                        {"owned_by", "microlm"}};
        s.set_content(http::dump(json{{"object", "list"}, {"data", json::array({m})}}), "application/json");
    });
    server->route("GET", "/health", [this](const http::Request&, http::Response& s) { health(s); });
    server->route("GET", "/metrics", [this](const http::Request& q, http::Response& s) {
        if (!authorized(q, s)) return;
        const int run = running.load();
        s.set_content(metrics.render(cfg.model_name, cfg.cloud.model, std::max(0, queued.load() - run), run),
                      "text/plain; version=0.0.4; charset=utf-8");
    });
    server->fallback_get([this](const http::Request& q, http::Response& s) { serve_static(q, s); });
    http::install_error_handlers(*server, [this](const std::string& line) { log(line); });
    // After each response (a stream: after its last byte). The path only, never the query,
    // the headers or the body: that is where tokens and user text travel.
    server->set_logger([this](const http::Request& q, const http::Response& s) {
        metrics.count_request(s.status);
        if (s.status == 413) metrics.count_rejected("too_large");
        log(http::printable(q.method) + " " + http::printable(q.path) + " " + std::to_string(s.status));
    });
}

Gateway::Gateway(GatewayConfig cfg) : impl_(std::make_unique<Impl>(std::move(cfg))) {
    // Each turn makes its own client; one made now loads libcurl (it is opened on first use), so a
    // missing library stops the gateway at start, and the first turn does not pay for loading it.
    const CloudClient load_now(impl_->cfg.cloud);
}

Gateway::~Gateway() {
    stop();
    if (impl_->thread.joinable()) impl_->thread.join();
}

int Gateway::start() {
    impl_->port = impl_->server->bind(impl_->cfg.host, impl_->cfg.port, "serve");
    impl_->thread = std::thread([this] { impl_->server->run(); });
    return impl_->port;
}

void Gateway::run(const std::function<void(int)>& on_listening) {
    impl_->port = impl_->server->bind(impl_->cfg.host, impl_->cfg.port, "serve");
    if (on_listening) on_listening(impl_->port);
    impl_->server->run();
}

void Gateway::stop() {
    impl_->stopping = true;
    impl_->server->stop();
}

int Gateway::port() const {
    return impl_->port;
}
std::string Gateway::base_url() const {
    return "http://" + impl_->cfg.host + ":" + std::to_string(impl_->port);
}
const std::string& Gateway::model_name() const {
    return impl_->cfg.model_name;
}

}  // namespace microlm
