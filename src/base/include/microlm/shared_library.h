// A system library opened when first needed (dlopen), so that a process that never speaks or
// calls a cloud does not load libcurl or espeak-ng and the ~60 libraries behind them: ~9 MiB of
// resident memory and part of every start, for a μLM whose weights are 8 MiB.
#pragma once

#include <string>

namespace microlm {

class SharedLibrary {
public:
    // Opens `soname` (e.g. "libcurl.so.4"); the library stays loaded for the life of the process
    // (copies share the handle; none closes it).
    // Throws Error naming the library, dlerror()'s reason and `install_hint` when it cannot.
    SharedLibrary(const std::string& soname, const std::string& install_hint);

    // The address of `name`, cast to the function type F. Throws Error when it is missing.
    template <typename F>
    F function(const char* name) const {
        return reinterpret_cast<F>(address(name));
    }

private:
    void* address(const char* name) const;

    std::string soname_;
    void* handle_;
};

}  // namespace microlm
