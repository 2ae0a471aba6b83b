// LocalModel::open: load, read the vocabulary, size the context once.
#include "microlm/local_model.h"

#include <algorithm>

namespace microlm {

std::unique_ptr<LocalModel> LocalModel::open(const std::string& path, int64_t n_ctx, int threads) {
    std::unique_ptr<LocalModel> m(new LocalModel());
    m->path_ = path;
    m->model_ = Model::load(path);
    m->tok_ = std::make_unique<Tokenizer>(vocab_from_gguf(m->model_->file()));
    m->threads_ = threads;
    m->set_n_ctx(n_ctx);
    return m;
}

void LocalModel::set_n_ctx(int64_t n_ctx) {
    const int64_t trained = model_->config().n_ctx;
    ctx_.reset();
    ctx_ = std::make_unique<Context>(*model_, n_ctx > 0 ? std::min(n_ctx, trained) : trained, threads_);
}

std::unique_ptr<Context> LocalModel::new_context() const {
    return std::make_unique<Context>(*model_, ctx_->n_ctx(), threads_);
}

}  // namespace microlm
