/* otel_env.h - the OpenTelemetry SDK's exporter variables as the otlp sink reads them
 * (OTEL_EXPORTER_OTLP_[TRACES_]{ENDPOINT,HEADERS,TIMEOUT,COMPRESSION,PROTOCOL},
 * OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED), read with secure_getenv. Header values
 * are secrets: they are kept for the request and never printed or written to disk. */
#ifndef AS_OTEL_ENV_H
#define AS_OTEL_ENV_H

#include <stddef.h>

#define AS_OTEL_MAX_HEADERS 16
#define AS_OTEL_MAX_RES 32

typedef struct as_otel_env {
    int disabled;   /* OTEL_SDK_DISABLED=true */
    int protobuf;   /* 1 http/protobuf (the default), 0 http/json */
    int gzip;       /* compression gzip */
    int timeout_ms; /* per export; 0: the HTTP client's (AGENTSIGHT_HTTP_TIMEOUT_MS, else 10000) */
    char url[600];  /* the traces URL (only when no URL was given in the sink URI) */
    char *headers[AS_OTEL_MAX_HEADERS + 1]; /* "Name: value", NULL-terminated (malloc'd) */
    int nres;
    char *res_key[AS_OTEL_MAX_RES]; /* OTEL_RESOURCE_ATTRIBUTES, decoded (malloc'd) */
    char *res_val[AS_OTEL_MAX_RES];
} as_otel_env;

/* Reads the variables into e. url_given: the sink URI named a URL, so the endpoint
 * variables are not consulted. Bad values are reported (never with a header's value) and
 * left at their defaults. Returns 0, or -1 when memory runs out (e is then freed). */
int as_otel_env_load(as_otel_env *e, int url_given);
void as_otel_env_free(as_otel_env *e);

/* Parses a "key=value,key=value" list (percent-encoded values, blanks around items
 * trimmed) calling fn for each item with the decoded key and value. Returns the number
 * of items that were not of that form (skipped). */
int as_otel_parse_list(const char *s, void (*fn)(void *ctx, const char *k, const char *v),
                       void *ctx);

#endif
