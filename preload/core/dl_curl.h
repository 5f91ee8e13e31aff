/* dl_curl.h - the libcurl functions of the HTTP client (http.c), opened on demand (dynlib.h):
 * libcurl.so.4 is loaded only by a process whose sinks speak HTTP. */
#ifndef AS_DL_CURL_H
#define AS_DL_CURL_H

/* No type-checking macros: their calls would expand inside as_curl.curl_easy_setopt(...). */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

#include "core/dynlib.h"

#define AS_CURL_FNS(X)                                                                             \
    X(curl_easy_cleanup)                                                                           \
    X(curl_easy_getinfo)                                                                           \
    X(curl_easy_init)                                                                              \
    X(curl_easy_reset)                                                                             \
    X(curl_easy_setopt)                                                                            \
    X(curl_easy_strerror)                                                                          \
    X(curl_getdate)                                                                                \
    X(curl_global_init)                                                                            \
    X(curl_multi_add_handle)                                                                       \
    X(curl_multi_cleanup)                                                                          \
    X(curl_multi_info_read)                                                                        \
    X(curl_multi_init)                                                                             \
    X(curl_multi_perform)                                                                          \
    X(curl_multi_remove_handle)                                                                    \
    X(curl_multi_setopt)                                                                           \
    X(curl_multi_timeout)                                                                          \
    X(curl_multi_wait)                                                                             \
    X(curl_slist_append)                                                                           \
    X(curl_slist_free_all)

struct as_curl_fns {
    AS_CURL_FNS(AS_DL_FIELD)
};
extern struct as_curl_fns as_curl;
extern as_dynlib as_curl_lib;

#endif
