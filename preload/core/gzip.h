/* gzip.h - gzip bodies for HTTP sinks (OTEL_EXPORTER_OTLP_COMPRESSION=gzip) with zlib opened
 * on demand (dynlib.h): libz.so.1 is loaded only by a process that asks for compression. */
#ifndef AS_GZIP_H
#define AS_GZIP_H

#include <stddef.h>

/* Compresses in[0..n) into a new malloc'd gzip member (*out, *out_len). Returns 0, or -1
 * when zlib is missing (reported once) or memory runs out; nothing is allocated then. */
int as_gzip(const void *in, size_t n, char **out, size_t *out_len);

#endif
