// The plot module's built-in bitmap font: one 5x8 glyph per printable ASCII character (and μ).
// Internal to src/plot; Image::text draws with it.
#pragma once

#include <array>
#include <cstdint>

namespace microlm::plot {

inline constexpr int kGlyphWidth = 5, kGlyphHeight = 8;  // rows 0-6 above the baseline, row 7 below
inline constexpr int kCellWidth = 6;                     // one column of spacing

// Rows of the glyph for codepoint `cp`, top to bottom; bit 4 of each row is the leftmost pixel.
// Dashes and curly quotes map to their ASCII forms; anything else missing is '?'.
const std::array<uint8_t, kGlyphHeight>& glyph(uint32_t cp);

}  // namespace microlm::plot
