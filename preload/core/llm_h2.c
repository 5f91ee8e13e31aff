/* llm_h2.c - the HTTP/2 reader of llm_h2.h: frames (RFC 9113 section 4 and 6) read in
 * pieces as the program moves them, HPACK through libnghttp2 (nghttp2_hd_inflate_*, every
 * header block of the connection, so its dynamic tables stay in step), each stream
 * re-told to an as_llm_conn as one HTTP/1.1 exchange:
 *
 *   request HEADERS  -> "METHOD PATH HTTP/1.1\r\nHost: AUTHORITY\r\n
 *                        Transfer-Encoding: chunked\r\n\r\n"
 *   response HEADERS -> "HTTP/1.1 STATUS -\r\nContent-Type: ..\r\nContent-Encoding: ..\r\n
 *                        Transfer-Encoding: chunked\r\n\r\n"
 *   DATA             -> "<hex size>\r\n<bytes>\r\n"
 *   END_STREAM       -> "0\r\n\r\n"
 *
 * No other request header is passed on (credentials never leave this file). */
#include "core/llm_h2.h"

#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dynlib.h"
#include "core/jsonw.h"
#include "core/llm_detect.h"

#define H2_FNS(X)                                                                                  \
    X(nghttp2_hd_inflate_new)                                                                      \
    X(nghttp2_hd_inflate_del)                                                                      \
    X(nghttp2_hd_inflate_change_table_size)                                                        \
    X(nghttp2_hd_inflate_hd2)                                                                      \
    X(nghttp2_hd_inflate_end_headers)
struct llm_h2_fns {
    H2_FNS(AS_DL_FIELD)
};
static AS_DYNLIB_DEFINE(llm_h2, H2_FNS, "libnghttp2.so.14", "HTTP/2 LLM call decoding");

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN 24

enum {
    F_DATA = 0,
    F_HEADERS = 1,
    F_RST_STREAM = 3,
    F_SETTINGS = 4,
    F_PUSH_PROMISE = 5,
    F_CONTINUATION = 9,
};
enum { FL_END_STREAM = 0x1, FL_ACK = 0x1, FL_END_HEADERS = 0x4, FL_PADDED = 0x8, FL_PRIO = 0x20 };

typedef struct h2_stream {
    uint32_t id; /* 0: the slot is free */
    as_llm_conn *c;
} h2_stream;

/* One direction: client to server (wrote) or back (read). */
typedef struct h2_dir {
    nghttp2_hd_inflater *hd; /* decodes the header blocks this direction carries */
    size_t preface_left;     /* bytes of the client preface still to check */
    uint8_t fh[9];           /* the frame header being read */
    size_t fh_len;
    uint8_t type, flags;
    uint32_t sid;
    uint32_t left;   /* payload bytes of the frame still to come */
    int in_payload;  /* the frame header was read */
    int pad_pending; /* DATA: the pad length byte is next */
    uint32_t pad;    /* DATA: padding bytes at the end of the frame */
    as_buf pl;       /* a frame other than DATA, kept whole */
    int skip;        /* that frame is larger than AS_H2_FRAME_MAX: skipped */
    /* the header block being decoded (HEADERS or PUSH_PROMISE, then CONTINUATION) */
    int in_block;
    uint32_t block_sid; /* 0: a block whose fields are not needed (PUSH_PROMISE) */
    int block_end;      /* END_STREAM came with it */
    char method[16];
    char path[2048];
    char authority[256];
    int status;
    as_buf keep; /* header lines passed on ("Content-Type: ...\r\n") */
} h2_dir;

struct as_h2 {
    h2_dir d[2]; /* [1] wrote, [0] read */
    h2_stream s[AS_H2_MAX_STREAMS];
};

as_h2 *as_h2_new(void) {
    if (as_dynlib_load(&llm_h2_lib) != 0)
        return NULL;
    as_h2 *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    for (int i = 0; i < 2; i++) {
        as_buf_init(&h->d[i].pl);
        as_buf_init(&h->d[i].keep);
        if (llm_h2.nghttp2_hd_inflate_new(&h->d[i].hd) != 0) {
            as_h2_free(h);
            return NULL;
        }
    }
    h->d[1].preface_left = PREFACE_LEN;
    return h;
}

/* The stream id (0: a free slot), or NULL. */
static h2_stream *slot_of(as_h2 *h, uint32_t id) {
    for (int i = 0; i < AS_H2_MAX_STREAMS; i++)
        if (h->s[i].id == id)
            return &h->s[i];
    return NULL;
}

static h2_stream *stream_find(as_h2 *h, uint32_t id) {
    return id ? slot_of(h, id) : NULL;
}

/* A new stream (a request's first HEADERS), or NULL when AS_H2_MAX_STREAMS are open or
 * memory ran out: that stream is then not followed. */
static h2_stream *stream_new(as_h2 *h, uint32_t id) {
    h2_stream *s = slot_of(h, 0);
    if (!s || !(s->c = as_llm_conn_new()))
        return NULL;
    s->id = id;
    return s;
}

static void stream_end(h2_stream *s) {
    as_llm_conn_free(s->c);
    s->c = NULL;
    s->id = 0;
}

/* Bytes of the stream's HTTP/1.1 re-telling, in the direction they went. */
static void tell(h2_stream *s, int wrote, const void *d, size_t n) {
    if (wrote)
        as_llm_conn_wrote(s->c, d, n);
    else
        as_llm_conn_read(s->c, d, n);
}

static void tell_chunk(h2_stream *s, int wrote, const uint8_t *d, size_t n) {
    if (!s || n == 0 || as_llm_conn_ignored(s->c))
        return; /* an empty chunk would end the body; a passed-through stream hears nothing */
    char hex[24];
    int k = snprintf(hex, sizeof hex, "%zx\r\n", n);
    tell(s, wrote, hex, (size_t)k);
    tell(s, wrote, d, n);
    tell(s, wrote, "\r\n", 2);
}

/* The stream's body ended (END_STREAM): the response's end ends the exchange. */
static void tell_end(as_h2 *h, h2_stream *s, int wrote) {
    if (!s)
        return;
    tell(s, wrote, "0\r\n\r\n", 5);
    if (!wrote)
        stream_end(s);
    (void)h;
}

static void copy_field(char *dst, size_t cap, const uint8_t *v, size_t n) {
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = v[i] == '\r' || v[i] == '\n' || v[i] == ' ' ? '_' : (char)v[i];
    dst[n] = '\0';
}

static int name_is(const nghttp2_nv *nv, const char *name) {
    size_t k = strlen(name);
    return nv->namelen == k && memcmp(nv->name, name, k) == 0;
}

/* One decoded header field of the block in progress. */
static void on_field(h2_dir *d, const nghttp2_nv *nv) {
    if (!d->block_sid)
        return;
    if (name_is(nv, ":method"))
        copy_field(d->method, sizeof d->method, nv->value, nv->valuelen);
    else if (name_is(nv, ":path"))
        copy_field(d->path, sizeof d->path, nv->value, nv->valuelen);
    else if (name_is(nv, ":authority"))
        copy_field(d->authority, sizeof d->authority, nv->value, nv->valuelen);
    else if (name_is(nv, ":status")) {
        char st[8];
        copy_field(st, sizeof st, nv->value, nv->valuelen);
        d->status = atoi(st);
    } else if (name_is(nv, "content-type") || name_is(nv, "content-encoding")) {
        char v[256];
        copy_field(v, sizeof v, nv->value, nv->valuelen);
        as_buf_printf(&d->keep, "%s: %s\r\n",
                      nv->namelen == 12 ? "Content-Type" : "Content-Encoding", v);
    }
}

/* The header block of d ended: the stream hears its request or response head (or its
 * trailers), and its end when END_STREAM came with the block. */
static void block_done(as_h2 *h, int wrote) {
    h2_dir *d = &h->d[wrote];
    uint32_t sid = d->block_sid;
    d->in_block = 0;
    if (!sid)
        return;
    h2_stream *s = stream_find(h, sid);
    as_buf head;
    as_buf_init(&head);
    if (wrote && !s && d->method[0] && (sid & 1)) {
        s = stream_new(h, sid);
        as_buf_printf(&head, "%s %s HTTP/1.1\r\n", d->method, d->path[0] ? d->path : "/");
        if (d->authority[0])
            as_buf_printf(&head, "Host: %s\r\n", d->authority);
        as_buf_puts(&head, "Transfer-Encoding: chunked\r\n\r\n");
    } else if (!wrote && s && d->status >= 100 && d->status <= 999) {
        as_buf_printf(&head, "HTTP/1.1 %03d -\r\n", d->status);
        if (d->status < 200) /* an interim answer: no body, the real one follows */
            as_buf_puts(&head, "\r\n");
        else {
            as_buf_put(&head, d->keep.data, d->keep.len);
            as_buf_puts(&head, "Transfer-Encoding: chunked\r\n\r\n");
        }
    }
    if (s && head.len && !head.oom)
        tell(s, wrote, head.data, head.len);
    as_buf_free(&head);
    if (d->block_end)
        tell_end(h, s, wrote);
}

/* A fragment of a header block (all of HEADERS/PUSH_PROMISE/CONTINUATION minus padding
 * and priority). Returns 0, or -1 on an HPACK error. */
static int block_feed(as_h2 *h, int wrote, const uint8_t *in, size_t n, int final) {
    h2_dir *d = &h->d[wrote];
    for (int guard = 0; guard < 100000; guard++) {
        nghttp2_nv nv;
        int fl = 0;
        ssize_t r =
            llm_h2.nghttp2_hd_inflate_hd2(d->hd, &nv, &fl, (uint8_t *)(uintptr_t)in, n, final);
        if (r < 0)
            return -1;
        in += r;
        n -= (size_t)r;
        if (fl & NGHTTP2_HD_INFLATE_EMIT)
            on_field(d, &nv);
        if (fl & NGHTTP2_HD_INFLATE_FINAL) {
            llm_h2.nghttp2_hd_inflate_end_headers(d->hd);
            block_done(h, wrote);
            return 0;
        }
        if (!(fl & NGHTTP2_HD_INFLATE_EMIT) && n == 0)
            return 0;
    }
    return -1;
}

static void block_start(h2_dir *d, uint32_t sid, int end_stream) {
    d->in_block = 1;
    d->block_sid = sid;
    d->block_end = end_stream;
    d->method[0] = d->path[0] = d->authority[0] = '\0';
    d->status = 0;
    as_buf_reset(&d->keep);
}

/* SETTINGS from one side: its HEADER_TABLE_SIZE bounds what the other side's encoder may
 * use, so the other direction's decoder is told. */
static void settings(as_h2 *h, int wrote, const uint8_t *p, size_t n) {
    for (size_t i = 0; i + 6 <= n; i += 6) {
        uint16_t id = (uint16_t)(p[i] << 8 | p[i + 1]);
        uint32_t v = (uint32_t)p[i + 2] << 24 | (uint32_t)p[i + 3] << 16 | (uint32_t)p[i + 4] << 8 |
                     p[i + 5];
        if (id == 1 && !h->d[!wrote].in_block)
            llm_h2.nghttp2_hd_inflate_change_table_size(h->d[!wrote].hd, v);
    }
}

/* A whole frame other than DATA. Returns 0, or -1 when the connection cannot be followed. */
static int frame(as_h2 *h, int wrote) {
    h2_dir *d = &h->d[wrote];
    const uint8_t *p = (const uint8_t *)d->pl.data;
    size_t n = d->pl.len, off = 0, pad = 0;
    if (d->skip) {
        /* a header block that was not kept leaves the HPACK state unknown */
        return d->type == F_HEADERS || d->type == F_PUSH_PROMISE || d->type == F_CONTINUATION ? -1
                                                                                              : 0;
    }
    if (d->in_block && d->type != F_CONTINUATION)
        return -1; /* a header block must be followed by its CONTINUATION frames */
    switch (d->type) {
    case F_HEADERS:
    case F_PUSH_PROMISE:
        if (d->flags & FL_PADDED) {
            if (n < 1)
                return -1;
            pad = p[0];
            off = 1;
        }
        if (d->type == F_HEADERS && (d->flags & FL_PRIO))
            off += 5;
        if (d->type == F_PUSH_PROMISE)
            off += 4;
        if (off + pad > n)
            return -1;
        block_start(d, d->type == F_HEADERS ? d->sid : 0,
                    d->type == F_HEADERS && (d->flags & FL_END_STREAM));
        return block_feed(h, wrote, p + off, n - off - pad, (d->flags & FL_END_HEADERS) != 0);
    case F_CONTINUATION:
        if (!d->in_block)
            return -1;
        return block_feed(h, wrote, p, n, (d->flags & FL_END_HEADERS) != 0);
    case F_SETTINGS:
        if (!(d->flags & FL_ACK))
            settings(h, wrote, p, n);
        return 0;
    case F_RST_STREAM: {
        h2_stream *s = d->sid ? stream_find(h, d->sid) : NULL;
        if (s)
            stream_end(s); /* an exchange cut short makes no action */
        return 0;
    }
    default: /* PRIORITY, PING, GOAWAY, WINDOW_UPDATE, extensions: nothing to tell */
        return 0;
    }
}

/* The frame header of d was read: the payload follows. */
static int frame_begin(as_h2 *h, int wrote) {
    h2_dir *d = &h->d[wrote];
    d->left = (uint32_t)d->fh[0] << 16 | (uint32_t)d->fh[1] << 8 | d->fh[2];
    d->type = d->fh[3];
    d->flags = d->fh[4];
    d->sid = ((uint32_t)d->fh[5] & 0x7f) << 24 | (uint32_t)d->fh[6] << 16 |
             (uint32_t)d->fh[7] << 8 | d->fh[8];
    d->in_payload = 1;
    d->pad = 0;
    d->pad_pending = d->type == F_DATA && (d->flags & FL_PADDED);
    d->skip = d->type != F_DATA && d->left > AS_H2_FRAME_MAX;
    as_buf_reset(&d->pl);
    if (d->type == F_DATA && d->in_block)
        return -1;
    return 0;
}

/* The payload of d ended. */
static int frame_end(as_h2 *h, int wrote) {
    h2_dir *d = &h->d[wrote];
    d->in_payload = 0;
    d->fh_len = 0;
    if (d->type == F_DATA) {
        if (d->flags & FL_END_STREAM)
            tell_end(h, stream_find(h, d->sid), wrote);
        return 0;
    }
    int r = frame(h, wrote);
    if (d->pl.cap > 4096) { /* a large frame's memory does not stay */
        as_buf_free(&d->pl);
        as_buf_init(&d->pl);
    }
    return r;
}

int as_h2_feed(as_h2 *h, int wrote, const void *data, size_t len) {
    if (!h)
        return -1;
    h2_dir *d = &h->d[wrote ? 1 : 0];
    wrote = wrote ? 1 : 0;
    const uint8_t *p = data;
    while (len > 0) {
        if (d->preface_left) {
            size_t at = PREFACE_LEN - d->preface_left;
            size_t k = len < d->preface_left ? len : d->preface_left;
            if (memcmp(p, PREFACE + at, k) != 0)
                return -1;
            d->preface_left -= k;
            p += k, len -= k;
            continue;
        }
        if (!d->in_payload) {
            size_t k = 9 - d->fh_len;
            if (k > len)
                k = len;
            memcpy(d->fh + d->fh_len, p, k);
            d->fh_len += k;
            p += k, len -= k;
            if (d->fh_len < 9)
                return 0;
            if (frame_begin(h, wrote) != 0)
                return -1;
            if (d->left == 0 && frame_end(h, wrote) != 0)
                return -1;
            continue;
        }
        size_t k = len < d->left ? len : d->left;
        if (d->type == F_DATA) {
            if (d->pad_pending) {
                d->pad = p[0];
                d->pad_pending = 0;
                p++, len--, d->left--;
                if (d->pad > d->left)
                    return -1;
            } else {
                /* data bytes before the padding */
                size_t body = d->left > d->pad ? d->left - d->pad : 0;
                size_t t = k < body ? k : body;
                tell_chunk(stream_find(h, d->sid), wrote, p, t);
                /* the rest of k, if any, is padding */
                p += k, len -= k, d->left -= (uint32_t)k;
            }
        } else {
            if (!d->skip)
                as_buf_put(&d->pl, p, k);
            p += k, len -= k, d->left -= (uint32_t)k;
        }
        if (d->left == 0 && frame_end(h, wrote) != 0)
            return -1;
    }
    return 0;
}

void as_h2_free(as_h2 *h) {
    if (!h)
        return;
    for (int i = 0; i < AS_H2_MAX_STREAMS; i++)
        if (h->s[i].id)
            stream_end(&h->s[i]);
    for (int i = 0; i < 2; i++) {
        if (h->d[i].hd)
            llm_h2.nghttp2_hd_inflate_del(h->d[i].hd);
        as_buf_free(&h->d[i].pl);
        as_buf_free(&h->d[i].keep);
    }
    free(h);
}
