/* thunk.c - the C half of the hot path: what the x86-64 thunk calls at a wrapped
 * function's entry and at its return when its own common paths (an untyped call or a typed
 * one with integer-register parameters, a warm thread, room in the ring) do not apply. Keeps the
 * per-thread shadow stack of calls in flight (the real return addresses), takes the timestamps and
 * writes one AS_MSG_CALL record per call; the thunk's common paths do the same on as_hook_ts
 * directly.
 *
 * Relies on thunk.S for: as_thunk_stubs (stub i loads i into r11d), as_thunk_exit (the
 * swapped-in return address), their full-preservation twins as_thunk_full_stubs (stub i
 * pushes i) and as_thunk_full_exit, which call as_hook_enter_full and as_hook_exit and read
 * as_thunk_vec_mode, the frame layouts struct as_regs / as_retregs (offsets
 * checked below), rbp = the shadow frame while the original runs (frame-pointer record:
 * caller_rbp then ret, checked below; the call site's CFI reads them) and
 * as_thunk_personality named by that CFI. No malloc, lock or syscall here except the
 * first record of a thread (its ring), its typed-capture arena, and one gettid per
 * thread; typed capture of an unknown pointer costs one system call (capture.c). */
#include <cpuid.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/crc32c.h"
#include "core/log.h"
#include "core/pipeline.h"
#include "core/settings.h"
#include "hook/callrec.h"
#include "hook/capture.h"
#include "hook/config.h"
#include "hook/target.h"
#include "hook/thunk.h"
#include "core/bigbss.h"

/* The offsets hard-coded in thunk.S. */
_Static_assert(offsetof(as_regs, gpr) == 0, "R_RDI");
_Static_assert(offsetof(as_regs, rax) == 48, "R_RAX");
_Static_assert(offsetof(as_regs, r10) == 56, "R_R10");
_Static_assert(offsetof(as_regs, xmm) == 64, "R_XMM0");
_Static_assert(sizeof(as_regs) == 192, "R_SIZE");
_Static_assert(offsetof(as_retregs, rax) == 0, "X_RAX");
_Static_assert(offsetof(as_retregs, rdx) == 8, "X_RDX");
_Static_assert(offsetof(as_retregs, xmm) == 16, "X_XMM0");
_Static_assert(sizeof(as_retregs) == 48, "X_SIZE");
_Static_assert(AS_MAX_TARGETS == 4096, "AS_STUBS in thunk.S");
_Static_assert(sizeof(as_target) == 80, "T_SIZE in thunk.S (id * 5 << 4)");
_Static_assert(offsetof(as_target, captures) == 76, "T_CAPTURES in thunk.S");
_Static_assert(AS_CAPTURES_ASM == 2, "T_CAPTURES_ASM in thunk.S");
_Static_assert(offsetof(as_cap_tstate, arena) == 0 && offsetof(as_cap_tstate, top) == 8 &&
                   sizeof(((as_cap_tstate *)0)->top) == 4 &&
                   offsetof(as_cap_tstate, stack_lo) == 16 &&
                   offsetof(as_cap_tstate, stack_hi) == 24 && offsetof(as_cap_tstate, warm) == 40 &&
                   sizeof(((as_cap_tstate *)0)->warm) == 4,
               "CT_* in thunk.S");
_Static_assert(offsetof(as_target, proto) == 40, "T_PROTO in thunk.S");
_Static_assert(offsetof(as_cap_plan, proto) == 0 && offsetof(as_cap_plan, need) == 8 &&
                   offsetof(as_cap_plan, max) == 12 && offsetof(as_cap_plan, n) == 18 &&
                   offsetof(as_cap_plan, src) == 21 && offsetof(as_cap_plan, ret_str) == 37 &&
                   sizeof(as_cap_plan) == 40 && AS_PLAN_STR == 0x80,
               "PL_* in thunk.S");
_Static_assert(sizeof(as_cap_region) == 16 && offsetof(as_cap_region, hi) == 8,
               "as_cap_regions in thunk.S");
_Static_assert(AS_CAP_ARENA == 524288, "AS_CAP_ARENA in thunk.S");
_Static_assert(AS_CAP_VAL == 1 && AS_CAP_STR == 2 && AS_CAP_NULL == 3 && AS_CAP_BAD == 4 &&
                   AS_CAP_TRUNC == 1 && sizeof(as_cap_item) == 8 &&
                   offsetof(as_cap_item, tag) == 4 && offsetof(as_cap_item, index) == 5 &&
                   offsetof(as_cap_item, flags) == 6,
               "the items thunk.S writes: len | tag << 32 | index << 40 | flags << 48");
_Static_assert(sizeof(((as_cap_plan *)0)->need) == 4 && sizeof(((as_cap_plan *)0)->max) == 4 &&
                   sizeof(((as_cap_plan *)0)->n) == 1 && sizeof(((as_cap_plan *)0)->src[0]) == 1 &&
                   sizeof(((as_cap_plan *)0)->ret_str) == 1 && sizeof(as_cap_nregions) == 4 &&
                   sizeof(((as_cap_tstate *)0)->stack_lo) == 8 &&
                   sizeof(((as_cap_tstate *)0)->stack_hi) == 8 && sizeof(as_cap_brk_lo) == 8,
               "the widths thunk.S reads");
_Static_assert(sizeof(as_callrec) == 64, "record size");
_Static_assert(offsetof(as_shadow_frame, caller_rbp) == 0, "[rbp] in thunk.S CFI");
_Static_assert(offsetof(as_shadow_frame, ret) == 8, "[rbp+8] in thunk.S CFI");
_Static_assert(offsetof(as_shadow_frame, slot) == 16, "FR_SLOT");
_Static_assert(offsetof(as_shadow_frame, t0) == 24, "FR_T0");
_Static_assert(offsetof(as_shadow_frame, id) == 32, "FR_ID");
_Static_assert(offsetof(as_shadow_frame, errno_in) == 36, "FR_ERRNO");
_Static_assert(offsetof(as_shadow_frame, cap_off) == 40, "FR_CAPOFF");
_Static_assert(offsetof(as_shadow_frame, cap_len) == 44, "FR_CAPOFF + 4");
_Static_assert(offsetof(as_shadow_frame, reported) == 48, "FR_REPORTED");
_Static_assert(offsetof(as_shadow_frame, ret_items) == 52, "FR_REPORTED + 4");
_Static_assert(sizeof(as_shadow_frame) == 56, "FR_SIZE");
_Static_assert(offsetof(as_target, orig) == 0, "T_ORIG");
_Static_assert(offsetof(as_ring, tail) == 64 && offsetof(as_ring, summarized) == 160 &&
                   offsetof(as_ring, sum_n) == 1668 && offsetof(as_ring, sums) == 1672,
               "RG_TAIL, RG_SUMMARIZED, RG_SUMN, RG_SUMS in thunk.S");
_Static_assert(offsetof(as_sum, id) == 0 && offsetof(as_sum, calls) == 8 &&
                   offsetof(as_sum, total_ns) == 24 && offsetof(as_sum, min_ns) == 32 &&
                   offsetof(as_sum, max_ns) == 40 && offsetof(as_sum, t_last) == 56 &&
                   offsetof(as_sum, hist) == 64 && sizeof(as_sum) == 192 && AS_SUM_BUCKETS == 32 &&
                   sizeof(((as_sum *)0)->hist[0]) == 4,
               "SU_* in thunk.S");
_Static_assert(offsetof(as_settings, queue_policy) == 2568 && AGENTSIGHT_QUEUE_WAIT == 1 &&
                   sizeof(((as_settings *)0)->queue_policy) == 4,
               "CFG_QPOLICY, AS_QUEUE_WAIT in thunk.S");
_Static_assert(sizeof(as_target_errif[0]) == 1 && AS_JUDGE_C == 1 && AS_JUDGE_ZERO == 3 &&
                   AS_JUDGE_NONZERO == 4 && AS_JUDGE_NEG == 5 && AS_JUDGE_NEG_UNTYPED == 6 &&
                   AS_JUDGE_ERRNO == 7 && AS_JUDGE_DROP_SHIFT == 3 &&
                   offsetof(as_sum, errors) == 16,
               "AS_JUDGE_*, SU_ERRORS in thunk.S");
_Static_assert(offsetof(as_ring, head) == 0, "RG_HEAD");
_Static_assert(offsetof(as_ring, pending) == 128, "RG_PENDING");
_Static_assert(offsetof(as_ring, limit) == 136, "RG_LIMIT");
_Static_assert(AS_RING_CLAIMED == UINT64_MAX, "movq $-1, RG_PENDING");
_Static_assert(offsetof(as_ring, size) == 208, "RG_SIZE");
_Static_assert(offsetof(as_ring, mask) == 216, "RG_MASK");
_Static_assert(AS_RING_DATA_OFF == 4096 && AS_RING_HDR == 8, "RG_DATA, the header");
_Static_assert(AS_MSG_CALL == 2 && AS_CALL_RETURNED == 1, "the record's kind and flags");
_Static_assert(offsetof(as_callrec, id) == 0 && sizeof(((as_callrec *)0)->id) == 2 &&
                   offsetof(as_callrec, flags) == 2 && sizeof(((as_callrec *)0)->flags) == 2 &&
                   offsetof(as_callrec, sum) == 4 && AS_MAX_TARGETS <= 65536,
               "REC_FLAGS << 16 | id, then the sum, as thunk.S writes them");
_Static_assert(offsetof(as_callrec, tid) == 8 && offsetof(as_callrec, errno_in) == 12 &&
                   offsetof(as_callrec, errno_out) == 16 && offsetof(as_callrec, ext) == 20 &&
                   offsetof(as_callrec, t0) == 24 && offsetof(as_callrec, t1) == 32 &&
                   offsetof(as_callrec, rax) == 40 && offsetof(as_callrec, rdx) == 48 &&
                   offsetof(as_callrec, xmm0) == 56,
               "the record as thunk.S writes it");

/* The personality routine finds the frame an exception leaves by its CFA; libgcc_s
 * provides it whenever an unwinder runs (a weak reference adds no dependency). */
#pragma weak _Unwind_GetCFA
extern uintptr_t _Unwind_GetCFA(void *ctx);

#define URC_CONTINUE_UNWIND 8 /* _Unwind_Reason_Code */
#define UA_CLEANUP_PHASE 2    /* _Unwind_Action bits */

/* What one thread keeps in static TLS: a few hot fields and a pointer. The shadow stack
 * itself (AS_SHADOW_MAX frames, 28 KiB) is mapped on the thread's first tracked call and
 * unmapped by a thread-specific-data destructor at its exit; a large static TLS block
 * would make pthread_create fail for threads with small stacks, even with us disabled. */
typedef struct as_tstate {
    as_shadow_frame *frames; /* NULL until the first tracked call */
    uint32_t depth;          /* frames in use (holes included: see below) */
    uint32_t cap;            /* frames mapped: 0 or AS_SHADOW_MAX */
    int busy;                /* inside the hook's entry or exit, or for good once the thread is
                                exiting: nested calls pass through */
    int32_t tid;             /* cached gettid(), 0 = not yet (reset in a fork child) */
    int *errno_p;            /* this thread's errno (saves a libc call per read) */
    /* Per slot of the thread's summary table: the lower of the two histogram buckets the
     * full-ring exit in thunk.S counts a call into without waiting for its duration
     * (0..AS_SUM_BUCKETS - 2; only a guess: a call outside it is counted all the same) */
    uint8_t sum_k[AS_SUM_SLOTS];
} as_tstate;

/* The mapping behind frames: what the slow paths need, then the frames. */
typedef struct as_shadow {
    as_tstate *owner;             /* the thread's TLS block (depth, frames) */
    struct as_shadow *next;       /* registry of threads with a shadow stack */
    uintptr_t stack_lo, stack_hi; /* the thread's own stack, 0 = unknown */
    as_shadow_frame frames[AS_SHADOW_MAX];
} as_shadow;

/* The shadow block of a thread whose frames are mapped. */
static inline as_shadow *shadow_of(const as_tstate *t) {
    return (as_shadow *)((char *)t->frames - offsetof(as_shadow, frames));
}

/* A hole: a frame taken out of the middle of a shadow stack (a coroutine returned while
 * another one parked above it, or the call returned on another thread). Its slot is NULL;
 * holes on top are popped by the next slow path. Frames never move: rbp of a parked call
 * points at its frame (the CFI reads it). */

/* Read and written by the common paths in thunk.S too (offsets checked here). */
__thread as_tstate as_hook_ts;
_Static_assert(offsetof(as_tstate, frames) == 0 && offsetof(as_tstate, depth) == 8 &&
                   offsetof(as_tstate, cap) == 12 && offsetof(as_tstate, busy) == 16 &&
                   offsetof(as_tstate, tid) == 20 && offsetof(as_tstate, errno_p) == 24 &&
                   offsetof(as_tstate, sum_k) == 32 && AS_SUM_SLOTS == 12,
               "TS_*, AS_SUM_SLOTS in thunk.S");

/* Threads with a shadow stack, and frames of exited threads whose slot still held our
 * landing (a coroutine parked there may return on another thread): searched only when a
 * call returns through a slot its own thread does not know. */
#define AS_ORPHANS 256
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static as_shadow *reg_head;
static as_shadow_frame orphans[AS_ORPHANS] AS_BIG_BSS;
static pthread_key_t frames_key;
static int frames_key_ok;

int as_hook_enabled = 1;
/* Records get their capture items through as_capture_copy, never a library routine: the
 * full thunk then keeps xmm0-15 only around typed calls (capture.h). */
const char as_record_copy_library_free = 1;
int as_capture_off;
unsigned char as_thunk_vec_mode;

/* 1 when the CPU has the crc32 instruction (SSE 4.2) the common exits seal their records
 * with (thunk.S); 0 sends every exit through C, which seals them by a table. */
unsigned char as_thunk_crc;
static uint64_t untracked_calls; /* atomic; only touched when a stack is full */

static void fork_prepare(void) {
    pthread_mutex_lock(&reg_lock);
}

static void fork_parent(void) {
    pthread_mutex_unlock(&reg_lock);
}

static void child_after_fork(void) {
    as_hook_ts.tid = 0; /* the child's only thread has a new tid */
    /* The frames on this thread's shadow stack are the parent's calls (in flight at the
     * fork, or left by a longjmp): the parent reports them. The child still returns
     * through them, and never records them. */
    for (uint32_t i = 0; i < as_hook_ts.depth && as_hook_ts.frames; i++)
        as_hook_ts.frames[i].reported = 1;
    /* The other threads are gone: only this one's stack remains registered. */
    reg_head = as_hook_ts.frames ? shadow_of(&as_hook_ts) : NULL;
    if (reg_head)
        reg_head->next = NULL;
    pthread_mutex_init(&reg_lock, NULL);
}

static void thread_exit(void *arg);

/* Returns the vector-state width the full path must save (as_thunk_vec_mode): what the
 * CPU has and the kernel enabled in XCR0. Can't fail (0 when unsure). */
static unsigned char detect_vec_mode(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (!(c & bit_OSXSAVE) || !(c & bit_AVX))
        return 0;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0x6) != 0x6) /* SSE and AVX state enabled */
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 1;
    __cpuid_count(7, 0, a, b, c, d);
    /* opmask, ZMM_Hi256 and Hi16_ZMM enabled; kmovq needs AVX512BW */
    if ((lo & 0xe0) == 0xe0 && (b & bit_AVX512F) && (b & bit_AVX512BW))
        return 2;
    return 1;
}

AS_OWN_ATFORK(own_fork, fork_prepare, fork_parent, child_after_fork)

__attribute__((constructor)) static void thunk_init(void) {
    as_thunk_vec_mode = detect_vec_mode();
    as_thunk_crc = (unsigned char)as_crc32c_hw();
    frames_key_ok = pthread_key_create(&frames_key, thread_exit) == 0;
    pthread_atfork(own_fork_prepare, own_fork_parent, own_fork_child);
}

/* Returns the cached thread id; fetches it once per thread. Can't fail. */
static inline int32_t thread_id(as_tstate *t) {
    if (__builtin_expect(t->tid == 0, 0))
        t->tid = (int32_t)syscall(SYS_gettid);
    return t->tid;
}

/* Writes one record for frame f ending at t1, with the frame's typed capture behind it.
 * r is NULL for a frame that did not return (flags then say how it was left). A full ring
 * drops the record (counted by the pipeline); a capture too large for the ring is dropped
 * alone. A frame already reported (as_hook_report_live) writes nothing. May change errno. */
/* Fills the fixed part of a record (ext bytes of capture items follow it). */
__attribute__((always_inline)) static inline void fill_rec(as_callrec *rec, int32_t tid,
                                                           const as_shadow_frame *f, uint64_t t1,
                                                           const as_retregs *r, int errno_out,
                                                           uint32_t flags, uint32_t ext) {
    rec->id = (uint16_t)f->id;
    rec->flags = (uint16_t)(r ? AS_CALL_RETURNED : flags);
    rec->sum = 0;
    rec->tid = tid;
    rec->errno_in = f->errno_in;
    rec->errno_out = errno_out;
    rec->ext = ext;
    rec->t0 = f->t0;
    rec->t1 = t1;
    rec->rax = r ? r->rax : 0;
    rec->rdx = r ? r->rdx : 0;
    rec->xmm0 = r ? r->xmm[0].lo : 0;
}

/* Whether a full ring may make this call wait for room (queue = wait): not on an
 * alternate signal stack (a signal handler's call: the rsp is outside the thread's own
 * stack). Other signal handlers are bounded by the wait's own rules (pipeline.c). */
static int may_wait(const as_tstate *t) {
    const as_shadow *sh = shadow_of(t);
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    return !sh->stack_hi || (sp >= sh->stack_lo && sp < sh->stack_hi);
}

/* Raw clock units -> ns as a 32.32 fixed-point factor, for the durations of summarized
 * calls (one multiply on the full-ring path; thunk.S reads it too). 0 until the first
 * summary computes it. */
uint64_t as_thunk_sum_mult;

/* The duration t0..t1 in ns, by the fixed factor. */
static inline uint64_t sum_dur_ns(uint64_t t0, uint64_t t1) {
    uint64_t m = __atomic_load_n(&as_thunk_sum_mult, __ATOMIC_RELAXED);
    if (__builtin_expect(m == 0, 0)) {
        /* ns per 2^32 raw units from now on, by the calibration (the raw unit is the ns
         * itself without the TSC: the factor is then exactly 1) */
        uint64_t span = (uint64_t)1 << 32, now = as_clock_raw();
        int64_t ns = as_clock_raw_delta_ns(now, now + span);
        m = ns > 0 ? (uint64_t)ns : span;
        __atomic_store_n(&as_thunk_sum_mult, m, __ATOMIC_RELAXED);
    }
    if (t1 <= t0)
        return 0;
    return (uint64_t)(((unsigned __int128)(t1 - t0) * m) >> 32);
}

/* A call that found its ring full under queue = drop: counted into the thread's summary
 * of its function (becomes one summary action), or, when the summary table is full, as a
 * drop. Never both. */
static void summarize(as_ring *ring, as_tstate *t, const as_shadow_frame *f, uint64_t t1,
                      const as_retregs *r, int errno_out) {
    int failed = r ? as_callrec_failed(f->id, r->rax, r->xmm[0].lo, f->errno_in, errno_out) : 1;
    if (!as_ring_sum_add(ring, f->id, thread_id(t), f->t0, t1, sum_dur_ns(f->t0, t1), failed))
        as_ring_count_drop(ring);
}

/* Whether target id is one of the functions that return only on failure (the exec family,
 * _exit): a frame of one that was left, not ended by the process, was pushed by a vfork
 * child on the stack it shared with its parent (only exec or _exit may follow vfork), and
 * is no call of this process. */
static int vfork_child_frame(uint32_t id, uint32_t flags) {
    if (flags & AS_CALL_ENDED || id >= AS_MAX_TARGETS)
        return 0;
    const char *s = as_targets[id].symbol;
    if (!s)
        return 0;
    return strncmp(s, "exec", 4) == 0 || strcmp(s, "fexecve") == 0 || strcmp(s, "_exit") == 0 ||
           strcmp(s, "_Exit") == 0;
}

static void emit_rec(as_tstate *t, as_shadow_frame *f, uint64_t t1, const as_retregs *r,
                     int errno_out, uint32_t flags) {
    if (__builtin_expect(f->reported, 0))
        return;
    if (__builtin_expect(!r, 0) && vfork_child_frame(f->id, flags)) {
        f->reported = 1;
        return;
    }
    const void *cap = f->cap_len ? as_capture_data(f) : NULL;
    uint32_t ext = cap ? f->cap_len : 0;
    as_ring *ring = as_pipe_tring;
    int drop_policy = as_cfg.queue_policy != AGENTSIGHT_QUEUE_WAIT;
    if (ring && !as_ring_open(ring)) {
        if (ext && !as_ring_fits(ring, sizeof(as_callrec) + ext))
            ext = 0; /* a capture larger than the ring can hold: the record without it */
        /* A full ring under drop: one look at the consumer's tail, then the summary. */
        if (drop_policy && !as_ring_room(ring, sizeof(as_callrec) + ext)) {
            summarize(ring, t, f, t1, r, errno_out);
            return;
        }
        /* Summaries of calls that found the ring full go in first, as room allows. */
        if (__builtin_expect(ring->sum_n != 0, 0))
            as_ring_sum_flush(ring);
    }
    int rflags = drop_policy ? AS_PIPE_FULL_UNCOUNTED : (may_wait(t) ? AS_PIPE_WAIT : 0);
    as_callrec *rec = as_pipe_reserve(AS_MSG_CALL, sizeof *rec + ext, rflags);
    if (!rec) {
        /* Full (not counted by the pipeline), or counted there: no ring for this thread,
         * a signal handler inside the thread's own write, a wait that timed out. */
        ring = as_pipe_tring;
        if (drop_policy && ring && !as_ring_open(ring) && as_ring_fits(ring, sizeof *rec + ext))
            summarize(ring, t, f, t1, r, errno_out);
        return;
    }
    fill_rec(rec, thread_id(t), f, t1, r, errno_out, flags, ext);
    if (ext)
        as_capture_copy(rec + 1, cap, ext);
    as_rec_call_seal(rec);
    as_pipe_commit(rec);
}

/* emit_rec, then frees the frame's capture (and, the arena being a stack, everything
 * captured above it: only for the top frame). */
static void emit(as_tstate *t, as_shadow_frame *f, uint64_t t1, const as_retregs *r, int errno_out,
                 uint32_t flags) {
    emit_rec(t, f, t1, r, errno_out, flags);
    as_capture_release(f);
}

/* Returns this thread's errno location, fetched once per thread. Can't fail. */
static inline int *errno_ptr(as_tstate *t) {
    if (__builtin_expect(t->errno_p == NULL, 0))
        t->errno_p = &errno;
    return t->errno_p;
}

/* Whether the stack slot still holds one of our exit landings: the call may still return
 * through it (a coroutine parked inside it, a signal handler running on another stack).
 * The slot may lie in memory freed since (a coroutine's stack): read without faulting. */
static int slot_live(void **slot) {
    void *v = NULL;
    if (!slot || as_safe_read(&v, slot, sizeof v) != sizeof v)
        return 0;
    return v == (void *)as_thunk_exit || v == (void *)as_thunk_full_exit;
}

/* Whether both addresses lie in this thread's own stack: then the lower one belongs to a
 * call nested in the higher one's (one stack grows one way), so when the higher one is
 * returning or being entered, a frame at the lower one is dead whatever its slot holds. */
static int same_thread_stack(const as_tstate *t, void **a, void **b) {
    const as_shadow *sh = shadow_of(t);
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return sh->stack_hi && x >= sh->stack_lo && x < sh->stack_hi && y >= sh->stack_lo &&
           y < sh->stack_hi;
}

/* Whether frame f, above the call at slot `slot` (being entered or returning), can no
 * longer return: its slot lies below slot on this thread's stack, or its slot no longer
 * holds our landing (a longjmp or an exception left it). */
static int frame_dead(const as_tstate *t, const as_shadow_frame *f, void **slot) {
    if (f->slot < slot && same_thread_stack(t, f->slot, slot))
        return 1;
    return !slot_live(f->slot);
}

/* Pops the holes on top of the shadow stack. Can't fail. */
static void pop_holes(as_tstate *t) {
    while (t->depth > 0 && __atomic_load_n(&t->frames[t->depth - 1].slot, __ATOMIC_ACQUIRE) == NULL)
        t->depth--;
}

/* Pops the frames on top whose call can no longer return (frame_dead against the new
 * call's slot), and holes. A frame that may still return (a signal handler on another
 * stack, another coroutine, a tail call sharing the slot) stops the walk. Each popped frame
 * is recorded as not returned. */
__attribute__((noinline, cold)) static void drop_dead(as_tstate *t, void **slot, int errno_now) {
    uint64_t now = 0;
    pop_holes(t);
    while (t->depth > 0) {
        as_shadow_frame *f = &t->frames[t->depth - 1];
        if (f->slot > slot || !frame_dead(t, f, slot))
            return;
        if (!now)
            now = as_clock_raw();
        emit(t, f, now, NULL, errno_now, AS_CALL_NOT_RETURNED);
        t->depth--;
        pop_holes(t);
    }
}

/* The slow half of "is there room for one more frame": maps the thread's shadow stack on
 * its first tracked call and registers the thread. Returns 1 when there is room now, 0
 * when the stack is full, cannot be mapped, or the thread is exiting (the call then passes
 * through untracked; errno is left as it was). */
__attribute__((noinline, cold)) static int stack_room(as_tstate *t) {
    if (t->frames)
        return 0;
    int *ep = errno_ptr(t);
    int e = *ep;
    t->busy = 1;
    as_shadow *sh =
        mmap(NULL, sizeof(as_shadow), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        *ep = e;
        return 0; /* busy stays set: no system call on every later call */
    }
    sh->owner = t;
    as_thread_stack(&sh->stack_lo, &sh->stack_hi);
    pthread_mutex_lock(&reg_lock);
    t->frames = sh->frames;
    t->cap = AS_SHADOW_MAX;
    sh->next = reg_head;
    reg_head = sh;
    pthread_mutex_unlock(&reg_lock);
    if (frames_key_ok)
        pthread_setspecific(frames_key, t);
    t->busy = 0;
    *ep = e;
    return 1;
}

/* Thread-specific-data destructor: the thread is exiting. Frames whose slot still holds
 * our landing move to the orphan table (a coroutine that parked here may return on another
 * thread); the others are recorded as not returned. Then the shadow stack is unmapped and
 * the thread tracks nothing more. */
static void thread_exit(void *arg) {
    as_tstate *t = arg;
    if (!t || t != &as_hook_ts || !t->frames)
        return;
    int *ep = errno_ptr(t);
    int e = *ep;
    t->busy = 1;
    uint64_t now = as_clock_raw();
    pthread_mutex_lock(&reg_lock);
    as_shadow *sh = shadow_of(t);
    for (as_shadow **pp = &reg_head; *pp; pp = &(*pp)->next) {
        if (*pp == sh) {
            *pp = sh->next;
            break;
        }
    }
    for (uint32_t i = 0; i < t->depth; i++) {
        as_shadow_frame *f = &t->frames[i];
        if (!f->slot)
            continue;
        int kept = 0;
        if (slot_live(f->slot)) {
            for (int k = 0; k < AS_ORPHANS && !kept; k++) {
                if (orphans[k].slot)
                    continue;
                orphans[k] = *f;
                orphans[k].cap_off = UINT32_MAX; /* the arena goes with the thread */
                orphans[k].cap_len = 0;
                kept = 1;
            }
        }
        if (!kept)
            emit_rec(t, f, now, NULL, e, AS_CALL_NOT_RETURNED);
    }
    pthread_mutex_unlock(&reg_lock);
    t->frames = NULL;
    t->cap = 0;
    t->depth = 0;
    munmap(sh, sizeof *sh);
    *ep = e; /* busy stays set: the exiting thread tracks nothing more */
}

/* The entry of both stub kinds; landing is the exit the thunk's call will push. The
 * general case: any depth, dead frames above, the first call of a thread, typed capture. */
__attribute__((noinline)) static as_enter_ret enter_slow(uint32_t id, as_regs *regs, void **slot,
                                                         void *landing) {
    const as_target *tg = &as_targets[id];
    as_enter_ret out = {tg->orig, NULL};
    as_tstate *t = &as_hook_ts;
    if (__builtin_expect(t->busy | as_in_agentsight | !as_hook_enabled, 0))
        return out;
    int *ep = errno_ptr(t);
    int e = *ep;
    uint32_t d = t->depth;
    if (d) {
        /* Dead frames are rare: only look closer when the top one is not an outer call
         * (a hole's NULL slot also leads here). */
        as_shadow_frame *top = &t->frames[d - 1];
        if (__builtin_expect(top->slot <= slot, 0)) {
            t->busy = 1;
            drop_dead(t, slot, e);
            t->busy = 0;
            *ep = e;
            d = t->depth;
        }
    }
    if (__builtin_expect(d >= t->cap, 0)) {
        if (!stack_room(t)) {
            if (t->frames)
                __atomic_fetch_add(&untracked_calls, 1, __ATOMIC_RELAXED);
            return out;
        }
    }
    /* busy keeps a signal handler's calls on this thread off frames[d] while it is
     * filled; only the capture may change errno (restored below). */
    t->busy = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    as_shadow_frame *f = &t->frames[d];
    f->caller_rbp = slot[-1]; /* pushed by the thunk */
    f->slot = slot;
    f->ret = *slot;
    f->id = id;
    f->errno_in = e;
    f->cap_off = UINT32_MAX;
    f->cap_len = 0;
    f->reported = 0;
    f->ret_items = 0; /* the exits read it with reported, as one word */
    const as_proto *p = as_capture_proto(tg);
    if (p) {
        f->ret_items = p->ret.kind == AS_K_STR || p->ret.kind == AS_K_AGG;
        as_capture_entry_plan(f, p, as_target_max_string(tg), regs, slot);
        *ep = e;
    }
    f->t0 = as_clock_raw(); /* after the capture: the duration is the function's own */
    /* Release: a thread looking for a migrated coroutine's frame reads [0, depth). */
    __atomic_store_n(&t->depth, d + 1, __ATOMIC_RELEASE);
    /* The thunk's call writes the same value; storing it now already marks the frame live
     * for a signal handler that runs in between (see drop_dead). */
    *slot = landing;
    /* A call with an error rule starts with errno 0 (the caller's value is errno_in): its
     * exit then sees what the call set, and restores the caller's value when it set none.
     * Any other call starts with the caller's value (it may read it). */
    *ep = as_target_errif[id] ? 0 : e;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    t->busy = 0;
    out.frame = f;
    return out;
}

/* The common case of the C entry, with no call on the untyped path: a thread that has its
 * shadow stack and errno location, room on it, no frame above this call's that a longjmp
 * could have left, and the TSC (the thunk's own entry does the same in assembly for
 * untyped calls and typed ones whose parameters all come in integer registers; this one
 * serves the other typed calls and entry patches, whose registers, xmm0-7 included, are
 * saved in regs). Fills *out and returns 1, or returns 0 when the
 * general entry (enter_slow) must run, before any side effect. */
__attribute__((always_inline)) static inline int enter_fast(uint32_t id, as_regs *regs, void **slot,
                                                            void *landing, as_enter_ret *out) {
    const as_target *tg = &as_targets[id];
    as_tstate *t = &as_hook_ts;
    if (__builtin_expect(t->busy | as_in_agentsight | !as_hook_enabled, 0)) {
        out->orig = tg->orig;
        out->frame = NULL;
        return 1;
    }
    /* busy, before depth is read: a signal handler's calls pass through, so depth and
     * frames[d] stay as read while the frame is filled (see enter_slow). */
    t->busy = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    uint32_t d = t->depth;
    const as_proto *p = as_capture_proto(tg);
    if (__builtin_expect(d >= t->cap || t->errno_p == NULL ||
                             (d && t->frames[d - 1].slot <= slot) || !as_clock_use_tsc,
                         0)) {
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        t->busy = 0;
        return 0;
    }
    as_shadow_frame *f = &t->frames[d];
    f->caller_rbp = slot[-1];
    f->slot = slot;
    f->ret = *slot;
    f->id = id;
    f->errno_in = *t->errno_p;
    f->cap_off = UINT32_MAX;
    f->cap_len = 0;
    f->reported = 0;
    f->ret_items = 0; /* the exits read it with reported, as one word */
    if (p) {          /* typed: the capture may use vector registers (the thunk saved them) */
        int e = f->errno_in;
        f->ret_items = p->ret.kind == AS_K_STR || p->ret.kind == AS_K_AGG;
        as_capture_entry_plan(f, p, as_target_max_string(tg), regs, slot);
        *t->errno_p = e;
    }
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); /* as_clock_raw() with the TSC */
    f->t0 = ((uint64_t)hi << 32) | lo;
    __atomic_store_n(&t->depth, d + 1, __ATOMIC_RELEASE);
    *slot = landing;
    if (as_target_errif[id]) /* as in enter_slow */
        *t->errno_p = 0;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    t->busy = 0;
    out->orig = tg->orig;
    out->frame = f;
    return 1;
}

as_enter_ret as_hook_enter_slow(uint32_t id, as_regs *regs, void **slot) {
    as_enter_ret out;
    if (__builtin_expect(enter_fast(id, regs, slot, (void *)as_thunk_exit, &out), 1))
        return out;
    return enter_slow(id, regs, slot, (void *)as_thunk_exit);
}

as_enter_ret as_hook_enter_full(uint32_t id, as_regs *regs, void **slot) {
    as_enter_ret out;
    if (__builtin_expect(enter_fast(id, regs, slot, (void *)as_thunk_full_exit, &out), 1))
        return out;
    return enter_slow(id, regs, slot, (void *)as_thunk_full_exit);
}

/* Takes the frame of slot out of another thread's shadow stack (a coroutine parked there
 * and resumed here) or out of the orphans of exited threads, into *out (without its typed
 * capture, which stays in the other thread's arena). Returns 1, or 0 when no thread knows
 * the slot. */
static int take_foreign(as_tstate *self, void **slot, as_shadow_frame *out) {
    int found = 0;
    pthread_mutex_lock(&reg_lock);
    for (int k = 0; k < AS_ORPHANS && !found; k++) {
        if (orphans[k].slot != slot)
            continue;
        *out = orphans[k];
        orphans[k].slot = NULL;
        found = 1;
    }
    for (as_shadow *sh = reg_head; sh && !found; sh = sh->next) {
        as_tstate *o = sh->owner;
        if (o == self)
            continue;
        uint32_t d = __atomic_load_n(&o->depth, __ATOMIC_ACQUIRE);
        for (uint32_t i = d; i > 0 && !found; i--) {
            as_shadow_frame *f = &sh->frames[i - 1];
            if (__atomic_load_n(&f->slot, __ATOMIC_ACQUIRE) != slot)
                continue;
            *out = *f;
            void **expect = slot;
            /* The owner pops it as a hole, never touches a live one: claim it. */
            found = __atomic_compare_exchange_n(&f->slot, &expect, NULL, 0, __ATOMIC_ACQ_REL,
                                                __ATOMIC_ACQUIRE);
        }
    }
    pthread_mutex_unlock(&reg_lock);
    if (found) {
        out->cap_off = UINT32_MAX;
        out->cap_len = 0;
    }
    return found;
}

/* The slow exit: the returning call is not the top frame. Its frame is searched in the
 * whole shadow stack: frames above it that can no longer return (frame_dead) are recorded
 * as not returned and become holes; live ones (other coroutines parked in a call) stay.
 * Returns the index + 1 of the returning frame, or 0 when this thread does not know the
 * slot (the caller then asks the other threads). */
__attribute__((noinline, cold)) static uint32_t find_frame(as_tstate *t, void **slot, uint64_t t1,
                                                           int e) {
    pop_holes(t);
    uint32_t k = t->depth;
    while (k > 0 && t->frames[k - 1].slot != slot)
        k--;
    if (k == 0)
        return 0;
    int was_busy = t->busy;
    t->busy = 1;
    for (uint32_t j = t->depth; j > k; j--) {
        as_shadow_frame *f = &t->frames[j - 1];
        if (!f->slot || !frame_dead(t, f, slot))
            continue;
        if (j == t->depth) {
            emit(t, f, t1, NULL, e, AS_CALL_NOT_RETURNED);
            t->depth--;
        } else {
            emit_rec(t, f, t1, NULL, e, AS_CALL_NOT_RETURNED);
        }
        __atomic_store_n(&f->slot, NULL, __ATOMIC_RELEASE);
    }
    pop_holes(t);
    t->busy = was_busy;
    return k;
}

/* The slowest exit: the frame lives in another thread's shadow stack or among the
 * orphans. Records the call and returns where it must go; aborts only when no thread
 * knows the slot: a corrupted shadow stack, with nowhere to return to. */
__attribute__((noinline, cold)) static as_exit_ret
foreign_exit(as_tstate *t, as_retregs *regs, void **slot, uint64_t t1, int e, int *errno_in) {
    as_shadow_frame f;
    int was_busy = t->busy;
    t->busy = 1;
    if (!take_foreign(t, slot, &f)) {
        as_alert_error("return through the thunk with no shadow frame for slot %p", (void *)slot);
        abort();
    }
    emit_rec(t, &f, t1, regs, e, AS_CALL_RETURNED);
    t->busy = was_busy;
    *errno_in = as_target_errif[f.id] ? f.errno_in : 0;
    as_exit_ret out = {f.ret, f.caller_rbp};
    return out;
}

/* The exit in general: the returning call may not be the top frame (a longjmp, a
 * coroutine), may have captured items, may need a new ring. t1 was taken at the landing
 * (0: not yet, the TSC is not used). */
__attribute__((noinline)) static as_exit_ret exit_slow(as_retregs *regs, char *rsp_at_landing,
                                                       uint64_t t1) {
    if (t1 == 0)
        t1 = as_clock_raw();
    as_tstate *t = &as_hook_ts;
    int *ep = errno_ptr(t);
    int e = *ep;
    void **slot = (void **)(rsp_at_landing - sizeof(void *));
    uint32_t k = t->depth;
    if (__builtin_expect(k == 0 || t->frames[k - 1].slot != slot, 0)) {
        k = find_frame(t, slot, t1, e);
        if (k == 0) {
            int ein = 0;
            as_exit_ret out = foreign_exit(t, regs, slot, t1, e, &ein);
            *ep = e ? e : ein; /* the call set none: the caller's value back */
            return out;
        }
    }
    as_shadow_frame *f = &t->frames[k - 1];
    /* read before the frame is freed for a signal handler */
    as_exit_ret out = {f->ret, f->caller_rbp};
    int ein = as_target_errif[f->id] ? f->errno_in : 0; /* 0: errno not cleared */
    int was_busy = t->busy;
    t->busy = 1; /* calls made by the pipeline (first ring of a thread) pass through */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (f->cap_off != UINT32_MAX) {
        const as_target *tg = &as_targets[f->id];
        const as_proto *p = as_capture_proto(tg);
        /* only a string or an aggregate returned adds an item */
        if (p && (p->ret.kind == AS_K_STR || p->ret.kind == AS_K_AGG))
            as_capture_exit(f, p, as_target_max_string(tg), regs);
    }
    if (__builtin_expect(k == t->depth, 1)) {
        emit(t, f, t1, regs, e, AS_CALL_RETURNED);
        t->depth = k - 1;
        if (__builtin_expect(k > 1 && t->frames[k - 2].slot == NULL, 0))
            pop_holes(t);
    } else {
        /* Another coroutine's call is parked above: this one becomes a hole; its capture
         * stays until a frame below it is released (the arena is a stack). */
        emit_rec(t, f, t1, regs, e, AS_CALL_RETURNED);
        __atomic_store_n(&f->slot, NULL, __ATOMIC_RELEASE);
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    t->busy = was_busy;
    *ep = e ? e : ein; /* the call set none: the caller's value back */
    return out;
}

/* The common exit of a call that captured items at entry and adds none at exit (its
 * return is not a string or a struct): emit() writes the record with its items (the
 * landing saved xmm0-1: the copy may use vector registers). Anything else: exit_slow. */
__attribute__((noinline)) static as_exit_ret
exit_typed(as_retregs *regs, char *rsp_at_landing, uint64_t t1, as_shadow_frame *f, uint32_t k) {
    as_tstate *t = &as_hook_ts;
    if (f->ret_items)
        return exit_slow(regs, rsp_at_landing, t1);
    /* read before the frame is freed for a signal handler */
    as_exit_ret out = {f->ret, f->caller_rbp};
    int ein = as_target_errif[f->id] ? f->errno_in : 0; /* 0: errno not cleared */
    int was_busy = t->busy;
    t->busy = 1; /* a signal handler's call must not write into the open reservation */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    int e = *t->errno_p;
    emit(t, f, t1, regs, e, AS_CALL_RETURNED);
    t->depth = k - 1;
    *t->errno_p = e ? e : ein; /* the call set none: the caller's value back */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    t->busy = was_busy;
    return out;
}

/* The C exit, for what the thunk's assembly exits leave to it: the top frame returning
 * with items the assembly does not copy (exit_typed: on the full-register path, or
 * while the ring has no room for them), and anything unusual (exit_slow: not the top
 * frame, a hole below it, a thread's first record, a full ring or its end, no TSC). */
as_exit_ret as_hook_exit(as_retregs *regs, char *rsp_at_landing) {
    uint32_t lo, hi;
    if (__builtin_expect(!as_clock_use_tsc, 0))
        return exit_slow(regs, rsp_at_landing, 0);
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    uint64_t t1 = ((uint64_t)hi << 32) | lo;
    as_tstate *t = &as_hook_ts;
    void **slot = (void **)(rsp_at_landing - sizeof(void *));
    /* busy, before depth is read: a signal handler's calls pass through; depth and the
     * frames stay as read. */
    int was_busy = t->busy;
    t->busy = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    uint32_t k = t->depth;
    as_shadow_frame *f = k ? &t->frames[k - 1] : NULL;
    /* the top frame returns (with items, or untyped into a full ring), the thread is warm,
     * no hole below the frame */
    int typed = f && as_pipe_tring && t->tid && t->errno_p && f->slot == slot && !f->reported &&
                !(k > 1 && t->frames[k - 2].slot == NULL);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    t->busy = was_busy;
    return typed ? exit_typed(regs, rsp_at_landing, t1, f, k) : exit_slow(regs, rsp_at_landing, t1);
}

/* Called by the unwinder for the thunk's call site. In the cleanup phase of an exception
 * (or of a forced unwind: thread cancel, pthread_exit) that leaves a tracked call, the
 * call's shadow frame, and any frame above it, is popped and recorded as not returned.
 * Always lets the unwind go on: the CFI of the call site leads it into the caller. */
int as_thunk_personality(int version, int actions, uint64_t exc_class, void *exc, void *ctx) {
    (void)version;
    (void)exc_class;
    (void)exc;
    if (!(actions & UA_CLEANUP_PHASE))
        return URC_CONTINUE_UNWIND;
    as_tstate *t = &as_hook_ts;
    pop_holes(t);
    if (t->depth == 0)
        return URC_CONTINUE_UNWIND;
    int *ep = errno_ptr(t);
    int e = *ep;
    /* Without libgcc's CFA query, the innermost frame is the one being left. */
    void **slot = _Unwind_GetCFA ? (void **)(_Unwind_GetCFA(ctx) - sizeof(void *))
                                 : t->frames[t->depth - 1].slot;
    int was_busy = t->busy;
    t->busy = 1;
    uint64_t now = as_clock_raw();
    while (t->depth > 0) {
        as_shadow_frame *f = &t->frames[t->depth - 1];
        if (f->slot > slot)
            break; /* an outer call: the exception may still be caught inside it */
        emit(t, f, now, NULL, e, AS_CALL_NOT_RETURNED | AS_CALL_EXCEPTION);
        t->depth--;
        int left = f->slot == slot;
        pop_holes(t);
        if (left)
            break;
    }
    t->busy = was_busy;
    *ep = e;
    return URC_CONTINUE_UNWIND;
}

/* Frame marks: reported for good (1), or by a live report before an exec that may yet
 * fail (REPORTED_EXEC: taken back by as_hook_unreport_live). */
#define REPORTED_EXEC 2

static int report_live(int mark) {
    as_tstate *t = &as_hook_ts;
    if (!t->frames || t->depth == 0)
        return 0;
    int *ep = errno_ptr(t);
    int e = *ep;
    int was_busy = t->busy;
    t->busy = 1;
    uint64_t now = as_clock_raw();
    int n = 0;
    for (uint32_t i = t->depth; i > 0; i--) {
        as_shadow_frame *f = &t->frames[i - 1];
        if (!f->slot || f->reported)
            continue;
        /* A slot that no longer holds our landing: left by a longjmp long ago, not by
         * the exit. */
        emit_rec(t, f, now, NULL, e,
                 slot_live(f->slot) ? AS_CALL_NOT_RETURNED | AS_CALL_ENDED : AS_CALL_NOT_RETURNED);
        f->reported = mark;
        n++;
    }
    t->busy = was_busy;
    *ep = e;
    return n;
}

int as_hook_report_live(void) {
    return report_live(1);
}

int as_hook_report_live_exec(void) {
    return report_live(REPORTED_EXEC);
}

void as_hook_unreport_live(void) {
    as_tstate *t = &as_hook_ts;
    for (uint32_t i = 0; t->frames && i < t->depth; i++)
        if (t->frames[i].reported == REPORTED_EXEC)
            t->frames[i].reported = 0;
}

int as_hook_is_landing(const void *ret) {
    return ret == (const void *)as_thunk_exit || ret == (const void *)as_thunk_full_exit;
}

const void *as_hook_caller(const void *ret) {
    const as_tstate *t = &as_hook_ts;
    if (!as_hook_is_landing(ret) || !t->frames)
        return ret;
    for (uint32_t i = t->depth; i > 0; i--)
        if (t->frames[i - 1].slot)
            return t->frames[i - 1].ret;
    return ret;
}

uint64_t as_hook_untracked(void) {
    return __atomic_load_n(&untracked_calls, __ATOMIC_RELAXED);
}

uint64_t as_hook_top_t0(void) {
    uint32_t k = as_hook_ts.depth;
    return k && as_hook_ts.frames ? as_hook_ts.frames[k - 1].t0 : 0;
}

uint32_t as_hook_depth(void) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < as_hook_ts.depth; i++)
        n += as_hook_ts.frames[i].slot != NULL;
    return n;
}
