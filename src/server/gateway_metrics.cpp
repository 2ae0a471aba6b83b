// GatewayMetrics: plain counters and fixed-bucket histograms (milliseconds), written in
// Prometheus' text exposition format 0.0.4. No client library: the format is a few lines.
#include "gateway_metrics.h"

#include <charconv>

namespace microlm {
namespace {

// Every label value a series can take is listed up front, so that a dashboard sees zeros
// rather than missing series before the first occurrence.
constexpr std::string_view kEvents[] = {"opener", "hedge", "continuation", "pivot", "retract", "error"};
constexpr std::string_view kVerdicts[] = {"keep", "pivot", "retract", "none"};
constexpr std::string_view kCloudErrors[] = {"config", "refused",   "timeout",   "http-status",
                                             "reset",  "malformed", "cancelled", "internal"};
constexpr std::string_view kRejected[] = {"busy", "bad_request", "unauthorized", "too_large"};

std::string escape_label(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

// The shortest text that reads back as the same double ("7.6", not "7.5999999999999996").
std::string number(double v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

void header(std::string& out, const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

template <class Map>
void labelled(std::string& out, const char* name, const char* label, const Map& m) {
    for (const auto& [k, v] : m)
        out += std::string(name) + "{" + label + "=\"" + escape_label(k) + "\"} " + std::to_string(v) + "\n";
}

}  // namespace

void GatewayMetrics::Histogram::observe(double v) {
    for (size_t i = 0; i < bounds.size(); ++i)
        if (v <= bounds[i]) ++counts[i];
    sum += v;
    ++n;
}

GatewayMetrics::GatewayMetrics()
    : first_word_({5, 10, 20, 30, 50, 75, 100, 200, 500, 1000, 2000}),
      stall_({0, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000}),
      cloud_first_token_({50, 100, 250, 500, 1000, 2000, 5000, 10000}),
      total_({100, 250, 500, 1000, 2000, 5000, 10000, 30000, 60000}) {
    for (auto e : kEvents) events_.emplace(e, 0);
    for (auto v : kVerdicts) turns_.emplace(v, 0);
    for (auto k : kCloudErrors) cloud_errors_.emplace(k, 0);
    for (auto r : kRejected) rejected_.emplace(r, 0);
}

void GatewayMetrics::count_request(int status) {
    std::lock_guard l(mu_);
    ++requests_[status];
}

namespace {
template <class Map>
void bump(Map& m, std::string_view key) {
    auto it = m.find(key);
    if (it == m.end()) it = m.emplace(std::string(key), 0).first;
    ++it->second;
}
}  // namespace

void GatewayMetrics::count_event(std::string_view event) {
    std::lock_guard l(mu_);
    bump(events_, event);
}
void GatewayMetrics::count_turn(std::string_view verdict) {
    std::lock_guard l(mu_);
    bump(turns_, verdict);
}
void GatewayMetrics::count_cloud_error(std::string_view kind) {
    std::lock_guard l(mu_);
    bump(cloud_errors_, kind);
}
void GatewayMetrics::count_rejected(std::string_view why) {
    std::lock_guard l(mu_);
    bump(rejected_, why);
}
void GatewayMetrics::observe_first_word_ms(double ms) {
    std::lock_guard l(mu_);
    first_word_.observe(ms);
}
void GatewayMetrics::observe_stall_ms(double ms) {
    std::lock_guard l(mu_);
    stall_.observe(ms);
}
void GatewayMetrics::observe_cloud_first_token_ms(double ms) {
    std::lock_guard l(mu_);
    cloud_first_token_.observe(ms);
}
void GatewayMetrics::observe_total_ms(double ms) {
    std::lock_guard l(mu_);
    total_.observe(ms);
}

std::string GatewayMetrics::render(std::string_view local_model, std::string_view cloud_model, int waiting,
                                   int running) const {
    std::lock_guard l(mu_);
    std::string out;
    header(out, "microlm_info", "gauge", "The gateway's models (always 1).");
    out += "microlm_info{local_model=\"" + escape_label(local_model) + "\",cloud_model=\"" +
           escape_label(cloud_model) + "\"} 1\n";

    header(out, "microlm_requests_total", "counter", "HTTP requests answered, by status code.");
    for (const auto& [status, n] : requests_)
        out +=
            "microlm_requests_total{status=\"" + std::to_string(status) + "\"} " + std::to_string(n) + "\n";

    header(out, "microlm_turns_total", "counter",
           "Turns run, by the cloud's verdict (none: no verdict, e.g. the cloud failed or was not needed).");
    labelled(out, "microlm_turns_total", "verdict", turns_);
    header(out, "microlm_turn_events_total", "counter", "Stream events sent, by kind.");
    labelled(out, "microlm_turn_events_total", "event", events_);
    header(out, "microlm_cloud_errors_total", "counter", "Turns whose cloud request failed, by kind.");
    labelled(out, "microlm_cloud_errors_total", "kind", cloud_errors_);
    header(out, "microlm_turns_rejected_total", "counter",
           "Chat requests refused before a turn ran, by reason.");
    labelled(out, "microlm_turns_rejected_total", "reason", rejected_);

    header(out, "microlm_turns_waiting", "gauge", "Turns admitted and not yet started.");
    out += "microlm_turns_waiting " + std::to_string(waiting) + "\n";
    header(out, "microlm_turns_running", "gauge", "Turns started and not finished: on the local model or waiting for their cloud.");
    out += "microlm_turns_running " + std::to_string(running) + "\n";

    auto histogram = [&](const char* name, const char* help, const Histogram& h) {
        header(out, name, "histogram", help);
        for (size_t i = 0; i < h.bounds.size(); ++i)
            out += std::string(name) + "_bucket{le=\"" + number(h.bounds[i]) + "\"} " +
                   std::to_string(h.counts[i]) + "\n";
        out += std::string(name) + "_bucket{le=\"+Inf\"} " + std::to_string(h.n) + "\n";
        out += std::string(name) + "_sum " + number(h.sum) + "\n";
        out += std::string(name) + "_count " + std::to_string(h.n) + "\n";
    };
    histogram("microlm_first_word_ms", "Request received to the first opener word sent, milliseconds.",
              first_word_);
    histogram("microlm_stall_ms", "Opener done to the first continuation text sent, milliseconds.", stall_);
    histogram("microlm_cloud_first_token_ms", "Cloud request sent to its first text, milliseconds.",
              cloud_first_token_);
    histogram("microlm_turn_total_ms", "Request received to the end of the turn, milliseconds.", total_);
    return out;
}

}  // namespace microlm
