// The training loop: AdamW with warm-up + cosine decay, gradient clipping and accumulation,
// periodic validation, a progress line, loss.csv, and atomic checkpoints that a later run
// with the same `out` folder resumes exactly. Not here: the model (llama_module.h), the
// batches (batches.h), export (export_gguf.h).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "llama_module.h"
#include "train_config.h"

namespace microlm::train {

struct StepReport {
    int64_t step = 0;  // optimizer steps done
    int64_t steps = 0;
    double loss = 0;   // mean loss on the counted targets of this step
    double val_loss = -1;  // set on validation steps
    double val_first_loss = -1;  // validation loss on each reply's first `first_tokens` targets
    double lr = 0;
    double tokens_per_s = 0;
    double eta_s = 0;
    int64_t tokens_seen = 0;
};

struct TrainSummary {
    int64_t steps_done = 0;
    int64_t tokens_seen = 0;  // window tokens through the model, over all runs of this checkpoint
    double last_loss = 0;
    double last_val_loss = -1;
    double wall_s = 0;        // over all runs of this checkpoint
    bool resumed = false;
    bool interrupted = false;  // stopped by a signal or max_minutes; the checkpoint is current
};

// lr at an optimizer step (0-based): linear warm-up to cfg.lr, then cosine to cfg.min_lr.
double learning_rate(const TrainConfig& cfg, int64_t step);

// Whether cfg trains with bf16 autocast: precision bf16, or auto on CUDA or on a CPU that
// lists amx_bf16 or avx512_bf16 in /proc/cpuinfo.
bool uses_bf16(const TrainConfig& cfg);

// Trains per cfg, resuming from cfg.out/checkpoint.pt when it exists. `on_step` sees every
// log_every-th step and every validation. SIGINT/SIGTERM end the run after the current step
// with a checkpoint written.
TrainSummary run_training(const TrainConfig& cfg, const std::function<void(const StepReport&)>& on_step);

// A checkpoint's model: the shape and weights (on CPU, float32) and its metadata.
struct LoadedCheckpoint {
    TrainConfig config;
    LlamaModule model{nullptr};
    int64_t step = 0;
    int64_t tokens_seen = 0;
    double wall_s = 0;
};
LoadedCheckpoint load_checkpoint(const std::string& path);

// Copies the weights of `path` into `model`: a checkpoint, or a GGUF (F32, F16 or Q8_0 tensors,
// e.g. an exported model) whose tensors have the model's names and sizes. Returns the tokens the
// source had seen (0 for a GGUF). Throws naming the file and the first mismatch.
int64_t init_weights_from(const std::string& path, LlamaModule& model);

// A distillation teacher: the Llama in an F32/F16/Q8_0 GGUF, shape from the file, in eval mode.
// Throws when it is not a llama, its vocabulary is not `n_vocab` tokens, or (where the student's
// token strings are given) its tokens are not the student's, in order: a KL between two
// vocabularies of the same size but other tokens would train nonsense.
LlamaModule load_teacher(const std::string& path, int64_t n_vocab, const std::vector<std::string>& student_tokens = {});

// Per position of (..., V) logits: T^2 * KL(softmax(teacher / T) || softmax(student / T)), in
// float32, shape (...). The T^2 keeps its gradient's scale independent of T (Hinton et al.).
torch::Tensor distill_kl(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double temperature);

}  // namespace microlm::train
