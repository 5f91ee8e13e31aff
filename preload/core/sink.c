/* sink.c - the sink registry: finds a sink type by URI scheme and opens or checks a
 * comma-separated URI list. Every sink is referenced strongly (sink.h), so a program
 * that links libagentsight.a statically gets the HTTP sinks too. */
#include "sink.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

#define EXPECTED "expected file:PATH, stderr, null, agentsight or otlp:URL"

/* Returns the ops of scheme, or NULL when no such sink is built in. */
const as_sink_ops *as_sink_find(const char *scheme) {
    if (!scheme)
        return NULL;
    const as_sink_ops *all[] = {&as_sink_file_ops, &as_sink_stderr_ops, &as_sink_null_ops,
                                &as_sink_agentsight_ops, &as_sink_otlp_ops};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(all[i]->scheme, scheme) == 0)
            return all[i];
    }
    return NULL;
}

/* Splits the next comma-separated URI of *p (spaces trimmed) into uri (cap bytes).
 * Returns 1 with *p advanced, 0 at the end. A URI longer than cap is truncated and
 * then fails its checks. */
static int next_uri(const char **p, char *uri, size_t cap) {
    const char *s = *p;
    while (*s == ',' || *s == ' ' || *s == '\t')
        s++;
    if (!*s)
        return 0;
    const char *e = strchr(s, ',');
    if (!e)
        e = s + strlen(s);
    *p = e;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    size_t n = (size_t)(e - s);
    if (n >= cap)
        n = cap - 1;
    memcpy(uri, s, n);
    uri[n] = '\0';
    return 1;
}

/* Splits uri into scheme (cap bytes) and returns the argument after ':' ("" without). */
static const char *split_scheme(const char *uri, char *scheme, size_t cap) {
    const char *c = strchr(uri, ':');
    size_t n = c ? (size_t)(c - uri) : strlen(uri);
    if (n >= cap)
        n = cap - 1;
    memcpy(scheme, uri, n);
    scheme[n] = '\0';
    return c ? c + 1 : "";
}

/* Checks one URI. Returns 0, or -1 with the reason in msg. */
static int check_one(const char *uri, char *msg, size_t cap) {
    char scheme[32];
    const char *arg = split_scheme(uri, scheme, sizeof(scheme));
    const as_sink_ops *ops = as_sink_find(scheme);
    if (!ops) {
        snprintf(msg, cap, "unknown sink URI '%s': " EXPECTED, uri);
        return -1;
    }
    if (!strcmp(scheme, "file") && !arg[0]) {
        snprintf(msg, cap, "sink URI '%s': file needs a path (file:PATH)", uri);
        return -1;
    }
    if (!strcmp(scheme, "otlp") && !arg[0]) {
        snprintf(msg, cap, "sink URI '%s': otlp needs a URL (otlp:http://HOST:4318)", uri);
        return -1;
    }
    return 0;
}

int as_sinks_check(const char *uris, char *msg, size_t cap) {
    char uri[512];
    int n = 0;
    const char *p = uris ? uris : "";
    while (next_uri(&p, uri, sizeof(uri))) {
        if (check_one(uri, msg, cap) != 0)
            return -1;
        n++;
    }
    if (n == 0) {
        snprintf(msg, cap, "no sink URI given: " EXPECTED);
        return -1;
    }
    return 0;
}

/* Opens each valid URI into out; bad ones are reported and skipped. Returns how many
 * opened (out[0..n) are ready; the rest of out is untouched). */
int as_sinks_open(const char *uris, as_sink *out, int max) {
    char uri[512], msg[600], scheme[32];
    int n = 0;
    const char *p = uris ? uris : "";
    while (n < max && next_uri(&p, uri, sizeof(uri))) {
        if (check_one(uri, msg, sizeof(msg)) != 0) {
            as_error("%s", msg);
            continue;
        }
        const char *arg = split_scheme(uri, scheme, sizeof(scheme));
        as_sink *s = &out[n];
        memset(s, 0, sizeof(*s));
        s->ops = as_sink_find(scheme);
        snprintf(s->uri, sizeof(s->uri), "%s", uri);
        if (s->ops->open(s, arg) != 0) {
            memset(s, 0, sizeof(*s));
            continue;
        }
        n++;
    }
    return n;
}

void as_sinks_poll(as_sink *sinks, int n) {
    for (int i = 0; i < n; i++) {
        const as_sink_ops *ops = sinks[i].ops;
        if (ops == &as_sink_agentsight_ops || ops == &as_sink_otlp_ops)
            ops->send(&sinks[i], NULL, 0);
    }
}
