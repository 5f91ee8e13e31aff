/* sink_agentsight.c - the `agentsight` sink: actions to the AgentSight HTTP API. Which API
 * the server speaks is probed once per process (GET /api/me/, answer cached): today's
 * ingest API takes batches of spans grouped by conversation (POST /api/ingest/, body from
 * ingest.c, gzipped above 8 KiB when /api/me/ lists "gzip-ingest"); servers without it get
 * the 0.0.x API (get-or-create each conversation once, then POST /api/action_logs/ per
 * action). Either way, with
 * retries in http.c, overflow and failures handed to the spool, refusals to the dead
 * letters, and display names set once per process. Write-ahead: the lines of each batch
 * of new actions are written to the spool as one batch claimed by this process before any
 * request is made; the file is removed once every action of it is answered (or staged and
 * committed again), so an action the exporter took from its ring is always on disk. Each
 * request carries the action's event id (0.0.x: metadata.agentsight_event_id; ingest: the
 * span's ids are derived from it): a retry after a timeout is deduplicable by the server.
 *
 * URI: "agentsight" (endpoint from AGENTSIGHT_API_ENDPOINT) or "agentsight:URL".
 * Runs on the exporter thread only. The API key lives only in the client's header list:
 * it is never logged, spooled or put in a message. */
#include "core/dl_cjson.h"
#include "core/keptenv.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/action.h"
#include "core/clock.h"
#include "core/http.h"
#include "core/pipeline.h"
#include "core/gzip.h"
#include "core/ingest.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/settings.h"
#include "core/sink.h"
#include "core/spool.h"
#include "core/bigbss.h"

#define MAX_ITEMS 4096  /* actions held in memory by the sink; more go to the spool */
#define WIRE_AHEAD 32   /* requests handed to the client ahead of the wire */
#define DOWN_MIN_MS 500 /* first pause after a failure, doubled up to DOWN_MAX_MS */
#define DOWN_MAX_MS 30000
#define INGEST_BATCH 100 /* spans per ingest request */

/* Which API a server speaks, probed once per process and endpoint. */
enum { API_UNKNOWN, API_INGEST, API_LEGACY };
static struct {
    char endpoint[512];
    int api;
    int gzip; /* /api/me/ lists gzip-ingest */
} probe_cache AS_BIG_BSS;

typedef as_spool_replay replay; /* remaining: actions of the batch not yet finished */

typedef struct conv conv;
typedef struct item {
    struct item *next;
    struct sk *sk;
    conv *cv;
    int64_t key; /* spool order key: 0 new, else the replayed batch's */
    replay *rp;  /* the replayed batch it came from, or NULL */
    char *line;  /* JSONL line (spool, dead letters) */
    char *rest;  /* request body after its first '{' (without "conversation") */
} item;

struct conv {
    conv *next;
    char *cid;
    long id;
    int creating;
    item *wait_head, *wait_tail;
};

typedef struct named {
    struct named *next;
    char *name;
    char *display;
    long action_id;
    struct sk *sk;
} named;

typedef struct sk {
    as_sink *sink;
    as_http *http;
    as_http *http_gz; /* the same, sending Content-Encoding: gzip */
    int api, gzip, probing;
    item *probe_head, *probe_tail; /* waiting for the probe's answer */
    char environment[256];         /* AGENTSIGHT_ENVIRONMENT, or "" */
    as_spool *spool;
    char endpoint[512];
    char uri[600];
    conv *convs;
    named *names;
    item *ready_head, *ready_tail; /* conversation known, not yet handed to the client */
    size_t held;                   /* items alive in the sink */
    int64_t down_until_ms;
    int down_ms;
    int healthy;       /* last finished request was answered */
    int spool_maybe;   /* the spool may hold batches */
    int closing;       /* close() runs: no replay starts */
    as_buf meta, line; /* scratch of spool_direct() */
    replay *rp;
    unsigned logged; /* kinds already logged (bits) */
    unsigned long long delivered, spooled, dead;
} sk;

static size_t outstanding(const sk *k) {
    return as_http_outstanding(k->http) + (k->http_gz ? as_http_outstanding(k->http_gz) : 0);
}

/* 1 when key is shaped ags_<32 hex>_<6 hex>. */
static int key_shape_ok(const char *k) {
    if (strncmp(k, "ags_", 4) != 0 || strlen(k) != 43 || k[36] != '_')
        return 0;
    for (int i = 4; i < 43; i++)
        if (i != 36 && !isxdigit((unsigned char)k[i]))
            return 0;
    return 1;
}

static void log_once(sk *k, unsigned bit, const char *fmt, const char *a, long n) {
    if (k->logged & bit)
        return;
    k->logged |= bit;
    as_alert_warn(fmt, a, n);
}

static void item_free(item *it) {
    free(it->line);
    free(it->rest);
    free(it);
}

static void replay_step_done(sk *k, item *it) {
    replay *rp = it->rp;
    if (!rp)
        return;
    if (--rp->remaining == 0 && rp->loaded) {
        if (k->rp == rp)
            k->rp = NULL;
        as_spool_replay_end(k->spool, rp);
    }
}

/* The action could not be delivered now: stage it for the spool. */
static void to_spool(sk *k, item *it) {
    as_spool_stage(k->spool, it->key, it->line, strlen(it->line));
    k->spooled++;
    k->spool_maybe = 1;
    if (k->sink)
        k->sink->failed++;
    replay_step_done(k, it);
    k->held--;
    item_free(it);
}

static void to_dead_letter(sk *k, item *it, long status, const char *answer) {
    as_spool_dead_letter(k->spool, status, answer, it->line, strlen(it->line));
    k->dead++;
    if (k->sink)
        k->sink->failed++;
    replay_step_done(k, it);
    k->held--;
    item_free(it);
}

static void mark_failure(sk *k) {
    k->healthy = 0;
    k->down_ms = k->down_ms ? k->down_ms * 2 : DOWN_MIN_MS;
    if (k->down_ms > DOWN_MAX_MS)
        k->down_ms = DOWN_MAX_MS;
    k->down_until_ms = as_mono_ms() + k->down_ms;
}

static void mark_success(sk *k) {
    k->healthy = 1;
    k->down_ms = 0;
    k->down_until_ms = 0;
}

static void on_log_done(void *ctx, const as_http_resp *r) {
    item *it = ctx;
    sk *k = it->sk;
    if (r->status >= 200 && r->status < 300) {
        mark_success(k);
        k->delivered++;
        if (k->sink)
            k->sink->sent++;
        replay_step_done(k, it);
        k->held--;
        item_free(it);
        return;
    }
    if (r->status >= 400 && r->status < 500 && r->status != 429) {
        mark_success(k); /* the server answers; it refused this one */
        log_once(k, 1u << (r->status % 16),
                 "agentsight sink: %s refused an action with HTTP %ld; it is kept in the "
                 "dead-letter file beside the spool (further refusals of this kind are not "
                 "logged)",
                 k->endpoint, r->status);
        to_dead_letter(k, it, r->status, r->body);
        return;
    }
    if (!r->cancelled) {
        if (r->status == 0 && !(k->logged & (1u << 20))) {
            k->logged |= 1u << 20;
            as_alert_warn("agentsight sink: %s does not answer (%s); actions are spooled and "
                          "replayed later",
                          k->endpoint, r->error);
        } else if (r->status != 0)
            log_once(k, 1u << 21,
                     "agentsight sink: %s answers HTTP %ld; actions are spooled "
                     "and replayed later",
                     k->endpoint, r->status);
        mark_failure(k);
    }
    to_spool(k, it);
}

static void submit_item(sk *k, item *it) {
    as_buf b;
    as_buf_init(&b);
    as_buf_printf(&b, "{\"conversation\":%ld,", it->cv->id);
    as_buf_puts(&b, it->rest);
    char url[600];
    snprintf(url, sizeof url, "%s/api/action_logs/", k->endpoint);
    if (b.oom) {
        as_buf_free(&b);
        to_spool(k, it);
        return;
    }
    size_t len = b.len;
    char *body = b.data; /* handed over to the client */
    if (as_http_submit(k->http, "POST", url, body, len, on_log_done, it) != 0)
        to_spool(k, it);
}

static void make_ready(sk *k, item *it) {
    it->next = NULL;
    if (k->ready_tail)
        k->ready_tail->next = it;
    else
        k->ready_head = it;
    k->ready_tail = it;
}

static void on_conv_done(void *ctx, const as_http_resp *r) {
    conv *cv = ctx;
    item *list = cv->wait_head;
    sk *k = list ? list->sk : NULL;
    cv->creating = 0;
    cv->wait_head = cv->wait_tail = NULL;
    if (!k)
        return;
    long id = -1;
    if (r->status >= 200 && r->status < 300) {
        cJSON *o = as_cjson.cJSON_ParseWithLength(r->body, r->body_len);
        const cJSON *v = as_cjson.cJSON_GetObjectItemCaseSensitive(o, "id");
        if (as_cjson.cJSON_IsNumber(v))
            id = (long)v->valuedouble;
        as_cjson.cJSON_Delete(o);
        if (id < 0)
            log_once(k, 1u << 22,
                     "agentsight sink: %s answered a conversation without an "
                     "integer id (HTTP %ld)",
                     k->endpoint, r->status);
    }
    if (id >= 0) {
        mark_success(k);
        cv->id = id;
        for (item *it = list, *next; it; it = next) {
            next = it->next;
            make_ready(k, it);
        }
        return;
    }
    int refused = r->status >= 400 && r->status < 500 && r->status != 429;
    if (refused)
        log_once(k, 1u << 23,
                 "agentsight sink: %s refused a conversation with HTTP %ld; "
                 "its actions are kept in the dead-letter file",
                 k->endpoint, r->status);
    else if (!r->cancelled)
        mark_failure(k);
    for (item *it = list, *next; it; it = next) {
        next = it->next;
        if (refused)
            to_dead_letter(k, it, r->status, r->body);
        else
            to_spool(k, it);
    }
}

static conv *conv_get(sk *k, const char *cid) {
    for (conv *c = k->convs; c; c = c->next)
        if (strcmp(c->cid, cid) == 0)
            return c;
    conv *c = calloc(1, sizeof *c);
    if (!c || !(c->cid = strdup(cid))) {
        free(c);
        return NULL;
    }
    c->id = -1;
    c->next = k->convs;
    k->convs = c;
    return c;
}

/* ---- today's ingest API ---- */

/* One POST /api/ingest/: its items and the conversation block each went into. */
typedef struct group {
    sk *k;
    size_t n;
    item *items[INGEST_BATCH];
    int block[INGEST_BATCH]; /* conversation block of each item */
    int pos[INGEST_BATCH];   /* its index in the block's spans */
} group;

/* Marks in bad[] the items of g a refused block names: the spans its errors name by
 * "spans[N]..." keys, or every span of the block when an error is not about one span. */
static void mark_refused(const group *g, int blk, const cJSON *errs, char *bad) {
    char span_named[INGEST_BATCH] = {0};
    int whole = !as_cjson.cJSON_IsObject(errs) || !errs->child;
    const cJSON *e;
    cJSON_ArrayForEach(e, errs) {
        unsigned n;
        if (e->string && sscanf(e->string, "spans[%u]", &n) == 1 && n < INGEST_BATCH)
            span_named[n] = 1;
        else
            whole = 1;
    }
    for (size_t i = 0; i < g->n; i++)
        if (g->block[i] == blk && (whole || span_named[g->pos[i]]))
            bad[i] = 1;
}

/* Logs what a 400 says, naming up to five offending blocks, and marks in bad[] the items
 * it refused (mark_refused). Returns how many blocks were named. */
static int ingest_refusal(sk *k, const as_http_resp *r, const group *g, char *bad) {
    int nblocks = 0;
    for (size_t i = 0; i < g->n; i++)
        if (g->block[i] >= nblocks)
            nblocks = g->block[i] + 1;
    cJSON *o = as_cjson.cJSON_ParseWithLength(r->body, r->body_len);
    const cJSON *d = as_cjson.cJSON_GetObjectItemCaseSensitive(o, "detail");
    const cJSON *bl = as_cjson.cJSON_GetObjectItemCaseSensitive(o, "conversations");
    as_buf msg;
    as_buf_init(&msg);
    int count = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, bl) {
        const cJSON *ix = as_cjson.cJSON_GetObjectItemCaseSensitive(e, "index");
        if (!as_cjson.cJSON_IsNumber(ix) || ix->valuedouble < 0 || ix->valuedouble >= nblocks)
            continue;
        const cJSON *errs = as_cjson.cJSON_GetObjectItemCaseSensitive(e, "errors");
        mark_refused(g, (int)ix->valuedouble, errs, bad);
        if (count++ >= 5)
            continue;
        const cJSON *cid = as_cjson.cJSON_GetObjectItemCaseSensitive(e, "conversation_id");
        char *et = errs ? as_cjson.cJSON_PrintUnformatted(errs) : NULL;
        as_buf_printf(&msg, "%s%s (%s)", count > 1 ? "; " : "",
                      as_cjson.cJSON_IsString(cid) ? cid->valuestring : "?",
                      et ? et : "no field detail");
        free(et);
    }
    if (count > 5)
        as_buf_printf(&msg, ", and %d more", count - 5);
    if (!count)
        as_utf8_repair(&msg, r->body, r->body_len < 500 ? r->body_len : 500);
    as_alert_warn("agentsight sink: %s refused an ingest batch with HTTP %ld (%s); offending "
                  "block(s): %s; their actions are kept in the dead-letter file",
                  k->endpoint, r->status, as_cjson.cJSON_IsString(d) ? d->valuestring : "no detail",
                  msg.oom ? "?" : as_buf_cstr(&msg));
    as_buf_free(&msg);
    as_cjson.cJSON_Delete(o);
    return count;
}

static void on_ingest_done(void *ctx, const as_http_resp *r) {
    group *g = ctx;
    sk *k = g->k;
    if (r->status >= 200 && r->status < 300) {
        mark_success(k);
        for (size_t i = 0; i < g->n; i++) {
            k->delivered++;
            if (k->sink)
                k->sink->sent++;
            replay_step_done(k, g->items[i]);
            k->held--;
            item_free(g->items[i]);
        }
        free(g);
        return;
    }
    if (r->status >= 400 && r->status < 500 && r->status != 429) {
        mark_success(k); /* the server answers; it refused (part of) this batch */
        char bad[INGEST_BATCH] = {0};
        int any = r->status == 400 && ingest_refusal(k, r, g, bad) > 0;
        if (r->status != 400)
            log_once(k, 1u << (r->status % 16),
                     "agentsight sink: %s refused an ingest batch with HTTP %ld; its actions "
                     "are kept in the dead-letter file beside the spool (further refusals of "
                     "this kind are not logged)",
                     k->endpoint, r->status);
        /* The server takes a batch whole or not at all: what it did not name goes out
         * again (without what it named, so this ends). */
        for (size_t i = 0; i < g->n; i++) {
            if (!any || bad[i])
                to_dead_letter(k, g->items[i], r->status, r->body);
            else
                make_ready(k, g->items[i]);
        }
        free(g);
        return;
    }
    if (!r->cancelled) {
        log_once(k, 1u << 21,
                 "agentsight sink: %s does not take ingest batches now (HTTP %ld); actions "
                 "are spooled and replayed later",
                 k->endpoint, r->status);
        mark_failure(k);
    }
    for (size_t i = 0; i < g->n; i++)
        to_spool(k, g->items[i]);
    free(g);
}

/* Appends the span of one item (rebuilt from its line). Returns 0, or -1 when the line
 * does not read back (the item then goes to the dead letters). */
static int item_span(as_buf *b, const item *it) {
    as_spool_rec rec;
    if (as_spool_parse_line(it->line, strlen(it->line), &rec) != 0)
        return -1;
    as_ingest_span(b, &rec.a, as_ingest_kind_of(&rec.a));
    as_spool_rec_free(&rec);
    return 0;
}

/* Takes up to INGEST_BATCH ready items into one request, grouped by conversation. */
static void submit_ingest(sk *k) {
    group *g = calloc(1, sizeof *g);
    if (!g)
        return; /* the items stay ready; retried on the next pass */
    g->k = k;
    while (k->ready_head && g->n < INGEST_BATCH) {
        item *it = k->ready_head;
        k->ready_head = it->next;
        g->items[g->n++] = it;
    }
    if (!k->ready_head)
        k->ready_tail = NULL;
    as_buf b;
    as_buf_init(&b);
    as_ingest_begin(&b);
    int blocks = 0;
    char done[INGEST_BATCH] = {0};
    for (size_t i = 0; i < g->n; i++) {
        if (done[i])
            continue;
        conv *cv = g->items[i]->cv;
        as_ingest_block_open(&b, cv->cid, k->environment, blocks == 0);
        int first = 1, pos = 0;
        for (size_t j = i; j < g->n; j++) {
            if (done[j] || g->items[j]->cv != cv)
                continue;
            done[j] = 1;
            size_t mark = b.len;
            if (!first)
                as_buf_putc(&b, ',');
            if (item_span(&b, g->items[j]) != 0) {
                b.len = mark;
                g->block[j] = -1;
                continue;
            }
            first = 0;
            g->block[j] = blocks;
            g->pos[j] = pos++;
        }
        as_ingest_block_close(&b);
        blocks++;
    }
    as_ingest_end(&b);
    /* Lines that do not read back as actions cannot be sent: dead letters. */
    size_t kept = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (g->block[i] < 0) {
            to_dead_letter(k, g->items[i], 0, "not an action");
            continue;
        }
        g->items[kept] = g->items[i];
        g->pos[kept] = g->pos[i];
        g->block[kept++] = g->block[i];
    }
    g->n = kept;
    char url[600];
    snprintf(url, sizeof url, "%s/api/ingest/", k->endpoint);
    as_http *h = k->http;
    if (!b.oom && k->gzip && b.len > AS_INGEST_GZIP_MIN) {
        size_t zl;
        char *z = NULL;
        if (as_gzip(b.data, b.len, &z, &zl) == 0) {
            as_buf_free(&b);
            b.data = z;
            b.len = zl;
            h = k->http_gz;
        }
    }
    if (b.oom || g->n == 0) {
        as_buf_free(&b);
        as_http_resp r = {.status = 0, .body = "", .error = "out of memory", .cancelled = 1};
        on_ingest_done(g, &r);
        return;
    }
    if (as_http_submit(h, "POST", url, b.data, b.len, on_ingest_done, g) != 0) {
        as_http_resp r = {.status = 0, .body = "", .error = "out of memory", .cancelled = 1};
        on_ingest_done(g, &r);
    }
}

static void dispatch(sk *k, item *it);

/* The answer of GET /api/me/: 2xx means the ingest API (and its capabilities list says
 * whether gzip bodies are taken); any other answer but 429 means a 0.0.x server; no
 * answer leaves it unknown (asked again with the next actions). */
static void on_probe_done(void *ctx, const as_http_resp *r) {
    sk *k = ctx;
    k->probing = 0;
    int api = API_UNKNOWN;
    if (r->status >= 200 && r->status < 300) {
        api = API_INGEST;
        cJSON *o = as_cjson.cJSON_ParseWithLength(r->body, r->body_len);
        const cJSON *caps = as_cjson.cJSON_GetObjectItemCaseSensitive(o, "capabilities");
        const cJSON *c;
        cJSON_ArrayForEach(c, caps) {
            if (as_cjson.cJSON_IsString(c) && strcmp(c->valuestring, "gzip-ingest") == 0)
                k->gzip = 1;
        }
        as_cjson.cJSON_Delete(o);
    } else if (r->status >= 400 && r->status < 500 && r->status != 429) {
        api = API_LEGACY;
    }
    item *list = k->probe_head;
    k->probe_head = k->probe_tail = NULL;
    if (api != API_UNKNOWN) {
        mark_success(k);
        k->api = api;
        snprintf(probe_cache.endpoint, sizeof probe_cache.endpoint, "%s", k->endpoint);
        probe_cache.api = api;
        probe_cache.gzip = k->gzip;
        as_debug("agentsight sink: %s speaks the %s API%s", k->endpoint,
                 api == API_INGEST ? "ingest" : "0.0.x action_logs",
                 k->gzip ? " (gzip-ingest)" : "");
    } else if (!r->cancelled) {
        if (r->status == 0 && !(k->logged & (1u << 20))) {
            k->logged |= 1u << 20;
            as_alert_warn("agentsight sink: %s does not answer (%s); actions are spooled and "
                          "replayed later",
                          k->endpoint, r->error);
        }
        mark_failure(k);
    }
    for (item *it = list, *next; it; it = next) {
        next = it->next;
        if (api == API_UNKNOWN)
            to_spool(k, it);
        else
            dispatch(k, it);
    }
}

static void probe_wait(sk *k, item *it) {
    it->next = NULL;
    if (k->probe_tail)
        k->probe_tail->next = it;
    else
        k->probe_head = it;
    k->probe_tail = it;
    if (k->probing)
        return;
    char url[600];
    snprintf(url, sizeof url, "%s/api/me/", k->endpoint);
    k->probing = 1;
    if (as_http_submit(k->http, "GET", url, NULL, 0, on_probe_done, k) != 0) {
        as_http_resp r = {.status = 0, .body = "", .error = "out of memory", .cancelled = 1};
        on_probe_done(k, &r);
    }
}

/* Routes one item: waiting for the probe, ready, waiting for its conversation, or to the
 * spool. */
static void dispatch(sk *k, item *it) {
    if (k->down_until_ms && as_mono_ms() < k->down_until_ms) {
        to_spool(k, it);
        return;
    }
    if (k->api == API_UNKNOWN) {
        probe_wait(k, it);
        return;
    }
    conv *cv = it->cv;
    if (k->api == API_INGEST || cv->id >= 0) {
        make_ready(k, it);
        return;
    }
    it->next = NULL;
    if (cv->wait_tail)
        cv->wait_tail->next = it;
    else
        cv->wait_head = it;
    cv->wait_tail = it;
    if (cv->creating)
        return;
    as_buf b;
    as_buf_init(&b);
    as_buf_puts(&b, "{\"conversation_id\":");
    as_json_cstr(&b, cv->cid);
    if (k->environment[0]) {
        as_buf_puts(&b, ",\"environment\":");
        as_json_cstr(&b, k->environment);
    }
    as_buf_putc(&b, '}');
    char url[600];
    snprintf(url, sizeof url, "%s/api/conversations/", k->endpoint);
    cv->creating = 1;
    if (b.oom || as_http_submit(k->http, "POST", url, b.data, b.len, on_conv_done, cv) != 0) {
        if (b.oom)
            as_buf_free(&b);
        as_http_resp r = {.status = 0, .body = "", .error = "out of memory", .cancelled = 1};
        on_conv_done(cv, &r);
    }
}

/* Hands ready items to the client while it has room; spools them when the API is down. */
static void pump(sk *k) {
    int down = k->down_until_ms && as_mono_ms() < k->down_until_ms;
    while (k->ready_head && (down || outstanding(k) < WIRE_AHEAD)) {
        item *it = k->ready_head;
        k->ready_head = it->next;
        if (!k->ready_head)
            k->ready_tail = NULL;
        if (down) {
            to_spool(k, it);
        } else if (k->api == API_INGEST) {
            k->ready_head = it; /* taken back by the batch */
            if (!k->ready_tail)
                k->ready_tail = it;
            submit_ingest(k);
        } else {
            submit_item(k, it);
        }
    }
}

/* Display names: GET /api/actions/?name=N, then PATCH /api/actions/{id}/ or POST
 * /api/actions/. Failures are logged once and never retried beyond http.c. */
static void on_display_done(void *ctx, const as_http_resp *r) {
    named *n = ctx;
    if (!r->cancelled && (r->status < 200 || r->status >= 300))
        log_once(n->sk, 1u << 24,
                 "agentsight sink: %s did not accept a display name (HTTP "
                 "%ld)",
                 n->sk->endpoint, r->status);
}

static void display_submit(named *n, const char *method, const char *url, int with_name) {
    as_buf b;
    as_buf_init(&b);
    as_buf_putc(&b, '{');
    if (with_name) {
        as_buf_puts(&b, "\"name\":");
        as_json_cstr(&b, n->name);
        as_buf_putc(&b, ',');
    }
    as_buf_puts(&b, "\"display_name\":");
    as_json_cstr(&b, n->display);
    as_buf_putc(&b, '}');
    if (b.oom) {
        as_buf_free(&b);
        return;
    }
    as_http_submit(n->sk->http, method, url, b.data, b.len, on_display_done, n);
}

static long find_action_id(const cJSON *v, const char *name) {
    if (as_cjson.cJSON_IsObject(v)) {
        const cJSON *res = as_cjson.cJSON_GetObjectItemCaseSensitive(v, "results");
        if (res)
            return find_action_id(res, name);
        const cJSON *nm = as_cjson.cJSON_GetObjectItemCaseSensitive(v, "name");
        const cJSON *id = as_cjson.cJSON_GetObjectItemCaseSensitive(v, "id");
        if (as_cjson.cJSON_IsString(nm) && strcmp(nm->valuestring, name) == 0 &&
            as_cjson.cJSON_IsNumber(id))
            return (long)id->valuedouble;
        return -1;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        long id = find_action_id(e, name);
        if (id >= 0)
            return id;
    }
    return -1;
}

static void on_display_lookup(void *ctx, const as_http_resp *r) {
    named *n = ctx;
    char url[700];
    if (r->cancelled || r->status < 200 || r->status >= 300) {
        on_display_done(ctx, r);
        return;
    }
    cJSON *o = as_cjson.cJSON_ParseWithLength(r->body, r->body_len);
    long id = find_action_id(o, n->name);
    as_cjson.cJSON_Delete(o);
    if (id >= 0) {
        snprintf(url, sizeof url, "%s/api/actions/%ld/", n->sk->endpoint, id);
        display_submit(n, "PATCH", url, 0);
    } else {
        snprintf(url, sizeof url, "%s/api/actions/", n->sk->endpoint);
        display_submit(n, "POST", url, 1);
    }
}

static void url_escape(const char *s, char *out, size_t cap) {
    size_t o = 0;
    for (; *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", c);
    }
    out[o] = 0;
}

static void display_name_seen(sk *k, const as_action *a) {
    if (k->api == API_INGEST) /* ingest spans carry it in agentsight.metadata */
        return;
    if (!a->metadata || !strstr(a->metadata, "\"display_name\""))
        return;
    for (named *n = k->names; n; n = n->next)
        if (strcmp(n->name, a->action_name) == 0)
            return;
    cJSON *o = as_cjson.cJSON_Parse(a->metadata);
    const cJSON *d = as_cjson.cJSON_GetObjectItemCaseSensitive(o, "display_name");
    named *n = as_cjson.cJSON_IsString(d) ? calloc(1, sizeof *n) : NULL;
    if (n && (n->name = strdup(a->action_name)) && (n->display = strdup(d->valuestring))) {
        n->sk = k;
        n->next = k->names;
        k->names = n;
        char q[800], url[1400];
        url_escape(n->name, q, sizeof q);
        snprintf(url, sizeof url, "%s/api/actions/?name=%s", k->endpoint, q);
        as_http_submit(k->http, "GET", url, NULL, 0, on_display_lookup, n);
    } else if (n) {
        free(n->name);
        free(n);
    }
    as_cjson.cJSON_Delete(o);
}

/* Builds the sink's copy of an action: its line (metadata tagged with an event id) and
 * its request body. Returns the item, or NULL when out of memory (nothing allocated). */
static item *make_item(sk *k, const as_action *a, int64_t key, replay *rp) {
    as_buf meta, line, rest;
    as_buf_init(&meta);
    as_buf_init(&line);
    as_buf_init(&rest);
    char id[33];
    item *it = calloc(1, sizeof *it);
    conv *cv = conv_get(k, a->conversation_id ? a->conversation_id : "");
    if (!it || !cv)
        goto error;
    as_spool_tag_action(a->metadata, a->event_id, &meta, id);
    as_action copy = *a;
    copy.metadata = as_buf_cstr(&meta);
    copy.event_id = id;
    as_action_to_jsonl(&copy, &line);
    char ts[AS_ISO_LEN];
    if (k->api == API_INGEST) { /* the span is built from the line when it is sent */
        as_buf_putc(&rest, '}');
        goto built;
    }
    as_buf_puts(&rest, "\"action_name\":");
    as_json_cstr(&rest, a->action_name);
    as_buf_puts(&rest, ",\"conversation_id\":");
    as_json_cstr(&rest, cv->cid);
    as_buf_puts(&rest, ",\"metadata\":");
    as_buf_puts(&rest, as_buf_cstr(&meta));
    as_iso_format(a->timestamp_ns, ts);
    as_buf_printf(&rest, ",\"timestamp\":\"%s\"", ts);
    as_iso_format(a->started_ns, ts);
    as_buf_printf(&rest, ",\"started_at\":\"%s\"", ts);
    as_iso_format(a->ended_ns, ts);
    as_buf_printf(&rest, ",\"ended_at\":\"%s\"", ts);
    as_buf_printf(&rest, ",\"duration_ms\":%lld", (long long)a->duration_ms);
    if (a->tools_used) {
        as_buf_puts(&rest, ",\"tools_used\":");
        as_buf_puts(&rest, a->tools_used);
    }
    if (a->response) {
        as_buf_puts(&rest, ",\"response\":");
        as_json_cstr(&rest, a->response);
    }
    if (a->error_msg) {
        as_buf_puts(&rest, ",\"error_msg\":");
        as_json_cstr(&rest, a->error_msg);
    }
    as_buf_putc(&rest, '}');
built:
    if (meta.oom || line.oom || rest.oom)
        goto error;
    while (line.len > 0 && line.data[line.len - 1] == '\n')
        line.len--;
    as_buf_cstr(&line);
    as_buf_cstr(&rest);
    it->line = line.data;
    it->rest = rest.data;
    it->sk = k;
    it->cv = cv;
    it->key = key;
    it->rp = rp;
    as_buf_free(&meta);
    k->held++;
    return it;
error:
    as_buf_free(&meta);
    as_buf_free(&line);
    as_buf_free(&rest);
    free(it);
    return NULL;
}

/* The API is down or the sink holds all it may: the action goes straight to the spool
 * as its line (no request body, no allocation per action), so a dead or slow server
 * costs the exporter about what the file sink does. Returns 0, or -1 when out of memory
 * (the action is then counted as dropped by the spool). */
static int spool_direct(sk *k, const as_action *a) {
    char id[33];
    as_buf_reset(&k->meta);
    as_buf_reset(&k->line);
    as_spool_tag_action(a->metadata, a->event_id, &k->meta, id);
    as_action copy = *a;
    copy.metadata = as_buf_cstr(&k->meta);
    copy.event_id = id;
    as_action_to_jsonl(&copy, &k->line);
    if (k->meta.oom || k->line.oom) {
        as_buf_free(&k->meta);
        as_buf_free(&k->line);
        return -1;
    }
    as_spool_stage(k->spool, 0, k->line.data, k->line.len);
    k->spooled++;
    k->spool_maybe = 1;
    if (k->sink)
        k->sink->failed++;
    return 0;
}

static void accept_action(sk *k, const as_action *a, int64_t key, replay *rp) {
    /* Requests in flight fail (no answer, 429, 502-504): new actions wait in the spool
     * rather than in memory, until those end (then new ones probe the server again). */
    int failing =
        outstanding(k) > 0 && !as_http_answering(k->http) && !(k->healthy && k->held < WIRE_AHEAD);
    if (!rp && (k->held >= MAX_ITEMS || failing ||
                (k->down_until_ms && as_mono_ms() < k->down_until_ms))) {
        display_name_seen(k, a);
        if (spool_direct(k, a) != 0)
            as_alert_error("agentsight sink: out of memory; an action is lost");
        return;
    }
    item *it = make_item(k, a, key, rp);
    if (!it) {
        as_alert_error("agentsight sink: out of memory; an action is lost");
        return;
    }
    if (!rp)
        display_name_seen(k, a);
    if (k->held > MAX_ITEMS && !rp) {
        to_spool(k, it); /* memory bound: the spool takes the overflow */
        return;
    }
    dispatch(k, it);
}

static int replay_line(const char *line, size_t len, void *ctx) {
    sk *k = ctx;
    as_spool_rec rec;
    if (as_spool_parse_line(line, len, &rec) != 0)
        return 0; /* not an action: skipped */
    k->rp->remaining++;
    accept_action(k, &rec.a, k->rp->key, k->rp);
    as_spool_rec_free(&rec);
    return 0;
}

/* Starts replaying the oldest spooled batch when the API answers and there is room. */
static void maybe_replay(sk *k) {
    if (k->rp || k->closing || !k->spool_maybe || !k->healthy || k->held > MAX_ITEMS / 4)
        return;
    if (k->down_until_ms && as_mono_ms() < k->down_until_ms)
        return;
    replay *rp = as_spool_replay_start(k->spool, &k->spool_maybe);
    if (!rp)
        return;
    k->rp = rp; /* remaining 1: held until loading ends */
    as_spool_read(rp->path, NULL, 0, replay_line, k);
    rp->loaded = 1;
    item dummy = {.rp = rp};
    k->held++;
    replay_step_done(k, &dummy);
    k->held--;
}

static void drive(sk *k, int timeout_ms) {
    pump(k);
    if (as_http_outstanding(k->http) == 0 && as_http_outstanding(k->http_gz) > 0)
        as_http_run(k->http_gz, timeout_ms);
    else
        as_http_run(k->http, timeout_ms);
    as_http_run(k->http_gz, 0);
    pump(k);
    maybe_replay(k);
    pump(k);
    as_http_run(k->http, 0);
}

/* Whether new actions go straight to the spool: the API is down, its requests fail, or
 * the sink holds all it may. */
static int spool_new(sk *k) {
    int failing =
        outstanding(k) > 0 && !as_http_answering(k->http) && !(k->healthy && k->held < WIRE_AHEAD);
    return k->held >= MAX_ITEMS || failing || (k->down_until_ms && as_mono_ms() < k->down_until_ms);
}

/* New actions while the API may answer: their lines are written ahead as one claimed
 * batch, then each is routed with that batch as its replay. */
static void send_ahead(sk *k, const as_action *batch, size_t n) {
    item **its = calloc(n, sizeof *its);
    as_buf lines;
    as_buf_init(&lines);
    size_t made = 0;
    for (size_t i = 0; its && i < n; i++) {
        display_name_seen(k, &batch[i]);
        its[made] = make_item(k, &batch[i], 0, NULL);
        if (!its[made]) {
            if (spool_direct(k, &batch[i]) != 0)
                as_alert_error("agentsight sink: out of memory; an action is lost");
            continue;
        }
        as_buf_puts(&lines, its[made]->line);
        as_buf_putc(&lines, '\n');
        made++;
    }
    if (!its) {
        for (size_t i = 0; i < n; i++)
            accept_action(k, &batch[i], 0, NULL);
        return;
    }
    replay *wal = lines.oom ? NULL : as_spool_wal(k->spool, lines.data, lines.len, made);
    as_buf_free(&lines);
    if (wal)
        wal->remaining = made;
    for (size_t i = 0; i < made; i++) {
        its[i]->rp = wal;
        its[i]->key = wal ? wal->key : 0;
    }
    if (wal && made == 0) { /* nothing to wait for */
        as_spool_replay_end(k->spool, wal);
    }
    for (size_t i = 0; i < made; i++)
        dispatch(k, its[i]);
    free(its);
}

static int ags_send(as_sink *s, const as_action *batch, size_t n) {
    sk *k = s->impl;
    if (n > 0 && spool_new(k)) {
        for (size_t i = 0; i < n; i++)
            accept_action(k, &batch[i], 0, NULL);
    } else if (n > 0) {
        send_ahead(k, batch, n);
    }
    drive(k, 0);               /* never wait here: the agent's queue must keep moving */
    as_spool_commit(k->spool); /* what was staged for new actions is on disk now */
    return 0;
}

static int held_conv_items(sk *k) {
    if (k->probe_head)
        return 1;
    for (conv *c = k->convs; c; c = c->next)
        if (c->wait_head)
            return 1;
    return 0;
}

/* Ends every request and hands everything the sink holds to the spool: cancelled
 * requests report through their callbacks (which spool and never submit again), then
 * the items ready for the wire and those waiting for a conversation. Leaves the client
 * with nothing outstanding. This function can't fail. */
static void spool_everything(sk *k) {
    as_http_cancel_all(k->http);
    as_http_cancel_all(k->http_gz);
    while (k->probe_head) {
        item *it = k->probe_head;
        k->probe_head = it->next;
        to_spool(k, it);
    }
    k->probe_tail = NULL;
    while (k->ready_head) {
        item *it = k->ready_head;
        k->ready_head = it->next;
        to_spool(k, it);
    }
    k->ready_tail = NULL;
    for (conv *c = k->convs; c; c = c->next) {
        while (c->wait_head) {
            item *it = c->wait_head;
            c->wait_head = it->next;
            to_spool(k, it);
        }
        c->wait_tail = NULL;
        c->creating = 0;
    }
    as_spool_commit(k->spool);
}

static int ags_flush(as_sink *s, int timeout_ms) {
    sk *k = s->impl;
    /* exit or exec: a refused connection spools now (http.h) */
    as_http_set_final(k->http, as_pipe_stopping());
    as_http_set_final(k->http_gz, as_pipe_stopping());
    int64_t deadline = as_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        drive(k, 20);
        if (!k->ready_head && outstanding(k) == 0 && !held_conv_items(k))
            break;
        if (as_mono_ms() >= deadline) {
            /* Out of time: everything still held goes to the spool. Nothing may be put
             * back on the wire here (a request left outstanding would report later,
             * after a replay it belongs to was freed). */
            spool_everything(k);
            return -1;
        }
    }
    as_spool_commit(k->spool);
    return 0;
}

static void ags_close(as_sink *s) {
    sk *k = s->impl;
    if (!k)
        return;
    k->closing = 1; /* no replay starts now: it would only be spooled again */
    spool_everything(k);
    if (k->rp) {
        /* Every item is finished after spool_everything(), so a replay still open
         * was not fully accounted for: give its file back rather than lose a line
         * (a line delivered twice keeps its event id). */
        as_spool_commit(k->spool);
        as_spool_unclaim(k->rp->path);
        free(k->rp);
        k->rp = NULL;
    }
    as_http_free(k->http);
    as_http_free(k->http_gz);
    as_spool_close(k->spool);
    as_buf_free(&k->meta);
    as_buf_free(&k->line);
    while (k->convs) {
        conv *c = k->convs;
        k->convs = c->next;
        free(c->cid);
        free(c);
    }
    while (k->names) {
        named *n = k->names;
        k->names = n->next;
        free(n->name);
        free(n->display);
        free(n);
    }
    if (k->spooled || k->dead)
        as_info("agentsight sink: %llu delivered, %llu spooled, %llu dead letters", k->delivered,
                k->spooled, k->dead);
    free(k);
    s->impl = NULL;
}

static int ags_open(as_sink *s, const char *arg) {
    const char *key = as_cfg.api_key[0] ? as_cfg.api_key : as_keptenv_get("AGENTSIGHT_API_KEY");
    if (!key || !*key) {
        as_error("agentsight sink: AGENTSIGHT_API_KEY is not set; the sink is not opened");
        return -1;
    }
    if (!key_shape_ok(key)) {
        as_error("agentsight sink: AGENTSIGHT_API_KEY is not shaped ags_<32 hex>_<6 hex>; "
                 "the sink is not opened");
        return -1;
    }
    if (as_dynlib_load(&as_cjson_lib) != 0)
        return -1; /* its answers cannot be read; the message names the library */
    sk *k = calloc(1, sizeof *k);
    if (!k)
        return -1;
    const char *ep = arg && *arg              ? arg
                     : as_cfg.api_endpoint[0] ? as_cfg.api_endpoint
                     : as_keptenv_get("AGENTSIGHT_API_ENDPOINT")
                         ? as_keptenv_get("AGENTSIGHT_API_ENDPOINT")
                         : "https://api.agentsight.io";
    as_spool_uri_clean(ep, k->endpoint, sizeof k->endpoint);
    size_t el = strlen(k->endpoint);
    while (el > 0 && k->endpoint[el - 1] == '/')
        k->endpoint[--el] = 0;
    snprintf(k->uri, sizeof k->uri, "agentsight:%s", k->endpoint);
    /* The sink's URI names its endpoint (no secret in it), so what records the sinks of
     * this process (ring headers, a forked child) reaches the same server later. */
    snprintf(s->uri, sizeof s->uri, "%.*s", (int)sizeof s->uri - 1, k->uri);
    char auth[200];
    snprintf(auth, sizeof auth, "Authorization: Api-Key %s", key);
    const char *headers[] = {auth, "Content-Type: application/json", "Accept: application/json",
                             NULL};
    k->http = as_http_new(NULL, headers);
    const char *gz_headers[] = {auth, "Content-Type: application/json", "Accept: application/json",
                                "Content-Encoding: gzip", NULL};
    k->http_gz = k->http ? as_http_new(NULL, gz_headers) : NULL;
    memset(auth, 0, sizeof auth);
    __asm__ volatile("" ::"r"(auth) : "memory"); /* keep the wipe */
    const char *root =
        as_cfg.spool_dir[0] ? as_cfg.spool_dir : as_keptenv_get("AGENTSIGHT_SPOOL_DIR");
    k->spool = as_spool_open(root, k->uri, 0);
    if (!k->http || !k->http_gz || !k->spool) {
        as_error("agentsight sink: cannot start (%s)", k->http ? "no spool" : "libcurl");
        as_http_free(k->http);
        as_http_free(k->http_gz);
        as_spool_close(k->spool);
        free(k);
        return -1;
    }
    k->sink = s;
    k->healthy = 1;
    const char *env = as_keptenv_get("AGENTSIGHT_ENVIRONMENT");
    snprintf(k->environment, sizeof k->environment, "%s", env ? env : "");
    if (probe_cache.api != API_UNKNOWN && strcmp(probe_cache.endpoint, k->endpoint) == 0) {
        k->api = probe_cache.api;
        k->gzip = probe_cache.gzip;
    }
    k->spool_maybe = as_spool_pending(k->spool, NULL) > 0;
    as_buf_init(&k->meta);
    as_buf_init(&k->line);
    s->impl = k;
    return 0;
}

const as_sink_ops as_sink_agentsight_ops = {
    .scheme = "agentsight",
    .open = ags_open,
    .send = ags_send,
    .flush = ags_flush,
    .close = ags_close,
};
