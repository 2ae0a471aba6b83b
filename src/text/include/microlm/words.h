// Words and clauses of streamed text: word assembly from token pieces, where a clause or a
// sentence ends, what breaks a line. One set of rules, shared by the opener (when to stop), the
// stitcher (the seam) and the turn (the local close). Unicode-aware; no model, no network.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace microlm {

// One finished word as the assembler sees it.
struct Word {
    std::string text;          // the word's characters (punctuation attached), valid UTF-8, no whitespace
    std::string space_before;  // the whitespace that preceded it in the model's text (may be "")
    bool counts = false;       // holds a letter or digit; pure punctuation ("—", "**") does not count
    bool clause_end = false;   // ends in , ; : . ! ? (closing quotes aside), is a dash, or ends a line
};

// Turns decoded token pieces (raw bytes, any split) into whole words. A word is complete when
// whitespace follows it, when end of turn is reached (finish), or, for Chinese and Japanese
// text, which has no spaces, when the next ideograph or kana begins. Bytes of a character split
// across pieces are held until the character is complete, so a word is never cut inside one.
class WordAssembler {
public:
    // The words this piece completed, in order (usually none or one).
    std::vector<Word> push(std::string_view piece);
    // End of turn: the word in progress, if any, is complete.
    std::optional<Word> finish();
    // True while characters of an unfinished word are held.
    bool has_partial_word() const { return !word_.empty() || !held_.empty(); }

private:
    void complete(std::vector<Word>& out, bool newline_follows);

    std::string held_;          // the first bytes of a character split across pieces
    std::string word_;          // the word in progress
    std::string space_;         // whitespace seen since the last word
    bool word_is_cjk_ = false;  // the word in progress holds an ideograph or kana
};

// True for a word (as WordAssembler makes them) that ends a clause: it ends in , ; : . ! ? and
// their CJK forms (closing quotes and brackets aside) but is no abbreviation ("Dr.") or list
// number ("2."), or it is a dash, or `newline_follows` (the whitespace after it breaks the line).
bool word_ends_clause(std::string_view word, bool newline_follows);

// The text's last word ends a sentence: it ends with . ! ? (or 。！？), closing quotes and
// brackets aside, and is no abbreviation or list number.
bool ends_sentence(std::string_view text);

// \n \r VT FF NEL, U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR.
bool is_line_break(uint32_t c);

}  // namespace microlm
