// Judge NLL: the mean negative log-likelihood per token of an opener as the start of a judge
// model's own reply (ChatML prompt with its default system message, then the assistant
// header; a base model without ChatML gets the plain User:/Assistant: frame). The prompt's KV state is kept, so scoring every candidate of one prompt costs one
// prefill. Not a quality verdict: it says how likely a stronger model was to start that way.
#include <cmath>

#include "microlm/chat.h"
#include "microlm/error.h"
#include "microlm/eval.h"
#include "microlm/generate.h"
#include "microlm/gguf.h"
#include "microlm/local_model.h"
#include "microlm/opener.h"
#include "microlm/tokenizer.h"

namespace microlm::eval {
namespace {

constexpr int64_t kOpenerBudget = 64;  // tokens kept free after the prompt for the opener

}  // namespace

struct Judge::Impl {
    std::string name;
    std::unique_ptr<LocalModel> local;
    const Tokenizer* tok = nullptr;
    Context* ctx = nullptr;
    std::optional<std::string> system;
    ChatFrame frame = ChatFrame::kChatMl;  // plain for a base model (Gemma-3-270M)
    std::string prompt;  // the prompt whose tokens are cached
    std::vector<int32_t> prompt_ids;
    std::vector<float> prompt_logits;  // (n_vocab) after the prompt
};

Judge::Judge(const std::string& model_path, int threads) : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    m.name = model_name_of(model_path);
    m.local = LocalModel::open(model_path, 4096, threads);
    m.tok = &m.local->tokenizer();
    m.ctx = &m.local->context();
    m.system = chat_template_default_system(m.tok->vocab().chat_template);
    m.frame = chat_frame_of(*m.tok);
}

Judge::~Judge() = default;

const std::string& Judge::name() const {
    return impl_->name;
}

double Judge::nll(const std::string& prompt, const std::string& opener) {
    Impl& m = *impl_;
    const std::vector<int32_t> opener_ids = m.tok->encode(opener, false, false);
    if (opener_ids.empty() || opener.find_first_not_of(" \t\r\n") == std::string::npos) return kNaN;
    if (prompt != m.prompt || m.prompt_ids.empty()) {
        const int64_t room = m.ctx->n_ctx() - kOpenerBudget;
        const auto ids_of = [&](const std::string& p) {
            return m.tok->encode(format_chat(m.frame, {{"user", p}}, true, m.system), true, true);
        };
        const std::string fitted = shorten_to_fit(
            prompt, [&](const std::string& p) { return static_cast<int64_t>(ids_of(p).size()) < room; });
        m.prompt_ids = ids_of(fitted);
        const int64_t reused = m.ctx->reuse_prefix(m.prompt_ids);
        const std::span<const float> logits =
            m.ctx->eval(std::span<const int32_t>(m.prompt_ids).subspan(static_cast<size_t>(reused)));
        m.prompt_logits.assign(logits.begin(), logits.end());
        m.prompt = prompt;
    }
    const auto plen = static_cast<int64_t>(m.prompt_ids.size());
    const size_t n = std::min<size_t>(opener_ids.size(), static_cast<size_t>(m.ctx->n_ctx() - plen));
    m.ctx->truncate(plen);
    double sum = -token_logprob(m.prompt_logits, opener_ids[0]);
    if (n > 1) {
        m.ctx->eval(std::span<const int32_t>(opener_ids.data(), n - 1), /*all_logits=*/true);
        const std::span<const float> rows = m.ctx->logits();
        const auto nv = static_cast<size_t>(m.ctx->n_vocab());
        for (size_t i = 1; i < n; ++i) sum -= token_logprob(rows.subspan((i - 1) * nv, nv), opener_ids[i]);
    }
    m.ctx->truncate(plen);
    return sum / static_cast<double>(n);
}

bool uses_plain_frame(const std::string& model_path) {
    return chat_frame_of(GgufFile::open(model_path)->get_str_array("tokenizer.ggml.tokens")) == ChatFrame::kPlain;
}

}  // namespace microlm::eval
