// The openers every model is compared with: the oracle (a reference's own first words), and
// retrieval (the opener of the most similar training prompt, TF-IDF cosine over bags of words,
// from training corpora read with the training hold-outs). The constant opener is in eval.h.
// SmolLM2 as an opener generator is not here: it is just another model (suite_openers.cpp).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <unordered_map>

#include "microlm/data.h"
#include "microlm/error.h"
#include "microlm/eval.h"

namespace microlm::eval {
namespace {

std::string start_key(const std::vector<std::string>& words, size_t k) {
    std::string key;
    for (size_t i = 0; i < k && i < words.size(); ++i) {
        key += words[i];
        key += '\x1f';
    }
    return key;
}

// Index of the opener whose first three words are the most common start (earliest on a tie),
// among openers of at least three words; -1 when there is none.
int64_t most_common_start(const std::vector<std::string>& openers) {
    std::vector<std::string> keys(openers.size());
    std::unordered_map<std::string, size_t> count;
    for (size_t i = 0; i < openers.size(); ++i) {
        const std::vector<std::string> w = normalize_words(openers[i]);
        if (w.size() < 3) continue;
        keys[i] = start_key(w, 3);
        ++count[keys[i]];
    }
    int64_t best = -1;
    size_t best_count = 0;
    for (size_t i = 0; i < openers.size(); ++i) {
        if (keys[i].empty()) continue;
        if (count[keys[i]] > best_count) {
            best_count = count[keys[i]];
            best = static_cast<int64_t>(i);
        }
    }
    return best;
}

}  // namespace

std::string oracle_opener(const std::vector<std::string>& references) {
    std::vector<std::string> cuts;
    cuts.reserve(references.size());
    for (const std::string& r : references) cuts.push_back(cut_opener(r));
    const int64_t best = most_common_start(cuts);
    if (best >= 0) return cuts[static_cast<size_t>(best)];
    // No reference of three words: the first that has any word.
    for (const std::string& c : cuts)
        if (!normalize_words(c).empty()) return c;
    return "";
}

// ---- RetrievalIndex ----------------------------------------------------------------------------

void RetrievalIndex::add(std::string_view prompt, std::string opener) {
    std::map<uint32_t, double> tf;
    for (const std::string& w : normalize_words(prompt)) {
        auto it = terms_.find(w);
        if (it == terms_.end()) {
            it = terms_.emplace(w, static_cast<uint32_t>(df_.size())).first;
            df_.push_back(0);
        }
        tf[it->second] += 1;
    }
    for (const auto& [t, n] : tf) ++df_[t];
    docs_.push_back(std::move(tf));
    openers_.push_back(std::move(opener));
}

// Weights 1 + ln(tf) times idf = ln((N + 1) / (df + 1)) + 1: words every prompt shares ("what",
// "the") count for little, which plain counts would not achieve.
void RetrievalIndex::finalize() {
    const double n = static_cast<double>(docs_.size());
    postings_.assign(df_.size(), {});
    norms_.assign(docs_.size(), 0.0);
    for (size_t d = 0; d < docs_.size(); ++d) {
        double norm = 0;
        for (auto& [t, w] : docs_[d]) {
            w = (1 + std::log(w)) * (std::log((n + 1) / (df_[t] + 1.0)) + 1);
            norm += w * w;
        }
        norms_[d] = std::sqrt(norm);
        for (const auto& [t, w] : docs_[d]) postings_[t].push_back({static_cast<uint32_t>(d), w});
    }
    const int64_t fb = most_common_start(openers_);
    fallback_ = fb >= 0 ? static_cast<size_t>(fb) : 0;
}

int64_t RetrievalIndex::best(std::string_view query) const {
    if (docs_.empty()) return -1;
    if (postings_.size() != df_.size()) throw Error("eval: RetrievalIndex::finalize() was not called");
    std::map<uint32_t, double> q;
    for (const std::string& w : normalize_words(query)) {
        const auto it = terms_.find(w);
        if (it != terms_.end()) q[it->second] += 1;
    }
    const double n = static_cast<double>(docs_.size());
    std::vector<double> score(docs_.size(), 0.0);
    for (const auto& [t, c] : q) {
        const double qw = (1 + std::log(c)) * (std::log((n + 1) / (df_[t] + 1.0)) + 1);
        for (const auto& [d, w] : postings_[t]) score[d] += qw * w;
    }
    int64_t best = -1;
    double best_score = 0;
    for (size_t d = 0; d < score.size(); ++d) {
        if (norms_[d] <= 0) continue;
        const double s = score[d] / norms_[d];  // the query's norm is the same for every document
        if (s > best_score) {
            best_score = s;
            best = static_cast<int64_t>(d);
        }
    }
    return best;
}

const std::string& RetrievalIndex::opener_for(std::string_view query) const {
    static const std::string kEmpty;
    if (openers_.empty()) return kEmpty;
    const int64_t b = best(query);
    return openers_[b >= 0 ? static_cast<size_t>(b) : fallback_];
}

std::vector<std::string> default_retrieval_corpora(const std::string& data_dir) {
    std::vector<std::string> out;
    for (const char* f :
         {"alpaca_eval_outputs.jsonl.zst", "gpteacher_roleplay.json.zst", "gpteacher_toolformer.json.zst",
          "hh_rlhf_harmless_base_test.jsonl.gz", "sgd_dialogues.jsonl.zst", "sharegpt.jsonl.zst",
          "chitchat.jsonl.zst", "gsm8k.jsonl.zst", "instructlab.jsonl.zst", "gpteacher_codegen.jsonl.zst",
          "alpaca_subsets.jsonl.zst"}) {
        const std::string p = data_dir + "/chat/" + f;
        if (std::filesystem::exists(p)) out.push_back(p);
    }
    return out;
}

RetrievalIndex build_retrieval_index(const std::vector<std::string>& corpus_files,
                                     const std::string& eval_dir,
                                     const std::vector<std::string>& extra_held_out, RetrievalStats* stats,
                                     const ProgressFn& progress) {
    data::HoldOut hold_out = data::HoldOut::from_eval_dir(eval_dir);
    for (const std::string& q : extra_held_out) hold_out.add_question(q);
    // A group (an AlpacaEval prompt) has many answers, scattered through its file: collect the
    // openers cut from them, in file order, then keep their most common start.
    struct Group {
        std::string prompt;
        std::vector<std::string> openers;
    };
    std::vector<Group> groups;
    std::unordered_map<std::string, size_t> group_of;
    size_t answers = 0;
    for (size_t f = 0; f < corpus_files.size(); ++f) {
        if (progress) progress("retrieval index", f, corpus_files.size());
        data::DocumentReader reader(corpus_files[f], hold_out);
        data::Document doc;
        while (reader.next(doc)) {
            const auto user =
                std::find_if(doc.messages.begin(), doc.messages.end(),
                             [](const ChatMessage& m) { return m.role == "user" && !m.content.empty(); });
            if (user == doc.messages.end()) continue;
            const auto reply = std::find_if(user + 1, doc.messages.end(), [](const ChatMessage& m) {
                return m.role == "assistant" && !m.content.empty();
            });
            if (reply == doc.messages.end()) continue;
            const std::string key = corpus_files[f] + "\x1f" + doc.group;
            auto [it, fresh] = group_of.emplace(key, groups.size());
            if (fresh) groups.push_back({user->content, {}});
            groups[it->second].openers.push_back(cut_opener(reply->content));
            ++answers;
        }
    }
    if (progress) progress("retrieval index", corpus_files.size(), corpus_files.size());
    RetrievalIndex index;
    for (Group& g : groups) {
        std::string opener = oracle_opener(g.openers);
        if (!opener.empty()) index.add(g.prompt, std::move(opener));
    }
    index.finalize();
    if (stats) {
        stats->prompts = index.size();
        stats->answers = answers;
    }
    return index;
}

}  // namespace microlm::eval
