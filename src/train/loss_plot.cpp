// write_loss_png: parses the CSV the trainer writes (step,loss,val_loss,val_first_loss,...)
// and hands the three series to the PNG line chart.
#include "loss_plot.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "microlm/error.h"
#include "microlm/plot.h"

namespace microlm::train {

void write_loss_png(const std::string& csv_path, const std::string& png_path, const std::string& title) {
    if (std::filesystem::is_directory(csv_path))
        throw Error(csv_path + ": a folder; give the run's loss.csv (" + csv_path + "/loss.csv)");
    std::ifstream in(csv_path);
    if (!in) throw Error(csv_path + ": cannot open the loss log");
    plot::Series train{"train loss", {}, {}, {}, false}, val{"val loss", {}, {}, {}, true},
        first{"val loss, each reply's first first_tokens targets", {}, {}, {}, true};
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
        std::vector<std::string> f;
        std::stringstream ss(line);
        for (std::string cell; std::getline(ss, cell, ',');) f.push_back(cell);
        if (f.size() < 4) continue;
        const double step = std::stod(f[0]);
        train.x.push_back(step);
        train.y.push_back(std::stod(f[1]));
        if (!f[2].empty()) {
            val.x.push_back(step);
            val.y.push_back(std::stod(f[2]));
        }
        if (!f[3].empty()) {
            first.x.push_back(step);
            first.y.push_back(std::stod(f[3]));
        }
    }
    if (train.x.empty()) throw Error(csv_path + ": no loss rows (expected step,loss,val_loss,... lines after the header)");
    plot::LineChart chart;
    chart.title = title;
    chart.x_label = "optimizer step";
    chart.y_label = "cross-entropy (nats/token)";
    chart.series = {train, val, first};
    plot::write_line_chart_png(png_path, chart);
}

}  // namespace microlm::train
