// The raster the charts draw on: pixels, filled rectangles, thick straight lines and text in
// the built-in font (horizontal, or turned to read upwards for a y-axis label). No blending,
// no anti-aliasing: charts are drawn in a handful of flat colours, which also keeps PNGs small.
#include <algorithm>
#include <cmath>

#include "microlm/error.h"
#include "microlm/plot.h"
#include "font.h"
#include "microlm/unicode.h"

namespace microlm::plot {

Color palette(size_t i) {
    // Ten hues that stay apart on white and for the common colour-vision deficiencies.
    static constexpr Color kColors[] = {{31, 119, 180},  {255, 127, 14}, {44, 160, 44},   {214, 39, 40},
                                        {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {127, 127, 127},
                                        {188, 189, 34},  {23, 190, 207}};
    return kColors[i % (sizeof(kColors) / sizeof(kColors[0]))];
}

Image::Image(int width, int height, Color fill) : width_(width), height_(height) {
    if (width < 1 || height < 1 || width > 16384 || height > 16384) {
        throw Error("plot: image size " + std::to_string(width) + "x" + std::to_string(height) +
                    " is out of range (1..16384 on each side)");
    }
    rgb_.resize(static_cast<size_t>(width) * static_cast<size_t>(height) * 3);
    for (size_t i = 0; i < rgb_.size(); i += 3) {
        rgb_[i] = fill.r;
        rgb_[i + 1] = fill.g;
        rgb_[i + 2] = fill.b;
    }
}

Color Image::at(int x, int y) const {
    if (x < 0 || y < 0 || x >= width_ || y >= height_) return kWhite;
    const size_t i = (static_cast<size_t>(y) * static_cast<size_t>(width_) + static_cast<size_t>(x)) * 3;
    return {rgb_[i], rgb_[i + 1], rgb_[i + 2]};
}

void Image::set(int x, int y, Color c) {
    if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
    const size_t i = (static_cast<size_t>(y) * static_cast<size_t>(width_) + static_cast<size_t>(x)) * 3;
    rgb_[i] = c.r;
    rgb_[i + 1] = c.g;
    rgb_[i + 2] = c.b;
}

void Image::fill_rect(int x0, int y0, int x1, int y1, Color c) {
    if (x0 > x1) std::swap(x0, x1);
    if (y0 > y1) std::swap(y0, y1);
    x0 = std::max(x0, 0);
    y0 = std::max(y0, 0);
    x1 = std::min(x1, width_ - 1);
    y1 = std::min(y1, height_ - 1);
    for (int y = y0; y <= y1; ++y)
        for (int x = x0; x <= x1; ++x) set(x, y, c);
}

void Image::line(double x0, double y0, double x1, double y1, Color c, int thickness) {
    if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
    // Far-off endpoints would make the step count explode; nothing beyond the image is drawn anyway.
    const double lim = 4.0 * std::max(width_, height_);
    if (std::abs(x0) > lim || std::abs(y0) > lim || std::abs(x1) > lim || std::abs(y1) > lim) return;
    const int t = std::max(thickness, 1);
    const int lo = -(t - 1) / 2, hi = t / 2;  // the square stamped at each step
    const int steps = static_cast<int>(std::ceil(std::max(std::abs(x1 - x0), std::abs(y1 - y0))));
    for (int s = 0; s <= steps; ++s) {
        const double f = steps == 0 ? 0.0 : static_cast<double>(s) / steps;
        const int x = static_cast<int>(std::lround(x0 + (x1 - x0) * f));
        const int y = static_cast<int>(std::lround(y0 + (y1 - y0) * f));
        for (int dy = lo; dy <= hi; ++dy)
            for (int dx = lo; dx <= hi; ++dx) set(x + dx, y + dy, c);
    }
}

void Image::text(int x, int y, std::string_view utf8, Color c, int scale, bool vertical) {
    scale = std::max(scale, 1);
    int pen = 0;  // along the text direction, in pixels
    for (size_t pos = 0; pos < utf8.size();) {
        const uint32_t cp = unicode::decode_lenient(utf8, pos);
        const auto& rows = glyph(cp);
        for (int r = 0; r < kGlyphHeight; ++r) {
            for (int col = 0; col < kGlyphWidth; ++col) {
                if (!(rows[static_cast<size_t>(r)] >> (kGlyphWidth - 1 - col) & 1u)) continue;
                const int gx = pen + col * scale, gy = r * scale;
                if (vertical) {
                    // Turned 90 degrees counter-clockwise: the glyph's x runs up, its y runs right.
                    fill_rect(x + gy, y - gx - scale + 1, x + gy + scale - 1, y - gx, c);
                } else {
                    fill_rect(x + gx, y + gy, x + gx + scale - 1, y + gy + scale - 1, c);
                }
            }
        }
        pen += kCellWidth * scale;
    }
}

int text_width(std::string_view utf8, int scale) {
    int n = 0;
    for (size_t pos = 0; pos < utf8.size(); ++n) unicode::decode_lenient(utf8, pos);
    return n == 0 ? 0 : (n * kCellWidth - 1) * std::max(scale, 1);
}

int text_height(int scale) {
    return kGlyphHeight * std::max(scale, 1);
}

}  // namespace microlm::plot
