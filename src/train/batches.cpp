// ShardSet: maps the shard files read-only and cuts training windows out of them. A window
// is seq_len + 1 consecutive tokens of one shard; windows may cross document boundaries
// (documents end with <|endoftext|> or <|im_end|>, as the data pipeline wrote them).
#include "batches.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "microlm/error.h"
#include "microlm/mapped_file.h"

namespace microlm::train {
namespace {

uint64_t splitmix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// A shard file mapped read-only, checked against the size the manifest promises.
std::unique_ptr<MappedFile> map_shard(const std::string& path, size_t expect_bytes) {
    auto m = std::make_unique<MappedFile>(path);
    if (m->size() != expect_bytes)
        throw Error(path + ": shard has " + std::to_string(m->size()) + " bytes, manifest says " +
                    std::to_string(expect_bytes));
    return m;
}

}  // namespace

struct ShardSet::Shard {
    std::unique_ptr<MappedFile> ids, mask;
    int64_t tokens = 0;
    const uint16_t* id(int64_t i) const { return reinterpret_cast<const uint16_t*>(ids->data()) + i; }
    uint8_t m(int64_t i) const { return mask->data()[i]; }
};

ShardSet::ShardSet(const std::string& folder, const std::string& split) {
    const std::string mpath = folder + "/manifest.json";
    std::ifstream in(mpath);
    if (!in) throw Error(mpath + ": cannot open (is '" + folder + "' a `microlm data` output folder?)");
    nlohmann::json m;
    try {
        m = nlohmann::json::parse(in);
        vocab_ = m.at("tokenizer").at("vocab_size").get<int64_t>();
        tokenizer_path_ = m.at("tokenizer").value("path", "");
        for (const auto& s : m.at("splits").at(split).at("shards")) {
            auto sh = std::make_unique<Shard>();
            sh->tokens = s.at("tokens").get<int64_t>();
            const auto n = static_cast<size_t>(sh->tokens);
            sh->ids = map_shard(folder + "/" + s.at("ids").get<std::string>(), 2 * n);
            sh->mask = map_shard(folder + "/" + s.at("mask").get<std::string>(), n);
            total_ += sh->tokens;
            shards_.push_back(std::move(sh));
        }
    } catch (const nlohmann::json::exception& e) {
        throw Error(mpath + ": not a microlm-shards-1 manifest (" + std::string(e.what()) + ")");
    }
    if (shards_.empty()) throw Error(mpath + ": split '" + split + "' has no shards");
}

ShardSet::~ShardSet() = default;

void ShardSet::window(int64_t shard, int64_t start, const BatchOptions& opt, int64_t row, Batch& b) const {
    const Shard& s = *shards_[static_cast<size_t>(shard)];
    const int64_t T = opt.seq_len;
    auto* in = b.inputs.data_ptr<int64_t>() + row * T;
    auto* tg = b.targets.data_ptr<int64_t>() + row * T;
    auto* w = b.weights.data_ptr<float>() + row * T;
    auto* c = b.counted.data_ptr<float>() + row * T;
    // How far into its run of masked targets the first target is: look back at most
    // first_tokens positions, enough to tell whether it is among a reply's first targets.
    int64_t run = 0;
    for (int64_t i = start; i >= 1 && s.m(i) && run < opt.first_tokens; --i) ++run;
    for (int64_t j = 0; j < T; ++j) {
        const int64_t t = start + 1 + j;
        in[j] = *s.id(t - 1);
        tg[j] = *s.id(t);
        const bool on = s.m(t) != 0;
        run = on ? run + 1 : 0;
        c[j] = on ? 1.0f : 0.0f;
        w[j] = !on ? 0.0f : run <= opt.first_tokens ? static_cast<float>(opt.first_token_weight) : 1.0f;
    }
}

Batch ShardSet::sample(const BatchOptions& opt, uint64_t seed, int64_t step, int64_t micro) const {
    const int64_t B = opt.batch, T = opt.seq_len;
    Batch b;
    b.inputs = torch::empty({B, T}, torch::kInt64);
    b.targets = torch::empty({B, T}, torch::kInt64);
    b.weights = torch::empty({B, T}, torch::kFloat32);
    b.counted = torch::empty({B, T}, torch::kFloat32);
    // Each shard offers tokens - T - 1 window starts; pick one uniformly over all of them.
    std::vector<int64_t> starts;
    int64_t all = 0;
    for (const auto& s : shards_) {
        const int64_t n = std::max<int64_t>(0, s->tokens - T - 1);
        starts.push_back(n);
        all += n;
    }
    if (all == 0) throw Error("training data: no shard holds " + std::to_string(T + 1) + " tokens (lower seq_len)");
    for (int64_t r = 0; r < B; ++r) {
        uint64_t h = splitmix(seed);
        h = splitmix(h ^ static_cast<uint64_t>(step));
        h = splitmix(h ^ static_cast<uint64_t>(micro));
        h = splitmix(h ^ static_cast<uint64_t>(r));
        int64_t pick = static_cast<int64_t>(h % static_cast<uint64_t>(all));
        size_t k = 0;
        while (pick >= starts[k]) pick -= starts[k++];
        window(static_cast<int64_t>(k), pick, opt, r, b);
    }
    return b;
}

}  // namespace microlm::train
