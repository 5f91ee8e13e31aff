/* sink.c - the sink registry: finds a sink type by URI scheme and opens or checks a
 * comma-separated URI list. Every sink is referenced strongly (sink.h), so a program
 * that links libagentsight.a statically gets the HTTP sinks too. */
#include "core/redact.h"
#include "sink.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

#define EXPECTED "expected file:PATH, stderr, null, agentsight, otlp or otlp:URL"

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
 * Returns 1 with *p advanced, 0 at the end, 2 with *p advanced when the URI is longer than
 * cap - 1 (uri then holds its first cap - 1 bytes, only to name it in a message). */
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
    int rc = 1;
    if (n >= cap) {
        n = cap - 1;
        rc = 2;
    }
    memcpy(uri, s, n);
    uri[n] = '\0';
    return rc;
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
    char shown[AS_MAX_URI + 1];
    as_redact_uris(uri, shown, sizeof shown);
    if (!ops) {
        snprintf(msg, cap, "unknown sink URI '%s': " EXPECTED, shown);
        return -1;
    }
    if (!strcmp(scheme, "file") && !arg[0]) {
        snprintf(msg, cap, "sink URI '%s': file needs a path (file:PATH)", shown);
        return -1;
    }
    /* otlp without a URL: the OTEL_EXPORTER_OTLP_* variables say where (otel_env.h). */
    return 0;
}

/* Writes the too-long message for the truncated uri into msg. Returns -1. */
static int too_long(const char *uri, char *msg, size_t cap) {
    snprintf(msg, cap, "sink URI '%.60s...' is longer than %d bytes", uri, AS_MAX_URI);
    return -1;
}

int as_sinks_check(const char *uris, char *msg, size_t cap) {
    char uri[AS_MAX_URI + 1];
    int n = 0, got;
    const char *p = uris ? uris : "";
    while ((got = next_uri(&p, uri, sizeof(uri)))) {
        if (got == 2)
            return too_long(uri, msg, cap);
        if (check_one(uri, msg, cap) != 0)
            return -1;
        n++;
    }
    if (n == 0) {
        snprintf(msg, cap, "no sink URI given: " EXPECTED);
        return -1;
    }
    if (n > AS_MAX_SINKS) {
        snprintf(msg, cap, "%d sink URIs given, at most %d", n, AS_MAX_SINKS);
        return -1;
    }
    return 0;
}

/* Names, in one error, every URI of p (the rest of a list) that is not opened because
 * max sinks were already taken. This function can't fail. */
static void report_dropped(const char *p, int max) {
    char uri[AS_MAX_URI + 1], shown[AS_MAX_URI + 1], names[1024];
    size_t o = 0;
    int n = 0;
    names[0] = '\0';
    while (next_uri(&p, uri, sizeof(uri))) {
        n++;
        if (o < sizeof(names)) {
            as_redact_uris(uri, shown, sizeof shown);
            int w = snprintf(names + o, sizeof(names) - o, "%s'%s'", n > 1 ? ", " : "", shown);
            o += w > 0 ? (size_t)w : 0;
        }
    }
    if (n == 0)
        return;
    if (o >= sizeof(names))
        memcpy(names + sizeof(names) - 4, "...", 4);
    as_error("more than %d sink URIs: %d not opened (nothing is written to them): %s", max, n,
             names);
}

/* Opens each valid URI into out; bad ones are reported and skipped, and those beyond
 * max are named in one error. Returns how many opened (out[0..n) are ready; the rest of
 * out is untouched). */
int as_sinks_open(const char *uris, as_sink *out, int max) {
    char uri[AS_MAX_URI + 1], msg[600], scheme[32];
    int n = 0, got;
    const char *p = uris ? uris : "";
    const char *rest = p;
    while (n < max && (got = next_uri(&p, uri, sizeof(uri)))) {
        rest = p;
        if (got == 2 ? too_long(uri, msg, sizeof(msg)) : check_one(uri, msg, sizeof(msg))) {
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
    report_dropped(n >= max ? rest : "", max);
    return n;
}

void as_sinks_poll(as_sink *sinks, int n) {
    for (int i = 0; i < n; i++) {
        const as_sink_ops *ops = sinks[i].ops;
        if (ops == &as_sink_agentsight_ops || ops == &as_sink_otlp_ops)
            ops->send(&sinks[i], NULL, 0);
    }
}

unsigned as_sinks_send(as_sink *sinks, int n, const as_action *batch, size_t nbatch,
                       unsigned only) {
    unsigned failed = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n && i < 32; i++) {
            int is_file = sinks[i].ops == &as_sink_file_ops;
            if (is_file != pass || !(only & (1u << i)))
                continue;
            if (sinks[i].ops->send(&sinks[i], batch, nbatch) != 0)
                failed |= 1u << i;
        }
    }
    return failed;
}

unsigned long long as_sinks_file_mark(const as_sink *sinks, int n) {
    for (int i = n - 1; i >= 0; i--) {
        if (sinks[i].ops == &as_sink_file_ops)
            return sinks[i].mark;
    }
    return ~0ull;
}

int as_sinks_last_file(const char *uris, char *path, size_t cap) {
    char uri[AS_MAX_URI + 1];
    int found = 0, got;
    const char *p = uris ? uris : "";
    while ((got = next_uri(&p, uri, sizeof(uri)))) {
        if (got == 1 && strncmp(uri, "file:", 5) == 0 && uri[5]) {
            snprintf(path, cap, "%s", uri + 5);
            found = 1;
        }
    }
    return found;
}
