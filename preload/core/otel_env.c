/* otel_env.c - the OTEL_* exporter variables for the otlp sink (otel_env.h). Names and
 * defaults follow the OpenTelemetry specification ("OTLP Exporter Configuration"): the
 * signal-specific variable (..._TRACES_...) wins over the general one; the general
 * endpoint gets "/v1/traces" appended, the traces endpoint is used as it is. */
#include "core/otel_env.h"
#include "core/keptenv.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

#define DEF_BASE "http://localhost:4318"

static const char *var(const char *general, const char *traces, const char **name) {
    const char *v = as_keptenv_get(traces);
    if (v && *v) {
        *name = traces;
        return v;
    }
    v = as_keptenv_get(general);
    *name = general;
    return v && *v ? v : NULL;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Copies s[0..n) trimmed and percent-decoded into a new string. */
static char *decode(const char *s, size_t n) {
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < n && (h = hexval(s[i + 1])) >= 0 &&
            (l = hexval(s[i + 2])) >= 0) {
            o[k++] = (char)(h * 16 + l);
            i += 2;
        } else {
            o[k++] = s[i];
        }
    }
    o[k] = '\0';
    return o;
}

int as_otel_parse_list(const char *s, void (*fn)(void *ctx, const char *k, const char *v),
                       void *ctx) {
    int bad = 0;
    for (const char *p = s; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        char *k = eq ? decode(p, (size_t)(eq - p)) : NULL;
        char *v = eq ? decode(eq + 1, n - (size_t)(eq - p) - 1) : NULL;
        if (k && v && k[0])
            fn(ctx, k, v);
        else if (n && strspn(p, " \t") < n)
            bad++;
        free(k);
        free(v);
        p = end ? end + 1 : NULL;
    }
    return bad;
}

/* A header name is an HTTP token; a value has no control characters (no CR/LF: one
 * variable must never become two headers). */
static int header_ok(const char *k, const char *v) {
    for (const char *c = k; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("!#$%&'*+-.^_`|~", *c))
            return 0;
    for (const unsigned char *c = (const unsigned char *)v; *c; c++)
        if (*c < 0x20 && *c != '\t')
            return 0;
    return 1;
}

typedef struct {
    as_otel_env *e;
    const char *name;
    int bad, oom;
} hctx;

static void add_header(void *ctx, const char *k, const char *v) {
    hctx *h = ctx;
    as_otel_env *e = h->e;
    if (!header_ok(k, v)) {
        h->bad++;
        return;
    }
    int n = 0;
    while (e->headers[n])
        n++;
    if (n >= AS_OTEL_MAX_HEADERS) {
        h->bad++;
        return;
    }
    size_t len = strlen(k) + strlen(v) + 3;
    char *line = malloc(len);
    if (!line) {
        h->oom = 1;
        return;
    }
    snprintf(line, len, "%s: %s", k, v);
    e->headers[n] = line;
}

static void add_res(void *ctx, const char *k, const char *v) {
    hctx *h = ctx;
    as_otel_env *e = h->e;
    if (e->nres >= AS_OTEL_MAX_RES) {
        h->bad++;
        return;
    }
    char *kk = strdup(k), *vv = strdup(v);
    if (!kk || !vv) {
        free(kk);
        free(vv);
        h->oom = 1;
        return;
    }
    e->res_key[e->nres] = kk;
    e->res_val[e->nres++] = vv;
}

void as_otel_env_free(as_otel_env *e) {
    for (int i = 0; i < AS_OTEL_MAX_HEADERS && e->headers[i]; i++) {
        /* a secret: wiped before the memory is returned */
        memset(e->headers[i], 0, strlen(e->headers[i]));
        free(e->headers[i]);
        e->headers[i] = NULL;
    }
    for (int i = 0; i < e->nres; i++) {
        free(e->res_key[i]);
        free(e->res_val[i]);
    }
    e->nres = 0;
}

int as_otel_env_load(as_otel_env *e, int url_given) {
    memset(e, 0, sizeof *e);
    e->protobuf = 1;
    const char *name, *v;
    v = as_keptenv_get("OTEL_SDK_DISABLED");
    e->disabled = v && strcasecmp(v, "true") == 0;

    if (!url_given) {
        if ((v = as_keptenv_get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) && *v) {
            snprintf(e->url, sizeof e->url, "%s", v);
        } else {
            const char *base = as_keptenv_get("OTEL_EXPORTER_OTLP_ENDPOINT");
            base = base && *base ? base : DEF_BASE;
            size_t n = strlen(base);
            while (n && base[n - 1] == '/')
                n--;
            snprintf(e->url, sizeof e->url, "%.*s/v1/traces", (int)(n < 500 ? n : 500), base);
        }
        if (strncmp(e->url, "http://", 7) != 0 && strncmp(e->url, "https://", 8) != 0) {
            as_warn("OTEL_EXPORTER_OTLP_ENDPOINT: not an http:// or https:// URL; using "
                    "%s/v1/traces",
                    DEF_BASE);
            snprintf(e->url, sizeof e->url, "%s/v1/traces", DEF_BASE);
        }
    }
    if ((v = var("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", &name))) {
        if (strcmp(v, "http/json") == 0)
            e->protobuf = 0;
        else if (strcmp(v, "http/protobuf") != 0)
            as_warn("%s: '%.40s' is not supported (http/protobuf or http/json); using "
                    "http/protobuf",
                    name, v);
    }
    if ((v = var("OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                 &name))) {
        if (strcmp(v, "gzip") == 0)
            e->gzip = 1;
        else if (strcmp(v, "none") != 0)
            as_warn("%s: '%.40s' is not gzip or none; sending uncompressed", name, v);
    }
    if ((v = var("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", &name))) {
        char *end;
        long ms = strtol(v, &end, 10);
        if (*end || ms <= 0 || ms > 3600000)
            as_warn("%s: '%.40s' is not a number of milliseconds; ignored", name, v);
        else
            e->timeout_ms = (int)ms;
    }
    hctx h = {.e = e};
    if ((v = var("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", &name))) {
        h.name = name;
        h.bad += as_otel_parse_list(v, add_header, &h);
        if (h.bad) /* never the value: it holds credentials */
            as_warn("%s: %d item(s) are not name=value with a valid header name and value, or "
                    "exceed %d headers; skipped",
                    name, h.bad, AS_OTEL_MAX_HEADERS);
    }
    if ((v = as_keptenv_get("OTEL_RESOURCE_ATTRIBUTES")) && *v) {
        h.bad = 0;
        h.bad += as_otel_parse_list(v, add_res, &h);
        if (h.bad)
            as_warn("OTEL_RESOURCE_ATTRIBUTES: %d item(s) are not key=value; skipped", h.bad);
    }
    if (h.oom) {
        as_otel_env_free(e);
        return -1;
    }
    return 0;
}
