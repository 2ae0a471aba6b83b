// The one error type the microlm library throws. Messages name the file, the item
// (key, tensor, token) and the expected versus actual value; only the CLI prints them.
#pragma once

#include <stdexcept>
#include <string>

namespace microlm {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace microlm
