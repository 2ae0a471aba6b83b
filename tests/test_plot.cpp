// The PNG encoder and the charts, checked with an independent decoder: the system zlib inflates
// the IDAT stream and recomputes every chunk's CRC; pixels are compared exactly, and chart pixels
// are looked up where the chart's Frame says a value lands. Skipped where the build has no zlib.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "microlm/error.h"
#include "microlm/plot.h"

#ifdef MICROLM_HAVE_ZLIB
#include <zlib.h>
#endif

using namespace microlm;
using namespace microlm::plot;

namespace {

#ifdef MICROLM_HAVE_ZLIB
uint32_t be32(const std::vector<uint8_t>& b, size_t at) {
    return static_cast<uint32_t>(b[at]) << 24 | static_cast<uint32_t>(b[at + 1]) << 16 |
           static_cast<uint32_t>(b[at + 2]) << 8 | b[at + 3];
}

struct Decoded {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;
    Color at(int x, int y) const {
        const size_t i = (static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x)) * 3;
        return {rgb[i], rgb[i + 1], rgb[i + 2]};
    }
};

// A strict reader for what encode_png promises: 8-bit RGB, no interlace, filter 0 rows.
Decoded decode_png(const std::vector<uint8_t>& png) {
    static const uint8_t kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    EXPECT_GE(png.size(), 8u);
    EXPECT_TRUE(std::equal(kSig, kSig + 8, png.begin()));
    Decoded d;
    std::vector<uint8_t> idat;
    bool saw_end = false;
    for (size_t at = 8; at < png.size();) {
        const uint32_t len = be32(png, at);
        EXPECT_LE(at + 12 + len, png.size());
        const std::string type(png.begin() + static_cast<long>(at) + 4,
                               png.begin() + static_cast<long>(at) + 8);
        const uint8_t* body = png.data() + at + 8;
        const uint32_t crc =
            static_cast<uint32_t>(::crc32(::crc32(0, nullptr, 0), png.data() + at + 4, len + 4));
        EXPECT_EQ(crc, be32(png, at + 8 + len)) << "chunk " << type;
        if (type == "IHDR") {
            d.width = static_cast<int>(be32(png, at + 8));
            d.height = static_cast<int>(be32(png, at + 12));
            EXPECT_EQ(body[8], 8);   // bit depth
            EXPECT_EQ(body[9], 2);   // RGB
            EXPECT_EQ(body[12], 0);  // no interlace
        } else if (type == "IDAT") {
            idat.insert(idat.end(), body, body + len);
        } else if (type == "IEND") {
            saw_end = true;
        }
        at += 12 + len;
    }
    EXPECT_TRUE(saw_end);
    const size_t stride = 1 + 3 * static_cast<size_t>(d.width);
    std::vector<uint8_t> raw(stride * static_cast<size_t>(d.height) + 1);
    uLongf raw_len = static_cast<uLongf>(raw.size());
    EXPECT_EQ(::uncompress(raw.data(), &raw_len, idat.data(), static_cast<uLong>(idat.size())), Z_OK);
    EXPECT_EQ(raw_len, stride * static_cast<size_t>(d.height));
    for (int y = 0; y < d.height; ++y) {
        const uint8_t* row = raw.data() + static_cast<size_t>(y) * stride;
        EXPECT_EQ(row[0], 0) << "row " << y << " filter";
        d.rgb.insert(d.rgb.end(), row + 1, row + stride);
    }
    return d;
}

std::vector<uint8_t> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
#endif

// A folder removed when the test program exits.
std::string temp_dir() {
    static const struct Root {
        std::filesystem::path path =
            std::filesystem::temp_directory_path() / ("microlm_test_plot_" + std::to_string(::getpid()));
        Root() { std::filesystem::create_directories(path); }
        ~Root() {
            std::error_code ec;
            std::filesystem::remove_all(path, ec);
        }
    } root;
    return root.path.string();
}

bool near_colour(const Image& img, double x, double y, Color c, int r = 1) {
    const int cx = static_cast<int>(std::lround(x)), cy = static_cast<int>(std::lround(y));
    for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx)
            if (img.at(cx + dx, cy + dy) == c) return true;
    return false;
}

}  // namespace

#ifdef MICROLM_HAVE_ZLIB
TEST(Png, NoisyImageRoundTripsExactly) {
    // Random pixels with repeated stretches: literals, short and long matches, all distances.
    Image img(37, 23);
    std::mt19937 rng(7);
    for (int y = 0; y < img.height(); ++y)
        for (int x = 0; x < img.width(); ++x) {
            const uint32_t v = rng();
            img.set(x, y,
                    (v & 3) == 0 ? Color{10, 20, 30}
                                 : Color{uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)});
        }
    const Decoded d = decode_png(encode_png(img));
    ASSERT_EQ(d.width, 37);
    ASSERT_EQ(d.height, 23);
    EXPECT_EQ(d.rgb, img.rgb());
}

TEST(Png, LargeFlatImageCompressesAndRoundTrips) {
    Image img(1000, 700);
    img.fill_rect(100, 100, 899, 150, {200, 0, 0});
    img.line(0, 0, 999, 699, {0, 0, 255}, 3);
    const std::vector<uint8_t> png = encode_png(img);
    const Decoded d = decode_png(png);
    ASSERT_EQ(d.width, 1000);
    ASSERT_EQ(d.height, 700);
    EXPECT_EQ(d.rgb, img.rgb());
    EXPECT_LT(png.size(), img.rgb().size() / 50) << "flat colour should compress well";
}

TEST(Png, TinyImages) {
    for (const auto& [w, h] : std::vector<std::pair<int, int>>{{1, 1}, {1, 5}, {3, 1}, {2, 2}}) {
        Image img(w, h, {1, 2, 3});
        const Decoded d = decode_png(encode_png(img));
        EXPECT_EQ(d.width, w);
        EXPECT_EQ(d.height, h);
        EXPECT_EQ(d.rgb, img.rgb());
    }
}

TEST(Charts, LineChartPixelsAreWhereTheFrameSays) {
    LineChart c;
    c.title = "Loss";
    c.x_label = "step";
    c.y_label = "loss";
    c.x_min = 0, c.x_max = 1, c.y_min = 0, c.y_max = 1;
    const Color red{220, 0, 0}, blue{0, 0, 220};
    c.series.push_back({"flat", {0, 1}, {0.5, 0.5}, red});
    c.series.push_back({"rising", {0, 0.5, 1}, {0, NAN, 1}, blue});  // NaN breaks the line
    const std::string path = temp_dir() + "/line.png";
    write_line_chart_png(path, c);
    const Decoded d = decode_png(read_file(path));
    ASSERT_EQ(d.width, 800);
    ASSERT_EQ(d.height, 480);
    const Frame f = line_chart_frame(c);
    const Image img = render_line_chart(c);
    EXPECT_EQ(d.rgb, img.rgb());
    EXPECT_TRUE(near_colour(img, f.px(0.3), f.py(0.5), red));
    EXPECT_TRUE(near_colour(img, f.px(0.7), f.py(0.5), red));
    EXPECT_EQ(img.at(static_cast<int>(f.px(0.3)), static_cast<int>(f.py(0.3))), kWhite);  // no grid at 0.3
    // The rising series has a gap: nothing blue on the diagonal at x = 0.25.
    EXPECT_FALSE(near_colour(img, f.px(0.25), f.py(0.25), blue, 3));
    EXPECT_EQ(img.at(0, 0), kWhite);
    EXPECT_EQ(img.at(f.left, static_cast<int>(f.py(0.3))), (Color{90, 90, 90}));  // the y axis
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(::getpid())));
}

TEST(Charts, LogXMapsDecadesEvenly) {
    LineChart c;
    c.log_x = true;
    c.y_min = 0, c.y_max = 1;
    c.series.push_back({"s", {1, 1000}, {0.2, 0.8}, Color{0, 150, 0}});
    const Frame f = line_chart_frame(c);
    EXPECT_DOUBLE_EQ(f.x_lo, 1);
    EXPECT_DOUBLE_EQ(f.x_hi, 1000);
    EXPECT_NEAR(f.px(std::sqrt(1000.0)), (f.left + f.right) / 2.0, 1e-9);
    const Image img = render_line_chart(c);
    // A straight line in log space: at the geometric middle it is halfway up.
    EXPECT_TRUE(near_colour(img, f.px(std::sqrt(1000.0)), f.py(0.5), Color{0, 150, 0}));
    EXPECT_EQ(decode_png(encode_png(img)).rgb, img.rgb());
}

TEST(Charts, BarsAreFilledToTheirValue) {
    BarChart c;
    c.title = "Bars";
    c.groups = {"alpaca", "mt_bench"};
    c.series.push_back({"model A", {1.0, 2.0}, std::nullopt});
    c.series.push_back({"model B", {0.5, NAN}, std::nullopt});
    c.y_min = 0, c.y_max = 2.5;
    const Frame f = bar_chart_frame(c);
    const Image img = render_bar_chart(c);
    // Series 0 in group 1 spans x in (1.08, 1.08 + 0.42 * 0.88) in group units.
    const double x = f.px(1.08 + 0.42 * 0.44);
    EXPECT_EQ(img.at(static_cast<int>(x), static_cast<int>(f.py(0.9))), palette(0));
    EXPECT_EQ(img.at(static_cast<int>(x), static_cast<int>(f.py(2.3))), kWhite);  // above the bar
    // Series 1 in group 1 is NaN: no bar.
    const double x2 = f.px(1.08 + 0.42 + 0.42 * 0.44);
    EXPECT_EQ(img.at(static_cast<int>(x2), static_cast<int>(f.py(0.3))), kWhite);
    EXPECT_EQ(img.at(static_cast<int>(f.px(0.08 + 0.42 + 0.42 * 0.44)), static_cast<int>(f.py(0.25))),
              palette(1));
    EXPECT_EQ(decode_png(encode_png(img)).rgb, img.rgb());
}
#endif

TEST(Raster, GlyphsAreDrawnFromTheFont) {
    Image img(12, 8);
    img.text(0, 0, "A", kBlack);
    // 'A' starts ".###." then "#...#".
    EXPECT_EQ(img.at(0, 0), kWhite);
    EXPECT_EQ(img.at(1, 0), kBlack);
    EXPECT_EQ(img.at(3, 0), kBlack);
    EXPECT_EQ(img.at(4, 0), kWhite);
    EXPECT_EQ(img.at(0, 1), kBlack);
    EXPECT_EQ(img.at(4, 1), kBlack);
    EXPECT_EQ(text_width("AB"), 11);
    EXPECT_EQ(text_width("μ"), 5);  // one codepoint, two bytes
    EXPECT_EQ(text_width(""), 0);
}

TEST(Charts, BadInputIsAnError) {
    LineChart c;
    c.series.push_back({"bad", {1, 2}, {1}, std::nullopt});
    EXPECT_THROW(render_line_chart(c), Error);
    LineChart tiny;
    tiny.width = 50;
    EXPECT_THROW(render_line_chart(tiny), Error);
    BarChart b;
    b.groups = {"a"};
    b.series.push_back({"s", {1, 2}, std::nullopt});
    EXPECT_THROW(render_bar_chart(b), Error);
    EXPECT_THROW(write_png("/nonexistent-dir/x.png", Image(2, 2)), Error);
}

TEST(Charts, EmptyChartStillRenders) {
    LineChart c;
    c.title = "nothing yet";
    const Image img = render_line_chart(c);
    EXPECT_EQ(img.width(), 800);
    BarChart b;
    EXPECT_NO_THROW(render_bar_chart(b));
}
