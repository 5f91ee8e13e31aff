/* gzip.c - gzip compression through zlib loaded on demand (gzip.h), for OTLP exports and
 * large ingest bodies. */
#include "core/gzip.h"

#include <stdlib.h>
#include <zlib.h>

#include "core/dynlib.h"

#define AS_ZLIB_FNS(X)                                                                             \
    X(deflateInit2_)                                                                               \
    X(deflate)                                                                                     \
    X(deflateEnd)                                                                                  \
    X(deflateBound)

struct as_zlib_fns {
    AS_ZLIB_FNS(AS_DL_FIELD)
};
/* as llm_detect.c opens it: libz must keep to its own functions where the program
 * exports a zlib of its own (node) */
static AS_DYNLIB_DEFINE_DEEP(as_zlib, AS_ZLIB_FNS, "libz.so.1",
                             "gzip of OTLP exports and large ingest bodies", "inflateReset2 libz.");

int as_gzip(const void *in, size_t n, char **out, size_t *out_len) {
    if (as_dynlib_load(&as_zlib_lib) != 0)
        return -1;
    z_stream z = {0};
    /* 15 + 16: a gzip header and trailer around the deflate stream. */
    if (as_zlib.deflateInit2_(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                              (int)sizeof z) != Z_OK)
        return -1;
    size_t cap = as_zlib.deflateBound(&z, (uLong)n) + 32;
    char *buf = malloc(cap);
    if (!buf)
        goto error;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)buf;
    z.avail_out = (uInt)cap;
    if (as_zlib.deflate(&z, Z_FINISH) != Z_STREAM_END)
        goto error;
    *out = buf;
    *out_len = cap - z.avail_out;
    as_zlib.deflateEnd(&z);
    return 0;
error:
    free(buf);
    as_zlib.deflateEnd(&z);
    return -1;
}
