/* sink_stderr.c - the "stderr" sink: one readable line per action, for watching a run
 * live: "[agentsight] 10:30:00.050 calculator_multiply 50 ms -> 60 ERROR: msg".
 * The time is the action's end (UTC); response and error are shortened to one line. */
#include "sink.h"

#include "clock.h"
#include "fdio.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define TEXT_MAX 120

typedef struct stderr_sink {
    as_buf buf;
} stderr_sink;

static int stderr_open(as_sink *s, const char *arg) {
    (void)arg;
    stderr_sink *e = calloc(1, sizeof(*e));
    if (!e)
        return -1;
    as_buf_init(&e->buf);
    s->impl = e;
    return 0;
}

/* Appends text on one line: control characters become spaces, cut at TEXT_MAX bytes
 * (on a UTF-8 character boundary) with "...". */
static void put_text(as_buf *b, const char *t) {
    size_t i = 0;
    for (; t[i] && i < TEXT_MAX; i++) {
        unsigned char c = (unsigned char)t[i];
        as_buf_putc(b, c < 0x20 || c == 0x7f ? ' ' : (char)c);
    }
    if (t[i]) {
        while (i > 0 && ((unsigned char)t[i] & 0xc0) == 0x80) {
            i--;
            b->len--;
        }
        as_buf_puts(b, "...");
    }
}

static void put_line(as_buf *b, const as_action *a) {
    /* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ": print HH:MM:SS.mmm, UTC (times before 1970 as 0) */
    char iso[AS_ISO_LEN];
    as_iso_format(a->ended_ns < 0 ? 0 : a->ended_ns, iso);
    as_buf_printf(b, "[agentsight] %.12s ", iso + 11);
    put_text(b, a->action_name ? a->action_name : "?");
    as_buf_printf(b, " %lld ms", (long long)a->duration_ms);
    if (a->response) {
        as_buf_puts(b, " -> ");
        put_text(b, a->response);
    }
    if (a->error_msg) {
        as_buf_puts(b, " ERROR: ");
        put_text(b, a->error_msg);
    }
    as_buf_putc(b, '\n');
}

/* Returns 0 when written, -1 on out of memory or a write error. */
static int stderr_send(as_sink *s, const as_action *batch, size_t n) {
    stderr_sink *e = s->impl;
    as_buf_reset(&e->buf);
    for (size_t i = 0; i < n; i++)
        put_line(&e->buf, &batch[i]);
    if (e->buf.oom) {
        as_buf_free(&e->buf);
        as_buf_init(&e->buf);
        s->failed += n;
        return -1;
    }
    if (as_write_all(2, e->buf.data, e->buf.len) != 0) {
        s->failed += n;
        return -1;
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
    free(e);
    s->impl = NULL;
}

const as_sink_ops as_sink_stderr_ops = {"stderr", stderr_open, stderr_send, stderr_flush,
                                        stderr_close};
