// The libcurl functions the cloud client calls, looked up when the first CloudClient is made
// (SharedLibrary): microlm links no libcurl, so processes without a cloud never load it.
// curl_global_init runs once, as the table is filled. Private to the cloud part.
#pragma once

#include <curl/curl.h>

namespace microlm {

struct CurlApi {
    decltype(&curl_easy_init) easy_init;
    decltype(&curl_easy_cleanup) easy_cleanup;
    decltype(&curl_easy_setopt) easy_setopt;
    decltype(&curl_easy_getinfo) easy_getinfo;
    decltype(&curl_easy_strerror) easy_strerror;
    decltype(&curl_multi_init) multi_init;
    decltype(&curl_multi_cleanup) multi_cleanup;
    decltype(&curl_multi_add_handle) multi_add_handle;
    decltype(&curl_multi_remove_handle) multi_remove_handle;
    decltype(&curl_multi_perform) multi_perform;
    decltype(&curl_multi_poll) multi_poll;
    decltype(&curl_multi_info_read) multi_info_read;
    decltype(&curl_slist_append) slist_append;
    decltype(&curl_slist_free_all) slist_free_all;
};

// Loads libcurl on first use (thread-safe); throws CloudError (kConfig) if it or a function is
// missing, or it does not start.
const CurlApi& curl_api();

}  // namespace microlm
