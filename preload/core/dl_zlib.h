/* dl_zlib.h - the zlib functions that gzip large ingest bodies, opened on demand (dynlib.h):
 * libz.so.1 is loaded only by a process that sends such a body. */
#ifndef AS_DL_ZLIB_H
#define AS_DL_ZLIB_H

#include <zlib.h>

#include "core/dynlib.h"

#define AS_ZLIB_FNS(X)                                                                             \
    X(deflate)                                                                                     \
    X(deflateBound)                                                                                \
    X(deflateEnd)                                                                                  \
    X(deflateInit2_)                                                                               \
    X(zlibVersion)

struct as_zlib_fns {
    AS_ZLIB_FNS(AS_DL_FIELD)
};
extern struct as_zlib_fns as_zlib;
extern as_dynlib as_zlib_lib;

#endif
