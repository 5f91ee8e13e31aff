/* sink_otlp.c - the `otlp:URL` sink: each batch of actions becomes one OTLP/HTTP JSON
 * export (POST URL/v1/traces) of INTERNAL spans, retried only on 429/502/503/504 and
 * connection failures (the OTLP rule); undelivered batches go to the spool, refused ones
 * to the dead letters. Write-ahead: the lines of a new export are written to the spool as
 * a batch claimed by this process before the request is made, and that file is removed
 * once the request is answered (2xx, a refusal to the dead letters, or a failure staged
 * and committed again), so an action the exporter took from its ring is always on disk.
 *
 * Span per action: name "execute_tool {action_name}", kind 1 (INTERNAL), traceId from
 * the conversation id (so one conversation is one trace), spanId from the action's
 * agentsight_event_id (stable across replays), times as decimal nanosecond strings,
 * attributes gen_ai.operation.name, gen_ai.tool.name, gen_ai.conversation.id,
 * agentsight.event_id, error.type (+ status code 2) on failure; arguments and result
 * (gen_ai.tool.call.arguments / .result) only when AGENTSIGHT_OTLP_CAPTURE=1.
 * Resource: service.name (settings, else the program name) and process.pid.
 * Runs on the exporter thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/redact.h"
#include "core/clock.h"
#include "core/action.h"
#include "core/http.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/settings.h"
#include "core/sink.h"
#include "core/spool.h"

#define MAX_BATCHES 64 /* export requests held in memory; more go to the spool */
#define CHUNK 512      /* actions per export request */
#define DOWN_MIN_MS 500
#define DOWN_MAX_MS 30000

typedef struct osk osk;

typedef as_spool_replay replay; /* remaining: batches not yet finished (+1 while loading) */

typedef struct obatch {
    osk *k;
    int64_t key;
    replay *rp;
    as_buf lines; /* the actions as JSONL, for the spool and the dead letters */
    size_t count;
} obatch;

struct osk {
    as_sink *sink;
    as_http *http;
    as_spool *spool;
    char url[600];
    char uri[620];
    char service[128];
    int capture;
    size_t held;
    int64_t down_until_ms;
    int down_ms;
    int healthy;
    int spool_maybe;
    int closing; /* close() runs: no replay starts (it would only be spooled again) */
    unsigned logged;
    replay *rp;
    /* replay loading: actions parsed from the claimed file, chunked */
    as_spool_rec *recs;
    size_t nrecs;
};

static uint64_t fnv1a(const char *s, uint64_t h) {
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h ? h : 1;
}

static void attr_str(as_buf *b, int *first, const char *key, const char *v) {
    if (!v)
        return;
    as_buf_puts(b, *first ? "{\"key\":" : ",{\"key\":");
    *first = 0;
    as_json_cstr(b, key);
    as_buf_puts(b, ",\"value\":{\"stringValue\":");
    as_json_cstr(b, v);
    as_buf_puts(b, "}}");
}

static void span(osk *k, as_buf *b, const as_action *a, const char *event_id) {
    const char *cid = a->conversation_id ? a->conversation_id : "";
    uint64_t t1 = fnv1a(cid, 0xcbf29ce484222325ull), t2 = fnv1a(cid, 0x84222325cbf29ce4ull);
    uint64_t sid = fnv1a(event_id, 0xcbf29ce484222325ull);
    as_buf_printf(b, "{\"traceId\":\"%016llx%016llx\",\"spanId\":\"%016llx\",\"name\":",
                  (unsigned long long)t1, (unsigned long long)t2, (unsigned long long)sid);
    as_buf tmp;
    as_buf_init(&tmp);
    as_buf_puts(&tmp, "execute_tool ");
    as_buf_puts(&tmp, a->action_name);
    as_json_cstr(b, as_buf_cstr(&tmp));
    as_buf_free(&tmp);
    as_buf_printf(b,
                  ",\"kind\":1,\"startTimeUnixNano\":\"%lld\",\"endTimeUnixNano\":\"%lld\","
                  "\"attributes\":[",
                  (long long)a->started_ns, (long long)a->ended_ns);
    int first = 1;
    attr_str(b, &first, "gen_ai.operation.name", "execute_tool");
    attr_str(b, &first, "gen_ai.tool.name", a->action_name);
    attr_str(b, &first, "gen_ai.conversation.id", cid);
    attr_str(b, &first, "agentsight.event_id", event_id);
    if (a->error_msg)
        attr_str(b, &first, "error.type", "tool_error");
    if (k->capture) {
        attr_str(b, &first, "gen_ai.tool.call.arguments", a->tools_used);
        attr_str(b, &first, "gen_ai.tool.call.result", a->response);
    }
    as_buf_putc(b, ']');
    if (a->error_msg) {
        as_buf_puts(b, ",\"status\":{\"code\":2,\"message\":");
        as_json_cstr(b, a->error_msg);
        as_buf_putc(b, '}');
    }
    as_buf_putc(b, '}');
}

static void batch_free(obatch *bt) {
    as_buf_free(&bt->lines);
    free(bt);
}

static void replay_step_done(osk *k, replay *rp) {
    if (!rp || --rp->remaining > 0)
        return;
    if (k->rp == rp)
        k->rp = NULL;
    as_spool_replay_end(k->spool, rp);
}

static void batch_spool(osk *k, obatch *bt) {
    const char *p = as_buf_cstr(&bt->lines);
    for (const char *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl)
            break;
        as_spool_stage(k->spool, bt->key, p, (size_t)(nl - p));
    }
    k->spool_maybe = 1;
    if (k->sink)
        k->sink->failed += bt->count;
}

static void batch_dead(osk *k, obatch *bt, long status, const char *answer) {
    const char *p = as_buf_cstr(&bt->lines);
    for (const char *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl)
            break;
        as_spool_dead_letter(k->spool, status, answer, p, (size_t)(nl - p));
    }
    if (k->sink)
        k->sink->failed += bt->count;
}

static void on_done(void *ctx, const as_http_resp *r) {
    obatch *bt = ctx;
    osk *k = bt->k;
    unsigned bit = 0;
    if (r->status >= 200 && r->status < 300) {
        k->healthy = 1;
        k->down_ms = 0;
        k->down_until_ms = 0;
        if (k->sink)
            k->sink->sent += bt->count;
    } else if (r->status != 0 && !as_http_retryable(r->status)) {
        bit = 1;
        batch_dead(k, bt, r->status, r->body);
    } else {
        if (!r->cancelled) {
            bit = 2;
            k->healthy = 0;
            k->down_ms = k->down_ms ? k->down_ms * 2 : DOWN_MIN_MS;
            if (k->down_ms > DOWN_MAX_MS)
                k->down_ms = DOWN_MAX_MS;
            k->down_until_ms = as_mono_ms() + k->down_ms;
        }
        batch_spool(k, bt);
    }
    if (bit && !(k->logged & bit)) {
        k->logged |= bit;
        char shown[512];
        as_redact_uris(k->url, shown, sizeof shown);
        if (bit == 1)
            as_alert_warn("otlp sink: %s refused spans with HTTP %ld; they are kept in the "
                          "dead-letter file beside the spool (not logged again)",
                          shown, r->status);
        else if (r->status)
            as_alert_warn("otlp sink: %s failed (HTTP %ld); spans are spooled and replayed later",
                          shown, r->status);
        else
            as_alert_warn("otlp sink: %s failed (%s); spans are spooled and replayed later", shown,
                          r->error);
    }
    replay_step_done(k, bt->rp);
    k->held--;
    batch_free(bt);
}

/* Builds and queues one export for n actions (or spools them when down or full). */
static void export(osk *k, const as_action *a, size_t n, int64_t key, replay *rp) {
    obatch *bt = calloc(1, sizeof *bt);
    if (!bt) {
        as_alert_error("otlp sink: out of memory; %zu actions are lost", n);
        return;
    }
    bt->k = k;
    bt->key = key;
    bt->rp = rp;
    bt->count = n;
    as_buf_init(&bt->lines);
    if (rp)
        rp->remaining++;
    k->held++;
    /* Down or full: only the lines are made, for the spool (no export body). */
    int spool_now = (k->down_until_ms && as_mono_ms() < k->down_until_ms) || k->held > MAX_BATCHES;
    as_buf body, meta;
    as_buf_init(&body);
    as_buf_init(&meta);
    as_buf_puts(&body, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    int first = 1;
    attr_str(&body, &first, "service.name", k->service);
    as_buf_printf(&body, ",{\"key\":\"process.pid\",\"value\":{\"intValue\":\"%d\"}}",
                  (int)getpid());
    as_buf_puts(&body, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"agentsight\",\"version\":"
                       "\"" AGENTSIGHT_VERSION "\"},\"spans\":[");
    for (size_t i = 0; i < n; i++) {
        char id[33];
        as_buf_reset(&meta);
        as_spool_tag_action(a[i].metadata, a[i].event_id, &meta, id);
        as_action copy = a[i];
        copy.metadata = as_buf_cstr(&meta);
        copy.event_id = id;
        as_action_to_jsonl(&copy, &bt->lines);
        if (bt->lines.len && bt->lines.data[bt->lines.len - 1] != '\n')
            as_buf_putc(&bt->lines, '\n');
        if (spool_now)
            continue;
        if (i)
            as_buf_putc(&body, ',');
        span(k, &body, &copy, id);
    }
    as_buf_puts(&body, "]}]}]}");
    as_buf_free(&meta);
    if (body.oom || bt->lines.oom || spool_now) {
        as_buf_free(&body);
        as_http_resp r = {.status = 0, .body = "", .error = "spooled", .cancelled = 1};
        on_done(bt, &r);
        return;
    }
    if (!rp) {
        /* New actions: on disk before the network is tried. */
        replay *wal = as_spool_wal(k->spool, bt->lines.data, bt->lines.len, n);
        if (wal) {
            wal->remaining = 1;
            bt->rp = wal;
            bt->key = wal->key;
        }
    }
    if (as_http_submit(k->http, "POST", k->url, body.data, body.len, on_done, bt) != 0) {
        as_http_resp r = {.status = 0, .body = "", .error = "out of memory", .cancelled = 1};
        on_done(bt, &r);
    }
}

/* Exports the replayed records gathered so far (one request of up to CHUNK spans) and
 * frees them. */
static void export_recs(osk *k) {
    if (k->nrecs == 0)
        return;
    as_action acts[CHUNK];
    for (size_t i = 0; i < k->nrecs; i++)
        acts[i] = k->recs[i].a;
    export(k, acts, k->nrecs, k->rp->key, k->rp);
    for (size_t i = 0; i < k->nrecs; i++)
        as_spool_rec_free(&k->recs[i]);
    k->nrecs = 0;
}

static int replay_line(const char *line, size_t len, void *ctx) {
    osk *k = ctx;
    if (as_spool_parse_line(line, len, &k->recs[k->nrecs]) != 0)
        return 0;
    if (++k->nrecs == CHUNK)
        export_recs(k);
    return 0;
}

static void maybe_replay(osk *k) {
    if (k->rp || k->closing || !k->spool_maybe || !k->healthy || k->held > MAX_BATCHES / 4)
        return;
    if (k->down_until_ms && as_mono_ms() < k->down_until_ms)
        return;
    replay *rp = as_spool_replay_start(k->spool, &k->spool_maybe);
    if (!rp)
        return;
    k->rp = rp; /* remaining 1: held while loading */
    k->nrecs = 0;
    as_spool_read(rp->path, NULL, 0, replay_line, k);
    export_recs(k);
    replay_step_done(k, rp);
}

static int otlp_send(as_sink *s, const as_action *batch, size_t n) {
    osk *k = s->impl;
    for (size_t i = 0; i < n; i += CHUNK)
        export(k, batch + i, n - i < CHUNK ? n - i : CHUNK, 0, NULL);
    as_http_run(k->http, 0); /* never wait here: the agent's queue must keep moving */
    maybe_replay(k);
    as_spool_commit(k->spool); /* what was staged for new actions is on disk now */
    return 0;
}

static int otlp_flush(as_sink *s, int timeout_ms) {
    osk *k = s->impl;
    int64_t deadline = as_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int rc = 0;
    for (;;) {
        maybe_replay(k);
        if (as_http_run(k->http, 20) == 0 && !k->rp)
            break;
        if (as_mono_ms() >= deadline) {
            as_http_cancel_all(k->http);
            rc = -1;
            break;
        }
    }
    as_spool_commit(k->spool);
    return rc;
}

static void otlp_close(as_sink *s) {
    osk *k = s->impl;
    if (!k)
        return;
    k->closing = 1;
    otlp_flush(s, 0);
    as_http_free(k->http);
    as_spool_close(k->spool);
    free(k->recs);
    free(k);
    s->impl = NULL;
}

static int otlp_open(as_sink *s, const char *arg) {
    if (!arg || (strncmp(arg, "http://", 7) != 0 && strncmp(arg, "https://", 8) != 0)) {
        as_error("otlp sink: expected otlp:http://HOST:PORT, got 'otlp:%.200s'", arg ? arg : "");
        return -1;
    }
    osk *k = calloc(1, sizeof *k);
    if (!k)
        return -1;
    char base[560];
    snprintf(base, sizeof base, "%s", arg);
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        base[--bl] = 0;
    if (bl >= 10 && strcmp(base + bl - 10, "/v1/traces") == 0)
        base[bl -= 10] = 0;
    snprintf(k->url, sizeof k->url, "%s/v1/traces", base);
    char clean[560];
    as_spool_uri_clean(base, clean, sizeof clean);
    snprintf(k->uri, sizeof k->uri, "otlp:%s", clean);
    snprintf(k->service, sizeof k->service, "%s",
             as_cfg.service_name[0] ? as_cfg.service_name : program_invocation_short_name);
    const char *cap = secure_getenv("AGENTSIGHT_OTLP_CAPTURE");
    k->capture = cap && strcmp(cap, "1") == 0;
    const char *headers[] = {"Content-Type: application/json", NULL};
    as_http_opts o = {0};
    k->http = as_http_new(&o, headers);
    const char *root =
        as_cfg.spool_dir[0] ? as_cfg.spool_dir : secure_getenv("AGENTSIGHT_SPOOL_DIR");
    k->spool = as_spool_open(root, k->uri, 0);
    k->recs = calloc(CHUNK, sizeof *k->recs);
    if (!k->http || !k->spool || !k->recs) {
        as_error("otlp sink: cannot start");
        as_http_free(k->http);
        as_spool_close(k->spool);
        free(k->recs);
        free(k);
        return -1;
    }
    k->sink = s;
    k->healthy = 1;
    k->spool_maybe = as_spool_pending(k->spool, NULL) > 0;
    s->impl = k;
    return 0;
}

const as_sink_ops as_sink_otlp_ops = {
    .scheme = "otlp",
    .open = otlp_open,
    .send = otlp_send,
    .flush = otlp_flush,
    .close = otlp_close,
};
