// run_training and the checkpoint format. A checkpoint (torch archive) holds: "model"
// (parameters by name), "optim" (AdamW state), "step", "tokens_seen", "wall_s", and "config"
// (TrainConfig::to_text, so export knows the shape). It is written to a temporary file and
// renamed, so a kill never leaves a torn checkpoint.
#include "trainer.h"

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>
#include <torch/utils.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "microlm/dtype.h"
#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/llama_gguf.h"
#include "microlm/stopwatch.h"
#include "batches.h"
#include "loss_plot.h"

namespace microlm::train {
namespace {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) { g_stop = true; }

// SIGINT/SIGTERM ask the loop to stop after the current step; the previous handlers come
// back however the loop ends (an exception included).
class StopSignals {
public:
    StopSignals() : int_(std::signal(SIGINT, on_signal)), term_(std::signal(SIGTERM, on_signal)) { g_stop = false; }
    ~StopSignals() {
        std::signal(SIGINT, int_);
        std::signal(SIGTERM, term_);
    }

private:
    void (*int_)(int);
    void (*term_)(int);
};


struct Losses {
    torch::Tensor objective;  // weighted, what is optimized
    double reported;          // plain mean over counted targets
    double counted;
};

// bfloat16 autocast around a forward pass: matmuls run in bf16 (AMX through oneDNN on the CPU,
// tensor cores on CUDA), while the weights, their gradients and AdamW's state stay fp32.
class Autocast {
public:
    Autocast(bool on, const torch::Device& dev) : on_(on), cuda_(dev.is_cuda()) {
        if (!on_) return;
        if (cuda_) {
            at::autocast::set_enabled(true);
            at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
        } else {
            at::autocast::set_cpu_enabled(true);
            at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
        }
    }
    ~Autocast() {
        if (!on_) return;
        at::autocast::clear_cache();
        if (cuda_) {
            at::autocast::set_enabled(false);
        } else {
            at::autocast::set_cpu_enabled(false);
        }
    }
    Autocast(const Autocast&) = delete;
    Autocast& operator=(const Autocast&) = delete;

private:
    bool on_, cuda_;
};

torch::Tensor forward_logits(LlamaModule& model, const Batch& b, const torch::Device& dev, bool bf16) {
    const Autocast scope(bf16, dev);
    return model->forward(b.inputs.to(dev));
}

// The step's objective: weighted CE, or with a teacher the mix of CE and the distillation KL
// per target (cfg.distill_weight); `reported` is the plain CE either way, so curves compare.
Losses batch_loss(LlamaModule& model, LlamaModule* teacher, const TrainConfig& cfg, const Batch& b,
                  const torch::Device& dev, bool bf16) {
    auto logits = forward_logits(model, b, dev, bf16);
    const int64_t V = logits.size(-1);
    auto ce = F::cross_entropy(logits.reshape({-1, V}).to(torch::kFloat32), b.targets.to(dev).reshape(-1),
                               F::CrossEntropyFuncOptions().reduction(torch::kNone));
    auto w = b.weights.to(dev).reshape(-1), c = b.counted.to(dev).reshape(-1);
    torch::Tensor per_target = ce;
    if (teacher) {
        torch::Tensor soft;
        {
            torch::NoGradGuard no_grad;
            soft = forward_logits(*teacher, b, dev, bf16).to(torch::kFloat32);
        }
        const auto kl = distill_kl(logits.reshape({-1, V}), soft.reshape({-1, V}), cfg.distill_temperature);
        per_target = (1.0 - cfg.distill_weight) * ce + cfg.distill_weight * kl;
    }
    Losses l;
    l.objective = (per_target * w).sum() / w.sum().clamp_min(1e-6);
    const double n = c.sum().item<double>();
    l.counted = n;
    l.reported = n > 0 ? (ce.detach() * c).sum().item<double>() / n : 0.0;
    return l;
}

// Validation loss over all counted targets, and over the first `first_tokens` targets of
// each reply alone (the opener's tokens: what a μLM is for).
struct ValLoss {
    double all = 0, first = 0;
};

ValLoss validate(LlamaModule& model, const ShardSet& val, const TrainConfig& cfg, const BatchOptions& opt,
                 const torch::Device& dev, bool bf16) {
    torch::NoGradGuard no_grad;
    model->eval();
    double sum = 0, n = 0, sum_first = 0, n_first = 0;
    BatchOptions marked = opt;
    marked.first_token_weight = 2.0;  // marks the first targets; the losses below are unweighted
    for (int64_t i = 0; i < cfg.eval_batches; ++i) {
        const Batch b = val.sample(marked, /*seed=*/0x5EED, /*step=*/i, /*micro=*/0);
        auto logits = forward_logits(model, b, dev, bf16);
        const int64_t V = logits.size(-1);
        auto ce = F::cross_entropy(logits.reshape({-1, V}).to(torch::kFloat32), b.targets.to(dev).reshape(-1),
                                   F::CrossEntropyFuncOptions().reduction(torch::kNone)).cpu();
        auto c = b.counted.reshape(-1), first = (b.weights.reshape(-1) > 1.5).to(torch::kFloat32);
        sum += (ce * c).sum().item<double>();
        n += c.sum().item<double>();
        sum_first += (ce * first).sum().item<double>();
        n_first += first.sum().item<double>();
    }
    model->train();
    return {n > 0 ? sum / n : 0.0, n_first > 0 ? sum_first / n_first : 0.0};
}

void write_checkpoint(const std::string& path, LlamaModule& model, torch::optim::Optimizer& optim,
                      const TrainConfig& cfg, int64_t step, int64_t tokens, double wall_s) {
    torch::serialize::OutputArchive root, m, o;
    model->save(m);
    optim.save(o);
    root.write("model", m);
    root.write("optim", o);
    root.write("step", c10::IValue(step));
    root.write("tokens_seen", c10::IValue(tokens));
    root.write("wall_s", c10::IValue(wall_s));
    root.write("config", c10::IValue(cfg.to_text()));
    const std::string tmp = path + ".tmp";
    root.save_to(tmp);
    fs::rename(tmp, path);
}

TrainConfig config_from_text(const std::string& text) {
    TrainConfig c;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        const auto eq = line.find(" = ");
        if (eq != std::string::npos) c.set(line.substr(0, eq), line.substr(eq + 3));
    }
    return c;
}

// loss.csv rows for steps <= `keep` survive a resume; later ones were never checkpointed.
void truncate_csv(const std::string& path, int64_t keep) {
    std::ifstream in(path);
    if (!in) return;
    std::string line, out;
    std::getline(in, line);
    out = line + "\n";
    while (std::getline(in, line)) {
        if (std::stoll(line.substr(0, line.find(','))) <= keep) out += line + "\n";
    }
    in.close();
    std::ofstream(path + ".tmp") << out;
    fs::rename(path + ".tmp", path);
}

bool cpu_has_bf16_matmul() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("flags", 0) != 0) continue;
        std::istringstream words(line);
        std::string w;
        while (words >> w) {
            if (w == "amx_bf16" || w == "avx512_bf16") return true;
        }
        return false;
    }
    return false;
}

void copy_weights(LlamaModule& dst_model, LlamaModule& src_model) {
    torch::NoGradGuard g;
    auto dst = dst_model->named_weights(), src = src_model->named_weights();
    for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_(src[i].second);
}

// A GGUF's tensors into the model, by name: the export writes the module's own names.
void load_gguf_weights(const GgufFile& file, LlamaModule& model) {
    const std::string& path = file.path();
    torch::NoGradGuard g;
    for (auto& [name, p] : model->named_weights()) {
        const GgufTensor* t = file.find_tensor(name);
        if (!t) throw Error(path + ": has no tensor " + name + " (is it a model of this shape?)");
        if (t->elements() != p.numel()) {
            throw Error(path + ": tensor " + name + " has " + std::to_string(t->elements()) +
                        " elements, the config's shape needs " + std::to_string(p.numel()));
        }
        const auto type = static_cast<DType>(t->type);
        if (type != DType::F32 && type != DType::F16 && type != DType::Q8_0) {
            throw Error(path + ": tensor " + name + " is " + std::string(dtype_name(t->type)) +
                        "; init_from and teacher take F32, F16 or Q8_0 GGUF files");
        }
        auto buf = torch::empty({p.numel()}, torch::kFloat32);
        dequantize_row(type, t->data, buf.data_ptr<float>(), p.numel());
        p.copy_(buf.view(p.sizes()));
    }
}

}  // namespace

bool uses_bf16(const TrainConfig& cfg) {
    if (cfg.precision == "bf16") return true;
    if (cfg.precision == "fp32") return false;
    return cfg.device == "cuda" || cpu_has_bf16_matmul();
}

int64_t init_weights_from(const std::string& path, LlamaModule& model) {
    if (fs::path(path).extension() == ".gguf") {
        load_gguf_weights(*GgufFile::open(path), model);
        return 0;
    }
    LoadedCheckpoint init = load_checkpoint(path);
    if (init.config.shape.parameters() != model->shape().parameters()) {
        throw Error(path + ": shape differs from this config's");
    }
    copy_weights(model, init.model);
    return init.tokens_seen;
}

LlamaModule load_teacher(const std::string& path, int64_t n_vocab, const std::vector<std::string>& student_tokens) {
    const auto file = GgufFile::open(path);
    const LlamaHparams shape = read_llama_hparams(*file);
    if (shape.arch != "llama") throw Error(path + ": teacher is a " + shape.arch + " model; distillation takes a llama");
    if (shape.n_vocab != n_vocab) {
        throw Error(path + ": teacher has " + std::to_string(shape.n_vocab) + " tokens, the student " +
                    std::to_string(n_vocab) + " (cut it with `microlm prune --vocab`)");
    }
    if (!student_tokens.empty()) {
        const auto tokens = file->get_str_array("tokenizer.ggml.tokens");
        for (size_t i = 0; i < tokens.size() && i < student_tokens.size(); ++i) {
            if (tokens[i] != student_tokens[i]) {
                throw Error(path + ": teacher's token " + std::to_string(i) + " is '" + tokens[i] +
                            "', the student's '" + student_tokens[i] + "': distillation needs the same tokenizer");
            }
        }
    }
    LlamaModule teacher(shape);
    load_gguf_weights(*file, teacher);
    teacher->eval();
    for (auto& p : teacher->parameters()) p.set_requires_grad(false);
    return teacher;
}

torch::Tensor distill_kl(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double temperature) {
    const auto s = torch::log_softmax(student_logits.to(torch::kFloat32) / temperature, -1);
    const auto t = torch::log_softmax(teacher_logits.to(torch::kFloat32) / temperature, -1);
    return (t.exp() * (t - s)).sum(-1) * (temperature * temperature);
}

double learning_rate(const TrainConfig& cfg, int64_t step) {
    if (step < cfg.warmup) return cfg.lr * static_cast<double>(step + 1) / static_cast<double>(cfg.warmup);
    const double span = std::max<double>(1.0, static_cast<double>(cfg.steps - cfg.warmup));
    const double p = std::min(1.0, static_cast<double>(step - cfg.warmup) / span);
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + std::cos(M_PI * p));
}

LoadedCheckpoint load_checkpoint(const std::string& path) {
    if (!fs::exists(path)) throw Error(path + ": no such checkpoint");
    torch::serialize::InputArchive root, m;
    try {
        root.load_from(path);
    } catch (const c10::Error& e) {
        throw Error(path + ": not a microlm training checkpoint (" + std::string(e.what_without_backtrace()) + ")");
    }
    LoadedCheckpoint ck;
    c10::IValue v;
    root.read("config", v);
    ck.config = config_from_text(v.toStringRef());
    root.read("step", v);
    ck.step = v.toInt();
    root.read("tokens_seen", v);
    ck.tokens_seen = v.toInt();
    root.read("wall_s", v);
    ck.wall_s = v.toDouble();
    ck.model = LlamaModule(ck.config.shape);
    root.read("model", m);
    ck.model->load(m);
    return ck;
}

TrainSummary run_training(const TrainConfig& config, const std::function<void(const StepReport&)>& on_step) {
    config.validate();
    TrainConfig cfg = config;
    if (cfg.device == "cuda" && !torch::cuda::is_available()) throw Error("config: device = cuda, but no CUDA device is available");
    if (cfg.threads > 0) torch::set_num_threads(static_cast<int>(cfg.threads));
    const torch::Device dev(cfg.device == "cuda" ? torch::kCUDA : torch::kCPU);
    const bool bf16 = uses_bf16(cfg);

    const ShardSet train_set(cfg.data, "train"), val_set(cfg.data, "val");
    if (train_set.vocab_size() != cfg.shape.n_vocab) {
        throw Error(cfg.data + ": the shards' tokenizer has " + std::to_string(train_set.vocab_size()) +
                    " tokens, the model's vocab is " + std::to_string(cfg.shape.n_vocab));
    }
    if (cfg.tokenizer.empty()) cfg.tokenizer = train_set.tokenizer_path();  // export reads it from the checkpoint
    fs::create_directories(cfg.out);
    const std::string ckpt = cfg.out + "/checkpoint.pt", csv = cfg.out + "/loss.csv";

    torch::manual_seed(cfg.seed);
    LlamaModule model(cfg.shape);
    TrainSummary sum;
    int64_t step = 0;
    double prior_wall = 0;
    if (!fs::exists(ckpt) && !cfg.init_from.empty()) sum.tokens_seen = init_weights_from(cfg.init_from, model);
    model->to(dev);
    LlamaModule teacher{nullptr};
    if (!cfg.teacher.empty()) {
        std::vector<std::string> tokens;  // the student's, where its tokenizer file is known
        if (!cfg.tokenizer.empty() && fs::exists(cfg.tokenizer))
            tokens = GgufFile::open(cfg.tokenizer)->get_str_array("tokenizer.ggml.tokens");
        teacher = load_teacher(cfg.teacher, cfg.shape.n_vocab, tokens);
        teacher->to(dev);
    }

    std::vector<torch::Tensor> decay, no_decay;
    for (auto& [name, p] : model->named_weights()) (p.dim() >= 2 ? decay : no_decay).push_back(p);
    std::vector<torch::optim::OptimizerParamGroup> groups;
    auto opts = [&](double wd) {
        return std::make_unique<torch::optim::AdamWOptions>(
            torch::optim::AdamWOptions(cfg.lr).betas({cfg.beta1, cfg.beta2}).weight_decay(wd).eps(1e-8));
    };
    groups.emplace_back(decay, opts(cfg.weight_decay));
    groups.emplace_back(no_decay, opts(0.0));
    torch::optim::AdamW optim(groups, torch::optim::AdamWOptions(cfg.lr));

    if (fs::exists(ckpt)) {
        LoadedCheckpoint ck = load_checkpoint(ckpt);
        if (ck.config.shape.parameters() != cfg.shape.parameters() || ck.config.seed != cfg.seed) {
            throw Error(ckpt + ": was written by a run with another shape or seed; use another `out` folder");
        }
        copy_weights(model, ck.model);
        torch::serialize::InputArchive root, o;
        root.load_from(ckpt, dev);
        root.read("optim", o);
        optim.load(o);
        step = ck.step;
        sum.tokens_seen = ck.tokens_seen;
        prior_wall = ck.wall_s;
        sum.resumed = true;
        truncate_csv(csv, step);
    }
    if (!fs::exists(csv)) std::ofstream(csv) << "step,loss,val_loss,val_first_loss,lr,tokens_seen,wall_s\n";
    std::ofstream(cfg.out + "/config.txt") << cfg.to_text();

    const BatchOptions bopt{cfg.batch, cfg.seq_len, cfg.first_token_weight, cfg.first_tokens};
    const int64_t tokens_per_step = cfg.batch * cfg.seq_len * cfg.grad_accum;
    const StopSignals signals;
    const Stopwatch t0;
    Stopwatch last_log;
    int64_t last_log_step = step;
    const int64_t first_step = step;
    std::ofstream log(csv, std::ios::app);
    model->train();
    while (step < cfg.steps && !g_stop) {
        const double lr = learning_rate(cfg, step);
        for (auto& g : optim.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
        optim.zero_grad();
        double loss = 0;
        for (int64_t m = 0; m < cfg.grad_accum; ++m) {
            const Batch b = train_set.sample(bopt, cfg.seed, step, m);
            Losses l = batch_loss(model, teacher ? &teacher : nullptr, cfg, b, dev, bf16);
            (l.objective / static_cast<double>(cfg.grad_accum)).backward();
            loss += l.reported / static_cast<double>(cfg.grad_accum);
        }
        if (!std::isfinite(loss)) throw Error("training diverged at step " + std::to_string(step) + " (loss " + std::to_string(loss) + "); lower lr");
        if (cfg.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), cfg.grad_clip);
        optim.step();
        ++step;
        sum.tokens_seen += tokens_per_step;
        sum.last_loss = loss;

        const double run_s = t0.seconds();
        if (cfg.max_minutes > 0 && run_s > cfg.max_minutes * 60) g_stop = true;
        const bool do_val = step % cfg.eval_every == 0 || step == cfg.steps;
        StepReport r;
        r.step = step;
        r.steps = cfg.steps;
        r.loss = loss;
        r.lr = lr;
        r.tokens_seen = sum.tokens_seen;
        // Throughput of the training steps alone: measured before validation runs.
        const double since = last_log.seconds();
        r.tokens_per_s = since > 0 ? static_cast<double>((step - last_log_step) * tokens_per_step) / since : 0;
        ValLoss vl;
        if (do_val) {
            vl = validate(model, val_set, cfg, bopt, dev, bf16);
            r.val_loss = sum.last_val_loss = vl.all;
            r.val_first_loss = vl.first;
        }
        const double per_step = run_s / static_cast<double>(step - first_step);
        r.eta_s = per_step * static_cast<double>(cfg.steps - step);
        char row[200];
        std::snprintf(row, sizeof row, "%lld,%.5f,%s,%s,%.6g,%lld,%.1f\n", static_cast<long long>(step), loss,
                      do_val ? std::to_string(vl.all).c_str() : "", do_val ? std::to_string(vl.first).c_str() : "",
                      lr, static_cast<long long>(sum.tokens_seen), prior_wall + run_s);
        log << row << std::flush;
        if (step % cfg.log_every == 0 || do_val || step == cfg.steps || g_stop) {
            if (on_step) on_step(r);
            last_log.restart();
            last_log_step = step;
        }
        if (do_val) write_loss_png(csv, cfg.out + "/loss.png", fs::path(cfg.out).filename().string());
        if (step % cfg.ckpt_every == 0 || step == cfg.steps || g_stop) {
            write_checkpoint(ckpt, model, optim, cfg, step, sum.tokens_seen, prior_wall + t0.seconds());
        }
    }
    sum.steps_done = step;
    sum.interrupted = step < cfg.steps;
    sum.wall_s = prior_wall + t0.seconds();
    return sum;
}

}  // namespace microlm::train
