// A training run's settings: read from a `key = value` file (# comments), then overridden by
// `--key=value` arguments, then validated. Unknown keys are errors, so a typo never silently
// trains with a default. Not here: what the trainer does with them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "llama_module.h"

namespace microlm::train {

struct TrainConfig {
    LlamaHparams shape{8192, 256, 8, 8, 2, 704, 2048, 10000.0f, true, 1e-5f};  // microlm-8m
    std::string data;             // a `microlm data` output folder (manifest.json + shards)
    std::string tokenizer;        // GGUF whose tokenizer.* keys the export copies
    std::string out = "runs/run";  // checkpoint.pt, loss.csv, loss.png, config.txt
    std::string init_from;        // a checkpoint or an F32/F16/Q8_0 GGUF whose weights start this run
    // Logit distillation: an F32/F16/Q8_0 GGUF Llama with the student's vocabulary (its shape is
    // read from the file). Its next-token distributions at `distill_temperature` are a soft
    // target: objective = (1 - distill_weight) * CE + distill_weight * T^2 * KL(teacher || student),
    // both per counted target and weighted as the CE is. Empty: plain training.
    std::string teacher;
    double distill_weight = 0.5;
    double distill_temperature = 1.0;
    std::string device = "cpu";   // cpu | cuda
    // auto: bf16 autocast on CUDA and on CPUs with bf16 matmul units (AMX or AVX512-BF16),
    // else fp32. The weights and AdamW's state are fp32 either way.
    std::string precision = "auto";  // auto | fp32 | bf16
    int64_t threads = 0;          // CPU threads (0: all cores)
    uint64_t seed = 1;
    int64_t steps = 1000;
    int64_t batch = 16;           // sequences per micro-batch
    int64_t seq_len = 256;
    int64_t grad_accum = 1;       // micro-batches per optimizer step
    double lr = 3e-3;
    double min_lr = 3e-4;
    int64_t warmup = 100;
    double weight_decay = 0.1;
    double beta1 = 0.9, beta2 = 0.95;
    double grad_clip = 1.0;
    double first_token_weight = 1.0;  // loss weight of each reply's first `first_tokens` targets
    int64_t first_tokens = 16;
    int64_t eval_every = 100;
    int64_t eval_batches = 8;
    int64_t ckpt_every = 100;
    int64_t log_every = 10;
    double max_minutes = 0;       // stop (with a checkpoint) after this wall time; 0: no limit

    // Applies `key = value`; throws microlm::Error naming the key and the accepted form.
    void set(const std::string& key, const std::string& value);
    void validate() const;
    std::string to_text() const;  // every key, in the file format (round-trips through set)
};

// Reads `path` (may be empty: defaults) and applies the overrides ("--key=value" or
// "key=value").
TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides);

}  // namespace microlm::train
