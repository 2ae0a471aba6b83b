// Line and bar charts laid out on an Image: axis ranges rounded to 1-2-5 ticks (powers of ten
// on log axes), grid, tick labels, title, axis labels and a legend below the plot that wraps.
// Not the pixels (raster.cpp) or the file format (png.cpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "microlm/error.h"
#include "microlm/plot.h"

namespace microlm::plot {
namespace {

constexpr Color kGrid{228, 228, 228};
constexpr Color kAxis{90, 90, 90};
constexpr Color kInk{30, 30, 30};
constexpr int kTick = 5;        // tick mark length, pixels
constexpr int kLegendRow = 14;  // legend line height
constexpr int kSwatch = 18;     // legend colour sample width

struct Axis {
    double lo = 0, hi = 1;
    bool log = false;
    std::vector<double> ticks;
    double step = 1;  // linear tick spacing, for label precision
};

double nice_step(double raw) {
    const double e = std::pow(10.0, std::floor(std::log10(raw)));
    const double f = raw / e;
    return (f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 5.0 ? 5.0 : 10.0) * e;
}

// A linear axis through [dmin, dmax], widened to whole steps where the caller gave no bound.
Axis linear_axis(double dmin, double dmax, std::optional<double> lo, std::optional<double> hi) {
    Axis a;
    double l = lo.value_or(dmin), h = hi.value_or(dmax);
    if (!std::isfinite(l) || !std::isfinite(h)) l = 0, h = 1;
    if (h < l) std::swap(l, h);
    if (h == l) {
        const double pad = l == 0 ? 1.0 : std::abs(l) * 0.1;
        if (!lo) l -= pad;
        if (!hi) h += pad;
        if (h == l) h = l + 1;
    }
    a.step = nice_step((h - l) / 6.0);
    if (!lo) l = std::floor(l / a.step + 1e-9) * a.step;
    if (!hi) h = std::ceil(h / a.step - 1e-9) * a.step;
    a.lo = l;
    a.hi = h;
    for (double t = std::ceil(l / a.step - 1e-9) * a.step; t <= h + a.step * 1e-9; t += a.step)
        a.ticks.push_back(std::abs(t) < a.step * 1e-9 ? 0.0 : t);
    return a;
}

// A log axis: whole decades unless bounds are given; ticks at powers of ten, plus 2 and 5
// times them when the range spans few decades.
Axis log_axis(double dmin, double dmax, std::optional<double> lo, std::optional<double> hi) {
    Axis a;
    a.log = true;
    double l = lo.value_or(dmin), h = hi.value_or(dmax);
    if (!(l > 0) || !std::isfinite(l)) l = 1;
    if (!(h > 0) || !std::isfinite(h)) h = 10;
    if (h < l) std::swap(l, h);
    if (!lo) l = std::pow(10.0, std::floor(std::log10(l) + 1e-9));
    if (!hi) h = std::pow(10.0, std::ceil(std::log10(h) - 1e-9));
    if (h <= l) h = l * 10;
    a.lo = l;
    a.hi = h;
    const double decades = std::log10(h / l);
    for (int e = static_cast<int>(std::floor(std::log10(l))) - 1;
         e <= static_cast<int>(std::ceil(std::log10(h))); ++e) {
        for (const double m : {1.0, 2.0, 5.0}) {
            if (m != 1.0 && decades > 2.5) continue;
            const double t = m * std::pow(10.0, e);
            if (t >= l * (1 - 1e-9) && t <= h * (1 + 1e-9)) a.ticks.push_back(t);
        }
    }
    return a;
}

std::string tick_label(double v, const Axis& a) {
    char buf[32];
    if (v == 0) return "0";
    const double av = std::abs(v);
    if (a.log || av >= 1e6 || av < 1e-4) {
        std::snprintf(buf, sizeof buf, "%g", v);
    } else {
        const int decimals = std::clamp(static_cast<int>(std::ceil(-std::log10(a.step) - 1e-9)), 0, 6);
        std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    }
    return buf;
}

struct Legend {
    std::vector<std::pair<int, int>> at;  // each entry's top-left
    int rows = 0;
};

// Entries flow left to right from x0 and wrap at x1.
Legend layout_legend(const std::vector<std::string>& names, int x0, int x1, int y0) {
    Legend lg;
    int x = x0, row = 0;
    for (const std::string& n : names) {
        const int w = kSwatch + 5 + text_width(n) + 16;
        if (x > x0 && x + w - 16 > x1) {
            x = x0;
            ++row;
        }
        lg.at.push_back({x, y0 + row * kLegendRow});
        x += w;
    }
    lg.rows = names.empty() ? 0 : row + 1;
    return lg;
}

struct Margins {
    int left, top, right, bottom;
};

// The plot rectangle left after the title, the y tick labels and y label, and below: the x tick
// labels, the x label and the legend.
Margins margins(int width, const std::string& title, const std::string& x_label, const std::string& y_label,
                const std::vector<std::string>& y_tick_labels, const std::vector<std::string>& legend_names) {
    Margins m{};
    int yl = 0;
    for (const auto& s : y_tick_labels) yl = std::max(yl, text_width(s));
    m.left = 10 + (y_label.empty() ? 0 : text_height() + 10) + yl + 4 + kTick;
    m.top = title.empty() ? 14 : 12 + text_height(2) + 12;
    m.right = 24;
    const Legend lg = layout_legend(legend_names, m.left, width - m.right, 0);
    m.bottom =
        kTick + 4 + text_height() + 8 + (x_label.empty() ? 0 : text_height() + 10) + lg.rows * kLegendRow + 8;
    return m;
}

Frame make_frame(int width, int height, const Margins& m, const Axis& x, const Axis& y) {
    Frame f;
    f.left = m.left;
    f.top = m.top;
    f.right = width - 1 - m.right;
    f.bottom = height - 1 - m.bottom;
    if (f.right - f.left < 40 || f.bottom - f.top < 40) {
        throw Error("plot: " + std::to_string(width) + "x" + std::to_string(height) +
                    " leaves no room for the plot after its labels and legend; make the chart larger");
    }
    f.x_lo = x.lo;
    f.x_hi = x.hi;
    f.y_lo = y.lo;
    f.y_hi = y.hi;
    f.log_x = x.log;
    f.log_y = y.log;
    return f;
}

void check_size(int width, int height) {
    if (width < 200 || height < 150 || width > 8000 || height > 8000) {
        throw Error("plot: chart size " + std::to_string(width) + "x" + std::to_string(height) +
                    " is out of range (200x150 to 8000x8000)");
    }
}

// Title, frame, grid, ticks and their labels, axis labels: everything but the data and legend.
void draw_axes(Image& img, const Frame& f, const std::string& title, const std::string& x_label,
               const std::string& y_label, const Axis* x, const Axis& y) {
    if (!title.empty()) img.text((img.width() - text_width(title, 2)) / 2, 12, title, kInk, 2);
    for (const double t : y.ticks) {
        const int py = static_cast<int>(std::lround(f.py(t)));
        img.line(f.left, py, f.right, py, kGrid);
        img.line(f.left - kTick, py, f.left, py, kAxis);
        const std::string s = tick_label(t, y);
        img.text(f.left - kTick - 4 - text_width(s), py - 3, s, kInk);
    }
    const int label_y = f.bottom + kTick + 4;
    if (x) {
        for (const double t : x->ticks) {
            const int px = static_cast<int>(std::lround(f.px(t)));
            img.line(px, f.top, px, f.bottom, kGrid);
            img.line(px, f.bottom, px, f.bottom + kTick, kAxis);
            const std::string s = tick_label(t, *x);
            img.text(px - text_width(s) / 2, label_y, s, kInk);
        }
    }
    img.line(f.left, f.top, f.left, f.bottom, kAxis);
    img.line(f.left, f.bottom, f.right, f.bottom, kAxis);
    img.line(f.right, f.top, f.right, f.bottom, kGrid);
    img.line(f.left, f.top, f.right, f.top, kGrid);
    if (!x_label.empty())
        img.text((f.left + f.right - text_width(x_label)) / 2, label_y + text_height() + 8, x_label, kInk);
    if (!y_label.empty()) {
        const int mid = (f.top + f.bottom) / 2 + text_width(y_label) / 2;
        img.text(10, std::min(mid, img.height() - 1), y_label, kInk, 1, /*vertical=*/true);
    }
}

int legend_top(const Frame& f, const std::string& x_label) {
    return f.bottom + kTick + 4 + text_height() + 8 + (x_label.empty() ? 0 : text_height() + 10);
}

// Liang-Barsky: clips the segment to the rectangle; false when nothing of it is inside.
bool clip(double& x0, double& y0, double& x1, double& y1, double l, double t, double r, double b) {
    double u0 = 0, u1 = 1;
    const double dx = x1 - x0, dy = y1 - y0;
    const double p[4] = {-dx, dx, -dy, dy}, q[4] = {x0 - l, r - x0, y0 - t, b - y0};
    for (int i = 0; i < 4; ++i) {
        if (p[i] == 0) {
            if (q[i] < 0) return false;
            continue;
        }
        const double u = q[i] / p[i];
        if (p[i] < 0) {
            u0 = std::max(u0, u);
        } else {
            u1 = std::min(u1, u);
        }
        if (u0 > u1) return false;
    }
    const double nx0 = x0 + u0 * dx, ny0 = y0 + u0 * dy, nx1 = x0 + u1 * dx, ny1 = y0 + u1 * dy;
    x0 = nx0, y0 = ny0, x1 = nx1, y1 = ny1;
    return true;
}

bool usable(double v, bool log) {
    return std::isfinite(v) && (!log || v > 0);
}

std::string bar_label(double v) {
    char buf[32];
    const double av = std::abs(v);
    std::snprintf(buf, sizeof buf, av < 10 ? "%.2f" : av < 100 ? "%.1f" : "%.0f", v);
    return buf;
}

struct LineLayout {
    Axis x, y;
    Margins m;
    Frame frame;
};

LineLayout layout_line(const LineChart& c) {
    check_size(c.width, c.height);
    double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
    std::vector<std::string> names;
    for (const Series& s : c.series) {
        if (s.x.size() != s.y.size()) {
            throw Error("plot: series \"" + s.name + "\" has " + std::to_string(s.x.size()) +
                        " x values but " + std::to_string(s.y.size()) + " y values");
        }
        for (size_t i = 0; i < s.x.size(); ++i) {
            if (!usable(s.x[i], c.log_x) || !usable(s.y[i], c.log_y)) continue;
            xmin = std::min(xmin, s.x[i]);
            xmax = std::max(xmax, s.x[i]);
            ymin = std::min(ymin, s.y[i]);
            ymax = std::max(ymax, s.y[i]);
        }
        names.push_back(s.name);
    }
    if (xmin > xmax) xmin = c.log_x ? 1 : 0, xmax = c.log_x ? 10 : 1;
    if (ymin > ymax) ymin = c.log_y ? 1 : 0, ymax = c.log_y ? 10 : 1;
    LineLayout L;
    L.x = c.log_x ? log_axis(xmin, xmax, c.x_min, c.x_max) : linear_axis(xmin, xmax, c.x_min, c.x_max);
    L.y = c.log_y ? log_axis(ymin, ymax, c.y_min, c.y_max) : linear_axis(ymin, ymax, c.y_min, c.y_max);
    std::vector<std::string> ylabels;
    for (const double t : L.y.ticks) ylabels.push_back(tick_label(t, L.y));
    L.m = margins(c.width, c.title, c.x_label, c.y_label, ylabels, names);
    L.frame = make_frame(c.width, c.height, L.m, L.x, L.y);
    return L;
}

struct BarLayout {
    Axis y;
    Margins m;
    Frame frame;
};

BarLayout layout_bar(const BarChart& c) {
    check_size(c.width, c.height);
    double lo = 0, hi = 0;
    std::vector<std::string> names;
    for (const BarSeries& s : c.series) {
        if (s.values.size() != c.groups.size()) {
            throw Error("plot: bar series \"" + s.name + "\" has " + std::to_string(s.values.size()) +
                        " values for " + std::to_string(c.groups.size()) + " groups");
        }
        for (const double v : s.values) {
            if (!std::isfinite(v)) continue;
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        names.push_back(s.name);
    }
    if (lo == hi) hi = lo + 1;
    BarLayout L;
    // Room above the tallest bar for its value label.
    const double headroom = c.value_labels ? (hi - lo) * 0.08 : 0.0;
    L.y = linear_axis(lo < 0 ? lo - headroom : lo, hi > 0 ? hi + headroom : hi, c.y_min, c.y_max);
    std::vector<std::string> ylabels;
    for (const double t : L.y.ticks) ylabels.push_back(tick_label(t, L.y));
    L.m = margins(c.width, c.title, "", c.y_label, ylabels, names);
    Axis x;
    x.lo = 0;
    x.hi = std::max<double>(1, static_cast<double>(c.groups.size()));
    L.frame = make_frame(c.width, c.height, L.m, x, L.y);
    return L;
}

}  // namespace

double Frame::px(double x) const {
    const double u = log_x ? (std::log10(x) - std::log10(x_lo)) / (std::log10(x_hi) - std::log10(x_lo))
                           : (x - x_lo) / (x_hi - x_lo);
    return left + u * (right - left);
}

double Frame::py(double y) const {
    const double u = log_y ? (std::log10(y) - std::log10(y_lo)) / (std::log10(y_hi) - std::log10(y_lo))
                           : (y - y_lo) / (y_hi - y_lo);
    return bottom - u * (bottom - top);
}

Frame line_chart_frame(const LineChart& chart) {
    return layout_line(chart).frame;
}
Frame bar_chart_frame(const BarChart& chart) {
    return layout_bar(chart).frame;
}

Image render_line_chart(const LineChart& c) {
    const LineLayout L = layout_line(c);
    const Frame& f = L.frame;
    Image img(c.width, c.height);
    draw_axes(img, f, c.title, c.x_label, c.y_label, &L.x, L.y);
    std::vector<std::string> names;
    for (size_t si = 0; si < c.series.size(); ++si) {
        const Series& s = c.series[si];
        names.push_back(s.name);
        const Color col = s.color.value_or(palette(si));
        bool have_prev = false;
        double px0 = 0, py0 = 0;
        for (size_t i = 0; i < s.x.size(); ++i) {
            if (!usable(s.x[i], c.log_x) || !usable(s.y[i], c.log_y)) {
                have_prev = false;
                continue;
            }
            const double px1 = f.px(s.x[i]), py1 = f.py(s.y[i]);
            if (have_prev) {
                double a = px0, b = py0, cx = px1, cy = py1;
                if (clip(a, b, cx, cy, f.left, f.top, f.right, f.bottom)) img.line(a, b, cx, cy, col, 2);
            }
            if (s.markers && px1 >= f.left && px1 <= f.right && py1 >= f.top && py1 <= f.bottom) {
                const int x = static_cast<int>(std::lround(px1)), y = static_cast<int>(std::lround(py1));
                img.fill_rect(x - 2, y - 2, x + 2, y + 2, col);
            }
            px0 = px1, py0 = py1;
            have_prev = true;
        }
    }
    const Legend lg = layout_legend(names, f.left, c.width - L.m.right, legend_top(f, c.x_label));
    for (size_t si = 0; si < c.series.size(); ++si) {
        const auto [x, y] = lg.at[si];
        img.line(x, y + 3, x + kSwatch, y + 3, c.series[si].color.value_or(palette(si)), 3);
        img.text(x + kSwatch + 5, y, c.series[si].name, kInk);
    }
    return img;
}

Image render_bar_chart(const BarChart& c) {
    const BarLayout L = layout_bar(c);
    const Frame& f = L.frame;
    Image img(c.width, c.height);
    draw_axes(img, f, c.title, "", c.y_label, nullptr, L.y);
    const size_t ns = std::max<size_t>(1, c.series.size());
    const double zero = f.py(std::clamp(0.0, f.y_lo, f.y_hi));
    for (size_t g = 0; g < c.groups.size(); ++g) {
        const double g0 = f.px(static_cast<double>(g)), g1 = f.px(static_cast<double>(g + 1));
        std::string label = c.groups[g];
        while (!label.empty() && text_width(label) > g1 - g0 - 4) label.pop_back();
        img.text(static_cast<int>(std::lround((g0 + g1) / 2 - text_width(label) / 2.0)), f.bottom + kTick + 4,
                 label, kInk);
        if (g > 0) img.line(g0, f.bottom, g0, f.bottom + kTick, kAxis);
        const double slot = (g1 - g0) * 0.84 / static_cast<double>(ns);
        for (size_t si = 0; si < c.series.size(); ++si) {
            const double v = c.series[si].values[g];
            if (!std::isfinite(v)) continue;
            const double x0 = g0 + (g1 - g0) * 0.08 + slot * static_cast<double>(si);
            const double x1 = x0 + slot * 0.88;
            const double top =
                std::clamp(f.py(std::clamp(v, f.y_lo, f.y_hi)), double(f.top), double(f.bottom));
            const Color col = c.series[si].color.value_or(palette(si));
            img.fill_rect(static_cast<int>(std::lround(x0)),
                          static_cast<int>(std::lround(std::min(top, zero))),
                          static_cast<int>(std::lround(x1)) - 1,
                          static_cast<int>(std::lround(std::max(top, zero))), col);
            if (!c.value_labels) continue;
            const std::string s = bar_label(v);
            const int w = text_width(s);
            const int cx = static_cast<int>(std::lround((x0 + x1) / 2));
            if (w <= x1 - x0 + 6) {
                img.text(cx - w / 2,
                         v >= 0 ? static_cast<int>(top) - text_height() - 3 : static_cast<int>(top) + 3, s,
                         kInk);
            } else {
                // Too wide for the bar: written upwards from its end.
                img.text(cx - text_height() / 2,
                         v >= 0 ? static_cast<int>(top) - 4 : static_cast<int>(top) + w + 4, s, kInk, 1,
                         /*vertical=*/true);
            }
        }
    }
    img.line(f.left, zero, f.right, zero, kAxis);
    std::vector<std::string> names;
    for (const BarSeries& s : c.series) names.push_back(s.name);
    const Legend lg = layout_legend(names, f.left, c.width - L.m.right, legend_top(f, ""));
    for (size_t si = 0; si < c.series.size(); ++si) {
        const auto [x, y] = lg.at[si];
        img.fill_rect(x, y, x + kSwatch, y + 6, c.series[si].color.value_or(palette(si)));
        img.text(x + kSwatch + 5, y, c.series[si].name, kInk);
    }
    return img;
}

void write_line_chart_png(const std::string& path, const LineChart& chart) {
    write_png(path, render_line_chart(chart));
}

void write_bar_chart_png(const std::string& path, const BarChart& chart) {
    write_png(path, render_bar_chart(chart));
}

}  // namespace microlm::plot
