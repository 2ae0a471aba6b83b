// The gateway's counters and latency histograms, rendered in Prometheus' text format for
// GET /metrics. Thread-safe. Not here: what is counted when (the gateway decides that).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace microlm {

class GatewayMetrics {
public:
    GatewayMetrics();

    void count_request(int status);
    void count_event(std::string_view event);   // one per chunk event sent (opener, pivot, ...)
    void count_turn(std::string_view verdict);  // keep, pivot, retract, or none (no cloud verdict)
    void count_cloud_error(std::string_view kind);
    void count_rejected(std::string_view why);  // turns refused before they ran: busy, bad_request
    void observe_first_word_ms(double ms);
    void observe_stall_ms(double ms);
    void observe_cloud_first_token_ms(double ms);
    void observe_total_ms(double ms);

    // waiting: turns admitted and not yet started; running: turns started and not finished.
    std::string render(std::string_view local_model, std::string_view cloud_model, int waiting,
                       int running) const;

private:
    struct Histogram {
        std::vector<double> bounds;  // upper bounds, ascending; +Inf is implicit
        std::vector<uint64_t> counts;
        double sum = 0;
        uint64_t n = 0;
        explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size(), 0) {}
        void observe(double v);
    };

    mutable std::mutex mu_;
    std::map<int, uint64_t> requests_;
    std::map<std::string, uint64_t, std::less<>> events_, turns_, cloud_errors_, rejected_;
    Histogram first_word_, stall_, cloud_first_token_, total_;
};

}  // namespace microlm
