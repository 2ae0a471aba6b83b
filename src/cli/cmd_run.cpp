// `microlm run`: load a GGUF model, format the prompt (optionally as a ChatML chat), stream
// the generated text to stdout, and report load time and speeds on stderr.
#include <chrono>
#include <cstdio>
#include <string>

#include "commands.h"
#include "microlm/chat.h"
#include "microlm/error.h"
#include "microlm/generate.h"
#include "microlm/local_model.h"
#include "microlm/stopwatch.h"
#include "microlm/tokenizer.h"

namespace microlm::cli {

void register_run(CLI::App& app) {
    auto* cmd = app.add_subcommand("run", "Generate text from a prompt and stream it to stdout");
    struct Opts {
        std::string model, prompt, system;
        int64_t n_predict = 128, ctx_size = 0;
        bool chat = false, verbose_prompt = false;
        int threads = 1;
        SamplerParams sp;
    };
    auto o = std::make_shared<Opts>();
    cmd->add_option("-m,--model", o->model, "GGUF model file (Llama architecture)")->required();
    cmd->add_option("-p,--prompt", o->prompt, "Prompt text (with --chat: the user's message)")->required();
    cmd->add_option("-n,--n-predict", o->n_predict, "Maximum tokens to generate")->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
    cmd->add_flag("--chat", o->chat, "Format the prompt as a chat turn with the model's ChatML template");
    cmd->add_option("--system", o->system, "System message for --chat (default: the template's own, if any)");
    cmd->add_option("--temp", o->sp.temperature, "Temperature; 0 = greedy")->capture_default_str()->check(CLI::Range(0.0f, 100.0f));
    cmd->add_option("--top-k", o->sp.top_k, "Keep the k most likely tokens; 0 = off")->capture_default_str()->check(CLI::NonNegativeNumber);
    cmd->add_option("--top-p", o->sp.top_p, "Keep the smallest set with this total probability; 1 = off")->capture_default_str()->check(CLI::Range(0.0f, 1.0f));
    cmd->add_option("--min-p", o->sp.min_p, "Drop tokens below this fraction of the top probability; 0 = off")->capture_default_str()->check(CLI::Range(0.0f, 1.0f));
    cmd->add_option("--repeat-penalty", o->sp.repeat_penalty, "Penalty for recently seen tokens; 1 = off")->capture_default_str()->check(CLI::Range(0.0f, 10.0f));
    cmd->add_option("--repeat-last-n", o->sp.repeat_last_n, "How many recent tokens the penalty looks at")->capture_default_str()->check(CLI::NonNegativeNumber);
    cmd->add_option("--seed", o->sp.seed, "Random seed (the same seed gives the same text)")->capture_default_str();
    cmd->add_option("-t,--threads", o->threads, "Threads")->capture_default_str()->check(CLI::Range(1, 256));
    cmd->add_option("-c,--ctx-size", o->ctx_size, "Context size in tokens (default: prompt + n, at most the model's)")->check(CLI::NonNegativeNumber);
    cmd->add_flag("--verbose-prompt", o->verbose_prompt, "Print the formatted prompt and its token count to stderr");
    cmd->callback([o] {
        const Stopwatch t0;
        // A small context first: its size is settled once the prompt's length is known.
        auto local = LocalModel::open(o->model, 16, o->threads);
        const Tokenizer& tok = local->tokenizer();
        const double load_ms = t0.ms();

        std::string text = o->prompt;
        if (o->chat) {
            std::vector<ChatMessage> msgs;
            if (!o->system.empty()) msgs.push_back({"system", o->system});
            msgs.push_back({"user", o->prompt});
            text = format_chatml(msgs, true, chat_template_default_system(tok.vocab().chat_template));
        }
        const auto ids = tok.encode(text, /*add_special=*/true, /*parse_special=*/true);
        if (ids.empty()) throw Error("the prompt is empty after tokenization; give some text with -p");
        if (o->verbose_prompt) std::fprintf(stderr, "prompt (%zu tokens):\n%s\n", ids.size(), text.c_str());
        const int64_t n_ctx = o->ctx_size > 0 ? o->ctx_size : static_cast<int64_t>(ids.size()) + o->n_predict;
        if (static_cast<int64_t>(ids.size()) + o->n_predict > local->model().config().n_ctx && o->ctx_size == 0) {
            std::fprintf(stderr, "microlm: note: prompt + n exceeds the model's context (%lld); generation stops there\n",
                         static_cast<long long>(local->model().config().n_ctx));
        }
        local->set_n_ctx(n_ctx);
        Context& ctx = local->context();
        Sampler sampler(o->sp);
        Utf8Streamer out;
        const int64_t budget = std::min<int64_t>(o->n_predict, ctx.n_ctx() - static_cast<int64_t>(ids.size()));
        const GenerateStats st = generate(ctx, sampler, tok, ids, budget, [&](int32_t id) {
            std::fputs(out.push(tok.token_to_piece(id, false)).c_str(), stdout);
            std::fflush(stdout);
            return true;
        });
        std::fputs(out.flush().c_str(), stdout);
        std::fputs("\n", stdout);
        std::fflush(stdout);
        std::fprintf(stderr,
                     "\nload %.1f ms | prompt %lld tokens, %.1f ms, %.1f tok/s | generation %lld tokens, %.1f ms, %.1f tok/s | "
                     "first token %.1f ms | %d thread%s, kernels %s\n",
                     load_ms, static_cast<long long>(st.prompt_tokens), st.prompt_ms,
                     st.prompt_tokens * 1000.0 / std::max(st.prompt_ms, 1e-9), static_cast<long long>(st.gen_tokens), st.gen_ms,
                     st.gen_tokens * 1000.0 / std::max(st.gen_ms, 1e-9), st.first_token_ms, o->threads,
                     o->threads == 1 ? "" : "s", ctx.kernels().name);
    });
}

}  // namespace microlm::cli
