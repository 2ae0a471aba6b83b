// Cutting a byte-level BPE vocabulary to its first n tokens (tokenizer.h, keep_first_tokens):
// the tokens, their types and the merges that only join and make kept tokens. A BPE trainer
// numbers tokens in the order its merges made them, so the first n are its most frequent pieces,
// and a merge list cut this way still encodes every text (into more, shorter tokens).
#include <string>
#include <unordered_set>

#include "microlm/error.h"
#include "microlm/tokenizer.h"

namespace microlm {

VocabData keep_first_tokens(const VocabData& v, int32_t n) {
    if (v.model != "gpt2") {
        throw Error("keep_first_tokens: only byte-level BPE (gpt2) vocabularies can be cut, this one is " + v.model);
    }
    const int32_t total = static_cast<int32_t>(v.tokens.size());
    if (n <= 0 || n > total) {
        throw Error("keep_first_tokens: " + std::to_string(n) + " tokens asked, the vocabulary has " +
                    std::to_string(total));
    }
    const std::pair<const char*, int32_t> ids[] = {
        {"bos", v.bos_id}, {"eos", v.eos_id}, {"eot", v.eot_id}, {"padding", v.pad_id}, {"unknown", v.unk_id}};
    for (const auto& [what, id] : ids) {
        if (id >= n) {
            throw Error("keep_first_tokens: the " + std::string(what) + " token is id " + std::to_string(id) +
                        ", past the first " + std::to_string(n));
        }
    }
    VocabData out = v;
    out.tokens.assign(v.tokens.begin(), v.tokens.begin() + n);
    if (!v.token_types.empty()) out.token_types.assign(v.token_types.begin(), v.token_types.begin() + n);
    const std::unordered_set<std::string> kept(out.tokens.begin(), out.tokens.end());
    out.merges.clear();
    std::unordered_set<std::string> made;  // what the kept merges make
    for (const std::string& m : v.merges) {
        const size_t space = m.find(' ');
        if (space == std::string::npos) throw Error("keep_first_tokens: merge '" + m + "' has no space");
        const std::string left = m.substr(0, space), right = m.substr(space + 1);
        if (kept.count(left) && kept.count(right) && kept.count(left + right)) {
            out.merges.push_back(m);
            made.insert(left + right);
        }
    }
    // Every kept piece longer than one byte-character must still be reachable, or the cut
    // vocabulary would hold tokens no text encodes to.
    int32_t unreachable = 0;
    for (int32_t i = 0; i < n; ++i) {
        const bool plain = out.token_types.empty() || out.token_types[i] == static_cast<int32_t>(TokenType::NORMAL);
        const std::string& t = out.tokens[i];
        const bool one_char = !t.empty() && t.size() <= 2 && (t.size() == 1 || (static_cast<unsigned char>(t[0]) & 0xE0) == 0xC0);
        if (plain && !one_char && !made.count(t)) ++unreachable;
    }
    if (unreachable > 0) {
        throw Error("keep_first_tokens: " + std::to_string(unreachable) + " of the first " + std::to_string(n) +
                    " tokens are made by merges of later tokens (the vocabulary is not in merge order)");
    }
    return out;
}

}  // namespace microlm
