// A run's loss.csv drawn as a PNG: training loss per step, validation loss and the
// validation loss on replies' first tokens. Not here: writing the CSV (trainer.cpp).
#pragma once

#include <string>

namespace microlm::train {

void write_loss_png(const std::string& csv_path, const std::string& png_path, const std::string& title);

}  // namespace microlm::train
