/* sink.h - the one small interface every sink implements: open, send a batch,
 * flush(timeout_ms), close. The exporter thread is the only caller. */
#ifndef AS_SINK_H
#define AS_SINK_H

#include <stddef.h>

#include "action.h"

typedef struct as_sink as_sink;

typedef struct as_sink_ops {
    const char *scheme; /* "file", "stderr", "null", "agentsight", "otlp" */
    /* arg is what follows "scheme:" in the URI (may be ""). Returns 0, or -1 with a
     * message logged. */
    int (*open)(as_sink *s, const char *arg);
    /* Delivers n actions. Returns 0 when delivered (or handed to the spool by the sink
     * itself); -1 when they could not be delivered now: the sink itself keeps them for a
     * later try (the file sink, in memory up to a bound) or counts them as failed.
     * Never blocks on the network: HTTP sinks queue requests and make one non-blocking
     * pass over what is in flight. n == 0 (batch may be NULL) only makes that pass; the
     * exporter does so through as_sinks_poll() when it has nothing to send. */
    int (*send)(as_sink *s, const as_action *batch, size_t n);
    /* Waits up to timeout_ms for anything in flight. Returns 0 or -1 on timeout. */
    int (*flush)(as_sink *s, int timeout_ms);
    void (*close)(as_sink *s);
    /* Optional (NULL: nothing to do). Called from another thread at process exit when the
     * exporter did not stop and still owns the sink: waits up to timeout_ms until no write
     * of the sink is under way and keeps any from starting, so that the exit never cuts a
     * write in two (the file sink: no partial last line). */
    void (*hold)(as_sink *s, int timeout_ms);
} as_sink_ops;

struct as_sink {
    const as_sink_ops *ops;
    void *impl;
    char uri[512];
    unsigned long long sent, failed; /* actions delivered / not delivered (spooled, dead
                                      * letters, lost), counted by the sink itself */
    unsigned long long mark;         /* file sink: a byte offset of its file before which none of
                                      * its later writes starts (the end of its last write) */
};

/* Sends a batch to those of sinks[0..n) whose bit is set in only (bit i: sinks[i]): file
 * sinks last, so that an action found in the last file sink is durable in every sink
 * (HTTP sinks write ahead into their spool before their send returns). Returns the bits
 * of the sinks that could not take it now (0: all did); the caller still holds the batch
 * and sends it again to those. */
unsigned as_sinks_send(as_sink *sinks, int n, const as_action *batch, size_t nbatch, unsigned only);

/* The mark of the last file sink of sinks[0..n) (the one as_sinks_send writes last), or
 * UINT64_MAX when there is none. */
unsigned long long as_sinks_file_mark(const as_sink *sinks, int n);

/* The path of the last file: sink named in the URI list uris into path (cap bytes).
 * Returns 1, or 0 when the list names no file sink. */
int as_sinks_last_file(const char *uris, char *path, size_t cap);

/* Registered sink types (file, stderr, null; HTTP ones when built in). */
const as_sink_ops *as_sink_find(const char *scheme);

/* The most sinks one URI list may name (as_sinks_check refuses more), and the longest
 * URI (a longer one is refused, never truncated into another destination). */
#define AS_MAX_SINKS 16
#define AS_MAX_URI 511

/* Parses a comma-separated URI list and opens each sink into out (up to max). Unknown
 * schemes and URIs longer than AS_MAX_URI are reported ("unknown sink URI 'x': expected
 * file:PATH, stderr, null, agentsight, otlp or otlp:URL") and skipped. URIs beyond the first
 * max are not opened: one error names each of them. Returns the number opened. */
int as_sinks_open(const char *uris, as_sink *out, int max);

/* Lets the sinks that keep requests in flight (agentsight, otlp) make progress without
 * new actions: calls their send with n == 0. Cheap when nothing is in flight; never
 * blocks. The exporter calls it on passes that deliver nothing. This function can't
 * fail. */
void as_sinks_poll(as_sink *sinks, int n);

/* Checks a URI list without opening anything: 0, or -1 with the reason in msg (an
 * unknown scheme, a missing argument, a URI longer than AS_MAX_URI, no URI at all, or more
 * than AS_MAX_SINKS of them). */
int as_sinks_check(const char *uris, char *msg, size_t cap);

extern const as_sink_ops as_sink_file_ops;
extern const as_sink_ops as_sink_stderr_ops;
extern const as_sink_ops as_sink_null_ops;
extern const as_sink_ops as_sink_agentsight_ops; /* sink_agentsight.c */
extern const as_sink_ops as_sink_otlp_ops;       /* sink_otlp.c */

/* Set to 1 (before any sink opens) by a process that only forwards what other processes
 * tracked (the agentsight command: send, the recovery of run): its otlp sink then makes
 * no process span and parents no span to it. */
extern int as_otlp_relay;

#endif
