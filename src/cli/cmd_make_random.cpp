// `microlm make-random`: writes a random-weight Llama GGUF of a preset shape (test fixtures,
// benchmark models, and a check that microlm's GGUF writer produces files llama.cpp loads).
#include <cstdio>
#include <string>

#include "commands.h"
#include "microlm/error.h"
#include "microlm/random_model.h"

namespace microlm::cli {

void register_make_random(CLI::App& app) {
    auto* cmd = app.add_subcommand("make-random", "Write a random-weight Llama GGUF of a preset shape");
    struct Opts {
        std::string out, shape = "tiny", type = "q8_0";
        uint64_t seed = 1;
        bool untied = false;
    };
    auto o = std::make_shared<Opts>();
    cmd->add_option("-o,--output", o->out, "Output GGUF path")->required();
    cmd->add_option("--shape", o->shape, "tiny | tiny256 (rows of whole K-quant blocks) | 8m | 28m | 135m")->capture_default_str();
    cmd->add_option("--type", o->type, "f32 | f16 | q8_0 | q4_0 | q4_1")->capture_default_str();
    cmd->add_option("--seed", o->seed, "Seed for the weights")->capture_default_str();
    cmd->add_flag("--untied", o->untied, "Write a separate output.weight instead of tying it to the embedding");
    cmd->callback([o] {
        auto shape = model_shape_preset(o->shape);
        if (!shape) throw Error("unknown --shape '" + o->shape + "' (expected tiny, 8m, 28m or 135m)");
        auto type = dtype_from_name(o->type);
        if (!type) throw Error("unknown --type '" + o->type + "' (expected f32, f16, q8_0, q4_0 or q4_1)");
        shape->tied = !o->untied;
        write_random_llama(o->out, *shape, *type, o->seed);
        std::fprintf(stderr, "wrote %s (%s, %s)\n", o->out.c_str(), o->shape.c_str(), o->type.c_str());
    });
}

}  // namespace microlm::cli
