// generate(): prefill then sample/feed-back, with wall-clock timings for the CLI's report;
// score_tokens(): teacher-forced log-probabilities of a given text.
#include "microlm/generate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "microlm/error.h"
#include "microlm/stopwatch.h"

namespace microlm {

GenerateStats generate(Context& ctx, Sampler& sampler, const Tokenizer& tok, std::span<const int32_t> prompt,
                       int64_t max_tokens, const std::function<bool(int32_t)>& on_token,
                       std::vector<double>* logprobs) {
    GenerateStats st;
    const Stopwatch t0;
    st.reused_tokens = ctx.reuse_prefix(prompt);
    std::span<const float> logits = ctx.eval(prompt.subspan(static_cast<size_t>(st.reused_tokens)));
    st.prompt_ms = t0.ms();
    st.prompt_tokens = static_cast<int64_t>(prompt.size()) - st.reused_tokens;
    for (int32_t id : prompt) sampler.accept(id);

    const Stopwatch t1;
    for (int64_t i = 0; i < max_tokens; ++i) {
        const int32_t id = sampler.sample(logits);
        if (i == 0) st.first_token_ms = t0.ms();
        if (tok.is_end_of_generation(id)) break;
        sampler.accept(id);
        ++st.gen_tokens;
        if (logprobs) logprobs->push_back(token_logprob(logits, id));
        if (!on_token(id) || i + 1 == max_tokens) break;
        logits = ctx.eval(std::span<const int32_t>(&id, 1));
    }
    st.gen_ms = t1.ms();
    return st;
}

double token_logprob(std::span<const float> logits, int32_t id) {
    const float mx = *std::max_element(logits.begin(), logits.end());
    double z = 0;
    for (const float l : logits) z += std::exp(static_cast<double>(l - mx));
    return static_cast<double>(logits[static_cast<size_t>(id)] - mx) - std::log(z);
}

std::vector<double> score_tokens(Context& ctx, std::span<const int32_t> tokens, int64_t chunk) {
    if (static_cast<int64_t>(tokens.size()) > ctx.n_ctx())
        throw Error("score_tokens: " + std::to_string(tokens.size()) + " tokens do not fit a context of " +
                    std::to_string(ctx.n_ctx()));
    std::vector<double> out(tokens.size(), std::numeric_limits<double>::quiet_NaN());
    ctx.truncate(0);
    const auto nv = static_cast<size_t>(ctx.n_vocab());
    for (size_t at = 0; at < tokens.size(); at += static_cast<size_t>(chunk)) {
        const size_t n = std::min(tokens.size() - at, static_cast<size_t>(chunk));
        ctx.eval(tokens.subspan(at, n), /*all_logits=*/true);
        const std::span<const float> rows = ctx.logits();
        // Row r predicts token at + r + 1.
        for (size_t r = 0; r < n && at + r + 1 < tokens.size(); ++r)
            out[at + r + 1] = token_logprob(rows.subspan(r * nv, nv), tokens[at + r + 1]);
    }
    return out;
}

}  // namespace microlm
