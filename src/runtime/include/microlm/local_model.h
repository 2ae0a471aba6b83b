// LocalModel: the one way to open a model for running it: the GGUF mapped and bound (Model), its
// vocabulary (Tokenizer) and one conversation's state (Context), with the context size settled
// once. Used by run, chat, the gateway, serve-model, the eval's openers and judge, calibrate-hedge.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "microlm/model.h"
#include "microlm/tokenizer.h"

namespace microlm {

class LocalModel {
public:
    // n_ctx: the positions wanted; 0 = the model's own training context. A request above that
    // is capped there (Context never holds more than the model was trained for).
    // Throws microlm::Error naming the file.
    static std::unique_ptr<LocalModel> open(const std::string& path, int64_t n_ctx = 0, int threads = 1);

    const std::string& path() const { return path_; }
    const Model& model() const { return *model_; }
    const Tokenizer& tokenizer() const { return *tok_; }
    Context& context() { return *ctx_; }
    int64_t n_ctx() const { return ctx_->n_ctx(); }
    // A fresh Context of another size (capped as in open), e.g. once the prompt's length is
    // known; the old one, and references to it, are gone.
    void set_n_ctx(int64_t n_ctx);
    // Another conversation's state on the same weights (same size and threads), e.g. for a
    // server that scores one request while it generates another.
    std::unique_ptr<Context> new_context() const;

private:
    LocalModel() = default;

    std::string path_;
    int threads_ = 1;
    std::unique_ptr<Model> model_;
    std::unique_ptr<Tokenizer> tok_;
    std::unique_ptr<Context> ctx_;
};

}  // namespace microlm
