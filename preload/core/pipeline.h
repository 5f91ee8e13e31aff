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
#include "ring.h"

enum as_msg_kind {
    AS_MSG_ACTION = 1,  /* a packed as_action (as_action_pack) from the API */
    AS_MSG_CALL = 2,    /* a raw call record from the interposer */
    AS_MSG_SUMMARY = 3, /* an as_sum (ring.h): calls of one function that found the ring full */
    AS_MSG_KINDS = 8,
};

/* Decoder: turns a message payload into an action. It may use scratch (reset by the
 * exporter before each call) to hold strings the action borrows. Returns 0, -1 to skip
 * the message (counted as bad), or AS_REC_DAMAGED (core/record.h, -2) to skip a record
 * whose checksum does not match (counted as a drop, cause "damaged"). Runs on the
 * exporter thread only. */
typedef int (*as_msg_decode_fn)(const void *payload, size_t len, as_action *out, as_buf *scratch);
void as_pipe_register(int kind, as_msg_decode_fn fn);

/* Starts the pipeline (settings must be loaded): opens the sinks, starts the exporter
 * thread, registers the at-exit flush and the fork handlers. Idempotent and thread-safe.
 * Returns 0, or -1 when no sink could be opened. */
int as_pipe_start(void);

/* Arms the pipeline instead of starting it: the first message of any thread starts it
 * (opens the sinks, starts the exporter, makes the ring file), so a process that never
 * tracks anything starts no thread and creates no file. Checks the sink URIs now and
 * registers the at-exit and fork handlers. When that first start fails (a sink cannot be
 * opened: the message is printed then) every later message is dropped. Returns 0, or -1
 * when the URIs are refused (message printed; nothing armed). */
int as_pipe_arm(void);

/* Producer side. Reserves payload_len bytes for a message of kind in the calling thread's
 * ring. flags: AS_PIPE_WAIT: when the ring is full, wait up to as_cfg.queue_wait_ms for
 * room (policy WAIT) instead of dropping at once (never on the exporter's thread, never
 * when a signal handler interrupted this thread's write, never nested in such a wait);
 * AS_PIPE_FULL_UNCOUNTED: a full ring is not counted as a drop (the caller accounts the
 * message otherwise: the interposer's summaries). Returns a pointer to the payload
 * (8-byte aligned) or NULL when dropped (counted by cause, see as_pipe_drops). Every non-NULL
 * reserve must be followed by as_pipe_commit() on the same thread before the next reserve.
 *
 * Inline: with a ring attached and room in it, reserve + commit are a few loads and
 * stores to the thread's own ring and one plain store of head; no atomic read-modify-
 * write, no call. The first message of a thread and a full ring take the slow path. */
#define AS_PIPE_WAIT 1
#define AS_PIPE_FULL_UNCOUNTED 2
extern __thread as_ring *as_pipe_tring; /* the calling thread's ring, NULL before its first */
void *as_pipe_reserve_slow(int kind, size_t payload_len, int may_wait);

static inline void *as_pipe_reserve(int kind, size_t payload_len, int may_wait) {
    as_ring *r = as_pipe_tring;
    if (__builtin_expect(r != NULL, 1)) {
        void *p = as_ring_reserve(r, (unsigned)kind, payload_len);
        if (__builtin_expect(p != NULL, 1))
            return p;
    }
    return as_pipe_reserve_slow(kind, payload_len, may_wait);
}

static inline void as_pipe_commit(void *payload) {
    (void)payload;
    as_ring_commit(as_pipe_tring);
}

/* Counts one message dropped before it reached a ring (a nested call from a signal
 * handler, for instance). Async-signal-safe. This function can't fail. */
void as_pipe_count_drop(void);

/* 1 while the exporter of this process runs. This function can't fail. */
int as_pipe_running(void);

/* Wakes the exporter when the calling thread's ring is more than half full. Not for the
 * interposer's hot path (may make a futex syscall). */
void as_pipe_nudge_if_busy(void);

/* Waits until every message committed before the call has been handed to the sinks and
 * the sinks flushed. timeout_ms < 0 means as_cfg.flush_timeout_ms. 0 or -1 on timeout. */
int as_pipe_flush(int timeout_ms);

/* Flushes (bounded by as_cfg.flush_timeout_ms), stops the exporter, closes the sinks,
 * reports dropped actions on stderr. Idempotent. */
void as_pipe_shutdown(void);

/* Counters. as_pipe_dropped: messages truly lost, all causes summed. */
uint64_t as_pipe_dropped(void);

/* What became of the messages that found no room, by cause. */
typedef struct as_pipe_drops {
    uint64_t queue_full; /* the thread's ring was full (queue = wait: after the wait) */
    uint64_t threads;    /* more threads at once than the registry holds (1,024) */
    uint64_t signal;     /* a signal handler interrupted the thread's own write */
    uint64_t summarized; /* calls counted into a summary action instead (not lost) */
    uint64_t damaged;    /* records whose checksum did not match: skipped, never
                            shipped (lost: counted in as_pipe_dropped) */
} as_pipe_drops;
void as_pipe_drop_counts(as_pipe_drops *out);
uint64_t as_pipe_delivered(void);

/* Number of functions the interposer hooked; set by the hook layer, reported at
 * shutdown. When AGENTSIGHT_STATS_FILE names a file, as_pipe_shutdown() appends one JSON
 * line to it: {"pid":N,"actions":N,"dropped":N,"hooked":N,"output":"file:x.jsonl"}
 * (`agentsight run` reads it for its summary line). The line also carries
 * "queue_full", "threads", "signal", "damaged" (the drops by cause, as_pipe_drops),
 * "summarized" and "sink_failed" (actions a sink could not deliver nor keep). */
extern uint64_t as_stat_hooked;

/* Appends that stats line now (nothing when AGENTSIGHT_STATS_FILE is unset). Called by
 * as_pipe_shutdown() and by the interposer before exec. Counts are those of the process
 * so far; a later line for the same pid supersedes an earlier one. This function can't
 * fail (a write error is ignored). */
void as_pipe_write_stats(void);

/* as_pipe_exec_hold - before an exec: keeps the exporter off the calling thread's ring
 * (made now if the thread has none) until as_pipe_exec_release, so that what is committed
 * meanwhile stays in the ring's file: recovery ships it once the image is gone (the exec
 * succeeded), or the release takes it back (it failed). Waits, bounded, for a drain of
 * that ring in progress. Returns 0 with the ring's head in *head, or -1 (no ring file,
 * exporter not running, a drain that did not end: nothing is held). */
int as_pipe_exec_hold(uint64_t *head);

/* Ends the hold; back != 0 first takes back what the thread committed since the hold
 * (head is what as_pipe_exec_hold gave). This function can't fail. */
void as_pipe_exec_release(uint64_t head, int back);

/* Set in the exporter thread (and by code that must not be tracked): wrapped calls made
 * while it is non-zero pass straight through. */
extern __thread int as_in_agentsight;

/* AS_OWN_ATFORK(tag, prepare, parent, child) defines tag_prepare, tag_parent and
 * tag_child, to be registered together with pthread_atfork in place of the three handlers
 * (as_fork_nothing for none). Every prepare handler raises as_in_agentsight and every
 * parent or child handler lowers it after its work, so from the first of the interposer's
 * prepare handlers to the last of its parent or child handlers (glibc runs the handlers of
 * every registration on both sides) the thread's calls never enter a hook: neither the
 * interposer's own (its locks taken, released, reset) nor the C library's own calls
 * between the fork system call and the child handlers, made while the interposer's locks
 * are still held. Handlers of the program registered between the interposer's run inside
 * that window, their calls untracked. */
static inline void as_fork_nothing(void) {}
#define AS_OWN_ATFORK(tag, prepare, parent, child)                                                 \
    static void tag##_prepare(void) {                                                              \
        as_in_agentsight++;                                                                        \
        prepare();                                                                                 \
    }                                                                                              \
    static void tag##_parent(void) {                                                               \
        parent();                                                                                  \
        as_in_agentsight--;                                                                        \
    }                                                                                              \
    static void tag##_child(void) {                                                                \
        child();                                                                                   \
        as_in_agentsight--;                                                                        \
    }

/* ---- crash-safe capture -------------------------------------------------------------
 *
 * Unless AGENTSIGHT_CRASH_SAFE=0, each thread's ring is a file
 *   <spool_dir>/rings/<pid>-<starttime>-<image>-<slot>.ring   (0600; rings/ is 0700)
 * mapped MAP_SHARED, so what was committed survives the process dying at any point. The
 * exporter advances the file's tail as it delivers; a clean shutdown removes the file.
 * Beside them, <pid>-<starttime>-<image>.targets (append-only lines
 * "id<TAB>action_name<TAB>symbol<TAB>library<TAB>display<TAB>desc<TAB>checksum", the
 * checksum as_rec_checksum of the text before its tab, 8 hex digits) describes the
 * interposer's targets, which the call records of that process refer to by id: recovery
 * decodes them with the same description the live exporter uses (core/record.h). When the spool
 * directory cannot be made the rings are anonymous memory (one warning). */

/* The hook layer tells the pipeline about a new target (not on the hot path; strings
 * must live for the process: they are kept by pointer and written to the .targets file
 * at once, and again in a forked child). display may be NULL; desc is the target's
 * description in the text form of core/record.h (as_rec_desc_format), or NULL. Ids >=
 * 4096 (AS_MAX_TARGETS) are ignored. */
void as_pipe_note_target(uint32_t id, const char *action_name, const char *symbol,
                         const char *library, const char *display, const char *desc);

/* Who left a recovered action. */
typedef struct as_recover_origin {
    int pid;
    const char *sinks;           /* sink URIs of the dead process (no secrets), may be "" */
    const char *conversation_id; /* its conversation id */
    const char *file;            /* the ring file being recovered */
    const char *run_id;          /* the `agentsight run` it belonged to ("" for none) */
    as_ring *ring;               /* the mapped ring file (its sink_mark is the flush's) */
} as_recover_origin;

/* Called for each recovered action, in the order the dead thread recorded them. The
 * action and origin borrow memory valid during the call. Return 0 when the action was
 * taken, non-zero to stop: that action and the rest of its file stay for a later
 * recovery, and recovery goes on with the next file. */
typedef int (*as_recover_fn)(const as_action *a, const as_recover_origin *o, void *ctx);

/* Makes every action fn took so far durable in the sinks (storing as_sinks_file_mark()
 * into o->ring's sink_mark, then as_sinks_send()). Returns 0, or -1 when
 * they could not be: the walk stops and the file's tail stays before them. NULL: what fn
 * takes is durable when fn returns. */
typedef int (*as_recover_flush_fn)(const as_recover_origin *o, void *ctx);

typedef struct as_recover_opts {
    as_recover_fn fn;
    as_recover_flush_fn flush; /* may be NULL */
    void *ctx;
    const char *run_id;   /* NULL: files of any run; else only those of this run id */
    uint64_t self_image;  /* non-zero: files of our own pid and start time written by
                           * another image (the one exec replaced) count as dead */
    uint64_t *unreported; /* non-NULL: receives (adds) the actions the dead processes
                           * delivered themselves after their last stats line, from the
                           * files recovery removes */
    uint64_t *damaged;    /* non-NULL: receives (adds) the records recovery skipped
                           * because their checksum did not match (never shipped) */
} as_recover_opts;

/* as_pipe_recover - ships what dead processes left in <root>/rings.
 *
 * root: the spool root (NULL or "" means as_cfg.spool_dir). For each ring file whose
 * process is dead (its pid does not exist, is a zombie, or now belongs to a process
 * started at another time), takes the file (renames it to NAME.taking-<ourpid>-<ourstart>,
 * so two recoverers never share one; files taken by a recoverer that died are taken
 * again), decodes every intact undelivered record into an action with the event id the
 * live exporter would have given it (AS_MSG_ACTION: as packed by the API; AS_MSG_CALL and
 * AS_MSG_SUMMARY: decoded by core/record.h, as the live exporter decodes them, with the
 * target descriptions of the dead process's .targets file and its clock calibration;
 * summaries still in a ring header are shipped too and its drops reported; records that
 * cannot be decoded are skipped, never shipped as garbage), and calls fn for each. Every
 * BATCH actions and at the end it calls flush, and only then moves the file's tail past
 * them: a recoverer killed at any point leaves the rest (and at most one batch again) to
 * the next. Records already in the dead process's last file sink (found from the ring's
 * sink_mark by event id) are skipped, so a kill between a file write and the tail store
 * never duplicates a line. When all is done the file is removed (or, when fn stopped,
 * renamed back). A live process's files are never touched, nor our own. Blocks for file
 * I/O only; any thread. Returns the number of actions fn took, or -1 when the rings
 * directory exists but cannot be read. */
long as_pipe_recover_opts(const char *root, const as_recover_opts *opts);

/* Registers the pipeline's exit flush again, to run before the exit handlers registered
 * so far (atexit runs the last registered first). Called right after curl_global_init:
 * the TLS library libcurl uses registers its own cleanup then (OpenSSL: OPENSSL_cleanup),
 * and a final delivery over https made after it crashed the program at exit. The flush
 * itself runs once. Can't fail. */
void as_pipe_exit_before_tls(void);

/* 1 from the moment the exporter is told to stop (the exit flush, as_pipe_shutdown), and
 * between as_pipe_set_final_flush(1) and (0) (the flush before an exec): the last flush of
 * this image is under way. HTTP sinks then spool a batch whose collector refuses the
 * connection at once instead of retrying (as_http_set_final). */
int as_pipe_stopping(void);
void as_pipe_set_final_flush(int on);

/* as_pipe_recover_opts with only fn and ctx (any run, no flush). */
long as_pipe_recover(const char *root, as_recover_fn fn, void *ctx);

/* 1 when <root>/rings (root NULL or "": the spool directory) holds a ring file of a dead
 * process (or of a dead recoverer), else 0. Reads the directory only; makes nothing. */
int as_pipe_recover_pending(const char *root);

/* The number of ring files in <root>/rings (root NULL or "": the configured spool) of
 * processes still alive whose writer ran under `agentsight run` with AGENTSIGHT_RUN_ID
 * run_id: descendants that outlived the run's program (orphans), which `run` waits for a
 * while before it recovers what they leave. Reads headers only; claims nothing. */
int as_pipe_live_rings(const char *root, const char *run_id);

#endif
