// generate(): prefill then sample/feed-back, with wall-clock timings for the CLI's report.
#include "microlm/generate.h"

#include "microlm/stopwatch.h"

namespace microlm {

GenerateStats generate(Context& ctx, Sampler& sampler, const Tokenizer& tok, std::span<const int32_t> prompt,
                       int64_t max_tokens, const std::function<bool(int32_t)>& on_token) {
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
        if (!on_token(id) || i + 1 == max_tokens) break;
        logits = ctx.eval(std::span<const int32_t>(&id, 1));
    }
    st.gen_ms = t1.ms();
    return st;
}

}  // namespace microlm
