/* ingest.c - builds the body of POST /api/ingest/ (spans grouped by conversation) from
 * actions; see ingest.h (gzip: core/gzip.h). */
#include "core/ingest.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/dl_cjson.h"
#include "core/llm_facts.h"

#define AS_SDK_NAME "agentsight-preload"
#ifndef AS_VERSION
#define AS_VERSION "0.1.0"
#endif

const char *as_span_kind_name(as_span_kind kind) {
    switch (kind) {
    case AS_SPAN_LLM:
        return "llm";
    case AS_SPAN_TOOL:
    default:
        return "tool";
    }
}

static uint64_t fnv1a(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int is_hex32(const char *s) {
    return s && strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32;
}

void as_ingest_ids(const as_action *a, char span_id[17], char trace_id[33]) {
    char tid[33];
    if (is_hex32(a->event_id)) {
        memcpy(tid, a->event_id, 33);
    } else { /* not expected (sinks tag every action); stable for the same action */
        uint64_t h = fnv1a(0xcbf29ce484222325ull, a->action_name ? a->action_name : "",
                           a->action_name ? strlen(a->action_name) : 0);
        h = fnv1a(h, (const char *)&a->started_ns, sizeof a->started_ns);
        uint64_t h2 =
            fnv1a(h ^ 0x9e3779b97f4a7c15ull, (const char *)&a->ended_ns, sizeof a->ended_ns);
        snprintf(tid, sizeof tid, "%016llx%016llx", (unsigned long long)h, (unsigned long long)h2);
    }
    if (strspn(tid, "0") == 32)
        tid[31] = '1';
    uint64_t s = fnv1a(0xcbf29ce484222325ull, tid, 32);
    if (s == 0)
        s = 1;
    snprintf(span_id, 17, "%016llx", (unsigned long long)s);
    memcpy(trace_id, tid, 33);
}

static void iso(as_buf *b, int64_t ns) {
    char ts[AS_ISO_LEN];
    as_iso_format(ns, ts);
    as_json_cstr(b, ts);
}

/* The JSON text of the call's arguments: tools_used.parameters when it is there, else
 * the whole tools_used object. Appended as a JSON string. */
static void arguments_attr(as_buf *b, const char *tools_used) {
    cJSON *o = as_cjson.cJSON_Parse(tools_used);
    const cJSON *p = as_cjson.cJSON_GetObjectItemCaseSensitive(o, "parameters");
    char *text = as_cjson.cJSON_IsObject(p) ? as_cjson.cJSON_PrintUnformatted(p) : NULL;
    as_json_cstr(b, text ? text : tools_used);
    free(text);
    as_cjson.cJSON_Delete(o);
}

static void attr_str(as_buf *b, const char *key, const char *value) {
    as_buf_putc(b, ',');
    as_json_cstr(b, key);
    as_buf_putc(b, ':');
    as_json_cstr(b, value);
}

as_span_kind as_ingest_kind_of(const as_action *a) {
    return as_llm_is_action(a) ? AS_SPAN_LLM : AS_SPAN_TOOL;
}

static void attr_int(as_buf *b, const char *key, int64_t v) {
    as_buf_putc(b, ',');
    as_json_cstr(b, key);
    as_buf_printf(b, ":%lld", (long long)v);
}

/* The attributes of an llm span, as the AgentSight SDK records a model call:
 * gen_ai.request.model is the model that ran (the one billed: the answer's model, else the
 * requested one) and agentsight.llm.requested_model the requested one when it differs;
 * gen_ai.usage.input_tokens excludes cached tokens; embedding calls count their input as
 * agentsight.llm.embedding_tokens; counts that were not reported are 0 with
 * agentsight.llm.usage_reported false. */
static void llm_attrs(as_buf *b, const as_action *a, const as_llm_facts *f) {
    const char *model = f->response_model[0] ? f->response_model : f->request_model;
    attr_str(b, "agentsight.entity.name", model[0] ? model : f->provider);
    attr_str(b, "gen_ai.system", f->provider);
    attr_str(b, "gen_ai.provider.name", f->provider);
    attr_str(b, "gen_ai.operation.name", f->op);
    if (model[0])
        attr_str(b, "gen_ai.request.model", model);
    if (f->request_model[0] && strcmp(f->request_model, model) != 0)
        attr_str(b, "agentsight.llm.requested_model", f->request_model);
    if (f->response_model[0])
        attr_str(b, "gen_ai.response.model", f->response_model);
    int embeddings = strcmp(f->op, "embeddings") == 0;
    int64_t in = as_llm_input_uncached(f);
    attr_int(b, "gen_ai.usage.input_tokens", embeddings || in < 0 ? 0 : in);
    attr_int(b, "gen_ai.usage.output_tokens", f->output < 0 ? 0 : f->output);
    if (embeddings && f->input > 0)
        attr_int(b, "agentsight.llm.embedding_tokens", f->input);
    if (f->cache_read > 0)
        attr_int(b, "agentsight.llm.cache_read_tokens", f->cache_read);
    if (f->cache_write > 0)
        attr_int(b, "agentsight.llm.cache_write_tokens", f->cache_write);
    if (f->reasoning > 0)
        attr_int(b, "agentsight.llm.reasoning_tokens", f->reasoning);
    if (f->input < 0 && f->output < 0)
        as_buf_puts(b, ",\"agentsight.llm.usage_reported\":false");
    if (f->stream)
        as_buf_puts(b, ",\"agentsight.llm.streaming\":true");
    if (a->error_msg)
        attr_str(b, "agentsight.llm.error", a->error_msg);
    if (f->server_address[0])
        attr_str(b, "server.address", f->server_address);
    if (f->server_port)
        attr_int(b, "server.port", f->server_port);
    if (f->http_status)
        attr_int(b, "http.response.status_code", f->http_status);
}

void as_ingest_span(as_buf *b, const as_action *a, as_span_kind kind) {
    char sid[17], tid[33];
    as_ingest_ids(a, sid, tid);
    as_llm_facts f;
    if (kind == AS_SPAN_LLM && as_llm_facts_of(a, &f) != 0)
        kind = AS_SPAN_TOOL; /* not readable as a model call: sent as what it was */
    const char *name = a->action_name;
    if (kind == AS_SPAN_LLM) /* named by the model, as the SDK names its llm spans */
        name = f.response_model[0]  ? f.response_model
               : f.request_model[0] ? f.request_model
                                    : f.provider;
    const char *k = as_span_kind_name(kind);
    as_buf_printf(b, "{\"span_id\":\"%s\",\"trace_id\":\"%s\",\"parent_span_id\":null,", sid, tid);
    as_buf_printf(b, "\"kind\":\"%s\",\"name\":", k);
    as_json_cstr(b, name);
    as_buf_puts(b, ",\"started_at\":");
    iso(b, a->started_ns);
    as_buf_puts(b, ",\"ended_at\":");
    iso(b, a->ended_ns);
    int64_t d = a->ended_ns - a->started_ns;
    as_buf_puts(b, ",\"duration_ms\":");
    as_json_double(b, d >= 0 ? (double)d / 1e6 : (double)a->duration_ms);
    as_buf_printf(b, ",\"status\":\"%s\",\"attributes\":{\"agentsight.span.kind\":\"%s\"",
                  a->error_msg ? "error" : "ok", k);
    attr_str(b, "agentsight.conversation.id", a->conversation_id);
    if (kind == AS_SPAN_TOOL) {
        attr_str(b, "agentsight.tool.name", a->action_name);
        if (a->tools_used) {
            as_buf_puts(b, ",\"agentsight.tool.arguments\":");
            arguments_attr(b, a->tools_used);
        }
        if (a->response)
            attr_str(b, "agentsight.tool.response", a->response);
        if (a->error_msg)
            attr_str(b, "agentsight.tool.error", a->error_msg);
    } else {
        llm_attrs(b, a, &f);
    }
    if (a->metadata)
        attr_str(b, "agentsight.metadata", a->metadata);
    if (a->event_id)
        attr_str(b, "agentsight.event_id", a->event_id);
    as_buf_puts(b, "},\"events\":[]}");
}

void as_ingest_begin(as_buf *b) {
    as_buf_puts(b, "{\"sdk\":{\"name\":\"" AS_SDK_NAME "\",\"version\":\"" AS_VERSION
                   "\"},\"conversations\":[");
}

void as_ingest_block_open(as_buf *b, const char *conversation_id, const char *environment,
                          int first) {
    if (!first)
        as_buf_putc(b, ',');
    as_buf_puts(b, "{\"conversation_id\":");
    as_json_cstr(b, conversation_id);
    if (environment && *environment) {
        as_buf_puts(b, ",\"environment\":");
        as_json_cstr(b, environment);
    }
    as_buf_puts(b, ",\"spans\":[");
}

void as_ingest_block_close(as_buf *b) {
    as_buf_puts(b, "]}");
}

void as_ingest_end(as_buf *b) {
    as_buf_puts(b, "]}");
}
