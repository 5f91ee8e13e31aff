/* llm_detect.c - exchanges of a TLS connection recognised as language-model API calls
 * (llm_detect.h): request and response framing by llm_http.c, gzip/deflate bodies through
 * zlib opened on demand, Server-Sent Events reassembled, bodies read with cJSON (opened on
 * demand) once an exchange ends; one action per exchange through agentsight_track_action.
 * Request headers are read for Host only and never recorded. */
#include "core/llm_detect.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <brotli/decode.h>
#include <zlib.h>
#include <zstd.h>

#include "agentsight.h"
#include "core/action.h"
#include "core/settings.h"
#include "core/clock.h"
#include "core/dynlib.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/llm_h2.h"
#include "core/llm_http.h"
#include "core/pipeline.h"

as_llm_opts as_llm = {0, AS_LLM_CAPTURE_RESPONSE, 4096};

/* A body is kept whole up to its cap; past it only its first cap bytes and its last
 * BODY_TAIL bytes are (kept.*), where the model (first) and the usage (last) are found. */
#define REQ_BODY_MAX (256u << 10)  /* request bytes kept to find model and stream */
#define RESP_BODY_MAX (256u << 10) /* response bytes kept (non-stream) */
#define BODY_TAIL (8u << 10)
#define PASS_MIN (16 << 10) /* a first non-API answer this large passes the connection through */
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
static AS_DYNLIB_DEFINE_DEEP(llm_z, LLM_Z_FNS, "libz.so.1", "compressed LLM responses",
                             "inflateReset2 libz.");

#define LLM_BR_FNS(X)                                                                              \
    X(BrotliDecoderCreateInstance)                                                                 \
    X(BrotliDecoderDecompressStream)                                                               \
    X(BrotliDecoderDestroyInstance)
struct llm_br_fns {
    LLM_BR_FNS(AS_DL_FIELD)
};
static AS_DYNLIB_DEFINE_DEEP(llm_br, LLM_BR_FNS, "libbrotlidec.so.1", "brotli LLM responses",
                             "BrotliDecoderCreateInstance libbrotlidec.");

#define LLM_ZSTD_FNS(X)                                                                            \
    X(ZSTD_createDStream)                                                                          \
    X(ZSTD_decompressStream)                                                                       \
    X(ZSTD_freeDStream)                                                                            \
    X(ZSTD_isError)
struct llm_zstd_fns {
    LLM_ZSTD_FNS(AS_DL_FIELD)
};
static AS_DYNLIB_DEFINE(llm_zstd, LLM_ZSTD_FNS, "libzstd.so.1", "zstd LLM responses");

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

enum { PROV_OPENAI, PROV_ANTHROPIC, PROV_OLLAMA };
static const char *const prov_names[] = {"openai", "anthropic", "ollama"};

typedef struct usage {
    int64_t in, out, cache_read, cache_write, reasoning;
} usage;

/* A body as kept: its head (up to a cap), and once that is full the last BODY_TAIL bytes
 * in a ring (allocated then). */
typedef struct kept {
    as_buf head;
    char *tail;
    uint64_t total; /* bytes of the body seen */
} kept;

static void kept_put(kept *k, size_t cap, const char *d, size_t n) {
    k->total += n;
    if (k->head.len < cap) {
        size_t t = cap - k->head.len < n ? cap - k->head.len : n;
        as_buf_put(&k->head, d, t);
        d += t, n -= t;
    }
    if (!n || (!k->tail && !(k->tail = malloc(BODY_TAIL))))
        return;
    if (n > BODY_TAIL) {
        d += n - BODY_TAIL;
        n = BODY_TAIL;
    }
    uint64_t past = k->total - n - k->head.len; /* bytes that went to the ring before */
    for (size_t i = 0; i < n; i++)
        k->tail[(past + i) % BODY_TAIL] = d[i];
}

/* 1 when the whole body is in k->head. */
static int kept_whole(const kept *k) {
    return k->total == k->head.len;
}

/* The last bytes of a body that outgrew its head, in order, into out (BODY_TAIL bytes);
 * returns how many. */
static size_t kept_tail(const kept *k, char *out) {
    uint64_t past = k->total - k->head.len;
    if (!k->tail || !past)
        return 0;
    size_t n = past < BODY_TAIL ? (size_t)past : BODY_TAIL;
    for (size_t i = 0; i < n; i++)
        out[i] = k->tail[(past - n + i) % BODY_TAIL];
    return n;
}

static void kept_free(kept *k) {
    as_buf_free(&k->head);
    as_buf_init(&k->head);
    free(k->tail);
    k->tail = NULL;
    k->total = 0;
}

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
    int provider; /* PROV_* */
    const char *op;
    char method[16];
    char path[256];
    char host[256];
    kept req_body;
    int64_t t_start_ns; /* unix ns of the first request byte */
    int64_t t_first_ns; /* first text of a stream */
    int status;
    int sse;
    int ndjson;   /* JSON lines (Ollama's streams) */
    int encoding; /* 0 none, 1 gzip/deflate, 2 br, 3 zstd */
    z_stream *z;
    BrotliDecoderState *br;
    ZSTD_DStream *zs;
    int z_failed;
    kept resp_body;
    sse ev;
    /* what a stream said so far */
    char resp_model[128];
    as_buf text;
    usage u;
    as_buf err;
    int ignored;    /* not HTTP/1.x, or a pass-through connection (as_llm_conn_ignored) */
    int json;       /* the response's Content-Type is JSON or an event stream */
    int exchanges;  /* responses finished on this connection */
    int seen_write; /* the program wrote on this connection before */
    as_h2 *h2;      /* an HTTP/2 connection: its streams are exchanges of their own */
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
        c->op = "chat", c->provider = PROV_ANTHROPIC;
    else if (ends_with(c->path, n, "/api/chat"))
        c->op = "chat", c->provider = PROV_OLLAMA;
    else if (ends_with(c->path, n, "/api/generate"))
        c->op = "text_completion", c->provider = PROV_OLLAMA;
    else if (ends_with(c->path, n, "/api/embed") || ends_with(c->path, n, "/api/embeddings"))
        c->op = "embeddings", c->provider = PROV_OLLAMA;
    else
        c->llm = 0;
    if (strcmp(c->method, "POST") != 0)
        c->llm = 0;
}

/* Empties b and gives its memory back: a keep-alive connection keeps no body bytes
 * between exchanges. */
static void buf_shrink(as_buf *b) {
    as_buf_free(b);
    as_buf_init(b);
}

static void reset_exchange(as_llm_conn *c) {
    c->active = c->llm = c->status = c->sse = c->ndjson = c->encoding = c->z_failed = c->json = 0;
    c->method[0] = c->path[0] = c->host[0] = c->resp_model[0] = c->ev.event[0] = '\0';
    kept_free(&c->req_body);
    kept_free(&c->resp_body);
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
    if (c->zs) {
        llm_zstd.ZSTD_freeDStream(c->zs);
        c->zs = NULL;
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

/* One object of Ollama's native API (/api/chat, /api/generate, /api/embed): a whole
 * answer, or one line of a stream; prompt_eval_count and eval_count are the tokens. */
static void ollama_obj(as_llm_conn *c, const cJSON *r) {
    const char *m = jstr(r, "model");
    if (m)
        copy_n(c->resp_model, sizeof c->resp_model, m, strlen(m));
    add_text(c, jstr(jget(r, "message"), "content"));
    add_text(c, jstr(r, "response"));
    set_if(&c->u.in, jint(r, "prompt_eval_count"));
    set_if(&c->u.out, jint(r, "eval_count"));
    read_error(c, r);
}

/* Decoded response body bytes of a JSON-lines stream: one object per line. */
static void ndjson_feed(as_llm_conn *c, const char *d, size_t n) {
    as_buf *l = &c->ev.line;
    while (n > 0) {
        const char *nl = memchr(d, '\n', n);
        size_t k = nl ? (size_t)(nl - d) : n;
        if (l->len + k <= SSE_EVENT_MAX)
            as_buf_put(l, d, k);
        if (!nl)
            return;
        d += k + 1;
        n -= k + 1;
        if (l->len) {
            cJSON *r = llm_cj.cJSON_ParseWithLength(l->data, l->len);
            if (r) {
                ollama_obj(c, r);
                llm_cj.cJSON_Delete(r);
            }
        }
        as_buf_reset(l);
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
    if (c->ndjson) {
        ndjson_feed(c, d, n);
        return;
    }
    kept_put(&c->resp_body, RESP_BODY_MAX, d, n);
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
    if (c->llm)
        kept_put(&c->req_body, REQ_BODY_MAX, d, n);
}

static const as_http_cb req_cb = {req_start, req_header, NULL, req_body, NULL};

/* ---- the response direction ---- */
static void resp_start(void *ctx, const char *line, size_t len) {
    as_llm_conn *c = ctx;
    c->status = len >= 12 ? atoi(line + 9) : 0;
}

static void resp_header(void *ctx, const char *name, size_t nlen, const char *v, size_t vlen) {
    as_llm_conn *c = ctx;
    if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0)
        c->json = memmem(v, vlen, "json", 4) || memmem(v, vlen, "event-stream", 12);
    if (!c->llm)
        return;
    if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0) {
        c->sse = vlen >= 17 && strncasecmp(v, "text/event-stream", 17) == 0;
        c->ndjson = vlen >= 20 && strncasecmp(v, "application/x-ndjson", 20) == 0;
    } else if (nlen == 16 && strncasecmp(name, "content-encoding", 16) == 0)
        c->encoding = (vlen == 4 && strncasecmp(v, "gzip", 4) == 0) ||
                              (vlen == 7 && strncasecmp(v, "deflate", 7) == 0)
                          ? 1
                      : vlen == 2 && strncasecmp(v, "br", 2) == 0   ? 2
                      : vlen == 4 && strncasecmp(v, "zstd", 4) == 0 ? 3
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
    /* The first exchange of the connection is no model API's and its answer is no JSON
     * and not small (a download, a page): the connection is passed through from here on,
     * its bytes never parsed again (as_llm_conn_ignored). A small answer (a health check,
     * a redirect) leaves it watched: it costs nothing, and a call may follow on it. */
    int small = c->resp.has_len && c->resp.content_len < PASS_MIN && !c->resp.chunked;
    if (!c->exchanges && !c->llm && !c->json && c->active && !small)
        c->ignored = 1;
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

/* zstd-compressed body bytes (libzstd opened on demand). */
static void body_zstd(as_llm_conn *c, const char *d, size_t n) {
    if (!c->zs) {
        if (as_dynlib_load(&llm_zstd_lib) != 0 || !(c->zs = llm_zstd.ZSTD_createDStream())) {
            c->z_failed = 1;
            return;
        }
    }
    char out[16384];
    ZSTD_inBuffer in = {d, n, 0};
    for (int guard = 0; guard < 4096; guard++) {
        ZSTD_outBuffer o = {out, sizeof out, 0};
        size_t rc = llm_zstd.ZSTD_decompressStream(c->zs, &o, &in);
        if (llm_zstd.ZSTD_isError(rc)) {
            c->z_failed = 1;
            return;
        }
        if (o.pos)
            body_plain(c, out, o.pos);
        /* all input taken and the output not full: nothing more comes out now */
        if (in.pos == in.size && o.pos < o.size)
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
    if (c->encoding == 3) {
        body_zstd(c, d, n);
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
    c->exchanges++;
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

/* The JSON value after the first (or last) key "key" in s[0..n), parsed on its own (what
 * follows it is ignored), or NULL. Quotes inside a JSON string are escaped, so "key"
 * followed by a colon is always a key. For bodies larger than their cap, whose head and
 * tail are no JSON document. */
static cJSON *value_of_key(const char *s, size_t n, const char *key, int last) {
    char pat[40];
    int k = snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *hit = NULL, *end = s + n;
    for (const char *p = s; s && p < end;) {
        const char *q = memmem(p, (size_t)(end - p), pat, (size_t)k);
        if (!q)
            break;
        const char *v = q + k;
        while (v < end && (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n'))
            v++;
        if (v < end && *v == ':') {
            hit = v + 1;
            if (!last)
                break;
        }
        p = q + 1;
    }
    return hit ? llm_cj.cJSON_ParseWithLength(hit, (size_t)(end - hit)) : NULL;
}

static const char *str_of(const cJSON *v) {
    return v && (v->type & 0xff) == cJSON_String ? v->valuestring : NULL;
}

/* A response body larger than its cap: the model and the first text from its head, the
 * usage from its tail. */
static void read_big_body(as_llm_conn *c, const char *tail, size_t tn) {
    const as_buf *h = &c->resp_body.head;
    cJSON *m = value_of_key(h->data, h->len, "model", 0);
    if (str_of(m))
        copy_n(c->resp_model, sizeof c->resp_model, m->valuestring, strlen(m->valuestring));
    cJSON *t = value_of_key(h->data, h->len, "content", 0);
    if (!str_of(t)) {
        if (t)
            llm_cj.cJSON_Delete(t);
        t = value_of_key(h->data, h->len, "text", 0);
    }
    add_text(c, str_of(t));
    cJSON *u = value_of_key(tail, tn, "usage", 1);
    read_usage(u, &c->u);
    cJSON *all[] = {m, t, u};
    for (size_t i = 0; i < 3; i++)
        if (all[i])
            llm_cj.cJSON_Delete(all[i]);
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
    cJSON *req = NULL, *req_m = NULL, *req_s = NULL;
    char *tail = NULL;
    size_t tn = 0;
    if (!kept_whole(&c->req_body) || !kept_whole(&c->resp_body)) {
        tail = malloc(BODY_TAIL);
        if (!tail)
            return;
    }
    const as_buf *rh = &c->req_body.head;
    if (kept_whole(&c->req_body) && rh->len) {
        req = llm_cj.cJSON_ParseWithLength(rh->data, rh->len);
        req_m = jget(req, "model");
        req_s = jget(req, "stream");
    } else if (rh->len) { /* a request larger than its cap: model and stream found by key */
        tn = kept_tail(&c->req_body, tail);
        if (!(req_m = value_of_key(rh->data, rh->len, "model", 0)))
            req_m = value_of_key(tail, tn, "model", 1);
        if (!(req_s = value_of_key(rh->data, rh->len, "stream", 0)))
            req_s = value_of_key(tail, tn, "stream", 1);
    }
    const char *req_model = str_of(req_m);
    int stream = c->sse || c->ndjson || (req_s && (req_s->type & 0xff) == cJSON_True);
    /* Ollama's chat and generate stream unless the request says "stream": false */
    if (c->provider == PROV_OLLAMA && strcmp(c->op, "embeddings") != 0)
        stream = c->ndjson || !req_s || (req_s->type & 0xff) != cJSON_False;
    if (!c->sse && !c->ndjson && kept_whole(&c->resp_body) && c->resp_body.head.len) {
        cJSON *r = llm_cj.cJSON_ParseWithLength(c->resp_body.head.data, c->resp_body.head.len);
        if (r) {
            if (c->provider == PROV_OLLAMA)
                ollama_obj(c, r);
            else
                read_body(c, r);
            llm_cj.cJSON_Delete(r);
        }
    } else if (!c->sse && !c->ndjson && c->resp_body.total) {
        read_big_body(c, tail, kept_tail(&c->resp_body, tail));
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
    const char *prov = prov_names[c->provider];
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
    else {
        if (req_m)
            llm_cj.cJSON_Delete(req_m);
        if (req_s)
            llm_cj.cJSON_Delete(req_s);
    }
    free(tail);
}

/* ---- the connection ---- */
as_llm_conn *as_llm_conn_new(void) {
    as_llm_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    as_http_init(&c->req, 0, &req_cb, c);
    as_http_init(&c->resp, 1, &resp_cb, c);
    as_buf_init(&c->req_body.head);
    as_buf_init(&c->resp_body.head);
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
        /* HTTP/2 (ALPN h2): decoded by llm_h2.c when libnghttp2 is there; else said once
         * per process (diagnostics: once per run) */
        c->h2 = as_h2_new();
        if (!c->h2) {
            static int told;
            if (!__atomic_exchange_n(&told, 1, __ATOMIC_RELAXED))
                as_warn("llm: an HTTP/2 connection was seen: its exchanges are not decoded "
                        "(libnghttp2.so.14 not loaded; curl: --http1.1)");
            c->ignored = 1;
            return;
        }
    }
    c->seen_write = 1;
    if (c->h2) {
        if (as_h2_feed(c->h2, 1, data, len) != 0)
            c->ignored = 1;
        return;
    }
    as_http_feed(&c->req, data, len);
    if (c->req.state == AS_HTTP_BROKEN)
        c->ignored = 1;
    if (c->ignored) { /* nothing is parsed again: the memory goes now */
        reset_exchange(c);
        as_http_release(&c->req);
        as_http_release(&c->resp);
    }
}

void as_llm_conn_read(as_llm_conn *c, const void *data, size_t len) {
    if (!c || c->ignored)
        return;
    if (c->h2) {
        if (as_h2_feed(c->h2, 0, data, len) != 0)
            c->ignored = 1;
        return;
    }
    as_http_feed(&c->resp, data, len);
    if (c->resp.state == AS_HTTP_BROKEN)
        c->ignored = 1;
    if (c->ignored) { /* nothing is parsed again: the memory goes now */
        reset_exchange(c);
        as_http_release(&c->req);
        as_http_release(&c->resp);
    }
}

int as_llm_conn_ignored(const as_llm_conn *c) {
    return !c || c->ignored;
}

void as_llm_conn_free(as_llm_conn *c) {
    if (!c)
        return;
    if (!c->ignored && !c->h2)
        as_http_eof(&c->resp);
    as_h2_free(c->h2);
    reset_exchange(c);
    as_http_release(&c->req);
    as_http_release(&c->resp);
    kept_free(&c->req_body);
    kept_free(&c->resp_body);
    as_buf_free(&c->text);
    as_buf_free(&c->err);
    as_buf_free(&c->ev.line);
    as_buf_free(&c->ev.data);
    free(c);
}
