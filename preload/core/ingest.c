/* ingest.c - builds the body of POST /api/ingest/ (spans grouped by conversation) from
 * actions; see ingest.h (gzip: core/gzip.h). */
#include "core/ingest.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/dl_cjson.h"

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

void as_ingest_span(as_buf *b, const as_action *a, as_span_kind kind) {
    char sid[17], tid[33];
    as_ingest_ids(a, sid, tid);
    const char *k = as_span_kind_name(kind);
    as_buf_printf(b, "{\"span_id\":\"%s\",\"trace_id\":\"%s\",\"parent_span_id\":null,", sid, tid);
    as_buf_printf(b, "\"kind\":\"%s\",\"name\":", k);
    as_json_cstr(b, a->action_name);
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
