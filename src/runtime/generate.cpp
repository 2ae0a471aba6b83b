// generate(): prefill then sample/feed-back, with wall-clock timings for the CLI's report;
// generate_batch(): the same for many prompts sharing forward passes (continuous batching);
// score_tokens(): teacher-forced log-probabilities of a given text.
#include "microlm/generate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
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

std::vector<BatchReply> generate_batch(Context& ctx, const Tokenizer& tok,
                                       std::span<const std::vector<int32_t>> prompts, int64_t max_tokens,
                                       const SamplerParams& params, BatchStats* stats,
                                       const std::function<void(size_t, const BatchReply&)>& on_done) {
    const Stopwatch t0;
    for (size_t i = 0; i < prompts.size(); ++i) {
        if (prompts[i].empty()) throw Error("generate_batch: prompt " + std::to_string(i) + " is empty");
        if (static_cast<int64_t>(prompts[i].size()) >= ctx.n_ctx())
            throw Error("generate_batch: prompt " + std::to_string(i) + " has " + std::to_string(prompts[i].size()) +
                        " tokens; a sequence holds " + std::to_string(ctx.n_ctx()));
    }
    struct Slot {
        size_t prompt = 0;  // index into prompts
        size_t fed = 0;     // prompt tokens evaluated so far
        int64_t budget = 0;
        int32_t last = -1;  // the token to feed next once the prompt is in
        std::vector<int32_t> out;
        std::unique_ptr<Sampler> sampler;
        bool busy = false;
    };
    std::vector<Slot> slots(static_cast<size_t>(ctx.n_seqs()));
    std::vector<BatchReply> results(prompts.size());
    BatchStats st;
    size_t next_prompt = 0, done = 0;
    const auto finish = [&](Slot& s, bool ended) {
        results[s.prompt] = {std::move(s.out), ended};
        s.busy = false;
        ++done;
        if (on_done) on_done(s.prompt, results[s.prompt]);
    };
    std::vector<Context::SeqToken> rows;
    std::vector<int32_t> row_slot;  // the slot of each row that asked for logits
    const int64_t cap = ctx.n_batch();
    while (done < prompts.size()) {
        for (size_t k = 0; k < slots.size() && next_prompt < prompts.size(); ++k) {
            Slot& s = slots[k];
            if (s.busy) continue;
            s = Slot{};
            s.busy = true;
            s.prompt = next_prompt++;
            SamplerParams p = params;
            p.seed = params.seed + s.prompt;
            s.sampler = std::make_unique<Sampler>(p);
            for (const int32_t id : prompts[s.prompt]) s.sampler->accept(id);
            s.budget = std::min<int64_t>(max_tokens, ctx.n_ctx() - static_cast<int64_t>(prompts[s.prompt].size()));
            ctx.clear_seq(static_cast<int32_t>(k));
            if (s.budget <= 0) finish(s, false);
        }
        rows.clear();
        row_slot.clear();
        // Decode rows first (one per running sequence), then prompt tokens in what is left.
        for (size_t k = 0; k < slots.size() && static_cast<int64_t>(rows.size()) < cap; ++k) {
            const Slot& s = slots[k];
            if (!s.busy || s.fed < prompts[s.prompt].size()) continue;
            rows.push_back({s.last, static_cast<int32_t>(k), true});
            row_slot.push_back(static_cast<int32_t>(k));
        }
        for (size_t k = 0; k < slots.size() && static_cast<int64_t>(rows.size()) < cap; ++k) {
            Slot& s = slots[k];
            const std::vector<int32_t>& pr = prompts[s.prompt];
            if (!s.busy || s.fed >= pr.size()) continue;
            const size_t take = std::min(pr.size() - s.fed, static_cast<size_t>(cap - static_cast<int64_t>(rows.size())));
            for (size_t j = 0; j < take; ++j) {
                const bool last = s.fed + j + 1 == pr.size();
                rows.push_back({pr[s.fed + j], static_cast<int32_t>(k), last});
                if (last) row_slot.push_back(static_cast<int32_t>(k));
            }
            s.fed += take;
            st.prompt_tokens += static_cast<int64_t>(take);
        }
        if (rows.empty()) continue;  // every admitted prompt had no budget
        const std::span<const float> logits = ctx.eval_seqs(rows);
        ++st.passes;
        const auto nv = static_cast<size_t>(ctx.n_vocab());
        for (size_t j = 0; j < row_slot.size(); ++j) {
            Slot& s = slots[static_cast<size_t>(row_slot[j])];
            const int32_t id = s.sampler->sample(logits.subspan(j * nv, nv));
            if (tok.is_end_of_generation(id)) {
                finish(s, true);
                continue;
            }
            s.sampler->accept(id);
            s.out.push_back(id);
            ++st.gen_tokens;
            s.last = id;
            if (static_cast<int64_t>(s.out.size()) >= s.budget) finish(s, false);
        }
    }
    st.ms = t0.ms();
    if (stats) *stats = st;
    return results;
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
