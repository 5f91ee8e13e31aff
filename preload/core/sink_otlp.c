/* sink_otlp.c - the `otlp` sink: each batch of actions becomes one OTLP/HTTP trace export
 * (POST .../v1/traces), http/protobuf by default or http/json, gzip when asked, configured
 * by the OpenTelemetry SDK's variables (otel_env.h) unless the URI names a URL
 * (`otlp:http://HOST:4318`). Retried only on 429/502/503/504 and connection failures (the
 * OTLP rule); undelivered batches go to the spool, refused ones to the dead letters.
 * Write-ahead: the lines of a new export are written to the spool as a batch claimed by
 * this process before the request is made, and that file is removed once the request is
 * answered (2xx, a refusal to the dead letters, or a failure staged and committed again),
 * so an action the exporter took from its ring is always on disk.
 *
 * Trace structure: one trace per conversation (traceId from the conversation id); in it
 * one root span per process ("process {program}", from the first to the last action it
 * exported, sent when the sink closes, through the spool like an action), and one INTERNAL
 * child span per action, "execute_tool {action_name}", spanId from the action's
 * agentsight_event_id (stable across replays). The parent is kept in the spooled line's
 * metadata (agentsight_otel_parent), so a replay by another process keeps the tree; the
 * process span itself is spooled as a line whose metadata holds agentsight_otel_root.
 * Attributes follow the GenAI conventions for execute_tool (gen_ai.operation.name,
 * gen_ai.tool.name, gen_ai.tool.type, gen_ai.tool.call.id, gen_ai.conversation.id,
 * error.type + status 2 on failure; gen_ai.tool.call.arguments (the parameters, as a
 * structured value) and gen_ai.tool.call.result (on success only) when capture is on).
 * An LLM call (an action whose metadata.source is "llm", made by the TLS hooks) is a
 * CLIENT span named as the action ("chat gpt-4o-mini"), with the GenAI client attributes:
 * gen_ai.operation.name, gen_ai.provider.name, gen_ai.request.model,
 * gen_ai.response.model, gen_ai.usage.input_tokens (cached tokens included) and
 * .output_tokens, gen_ai.usage.cache_read.input_tokens, .cache_creation.input_tokens and
 * .reasoning.output_tokens when reported, server.address, server.port,
 * http.response.status_code, and error.type (the HTTP status code) + status 2 on failure.
 * Resource: service.name, service.instance.id, telemetry.sdk.*, process.pid and
 * OTEL_RESOURCE_ATTRIBUTES. Runs on the exporter thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/redact.h"
#include "core/keptenv.h"
#include "core/gzip.h"
#include "core/otel_env.h"
#include "core/otlp_enc.h"
#include "core/dl_cjson.h"
#include "core/clock.h"
#include "core/action.h"
#include "core/http.h"
#include "core/pipeline.h"
#include "core/jsonw.h"
#include "core/llm_facts.h"
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
    char instance[40]; /* service.instance.id: a random UUID per sink (process) */
    as_otel_env env;
    int disabled; /* OTEL_SDK_DISABLED=true: actions are dropped here, nothing is sent */
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
    /* this process's root span: id, conversation, the time its new actions cover */
    char root_hex[17];
    char root_conv[AGENTSIGHT_MAX_NAME + 1];
    int64_t first_ns, last_ns;
    int has_new;
};

int as_otlp_relay;

static uint64_t fnv1a(const char *s, uint64_t h) {
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h ? h : 1;
}

static void put_be64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* The 16 hex digits of a metadata string member key, or 0 (a cheap look-up: the
 * metadata is the sink's own JSON, the member a fixed-form hex string). */
static uint64_t meta_hex(const char *meta, const char *key) {
    if (!meta)
        return 0;
    const char *p = strstr(meta, key);
    if (!p)
        return 0;
    p += strlen(key);
    if (strncmp(p, "\":\"", 3) != 0)
        return 0;
    p += 3;
    if (strspn(p, "0123456789abcdef") != 16 || p[16] != '"')
        return 0;
    return strtoull(p, NULL, 16);
}

/* error.type: what failed, in few distinct values: the errno name when the message ends
 * with an errno's text, else the kind of failure. */
static const char *error_type(const char *msg) {
    if (!strncmp(msg, "did not return (left by an exception", 36))
        return "exception";
    if (!strncmp(msg, "did not return (the process exited", 34))
        return "process_exited";
    if (!strncmp(msg, "did not return", 14))
        return "not_returned";
    const char *c = strstr(msg, ": ");
    if (!strncmp(msg, "returned ", 9) && c) {
        for (int e = 1; e < 134; e++) {
            char tmp[128];
            const char *t = strerror_r(e, tmp, sizeof tmp);
            const char *name = strerrorname_np(e);
            if (name && t && strcmp(c + 2, t) == 0)
                return name;
        }
    }
    if (!strncmp(msg, "returned ", 9))
        return "error_return";
    return "tool_error";
}

/* The "parameters" member of a tools_used object as JSON text (malloc'd), or NULL. */
static char *parameters_of(const char *tools_used) {
    if (!tools_used || as_dynlib_load(&as_cjson_lib) != 0)
        return NULL;
    cJSON *j = as_cjson.cJSON_Parse(tools_used);
    if (!j)
        return NULL;
    cJSON *p = as_cjson.cJSON_GetObjectItemCaseSensitive(j, "parameters");
    char *out = p && as_cjson.cJSON_IsObject(p) ? as_cjson.cJSON_PrintUnformatted(p) : NULL;
    as_cjson.cJSON_Delete(j);
    return out;
}

static void trace_of(const char *conv, uint8_t id[16]) {
    put_be64(id, fnv1a(conv, 0xcbf29ce484222325ull));
    put_be64(id + 8, fnv1a(conv, 0x84222325cbf29ce4ull));
}

/* Adds the span of one action (a tool call, an LLM call, or this sink's process span) to
 * e. */
static void span(osk *k, as_otlp_enc *e, const as_action *a, const char *event_id) {
    const char *cid = a->conversation_id ? a->conversation_id : "";
    as_otlp_span sp = {.kind = AS_OTLP_INTERNAL, .start_ns = a->started_ns, .end_ns = a->ended_ns};
    trace_of(cid, sp.trace_id);
    as_buf name;
    as_buf_init(&name);
    uint64_t root = meta_hex(a->metadata, "\"agentsight_otel_root");
    char *params = NULL;
    if (root) {
        put_be64(sp.span_id, root);
        as_buf_puts(&name, "process ");
        as_buf_puts(&name, a->action_name);
        sp.name = as_buf_cstr(&name);
        as_otlp_attr_str(&sp, "gen_ai.conversation.id", cid);
        as_otlp_attr_str(&sp, "process.executable.name", a->action_name);
        as_otlp_add(e, &sp);
        as_buf_free(&name);
        return;
    }
    put_be64(sp.span_id, fnv1a(event_id, 0xcbf29ce484222325ull));
    put_be64(sp.parent_id, meta_hex(a->metadata, "\"agentsight_otel_parent"));
    as_llm_facts f;
    char status_text[8];
    if (as_llm_is_action(a) && as_llm_facts_of(a, &f) == 0) {
        as_llm_otlp_span(&sp, a, &f, status_text);
        as_otlp_attr_str(&sp, "gen_ai.conversation.id", cid);
        as_otlp_attr_str(&sp, "agentsight.event_id", event_id);
        as_otlp_add(e, &sp);
        as_buf_free(&name);
        return;
    }
    as_buf_puts(&name, "execute_tool ");
    as_buf_puts(&name, a->action_name);
    sp.name = as_buf_cstr(&name);
    as_otlp_attr_str(&sp, "gen_ai.operation.name", "execute_tool");
    as_otlp_attr_str(&sp, "gen_ai.tool.name", a->action_name);
    as_otlp_attr_str(&sp, "gen_ai.tool.type", "function");
    as_otlp_attr_str(&sp, "gen_ai.tool.call.id", event_id);
    as_otlp_attr_str(&sp, "gen_ai.conversation.id", cid);
    as_otlp_attr_str(&sp, "agentsight.event_id", event_id);
    if (a->error_msg) {
        as_otlp_attr_str(&sp, "error.type", error_type(a->error_msg));
        sp.status_code = 2;
        sp.status_msg = a->error_msg;
    }
    if (k->capture) {
        params = parameters_of(a->tools_used);
        as_otlp_attr_json(&sp, "gen_ai.tool.call.arguments", params);
        if (!a->error_msg)
            as_otlp_attr_str(&sp, "gen_ai.tool.call.result", a->response);
    }
    as_otlp_add(e, &sp);
    free(params);
    as_buf_free(&name);
}

/* Starts an export request with this process's resource. */
static void begin(osk *k, as_otlp_enc *e, as_buf *body) {
    as_otlp_attr res[AS_OTEL_MAX_RES + 8];
    int n = 0;
    for (int i = 0; i < k->env.nres; i++)
        if (strcmp(k->env.res_key[i], "service.name") != 0 &&
            strcmp(k->env.res_key[i], "service.instance.id") != 0 &&
            strncmp(k->env.res_key[i], "telemetry.sdk.", 14) != 0)
            res[n++] = (as_otlp_attr){.key = k->env.res_key[i], .s = k->env.res_val[i]};
    res[n++] = (as_otlp_attr){.key = "service.name", .s = k->service};
    res[n++] = (as_otlp_attr){.key = "service.instance.id", .s = k->instance};
    res[n++] = (as_otlp_attr){.key = "telemetry.sdk.name", .s = "agentsight"};
    res[n++] = (as_otlp_attr){.key = "telemetry.sdk.version", .s = AGENTSIGHT_VERSION};
    res[n++] = (as_otlp_attr){.key = "telemetry.sdk.language", .s = "cpp"};
    res[n++] = (as_otlp_attr){.key = "process.pid", .type = AS_OTLP_INT, .i = getpid()};
    as_otlp_begin(e, body, k->env.protobuf, res, n, "agentsight", AGENTSIGHT_VERSION);
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

/* 1 when an action was made by another process (recovered from a dead one's ring, or
 * read from a file by `agentsight send`): it is not a child of this process's span. */
static int foreign(const char *meta) {
    if (!meta)
        return 0;
    if (strstr(meta, "\"agentsight_recovered\":true"))
        return 1;
    const char *p = strstr(meta, "\"pid\":");
    return p && strtol(p + 6, NULL, 10) != (long)getpid();
}

/* Writes metadata with "agentsight_otel_parent" (this process's span) added into out. */
static void with_parent(osk *k, const char *metadata, as_buf *out) {
    const char *rest = metadata ? metadata : "{}";
    rest += strspn(rest, " \t\r\n");
    if (*rest != '{') { /* not an object (never from a producer): kept as it was */
        as_buf_puts(out, metadata);
        return;
    }
    rest++;
    rest += strspn(rest, " \t\r\n");
    as_buf_printf(out, "{\"agentsight_otel_parent\":\"%s\"%s%s", k->root_hex,
                  *rest == '}' ? "" : ",", rest);
}

/* The body to send: the encoded request, gzip'd when asked (zlib was found at open). */
static void finish_body(osk *k, as_buf *body, int *gz) {
    *gz = 0;
    if (!k->env.gzip || body->oom)
        return;
    char *z;
    size_t zn;
    if (as_gzip(body->data, body->len, &z, &zn) != 0) {
        body->oom = 1; /* the request says gzip: spooled, tried again later */
        return;
    }
    free(body->data);
    body->data = z;
    body->len = body->cap = zn;
    *gz = 1;
}

/* Builds and queues one export for n actions (or spools them when down or full). fresh:
 * actions new from this process (they become children of its process span). */
static void export(osk *k, const as_action *a, size_t n, int64_t key, replay *rp, int fresh) {
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
    as_buf body, meta, pmeta;
    as_buf_init(&body);
    as_buf_init(&meta);
    as_buf_init(&pmeta);
    as_otlp_enc e;
    if (!spool_now)
        begin(k, &e, &body);
    for (size_t i = 0; i < n; i++) {
        char id[33];
        const char *md = a[i].metadata;
        /* This process's own actions (not recovered from another process, and in the
         * conversation of its first one) become children of its process span. */
        const char *cid = a[i].conversation_id ? a[i].conversation_id : "";
        if (fresh && !as_otlp_relay && !foreign(md) &&
            (!k->has_new || strcmp(cid, k->root_conv) == 0)) {
            if (!k->has_new) {
                k->has_new = 1;
                snprintf(k->root_conv, sizeof k->root_conv, "%s", cid);
                k->first_ns = a[i].started_ns;
                k->last_ns = a[i].ended_ns;
            }
            if (a[i].started_ns < k->first_ns)
                k->first_ns = a[i].started_ns;
            if (a[i].ended_ns > k->last_ns)
                k->last_ns = a[i].ended_ns;
            as_buf_reset(&pmeta);
            with_parent(k, md, &pmeta);
            md = as_buf_cstr(&pmeta);
        }
        as_buf_reset(&meta);
        as_spool_tag_action(md, a[i].event_id, &meta, id);
        as_action copy = a[i];
        copy.metadata = as_buf_cstr(&meta);
        copy.event_id = id;
        as_action_to_jsonl(&copy, &bt->lines);
        if (bt->lines.len && bt->lines.data[bt->lines.len - 1] != '\n')
            as_buf_putc(&bt->lines, '\n');
        if (!spool_now)
            span(k, &e, &copy, id);
    }
    if (!spool_now)
        as_otlp_end(&e);
    as_buf_free(&meta);
    as_buf_free(&pmeta);
    int gz = 0;
    if (!spool_now)
        finish_body(k, &body, &gz);
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
    (void)gz;
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
    export(k, acts, k->nrecs, k->rp->key, k->rp, 0);
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
    if (k->disabled)
        return 0;
    for (size_t i = 0; i < n; i += CHUNK)
        export(k, batch + i, n - i < CHUNK ? n - i : CHUNK, 0, NULL, 1);
    as_http_run(k->http, 0); /* never wait here: the agent's queue must keep moving */
    maybe_replay(k);
    as_spool_commit(k->spool); /* what was staged for new actions is on disk now */
    return 0;
}

static int otlp_flush(as_sink *s, int timeout_ms) {
    osk *k = s->impl;
    if (k->disabled)
        return 0;
    /* exit or exec: a refused connection spools now (http.h) */
    as_http_set_final(k->http, as_pipe_stopping() || k->closing);
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

/* Exports this process's span (the parent of its tool spans), written ahead like an
 * action; waits a little for the answer (what is not answered stays in the spool). */
static void export_process_span(osk *k) {
    if (!k->has_new)
        return;
    char meta[96];
    snprintf(meta, sizeof meta, "{\"agentsight_otel_root\":\"%s\",\"pid\":%d}", k->root_hex,
             (int)getpid());
    as_action a = {
        .action_name = program_invocation_short_name[0] ? program_invocation_short_name : "process",
        .started_ns = k->first_ns,
        .ended_ns = k->last_ns,
        .duration_ms = (k->last_ns - k->first_ns + 500000) / 1000000,
        .conversation_id = k->root_conv,
        .metadata = meta,
        .timestamp_ns = k->last_ns,
    };
    k->has_new = 0;
    export(k, &a, 1, 0, NULL, 0);
    as_spool_commit(k->spool);
    /* Exit waits for this one request at most 1 s (or the flush timeout when smaller);
     * what is not answered by then is replayed from the spool. */
    int ft = as_cfg.flush_timeout_ms > 0 ? as_cfg.flush_timeout_ms : 1000;
    int wait = ft < 1000 ? ft : 1000;
    int64_t deadline = as_mono_ms() + wait;
    while (k->healthy && as_http_run(k->http, 20) > 0 && as_mono_ms() < deadline)
        ;
}

static void otlp_close(as_sink *s) {
    osk *k = s->impl;
    if (!k)
        return;
    as_http_set_final(k->http, 1); /* the process span too: refused, it is spooled now */
    if (!k->disabled)
        export_process_span(k);
    k->closing = 1;
    otlp_flush(s, 0);
    as_http_free(k->http);
    as_spool_close(k->spool);
    as_otel_env_free(&k->env);
    free(k->recs);
    free(k);
    s->impl = NULL;
}

static void uuid4(char out[37]) {
    uint64_t a = as_http_random64(), b = as_http_random64();
    a = (a & ~0xf000ull) | 0x4000ull;       /* version 4 */
    b = (b & ~(3ull << 62)) | (2ull << 62); /* variant 10 */
    snprintf(out, 37, "%08llx-%04llx-%04llx-%04llx-%012llx", (unsigned long long)(a >> 32),
             (unsigned long long)((a >> 16) & 0xffff), (unsigned long long)(a & 0xffff),
             (unsigned long long)(b >> 48), (unsigned long long)(b & 0xffffffffffffull));
}

static int otlp_open(as_sink *s, const char *arg) {
    int given = arg && arg[0];
    if (given && strncmp(arg, "http://", 7) != 0 && strncmp(arg, "https://", 8) != 0) {
        as_error("otlp sink: expected otlp or otlp:http://HOST:PORT, got 'otlp:%.200s'", arg);
        return -1;
    }
    osk *k = calloc(1, sizeof *k);
    if (!k)
        return -1;
    if (as_otel_env_load(&k->env, given) != 0) {
        free(k);
        return -1;
    }
    s->impl = k;
    k->sink = s;
    if (k->env.disabled) { /* OTEL_SDK_DISABLED=true: no export, no spool, no library */
        k->disabled = 1;
        return 0;
    }
    char base[560];
    if (given) {
        snprintf(base, sizeof base, "%s", arg);
        size_t bl = strlen(base);
        while (bl > 0 && base[bl - 1] == '/')
            base[--bl] = 0;
        if (bl >= 10 && strcmp(base + bl - 10, "/v1/traces") == 0)
            base[bl -= 10] = 0;
        snprintf(k->url, sizeof k->url, "%s/v1/traces", base);
    } else {
        snprintf(k->url, sizeof k->url, "%s", k->env.url);
        snprintf(base, sizeof base, "%.559s", k->env.url);
        size_t bl = strlen(base);
        if (bl >= 10 && strcmp(base + bl - 10, "/v1/traces") == 0)
            base[bl - 10] = 0;
        else
            base[0] = 0; /* a traces URL of its own path: no otlp:URL names it */
    }
    /* The spool's sink URI, which `agentsight send` opens again: otlp:BASE when the URL
     * is BASE/v1/traces, else plain otlp (the replaying process's OTEL_* variables). */
    char clean[560];
    as_spool_uri_clean(base, clean, sizeof clean);
    snprintf(k->uri, sizeof k->uri, clean[0] ? "otlp:%s" : "otlp", clean);
    snprintf(k->service, sizeof k->service, "%s",
             as_cfg.service_name[0] ? as_cfg.service_name : program_invocation_short_name);
    uuid4(k->instance);
    snprintf(k->root_hex, sizeof k->root_hex, "%016llx",
             (unsigned long long)(as_http_random64() | 1));
    const char *cap = as_keptenv_get("AGENTSIGHT_OTLP_CAPTURE");
    const char *cap2 = as_keptenv_get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT");
    k->capture = (cap && strcmp(cap, "1") == 0) || (cap2 && strcasecmp(cap2, "true") == 0);
    if (k->env.gzip) {
        char *z;
        size_t zn;
        if (as_gzip("", 0, &z, &zn) == 0)
            free(z);
        else
            k->env.gzip = 0; /* zlib missing: reported once by dynlib; sent uncompressed */
    }
    const char *headers[AS_OTEL_MAX_HEADERS + 3];
    int nh = 0;
    headers[nh++] =
        k->env.protobuf ? "Content-Type: application/x-protobuf" : "Content-Type: application/json";
    if (k->env.gzip)
        headers[nh++] = "Content-Encoding: gzip";
    for (int i = 0; k->env.headers[i]; i++)
        headers[nh++] = k->env.headers[i];
    headers[nh] = NULL;
    as_http_opts o = {.timeout_ms = k->env.timeout_ms};
    k->http = as_http_new(&o, headers);
    const char *root =
        as_cfg.spool_dir[0] ? as_cfg.spool_dir : as_keptenv_get("AGENTSIGHT_SPOOL_DIR");
    k->spool = as_spool_open(root, k->uri, 0);
    k->recs = calloc(CHUNK, sizeof *k->recs);
    if (!k->http || !k->spool || !k->recs) {
        as_error("otlp sink: cannot start");
        as_http_free(k->http);
        as_spool_close(k->spool);
        as_otel_env_free(&k->env);
        free(k->recs);
        free(k);
        s->impl = NULL;
        return -1;
    }
    k->healthy = 1;
    k->spool_maybe = as_spool_pending(k->spool, NULL) > 0;
    return 0;
}

const as_sink_ops as_sink_otlp_ops = {
    .scheme = "otlp",
    .open = otlp_open,
    .send = otlp_send,
    .flush = otlp_flush,
    .close = otlp_close,
};
