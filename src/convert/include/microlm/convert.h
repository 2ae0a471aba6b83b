// Converters from other checkpoint formats to microlm's GGUF: a Hugging Face Llama folder
// (config.json + safetensors + tokenizer.json) and a PyTorch `torch.save` checkpoint of the
// Swen/minimind layout. Readers distrust their input; nothing here needs libtorch or Python.
// Not here: training or exporting our own checkpoints (src/train/), the GGUF format (gguf.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "microlm/dtype.h"
#include "microlm/mapped_file.h"
#include "microlm/llama_gguf.h"
#include "microlm/tokenizer.h"

namespace microlm {

// ---- ZIP (src/convert/zip_reader.cpp) ---------------------------------------------------------
// The subset torch.save writes: stored (uncompressed) entries, optionally ZIP64. Compressed or
// encrypted entries are refused; every offset and size is checked against the file size.
class ZipArchive {
public:
    struct Entry {
        std::string name;
        uint64_t data_offset = 0;  // of the entry's bytes in the file (past its local header)
        uint64_t size = 0;
        uint32_t crc32 = 0;
    };
    static std::unique_ptr<ZipArchive> open(const std::string& path);
    const std::string& path() const { return file_.path(); }
    const std::vector<Entry>& entries() const { return entries_; }
    const Entry* find(std::string_view name) const;  // nullptr if absent
    // The entry's bytes, after checking their CRC-32.
    std::span<const uint8_t> data(const Entry& e) const;

private:
    explicit ZipArchive(const std::string& path) : file_(path) {}
    void parse();
    MappedFile file_;
    std::vector<Entry> entries_;
};

// ---- Tensors read from checkpoints -------------------------------------------------------------
// Shape outermost first (PyTorch's order) and values converted to float32, row-major.
struct CheckpointTensor {
    std::vector<int64_t> shape;
    std::vector<float> data;
    std::string stored_type;  // "F32", "F16", "BF16", "F64": what the file held
};
using TensorMap = std::map<std::string, CheckpointTensor>;

// ---- torch.save checkpoints (src/convert/torch_pickle.cpp) -------------------------------------
// Raw bytes of the storage `key` (the archive's data/<key>); throws if there is none.
using StorageBytes = std::function<std::span<const uint8_t>(const std::string& key)>;

// Runs a pickle (protocol 2 to 5, the opcodes torch.save emits for dicts of tensors) and returns
// the state dict's tensors: the top-level dict's "model" entry when that is a dict, otherwise the
// top-level dict itself. `label` names the pickle in errors (with the byte offset). Tensors must
// be contiguous; their storage offset is honoured. Entries that are not tensors are skipped.
TensorMap unpickle_state_dict(const std::string& label, std::span<const uint8_t> pickle,
                              const StorageBytes& storage);

// A torch.save zip file: <prefix>/data.pkl plus <prefix>/data/<key> storages.
TensorMap read_torch_checkpoint(const std::string& path);

// ---- safetensors (src/convert/safetensors.cpp) -------------------------------------------------
// One .safetensors file: 8-byte little-endian header length, JSON header, raw data.
TensorMap read_safetensors(const std::string& path);

// ---- Hugging Face tokenizer (src/convert/hf_tokenizer.cpp) -------------------------------------
// tokenizer.json (byte-level BPE) and the optional tokenizer_config.json of `dir` as a VocabData.
// `pre` names the GGUF pre-tokenizer; without it, only GPT-2's own configuration (ByteLevel with
// use_regex, no normalizer) is recognised and anything else asks for --pre. `n_vocab` >= the
// tokenizer's size pads the vocabulary with unused "[PAD<id>]" tokens as llama.cpp does.
VocabData vocab_from_hf_tokenizer(const std::string& dir, const std::optional<std::string>& pre,
                                  int64_t n_vocab);

// ---- Llama conversion (src/convert/llama_convert.cpp) ------------------------------------------
struct ConvertOptions {
    DType type = DType::F32;         // of the matrices (F32, F16 or Q8_0); norms stay F32
    std::string name;                // general.name; empty: derived from the input's name
    std::optional<std::string> pre;  // tokenizer.ggml.pre override
};

// The Swen checkpoint stores no hyper-parameters that its tensor shapes do not imply.
struct SwenOptions {
    int64_t n_heads = 8;
    int64_t n_kv_heads = 2;
    float rope_theta = 1e6f;
    float norm_eps = 1e-5f;
    int64_t n_ctx = 32768;
};

struct ConvertSummary {
    LlamaHparams shape;
    int64_t n_params = 0;
    int64_t n_tokens = 0;  // tokenizer entries, padding included
    std::string pre;
};

// HF tensor names (model.layers.N.self_attn.q_proj.weight, ...) → GGUF names (blk.N.attn_q.weight,
// ...); nullopt for names microlm does not know.
std::optional<std::string> gguf_tensor_name(std::string_view hf_name);

// Q and K rows of HF checkpoints pair dimension i with i + head_dim/2 (rotate_half); GGUF llama
// tensors pair 2i with 2i+1. Within each head, new row 2i+j = old row j*(head_dim/2)+i.
// `w` is (n_heads * head_dim, cols) row-major.
std::vector<float> permute_rope_rows(const std::vector<float>& w, int64_t n_heads, int64_t head_dim,
                                     int64_t cols);

// Writes HF-named tensors as a GGUF Llama (atomically). `shape` must match the tensors; output
// (lm_head.weight) is written only when shape.tied is false.
void write_llama_gguf(const std::string& out, const TensorMap& tensors, const LlamaHparams& shape,
                      const VocabData& vocab, DType type, const std::string& name, const std::string& source);

ConvertSummary convert_hf(const std::string& dir, const std::string& out, const ConvertOptions& options);
ConvertSummary convert_swen(const std::string& checkpoint, const std::string& tokenizer_dir,
                            const std::string& out, const ConvertOptions& options, const SwenOptions& swen);

}  // namespace microlm
