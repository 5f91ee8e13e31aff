/* sink_null.c - the "null" sink: discards every action (to measure the pipeline alone).
 *
 * Test-only option: "null:delay_ms=N" sleeps N ms per batch, making the sink slow so the
 * tests can fill a queue; it is not meant for production use. */
#include "sink.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* Returns 0; -1 (logged) for an argument other than "" or "delay_ms=N". */
static int null_open(as_sink *s, const char *arg) {
    long delay = 0;
    if (arg && arg[0]) {
        char *end = NULL;
        if (strncmp(arg, "delay_ms=", 9) == 0)
            delay = strtol(arg + 9, &end, 10);
        if (!end || *end || end == arg + 9 || delay < 0 || delay > 60000) {
            as_error("sink URI 'null:%s': the only option is delay_ms=N", arg);
            return -1;
        }
    }
    s->impl = (void *)(intptr_t)delay;
    return 0;
}

/* Returns 0: everything is discarded. */
static int null_send(as_sink *s, const as_action *batch, size_t n) {
    (void)batch;
    long delay = (long)(intptr_t)s->impl;
    s->sent += n;
    if (delay > 0) {
        struct timespec ts = {delay / 1000, (delay % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int null_flush(as_sink *s, int timeout_ms) {
    (void)s;
    (void)timeout_ms;
    return 0;
}

static void null_close(as_sink *s) {
    s->impl = NULL;
}

const as_sink_ops as_sink_null_ops = {"null", null_open, null_send, null_flush, null_close, NULL};
