// `microlm serve-model`: serves one GGUF model over the OpenAI API (the cloud stand-in), prints
// the address it listens on as its first stdout line, and runs until interrupted.
// The server itself is the library's ModelServer; this file only maps flags and signals.
#include <csignal>
#include <cstdio>
#include <string>

#include "commands.h"
#include "microlm/model_server.h"

namespace microlm::cli {
namespace {

ModelServer* g_server = nullptr;  // for the signal handler: stop() only sets flags and shuts a socket

extern "C" void on_signal(int) {
    if (g_server) g_server->stop();
}

}  // namespace

void register_serve_model(CLI::App& app) {
    auto* cmd = app.add_subcommand("serve-model", "Serve a GGUF model over the OpenAI API (a local stand-in for the cloud)");
    auto o = std::make_shared<ModelServerConfig>();
    cmd->add_option("-m,--model", o->model_path, "GGUF model file (Llama architecture)")->required();
    cmd->add_option("--host", o->host, "Address to bind (the server has no auth: keep it on loopback)")->capture_default_str();
    cmd->add_option("--port", o->port, "Port; 0 picks a free one (printed on the first line)")->capture_default_str()->check(CLI::Range(0, 65535));
    cmd->add_option("--delay-ms", o->delay_ms, "Sleep before each response's first token (simulated cloud latency)")->capture_default_str()->check(CLI::Range(0, 600000));
    cmd->add_option("-t,--threads", o->threads, "Threads")->capture_default_str()->check(CLI::Range(1, 256));
    cmd->add_option("-c,--ctx-size", o->n_ctx, "Context size in tokens (at most the model's)")->capture_default_str()->check(CLI::Range(int64_t{16}, int64_t{1} << 20));
    cmd->add_option("--model-name", o->model_name, "Model id reported to clients (default: the file name without .gguf)");
    cmd->callback([o] {
        ModelServer server(*o);
        g_server = &server;
        std::signal(SIGINT, on_signal);
        std::signal(SIGTERM, on_signal);
        server.run([&](int port) {
            std::printf("listening on http://%s:%d (model %s)\n", o->host.c_str(), port, server.model_name().c_str());
            std::fflush(stdout);
        });
        g_server = nullptr;
    });
}

}  // namespace microlm::cli
