// The decode loop shared by `run` and the tests: prefill a prompt, then sample and feed back
// one token at a time until a token limit or an end-of-generation token; and the same for many
// prompts at once (generate_batch), whose sequences share every forward pass.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "microlm/model.h"
#include "microlm/sampler.h"
#include "microlm/tokenizer.h"

namespace microlm {

struct GenerateStats {
    int64_t reused_tokens = 0;  // prompt tokens whose KV state was already in the context
    int64_t prompt_tokens = 0;  // prompt tokens evaluated
    double prompt_ms = 0.0;   // prefill of the prompt
    int64_t gen_tokens = 0;   // tokens sampled (end-of-generation token not counted)
    double gen_ms = 0.0;      // from the first sample to the last token handed out
    double first_token_ms = 0.0;  // from the start of prefill to the first sampled token
};

// Brings ctx to `prompt` (the whole conversation so far: the longest prefix already in the
// cache, such as a fixed system prompt, is reused, the rest evaluated), then samples up to
// max_tokens tokens, calling on_token(id) for each; on_token returns false to stop early.
// Prompt tokens are fed to the sampler's repetition history. With `logprobs`, log p of each
// token handed to on_token is appended to it (under the model's distribution, before sampling).
GenerateStats generate(Context& ctx, Sampler& sampler, const Tokenizer& tok, std::span<const int32_t> prompt,
                       int64_t max_tokens, const std::function<bool(int32_t)>& on_token,
                       std::vector<double>* logprobs = nullptr);

struct BatchStats {
    int64_t prompt_tokens = 0;  // prompt tokens evaluated, all prompts
    int64_t gen_tokens = 0;     // tokens generated, all prompts (end-of-generation not counted)
    int64_t passes = 0;         // forward passes (Context::eval_seqs calls)
    double ms = 0.0;            // wall time of the whole batch
};

// One prompt's result from generate_batch.
struct BatchReply {
    std::vector<int32_t> tokens;  // generated, end-of-generation not included
    bool ended = false;           // the model ended it (end-of-generation), not its token budget
};

// Generates up to max_tokens tokens for every prompt with sequences decoded together: each
// forward pass carries one decode row per running sequence and fills the rest of the context's
// batch with prompt tokens of sequences still in prefill; a sequence that ends frees its slot
// for the next prompt (continuous batching). Uses every sequence of ctx (Context's n_seqs) and
// clears them. Prompt i is sampled by its own Sampler seeded params.seed + i, so what it gets
// depends neither on the batch size nor on the other prompts; with greedy params each result
// equals generate()'s for that prompt alone exactly on every kernel table but AMX, whose
// 16-row groups round in another order than single rows (a near-tie may then go the other
// way, as between any two tables). A prompt's budget is
// cut to what its cache holds; a prompt that does not fit at all is an error naming it.
// on_done(i, reply), if given, is called as each prompt finishes (in completion order).
std::vector<BatchReply> generate_batch(Context& ctx, const Tokenizer& tok,
                                       std::span<const std::vector<int32_t>> prompts, int64_t max_tokens,
                                       const SamplerParams& params, BatchStats* stats = nullptr,
                                       const std::function<void(size_t, const BatchReply&)>& on_done = {});

// log p(id) under softmax(logits).
double token_logprob(std::span<const float> logits, int32_t id);

// Teacher-forced scoring (what an OpenAI `echo` + `logprobs` request returns): log p of each
// token given the ones before it; entry 0 has no context and is NaN. Evaluates from position 0
// in chunks of at most `chunk` rows of logits (memory stays bounded for long prompts) and leaves
// ctx holding `tokens`, so a request that continues them reuses the KV state.
std::vector<double> score_tokens(Context& ctx, std::span<const int32_t> tokens, int64_t chunk = 64);

}  // namespace microlm
