/* sink_stderr.c - the "stderr" sink: one line per action for watching a run live, in the
 * shape ltrace and strace users read:
 *   [agentsight] 10:30:00.050 [pid 1234/1235] sqlite3_exec(db=0x55.., sql="select 1") = 0 <0.120
 * ms> followed by " ERROR: msg" when the call failed. The time is the action's end (UTC); [pid P/T]
 * and the argument list appear when the action carries them (metadata pid/tid,
 * tools_used.parameters: the interposer's actions do, hand-tracked ones may not); argument
 * values are their JSON text; every text is shortened and kept on one line.
 *
 * The sink writes to its own duplicate of descriptor 2, taken when it opens (at a high
 * number, close-on-exec: fdio.h): a program that later closes or redirects its stderr
 * (coreutils' close_stdout closes it at exit) neither loses nor delays our lines. A write
 * that fails counts the batch's actions as not delivered once; they are not retried. */
#include "sink.h"

#include "clock.h"
#include "fdio.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#define TEXT_MAX 120
#define ARG_MAX 64 /* bytes shown of one argument value */
#define ARGS_MAX 8 /* arguments shown before ", ..." */

typedef struct stderr_sink {
    as_buf buf;
    int fd; /* our duplicate of descriptor 2 */
} stderr_sink;

static int stderr_open(as_sink *s, const char *arg) {
    (void)arg;
    int base = as_fd_high_base();
    int fd = fcntl(2, F_DUPFD_CLOEXEC, base > 3 ? base : 3);
    if (fd < 0) {
        as_alert_error("stderr sink: descriptor 2 cannot be duplicated: %s; not opened",
                       strerror(errno));
        return -1;
    }
    stderr_sink *e = calloc(1, sizeof(*e));
    if (!e) {
        close(fd);
        return -1;
    }
    e->fd = fd;
    as_buf_init(&e->buf);
    s->impl = e;
    return 0;
}

/* Appends the n bytes of t on one line: control characters become spaces, cut at max
 * bytes (on a UTF-8 character boundary) with "...". */
static void put_span(as_buf *b, const char *t, size_t n, size_t max) {
    size_t i = 0;
    for (; i < n && i < max; i++) {
        unsigned char c = (unsigned char)t[i];
        as_buf_putc(b, c < 0x20 || c == 0x7f ? ' ' : (char)c);
    }
    if (i < n) {
        while (i > 0 && ((unsigned char)t[i] & 0xc0) == 0x80) {
            i--;
            b->len--;
        }
        as_buf_puts(b, "...");
    }
}

static void put_text(as_buf *b, const char *t) {
    put_span(b, t, strlen(t), TEXT_MAX);
}

/* ---- a small reader of the JSON the interposer wrote (tools_used, metadata) --------- */

static const char *ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* Returns the end of the JSON value at p, or NULL when it is cut short. Depth-bounded by
 * the text itself; strings are skipped with their escapes. */
static const char *skip_value(const char *p) {
    int depth = 0;
    do {
        p = ws(p);
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && !*++p)
                    return NULL;
            if (!*p)
                return NULL;
            p++;
        } else if (*p == '{' || *p == '[') {
            depth++;
            p++;
        } else if (*p == '}' || *p == ']') {
            depth--;
            p++;
        } else if (*p == ',' || *p == ':') {
            p++;
        } else if (*p) {
            while (*p && !strchr(",:]} \t\r\n", *p))
                p++;
        } else {
            return NULL;
        }
    } while (depth > 0);
    return p;
}

/* Walks the members of the object at obj: calls fn for each (key without quotes, value
 * text) until fn returns nonzero. Returns that value, 0 at the end, -1 on bad text. */
typedef int (*member_fn)(void *ctx, const char *key, size_t klen, const char *val, size_t vlen);
static int each_member(const char *obj, member_fn fn, void *ctx) {
    const char *p = ws(obj ? obj : "");
    if (*p != '{')
        return -1;
    p = ws(p + 1);
    while (*p == '"') {
        const char *k = p + 1, *kend = skip_value(p);
        if (!kend)
            return -1;
        p = ws(kend);
        if (*p != ':')
            return -1;
        const char *v = ws(p + 1), *vend = skip_value(v);
        if (!vend)
            return -1;
        int rc = fn(ctx, k, (size_t)(kend - 1 - k), v, (size_t)(vend - v));
        if (rc)
            return rc;
        p = ws(vend);
        if (*p != ',')
            break;
        p = ws(p + 1);
    }
    return 0;
}

typedef struct found {
    const char *key;
    const char *val;
    size_t vlen;
} found;

static int find_cb(void *ctx, const char *key, size_t klen, const char *val, size_t vlen) {
    found *f = ctx;
    if (klen != strlen(f->key) || memcmp(key, f->key, klen) != 0)
        return 0;
    f->val = val;
    f->vlen = vlen;
    return 1;
}

/* The value text of member key of the object obj (NULL when absent). */
static const char *member(const char *obj, const char *key, size_t *vlen) {
    found f = {key, NULL, 0};
    if (each_member(obj, find_cb, &f) != 1)
        return NULL;
    *vlen = f.vlen;
    return f.val;
}

/* A whole number member of obj: 1 and *out, or 0 when absent or not a number. */
static int member_num(const char *obj, const char *key, double *out) {
    size_t n;
    const char *v = member(obj, key, &n);
    if (!v || n == 0 || n > 30 || !(*v == '-' || (*v >= '0' && *v <= '9')))
        return 0;
    char tmp[32];
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    *out = strtod(tmp, NULL);
    return 1;
}

typedef struct args_ctx {
    as_buf *b;
    int n;
} args_ctx;

static int arg_cb(void *ctx, const char *key, size_t klen, const char *val, size_t vlen) {
    args_ctx *a = ctx;
    if (a->n == ARGS_MAX) {
        as_buf_puts(a->b, ", ...");
        return 1;
    }
    if (a->n++)
        as_buf_puts(a->b, ", ");
    put_span(a->b, key, klen, ARG_MAX);
    as_buf_putc(a->b, '=');
    put_span(a->b, val, vlen, ARG_MAX);
    return 0;
}

static void put_line(as_buf *b, const as_action *a) {
    /* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ": print HH:MM:SS.mmm, UTC (times before 1970 as 0) */
    char iso[AS_ISO_LEN];
    as_iso_format(a->ended_ns < 0 ? 0 : a->ended_ns, iso);
    as_buf_printf(b, "[agentsight] %.12s ", iso + 11);
    double pid, tid, ns;
    if (member_num(a->metadata, "pid", &pid)) {
        if (!member_num(a->metadata, "tid", &tid))
            tid = pid;
        as_buf_printf(b, "[pid %.0f/%.0f] ", pid, tid);
    }
    put_text(b, a->action_name ? a->action_name : "?");
    size_t plen;
    const char *params = member(a->tools_used, "parameters", &plen);
    if (params && *params == '{') {
        as_buf_putc(b, '(');
        args_ctx ac = {b, 0};
        each_member(params, arg_cb, &ac);
        as_buf_putc(b, ')');
    }
    as_buf_puts(b, " = ");
    if (a->response)
        put_text(b, a->response);
    else
        as_buf_putc(b, '?');
    if (!member_num(a->metadata, "duration_ns", &ns) || ns < 0)
        ns = (double)a->duration_ms * 1e6;
    as_buf_printf(b, " <%.3f ms>", ns / 1e6);
    if (a->error_msg) {
        as_buf_puts(b, " ERROR: ");
        put_text(b, a->error_msg);
    }
    as_buf_putc(b, '\n');
}

/* Returns 0: written, or counted in s->failed (out of memory, a write error). */
static int stderr_send(as_sink *s, const as_action *batch, size_t n) {
    stderr_sink *e = s->impl;
    as_buf_reset(&e->buf);
    for (size_t i = 0; i < n; i++)
        put_line(&e->buf, &batch[i]);
    /* A failure is counted once and the batch is not offered again: a retry would only
     * repeat lines already written and count the same actions again. */
    if (e->buf.oom) {
        as_buf_free(&e->buf);
        as_buf_init(&e->buf);
        s->failed += n;
        return 0;
    }
    if (as_write_all(e->fd, e->buf.data, e->buf.len) != 0) {
        s->failed += n;
        return 0;
    }
    s->sent += n;
    return 0;
}

static int stderr_flush(as_sink *s, int timeout_ms) {
    (void)s;
    (void)timeout_ms;
    return 0;
}

static void stderr_close(as_sink *s) {
    stderr_sink *e = s->impl;
    if (!e)
        return;
    as_buf_free(&e->buf);
    close(e->fd);
    free(e);
    s->impl = NULL;
}

const as_sink_ops as_sink_stderr_ops = {"stderr",     stderr_open,  stderr_send,
                                        stderr_flush, stderr_close, NULL};
