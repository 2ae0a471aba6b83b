// `microlm tokenize -m FILE -p TEXT`: token ids and pieces of a text, for debugging prompts.
#include <cstdio>
#include <string>

#include "commands.h"
#include "microlm/gguf.h"
#include "microlm/tokenizer.h"

namespace microlm::cli {

void register_tokenize(CLI::App& app) {
    auto* cmd = app.add_subcommand("tokenize", "Print the token ids (and pieces) of a text");
    struct Opts {
        std::string model, prompt;
        bool ids_only = false, no_special = false;
    };
    auto o = std::make_shared<Opts>();
    cmd->add_option("-m,--model", o->model, "GGUF model file")->required();
    cmd->add_option("-p,--prompt", o->prompt, "Text to tokenize")->required();
    cmd->add_flag("--ids", o->ids_only, "Print only the ids, space-separated");
    cmd->add_flag("--no-special", o->no_special, "Treat special-token text like <|im_start|> as plain text");
    cmd->callback([o] {
        auto f = GgufFile::open(o->model);
        Tokenizer tok(vocab_from_gguf(*f));
        auto ids = tok.encode(o->prompt, /*add_special=*/true, /*parse_special=*/!o->no_special);
        for (size_t i = 0; i < ids.size(); ++i) {
            if (o->ids_only) {
                std::printf("%s%d", i ? " " : "", ids[i]);
            } else {
                std::printf("%6d  '%s'\n", ids[i], tok.token_to_piece(ids[i], true).c_str());
            }
        }
        if (o->ids_only) std::printf("\n");
    });
}

}  // namespace microlm::cli
