/* redact.c - sink URIs as they may be shown (redact.h): every place that prints or writes
 * a sink URI goes through here, so a password or a token in a URL stays in memory only. */
#include "core/redact.h"

#include <string.h>

typedef struct out {
    char *p;
    size_t cap, len;
    int cut;
} out;

static void put(out *o, const char *s, size_t n) {
    if (o->cut)
        return;
    if (o->len + n + 1 > o->cap) {
        o->cut = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

/* One URI of n bytes. */
static void redact_one(out *o, const char *u, size_t n) {
    const char *sep = NULL;
    for (size_t i = 0; i + 3 <= n; i++)
        if (memcmp(u + i, "://", 3) == 0) {
            sep = u + i;
            break;
        }
    if (!sep) {
        put(o, u, n);
        return;
    }
    const char *end = u + n;
    const char *host = sep + 3;
    const char *auth_end = host;
    while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#')
        auth_end++;
    const char *at = NULL;
    for (const char *p = host; p < auth_end; p++)
        if (*p == '@')
            at = p;
    put(o, u, (size_t)(host - u));
    if (at) {
        const char *colon = memchr(host, ':', (size_t)(at - host));
        if (colon) {
            put(o, host, (size_t)(colon - host));
            put(o, ":***@", 5);
        } else {
            put(o, "***@", 4);
        }
        host = at + 1;
    }
    const char *q = host;
    while (q < end && *q != '?' && *q != '#')
        q++;
    put(o, host, (size_t)(q - host));
    if (q < end && *q == '?') {
        put(o, "?", 1);
        const char *p = q + 1;
        while (p < end && *p != '#') {
            const char *amp = p;
            while (amp < end && *amp != '&' && *amp != '#')
                amp++;
            const char *eq = memchr(p, '=', (size_t)(amp - p));
            if (eq)
                put(o, p, (size_t)(eq + 1 - p));
            if (eq || amp > p)
                put(o, "***", 3);
            p = amp;
            if (p < end && *p == '&') {
                put(o, "&", 1);
                p++;
            }
        }
        q = p;
    }
    put(o, q, (size_t)(end - q)); /* the fragment, never sent */
}

void as_redact_uris(const char *in, char *buf, size_t cap) {
    if (!buf || cap == 0)
        return;
    out o = {buf, cap, 0, 0};
    for (const char *p = in ? in : ""; *p && !o.cut;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        redact_one(&o, p, n);
        if (!comma)
            break;
        put(&o, ",", 1);
        p = comma + 1;
    }
    if (o.cut) {
        /* Keep what fitted, then "...": a secret was replaced before it could be cut. */
        size_t keep = cap > 4 ? cap - 4 : 0;
        if (o.len > keep)
            o.len = keep;
        memcpy(buf + o.len, "...", cap - 1 - o.len < 3 ? cap - 1 - o.len : 3);
        o.len += cap - 1 - o.len < 3 ? cap - 1 - o.len : 3;
    }
    buf[o.len] = '\0';
}
