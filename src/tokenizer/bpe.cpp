// The Tokenizer and Utf8Streamer, token for token as llama.cpp's llama_vocab: specials cut out
// first, then byte-level BPE (`gpt2`: words from the pre-tokenizer, merges by rank) or
// SentencePiece-style BPE (`llama`: spm.cpp merges by score). Not WordPiece or Unigram
// vocabularies; the word splitting itself is pretokenizer.cpp.
#include "microlm/error.h"
#include "microlm/gguf.h"
#include "microlm/tokenizer.h"
#include "microlm/pretokenizer.h"
#include "microlm/unicode.h"
#include "spm.h"

#include <algorithm>
#include <array>
#include <functional>
#include <optional>
#include <queue>
#include <unordered_map>

namespace microlm {
namespace {

// Lets the hash maps be probed with string_views, so lookups in the merge loop do not allocate.
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

bool is_control_or_unknown(TokenType t) { return t == TokenType::CONTROL || t == TokenType::UNKNOWN; }

TokenType type_from_int(int32_t v) {
    return (v >= 0 && v <= static_cast<int32_t>(TokenType::BYTE)) ? static_cast<TokenType>(v)
                                                                  : TokenType::UNDEFINED;
}

// Token texts llama.cpp recognises by name when the GGUF does not give their ids
// (llama_vocab::impl::load). EOG: end of generation. Such tokens are forced to CONTROL.
constexpr std::array<std::string_view, 13> kEogTexts = {
    "<|eot_id|>",    "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",        "<end_of_turn>",
    "<|endoftext|>", "<|eom_id|>", "<EOT>",   "_<EOT>",     "<|end_of_text|>", "<end_of_utterance>",
    "</s>",  // an end of generation but never the EOT (Gemma's vocabulary has it)
};
// EOT candidates that are not EOG names themselves (DeepSeek's end of sentence).
constexpr std::array<std::string_view, 1> kEotOnlyTexts = {"<｜end▁of▁sentence｜>"};
// Fill-in-the-middle markers: control tokens; the pad/repo/file-separator ones also end generation.
// clang-format off
constexpr std::array<std::string_view, 21> kFimTexts = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>",  "<SUF>", "▁<SUF>", "<|code_suffix|>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>",   "<MID>", "▁<MID>", "<|code_middle|>",
};
// clang-format on
constexpr std::array<std::string_view, 10> kFimEogTexts = {
    "<|fim_pad|>",   "<fim-pad>",  "<fim_pad>", "<PAD>",      "<|fim_repo|>",
    "<|repo_name|>", "<fim-repo>", "<REPO>",    "<reponame>", "<|file_sep|>",
};
// gpt-oss markers that llama.cpp always renders.
constexpr std::array<std::string_view, 4> kAlwaysRendered = {"<|channel|>", "<|message|>", "<|start|>",
                                                             "<|constrain|>"};

template <size_t N>
bool among(const std::array<std::string_view, N>& list, std::string_view s) {
    return std::find(list.begin(), list.end(), s) != list.end();
}

// A symbol of the word being merged: bytes [start, start+len) of the byte-alphabet string,
// linked to its neighbours; len == 0 once merged into its left neighbour.
struct Symbol {
    uint32_t start, len;
    int32_t prev, next;
};

struct Candidate {
    int32_t rank;
    int32_t left;
    uint32_t left_len, right_len;  // to recognise a pair that a later merge made stale
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
};

}  // namespace

struct Tokenizer::Impl {
    VocabData v;
    bool spm = false;                  // a SentencePiece-style vocabulary (model "llama")
    std::array<int32_t, 256> byte_id;  // spm: the <0xXX> token of each byte, -1 if none
    pretok::Spec spec;
    std::vector<TokenType> type;  // after llama.cpp's by-name overrides
    StringMap<int32_t> id_of;
    StringMap<int32_t> merge_rank;   // "left right" -> rank
    std::vector<int32_t> specials;   // matched in text, longest first
    std::vector<std::string> piece;  // bytes of each token as rendered with render_special
    std::vector<bool> eog;

    void check_id(int32_t id) const {
        if (id < 0 || id >= static_cast<int32_t>(v.tokens.size())) {
            throw Error("token id " + std::to_string(id) + " is out of range (the vocabulary has " +
                        std::to_string(v.tokens.size()) + " tokens)");
        }
    }

    std::string render_normal(const std::string& text) const;
    void bpe_word(std::string_view word, std::string& mapped, std::vector<Symbol>& sym,
                  std::vector<int32_t>& out) const;
};

// A NORMAL token's text is byte-alphabet characters; a character outside the alphabet is shown
// the way llama.cpp's llama_decode_text shows it, so that both print the same bytes.
std::string Tokenizer::Impl::render_normal(const std::string& text) const {
    std::string out;
    for (size_t pos = 0; pos < text.size();) {
        const uint32_t cpt = unicode::decode_lenient(text, pos);
        const int byte = unicode::codepoint_to_byte(cpt);
        if (byte >= 0) {
            out.push_back(static_cast<char>(byte));
            continue;
        }
        std::string utf8;
        unicode::append_utf8(utf8, cpt);
        out += "[UNK_BYTE_0x";
        static const char* hex = "0123456789abcdef";
        for (const unsigned char c : utf8) {
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
        out += text + "]";
    }
    return out;
}

void Tokenizer::Impl::bpe_word(std::string_view word, std::string& mapped, std::vector<Symbol>& sym,
                               std::vector<int32_t>& out) const {
    mapped.clear();
    for (const char c : word) mapped += unicode::byte_to_utf8(static_cast<uint8_t>(c));

    if (spec.ignore_merges) {
        if (auto it = id_of.find(std::string_view(mapped)); it != id_of.end()) {
            out.push_back(it->second);
            return;
        }
    }

    // One symbol per byte-alphabet character (one or two UTF-8 bytes).
    sym.clear();
    for (uint32_t pos = 0; pos < mapped.size();) {
        const uint32_t len = (static_cast<unsigned char>(mapped[pos]) >= 0xC0) ? 2 : 1;
        const auto n = static_cast<int32_t>(sym.size());
        sym.push_back({pos, len, n - 1, -1});
        if (n > 0) sym[n - 1].next = n;
        pos += len;
    }

    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    std::string key;
    const auto consider = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        key.assign(mapped, sym[l].start, sym[l].len);
        key += ' ';
        key.append(mapped, sym[r].start, sym[r].len);
        if (auto it = merge_rank.find(std::string_view(key)); it != merge_rank.end()) {
            queue.push({it->second, l, sym[l].len, sym[r].len});
        }
    };
    for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) consider(i - 1, i);

    while (!queue.empty()) {
        const Candidate c = queue.top();
        queue.pop();
        Symbol& left = sym[c.left];
        if (left.len != c.left_len || left.next < 0) continue;
        Symbol& right = sym[left.next];
        if (right.len != c.right_len) continue;
        left.len += right.len;
        right.len = 0;
        left.next = right.next;
        if (left.next >= 0) sym[left.next].prev = c.left;
        consider(left.prev, c.left);
        consider(c.left, left.next);
    }

    for (const Symbol& s : sym) {
        if (s.len == 0) continue;
        const std::string_view text(mapped.data() + s.start, s.len);
        if (auto it = id_of.find(text); it != id_of.end()) {
            out.push_back(it->second);
            continue;
        }
        // llama.cpp's fallback for a merge result missing from the vocabulary: each byte of the
        // alphabet string on its own, dropped when that is not a token either.
        for (const char ch : text) {
            if (auto it = id_of.find(std::string_view(&ch, 1)); it != id_of.end()) out.push_back(it->second);
        }
    }
}

Tokenizer::Tokenizer(VocabData vocab) : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    m.v = std::move(vocab);
    VocabData& v = m.v;
    if (v.model != "gpt2" && v.model != "llama") {
        throw Error("tokenizer model is '" + v.model + "', which microlm cannot run (supported: gpt2, llama)");
    }
    m.spm = v.model == "llama";
    if (!m.spm) m.spec = pretok::spec_for(v.pre);
    m.spec.clean_spaces = m.spec.clean_spaces && !m.spm;
    const size_t n = v.tokens.size();
    if (n == 0) throw Error("the tokenizer has no tokens");
    if (m.spm && v.scores.size() != n) {
        throw Error("the tokenizer has " + std::to_string(n) + " tokens but " + std::to_string(v.scores.size()) +
                    " scores");
    }
    if (n > static_cast<size_t>(INT32_MAX)) throw Error("the tokenizer has too many tokens");
    if (!v.token_types.empty() && v.token_types.size() != n) {
        throw Error("the tokenizer has " + std::to_string(n) + " tokens but " +
                    std::to_string(v.token_types.size()) + " token types");
    }
    const std::pair<const char*, int32_t> ids[] = {{"bos", v.bos_id},
                                                   {"eos", v.eos_id},
                                                   {"eot", v.eot_id},
                                                   {"padding", v.pad_id},
                                                   {"unknown", v.unk_id}};
    for (const auto& [name, id] : ids) {
        if (id < -1 || id >= static_cast<int32_t>(n)) {
            throw Error(std::string(name) + " token id " + std::to_string(id) +
                        " is out of range (the vocabulary has " + std::to_string(n) + " tokens)");
        }
    }
    if (v.add_bos && v.bos_id < 0) throw Error("the tokenizer adds a BOS token but has no BOS id");
    if (v.add_eos && v.eos_id < 0) throw Error("the tokenizer adds an EOS token but has no EOS id");

    m.type.resize(n, TokenType::NORMAL);
    m.id_of.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        if (!v.token_types.empty()) m.type[i] = type_from_int(v.token_types[i]);
        // llama.cpp renames empty tokens so that every text is distinct and matchable.
        if (v.tokens[i].empty()) v.tokens[i] = "[EMPTY_" + std::to_string(i) + "]";
        const auto [it, fresh] = m.id_of.emplace(v.tokens[i], static_cast<int32_t>(i));
        if (!fresh) {
            throw Error("token text '" + v.tokens[i] + "' appears twice (ids " + std::to_string(it->second) +
                        " and " + std::to_string(i) + ")");
        }
    }

    m.merge_rank.reserve(v.merges.size());
    for (size_t i = 0; i < v.merges.size(); ++i) {
        // llama.cpp splits at the first space after the first byte and keeps the first rank
        // of a repeated pair; a merge without a separator can never match.
        const std::string& mg = v.merges[i];
        if (mg.size() < 3 || mg.find(' ', 1) == std::string::npos) continue;
        m.merge_rank.emplace(mg, static_cast<int32_t>(i));
    }

    // End-of-generation set and type overrides, in llama.cpp's order.
    // When the GGUF names no EOT token, the first EOT-looking one is it (llama.cpp takes the
    // first in hash order; the ids with such names are all end-of-generation anyway).
    m.eog.assign(n, false);
    int32_t eot = v.eot_id;
    for (size_t i = 0; i < n; ++i) {
        const std::string& t = v.tokens[i];
        const bool eog_name = among(kEogTexts, t) || among(kFimEogTexts, t);
        const bool eot_name = (among(kEogTexts, t) || among(kEotOnlyTexts, t)) && t != "<|return|>" &&
                              t != "<|call|>" && t != "<|eom_id|>" && t != "</s>";
        const bool becomes_eot = eot < 0 && eot_name;
        if (becomes_eot) eot = static_cast<int32_t>(i);
        if (eog_name || becomes_eot || among(kFimTexts, t)) m.type[i] = TokenType::CONTROL;
        if (eog_name) m.eog[i] = true;
    }
    for (size_t i = 0; i < n; ++i) {
        if (among(kAlwaysRendered, v.tokens[i])) m.type[i] = TokenType::USER_DEFINED;
    }
    if (v.eos_id >= 0) m.eog[v.eos_id] = true;
    if (eot >= 0) m.eog[eot] = true;
    {
        // gpt-oss (harmony) ends turns with <|return|> or <|call|>; there <|end|> is not an end.
        int32_t end_id = -1;
        bool has_return = false, has_call = false;
        for (size_t i = 0; i < n; ++i) {
            if (!m.eog[i]) continue;
            has_return |= v.tokens[i] == "<|return|>";
            has_call |= v.tokens[i] == "<|call|>";
            if (v.tokens[i] == "<|end|>") end_id = static_cast<int32_t>(i);
        }
        if (has_return && has_call && end_id >= 0) {
            m.eog[end_id] = false;
            m.type[end_id] = TokenType::USER_DEFINED;
        }
    }

    for (size_t i = 0; i < n; ++i) {
        const TokenType t = m.type[i];
        if (t == TokenType::CONTROL || t == TokenType::USER_DEFINED || t == TokenType::UNKNOWN) {
            m.specials.push_back(static_cast<int32_t>(i));
        }
    }
    std::stable_sort(m.specials.begin(), m.specials.end(),
                     [&](int32_t a, int32_t b) { return v.tokens[a].size() > v.tokens[b].size(); });

    m.byte_id.fill(-1);
    m.piece.resize(n);
    for (size_t i = 0; i < n; ++i) {
        switch (m.type[i]) {
            case TokenType::CONTROL:
            case TokenType::UNKNOWN:
            case TokenType::USER_DEFINED: m.piece[i] = v.tokens[i]; break;
            case TokenType::NORMAL:
                m.piece[i] = m.spm ? spm::unescape_spaces(v.tokens[i]) : m.render_normal(v.tokens[i]);
                break;
            case TokenType::BYTE: {
                // SentencePiece byte tokens are "<0xXX>"; a byte-level BPE renders them as nothing.
                const std::string& t = v.tokens[i];
                if (!m.spm || t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') break;
                const int b = std::stoi(t.substr(3, 2), nullptr, 16);
                m.piece[i] = std::string(1, static_cast<char>(b));
                if (m.byte_id[static_cast<size_t>(b)] < 0) m.byte_id[static_cast<size_t>(b)] = static_cast<int32_t>(i);
                break;
            }
            default: break;  // UNUSED, UNDEFINED render as nothing
        }
    }
    if (m.spm) {
        // llama.cpp falls back to the byte as a one-character token when <0xXX> is missing.
        for (int b = 0; b < 256; ++b) {
            if (m.byte_id[static_cast<size_t>(b)] >= 0) continue;
            if (auto it = m.id_of.find(std::string(1, static_cast<char>(b))); it != m.id_of.end())
                m.byte_id[static_cast<size_t>(b)] = it->second;
        }
    }
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    const Impl& m = *impl_;
    // Fragments of the text: raw byte ranges or special tokens. Each special token, longest
    // first, is cut out of every raw fragment left so far (llama.cpp's tokenizer_st_partition).
    struct Fragment {
        int32_t token;  // -1: raw text [off, off + len)
        size_t off, len;
    };
    std::vector<Fragment> frags, next;
    if (!text.empty()) frags.push_back({-1, 0, text.size()});
    for (const int32_t id : m.specials) {
        if (!parse_special && is_control_or_unknown(m.type[id])) continue;
        const std::string& st = m.v.tokens[id];
        if (text.find(st) == std::string_view::npos) continue;
        next.clear();
        for (const Fragment& f : frags) {
            if (f.token >= 0) {
                next.push_back(f);
                continue;
            }
            size_t off = f.off;
            const size_t end = f.off + f.len;
            for (;;) {
                const size_t at = text.substr(0, end).find(st, off);
                if (at == std::string_view::npos) {
                    if (end > off) next.push_back({-1, off, end - off});
                    break;
                }
                if (at > off) next.push_back({-1, off, at - off});
                next.push_back({id, 0, 0});
                off = at + st.size();
            }
        }
        frags.swap(next);
    }

    std::vector<int32_t> out;
    if (add_special && m.v.add_bos) out.push_back(m.v.bos_id);
    std::string mapped;
    std::vector<Symbol> sym;
    bool prev_special = true;  // spm: a space prefix goes before text that starts the input or follows a special
    const auto id_of = [&m](std::string_view t) {
        const auto it = m.id_of.find(t);
        return it == m.id_of.end() ? int32_t{-1} : it->second;
    };
    for (const Fragment& f : frags) {
        if (f.token >= 0) {
            out.push_back(f.token);
            prev_special = true;
            continue;
        }
        if (m.spm) {
            std::string raw = m.v.add_space_prefix && prev_special ? " " : "";
            raw += text.substr(f.off, f.len);
            spm::segment(spm::escape_spaces(raw), id_of, m.v.scores, m.byte_id, out);
            prev_special = false;
            continue;
        }
        for (const std::string& word : pretok::split(m.spec.kind, text.substr(f.off, f.len))) {
            m.bpe_word(word, mapped, sym, out);
        }
    }
    if (add_special && m.v.add_eos) out.push_back(m.v.eos_id);
    return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
    const Impl& m = *impl_;
    m.check_id(id);
    if (!render_special && is_control_or_unknown(m.type[id])) return {};
    return m.piece[id];
}

// llama_detokenize(remove_special = false): pieces joined, one leading space dropped when the
// vocabulary adds a space prefix, then (for most pre-tokenizers) clean_up_tokenization_spaces.
std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
    const Impl& m = *impl_;
    std::string s;
    bool strip_space = m.v.add_space_prefix;
    for (const int32_t id : ids) {
        std::string p = token_to_piece(id, render_special);
        if (strip_space && !p.empty() && p[0] == ' ') p.erase(0, 1);
        strip_space = false;
        s += p;
    }
    if (!m.spec.clean_spaces || s.size() < 2) return s;

    // 1. " ?", " !", " .", " ," lose the space.
    std::string a(1, s[0]);
    for (size_t i = 1; i < s.size(); ++i) {
        const char x = s[i];
        if (s[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) a.pop_back();
        a.push_back(x);
    }
    // 2. " ' " becomes "'".
    std::string b(1, a[0]);
    for (size_t i = 1; i < a.size(); ++i) {
        const char x = a[i];
        if (x == '\'' && i + 1 < a.size() && a[i - 1] == ' ' && a[i + 1] == ' ') {
            b.pop_back();
            b.push_back(x);
            a[i + 1] = '\0';  // llama.cpp blanks the following space in place and skips it
            ++i;
            continue;
        }
        b.push_back(x);
    }
    // 3. " 's", " 'm", " 're", " 've" lose the space (" 't", " 'd", " 'll" keep it).
    std::string c(1, b[0]);
    for (size_t i = 1; i < b.size(); ++i) {
        const char x = b[i];
        if (b[i - 1] == ' ' && x == '\'' && i + 1 < b.size()) {
            const char x1 = b[i + 1];
            if (x1 == 's' || x1 == 'm') {
                c.pop_back();
            } else if (x1 != 't' && x1 != 'd' && i + 2 < b.size()) {
                const char x2 = b[i + 2];
                if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) c.pop_back();
            }
        }
        c.push_back(x);
    }
    return c;
}

int32_t Tokenizer::n_vocab() const { return static_cast<int32_t>(impl_->v.tokens.size()); }
int32_t Tokenizer::bos_id() const { return impl_->v.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->v.eos_id; }

bool Tokenizer::is_end_of_generation(int32_t id) const { return id >= 0 && id < n_vocab() && impl_->eog[id]; }

int32_t Tokenizer::token_id(std::string_view text) const {
    const auto it = impl_->id_of.find(text);
    return it == impl_->id_of.end() ? -1 : it->second;
}

const VocabData& Tokenizer::vocab() const { return impl_->v; }

// Holds back an incomplete trailing sequence; anything that can never become valid UTF-8
// (stray continuation bytes, overlong forms, surrogates, > U+10FFFF) is replaced by U+FFFD per
// maximal invalid subpart, as Python's errors="replace" does.
namespace {

constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

// Consumes valid UTF-8 and invalid subparts from s[pos...]; stops before an incomplete but so
// far valid sequence at the end unless `at_end`, where that becomes one U+FFFD.
size_t consume_utf8(std::string_view s, std::string& out, bool at_end) {
    size_t pos = 0;
    while (pos < s.size()) {
        const auto b0 = static_cast<unsigned char>(s[pos]);
        size_t len = 0;
        unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        if (b0 < 0x80) {
            out.push_back(static_cast<char>(b0));
            ++pos;
            continue;
        } else if (b0 >= 0xC2 && b0 <= 0xDF) {
            len = 2;
        } else if (b0 >= 0xE0 && b0 <= 0xEF) {
            len = 3;
            if (b0 == 0xE0) lo = 0xA0;
            if (b0 == 0xED) hi = 0x9F;
        } else if (b0 >= 0xF0 && b0 <= 0xF4) {
            len = 4;
            if (b0 == 0xF0) lo = 0x90;
            if (b0 == 0xF4) hi = 0x8F;
        } else {
            out += kReplacementUtf8;
            ++pos;
            continue;
        }
        size_t k = 1;
        for (; k < len && pos + k < s.size(); ++k) {
            const auto c = static_cast<unsigned char>(s[pos + k]);
            const bool ok = (k == 1) ? (c >= lo && c <= hi) : ((c & 0xC0) == 0x80);
            if (!ok) break;
        }
        if (k == len) {
            out.append(s.substr(pos, len));
            pos += len;
        } else if (pos + k == s.size() && !at_end) {
            break;  // incomplete, may still be completed by the next push
        } else {
            out += kReplacementUtf8;
            pos += k;
        }
    }
    return pos;
}

}  // namespace

std::string Utf8Streamer::push(std::string_view bytes) {
    pending_.append(bytes);
    std::string out;
    const size_t used = consume_utf8(pending_, out, false);
    pending_.erase(0, used);
    return out;
}

std::string Utf8Streamer::flush() {
    std::string out;
    consume_utf8(pending_, out, true);
    pending_.clear();
    return out;
}

}  // namespace microlm
