// `serve-model`: a plain OpenAI-compatible HTTP server for one GGUF model (chat and raw
// completions, streamed as server-sent events or not), used as a local stand-in for the cloud.
// Not the gateway (`serve`, with openers and recovery events): this one only generates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace microlm {

struct ModelServerConfig {
    std::string model_path;
    std::string host = "127.0.0.1";  // loopback unless asked otherwise: the server has no auth
    int port = 8080;                 // 0: the OS picks a free port; port() tells which
    std::string model_name;          // the id in /v1/models and responses; default: the file's stem
    int threads = 1;
    int64_t n_ctx = 2048;            // KV cache positions (capped at the model's training context)
    // Sleep this long before the first token of each response (headers go out at once), to
    // stand in for a cloud model's network and queueing latency.
    int delay_ms = 0;
    size_t max_body_bytes = 1 << 20;  // larger requests get 413
    int64_t default_max_tokens = 256;
    int read_timeout_s = 10;          // a client that stops sending its request is dropped
};

// Loads the model at construction (throws microlm::Error naming the file); requests are
// served one at a time (generation holds a mutex), each on the server's worker threads.
class ModelServer {
public:
    explicit ModelServer(ModelServerConfig cfg);
    ~ModelServer();  // stops the server and joins its thread
    ModelServer(const ModelServer&) = delete;
    ModelServer& operator=(const ModelServer&) = delete;

    // Binds host:port (throws if that fails) and serves on a background thread; returns the
    // bound port.
    int start();
    // Binds and serves on the calling thread until stop() is called from another thread.
    // on_listening runs once bound, with the port.
    void run(const std::function<void(int)>& on_listening = {});
    void stop();

    int port() const;                // the bound port, 0 before start()
    std::string base_url() const;    // "http://host:port" (no /v1)
    const std::string& model_name() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace microlm
