// curl_api(): libcurl opened once (the OpenSSL build's soname, else the GnuTLS one), its functions
// looked up by name, curl_global_init called. Not here: any use of them (cloud_client.cpp).
#include "curl_api.h"

#include <string>

#include "microlm/cloud_client.h"
#include "microlm/shared_library.h"

namespace microlm {

namespace {

// The OpenSSL build's soname (what scripts/setup.sh installs), else Debian's GnuTLS build.
SharedLibrary open_libcurl() {
    constexpr const char* kHint = "install libcurl4 (scripts/setup.sh does)";
    try {
        return SharedLibrary("libcurl.so.4", kHint);
    } catch (const Error& first) {
        try {
            return SharedLibrary("libcurl-gnutls.so.4", kHint);
        } catch (const Error&) {
            throw first;
        }
    }
}

CurlApi load() {
    const SharedLibrary lib = open_libcurl();  // a copy of the handle; the library stays loaded
    CurlApi a{};
    a.easy_init = lib.function<decltype(a.easy_init)>("curl_easy_init");
    a.easy_cleanup = lib.function<decltype(a.easy_cleanup)>("curl_easy_cleanup");
    a.easy_setopt = lib.function<decltype(a.easy_setopt)>("curl_easy_setopt");
    a.easy_getinfo = lib.function<decltype(a.easy_getinfo)>("curl_easy_getinfo");
    a.easy_strerror = lib.function<decltype(a.easy_strerror)>("curl_easy_strerror");
    a.multi_init = lib.function<decltype(a.multi_init)>("curl_multi_init");
    a.multi_cleanup = lib.function<decltype(a.multi_cleanup)>("curl_multi_cleanup");
    a.multi_add_handle = lib.function<decltype(a.multi_add_handle)>("curl_multi_add_handle");
    a.multi_remove_handle = lib.function<decltype(a.multi_remove_handle)>("curl_multi_remove_handle");
    a.multi_perform = lib.function<decltype(a.multi_perform)>("curl_multi_perform");
    a.multi_poll = lib.function<decltype(a.multi_poll)>("curl_multi_poll");
    a.multi_info_read = lib.function<decltype(a.multi_info_read)>("curl_multi_info_read");
    a.slist_append = lib.function<decltype(a.slist_append)>("curl_slist_append");
    a.slist_free_all = lib.function<decltype(a.slist_free_all)>("curl_slist_free_all");
    const CURLcode init = lib.function<decltype(&curl_global_init)>("curl_global_init")(CURL_GLOBAL_DEFAULT);
    if (init != CURLE_OK) throw Error("curl_global_init failed (code " + std::to_string(init) + ")");
    return a;
}

}  // namespace

const CurlApi& curl_api() {
    static const CurlApi api = [] {
        try {
            return load();
        } catch (const Error& e) {
            throw CloudError(CloudErrorKind::kConfig, std::string("cloud client: ") + e.what());
        }
    }();
    return api;
}

}  // namespace microlm
