// The gateway's private state, shared by its two source files: gateway.cpp (routes, auth,
// static files, health, metrics, lifecycle) and gateway_stream.cpp (POST /v1/chat/completions).
// Not a public header: nothing outside src/server/ includes it.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "microlm/cloud_client.h"
#include "microlm/gateway.h"
#include "microlm/http_server.h"
#include "microlm/local_model.h"
#include "microlm/opener.h"
#include "microlm/pacer.h"
#include "microlm/turn.h"
#include "gateway_metrics.h"

namespace microlm {

// One chat request, checked and ready to run.
struct ChatJob {
    std::vector<ChatMessage> history;
    TurnConfig turn;
    bool stream = false;
    bool pace = true;  // deliver a stream at the gateway's pace ("microlm": {"pace": false} turns it off)
    std::string id;
    int64_t created = 0;
    std::chrono::steady_clock::time_point received;
    std::shared_ptr<void> slot;  // holds a place in the turn queue until the job is destroyed
};

// One conversation state on the shared weights: a Context, the Opener over it, and the lock a
// turn holds only while that Context computes (its opener, a local close). The gateway keeps
// cfg.local_slots of them, so that the openers of concurrent turns run side by side, one per
// core, instead of queueing for a single Context.
struct LocalSlot {
    std::unique_ptr<Context> own_ctx;  // null for slot 0, which uses the LocalModel's Context
    std::unique_ptr<Opener> opener;
    std::mutex mutex;
};

struct Gateway::Impl {
    GatewayConfig cfg;
    std::unique_ptr<LocalModel> local;  // the μLM: weights mapped once
    std::vector<std::unique_ptr<LocalSlot>> slots;
    std::atomic<size_t> next_slot{0};
    std::string token;                   // the bearer token; empty: none required
    std::filesystem::path web_root;      // canonical; empty: no demo

    std::atomic<int> queued{0};   // turns admitted and not finished
    std::atomic<int> running{0};  // of those, turns that started (the rest wait to be scheduled)
    GatewayMetrics metrics;
    CloudWait cloud_wait;  // the cloud's recent waits, for sizing paced openers

    std::unique_ptr<http::Server> server;  // made in routes(), with the limits of cfg
    std::thread thread;                    // start(): the accept loop
    std::thread watcher;  // turns stop() (signal-safe flags) into cancellation of running turns
    std::atomic<int> port{0};
    std::atomic<bool> stopping{false};
    std::stop_source shutdown;
    std::atomic<uint64_t> next_id{1};

    explicit Impl(GatewayConfig c);
    ~Impl();

    void routes();
    LocalSlot& pick_slot();  // a free slot if there is one, else the next in turn
    void log(const std::string& line) const;
    bool authorized(const http::Request& req, http::Response& res);
    void serve_static(const http::Request& req, http::Response& res);
    void health(http::Response& res) const;

    // gateway_stream.cpp
    void chat_completions(const http::Request& req, http::Response& res);
    ChatJob parse_chat(const std::string& body) const;
    void stream_turn(ChatJob& job, http::BodyWriter& sink);
    void whole_turn(ChatJob& job, http::BodyWriter& sink);
};

}  // namespace microlm
