/* llm_facts.c - reads the facts of an LLM action back from its JSON and gives them their
 * OpenTelemetry GenAI attributes; see llm_facts.h. */
#include "core/llm_facts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dl_cjson.h"

int as_llm_is_action(const as_action *a) {
    const char *m = a ? a->metadata : NULL;
    if (!m)
        return 0;
    for (const char *p = strstr(m, "\"source\""); p; p = strstr(p + 8, "\"source\"")) {
        const char *v = p + 8;
        v += strspn(v, " \t\r\n");
        if (*v != ':')
            continue;
        v++;
        v += strspn(v, " \t\r\n");
        if (strncmp(v, "\"llm\"", 5) == 0)
            return 1;
    }
    return 0;
}

static void copy_str(char *dst, size_t n, const cJSON *o, const char *key) {
    const cJSON *v = as_cjson.cJSON_GetObjectItemCaseSensitive(o, key);
    dst[0] = '\0';
    if (as_cjson.cJSON_IsString(v) && v->valuestring)
        snprintf(dst, n, "%s", v->valuestring);
}

static int64_t count(const cJSON *o, const char *key) {
    const cJSON *v = as_cjson.cJSON_GetObjectItemCaseSensitive(o, key);
    if (!as_cjson.cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9.0e18)
        return -1;
    return (int64_t)v->valuedouble;
}

/* Splits "host", "host:port", "[v6]" or "[v6]:port" into f's address and port. */
static void split_host(as_llm_facts *f, const char *host) {
    const char *colon = NULL;
    size_t n = strlen(host);
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (!close)
            return;
        snprintf(f->server_address, sizeof f->server_address, "%.*s", (int)(close - host - 1),
                 host + 1);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strchr(host, ':');
        if (colon && strchr(colon + 1, ':'))
            colon = NULL; /* a bare IPv6 address: no port */
        snprintf(f->server_address, sizeof f->server_address, "%.*s",
                 (int)(colon ? (size_t)(colon - host) : n), host);
    }
    if (colon && colon[1]) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end == '\0' && port > 0 && port < 65536)
            f->server_port = (int)port;
    }
}

int as_llm_facts_of(const as_action *a, as_llm_facts *f) {
    memset(f, 0, sizeof *f);
    f->input = f->output = f->cache_read = f->cache_write = f->reasoning = -1;
    if (!as_llm_is_action(a) || !a->tools_used || as_dynlib_load(&as_cjson_lib) != 0)
        return -1;
    cJSON *t = as_cjson.cJSON_Parse(a->tools_used);
    if (!as_cjson.cJSON_IsObject(t)) {
        as_cjson.cJSON_Delete(t);
        return -1;
    }
    copy_str(f->provider, sizeof f->provider, t, "provider");
    if (!f->provider[0]) { /* not made by the TLS hooks: not read as a model call */
        as_cjson.cJSON_Delete(t);
        return -1;
    }
    copy_str(f->request_model, sizeof f->request_model, t, "request_model");
    copy_str(f->response_model, sizeof f->response_model, t, "response_model");
    char host[300];
    copy_str(host, sizeof host, t, "server_address");
    split_host(f, host);
    const cJSON *st = as_cjson.cJSON_GetObjectItemCaseSensitive(t, "stream");
    f->stream = st && (st->type & 0xff) == cJSON_True;
    int64_t hs = count(t, "http_status");
    f->http_status = hs > 0 && hs < 1000 ? (int)hs : 0;
    const cJSON *u = as_cjson.cJSON_GetObjectItemCaseSensitive(t, "usage");
    if (as_cjson.cJSON_IsObject(u)) {
        f->input = count(u, "input_tokens");
        f->output = count(u, "output_tokens");
        f->cache_read = count(u, "cache_read_input_tokens");
        f->cache_write = count(u, "cache_creation_input_tokens");
        f->reasoning = count(u, "reasoning_tokens");
    }
    as_cjson.cJSON_Delete(t);
    /* The operation is the first word of the name ("chat gpt-4o-mini"). */
    const char *name = a->action_name ? a->action_name : "";
    size_t n = strcspn(name, " ");
    snprintf(f->op, sizeof f->op, "%.*s", (int)n, name);
    if (!f->op[0])
        snprintf(f->op, sizeof f->op, "chat");
    return 0;
}

static int64_t nz(int64_t v) {
    return v > 0 ? v : 0;
}

int64_t as_llm_input_all(const as_llm_facts *f) {
    if (f->input < 0)
        return -1;
    if (strcmp(f->provider, "anthropic") == 0)
        return f->input + nz(f->cache_read) + nz(f->cache_write);
    return f->input;
}

int64_t as_llm_input_uncached(const as_llm_facts *f) {
    if (f->input < 0)
        return -1;
    if (strcmp(f->provider, "anthropic") == 0)
        return f->input;
    int64_t v = f->input - nz(f->cache_read);
    return v > 0 ? v : 0;
}

void as_llm_otlp_span(as_otlp_span *sp, const as_action *a, const as_llm_facts *f,
                      char status_text[8]) {
    sp->kind = AS_OTLP_CLIENT;
    sp->name = a->action_name;
    as_otlp_attr_str(sp, "gen_ai.operation.name", f->op);
    as_otlp_attr_str(sp, "gen_ai.provider.name", f->provider);
    if (f->request_model[0])
        as_otlp_attr_str(sp, "gen_ai.request.model", f->request_model);
    if (f->response_model[0])
        as_otlp_attr_str(sp, "gen_ai.response.model", f->response_model);
    int64_t in = as_llm_input_all(f);
    if (in >= 0)
        as_otlp_attr_int(sp, "gen_ai.usage.input_tokens", in);
    if (f->output >= 0)
        as_otlp_attr_int(sp, "gen_ai.usage.output_tokens", f->output);
    if (f->cache_read > 0)
        as_otlp_attr_int(sp, "gen_ai.usage.cache_read.input_tokens", f->cache_read);
    if (f->cache_write > 0)
        as_otlp_attr_int(sp, "gen_ai.usage.cache_creation.input_tokens", f->cache_write);
    if (f->reasoning > 0)
        as_otlp_attr_int(sp, "gen_ai.usage.reasoning.output_tokens", f->reasoning);
    if (f->server_address[0])
        as_otlp_attr_str(sp, "server.address", f->server_address);
    if (f->server_port)
        as_otlp_attr_int(sp, "server.port", f->server_port);
    if (f->http_status)
        as_otlp_attr_int(sp, "http.response.status_code", f->http_status);
    if (a->error_msg) {
        /* The HTTP status code as text for an HTTP failure (the HTTP conventions' rule),
         * else the conventions' fallback value. */
        if (f->http_status >= 400) {
            snprintf(status_text, 8, "%d", f->http_status % 1000);
            as_otlp_attr_str(sp, "error.type", status_text);
        } else {
            as_otlp_attr_str(sp, "error.type", "_OTHER");
        }
        sp->status_code = 2;
        sp->status_msg = a->error_msg;
    }
}
