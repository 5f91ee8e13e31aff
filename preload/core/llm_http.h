/* llm_http.h - a bounded push parser of one direction of an HTTP/1.1 connection (request
 * line or status line, headers, Content-Length / chunked / until-close bodies, several
 * messages on one keep-alive connection), fed the plaintext bytes of a TLS stream in
 * whatever pieces the program reads or writes them. It keeps no body bytes: it hands them
 * to the callbacks as they pass. The line buffer grows with the longest line seen (up to
 * AS_HTTP_LINE_MAX) and goes back to a small one between messages. */
#ifndef AS_LLM_HTTP_H
#define AS_LLM_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define AS_HTTP_LINE_MAX 8192 /* longest start or header line kept; longer ones are cut */
#define AS_HTTP_LINE_KEEP 256 /* line buffer kept between messages */

typedef struct as_http_cb {
    /* The start line of a message (request line or status line), without CRLF. */
    void (*start)(void *ctx, const char *line, size_t len);
    /* One header (name and value trimmed, not NUL-terminated). */
    void (*header)(void *ctx, const char *name, size_t nlen, const char *value, size_t vlen);
    /* The headers ended. Returns 1 when the message has no body whatever its headers say
     * (a response to HEAD, 1xx, 204, 304), else 0. */
    int (*headers_done)(void *ctx);
    /* Body bytes, decoded from chunked framing. */
    void (*body)(void *ctx, const char *data, size_t len);
    /* The message ended. */
    void (*done)(void *ctx);
} as_http_cb;

enum as_http_state {
    AS_HTTP_START, /* waiting for a start line */
    AS_HTTP_HEADERS,
    AS_HTTP_BODY_LEN,   /* Content-Length bytes left in `left` */
    AS_HTTP_CHUNK_SIZE, /* reading a chunk-size line */
    AS_HTTP_CHUNK_DATA, /* `left` bytes of chunk data */
    AS_HTTP_CHUNK_CRLF, /* the CRLF after chunk data */
    AS_HTTP_TRAILERS,   /* trailer lines after the last chunk */
    AS_HTTP_BODY_CLOSE, /* body until the connection closes */
    AS_HTTP_BROKEN,     /* not HTTP/1.x: everything is ignored */
};

typedef struct as_http {
    const as_http_cb *cb;
    void *ctx;
    int is_response;
    int state;
    uint64_t left;
    int chunked;
    int has_len;
    int64_t content_len;
    size_t line_len; /* bytes in line */
    size_t line_cap; /* bytes allocated at line (0: none yet) */
    int line_cut;    /* the current line was longer than AS_HTTP_LINE_MAX (or memory ran out) */
    char *line;
} as_http;

/* Sets p up for one direction (is_response: status lines) with its callbacks. Allocates
 * nothing (the line buffer comes with the first line). */
void as_http_init(as_http *p, int is_response, const as_http_cb *cb, void *ctx);

/* Frees the line buffer; p may be fed again after as_http_init. */
void as_http_release(as_http *p);

/* Feeds len bytes. Callbacks run from inside this call. Never fails: bytes that are not
 * HTTP/1.x put the parser in AS_HTTP_BROKEN for good. */
void as_http_feed(as_http *p, const char *data, size_t len);

/* The connection closed: a body read until close ends here (done is called). */
void as_http_eof(as_http *p);

#endif
