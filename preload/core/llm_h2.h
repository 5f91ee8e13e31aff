/* llm_h2.h - HTTP/2 (ALPN h2) on the plaintext of one connection, turned into one HTTP/1.1
 * exchange per stream for the LLM call decoder (llm_detect.h): frames are read as a stream
 * in both directions, header blocks decoded with libnghttp2's HPACK decoder (opened on
 * demand, dynlib.h), and each stream's request and response handed to an as_llm_conn of
 * its own as HTTP/1.1 bytes with a chunked body. Memory is bounded: at most
 * AS_H2_MAX_STREAMS open streams are followed, a frame other than DATA is kept whole up to
 * AS_H2_FRAME_MAX bytes, DATA is passed on as it arrives and never kept. */
#ifndef AS_LLM_H2_H
#define AS_LLM_H2_H

#include <stddef.h>

#define AS_H2_MAX_STREAMS 64
#define AS_H2_FRAME_MAX (64u << 10)

typedef struct as_h2 as_h2;

/* A decoder for a connection whose client just wrote the HTTP/2 preface, or NULL when
 * libnghttp2.so.14 cannot be loaded (dynlib says so once) or memory ran out. */
as_h2 *as_h2_new(void);

/* Plaintext the client wrote (wrote = 1; the first bytes are the 24-byte preface) or read
 * (wrote = 0). Exchanges that end here are turned into actions by llm_detect. Returns 0,
 * or -1 once the connection cannot be followed any more (not HTTP/2, an HPACK error, a
 * header block larger than AS_H2_FRAME_MAX): the caller drops the decoder then. */
int as_h2_feed(as_h2 *h, int wrote, const void *data, size_t len);

/* The connection ended: the streams still open end without an action; frees h. */
void as_h2_free(as_h2 *h);

#endif
