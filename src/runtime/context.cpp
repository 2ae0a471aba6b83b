// Context: the Llama forward pass over a batch of tokens with a fp16 KV cache, for one
// sequence or for several at once (batched generation: each row carries its sequence and
// position, the matrix products run over all rows, attention per row in its own cache); Gemma 3's
// differences (LlamaHparams: embedding scale, QK and post norms, GELU, NeoX RoPE, local layers)
// are switched by the model's hyper-parameters, not by architecture name.
// Numerics follow llama.cpp's CPU path where it matters for agreement: RMSNorm summed in
// double, RoPE on adjacent pairs (GGUF llama tensors are stored permuted for it) with fused
// multiply-adds, query and attention weights rounded to fp16 against the fp16 cache, softmax
// summed in double. SiLU uses libm's expf (the kernel tables' swiglu: AVX-512 computes it
// vectorised the way glibc does, bit for bit), not llama.cpp's vectorised approximation: that
// is the one known source of last-bit differences left (see tests/test_parity_model.cpp).
#include <algorithm>
#include <cmath>
#include <vector>

#include "microlm/error.h"
#include "microlm/model.h"

namespace microlm {
namespace {

// out = x * w / rms(x), given x's sum of squares (in double, summed in index order).
void rms_scale(const float* x, const float* w, float* out, int64_t n, double sum_sq, float eps) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(sum_sq / static_cast<double>(n)) + eps);
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void rmsnorm(const float* x, const float* w, float* out, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
    rms_scale(x, w, out, n, sum, eps);
}

// rmsnorm() of `rows` consecutive rows of `dim`: each row summed in the same order, kGroup rows
// side by side so that their chains of double adds overlap (one chain waits on every add).
void rmsnorm_rows(const float* x, const float* w, float* out, int64_t rows, int64_t dim, float eps) {
    constexpr int64_t kGroup = 8;
    int64_t r = 0;
    for (; r + kGroup <= rows; r += kGroup) {
        const float* xg = x + r * dim;
        double sum[kGroup] = {};
        for (int64_t i = 0; i < dim; ++i)
            for (int64_t g = 0; g < kGroup; ++g) sum[g] += static_cast<double>(xg[g * dim + i] * xg[g * dim + i]);
        for (int64_t g = 0; g < kGroup; ++g) rms_scale(xg + g * dim, w, out + (r + g) * dim, dim, sum[g], eps);
    }
    for (; r < rows; ++r) rmsnorm(x + r * dim, w, out + r * dim, dim, eps);
}

// GELU with tanh, as ggml computes it: through a table of every fp16 input (the input rounded to
// fp16, the result too), 0 below -10 and the identity above 10. The table is built once.
float gelu_tanh(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    static const std::vector<float> table = [] {
        std::vector<float> t(65536);
        constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f, kCoefA = 0.044715f;
        for (uint32_t i = 0; i < t.size(); ++i) {
            const float h = fp16_to_fp32(static_cast<uint16_t>(i));
            const float g = 0.5f * h * (1.0f + std::tanh(kSqrt2OverPi * h * (1.0f + kCoefA * h * h)));
            t[i] = fp16_to_fp32(fp32_to_fp16(g));
        }
        return t;
    }();
    return table[fp32_to_fp16(x)];
}

// cos, sin per position and rotated pair at one RoPE base, theta advanced by repeated
// multiplication as ggml does.
void rope_table(float base, int64_t rotated, int64_t pos0, int64_t n, const std::vector<float>& freq_factors,
                float* cs) {
    const float theta_scale = std::pow(base, -2.0f / static_cast<float>(rotated));
    for (int64_t t = 0; t < n; ++t) {
        float theta = static_cast<float>(pos0 + t);
        float* row = cs + t * rotated;
        for (int64_t i = 0; i < rotated; i += 2) {
            const float ff = freq_factors.empty() ? 1.0f : freq_factors[static_cast<size_t>(i / 2)];
            row[i] = std::cos(theta / ff);
            row[i + 1] = std::sin(theta / ff);
            theta *= theta_scale;
        }
    }
}

}  // namespace

Context::Context(const Model& model, int64_t n_ctx, int n_threads, int64_t n_batch, const Kernels* kernels,
                 int32_t n_seqs)
    : model_(model),
      kernels_(kernels ? kernels : &kernels_best()),
      pool_(n_threads),
      n_ctx_(std::clamp<int64_t>(n_ctx, 1, model.config().n_ctx)),
      n_batch_(std::max<int64_t>(1, n_batch)) {
    if (n_seqs < 1) throw Error("context: n_seqs must be at least 1, got " + std::to_string(n_seqs));
    const LlamaHparams& c = model.config();
    const int64_t q_dim = c.n_heads * c.head_dim(), kv_dim = c.n_kv_heads * c.head_dim();
    const auto sz = [](int64_t a, int64_t b) { return static_cast<size_t>(a * b); };
    past_.assign(static_cast<size_t>(n_seqs), 0);
    k_cache_.assign(sz(c.n_layers * n_seqs * n_ctx_, kv_dim), 0);
    v_cache_.assign(sz(c.n_layers * n_seqs * n_ctx_, kv_dim), 0);
    x_.assign(sz(n_batch_, c.dim), 0.0f);
    xn_.assign(sz(n_batch_, std::max(c.dim, q_dim)), 0.0f);
    q_.assign(sz(n_batch_, q_dim), 0.0f);
    k_.assign(sz(n_batch_, kv_dim), 0.0f);
    v_.assign(sz(n_batch_, kv_dim), 0.0f);
    att_out_.assign(sz(n_batch_, q_dim), 0.0f);
    gate_.assign(sz(n_batch_, c.ffn_dim), 0.0f);
    up_.assign(sz(n_batch_, c.ffn_dim), 0.0f);
    scores_.assign(sz(pool_.size(), n_ctx_), 0.0f);
    q16_.assign(sz(n_batch_, q_dim), 0);
    rope_cs_.assign(sz(n_batch_, c.rotated_dims()), 0.0f);
    if (c.sliding_window > 0) rope_cs_local_.assign(sz(n_batch_, c.rotated_dims()), 0.0f);
    size_t prep = 0;
    auto need = [&](const WeightRef& w) { prep = std::max(prep, prepared_row_bytes(w.type, w.cols)); };
    need(model.output);
    for (const auto& l : model.layers) {
        for (const WeightRef* w : l.matrices()) need(*w);
    }
    prepared_.assign(prep * static_cast<size_t>(n_batch_), 0);
    logits_.assign(static_cast<size_t>(c.n_vocab), 0.0f);
    tokens_.assign(sz(n_seqs, n_ctx_), 0);
    row_seq_.assign(static_cast<size_t>(n_batch_), 0);
    row_pos_.assign(static_cast<size_t>(n_batch_), 0);
    out_rows_.assign(static_cast<size_t>(n_batch_), 0);
}

Context::~Context() = default;

void Context::truncate(int64_t n) {
    if (n < 0 || n > past_[0]) {
        throw Error("truncate(" + std::to_string(n) + "): the cache holds " + std::to_string(past_[0]) + " positions");
    }
    past_[0] = n;
}

int64_t Context::reuse_prefix(std::span<const int32_t> tokens) {
    const int64_t limit = std::min<int64_t>(past_[0], static_cast<int64_t>(tokens.size()) - 1);
    int64_t n = 0;
    while (n < limit && tokens_[static_cast<size_t>(n)] == tokens[static_cast<size_t>(n)]) ++n;
    past_[0] = n;
    return n;
}

int64_t Context::n_past(int32_t seq) const {
    if (seq < 0 || seq >= n_seqs())
        throw Error("sequence " + std::to_string(seq) + " is outside [0, " + std::to_string(n_seqs()) + ")");
    return past_[static_cast<size_t>(seq)];
}

void Context::clear_seq(int32_t seq) {
    n_past(seq);  // range check
    past_[static_cast<size_t>(seq)] = 0;
}

void Context::check_token(int32_t id) const {
    if (id < 0 || id >= n_vocab()) {
        throw Error("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(n_vocab()) +
                    ")");
    }
}

uint16_t* Context::cache_row(std::vector<uint16_t>& cache, int64_t layer, int64_t seq, int64_t pos) {
    const LlamaHparams& c = model_.config();
    return cache.data() + ((layer * n_seqs() + seq) * n_ctx_ + pos) * c.n_kv_heads * c.head_dim();
}

std::span<const float> Context::eval(std::span<const int32_t> tokens, bool all_logits) {
    const int64_t n = static_cast<int64_t>(tokens.size());
    if (n == 0) throw Error("eval: no tokens");
    int64_t& past = past_[0];
    if (past + n > n_ctx_) {
        throw Error("context full: " + std::to_string(past) + " positions used + " + std::to_string(n) +
                    " new tokens > context size " + std::to_string(n_ctx_) + " (raise --ctx-size)");
    }
    for (int32_t id : tokens) check_token(id);
    logits_rows_ = all_logits ? n : 1;
    if (logits_.size() < static_cast<size_t>(logits_rows_ * n_vocab())) {
        logits_.resize(static_cast<size_t>(logits_rows_ * n_vocab()));
    }
    std::copy(tokens.begin(), tokens.end(), tokens_.begin() + past);
    for (int64_t i = 0; i < n; i += n_batch_) {
        const int64_t m = std::min(n_batch_, n - i);
        for (int64_t t = 0; t < m; ++t) {
            row_seq_[static_cast<size_t>(t)] = 0;
            row_pos_[static_cast<size_t>(t)] = past + t;
            out_rows_[static_cast<size_t>(t)] = t;
        }
        if (all_logits) {
            eval_batch(tokens.data() + i, m, out_rows_.data(), m, logits_.data() + i * n_vocab());
        } else {
            const int64_t last = m - 1;
            eval_batch(tokens.data() + i, m, &last, i + m == n ? 1 : 0, logits_.data());
        }
        past += m;
    }
    return {logits_.data() + (all_logits ? (n - 1) * n_vocab() : 0), static_cast<size_t>(n_vocab())};
}

std::span<const float> Context::eval_seqs(std::span<const SeqToken> rows) {
    const int64_t n = static_cast<int64_t>(rows.size());
    if (n == 0) throw Error("eval_seqs: no rows");
    if (n > n_batch_)
        throw Error("eval_seqs: " + std::to_string(n) + " rows > the context's batch of " + std::to_string(n_batch_));
    std::vector<int64_t> next(past_);  // each sequence's next position as rows are placed
    std::vector<int32_t> ids(static_cast<size_t>(n));
    int64_t n_out = 0;
    for (int64_t t = 0; t < n; ++t) {
        const SeqToken& r = rows[static_cast<size_t>(t)];
        check_token(r.token);
        n_past(r.seq);  // range check
        int64_t& pos = next[static_cast<size_t>(r.seq)];
        if (pos >= n_ctx_) {
            throw Error("context full: sequence " + std::to_string(r.seq) + " holds " + std::to_string(n_ctx_) +
                        " positions (raise --ctx-size)");
        }
        ids[static_cast<size_t>(t)] = r.token;
        row_seq_[static_cast<size_t>(t)] = r.seq;
        row_pos_[static_cast<size_t>(t)] = pos++;
        if (r.logits) out_rows_[static_cast<size_t>(n_out++)] = t;
    }
    logits_rows_ = n_out;
    if (logits_.size() < static_cast<size_t>(n_out * n_vocab())) logits_.resize(static_cast<size_t>(n_out * n_vocab()));
    for (int64_t t = 0; t < n; ++t)
        tokens_[static_cast<size_t>(row_seq_[static_cast<size_t>(t)] * n_ctx_ + row_pos_[static_cast<size_t>(t)])] =
            ids[static_cast<size_t>(t)];
    eval_batch(ids.data(), n, out_rows_.data(), n_out, logits_.data());
    past_ = std::move(next);
    return {logits_.data(), static_cast<size_t>(n_out * n_vocab())};
}

void Context::matmul(const WeightRef& w, const float* x, int64_t n, float* y, bool reuse_prepared) {
    if (!reuse_prepared) kernels_->prepare(w.type, x, n, w.cols, prepared_.data());
    const void* xp = prepared_.data();
    const Kernels* k = kernels_;
    pool_.parallel_for(w.rows, [&](int64_t r0, int64_t r1) { k->matmul(w, r0, r1, xp, n, y, w.rows); });
}

void Context::matmuls(std::initializer_list<Product> products, const float* x, int64_t n) {
    if (products.size() == 0) return;
    const DType type = products.begin()->w->type;
    int64_t total = 0;
    for (const Product& p : products) {
        if (p.w->type != type) {  // mixed types (K-quant files): one product at a time
            const WeightRef* prev = nullptr;
            for (const Product& q : products) {
                matmul(*q.w, x, n, q.y, prev != nullptr && prev->type == q.w->type);
                prev = q.w;
            }
            return;
        }
        total += p.w->rows;
    }
    kernels_->prepare(type, x, n, products.begin()->w->cols, prepared_.data());
    const void* xp = prepared_.data();
    const Kernels* k = kernels_;
    // A thread's range may end inside a product at any row; the tables give each row the same bits
    // wherever a range splits, but AMX's (whose row tiles round apart from its AVX-512 rest).
    pool_.parallel_for(total, [&](int64_t r0, int64_t r1) {
        int64_t at = 0;  // the first row of this product in the joint range
        for (const Product& p : products) {
            const int64_t a = std::max(r0, at) - at, b = std::min(r1, at + p.w->rows) - at;
            if (a < b) k->matmul(*p.w, a, b, xp, n, p.y, p.w->rows);
            at += p.w->rows;
        }
    });
}

void Context::gated_ffn(const LayerWeights& w, const float* x, int64_t n) {
    const int64_t ffn = w.w_gate.rows;
    if (w.w_up.type != w.w_gate.type) {  // mixed types: the products one after another, then SwiGLU
        matmuls({{&w.w_gate, gate_.data()}, {&w.w_up, up_.data()}}, x, n);
        kernels_->swiglu(gate_.data(), up_.data(), n * ffn, gate_.data());
        return;
    }
    kernels_->prepare(w.w_gate.type, x, n, w.w_gate.cols, prepared_.data());
    const void* xp = prepared_.data();
    const Kernels* k = kernels_;
    float *gate = gate_.data(), *up = up_.data();
    pool_.parallel_for(ffn, [&](int64_t r0, int64_t r1) {
        k->matmul(w.w_gate, r0, r1, xp, n, gate, ffn);
        k->matmul(w.w_up, r0, r1, xp, n, up, ffn);
        for (int64_t t = 0; t < n; ++t) k->swiglu(gate + t * ffn + r0, up + t * ffn + r0, r1 - r0, gate + t * ffn + r0);
    });
}

namespace {

// RoPE over n tokens' heads. The fused forms llama.cpp's build contracts these to; plain
// a*b - c*d parts from it by an ulp and, over 30 layers, by tenths of a logit. std::fma is
// exactly rounded, so the x86 clone for CPUs with FMA (one instruction each) and the portable
// one (a libm call each: ~5% of a SmolLM2 prefill) give the same bits.
#if defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("fma", "default")))
#endif
void rotate(float* x, int64_t n, int64_t n_heads, int64_t head_dim, int64_t rotated, bool neox, const float* table) {
    const int64_t half = rotated / 2;
    for (int64_t t = 0; t < n; ++t) {
        const float* cs = table + t * rotated;
        for (int64_t h = 0; h < n_heads; ++h) {
            float* v = x + (t * n_heads + h) * head_dim;
            for (int64_t i = 0; i < rotated; i += 2) {
                // Llama GGUF tensors are stored permuted for adjacent pairs; NeoX pairs i with i + d/2.
                float& a = neox ? v[i / 2] : v[i];
                float& b = neox ? v[i / 2 + half] : v[i + 1];
                const float x0 = a, x1 = b, cos_t = cs[i], sin_t = cs[i + 1];
                a = std::fma(x0, cos_t, -(x1 * sin_t));
                b = std::fma(x0, sin_t, x1 * cos_t);
            }
        }
    }
}

}  // namespace

void Context::rope(float* x, int64_t n, int64_t n_heads, const std::vector<float>& table) const {
    const LlamaHparams& c = model_.config();
    rotate(x, n, n_heads, c.head_dim(), c.rotated_dims(), c.neox_rope, table.data());
}

void Context::attention(int64_t layer, int64_t n) {
    const LlamaHparams& c = model_.config();
    const int64_t hd = c.head_dim(), kv_dim = c.n_kv_heads * hd, group = c.n_heads / c.n_kv_heads;
    const float scale = c.attention_scale();
    // A local (sliding-window) layer sees only the last sliding_window positions.
    const int64_t window = c.is_local(layer) ? c.sliding_window : 0;
    // F16 "activation preparation" is exactly a round-to-nearest-even conversion, vectorised.
    kernels_->prepare(DType::F16, q_.data(), 1, n * c.n_heads * hd, q16_.data());

    const int64_t tasks = n * c.n_heads;
    const int64_t parts = std::min<int64_t>(pool_.size(), tasks);
    pool_.run(parts, [&](int64_t part) {
        float* s = scores_.data() + part * n_ctx_;
        for (int64_t task = tasks * part / parts; task < tasks * (part + 1) / parts; ++task) {
            const int64_t t = task / c.n_heads, h = task % c.n_heads, kvh = h / group;
            const int64_t seq = row_seq_[static_cast<size_t>(t)];
            const uint16_t* kc = cache_row(k_cache_, layer, seq, 0);
            const uint16_t* vc = cache_row(v_cache_, layer, seq, 0);
            const int64_t n_visible = row_pos_[static_cast<size_t>(t)] + 1;  // causal: this token and all before it
            const int64_t first = window > 0 ? std::max<int64_t>(0, n_visible - window) : 0;
            const int64_t n_keys = n_visible - first;
            const uint16_t* q = q16_.data() + (t * c.n_heads + h) * hd;
            kernels_->attn_scores(q, kc + first * kv_dim + kvh * hd, kv_dim, n_keys, hd, scale, s);
            kernels_->attn_softmax(s, n_keys);
            kernels_->attn_values(s, vc + first * kv_dim + kvh * hd, kv_dim, n_keys, hd,
                                  att_out_.data() + (t * c.n_heads + h) * hd);
        }
    });
}

void Context::eval_batch(const int32_t* tokens, int64_t n, const int64_t* out_rows, int64_t n_out, float* out) {
    const LlamaHparams& c = model_.config();
    const int64_t dim = c.dim, kv_dim = c.n_kv_heads * c.head_dim();
    const WeightRef& emb = model_.token_embd;
    for (int64_t t = 0; t < n; ++t) {
        const auto* row = static_cast<const uint8_t*>(emb.data) + static_cast<size_t>(tokens[t]) * emb.row_bytes;
        float* xt = x_.data() + t * dim;
        dequantize_row(emb.type, row, xt, dim);
        if (c.embed_scale != 1.0f)
            for (int64_t i = 0; i < dim; ++i) xt[i] *= c.embed_scale;
    }
    // Each row at its own position (rows of a pass need not be consecutive, nor one sequence's).
    for (int64_t t = 0; t < n; ++t) {
        const int64_t pos = row_pos_[static_cast<size_t>(t)], at = t * c.rotated_dims();
        rope_table(c.rope_base, c.rotated_dims(), pos, 1, model_.rope_freq_factors, rope_cs_.data() + at);
        if (!rope_cs_local_.empty())
            rope_table(c.rope_base_local, c.rotated_dims(), pos, 1, model_.rope_freq_factors, rope_cs_local_.data() + at);
    }
    const int64_t hd = c.head_dim();
    // Per-head RMSNorm of n rows of `heads` heads (Gemma's QK norm).
    const auto head_norm = [&](float* v, int64_t heads, const std::vector<float>& w) {
        rmsnorm_rows(v, w.data(), v, n * heads, hd, c.norm_eps);
    };

    for (int64_t l = 0; l < c.n_layers; ++l) {
        const LayerWeights& w = model_.layers[l];
        const std::vector<float>& cs = c.is_local(l) ? rope_cs_local_ : rope_cs_;
        rmsnorm_rows(x_.data(), w.attn_norm.data(), xn_.data(), n, dim, c.norm_eps);
        matmuls({{&w.wq, q_.data()}, {&w.wk, k_.data()}, {&w.wv, v_.data()}}, xn_.data(), n);
        if (c.qk_norm) {
            head_norm(q_.data(), c.n_heads, w.q_norm);
            head_norm(k_.data(), c.n_kv_heads, w.k_norm);
        }
        rope(q_.data(), n, c.n_heads, cs);
        rope(k_.data(), n, c.n_kv_heads, cs);
        for (int64_t t = 0; t < n; ++t) {
            const int64_t seq = row_seq_[static_cast<size_t>(t)], pos = row_pos_[static_cast<size_t>(t)];
            kernels_->prepare(DType::F16, k_.data() + t * kv_dim, 1, kv_dim, cache_row(k_cache_, l, seq, pos));
            kernels_->prepare(DType::F16, v_.data() + t * kv_dim, 1, kv_dim, cache_row(v_cache_, l, seq, pos));
        }
        attention(l, n);
        matmul(w.wo, att_out_.data(), n, xn_.data());
        if (c.post_norms)
            rmsnorm_rows(xn_.data(), w.post_attn_norm.data(), xn_.data(), n, dim, c.norm_eps);
        for (int64_t i = 0; i < n * dim; ++i) x_[i] += xn_[i];

        rmsnorm_rows(x_.data(), w.ffn_norm.data(), xn_.data(), n, dim, c.norm_eps);
        if (c.activation == Activation::kGeluTanh) {
            matmuls({{&w.w_gate, gate_.data()}, {&w.w_up, up_.data()}}, xn_.data(), n);
            for (int64_t i = 0; i < n * c.ffn_dim; ++i) gate_[i] = gelu_tanh(gate_[i]) * up_[i];
        } else {
            gated_ffn(w, xn_.data(), n);
        }
        matmul(w.w_down, gate_.data(), n, xn_.data());
        if (c.post_norms)
            rmsnorm_rows(xn_.data(), w.post_ffn_norm.data(), xn_.data(), n, dim, c.norm_eps);
        for (int64_t i = 0; i < n * dim; ++i) x_[i] += xn_[i];
    }

    if (n_out == 0) return;
    for (int64_t j = 0; j < n_out; ++j)
        rmsnorm(x_.data() + out_rows[j] * dim, model_.output_norm.data(), xn_.data() + j * dim, dim, c.norm_eps);
    matmul(model_.output, xn_.data(), n_out, out);
}

}  // namespace microlm
