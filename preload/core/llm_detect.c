/* llm_detect.c - exchanges of a TLS connection recognised as language-model API calls
 * (llm_detect.h): request and response framing by llm_http.c, gzip/deflate bodies through
 * zlib opened on demand, Server-Sent Events reassembled, bodies read with cJSON (opened on
 * demand) once an exchange ends; one action per exchange through agentsight_track_action.
 * Request headers are read for Host only and never recorded. */
#include "core/llm_detect.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <brotli/decode.h>
#include <zlib.h>

#include "agentsight.h"
#include "core/action.h"
#include "core/settings.h"
#include "core/clock.h"
#include "core/dynlib.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/llm_http.h"
#include "core/pipeline.h"

as_llm_opts as_llm = {0, AS_LLM_CAPTURE_RESPONSE, 4096};

#define REQ_BODY_MAX (256u << 10)  /* request bytes kept to find model and stream */
#define RESP_BODY_MAX (1u << 20)   /* response bytes kept (non-stream) */
#define SSE_EVENT_MAX (256u << 10) /* one event's data */

/* ---- libraries opened on demand ---- */
#define LLM_CJSON_FNS(X)                                                                           \
    X(cJSON_Delete)                                                                                \
    X(cJSON_GetArrayItem)                                                                          \
    X(cJSON_GetArraySize)                                                                          \
    X(cJSON_GetObjectItemCaseSensitive)                                                            \
    X(cJSON_ParseWithLength)                                                                       \
    X(cJSON_PrintUnformatted)
struct llm_cj_fns {
    LLM_CJSON_FNS(AS_DL_FIELD)
};
static AS_DYNLIB_DEFINE(llm_cj, LLM_CJSON_FNS, "libcjson.so.1", "LLM call decoding");

#define LLM_Z_FNS(X)                                                                               \
    X(inflateInit2_)                                                                               \
    X(inflate)                                                                                     \
    X(inflateEnd)
struct llm_z_fns {
    LLM_Z_FNS(AS_DL_FIELD)
};
static AS_DYNLIB_DEFINE(llm_z, LLM_Z_FNS, "libz.so.1", "compressed LLM responses");

#define LLM_BR_FNS(X)                                                                              \
    X(BrotliDecoderCreateInstance)                                                                 \
    X(BrotliDecoderDecompressStream)                                                               \
    X(BrotliDecoderDestroyInstance)
struct llm_br_fns {
    LLM_BR_FNS(AS_DL_FIELD)
};
static AS_DYNLIB_DEFINE(llm_br, LLM_BR_FNS, "libbrotlidec.so.1", "brotli LLM responses");

static as_llm_emit_fn g_emit;
void as_llm_set_emit(as_llm_emit_fn fn) {
    g_emit = fn;
}

/* Exporter side: an AS_MSG_ACTION payload is a packed as_action (as the C API writes). */
static int decode_packed(const void *payload, size_t len, as_action *out, as_buf *scratch) {
    (void)scratch;
    return as_action_unpack(payload, len, out);
}

int as_llm_arm(void) {
    as_pipe_register(AS_MSG_ACTION, decode_packed);
    return as_pipe_arm();
}

/* Queues a finished action into the calling thread's ring, as the interposer's call
 * records go: the armed pipeline starts at the first one. A full ring drops it (counted). */
static void queue_action(const agentsight_action *action) {
    int64_t now = as_clock_unix_ns();
    as_action a;
    char msg[256];
    if (as_action_validate(action, now, as_settings_conversation_id(), &a, msg, sizeof msg) != 0)
        return;
    void *p = as_pipe_reserve(AS_MSG_ACTION, as_action_pack_size(&a), 0);
    if (!p)
        return;
    as_action_pack(&a, p);
    as_pipe_commit(p);
    as_pipe_nudge_if_busy();
}

typedef struct usage {
    int64_t in, out, cache_read, cache_write, reasoning;
} usage;

typedef struct sse {
    as_buf line; /* current line */
    as_buf data; /* data of the current event */
    char event[64];
} sse;

struct as_llm_conn {
    as_http req, resp;
    /* the exchange in progress */
    int active;   /* a request was seen and its response not yet finished */
    int llm;      /* its path is a model API's */
    int provider; /* 0 openai, 1 anthropic */
    const char *op;
    char method[16];
    char path[256];
    char host[256];
    as_buf req_body;
    int64_t t_start_ns; /* unix ns of the first request byte */
    int64_t t_first_ns; /* first text of a stream */
    int status;
    int sse;
    int encoding; /* 0 none, 1 gzip/deflate, 2 br */
    z_stream *z;
    BrotliDecoderState *br;
    int z_failed;
    as_buf resp_body;
    sse ev;
    /* what a stream said so far */
    char resp_model[128];
    as_buf text;
    usage u;
    as_buf err;
    int ignored;
    int seen_write; /* the program wrote on this connection before */
    int interim;    /* the response that just ended was a 1xx */
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void copy_n(char *dst, size_t cap, const char *s, size_t n) {
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static int ends_with(const char *s, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n >= k && memcmp(s + n - k, suf, k) == 0;
}

/* Recognises the API by the path (query string ignored): sets llm, provider, op. */
static void classify(as_llm_conn *c) {
    size_t n = strcspn(c->path, "?");
    c->llm = 1;
    c->provider = 0;
    if (ends_with(c->path, n, "/chat/completions"))
        c->op = "chat";
    else if (ends_with(c->path, n, "/responses"))
        c->op = "chat";
    else if (ends_with(c->path, n, "/completions"))
        c->op = "text_completion";
    else if (ends_with(c->path, n, "/embeddings"))
        c->op = "embeddings";
    else if (ends_with(c->path, n, "/messages"))
        c->op = "chat", c->provider = 1;
    else
        c->llm = 0;
    if (strcmp(c->method, "POST") != 0)
        c->llm = 0;
}

/* Empties b, giving its memory back when an exchange made it large (a keep-alive
 * connection keeps little between exchanges). */
static void buf_shrink(as_buf *b) {
    if (b->cap > (64u << 10)) {
        as_buf_free(b);
        as_buf_init(b);
    }
    as_buf_reset(b);
}

static void reset_exchange(as_llm_conn *c) {
    c->active = c->llm = c->status = c->sse = c->encoding = c->z_failed = 0;
    c->method[0] = c->path[0] = c->host[0] = c->resp_model[0] = c->ev.event[0] = '\0';
    buf_shrink(&c->req_body);
    buf_shrink(&c->resp_body);
    buf_shrink(&c->text);
    buf_shrink(&c->err);
    buf_shrink(&c->ev.line);
    buf_shrink(&c->ev.data);
    c->t_start_ns = c->t_first_ns = 0;
    c->u = (usage){-1, -1, -1, -1, -1};
    if (c->z) {
        llm_z.inflateEnd(c->z);
        free(c->z);
        c->z = NULL;
    }
    if (c->br) {
        llm_br.BrotliDecoderDestroyInstance(c->br);
        c->br = NULL;
    }
}

/* ---- JSON helpers (cJSON opened on demand) ---- */
static cJSON *jget(const cJSON *o, const char *k) {
    return o ? llm_cj.cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}
static const char *jstr(const cJSON *o, const char *k) {
    cJSON *v = jget(o, k);
    return v && (v->type & 0xff) == cJSON_String ? v->valuestring : NULL;
}
static int64_t jint(const cJSON *o, const char *k) {
    cJSON *v = jget(o, k);
    return v && (v->type & 0xff) == cJSON_Number ? (int64_t)v->valuedouble : -1;
}
static cJSON *jidx(const cJSON *a, int i) {
    return a && (a->type & 0xff) == cJSON_Array ? llm_cj.cJSON_GetArrayItem(a, i) : NULL;
}

static void set_if(int64_t *dst, int64_t v) {
    if (v >= 0)
        *dst = v;
}

/* Reads a usage object of either shape into u. */
static void read_usage(const cJSON *us, usage *u) {
    if (!us)
        return;
    set_if(&u->in, jint(us, "prompt_tokens"));
    set_if(&u->out, jint(us, "completion_tokens"));
    set_if(&u->in, jint(us, "input_tokens"));
    set_if(&u->out, jint(us, "output_tokens"));
    set_if(&u->cache_read, jint(us, "cache_read_input_tokens"));
    set_if(&u->cache_write, jint(us, "cache_creation_input_tokens"));
    set_if(&u->cache_read, jint(jget(us, "prompt_tokens_details"), "cached_tokens"));
    set_if(&u->cache_read, jint(jget(us, "input_tokens_details"), "cached_tokens"));
    set_if(&u->reasoning, jint(jget(us, "completion_tokens_details"), "reasoning_tokens"));
    set_if(&u->reasoning, jint(jget(us, "output_tokens_details"), "reasoning_tokens"));
}

/* Appends text to the assistant's text, bounded by max_string (+ 4 for a cut character). */
static void add_text(as_llm_conn *c, const char *s) {
    if (!s || !*s)
        return;
    if (!c->t_first_ns)
        c->t_first_ns = now_ns();
    size_t n = strlen(s), cap = (size_t)as_llm.max_string + 4;
    if (c->text.len >= cap)
        return;
    if (n > cap - c->text.len)
        n = cap - c->text.len;
    as_buf_put(&c->text, s, n);
}

static void read_error(as_llm_conn *c, const cJSON *root) {
    cJSON *e = jget(root, "error");
    const char *m =
        e && (e->type & 0xff) == cJSON_Object ? jstr(e, "message") : jstr(root, "error");
    if (m && c->err.len == 0)
        as_buf_puts(&c->err, m);
}

/* A whole (non-stream) response body. */
static void read_body(as_llm_conn *c, const cJSON *r) {
    const char *m = jstr(r, "model");
    if (m)
        copy_n(c->resp_model, sizeof c->resp_model, m, strlen(m));
    read_usage(jget(r, "usage"), &c->u);
    read_error(c, r);
    cJSON *ch0 = jidx(jget(r, "choices"), 0);
    if (ch0) {
        add_text(c, jstr(jget(ch0, "message"), "content"));
        add_text(c, jstr(ch0, "text"));
    }
    cJSON *content = jget(r, "content"); /* anthropic */
    for (int i = 0; content && i < 64; i++) {
        cJSON *b = jidx(content, i);
        if (!b)
            break;
        if (jstr(b, "type") && strcmp(jstr(b, "type"), "text") == 0)
            add_text(c, jstr(b, "text"));
    }
    cJSON *output = jget(r, "output"); /* responses */
    for (int i = 0; output && i < 64; i++) {
        cJSON *it = jidx(output, i);
        if (!it)
            break;
        cJSON *cs = jget(it, "content");
        for (int k = 0; cs && k < 64; k++) {
            cJSON *b = jidx(cs, k);
            if (!b)
                break;
            if (jstr(b, "type") && strcmp(jstr(b, "type"), "output_text") == 0)
                add_text(c, jstr(b, "text"));
        }
    }
}

/* One Server-Sent Event's data, either provider's shape. */
static void sse_event(as_llm_conn *c, const char *d, size_t n) {
    if (n == 6 && memcmp(d, "[DONE]", 6) == 0)
        return;
    cJSON *r = llm_cj.cJSON_ParseWithLength(d, n);
    if (!r)
        return;
    const char *type = jstr(r, "type");
    const char *m = jstr(r, "model");
    if (m)
        copy_n(c->resp_model, sizeof c->resp_model, m, strlen(m));
    read_error(c, r);
    if (!type) { /* OpenAI chat / completions chunk */
        cJSON *ch0 = jidx(jget(r, "choices"), 0);
        if (ch0) {
            add_text(c, jstr(jget(ch0, "delta"), "content"));
            add_text(c, jstr(ch0, "text"));
        }
        read_usage(jget(r, "usage"), &c->u);
    } else if (strcmp(type, "message_start") == 0) {
        cJSON *msg = jget(r, "message");
        const char *mm = jstr(msg, "model");
        if (mm)
            copy_n(c->resp_model, sizeof c->resp_model, mm, strlen(mm));
        read_usage(jget(msg, "usage"), &c->u);
    } else if (strcmp(type, "content_block_delta") == 0) {
        add_text(c, jstr(jget(r, "delta"), "text"));
    } else if (strcmp(type, "message_delta") == 0) {
        read_usage(jget(r, "usage"), &c->u);
    } else if (strcmp(type, "response.output_text.delta") == 0) {
        add_text(c, jstr(r, "delta"));
    } else if (strcmp(type, "response.completed") == 0 || strcmp(type, "response.failed") == 0) {
        cJSON *resp = jget(r, "response");
        const char *mm = jstr(resp, "model");
        if (mm)
            copy_n(c->resp_model, sizeof c->resp_model, mm, strlen(mm));
        read_usage(jget(resp, "usage"), &c->u);
        read_error(c, resp);
    }
    llm_cj.cJSON_Delete(r);
}

/* Decoded response body bytes of an SSE stream: lines to events. */
static void sse_feed(as_llm_conn *c, const char *d, size_t n) {
    sse *s = &c->ev;
    while (n > 0) {
        const char *nl = memchr(d, '\n', n);
        size_t k = nl ? (size_t)(nl - d) : n;
        if (s->line.len + k <= SSE_EVENT_MAX)
            as_buf_put(&s->line, d, k);
        if (!nl)
            return;
        d += k + 1;
        n -= k + 1;
        size_t ll = s->line.len;
        const char *l = s->line.data ? s->line.data : "";
        if (ll && l[ll - 1] == '\r')
            ll--;
        if (ll == 0) {
            if (s->data.len)
                sse_event(c, s->data.data, s->data.len);
            as_buf_reset(&s->data);
            s->event[0] = '\0';
        } else if (ll >= 5 && memcmp(l, "data:", 5) == 0) {
            size_t off = 5 + (ll > 5 && l[5] == ' ');
            if (s->data.len)
                as_buf_putc(&s->data, '\n');
            if (s->data.len + ll - off <= SSE_EVENT_MAX)
                as_buf_put(&s->data, l + off, ll - off);
        } else if (ll >= 6 && memcmp(l, "event:", 6) == 0) {
            size_t off = 6 + (ll > 6 && l[6] == ' ');
            copy_n(s->event, sizeof s->event, l + off, ll - off);
        }
        as_buf_reset(&s->line);
    }
}

/* Decoded (plain) response body bytes. */
static void body_plain(as_llm_conn *c, const char *d, size_t n) {
    if (c->sse) {
        sse_feed(c, d, n);
        return;
    }
    if (c->resp_body.len + n <= RESP_BODY_MAX)
        as_buf_put(&c->resp_body, d, n);
}

/* ---- the request direction ---- */
static void req_start(void *ctx, const char *line, size_t len) {
    as_llm_conn *c = ctx;
    /* No client sends a request on a connection whose answer runs until it closes: this
     * is a new connection on a reused SSL* (its end went unseen): that answer ended. */
    if (c->resp.state == AS_HTTP_BODY_CLOSE)
        as_http_eof(&c->resp);
    reset_exchange(c); /* a request never answered is dropped */
    c->active = 1;
    c->t_start_ns = now_ns();
    const char *sp = memchr(line, ' ', len);
    if (!sp)
        return;
    copy_n(c->method, sizeof c->method, line, (size_t)(sp - line));
    const char *p = sp + 1;
    const char *sp2 = memchr(p, ' ', len - (size_t)(p - line));
    size_t plen = sp2 ? (size_t)(sp2 - p) : len - (size_t)(p - line);
    copy_n(c->path, sizeof c->path, p, plen);
    classify(c);
}

static void req_header(void *ctx, const char *name, size_t nlen, const char *v, size_t vlen) {
    as_llm_conn *c = ctx;
    /* Only Host is read; no other request header (credentials) is ever kept. */
    if (nlen == 4 && strncasecmp(name, "host", 4) == 0)
        copy_n(c->host, sizeof c->host, v, vlen);
}

static void req_body(void *ctx, const char *d, size_t n) {
    as_llm_conn *c = ctx;
    if (c->llm && c->req_body.len + n <= REQ_BODY_MAX)
        as_buf_put(&c->req_body, d, n);
}

static const as_http_cb req_cb = {req_start, req_header, NULL, req_body, NULL};

/* ---- the response direction ---- */
static void resp_start(void *ctx, const char *line, size_t len) {
    as_llm_conn *c = ctx;
    c->status = len >= 12 ? atoi(line + 9) : 0;
}

static void resp_header(void *ctx, const char *name, size_t nlen, const char *v, size_t vlen) {
    as_llm_conn *c = ctx;
    if (!c->llm)
        return;
    if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0)
        c->sse = vlen >= 17 && strncasecmp(v, "text/event-stream", 17) == 0;
    else if (nlen == 16 && strncasecmp(name, "content-encoding", 16) == 0)
        c->encoding = (vlen == 4 && strncasecmp(v, "gzip", 4) == 0) ||
                              (vlen == 7 && strncasecmp(v, "deflate", 7) == 0)
                          ? 1
                      : vlen == 2 && strncasecmp(v, "br", 2) == 0 ? 2
                                                                  : 0;
}

static int resp_headers_done(void *ctx) {
    as_llm_conn *c = ctx;
    int s = c->status;
    if (s >= 100 && s < 200) {
        c->status = 0; /* an interim answer (100 Continue): the real one follows */
        c->interim = 1;
        return 1;
    }
    if (c->llm && as_dynlib_load(&llm_cj_lib) != 0)
        c->llm = 0; /* without cJSON nothing is decoded (said once by dynlib) */
    return s == 204 || s == 304 || strcmp(c->method, "HEAD") == 0;
}

/* Brotli-compressed body bytes (libbrotlidec opened on demand). */
static void body_brotli(as_llm_conn *c, const char *d, size_t n) {
    if (!c->br) {
        if (as_dynlib_load(&llm_br_lib) != 0 ||
            !(c->br = llm_br.BrotliDecoderCreateInstance(NULL, NULL, NULL))) {
            c->z_failed = 1;
            return;
        }
    }
    char out[16384];
    const uint8_t *in = (const uint8_t *)d;
    size_t avail_in = n;
    for (int guard = 0; guard < 4096; guard++) {
        uint8_t *o = (uint8_t *)out;
        size_t avail_out = sizeof out;
        BrotliDecoderResult rc =
            llm_br.BrotliDecoderDecompressStream(c->br, &avail_in, &in, &avail_out, &o, NULL);
        if (sizeof out - avail_out)
            body_plain(c, out, sizeof out - avail_out);
        if (rc == BROTLI_DECODER_RESULT_ERROR) {
            c->z_failed = 1;
            return;
        }
        if (rc != BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT)
            return;
    }
}

static void resp_body(void *ctx, const char *d, size_t n) {
    as_llm_conn *c = ctx;
    if (!c->llm)
        return;
    if (!c->encoding) {
        body_plain(c, d, n);
        return;
    }
    if (c->z_failed)
        return;
    if (c->encoding == 2) {
        body_brotli(c, d, n);
        return;
    }
    if (!c->z) {
        if (as_dynlib_load(&llm_z_lib) != 0 || !(c->z = calloc(1, sizeof *c->z))) {
            c->z_failed = 1;
            return;
        }
        /* 32 + 15: zlib or gzip header detected */
        if (llm_z.inflateInit2_(c->z, 32 + 15, ZLIB_VERSION, (int)sizeof(z_stream)) != Z_OK) {
            free(c->z);
            c->z = NULL;
            c->z_failed = 1;
            return;
        }
    }
    char out[16384];
    c->z->next_in = (Bytef *)d;
    c->z->avail_in = (uInt)n;
    for (int guard = 0; guard < 4096; guard++) {
        c->z->next_out = (Bytef *)out;
        c->z->avail_out = sizeof out;
        int rc = llm_z.inflate(c->z, Z_NO_FLUSH);
        size_t got = sizeof out - c->z->avail_out;
        if (got)
            body_plain(c, out, got);
        if (rc == Z_STREAM_END || (rc != Z_OK && rc != Z_BUF_ERROR)) {
            if (rc != Z_STREAM_END)
                c->z_failed = 1;
            break;
        }
        if (c->z->avail_in == 0 && c->z->avail_out != 0)
            break;
    }
}

static void emit(as_llm_conn *c);

static void resp_done(void *ctx) {
    as_llm_conn *c = ctx;
    if (c->interim) {
        c->interim = 0; /* the exchange goes on */
        return;
    }
    if (c->active && c->llm && c->status)
        emit(c);
    reset_exchange(c);
}

static const as_http_cb resp_cb = {resp_start, resp_header, resp_headers_done, resp_body,
                                   resp_done};

/* ---- the action ---- */
static void put_text_bounded(as_buf *b, const char *s, size_t n, size_t max) {
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--; /* never cut a character */
    }
    as_json_str(b, s, n);
}

/* Appends at most max bytes of s (n bytes) to b, never cutting a character, with bytes
 * that are not UTF-8 replaced by U+FFFD: a server's bytes must not get the action refused
 * by validation (action_name, response and error_msg are text fields). */
static void put_utf8_bounded(as_buf *b, const char *s, size_t n, size_t max) {
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    size_t at = b->len;
    as_utf8_repair(b, s, n);
    if (!b->oom && b->len - at > max) { /* each bad byte became 3 */
        size_t k = max;
        while (k > 0 && ((unsigned char)b->data[at + k] & 0xc0) == 0x80)
            k--;
        b->len = at + k;
    }
}

static void emit(as_llm_conn *c) {
    int64_t t_end = now_ns();
    cJSON *req = NULL;
    if (c->req_body.len)
        req = llm_cj.cJSON_ParseWithLength(c->req_body.data, c->req_body.len);
    const char *req_model = jstr(req, "model");
    cJSON *st = jget(req, "stream");
    int stream = c->sse || (st && (st->type & 0xff) == cJSON_True);
    if (!c->sse && c->resp_body.len) {
        cJSON *r = llm_cj.cJSON_ParseWithLength(c->resp_body.data, c->resp_body.len);
        if (r) {
            read_body(c, r);
            llm_cj.cJSON_Delete(r);
        }
    }
    as_buf name, tools, meta, errm, resp;
    as_buf_init(&name);
    as_buf_init(&tools);
    as_buf_init(&meta);
    as_buf_init(&errm);
    as_buf_init(&resp);
    as_buf_printf(&name, "%s%s", c->op, req_model ? " " : "");
    if (req_model) /* a model name that fits in action_name (AGENTSIGHT_MAX_NAME) */
        put_utf8_bounded(&name, req_model, strlen(req_model), 200);
    const char *prov = c->provider ? "anthropic" : "openai";
    as_buf_puts(&tools, "{\"provider\":");
    as_json_cstr(&tools, prov);
    as_buf_puts(&tools, ",\"request_model\":");
    as_json_cstr(&tools, req_model);
    as_buf_puts(&tools, ",\"response_model\":");
    as_json_cstr(&tools, c->resp_model[0] ? c->resp_model : NULL);
    as_buf_puts(&tools, ",\"endpoint\":");
    as_json_str(&tools, c->path, strcspn(c->path, "?"));
    as_buf_printf(&tools, ",\"stream\":%s,\"http_status\":%d", stream ? "true" : "false",
                  c->status);
    as_buf_puts(&tools, ",\"server_address\":");
    as_json_cstr(&tools, c->host[0] ? c->host : NULL);
    as_buf_puts(&tools, ",\"usage\":{");
    int first = 1;
    const struct {
        const char *k;
        int64_t v;
    } us[] = {{"input_tokens", c->u.in},
              {"output_tokens", c->u.out},
              {"cache_read_input_tokens", c->u.cache_read},
              {"cache_creation_input_tokens", c->u.cache_write},
              {"reasoning_tokens", c->u.reasoning}};
    for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
        if (us[i].v < 0)
            continue;
        as_buf_printf(&tools, "%s\"%s\":%lld", first ? "" : ",", us[i].k, (long long)us[i].v);
        first = 0;
    }
    as_buf_putc(&tools, '}');
    if (as_llm.capture >= AS_LLM_CAPTURE_PROMPTS && req) {
        cJSON *prompt = jget(req, "messages");
        if (!prompt)
            prompt = jget(req, "input");
        if (!prompt)
            prompt = jget(req, "prompt");
        char *p = prompt ? llm_cj.cJSON_PrintUnformatted(prompt) : NULL;
        if (p) {
            as_buf_puts(&tools, ",\"prompt\":");
            put_text_bounded(&tools, p, strlen(p), (size_t)as_llm.max_string);
            free(p);
        }
    }
    as_buf_putc(&tools, '}');
    as_buf_putc(&meta, '{');
    as_buf_puts(&meta, "\"source\":\"llm\"");
    if (stream && c->t_first_ns)
        as_buf_printf(&meta, ",\"time_to_first_token_ms\":%lld",
                      (long long)((c->t_first_ns - c->t_start_ns) / 1000000));
    as_buf_putc(&meta, '}');
    if (c->status >= 400 || c->err.len) {
        as_buf_printf(&errm, "HTTP %d", c->status);
        if (c->err.len) {
            as_buf_puts(&errm, ": ");
            put_utf8_bounded(&errm, c->err.data, c->err.len, 1024);
        }
    }
    if (c->text.len && as_llm.capture >= AS_LLM_CAPTURE_RESPONSE)
        put_utf8_bounded(&resp, c->text.data, c->text.len, (size_t)as_llm.max_string);
    char started[40], ended[40];
    as_iso_format(c->t_start_ns, started);
    as_iso_format(t_end, ended);
    agentsight_action a;
    memset(&a, 0, sizeof a);
    a.action_name = as_buf_cstr(&name);
    a.started_at = started;
    a.ended_at = ended;
    a.duration_ms = (t_end - c->t_start_ns) / 1000000;
    a.tools_used = as_buf_cstr(&tools);
    a.metadata = as_buf_cstr(&meta);
    a.response = resp.len ? as_buf_cstr(&resp) : NULL;
    a.error_msg = errm.len ? as_buf_cstr(&errm) : NULL;
    if (!name.oom && !tools.oom && !meta.oom && !errm.oom && !resp.oom) {
        if (g_emit)
            g_emit(&a);
        else
            queue_action(&a);
    }
    as_buf_free(&name);
    as_buf_free(&tools);
    as_buf_free(&meta);
    as_buf_free(&errm);
    as_buf_free(&resp);
    if (req)
        llm_cj.cJSON_Delete(req);
}

/* ---- the connection ---- */
as_llm_conn *as_llm_conn_new(void) {
    as_llm_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    as_http_init(&c->req, 0, &req_cb, c);
    as_http_init(&c->resp, 1, &resp_cb, c);
    as_buf_init(&c->req_body);
    as_buf_init(&c->resp_body);
    as_buf_init(&c->text);
    as_buf_init(&c->err);
    as_buf_init(&c->ev.line);
    as_buf_init(&c->ev.data);
    reset_exchange(c);
    return c;
}

void as_llm_conn_wrote(as_llm_conn *c, const void *data, size_t len) {
    if (!c || c->ignored)
        return;
    if (!c->seen_write && len >= 14 && memcmp(data, "PRI * HTTP/2.0", 14) == 0) {
        /* HTTP/2 (ALPN h2): not decoded; said once per process (diagnostics: once per run) */
        static int told;
        if (!__atomic_exchange_n(&told, 1, __ATOMIC_RELAXED))
            as_warn("llm: an HTTP/2 connection was seen: its exchanges are not decoded (HTTP/1.1 "
                    "only; curl: --http1.1)");
        c->ignored = 1;
        return;
    }
    c->seen_write = 1;
    as_http_feed(&c->req, data, len);
    if (c->req.state == AS_HTTP_BROKEN)
        c->ignored = 1;
}

void as_llm_conn_read(as_llm_conn *c, const void *data, size_t len) {
    if (!c || c->ignored)
        return;
    as_http_feed(&c->resp, data, len);
    if (c->resp.state == AS_HTTP_BROKEN)
        c->ignored = 1;
}

int as_llm_conn_ignored(const as_llm_conn *c) {
    return !c || c->ignored;
}

void as_llm_conn_free(as_llm_conn *c) {
    if (!c)
        return;
    if (!c->ignored)
        as_http_eof(&c->resp);
    reset_exchange(c);
    as_buf_free(&c->req_body);
    as_buf_free(&c->resp_body);
    as_buf_free(&c->text);
    as_buf_free(&c->err);
    as_buf_free(&c->ev.line);
    as_buf_free(&c->ev.data);
    free(c);
}
