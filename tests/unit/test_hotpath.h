/* test_hotpath.h - for unit tests that run the hot path (the thunk, typed capture) against
 * real rings: the pipeline's slow reserve is replaced (link with
 * -Wl,--wrap=as_pipe_reserve_slow) so that each thread gets a ring of its own on its first
 * record, as in production, and the test reads every committed record back, either
 * through a callback or into a store of whole payloads (the call record and the capture
 * items behind it); typed targets made from prototype text; a SIGALRM timer for tests of
 * signal handlers that interrupt the hot path. Header-only, with the one wrapped function
 * defined here: each test binary is built from one test file that includes it. */
#ifndef AS_TEST_HOTPATH_H
#define AS_TEST_HOTPATH_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/pipeline.h"
#include "core/ring.h"
#include "hook/callrec.h"
#include "hook/config.h"
#include "hook/cproto.h"
#include "hook/target.h"

#define AS_TEST_MAX_RINGS 16
#define AS_TEST_RING_BYTES (8u << 20)

static as_ring *as_test_rings[AS_TEST_MAX_RINGS];
static uint64_t as_test_cursors[AS_TEST_MAX_RINGS];
static int as_test_nrings;
static pthread_mutex_t as_test_rings_lock = PTHREAD_MUTEX_INITIALIZER;
/* 1: the slow reserve answers NULL, as for a full ring */
static int as_test_reserve_refuse;

/* Adds ring r (made by the test) to the rings read back. */
static inline void as_test_rings_add(as_ring *r) {
    pthread_mutex_lock(&as_test_rings_lock);
    if (as_test_nrings == AS_TEST_MAX_RINGS)
        abort();
    as_test_cursors[as_test_nrings] = as_ring_tail(r);
    as_test_rings[as_test_nrings++] = r;
    pthread_mutex_unlock(&as_test_rings_lock);
}

void *__wrap_as_pipe_reserve_slow(int kind, size_t len, int may_wait);

/* The first record of a thread (or a full ring): attaches a ring to the thread. Aborts on
 * anything the hot path must never ask for. */
void *__wrap_as_pipe_reserve_slow(int kind, size_t len, int may_wait) {
    if (kind != AS_MSG_CALL || len < sizeof(as_callrec) || (may_wait & AS_PIPE_WAIT))
        abort();
    if (as_test_reserve_refuse)
        return NULL;
    if (!as_pipe_tring) {
        as_ring *r = as_ring_create(AS_TEST_RING_BYTES);
        if (!r)
            abort();
        as_test_rings_add(r);
        as_pipe_tring = r;
    }
    return as_ring_reserve(as_pipe_tring, (unsigned)kind, len);
}

/* Calls fn(payload, len, arg) for every record committed since the last read, ring by
 * ring (each ring in order), and frees their space. Aborts on a record that is not a
 * call record, or whose checksum does not match (thunk.S and C seal every record: this
 * proves the assembly's CRC-32C is the decoder's). */
static inline void as_test_rings_read(void (*fn)(const void *p, size_t len, void *arg), void *arg) {
    pthread_mutex_lock(&as_test_rings_lock);
    for (int i = 0; i < as_test_nrings; i++) {
        uint64_t head = as_ring_head(as_test_rings[i]);
        unsigned kind;
        size_t len;
        const void *p;
        while ((p = as_ring_read(as_test_rings[i], &as_test_cursors[i], head, &kind, &len))) {
            if (kind != AS_MSG_CALL || len < sizeof(as_callrec)) {
                fprintf(stderr, "test_hotpath: record of kind %u, %zu bytes\n", kind, len);
                abort();
            }
            if (!as_rec_call_intact(p, len)) {
                fprintf(stderr, "test_hotpath: record of %zu bytes with a wrong checksum\n", len);
                abort();
            }
            fn(p, len, arg);
        }
        as_ring_release(as_test_rings[i], as_test_cursors[i]);
    }
    pthread_mutex_unlock(&as_test_rings_lock);
}

/* ---- a store of whole payloads ------------------------------------------------------ */

#define AS_TEST_BLOB_CAP (32u << 20)
#define AS_TEST_REC_MAX (1u << 18)
static _Alignas(16) unsigned char as_test_blob[AS_TEST_BLOB_CAP]; /* 8-byte aligned payloads */
static size_t as_test_blob_len;
static uint32_t as_test_rec_off[AS_TEST_REC_MAX], as_test_rec_len[AS_TEST_REC_MAX];
static size_t as_test_nrec;

static inline void as_test_store_one(const void *p, size_t len, void *arg) {
    (void)arg;
    if (as_test_nrec >= AS_TEST_REC_MAX || as_test_blob_len + len > AS_TEST_BLOB_CAP) {
        fprintf(stderr, "test_hotpath: the store is full (%zu records)\n", as_test_nrec);
        abort();
    }
    memcpy(as_test_blob + as_test_blob_len, p, len);
    as_test_rec_off[as_test_nrec] = (uint32_t)as_test_blob_len;
    as_test_rec_len[as_test_nrec++] = (uint32_t)len;
    as_test_blob_len += (len + 7) & ~(size_t)7;
}

/* Moves every committed record into the store. Returns how many it holds. */
static inline size_t as_test_collect(void) {
    as_test_rings_read(as_test_store_one, NULL);
    return as_test_nrec;
}

/* Empties the store (after reading what was committed). */
static inline void as_test_store_reset(void) {
    as_test_collect();
    as_test_nrec = 0;
    as_test_blob_len = 0;
}

/* ---- typed targets, signal timers --------------------------------------------------- */

/* Fills entry e from the prototype text (has_proto, max_string as given, the rest zero)
 * and registers fn as a target of library lib with it. Returns the target id; aborts on
 * a prototype that does not parse or a full target table. */
static inline int as_test_typed_target(as_entry *e, void *fn, const char *name, const char *proto,
                                       int max_string, const char *lib) {
    memset(e, 0, sizeof *e);
    size_t no, nl, used;
    as_cproto_err err;
    if (as_cproto_parse(proto, strlen(proto), &e->proto, &no, &nl, &used, &err) != 0) {
        fprintf(stderr, "test_hotpath: prototype '%s' does not parse\n", proto);
        abort();
    }
    e->has_proto = 1;
    e->max_string = max_string;
    int id = as_target_get(fn, name ? name : strndup(proto + no, nl), NULL, lib, e);
    if (id < 0 || as_targets[id].entry != e)
        abort();
    return id;
}

/* Makes handler run on SIGALRM every 50 us from now (old receives the previous action).
 * Aborts when the timer cannot be set. */
static inline void as_test_alarm_start(void (*handler)(int), struct sigaction *old) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    struct itimerval it = {{0, 50}, {0, 50}};
    if (sigaction(SIGALRM, &sa, old) != 0 || setitimer(ITIMER_REAL, &it, NULL) != 0)
        abort();
}

/* Stops the timer and puts back the action old (NULL: the default). SIG_IGN first: it
 * discards a SIGALRM still pending, which the default action would turn into the end of
 * the process. */
static inline void as_test_alarm_stop(const struct sigaction *old) {
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_IGN);
    if (old)
        sigaction(SIGALRM, old, NULL);
    else
        signal(SIGALRM, SIG_DFL);
}

#endif
