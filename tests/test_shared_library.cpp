// SharedLibrary against the C library's own math: a function found by name computes what the
// linked one does; a missing library or symbol is an Error that names it and the hint.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "microlm/error.h"
#include "microlm/shared_library.h"

using namespace microlm;

TEST(SharedLibrary, FindsAFunctionByName) {
    const SharedLibrary libm("libm.so.6", "libm is part of the C library");
    const auto cosine = libm.function<double (*)(double)>("cos");
    for (const double x : {0.0, 0.5, 1.0, 3.0}) {
        volatile double v = x;  // so the linked libm computes it, not the compiler
        EXPECT_EQ(cosine(x), std::cos(v)) << x;
    }
}

TEST(SharedLibrary, MissingLibraryOrSymbolIsAnErrorThatSaysWhich) {
    try {
        SharedLibrary("libmicrolm-no-such-library.so.9", "install it with care");
        ADD_FAILURE() << "a missing library opened";
    } catch (const Error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("libmicrolm-no-such-library.so.9"), std::string::npos) << what;
        EXPECT_NE(what.find("install it with care"), std::string::npos) << what;
    }
    const SharedLibrary libm("libm.so.6", "");
    try {
        libm.function<void (*)()>("microlm_no_such_symbol");
        ADD_FAILURE() << "a missing symbol was found";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("microlm_no_such_symbol"), std::string::npos) << e.what();
    }
}
