// generate(): prefill then sample/feed-back, with wall-clock timings for the CLI's report.
#include "microlm/generate.h"

#include <chrono>

namespace microlm {
namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

GenerateStats generate(Context& ctx, Sampler& sampler, const Tokenizer& tok, std::span<const int32_t> prompt,
                       int64_t max_tokens, const std::function<bool(int32_t)>& on_token) {
    GenerateStats st;
    const auto t0 = std::chrono::steady_clock::now();
    st.reused_tokens = ctx.reuse_prefix(prompt);
    std::span<const float> logits = ctx.eval(prompt.subspan(static_cast<size_t>(st.reused_tokens)));
    st.prompt_ms = ms_since(t0);
    st.prompt_tokens = static_cast<int64_t>(prompt.size()) - st.reused_tokens;
    for (int32_t id : prompt) sampler.accept(id);

    const auto t1 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < max_tokens; ++i) {
        const int32_t id = sampler.sample(logits);
        if (i == 0) st.first_token_ms = ms_since(t0);
        if (tok.is_end_of_generation(id)) break;
        sampler.accept(id);
        ++st.gen_tokens;
        if (!on_token(id) || i + 1 == max_tokens) break;
        logits = ctx.eval(std::span<const int32_t>(&id, 1));
    }
    st.gen_ms = ms_since(t1);
    return st;
}

}  // namespace microlm
