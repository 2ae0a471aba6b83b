// SharedLibrary: dlopen with RTLD_NOW (the library's own dependencies are resolved at open, not
// mid-request), never closed; dlsym with errors that say which library and symbol, and why.
#include "microlm/shared_library.h"

#include <dlfcn.h>

#include "microlm/error.h"

namespace microlm {

SharedLibrary::SharedLibrary(const std::string& soname, const std::string& install_hint)
    : soname_(soname), handle_(dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL)) {
    if (handle_ == nullptr) {
        const char* why = dlerror();
        throw Error("cannot load " + soname + " (" + (why ? why : "unknown reason") + "); " + install_hint);
    }
}

void* SharedLibrary::address(const char* name) const {
    dlerror();
    void* p = dlsym(handle_, name);
    if (p == nullptr) {
        const char* why = dlerror();
        throw Error(soname_ + " has no symbol " + name + " (" + (why ? why : "null") + "; an incompatible version?)");
    }
    return p;
}

}  // namespace microlm
