/* llm_http.c - the HTTP/1.1 stream parser of llm_http.h: framing only, bounded memory. */
#include "core/llm_http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void as_http_init(as_http *p, int is_response, const as_http_cb *cb, void *ctx) {
    memset(p, 0, sizeof *p);
    p->cb = cb;
    p->ctx = ctx;
    p->is_response = is_response;
    p->state = AS_HTTP_START;
}

void as_http_release(as_http *p) {
    free(p->line);
    p->line = NULL;
    p->line_cap = p->line_len = 0;
}

static void msg_done(as_http *p) {
    if (p->line_cap > AS_HTTP_LINE_KEEP)
        as_http_release(p); /* a long header line does not stay with the connection */
    p->state = AS_HTTP_START;
    p->chunked = p->has_len = 0;
    p->content_len = 0;
    if (p->cb->done)
        p->cb->done(p->ctx);
}

static int is_ws(char c) {
    return c == ' ' || c == '\t';
}

/* Handles one complete header line (CRLF removed). */
static void header_line(as_http *p, const char *l, size_t n) {
    const char *colon = memchr(l, ':', n);
    if (!colon)
        return;
    size_t nlen = (size_t)(colon - l);
    const char *v = colon + 1;
    size_t vlen = n - nlen - 1;
    while (vlen && is_ws(*v))
        v++, vlen--;
    while (vlen && is_ws(v[vlen - 1]))
        vlen--;
    if (nlen == 14 && strncasecmp(l, "content-length", 14) == 0) {
        int64_t x = 0;
        size_t i = 0;
        for (; i < vlen && v[i] >= '0' && v[i] <= '9' && x < ((int64_t)1 << 50); i++)
            x = x * 10 + (v[i] - '0');
        if (i > 0) {
            p->has_len = 1;
            p->content_len = x;
        }
    } else if (nlen == 17 && strncasecmp(l, "transfer-encoding", 17) == 0) {
        /* chunked is the last coding when present */
        if (vlen >= 7 && strncasecmp(v + vlen - 7, "chunked", 7) == 0)
            p->chunked = 1;
    }
    if (p->cb->header)
        p->cb->header(p->ctx, l, nlen, v, vlen);
}

/* The headers ended: picks how the body is framed. */
static void headers_end(as_http *p) {
    int nobody = p->cb->headers_done ? p->cb->headers_done(p->ctx) : 0;
    if (nobody) {
        msg_done(p);
    } else if (p->chunked) {
        p->state = AS_HTTP_CHUNK_SIZE;
    } else if (p->has_len) {
        p->left = (uint64_t)p->content_len;
        p->state = AS_HTTP_BODY_LEN;
        if (p->left == 0)
            msg_done(p);
    } else if (p->is_response) {
        p->state = AS_HTTP_BODY_CLOSE;
    } else {
        msg_done(p); /* a request without length has no body */
    }
}

static uint64_t hexval(const char *l, size_t n, int *ok) {
    uint64_t x = 0;
    size_t i = 0;
    for (; i < n && i < 15; i++) {
        char c = l[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            break;
        x = x * 16 + (uint64_t)d;
    }
    *ok = i > 0;
    return x;
}

/* One complete line in the states that read lines. */
static void line_done(as_http *p) {
    const char *l = p->line;
    size_t n = p->line_len;
    p->line_len = 0;
    int cut = p->line_cut;
    p->line_cut = 0;
    switch (p->state) {
    case AS_HTTP_START:
        if (n == 0)
            return; /* stray CRLF between messages */
        if (p->is_response ? (n < 12 || memcmp(l, "HTTP/1.", 7) != 0)
                           : (n < 14 || !memmem(l, n, " HTTP/1.", 8))) {
            p->state = AS_HTTP_BROKEN;
            return;
        }
        if (p->cb->start)
            p->cb->start(p->ctx, l, n);
        p->state = AS_HTTP_HEADERS;
        return;
    case AS_HTTP_HEADERS:
        if (n == 0)
            headers_end(p);
        else if (!cut)
            header_line(p, l, n);
        return;
    case AS_HTTP_CHUNK_SIZE: {
        int ok;
        uint64_t sz = hexval(l, n, &ok);
        if (!ok) {
            p->state = AS_HTTP_BROKEN;
            return;
        }
        if (sz == 0) {
            p->state = AS_HTTP_TRAILERS;
        } else {
            p->left = sz;
            p->state = AS_HTTP_CHUNK_DATA;
        }
        return;
    }
    case AS_HTTP_CHUNK_CRLF:
        p->state = AS_HTTP_CHUNK_SIZE;
        return;
    case AS_HTTP_TRAILERS:
        if (n == 0)
            msg_done(p);
        return;
    default:
        return;
    }
}

void as_http_feed(as_http *p, const char *data, size_t len) {
    size_t i = 0;
    while (i < len && p->state != AS_HTTP_BROKEN) {
        switch (p->state) {
        case AS_HTTP_BODY_LEN:
        case AS_HTTP_CHUNK_DATA: {
            size_t take = len - i;
            if ((uint64_t)take > p->left)
                take = (size_t)p->left;
            if (take && p->cb->body)
                p->cb->body(p->ctx, data + i, take);
            i += take;
            p->left -= take;
            if (p->left == 0) {
                if (p->state == AS_HTTP_CHUNK_DATA)
                    p->state = AS_HTTP_CHUNK_CRLF;
                else
                    msg_done(p);
            }
            break;
        }
        case AS_HTTP_BODY_CLOSE:
            if (p->cb->body)
                p->cb->body(p->ctx, data + i, len - i);
            i = len;
            break;
        default: {
            /* a line-reading state: up to LF */
            const char *nl = memchr(data + i, '\n', len - i);
            size_t end = nl ? (size_t)(nl - data) : len;
            size_t n = end - i;
            if (p->line_len + n > p->line_cap && p->line_cap < AS_HTTP_LINE_MAX) {
                size_t cap = p->line_cap ? p->line_cap : AS_HTTP_LINE_KEEP;
                while (cap < p->line_len + n && cap < AS_HTTP_LINE_MAX)
                    cap *= 2;
                if (cap > AS_HTTP_LINE_MAX)
                    cap = AS_HTTP_LINE_MAX;
                char *l = realloc(p->line, cap);
                if (l) {
                    p->line = l;
                    p->line_cap = cap;
                }
            }
            size_t room = p->line_cap - p->line_len;
            if (n > room) {
                p->line_cut = 1;
                n = room;
            }
            if (n)
                memcpy(p->line + p->line_len, data + i, n);
            p->line_len += n;
            if (!nl) {
                i = len;
                break;
            }
            i = end + 1;
            if (p->line_len && p->line[p->line_len - 1] == '\r')
                p->line_len--;
            line_done(p);
            break;
        }
        }
    }
}

void as_http_eof(as_http *p) {
    if (p->state == AS_HTTP_BODY_CLOSE)
        msg_done(p);
}
