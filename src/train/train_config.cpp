// TrainConfig parsing: one table maps each key to its field, so set(), to_text() and the
// error listing the known keys cannot disagree.
#include "train_config.h"

#include <fstream>
#include <functional>
#include <sstream>

#include "microlm/error.h"

namespace microlm::train {
namespace {

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

template <typename T>
T parse_number(const std::string& key, const std::string& v) {
    std::istringstream in(v);
    T x{};
    in >> x;
    if (in.fail() || !in.eof()) throw Error("config: " + key + " = '" + v + "' is not a number");
    return x;
}

struct Field {
    std::function<void(TrainConfig&, const std::string&, const std::string&)> set;
    std::function<std::string(const TrainConfig&)> get;
};

template <typename T>
Field num(T TrainConfig::* m) {
    return {[m](TrainConfig& c, const std::string& k, const std::string& v) { c.*m = parse_number<T>(k, v); },
            [m](const TrainConfig& c) { std::ostringstream o; o.precision(10); o << c.*m; return o.str(); }};
}
template <typename T>
Field shape_num(T LlamaHparams::* m) {
    return {[m](TrainConfig& c, const std::string& k, const std::string& v) { c.shape.*m = parse_number<T>(k, v); },
            [m](const TrainConfig& c) { std::ostringstream o; o.precision(10); o << c.shape.*m; return o.str(); }};
}
Field text(std::string TrainConfig::* m) {
    return {[m](TrainConfig& c, const std::string&, const std::string& v) { c.*m = v; },
            [m](const TrainConfig& c) { return c.*m; }};
}

const std::vector<std::pair<std::string, Field>>& fields() {
    static const std::vector<std::pair<std::string, Field>> f = {
        {"vocab", shape_num(&LlamaHparams::n_vocab)},     {"dim", shape_num(&LlamaHparams::dim)},
        {"layers", shape_num(&LlamaHparams::n_layers)},   {"heads", shape_num(&LlamaHparams::n_heads)},
        {"kv_heads", shape_num(&LlamaHparams::n_kv_heads)}, {"ffn", shape_num(&LlamaHparams::ffn_dim)},
        {"n_ctx", shape_num(&LlamaHparams::n_ctx)},       {"rope_base", shape_num(&LlamaHparams::rope_base)},
        {"norm_eps", shape_num(&LlamaHparams::norm_eps)},
        {"data", text(&TrainConfig::data)},             {"tokenizer", text(&TrainConfig::tokenizer)},
        {"out", text(&TrainConfig::out)},               {"init_from", text(&TrainConfig::init_from)},
        {"teacher", text(&TrainConfig::teacher)},
        {"distill_weight", num(&TrainConfig::distill_weight)},
        {"distill_temperature", num(&TrainConfig::distill_temperature)},
        {"device", text(&TrainConfig::device)},         {"precision", text(&TrainConfig::precision)},
        {"threads", num(&TrainConfig::threads)},
        {"seed", num(&TrainConfig::seed)},              {"steps", num(&TrainConfig::steps)},
        {"batch", num(&TrainConfig::batch)},            {"seq_len", num(&TrainConfig::seq_len)},
        {"grad_accum", num(&TrainConfig::grad_accum)},  {"lr", num(&TrainConfig::lr)},
        {"min_lr", num(&TrainConfig::min_lr)},          {"warmup", num(&TrainConfig::warmup)},
        {"weight_decay", num(&TrainConfig::weight_decay)}, {"beta1", num(&TrainConfig::beta1)},
        {"beta2", num(&TrainConfig::beta2)},            {"grad_clip", num(&TrainConfig::grad_clip)},
        {"first_token_weight", num(&TrainConfig::first_token_weight)},
        {"first_tokens", num(&TrainConfig::first_tokens)},
        {"eval_every", num(&TrainConfig::eval_every)},  {"eval_batches", num(&TrainConfig::eval_batches)},
        {"ckpt_every", num(&TrainConfig::ckpt_every)},  {"log_every", num(&TrainConfig::log_every)},
        {"max_minutes", num(&TrainConfig::max_minutes)},
    };
    return f;
}

}  // namespace

void TrainConfig::set(const std::string& key, const std::string& value) {
    for (const auto& [name, field] : fields()) {
        if (name == key) {
            field.set(*this, key, value);
            return;
        }
    }
    std::string known;
    for (const auto& [name, field] : fields()) known += (known.empty() ? "" : " ") + name;
    throw Error("config: unknown key '" + key + "' (known: " + known + ")");
}

void TrainConfig::validate() const {
    shape.validate("model shape");
    auto need = [](bool ok, const std::string& what) {
        if (!ok) throw Error("config: " + what);
    };
    need(!data.empty(), "data is required (a `microlm data` output folder)");
    need(device == "cpu" || device == "cuda", "device must be cpu or cuda, not '" + device + "'");
    need(precision == "auto" || precision == "fp32" || precision == "bf16",
         "precision must be auto, fp32 or bf16, not '" + precision + "'");
    need(steps >= 1 && batch >= 1 && grad_accum >= 1, "steps, batch and grad_accum must be >= 1");
    need(seq_len >= 2 && seq_len <= shape.n_ctx, "seq_len must be in [2, n_ctx]");
    need(lr > 0 && min_lr >= 0 && min_lr <= lr, "need lr > 0 and 0 <= min_lr <= lr");
    need(warmup >= 0 && eval_every >= 1 && ckpt_every >= 1 && log_every >= 1 && eval_batches >= 1,
         "warmup >= 0; eval_every, ckpt_every, log_every, eval_batches >= 1");
    need(grad_clip >= 0 && weight_decay >= 0 && first_token_weight > 0 && first_tokens >= 0,
         "grad_clip, weight_decay, first_tokens >= 0 and first_token_weight > 0");
    need(distill_weight >= 0 && distill_weight <= 1 && distill_temperature > 0,
         "distill_weight must be in [0, 1] and distill_temperature > 0");
    need(teacher.empty() || distill_weight > 0, "a teacher needs distill_weight > 0 (0 would run it for nothing)");
}

std::string TrainConfig::to_text() const {
    std::string s;
    for (const auto& [name, field] : fields()) s += name + " = " + field.get(*this) + "\n";
    return s;
}

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides) {
    TrainConfig c;
    if (!path.empty()) {
        std::ifstream in(path);
        if (!in) throw Error(path + ": cannot open the training config");
        std::string line;
        for (int n = 1; std::getline(in, line); ++n) {
            const auto hash = line.find('#');
            line = trim(hash == std::string::npos ? line : line.substr(0, hash));
            if (line.empty()) continue;
            const auto eq = line.find('=');
            if (eq == std::string::npos) throw Error(path + ":" + std::to_string(n) + ": expected `key = value`");
            try {
                c.set(trim(line.substr(0, eq)), trim(line.substr(eq + 1)));
            } catch (const Error& e) {
                throw Error(path + ":" + std::to_string(n) + ": " + e.what());
            }
        }
    }
    for (std::string o : overrides) {
        if (o.rfind("--", 0) == 0) o = o.substr(2);
        const auto eq = o.find('=');
        if (eq == std::string::npos) throw Error("override '" + o + "': expected --key=value");
        c.set(trim(o.substr(0, eq)), trim(o.substr(eq + 1)));
    }
    return c;
}

}  // namespace microlm::train
