/* pipeline.c - per-thread rings, the bounded thread registry and the one exporter thread
 * that drains the rings into batches for the sinks; at-exit flush and fork handling.
 *
 * Producers touch only their own ring (ring.h). The registry (a fixed array of slots)
 * is locked only when a thread takes its first slot, when the exporter retires the slot
 * of an exited thread, and around fork. The exporter drains in chunks and then sleeps:
 * at least BUSY_MS between passes while there is traffic (so it never chases a producer's
 * cache lines), up to IDLE_MAX_MS when idle; the API path may wake it early
 * (as_pipe_nudge_if_busy), the interposer's path never does. Unless
 * AGENTSIGHT_CRASH_SAFE=0 the rings are files (pipeline.h, "crash-safe capture"), and
 * the exporter first ships what dead processes left (recover.c).
 *
 * AGENTSIGHT_TEST_POLL_MS (tests only): the exporter sleeps that long between passes,
 * busy or not, and does not recover at start, so a test can kill a process before
 * anything was delivered. */
#include "core/pipeline.h"
#include "core/keptenv.h"
#include "core/redact.h"
#include "pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "keptenv.h"
#include "log.h"
#include "record.h"
#include "ring.h"
#include "securedir.h"
#include "settings.h"
#include "sink.h"
#include "core/bigbss.h"
#include "core/fdio.h"

#define MAX_SLOTS 1024 /* threads with a live ring at once */
#define MAX_SINKS AS_MAX_SINKS
#define BATCH_MAX 256
/* Records space of a thread's ring mapped writable when the thread attaches (the part of
 * a ring file allocated at its creation): the first ~220 records never take a page fault;
 * the rest of the ring faults in as used, and is given back when the thread exits (a
 * thread that tracks little keeps little resident). Consumed pages of a live thread are
 * not given back at each release: the producer would fault them in again every lap. */
#define PREFAULT_BYTES AS_RING_ALLOC0
#define BUSY_MS 1
#define IDLE_MAX_MS 8
#define MAX_NOTED 4096 /* target ids the .targets file names (AS_MAX_TARGETS) */
#define DEFAULT_QUEUE (1u << 20)

enum { SLOT_FREE = 0, SLOT_ACTIVE = 1, SLOT_EXITED = 2 };
/* ARMED: started lazily by the first message (as_pipe_arm); FAILED: that start failed. */
enum { PIPE_STOPPED = 0, PIPE_RUNNING = 1, PIPE_FORKED = 2, PIPE_ARMED = 3, PIPE_FAILED = 4 };
/* The process that armed (a fork child takes it over): a vfork child, which shares our
 * memory and runs no fork handler, must never start threads or open sinks. */
static pid_t armed_pid;

typedef struct slot {
    _Atomic int state;
    as_ring *ring;
    char file[96]; /* base name of a file-backed ring, "" for anonymous memory */
} slot;

__thread int as_in_agentsight;
uint64_t as_stat_hooked;

static slot slots[MAX_SLOTS] AS_BIG_BSS;
static _Atomic int slots_hi; /* slots[0..slots_hi) have ever been used */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t dropped_noring; /* drops of threads without a ring (thread limit) */
static uint64_t dropped_retired;        /* drops of retired rings (reg_lock): queue full */
static uint64_t dropped_sig_retired;    /* ... a signal handler interrupted a write */
static uint64_t summarized_retired;     /* ... calls summarized */
static _Atomic uint64_t sink_failed;    /* actions the sinks counted as failed, at close */
static _Atomic int room_wanted;         /* a producer waits for room: the exporter polls */
static _Atomic uint64_t delivered;
static _Atomic uint64_t bad_msgs;
static _Atomic uint64_t damaged_msgs; /* records whose checksum did not match */
_Static_assert(AS_ACTION_DAMAGED == AS_REC_DAMAGED, "one return for a damaged record");

__thread as_ring *as_pipe_tring;
static __thread int t_dead;        /* thread is exiting: its slot is gone */
static __thread int t_is_exporter; /* never waits for room: it makes the room */
static __thread int t_waiting;     /* inside a wait for room: a nested reserve never waits */
static pthread_key_t exit_key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static as_msg_decode_fn decoders[AS_MSG_KINDS];

/* Exporter state. start_lock serialises start/shutdown; ex_lock guards the flush
 * counters and the wait conditions. Lock order: start_lock, reg_lock, ex_lock. */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t ex_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ex_cond;   /* wakes the exporter (monotonic clock) */
static pthread_cond_t done_cond; /* wakes flush waiters (monotonic clock) */
static _Atomic int pipe_state;
static _Atomic int ex_stop;
/* An exporter that shutdown gave up waiting for (detached, ex_lock): it still owns
 * sinks[], the batch, cursors and scratch, closes the sinks when it returns, and no
 * other exporter starts until it has. ex_finished: the exporter left its loop. */
static int ex_abandoned, ex_finished;
static _Atomic int exiting;      /* the at-exit shutdown ran: never restart from a reserve */
static int64_t stop_deadline_ns; /* monotonic; set before ex_stop */
static uint64_t flush_req, flush_done;
static pthread_t ex_thread;
static as_sink sinks[MAX_SINKS] AS_BIG_BSS;
static int nsinks;
static char open_uris[MAX_SINKS * 520] AS_BIG_BSS; /* resolved URIs, reopened by a forked child */
static int open_uris_set; /* open_uris holds something: read instead of open_uris[0], whose
                           * page a process that never opened a sink does not touch */

/* Exporter-only batch state. */
static as_action batch[BATCH_MAX] AS_BIG_BSS;
static as_buf scratch[BATCH_MAX] AS_BIG_BSS;
static char batch_ids[BATCH_MAX][33] AS_BIG_BSS;    /* the event ids the batch's actions borrow */
static uint32_t slot_batched[MAX_SLOTS] AS_BIG_BSS; /* actions of each slot in the batch */
/* Slots whose header summaries are in the batch: their tables are emptied once it is
 * delivered, not before (a death in between leaves them for a recoverer, which gives
 * them the same event ids). */
static uint8_t sums_batched[MAX_SLOTS] AS_BIG_BSS;
static int nsums_batched;
/* Sinks (bits) that could not take the batch (a file that cannot be written): the batch
 * and its rings are kept as they are and offered to those sinks again, and nothing more
 * is drained meanwhile; the rings fill up and producers drop, as with a slow exporter. */
static unsigned retry_sinks;
static as_ring *recov_ring; /* a dead process's ring whose actions are batched */
static as_buf meta_buf;
static uint64_t cursor[MAX_SLOTS] AS_BIG_BSS;
static uint8_t touched[MAX_SLOTS] AS_BIG_BSS;
static int touched_list[MAX_SLOTS] AS_BIG_BSS;
static int ntouched;
static size_t nbatch;
static uint64_t dropped_reported;
/* Final drain: each ring's head when the stop was asked; only that much is drained. */
static uint64_t stop_head[MAX_SLOTS] AS_BIG_BSS;
static int stop_hi;            /* slots [0, stop_hi) have a stop_head; 0 while not stopping */
static uint64_t drops_printed; /* the drop total the last shutdown line reported */

/* Crash-safe rings (file-backed). files_lock guards everything below; lock order:
 * start_lock, reg_lock, files_lock, ex_lock. */
static pthread_mutex_t files_lock = PTHREAD_MUTEX_INITIALIZER;
static int files_state; /* 0 not decided, 1 files in rings_dir, -1 anonymous memory */
static char rings_dir[600] AS_BIG_BSS;
static as_ring_info ident AS_BIG_BSS; /* this process image's identity for new ring headers */
static uint64_t ring_serial;          /* rings made by this image (event id prefixes) */
static int targets_fd = -1;
static uint32_t targets_written; /* ids [0, targets_written) are in the .targets file */
static const char *noted[MAX_NOTED][5] AS_BIG_BSS; /* name, symbol, library, display, desc */
static uint32_t noted_n;
static int poll_ms_test; /* AGENTSIGHT_TEST_POLL_MS, 0 = not set */

/* The stats already reported by as_pipe_write_stats (lines carry differences). */
static uint64_t stats_actions, stats_dropped;
static as_pipe_drops stats_prev; /* by cause, with .signal */
static uint64_t stats_sink_failed;

static struct timespec mono_ts(int64_t ns) {
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    return ts;
}

static size_t queue_bytes(void) {
    return as_cfg.queue_bytes ? as_cfg.queue_bytes : DEFAULT_QUEUE;
}

/* Ring bytes for the thread taking slot i: the queue size for the first BIG_RING_SLOTS
 * threads; past them, when the queue size is the default, SMALL_RING bytes, so that ring
 * memory stays bounded with many threads (1,000 threads: 16 x 1 MiB + 984 x 36 KiB of
 * allocated files). A burst that fills a small ring is counted in summaries (queue =
 * drop) or waits (queue = wait): nothing goes unaccounted. */
#define BIG_RING_SLOTS 16
#define SMALL_RING (32u << 10)
static size_t ring_bytes_for(int i) {
    size_t want = queue_bytes();
    if (want == DEFAULT_QUEUE && i >= BIG_RING_SLOTS) /* the default size, not a chosen one */
        want = SMALL_RING;
    return want;
}

static void init_conds(void) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ex_cond, &ca);
    pthread_cond_init(&done_cond, &ca);
    pthread_condattr_destroy(&ca);
}

/* ---- thread registry ---------------------------------------------------------------- */

/* Thread exit (pthread key destructor): hand the slot to the exporter, which drains and
 * then frees it. Later messages from this thread (other destructors) are dropped. */
static void thread_exit(void *arg) {
    slot *s = arg;
    as_pipe_tring = NULL;
    t_dead = 1;
    atomic_store_explicit(&s->state, SLOT_EXITED, memory_order_release);
}

static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);
static void at_exit(void);

AS_OWN_ATFORK(own_fork, fork_prepare, fork_parent, fork_child)

static void once_init(void) {
    init_conds();
    pthread_key_create(&exit_key, thread_exit);
    pthread_atfork(own_fork_prepare, own_fork_parent, own_fork_child);
    atexit(at_exit);
}

/* ---- crash-safe ring files ----------------------------------------------------------- */

/* Copies a comma-separated URI list into out without any user:password@ part. */
static void uris_without_secrets(const char *uris, char *out, size_t cap) {
    size_t o = 0;
    out[0] = '\0';
    for (const char *p = uris; p && *p && o + 1 < cap;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *scheme_end = memchr(p, ':', len);
        const char *at = memchr(p, '@', len);
        const char *slashes = scheme_end ? strstr(scheme_end, "//") : NULL;
        size_t keep = len;
        const char *rest = NULL;
        if (at && slashes && slashes < at) { /* scheme:...//user:pass@host -> drop user */
            keep = (size_t)(slashes + 2 - p);
            rest = at + 1;
        }
        int n = snprintf(out + o, cap - o, "%s%.*s", o ? "," : "", (int)keep, p);
        if (n < 0 || (size_t)n >= cap - o)
            break;
        o += (size_t)n;
        if (rest) {
            n = snprintf(out + o, cap - o, "%.*s", (int)(p + len - rest), rest);
            if (n < 0 || (size_t)n >= cap - o)
                break;
            o += (size_t)n;
        }
        p = end ? end + 1 : NULL;
    }
}

/* Writes the target lines not yet in the .targets file. files_lock held; a write error
 * is ignored (those call records are then skipped at recovery). */
static void targets_sync_locked(void) {
    if (files_state != 1)
        return;
    if (targets_fd < 0) {
        char path[sizeof rings_dir + 96];
        snprintf(path, sizeof path, "%s/%d-%llu-%llx.targets", rings_dir, (int)ident.pid,
                 (unsigned long long)ident.start_time, (unsigned long long)ident.image);
        targets_fd = as_open_high(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
                                  0600); /* kept open: at a high number (fdio.h) */
        if (targets_fd < 0)
            return;
        targets_written = 0;
    }
    as_buf b;
    as_buf_init(&b);
    for (uint32_t id = targets_written; id < noted_n; id++) {
        if (!noted[id][0])
            continue;
        size_t line = b.len;
        as_buf_printf(&b, "%u", id);
        for (int k = 0; k < 5; k++) {
            as_buf_putc(&b, '\t');
            for (const char *c = noted[id][k] ? noted[id][k] : ""; *c; c++)
                as_buf_putc(&b, *c == '\t' || *c == '\n' ? ' ' : *c);
        }
        if (!b.oom) /* a torn or damaged line is recognised at recovery */
            as_buf_printf(&b, "\t%08x", (unsigned)as_rec_checksum(b.data + line, b.len - line));
        as_buf_putc(&b, '\n');
    }
    if (!b.oom && b.len > 0) {
        ssize_t w = write(targets_fd, b.data, b.len);
        (void)w;
    }
    targets_written = noted_n;
    as_buf_free(&b);
}

void as_pipe_note_target(uint32_t id, const char *action_name, const char *symbol,
                         const char *library, const char *display, const char *desc) {
    if (id >= MAX_NOTED)
        return;
    pthread_mutex_lock(&files_lock);
    noted[id][0] = action_name ? action_name : symbol;
    noted[id][1] = symbol;
    noted[id][2] = library;
    noted[id][3] = display;
    noted[id][4] = desc;
    if (id + 1 > noted_n)
        noted_n = id + 1;
    if (id < targets_written)
        targets_written = id; /* rewrite from here: a later line wins at recovery */
    targets_sync_locked();
    pthread_mutex_unlock(&files_lock);
}

/* Fills who this process image is (pid, start time, image, run id) when not yet done for
 * this pid: every ring's event ids derive from it. files_lock held. */
static void ident_init_locked(void) {
    if (ident.pid == (int32_t)getpid() && ident.image)
        return;
    memset(&ident, 0, sizeof ident);
    ident.pid = (int32_t)getpid();
    ident.start_time = as_proc_start_time(ident.pid);
    ident.image = (uint64_t)as_mono_ns() ^ ((uint64_t)(uintptr_t)&ident >> 4);
    if (!ident.image)
        ident.image = 1;
    const char *run = as_keptenv_get("AGENTSIGHT_RUN_ID");
    snprintf(ident.run_id, sizeof ident.run_id, "%s", run ? run : "");
    ring_serial = 0;
}

/* Gives ring r of slot i a new event id prefix. files_lock held. */
static void ring_name_locked(as_ring *r, int i) {
    ident_init_locked();
    r->info.id_prefix =
        as_ring_id_prefix(ident.pid, ident.start_time, ident.image, (uint32_t)i, ++ring_serial);
}

/* Decides once per process image whether rings are files: AGENTSIGHT_CRASH_SAFE=0 says
 * no; otherwise <spool_dir>/rings must be creatable (else one warning). Fills the
 * identity written into ring headers. files_lock held. */
static void files_decide_locked(void) {
    if (files_state != 0)
        return;
    files_state = -1;
    const char *cs = as_keptenv_get("AGENTSIGHT_CRASH_SAFE");
    if (cs && strcmp(cs, "0") == 0)
        return;
    /* Ring files are shipped later as our own actions: their directory must be ours
     * alone (owner, mode, no symlink), else memory only. */
    char why[160] = "no spool directory";
    if (!as_cfg.spool_dir[0] ||
        snprintf(rings_dir, sizeof rings_dir, "%s/rings", as_cfg.spool_dir) >=
            (int)sizeof rings_dir ||
        as_secure_dir(rings_dir, 1, why, sizeof why) != 0) {
        as_warn("cannot use the ring directory under '%s' (%s): actions are kept in memory "
                "only and are lost if the process dies",
                as_cfg.spool_dir, why);
        return;
    }
    ident_init_locked();
    ident.clock_raw0 = as_clock_raw();
    ident.clock_unix0 = as_clock_raw_to_unix_ns(ident.clock_raw0);
    uint64_t span = (uint64_t)1 << 32;
    ident.clock_ns_per_raw =
        (double)as_clock_raw_delta_ns(ident.clock_raw0, ident.clock_raw0 + span) / (double)span;
    snprintf(ident.conversation_id, sizeof ident.conversation_id, "%s",
             as_cfg.conversation_id[0] ? as_cfg.conversation_id : as_settings_conversation_id());
    uris_without_secrets(open_uris[0] ? open_uris : as_cfg.output, ident.sinks, sizeof ident.sinks);
    files_state = 1;
}

/* A ring for slot i: a file when crash-safe capture is on, else anonymous memory (also
 * when the file cannot be made). Returns the ring or NULL; s->file names the file. */
static as_ring *ring_new(slot *s, int i, size_t want) {
    pthread_mutex_lock(&files_lock);
    files_decide_locked();
    as_ring *r = NULL;
    s->file[0] = '\0';
    if (files_state == 1) {
        ident.slot = (uint32_t)i;
        ident.id_prefix =
            as_ring_id_prefix(ident.pid, ident.start_time, ident.image, (uint32_t)i, ++ring_serial);
        snprintf(s->file, sizeof s->file, "%d-%llu-%llx-%d.ring", (int)ident.pid,
                 (unsigned long long)ident.start_time, (unsigned long long)ident.image, i);
        char path[sizeof rings_dir + sizeof s->file + 2];
        snprintf(path, sizeof path, "%s/%s", rings_dir, s->file);
        r = as_ring_create_file(path, want, &ident);
        if (r)
            targets_sync_locked();
        else
            s->file[0] = '\0';
    }
    if (!r && (r = as_ring_create(want)) != NULL)
        ring_name_locked(r, i);
    pthread_mutex_unlock(&files_lock);
    return r;
}

/* Removes the files of rings that hold nothing undelivered, and the .targets file when
 * no ring file is left. The file of a thread that still runs is kept (it goes on
 * writing into it after a restart) unless all is true (the process exits). reg_lock
 * held, exporter stopped. This function can't fail (an unlink error is ignored). */
static void files_remove_drained(int all) {
    int left = 0;
    int hi = atomic_load(&slots_hi);
    for (int i = 0; i < hi; i++) {
        slot *s = &slots[i];
        if (!s->ring || !s->file[0])
            continue;
        int live = atomic_load_explicit(&s->state, memory_order_acquire) == SLOT_ACTIVE;
        if (as_ring_used(s->ring) != 0 || (live && !all)) {
            left++;
            continue;
        }
        char path[sizeof rings_dir + sizeof s->file + 2];
        snprintf(path, sizeof path, "%s/%s", rings_dir, s->file);
        unlink(path);
        s->file[0] = '\0';
    }
    pthread_mutex_lock(&files_lock);
    if (!left && targets_fd >= 0) {
        char path[sizeof rings_dir + 96];
        snprintf(path, sizeof path, "%s/%d-%llu-%llx.targets", rings_dir, (int)ident.pid,
                 (unsigned long long)ident.start_time, (unsigned long long)ident.image);
        unlink(path);
        close(targets_fd);
        targets_fd = -1;
        targets_written = 0;
    }
    pthread_mutex_unlock(&files_lock);
}

/* Gives the calling thread a ring (a free slot, reusing its mapping when the size
 * matches). Returns the ring, or NULL when the registry is full or mmap failed (nothing
 * changed). After a fork it also starts the child's pipeline. */
/* The starter thread of start_on_own_stack: nothing it calls is tracked. */
static void *starter_main(void *arg) {
    as_in_agentsight = 1;
    *(int *)arg = as_pipe_start();
    return NULL;
}

/* The stack of the starter thread while it runs ([lo, hi), 0 otherwise). The C library
 * runs code of its own in a new thread before starter_main can raise as_in_agentsight
 * (__ctype_init, ...): a wrapped function there must not start the pipeline again, or
 * each starter would start another, until thread creation fails. */
#define STARTER_STACK (8u << 20)
static _Atomic uintptr_t starter_lo, starter_hi;

/* Whether the calling thread runs on the starter's stack. */
static int on_starter_stack(void) {
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    uintptr_t lo = atomic_load(&starter_lo), hi = atomic_load(&starter_hi);
    return lo && sp >= lo && sp < hi;
}

/* Starts the pipeline on a thread of its own, with a stack of the default size, joined at
 * once: the first record of a process may come from a thread with a small stack
 * (PTHREAD_STACK_MIN) or from a signal handler on an alternate stack, where opening the
 * sinks (and loading libraries with dlopen) would overflow it. Returns as as_pipe_start. */
static int start_on_own_stack(void) {
    int rc = -1;
    pthread_t th;
    pthread_attr_t attr;
    size_t guard = 4096;
    /* a stack of our own (below it a guard page), so its calls are known as ours */
    uint8_t *stk = mmap(NULL, STARTER_STACK + guard, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    int own = stk != MAP_FAILED && pthread_attr_init(&attr) == 0;
    if (own && (mprotect(stk, guard, PROT_NONE) != 0 ||
                pthread_attr_setstack(&attr, stk + guard, STARTER_STACK) != 0)) {
        pthread_attr_destroy(&attr);
        own = 0;
    }
    if (!own && stk != MAP_FAILED) {
        munmap(stk, STARTER_STACK + guard);
        stk = MAP_FAILED;
    }
    if (own) {
        atomic_store(&starter_hi, (uintptr_t)stk + guard + STARTER_STACK);
        atomic_store(&starter_lo, (uintptr_t)stk + guard);
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&th, own ? &attr : NULL, starter_main, &rc);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e == 0)
        pthread_join(th, NULL);
    if (own) {
        atomic_store(&starter_lo, 0);
        atomic_store(&starter_hi, 0);
        pthread_attr_destroy(&attr);
        munmap(stk, STARTER_STACK + guard);
    }
    if (e != 0)
        return as_pipe_start(); /* no thread: here, as before */
    return rc;
}

static as_ring *thread_attach(void) {
    if (t_dead)
        return NULL;
    pthread_once(&once, once_init);
    int st = atomic_load(&pipe_state);
    if (st == PIPE_FAILED || (st == PIPE_ARMED && getpid() != armed_pid))
        return NULL; /* no sink, or a vfork child: nothing is kept (counted as dropped) */
    if (st == PIPE_FORKED || st == PIPE_ARMED) {
        int saved = as_in_agentsight;
        as_in_agentsight = 1;
        if (start_on_own_stack() != 0 && st == PIPE_ARMED) {
            if (atomic_compare_exchange_strong(&pipe_state, &st, PIPE_FAILED)) {
                /* Every later call is lost: an alert, shown even under `run -q`. */
                const char *uris = as_cfg.output[0] || as_cfg.output_explicit
                                       ? as_cfg.output
                                       : "file:agentsight-actions.jsonl";
                as_alert_error("no sink could be opened (output '%s'): tracking nothing", uris);
            }
            as_in_agentsight = saved;
            return NULL;
        }
        as_in_agentsight = saved;
    }
    as_ring *r = NULL;
    pthread_mutex_lock(&reg_lock);
    int hi = atomic_load(&slots_hi);
    int i = 0;
    while (i < hi && atomic_load(&slots[i].state) != SLOT_FREE)
        i++;
    if (i == MAX_SLOTS)
        goto out;
    size_t want = ring_bytes_for(i);
    slot *s = &slots[i];
    if (s->ring && s->ring->size != as_ring_create_size(want)) {
        as_ring_destroy(s->ring);
        s->ring = NULL;
    }
    if (s->ring && s->ring->is_file && !s->file[0]) {
        as_ring_destroy(s->ring); /* its file was removed at a shutdown: make a new one */
        s->ring = NULL;
    }
    if (!s->ring)
        s->ring = ring_new(s, i, want);
    if (!s->ring)
        goto out;
    r = s->ring;
    if (r->info.id_prefix == 0) { /* a ring kept across fork: ids of the child's own */
        pthread_mutex_lock(&files_lock);
        ring_name_locked(r, i);
        pthread_mutex_unlock(&files_lock);
    }
    as_ring_close_open(r); /* a thread that died inside a write left it claimed */
    atomic_store_explicit(&s->state, SLOT_ACTIVE, memory_order_release);
    if (i == hi)
        atomic_store(&slots_hi, hi + 1);
    pthread_setspecific(exit_key, s);
    as_pipe_tring = r;
out:
    pthread_mutex_unlock(&reg_lock);
    if (r)
        as_ring_prefault(r, PREFAULT_BYTES); /* outside the locks */
    return r;
}

/* Exporter: frees the slot of an exited thread whose ring is empty (reg_lock). */
static void retire(int i) {
    pthread_mutex_lock(&reg_lock);
    as_ring *r = slots[i].ring;
    dropped_retired += atomic_load(&r->dropped);
    dropped_sig_retired += atomic_load(&r->dropped_sig);
    summarized_retired += atomic_load(&r->summarized);
    atomic_store(&r->dropped, 0);
    atomic_store(&r->dropped_sig, 0);
    atomic_store(&r->summarized, 0);
    as_ring_give_back(r); /* kept for the next thread, its pages not */
    atomic_store(&slots[i].state, SLOT_FREE);
    pthread_mutex_unlock(&reg_lock);
}

/* ---- producer side ---------------------------------------------------------------------- */

static void wake_exporter(void) {
    pthread_cond_signal(&ex_cond);
}

/* Full ring: wait (policy WAIT, AS_PIPE_WAIT, exporter running) up to queue_wait_ms,
 * else drop. The wait itself uses only async-signal-safe calls (nanosleep, clock_gettime
 * and atomics: the exporter sees room_wanted and does not sleep), so a wait that happens
 * to run in a signal handler on the thread's own stack stays bounded and safe. Returns
 * the payload or NULL (counted unless AS_PIPE_FULL_UNCOUNTED). */
static void *reserve_slow(as_ring *r, int kind, size_t len, int flags) {
    int wait = (flags & AS_PIPE_WAIT) && as_cfg.queue_policy == AGENTSIGHT_QUEUE_WAIT &&
               !t_is_exporter && !t_waiting && as_ring_fits(r, len);
    /* Stopped by a shutdown (not at exit): start again rather than drop at once. */
    if (wait && atomic_load(&pipe_state) == PIPE_STOPPED && !atomic_load(&exiting))
        as_pipe_start();
    wait = wait && atomic_load(&pipe_state) == PIPE_RUNNING;
    if (wait) {
        t_waiting = 1;
        atomic_fetch_add(&room_wanted, 1);
        int64_t deadline = as_mono_ns() + (int64_t)as_cfg.queue_wait_ms * 1000000;
        long nap = 20000;
        void *p = NULL;
        do {
            struct timespec ts = {0, nap};
            nanosleep(&ts, NULL);
            if (nap < 1000000)
                nap *= 2;
            p = as_ring_reserve(r, (unsigned)kind, len);
        } while (!p && as_mono_ns() < deadline && atomic_load(&pipe_state) == PIPE_RUNNING);
        atomic_fetch_sub(&room_wanted, 1);
        t_waiting = 0;
        if (p)
            return p;
    }
    if (!(flags & AS_PIPE_FULL_UNCOUNTED) || !as_ring_fits(r, len))
        as_ring_count_drop(r);
    return NULL;
}

void *as_pipe_reserve_slow(int kind, size_t payload_len, int may_wait) {
    as_ring *r = as_pipe_tring;
    int flags = may_wait;
    if (r && as_ring_open(r)) {
        /* A signal handler interrupted this thread's own write into its ring: waiting
         * cannot help (the write resumes only after the handler). Dropped, counted. */
        as_ring_count_drop_sig(r);
        return NULL;
    }
    if (r)
        return reserve_slow(r, kind, payload_len, flags);
    if (on_starter_stack()) {
        as_in_agentsight = 1; /* our own thread: nothing it runs is tracked */
        return NULL;
    }
    r = thread_attach();
    if (!r) {
        /* Over the thread limit. A pipeline that failed to start (no sink could be
         * opened) said so in its error: "tracking nothing", not a thread limit. */
        if (atomic_load(&pipe_state) != PIPE_FAILED)
            atomic_fetch_add(&dropped_noring, 1);
        return NULL;
    }
    void *p = as_ring_reserve(r, (unsigned)kind, payload_len);
    return p ? p : reserve_slow(r, kind, payload_len, flags);
}

void as_pipe_count_drop(void) {
    atomic_fetch_add(&dropped_noring, 1);
}

void as_pipe_nudge_if_busy(void) {
    as_ring *r = as_pipe_tring;
    if (r && as_ring_used(r) > r->size / 2)
        wake_exporter();
}

void as_pipe_register(int kind, as_msg_decode_fn fn) {
    if (kind > 0 && kind < AS_MSG_KINDS)
        decoders[kind] = fn;
}

/* ---- exporter ----------------------------------------------------------------------------- */

/* Drops by cause summed over every ring. Exporter thread or reg_lock holder. */
static void drops_sum(as_pipe_drops *d) {
    d->queue_full = dropped_retired;
    d->signal = dropped_sig_retired;
    d->summarized = summarized_retired;
    d->threads = atomic_load(&dropped_noring);
    d->damaged = atomic_load(&damaged_msgs);
    int hi = atomic_load(&slots_hi);
    for (int i = 0; i < hi; i++) {
        /* The state first: a free slot's ring is being set by thread_attach. */
        if (atomic_load_explicit(&slots[i].state, memory_order_acquire) == SLOT_FREE)
            continue;
        as_ring *r = slots[i].ring;
        if (!r)
            continue;
        d->queue_full += atomic_load_explicit(&r->dropped, memory_order_relaxed);
        d->signal += atomic_load_explicit(&r->dropped_sig, memory_order_relaxed);
        d->summarized += atomic_load_explicit(&r->summarized, memory_order_relaxed);
    }
}

/* Messages truly lost, every cause. Exporter thread or reg_lock holder. */
static uint64_t dropped_sum(void) {
    as_pipe_drops d;
    drops_sum(&d);
    return d.queue_full + d.threads + d.signal + d.damaged;
}

static void deliver(void);

/* Decodes the summaries left in the header of the ring of slot i (an exited thread's, or
 * any ring at the final drain) into the batch, each with the id a recoverer of the ring's
 * file would give it (as_sum_event_id). The table is emptied only once the batch is
 * delivered (deliver). Exporter only. */
static void take_summaries(int i) {
    as_ring *r = slots[i].ring;
    if (!r || sums_batched[i] || __atomic_load_n(&r->sum_n, __ATOMIC_RELAXED) == 0)
        return;
    if (nbatch + AS_SUM_SLOTS > BATCH_MAX) { /* the whole table in one batch */
        deliver();
        if (retry_sinks)
            return; /* the batch is kept: the table waits for the next pass */
    }
    as_sum sums[AS_SUM_SLOTS];
    uint64_t head = as_ring_head(r);
    int n = as_ring_sum_copy(r, sums), added = 0;
    as_msg_decode_fn fn = decoders[AS_MSG_SUMMARY];
    for (int k = 0; k < n && fn; k++) {
        as_buf_reset(&scratch[nbatch]);
        memset(&batch[nbatch], 0, sizeof(batch[nbatch]));
        _Alignas(8) unsigned char rec[AS_SUM_REC_LEN]; /* sealed as a record is */
        as_sum_rec_fill(rec, &sums[k]);
        if (fn(rec, sizeof rec, &batch[nbatch], &scratch[nbatch]) != 0) {
            atomic_fetch_add(&bad_msgs, 1);
            continue;
        }
        as_sum_event_id(r->info.id_prefix, head, &sums[k], batch_ids[nbatch]);
        batch[nbatch].event_id = batch_ids[nbatch];
        nbatch++;
        added++;
    }
    if (added == 0) { /* nothing to deliver: emptied now (else the slot never retires) */
        as_ring_sum_take(r, sums);
        return;
    }
    sums_batched[i] = 1;
    nsums_batched++;
}

/* The batch is delivered: the summary tables it took are emptied. */
static void sums_delivered(void) {
    int hi = atomic_load(&slots_hi);
    for (int i = 0; i < hi && nsums_batched > 0; i++) {
        if (!sums_batched[i])
            continue;
        as_sum gone[AS_SUM_SLOTS];
        if (slots[i].ring)
            as_ring_sum_take(slots[i].ring, gone);
        sums_batched[i] = 0;
        nsums_batched--;
    }
    nsums_batched = 0;
}

/* Writes metadata text m with "agentsight_dropped": n merged in, into meta_buf. Returns
 * the merged text, or m unchanged when the buffer could not grow. */
static const char *merge_dropped(const char *m, uint64_t n) {
    as_buf_reset(&meta_buf);
    const char *p = m ? strchr(m, '{') : NULL;
    if (!p) {
        as_buf_printf(&meta_buf, "{\"agentsight_dropped\":%llu}", (unsigned long long)n);
    } else {
        const char *q = p + 1;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
            q++;
        as_buf_printf(&meta_buf, "{\"agentsight_dropped\":%llu%s", (unsigned long long)n,
                      *q == '}' ? "" : ",");
        as_buf_puts(&meta_buf, q);
    }
    if (meta_buf.oom)
        return m;
    return as_buf_cstr(&meta_buf);
}

/* Sends the batch to every sink (file sinks last) and stores, before, where the last file
 * sink stands into every ring the batch came from. Returns the sinks that could not take
 * it. */
static unsigned send_batch(void) {
    uint64_t d = dropped_sum();
    if (d > dropped_reported) {
        batch[0].metadata = merge_dropped(batch[0].metadata, d - dropped_reported);
        dropped_reported = d;
    }
    /* A recoverer of a ring whose process dies during the sends looks for lines already
     * in the file sink from there on. */
    unsigned long long mark = as_sinks_file_mark(sinks, nsinks);
    if (mark != ~0ull) {
        for (int k = 0; k < ntouched; k++)
            atomic_store_explicit(&slots[touched_list[k]].ring->sink_mark, mark,
                                  memory_order_relaxed);
        if (recov_ring)
            atomic_store_explicit(&recov_ring->sink_mark, mark, memory_order_relaxed);
        int hi = nsums_batched ? atomic_load(&slots_hi) : 0;
        for (int i = 0; i < hi; i++) /* their recoverer looks for the summaries there */
            if (sums_batched[i] && slots[i].ring)
                atomic_store_explicit(&slots[i].ring->sink_mark, mark, memory_order_relaxed);
    }
    return as_sinks_send(sinks, nsinks, batch, nbatch, ~0u);
}

/* Sends the batch to every sink and gives the consumed ring space back, only once every
 * sink made it durable (rule 1): a sink that cannot take it now (retry_sinks) keeps the
 * batch and its rings as they are, and the next call offers it to that sink again. */
static void deliver(void) {
    if (nbatch == 0) {
        as_sinks_poll(sinks, nsinks); /* HTTP sinks: requests in flight progress */
    } else {
        if (retry_sinks) {
            as_sinks_poll(sinks, nsinks);
            retry_sinks = as_sinks_send(sinks, nsinks, batch, nbatch, retry_sinks);
        } else {
            retry_sinks = send_batch();
        }
        if (retry_sinks)
            return;
        atomic_fetch_add(&delivered, nbatch);
        for (int k = 0; k < ntouched; k++) {
            int i = touched_list[k];
            atomic_fetch_add(&slots[i].ring->delivered, slot_batched[i]);
            slot_batched[i] = 0;
        }
        nbatch = 0;
        if (nsums_batched)
            sums_delivered();
    }
    for (int k = 0; k < ntouched; k++) {
        int i = touched_list[k];
        as_ring_release(slots[i].ring, cursor[i]);
        touched[i] = 0;
    }
    ntouched = 0;
}

/* The ring an exec in progress holds (as_pipe_exec_hold), and the ring the exporter is
 * draining. Both sides store theirs, then read the other's (sequentially consistent):
 * either the exporter sees the hold and leaves the ring alone, or the holder sees the
 * drain and waits for its end. */
static _Atomic(as_ring *) exec_held;
static _Atomic(as_ring *) draining;

static size_t drain_slot_body(int i);

/* Decodes the messages of slot i up to the head seen now into the batch, delivering
 * whenever it fills; nothing while an exec holds the ring. Returns the number of
 * messages taken. */
static size_t drain_slot(int i) {
    as_ring *r = slots[i].ring;
    atomic_store(&draining, r);
    size_t n = atomic_load(&exec_held) == r ? 0 : drain_slot_body(i);
    atomic_store(&draining, NULL);
    return n;
}

int as_pipe_exec_hold(uint64_t *head) {
    as_ring *r = as_pipe_tring;
    if (!r)
        r = thread_attach();
    if (!r || !r->is_file || as_ring_open(r) || atomic_load(&pipe_state) != PIPE_RUNNING)
        return -1;
    as_ring *none = NULL;
    if (!atomic_compare_exchange_strong(&exec_held, &none, r))
        return -1; /* another thread's exec holds its ring: this one is flushed instead */
    for (int i = 0; i < 2000 && atomic_load(&draining) == r; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&draining) == r) {
        atomic_store(&exec_held, NULL);
        return -1;
    }
    *head = atomic_load_explicit(&r->head, memory_order_relaxed);
    return 0;
}

void as_pipe_exec_release(uint64_t head, int back) {
    as_ring *r = as_pipe_tring;
    if (!r || atomic_load(&exec_held) != r)
        return;
    if (back && !as_ring_open(r)) {
        r->pending = head;
        atomic_store_explicit(&r->head, head, memory_order_release);
    }
    atomic_store(&exec_held, NULL);
}

static size_t drain_slot_body(int i) {
    as_ring *r = slots[i].ring;
    uint64_t head = as_ring_head(r);
    if (stop_hi > 0) /* final drain: never past the head seen at the stop */
        head = i < stop_hi && stop_head[i] < head ? stop_head[i] : (i < stop_hi ? head : 0);
    if (head < as_ring_tail(r))
        head = as_ring_tail(r);
    if (!touched[i])
        cursor[i] = as_ring_tail(r);
    size_t n = 0;
    while (cursor[i] < head) {
        unsigned kind;
        size_t len;
        const void *p = as_ring_read(r, &cursor[i], head, &kind, &len);
        if (!touched[i]) {
            touched[i] = 1;
            touched_list[ntouched++] = i;
        }
        if (!p)
            break;
        n++;
        as_buf_reset(&scratch[nbatch]);
        memset(&batch[nbatch], 0, sizeof(batch[nbatch]));
        as_msg_decode_fn fn = kind < AS_MSG_KINDS ? decoders[kind] : NULL;
        int rc = fn ? fn(p, len, &batch[nbatch], &scratch[nbatch]) : -1;
        if (rc != 0) {
            /* A damaged record is a lost call (a drop by its own cause); the records
             * after it are read on (its header was intact: the ring walked past it). */
            atomic_fetch_add(rc == AS_REC_DAMAGED ? &damaged_msgs : &bad_msgs, 1);
            continue;
        }
        /* The record's position in its ring names it (a recoverer derives the same). */
        as_ring_event_id(r->info.id_prefix, cursor[i] - as_ring_rec_size(len), batch_ids[nbatch]);
        batch[nbatch].event_id = batch_ids[nbatch];
        slot_batched[i]++;
        if (++nbatch == BATCH_MAX) {
            deliver();
            if (retry_sinks)
                break; /* the batch is full and kept: nothing more now */
        }
    }
    return n;
}

/* One pass over every ring; retires the slots of exited threads once empty. Returns the
 * number of messages taken. */
static size_t drain_all(void) {
    size_t n = 0;
    int hi = atomic_load(&slots_hi);
    if (retry_sinks) { /* a kept batch first; nothing new is taken until it is out */
        deliver();
        if (retry_sinks)
            return 0;
    }
    for (int i = 0; i < hi; i++) {
        int st = atomic_load_explicit(&slots[i].state, memory_order_acquire);
        if (st == SLOT_FREE)
            continue;
        n += drain_slot(i);
        if (retry_sinks)
            return n;
    }
    for (int i = 0; i < hi; i++) {
        int st = atomic_load_explicit(&slots[i].state, memory_order_acquire);
        if (st == SLOT_EXITED && slots[i].ring) {
            take_summaries(i);
            if (retry_sinks)
                return n;
        }
    }
    deliver();
    if (retry_sinks)
        return n;
    for (int i = 0; i < hi; i++) {
        int st = atomic_load_explicit(&slots[i].state, memory_order_acquire);
        /* A thread that exited after the summaries were taken above keeps its slot until
         * the next pass takes them. */
        if (st == SLOT_EXITED && as_ring_used(slots[i].ring) == 0 &&
            __atomic_load_n(&slots[i].ring->sum_n, __ATOMIC_ACQUIRE) == 0)
            retire(i);
    }
    return n;
}

static int pending_any(void) {
    int hi = atomic_load(&slots_hi);
    for (int i = 0; i < hi; i++) {
        if (atomic_load_explicit(&slots[i].state, memory_order_acquire) != SLOT_FREE &&
            as_ring_used(slots[i].ring) != 0)
            return 1;
    }
    return 0;
}

/* Flushes every sink within timeout_ms in all: one deadline shared by the sinks (each
 * gets what the ones before left), so several slow sinks never add up past it. What a
 * sink has not delivered by then is in its spool already (write-ahead). */
static void flush_sinks(int timeout_ms) {
    int64_t deadline = as_mono_ns() + (int64_t)timeout_ms * 1000000;
    for (int i = 0; i < nsinks; i++) {
        int64_t left = (deadline - as_mono_ns()) / 1000000;
        if (sinks[i].ops->flush)
            sinks[i].ops->flush(&sinks[i], left > 0 ? (int)left : 0);
    }
}

/* 1 while some ring's tail is short of its head at the stop. Exporter only. */
static int pending_at_stop(void) {
    for (int i = 0; i < stop_hi; i++) {
        if (atomic_load_explicit(&slots[i].state, memory_order_acquire) != SLOT_FREE &&
            as_ring_tail(slots[i].ring) < stop_head[i])
            return 1;
    }
    return 0;
}

/* Final drain at stop: what was committed when the stop began (each ring's head then),
 * until done or the deadline; a thread that goes on tracking does not hold it up. */
static void final_drain(void) {
    int hi = atomic_load(&slots_hi);
    for (int i = 0; i < hi; i++) {
        int st = atomic_load_explicit(&slots[i].state, memory_order_acquire);
        stop_head[i] = st != SLOT_FREE && slots[i].ring ? as_ring_head(slots[i].ring) : 0;
    }
    stop_hi = hi > 0 ? hi : 0;
    for (int rounds = 0; rounds < 100000 && hi > 0; rounds++) {
        drain_all();
        if (!pending_at_stop() || as_mono_ns() >= stop_deadline_ns)
            break;
        if (retry_sinks) { /* a file that cannot be written: try again a little later */
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
    }
    /* The summaries still in the threads' tables: nothing makes room for them any more.
     * A thread that goes on calling while the process exits may add to its table as it is
     * read: such a call may be missed, like any call made after the final drain. */
    for (int i = 0; i < hi; i++) {
        if (atomic_load_explicit(&slots[i].state, memory_order_acquire) != SLOT_FREE)
            take_summaries(i);
    }
    deliver();
    stop_hi = 0;
    int64_t left = (stop_deadline_ns - as_mono_ns()) / 1000000;
    flush_sinks(left > 0 ? (int)left : 0);
}

/* Copies the strings of a (borrowed for one call) into b, so the batch may keep it. */
static void copy_action(const as_action *a, as_action *out, as_buf *b) {
    *out = *a;
    const char *src[6] = {a->action_name, a->tools_used,      a->response,
                          a->error_msg,   a->conversation_id, a->metadata};
    size_t off[6];
    for (int k = 0; k < 6; k++) {
        off[k] = b->len;
        if (src[k]) {
            as_buf_puts(b, src[k]);
            as_buf_putc(b, '\0');
        }
    }
    const char **dst[6] = {&out->action_name, &out->tools_used,      &out->response,
                           &out->error_msg,   &out->conversation_id, &out->metadata};
    for (int k = 0; k < 6; k++)
        *dst[k] = src[k] && !b->oom ? b->data + off[k] : NULL;
}

/* as_recover_fn: a dead process's action joins the batch. Exporter thread only. */
static int recovered_action(const as_action *a, const as_recover_origin *o, void *ctx) {
    (void)ctx;
    /* Only what was meant for exactly our sinks: the rest stays for a process writing
     * to those sinks, or for `agentsight send`, which ships each to its own sinks. */
    if (strcmp(o->sinks ? o->sinks : "", ident.sinks) != 0)
        return 1;
    /* Another run's leftovers are never ours to report (as_recover_opts.run_id). */
    if (nbatch == BATCH_MAX)
        return 1; /* the recoverer flushes before: never reached */
    as_buf_reset(&scratch[nbatch]);
    copy_action(a, &batch[nbatch], &scratch[nbatch]);
    if (scratch[nbatch].oom)
        return 1; /* left in its file for a later start */
    snprintf(batch_ids[nbatch], sizeof batch_ids[nbatch], "%s", a->event_id ? a->event_id : "");
    batch[nbatch].event_id = a->event_id ? batch_ids[nbatch] : NULL;
    recov_ring = o->ring;
    nbatch++;
    return 0;
}

/* as_recover_flush_fn: the recovered batch goes to the sinks (the dead ring marked). */
static int recovered_flush(const as_recover_origin *o, void *ctx) {
    (void)ctx;
    recov_ring = o->ring;
    deliver();
    recov_ring = NULL;
    if (!retry_sinks)
        return 0;
    /* A sink cannot take them now: they stay in the dead ring (its tail is not moved) for
     * a later recovery; the batch holds nothing else (recovery runs before draining). */
    retry_sinks = 0;
    nbatch = 0;
    if (nsums_batched) { /* summary tables in that batch stay full: taken again later */
        memset(sums_batched, 0, sizeof sums_batched);
        nsums_batched = 0;
    }
    return -1;
}

/* Ships what dead processes left (crash-safe capture on, not in test-poll mode). */
static void recover_dead(void) {
    pthread_mutex_lock(&files_lock);
    files_decide_locked();
    int on = files_state == 1;
    pthread_mutex_unlock(&files_lock);
    if (!on || poll_ms_test > 0)
        return;
    /* Under `agentsight run` the run itself recovers its tree when the program ends (and
     * counts what each process delivered): a sibling taking the file would hide that. */
    if (ident.run_id[0])
        return;
    pthread_mutex_lock(&files_lock);
    as_recover_opts opts = {.fn = recovered_action,
                            .flush = recovered_flush,
                            .run_id = ident.run_id,
                            .self_image = ident.image};
    pthread_mutex_unlock(&files_lock);
    long n = as_pipe_recover_opts(as_cfg.spool_dir, &opts);
    recov_ring = NULL;
    deliver();
    if (n > 0)
        as_info("delivered %ld actions left by processes that died", n);
}

/* Sleeps on ex_cond up to ms unless a flush or stop is pending. */
static void exporter_wait(int ms) {
    if (atomic_load(&room_wanted) && poll_ms_test <= 0)
        return; /* a producer waits for room (queue = wait); tests may hold us off */
    pthread_mutex_lock(&ex_lock);
    if (flush_req == flush_done && !atomic_load(&ex_stop)) {
        struct timespec ts = mono_ts(as_mono_ns() + (int64_t)ms * 1000000);
        pthread_cond_timedwait(&ex_cond, &ex_lock, &ts);
    }
    pthread_mutex_unlock(&ex_lock);
}

/* 1 when some ring is at least a quarter full (the exporter must not sleep). */
static int ring_filling(void) {
    int hi = atomic_load(&slots_hi);
    for (int i = 0; i < hi; i++) {
        if (atomic_load_explicit(&slots[i].state, memory_order_acquire) == SLOT_FREE)
            continue;
        as_ring *r = slots[i].ring;
        if (r && as_ring_used(r) >= r->size / 4)
            return 1;
    }
    return 0;
}

static void *exporter_main(void *arg) {
    (void)arg;
    as_in_agentsight = 1;
    t_is_exporter = 1;
    recover_dead();
    int idle_ms = BUSY_MS;
    for (;;) {
        pthread_mutex_lock(&ex_lock);
        uint64_t req = flush_req;
        int stop = atomic_load(&ex_stop);
        pthread_mutex_unlock(&ex_lock);
        if (stop)
            break;
        if (req != flush_done) {
            /* One pass drains every ring up to a head read after the request, so it
             * covers everything committed before as_pipe_flush() was called. */
            drain_all();
            flush_sinks(as_cfg.flush_timeout_ms > 0 ? as_cfg.flush_timeout_ms : 2000);
            pthread_mutex_lock(&ex_lock);
            flush_done = req;
            pthread_cond_broadcast(&done_cond);
            pthread_mutex_unlock(&ex_lock);
            continue;
        }
        if (poll_ms_test > 0) {
            exporter_wait(poll_ms_test);
            drain_all();
            continue;
        }
        if (drain_all() > 0) {
            /* Traffic: come back after BUSY_MS (the producers fill a chunk meanwhile)
             * unless a ring is already filling up. */
            idle_ms = BUSY_MS;
            if (!ring_filling())
                exporter_wait(BUSY_MS);
            continue;
        }
        exporter_wait(idle_ms);
        if (idle_ms < IDLE_MAX_MS)
            idle_ms *= 2;
    }
    final_drain();
    pthread_mutex_lock(&ex_lock);
    flush_done = flush_req;
    pthread_cond_broadcast(&done_cond);
    ex_finished = 1;
    int abandoned = ex_abandoned;
    pthread_mutex_unlock(&ex_lock);
    if (!abandoned)
        return NULL;
    /* Shutdown gave up on us: the sinks are ours to close, then a new exporter may
     * start (start_locked waits for ex_abandoned to clear). */
    for (int i = 0; i < nsinks; i++)
        sinks[i].ops->close(&sinks[i]);
    nsinks = 0;
    pthread_mutex_lock(&ex_lock);
    ex_abandoned = 0;
    pthread_mutex_unlock(&ex_lock);
    return NULL;
}

/* ---- start, flush, shutdown ---------------------------------------------------------- */

/* Records the sinks' URIs (file sinks store their absolute path) for a forked child. */
static void save_uris(void) {
    size_t off = 0;
    open_uris[0] = '\0';
    for (int i = 0; i < nsinks; i++) {
        int n =
            snprintf(open_uris + off, sizeof(open_uris) - off, "%s%s", i ? "," : "", sinks[i].uri);
        if (n < 0 || (size_t)n >= sizeof(open_uris) - off)
            break;
        off += (size_t)n;
    }
    open_uris_set = open_uris[0] != '\0';
}

/* Opens the sinks and starts the exporter. Returns 0, or -1 when no sink opened or the
 * thread could not start (then the pipeline stays stopped and nothing is left open).
 * Caller holds start_lock. */
static int start_locked(void) {
    pthread_mutex_lock(&ex_lock);
    int busy = ex_abandoned;
    pthread_mutex_unlock(&ex_lock);
    if (busy) {
        /* The previous exporter still owns the sinks and the batch: a second one would
         * share them. Refuse (once logged) until it has returned. */
        static _Atomic int told;
        if (!atomic_exchange(&told, 1))
            as_alert_warn("the previous exporter has not stopped yet: not starting again until it "
                          "has");
        return -1;
    }
    int forked = atomic_load(&pipe_state) == PIPE_FORKED;
    const char *uris = forked && open_uris[0] ? open_uris : as_cfg.output;
    if (!uris[0] && !as_cfg.output_explicit)
        uris = "file:agentsight-actions.jsonl"; /* settings never loaded (as_cfg zeroed) */
    static int bufs_ready;
    if (!bufs_ready) {
        for (int i = 0; i < BATCH_MAX; i++)
            as_buf_init(&scratch[i]);
        as_buf_init(&meta_buf);
        bufs_ready = 1;
    }
    nsinks = as_sinks_open(uris, sinks, MAX_SINKS);
    if (nsinks <= 0) {
        nsinks = 0;
        return -1;
    }
    save_uris();
    as_clock_init();
    const char *poll = as_keptenv_get("AGENTSIGHT_TEST_POLL_MS");
    poll_ms_test = poll && atoi(poll) > 0 ? atoi(poll) : 0;
    atomic_store(&ex_stop, 0);
    ex_finished = 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&ex_thread, NULL, exporter_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        as_alert_error("cannot start the exporter thread: %s", strerror(rc));
        for (int i = 0; i < nsinks; i++)
            sinks[i].ops->close(&sinks[i]);
        nsinks = 0;
        return -1;
    }
    atomic_store(&pipe_state, PIPE_RUNNING);
    return 0;
}

int as_pipe_start(void) {
    pthread_once(&once, once_init);
    int saved = as_in_agentsight;
    as_in_agentsight = 1;
    pthread_mutex_lock(&start_lock);
    int rc = atomic_load(&pipe_state) == PIPE_RUNNING ? 0 : start_locked();
    pthread_mutex_unlock(&start_lock);
    as_in_agentsight = saved;
    return rc;
}

int as_pipe_arm(void) {
    const char *uris = as_cfg.output;
    if (!uris[0] && !as_cfg.output_explicit)
        uris = "file:agentsight-actions.jsonl"; /* as start_locked */
    char msg[300];
    if (as_sinks_check(uris, msg, sizeof msg) != 0) {
        as_error("%s", msg);
        return -1;
    }
    pthread_once(&once, once_init);
    armed_pid = getpid();
    int expect = PIPE_STOPPED;
    atomic_compare_exchange_strong(&pipe_state, &expect, PIPE_ARMED);
    /* What a dead process left is shipped by the next start (recover.c), which is this
     * process's first tracked call, `agentsight send` or `agentsight run`: a process that
     * tracks nothing never starts a thread, whose file opens could take a descriptor the
     * program has just closed (a shell between close(1) and dup2(2, 1)). */
    return 0;
}

int as_pipe_running(void) {
    return atomic_load(&pipe_state) == PIPE_RUNNING;
}

int as_pipe_flush(int timeout_ms) {
    if (timeout_ms < 0)
        timeout_ms = as_cfg.flush_timeout_ms > 0 ? as_cfg.flush_timeout_ms : 2000;
    if (atomic_load(&pipe_state) != PIPE_RUNNING)
        return pending_any() ? -1 : 0;
    int saved = as_in_agentsight;
    as_in_agentsight = 1;
    struct timespec dl = mono_ts(as_mono_ns() + (int64_t)timeout_ms * 1000000);
    int rc = 0;
    pthread_mutex_lock(&ex_lock);
    uint64_t my = ++flush_req;
    pthread_cond_signal(&ex_cond);
    while (flush_done < my && rc == 0) {
        if (pthread_cond_timedwait(&done_cond, &ex_lock, &dl) == ETIMEDOUT)
            rc = flush_done < my ? -1 : 0;
    }
    pthread_mutex_unlock(&ex_lock);
    as_in_agentsight = saved;
    return rc;
}

/* Appends the stats line to AGENTSIGHT_STATS_FILE when set: the actions and drops since
 * the previous line of this process, so that a reader may sum all lines. */
void as_pipe_write_stats(void) {
    const char *path = as_keptenv_get("AGENTSIGHT_STATS_FILE");
    if (!path || !path[0])
        return;
    static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&stats_lock);
    as_pipe_drops dc;
    as_pipe_drop_counts(&dc);
    uint64_t act = atomic_load(&delivered),
             drop = dc.queue_full + dc.threads + dc.signal + dc.damaged;
    uint64_t d_act = act >= stats_actions ? act - stats_actions : act;
    uint64_t d_drop = drop >= stats_dropped ? drop - stats_dropped : drop;
    stats_actions = act;
    stats_dropped = drop;
    pthread_mutex_lock(&reg_lock); /* what a recoverer of our rings must not count again */
    int hi = atomic_load(&slots_hi);
    for (int i = 0; i < hi; i++) {
        if (slots[i].ring)
            atomic_store(&slots[i].ring->reported, atomic_load(&slots[i].ring->delivered));
    }
    pthread_mutex_unlock(&reg_lock);
    uint64_t sf = atomic_load(&sink_failed);
#define DIFF(a, b) ((a) >= (b) ? (a) - (b) : (a))
    as_pipe_drops dd = {DIFF(dc.queue_full, stats_prev.queue_full),
                        DIFF(dc.threads, stats_prev.threads), DIFF(dc.signal, stats_prev.signal),
                        DIFF(dc.summarized, stats_prev.summarized),
                        DIFF(dc.damaged, stats_prev.damaged)};
    uint64_t d_sf = DIFF(sf, stats_sink_failed);
#undef DIFF
    stats_prev = dc;
    stats_sink_failed = sf;
    pthread_mutex_unlock(&stats_lock);
    as_buf b;
    as_buf_init(&b);
    as_buf_printf(&b, "{\"pid\":%ld,\"actions\":%llu,\"dropped\":%llu,\"hooked\":%llu,\"output\":",
                  (long)getpid(), (unsigned long long)d_act, (unsigned long long)d_drop,
                  (unsigned long long)as_stat_hooked);
    char shown[sizeof open_uris];
    as_redact_uris(open_uris_set ? open_uris : as_cfg.output, shown, sizeof shown);
    as_json_cstr(&b, shown);
    /* The drops by cause, since the previous line as the other counts. */
    as_buf_printf(&b,
                  ",\"queue_full\":%llu,\"threads\":%llu,\"signal\":%llu,\"summarized\":%llu,"
                  "\"sink_failed\":%llu,\"damaged\":%llu",
                  (unsigned long long)dd.queue_full, (unsigned long long)dd.threads,
                  (unsigned long long)dd.signal, (unsigned long long)dd.summarized,
                  (unsigned long long)d_sf, (unsigned long long)dd.damaged);
    as_buf_puts(&b, "}\n");
    /* 0600: the file names sinks (already without secrets) and counts of this user's calls */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0 && !b.oom) {
        ssize_t w = write(fd, b.data, b.len);
        (void)w;
    }
    if (fd >= 0)
        close(fd);
    as_buf_free(&b);
}

/* Prints the drops since the previous report, by cause (start_lock held). */
static void report_dropped(void) {
    static as_pipe_drops prev;
    as_pipe_drops dc;
    as_pipe_drop_counts(&dc);
    uint64_t total = dc.queue_full + dc.threads + dc.signal + dc.damaged;
    uint64_t d = total >= drops_printed ? total - drops_printed : total;
    drops_printed = total;
    if (total < (uint64_t)(prev.queue_full + prev.threads + prev.signal + prev.damaged))
        memset(&prev, 0, sizeof prev); /* counters restarted (a fork child) */
    uint64_t q = dc.queue_full - prev.queue_full, t = dc.threads - prev.threads,
             sg = dc.signal - prev.signal, dm = dc.damaged - prev.damaged;
    prev = dc;
    /* Under `agentsight run` the stats line carries the counts and `run` reports the
     * losses of the whole tree once (also under -q), not one line per process. */
    if (d == 0 || as_keptenv_get("AGENTSIGHT_STATS_FILE"))
        return;
    if (t == 0 && sg == 0 && dm == 0)
        as_alert(AS_LOG_ALWAYS, "%llu actions dropped (queue full)", (unsigned long long)d);
    else
        as_alert(AS_LOG_ALWAYS,
                 "%llu actions dropped (%llu queue full, %llu over the %d-thread limit, %llu in a "
                 "signal handler, %llu damaged records)",
                 (unsigned long long)d, (unsigned long long)q, (unsigned long long)t, MAX_SLOTS,
                 (unsigned long long)sg, (unsigned long long)dm);
}

/* The interposer's report of calls still in flight on the thread that shuts down (a
 * wrapped function that called exit(): the exit handlers and destructors run inside it):
 * thunk.c, absent from libagentsight.so, hence weak. */
extern int as_hook_report_live(void) __attribute__((weak, visibility("hidden")));

/* Stops the exporter (bounded by the flush timeout). exit_time: the process is exiting,
 * so the ring files of live threads are removed too (nothing restarts afterwards). */
static void shutdown_impl(int exit_time) {
    int st = atomic_load(&pipe_state);
    /* Calls in flight, or left by longjmp, are reported now; in a process that recorded
     * nothing else yet, their records start the pipeline. */
    if (as_hook_report_live && (st == PIPE_RUNNING || (st == PIPE_ARMED && armed_pid == getpid())))
        as_hook_report_live();
    if (atomic_load(&pipe_state) >= PIPE_ARMED) { /* never started: nothing to stop */
        if (exit_time)
            as_pipe_write_stats(); /* what it hooked still counts */
        return;
    }
    int saved = as_in_agentsight;
    as_in_agentsight = 1;
    int timeout_ms = as_cfg.flush_timeout_ms > 0 ? as_cfg.flush_timeout_ms : 2000;
    int64_t deadline = as_mono_ns() + (int64_t)timeout_ms * 1000000;
    /* Timed: exit() from one thread may race with a start in another; never hang. */
    struct timespec lock_dl;
    clock_gettime(CLOCK_REALTIME, &lock_dl);
    lock_dl.tv_sec += timeout_ms / 1000 + 1;
    if (pthread_mutex_timedlock(&start_lock, &lock_dl) != 0)
        goto out;
    if (atomic_load(&pipe_state) != PIPE_RUNNING) {
        pthread_mutex_lock(&ex_lock);
        int busy = ex_abandoned;
        pthread_mutex_unlock(&ex_lock);
        if (exit_time && !busy && atomic_load(&pipe_state) == PIPE_STOPPED) {
            pthread_mutex_lock(&reg_lock);
            files_remove_drained(1);
            pthread_mutex_unlock(&reg_lock);
        }
        pthread_mutex_unlock(&start_lock);
        goto out;
    }
    pthread_mutex_lock(&ex_lock);
    stop_deadline_ns = deadline;
    atomic_store(&ex_stop, 1);
    pthread_cond_signal(&ex_cond);
    pthread_mutex_unlock(&ex_lock);
    /* pthread_timedjoin_np (CLOCK_REALTIME) rather than clockjoin: sanitizers know it. */
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    int64_t rt_ns = (int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec + (deadline - as_mono_ns()) +
                    200000000; /* joining gets a small margin */
    struct timespec dl = mono_ts(rt_ns);
    int joined = pthread_timedjoin_np(ex_thread, NULL, &dl) == 0;
    if (!joined) {
        /* Left its loop just now: join it. Else it is abandoned and owns the sinks. */
        pthread_mutex_lock(&ex_lock);
        if (!ex_finished)
            ex_abandoned = 1;
        joined = !ex_abandoned;
        pthread_mutex_unlock(&ex_lock);
        if (joined)
            pthread_join(ex_thread, NULL);
    }
    if (joined) {
        for (int i = 0; i < nsinks; i++)
            atomic_fetch_add(&sink_failed, sinks[i].failed);
        for (int i = 0; i < nsinks; i++)
            sinks[i].ops->close(&sinks[i]);
        nsinks = 0;
        pthread_mutex_lock(&reg_lock);
        files_remove_drained(exit_time);
        pthread_mutex_unlock(&reg_lock);
    } else {
        as_alert_warn("exporter did not stop within %d ms; pending actions abandoned", timeout_ms);
        pthread_detach(ex_thread);
        /* The abandoned exporter may be writing a file: the exit waits for that write. */
        for (int i = 0; exit_time && i < nsinks; i++)
            if (sinks[i].ops->hold)
                sinks[i].ops->hold(&sinks[i], 1000);
    }
    atomic_store(&pipe_state, PIPE_STOPPED);
    report_dropped();
    as_pipe_write_stats();
    pthread_mutex_unlock(&start_lock);
out:
    as_in_agentsight = saved;
}

void as_pipe_shutdown(void) {
    shutdown_impl(0);
}

void as_pipe_drop_counts(as_pipe_drops *out) {
    pthread_mutex_lock(&reg_lock);
    drops_sum(out);
    pthread_mutex_unlock(&reg_lock);
}

uint64_t as_pipe_dropped(void) {
    pthread_mutex_lock(&reg_lock);
    uint64_t n = dropped_sum();
    pthread_mutex_unlock(&reg_lock);
    return n;
}

uint64_t as_pipe_delivered(void) {
    return atomic_load(&delivered);
}

/* ---- exit and fork -------------------------------------------------------------------- */

static void at_exit(void) {
    static atomic_int done;
    if (atomic_exchange(&done, 1))
        return; /* registered twice (as_pipe_exit_before_tls): the first run did it */
    atomic_store(&exiting, 1);
    shutdown_impl(1);
}

static _Atomic int final_flush; /* as_pipe_set_final_flush */

int as_pipe_stopping(void) {
    return atomic_load(&ex_stop) || atomic_load(&final_flush);
}

void as_pipe_set_final_flush(int on) {
    atomic_store(&final_flush, on);
}

void as_pipe_exit_before_tls(void) {
    static atomic_int once_inited;
    if (atomic_exchange(&once_inited, 1) == 0) {
        /* Only where the pipeline registered its flush (the interposer, the API), never
         * in the CLI, whose HTTP sinks are not the pipeline's. */
        if (atomic_load(&pipe_state) == PIPE_RUNNING || atomic_load(&pipe_state) == PIPE_ARMED)
            atexit(at_exit);
        else
            atomic_store(&once_inited, 0);
    }
}

__attribute__((destructor)) static void at_unload(void) {
    if (atomic_load(&pipe_state) == PIPE_RUNNING)
        shutdown_impl(1);
}

static void fork_prepare(void) {
    pthread_mutex_lock(&start_lock);
    pthread_mutex_lock(&reg_lock);
    pthread_mutex_lock(&files_lock);
    pthread_mutex_lock(&ex_lock);
}

static void fork_parent(void) {
    pthread_mutex_unlock(&ex_lock);
    pthread_mutex_unlock(&files_lock);
    pthread_mutex_unlock(&reg_lock);
    pthread_mutex_unlock(&start_lock);
}

/* The child has only the forking thread: the parent's exporter and sinks are not its
 * own (sinks are abandoned, not closed: closing could touch the parent's connections),
 * every ring is emptied without sending and freed for reuse, counters restart, and the
 * first message of the child starts a new exporter (thread_attach). */
static void fork_child(void) {
    pthread_mutex_init(&ex_lock, NULL);
    pthread_mutex_init(&files_lock, NULL);
    pthread_mutex_init(&reg_lock, NULL);
    pthread_mutex_init(&start_lock, NULL);
    init_conds();
    int hi = atomic_load(&slots_hi);
    for (int i = 0; i < hi; i++) {
        as_ring *r = slots[i].ring;
        if (r && r->is_file) {
            /* The parent's file: never write into it. The child makes its own. */
            as_ring_destroy(r);
            slots[i].ring = NULL;
            slots[i].file[0] = '\0';
        } else if (r) {
            as_ring_reset(r);
            r->info.id_prefix = 0; /* named again for the child (thread_attach) */
            atomic_store(&r->delivered, 0);
            atomic_store(&r->reported, 0);
        }
        atomic_store(&slots[i].state, SLOT_FREE);
        cursor[i] = 0;
        touched[i] = 0;
        slot_batched[i] = 0;
        sums_batched[i] = 0;
    }
    nsums_batched = 0;
    ntouched = 0;
    nbatch = 0;
    retry_sinks = 0;
    as_pipe_tring = NULL;
    if (targets_fd >= 0)
        close(targets_fd);
    targets_fd = -1;
    targets_written = 0;
    files_state = 0; /* a new pid and start time: decided again at the first ring */
    stats_actions = stats_dropped = 0;
    memset(&stats_prev, 0, sizeof stats_prev);
    stats_sink_failed = 0;
    dropped_retired = 0;
    dropped_sig_retired = summarized_retired = 0;
    atomic_store(&sink_failed, 0);
    atomic_store(&room_wanted, 0);
    dropped_reported = 0;
    drops_printed = 0;
    ex_abandoned = ex_finished = 0;
    atomic_store(&dropped_noring, 0);
    atomic_store(&delivered, 0);
    atomic_store(&bad_msgs, 0);
    atomic_store(&damaged_msgs, 0);
    flush_req = flush_done = 0;
    nsinks = 0;
    atomic_store(&ex_stop, 0);
    if (atomic_load(&pipe_state) == PIPE_RUNNING)
        atomic_store(&pipe_state, PIPE_FORKED);
    armed_pid = getpid();
}
