// Training batches from a `microlm data` folder: the shards (uint16 ids + uint8 loss masks,
// described by manifest.json) are memory-mapped, and the windows of a step are a pure
// function of (seed, step, micro-batch), so a resumed run sees exactly the batches the
// uninterrupted run would have. Not here: tokenizing (src/data), the model.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace microlm::train {

struct Batch {
    torch::Tensor inputs;   // (B, T) int64: tokens at positions 0..T-1
    torch::Tensor targets;  // (B, T) int64: the next tokens
    torch::Tensor weights;  // (B, T) float: 0 where no loss is taken, else the target's weight
    torch::Tensor counted;  // (B, T) float: 1 where the target counts for the reported loss
};

struct BatchOptions {
    int64_t batch = 16;
    int64_t seq_len = 256;
    double first_token_weight = 1.0;  // weight of a masked run's first `first_tokens` targets
    int64_t first_tokens = 16;
};

class ShardSet {
public:
    // `split` is "train" or "val"; throws microlm::Error naming the folder and the problem.
    ShardSet(const std::string& folder, const std::string& split);
    ~ShardSet();
    ShardSet(const ShardSet&) = delete;
    ShardSet& operator=(const ShardSet&) = delete;

    int64_t tokens() const { return total_; }
    int64_t vocab_size() const { return vocab_; }
    const std::string& tokenizer_path() const { return tokenizer_path_; }

    // The windows of (step, micro) for this seed: deterministic, independent of history.
    Batch sample(const BatchOptions& opt, uint64_t seed, int64_t step, int64_t micro) const;

private:
    struct Shard;
    void window(int64_t shard, int64_t start, const BatchOptions& opt, int64_t row, Batch& b) const;

    std::vector<std::unique_ptr<Shard>> shards_;
    int64_t total_ = 0;
    int64_t vocab_ = 0;
    std::string tokenizer_path_;
};

}  // namespace microlm::train
