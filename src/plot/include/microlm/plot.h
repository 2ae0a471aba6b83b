// Charts as PNG files with no dependency: an RGB raster with lines, rectangles and text in a
// built-in bitmap font, line charts of named (x, y) series (linear or log axes) and grouped bar
// charts, and a PNG encoder with its own deflate. Not a general plotting library: no styling
// beyond what reports and training curves need, no anti-aliasing, ASCII text (plus μ).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace microlm::plot {

struct Color {
    uint8_t r = 0, g = 0, b = 0;
    bool operator==(const Color&) const = default;
};

inline constexpr Color kWhite{255, 255, 255};
inline constexpr Color kBlack{0, 0, 0};

// The i-th colour of the series palette (ten distinct hues, then repeating).
Color palette(size_t i);

// An RGB raster, 3 bytes per pixel, rows top to bottom. Drawing outside it is ignored.
class Image {
public:
    Image(int width, int height, Color fill = kWhite);  // throws microlm::Error on a bad size

    int width() const { return width_; }
    int height() const { return height_; }
    Color at(int x, int y) const;  // kWhite outside the image
    void set(int x, int y, Color c);
    const std::vector<uint8_t>& rgb() const { return rgb_; }

    void fill_rect(int x0, int y0, int x1, int y1, Color c);  // inclusive corners, any order
    // A straight line `thickness` pixels wide between two points (pixel centres).
    void line(double x0, double y0, double x1, double y1, Color c, int thickness = 1);
    // Text in the built-in 5x8 font; (x, y) is the top-left of the first character cell, each
    // cell 6*scale wide and 8*scale high. `vertical`: rotated to read bottom to top, starting
    // at (x, y) as the bottom-left. Characters the font lacks are drawn as '?'.
    void text(int x, int y, std::string_view utf8, Color c, int scale = 1, bool vertical = false);

private:
    int width_, height_;
    std::vector<uint8_t> rgb_;
};

// Width and height in pixels of `utf8` drawn horizontally at `scale`.
int text_width(std::string_view utf8, int scale = 1);
int text_height(int scale = 1);

// ---- PNG ------------------------------------------------------------------------------------

// 8-bit RGB PNG (IHDR, one IDAT with a zlib stream of fixed-Huffman deflate blocks, IEND).
std::vector<uint8_t> encode_png(const Image& img);
// Writes encode_png(img) to `path` through a temporary file renamed over it, so a reader never
// sees half a file; throws microlm::Error naming the path when writing fails.
void write_png(const std::string& path, const Image& img);

// ---- Charts ---------------------------------------------------------------------------------

struct Series {
    std::string name;
    std::vector<double> x,
        y;  // same length; points with a non-finite coordinate (or <= 0 on a log axis) break the line
    std::optional<Color> color;  // default: palette(index of the series)
    bool markers = false;        // a small square at each point
};

struct LineChart {
    std::string title, x_label, y_label;
    std::vector<Series> series;
    bool log_x = false, log_y = false;
    // Axis ranges; unset ends are fitted to the data and widened to round tick values.
    std::optional<double> x_min, x_max, y_min, y_max;
    int width = 800, height = 480;
};

struct BarSeries {
    std::string name;
    std::vector<double> values;  // one per group; NaN: no bar
    std::optional<Color> color;
};

// Groups side by side along x, one bar per series in each group, a legend of the series.
struct BarChart {
    std::string title, y_label;
    std::vector<std::string> groups;
    std::vector<BarSeries> series;
    std::optional<double> y_min, y_max;  // unset: from min(0, data) to max(0, data), rounded out
    bool value_labels = true;            // print each bar's value above (or below) it
    int width = 800, height = 480;
};

// Where a chart puts its data: the plot area in pixels (inclusive) and the axis ranges it
// settled on. Exposed so that tests (and callers who annotate) can find a value's pixel.
struct Frame {
    int left = 0, top = 0, right = 0, bottom = 0;
    double x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
    bool log_x = false, log_y = false;
    double px(double x) const;  // pixel column of data x
    double py(double y) const;  // pixel row of data y
};

Frame line_chart_frame(const LineChart& chart);
Frame bar_chart_frame(const BarChart& chart);  // x in group units: group i spans [i, i + 1)
Image render_line_chart(const LineChart& chart);
Image render_bar_chart(const BarChart& chart);

// render_* then write_png. Throws microlm::Error on a chart that cannot be drawn (a series
// whose x and y differ in length, a size below 200x150) or a file that cannot be written.
void write_line_chart_png(const std::string& path, const LineChart& chart);
void write_bar_chart_png(const std::string& path, const BarChart& chart);

}  // namespace microlm::plot
