/* pipeline.h - per-thread lock-free rings drained by one exporter thread into the sinks.
 *
 * Producers (any thread) reserve a message in their own ring, write it, commit it: no
 * lock, no syscall, no malloc after the thread's first message. The exporter thread turns
 * each message into an as_action through the decoder registered for its kind, batches
 * them and hands batches to every open sink. */
#ifndef AS_PIPELINE_H
#define AS_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "action.h"

enum as_msg_kind {
    AS_MSG_ACTION = 1, /* a packed as_action (as_action_pack) from the API */
    AS_MSG_CALL = 2,   /* a raw call record from the interposer */
    AS_MSG_KINDS = 8,
};

/* Decoder: turns a message payload into an action. It may use scratch (reset by the
 * exporter before each call) to hold strings the action borrows. Returns 0, or -1 to
 * skip the message (counted as bad). Runs on the exporter thread only. */
typedef int (*as_msg_decode_fn)(const void *payload, size_t len, as_action *out,
                                as_buf *scratch);
void as_pipe_register(int kind, as_msg_decode_fn fn);

/* Starts the pipeline (settings must be loaded): opens the sinks, starts the exporter
 * thread, registers the at-exit flush and the fork handlers. Idempotent and thread-safe.
 * Returns 0, or -1 when no sink could be opened. */
int as_pipe_start(void);

/* Producer side. Reserves payload_len bytes for a message of kind in the calling thread's
 * ring. may_wait: when the ring is full, wait up to as_cfg.queue_wait_ms for room
 * (policy WAIT) instead of dropping at once. Returns a pointer to the payload (8-byte
 * aligned) or NULL when dropped (counted). Every non-NULL reserve must be followed by
 * as_pipe_commit() on the same thread before the next reserve. */
void *as_pipe_reserve(int kind, size_t payload_len, int may_wait);
void as_pipe_commit(void *payload);

/* Waits until every message committed before the call has been handed to the sinks and
 * the sinks flushed. timeout_ms < 0 means as_cfg.flush_timeout_ms. 0 or -1 on timeout. */
int as_pipe_flush(int timeout_ms);

/* Flushes (bounded by as_cfg.flush_timeout_ms), stops the exporter, closes the sinks,
 * reports dropped actions on stderr. Idempotent. */
void as_pipe_shutdown(void);

/* Counters. */
uint64_t as_pipe_dropped(void);
uint64_t as_pipe_delivered(void);

/* Number of functions the interposer hooked; set by the hook layer, reported at
 * shutdown. When AGENTSIGHT_STATS_FILE names a file, as_pipe_shutdown() appends one JSON
 * line to it: {"pid":N,"actions":N,"dropped":N,"hooked":N,"output":"file:x.jsonl"}
 * (`agentsight run` reads it for its summary line). */
extern uint64_t as_stat_hooked;

/* Set in the exporter thread (and by code that must not be tracked): wrapped calls made
 * while it is non-zero pass straight through. */
extern __thread int as_in_agentsight;

#endif
