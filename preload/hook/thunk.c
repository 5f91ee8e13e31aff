/* thunk.c - the C half of the hot path: what the x86-64 thunk calls at a wrapped
 * function's entry and at its return. Keeps the per-thread shadow stack of calls in
 * flight (the real return addresses), takes the timestamps and writes one AS_MSG_CALL
 * record per call.
 *
 * Relies on thunk.S for: as_thunk_stubs (stub i loads i into r11d), as_thunk_exit (the
 * swapped-in return address), and the frame layouts struct as_regs / as_retregs (offsets
 * checked below). No malloc, lock or syscall here except the first record of a thread
 * (its ring) and one gettid per thread. */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/pipeline.h"
#include "hook/callrec.h"
#include "hook/target.h"
#include "hook/thunk.h"

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
_Static_assert(sizeof(as_callrec) == 64, "record size");

/* Everything one thread needs, in one initial-exec TLS block (no allocation). */
typedef struct as_tstate {
    uint32_t depth; /* frames in use */
    int busy;       /* inside as_hook_enter/exit: nested calls pass through */
    int32_t tid;    /* cached gettid(), 0 = not yet (reset in a fork child) */
    int *errno_p;   /* this thread's errno (saves a libc call per read) */
    as_shadow_frame frames[AS_SHADOW_MAX];
} as_tstate;

static __thread as_tstate ts;

int as_hook_enabled = 1;
static uint64_t untracked_calls; /* atomic; only touched when a stack is full */

static void child_after_fork(void) {
    ts.tid = 0; /* the child's only thread has a new tid */
}

__attribute__((constructor)) static void thunk_init(void) {
    pthread_atfork(NULL, NULL, child_after_fork);
}

/* Returns the cached thread id; fetches it once per thread. Can't fail. */
static inline int32_t thread_id(as_tstate *t) {
    if (__builtin_expect(t->tid == 0, 0))
        t->tid = (int32_t)syscall(SYS_gettid);
    return t->tid;
}

/* Writes one record for frame f ending at t1. r is NULL for a frame that did not return.
 * A full ring drops the record (counted by the pipeline). May change errno. */
static void emit(as_tstate *t, const as_shadow_frame *f, uint64_t t1, const as_retregs *r,
                 int errno_out) {
    as_callrec *rec = as_pipe_reserve(AS_MSG_CALL, sizeof *rec, 0);
    if (!rec)
        return;
    rec->id = f->id;
    rec->flags = r ? AS_CALL_RETURNED : AS_CALL_NOT_RETURNED;
    rec->tid = thread_id(t);
    rec->errno_in = f->errno_in;
    rec->errno_out = errno_out;
    rec->reserved = 0;
    rec->t0 = f->t0;
    rec->t1 = t1;
    rec->rax = r ? r->rax : 0;
    rec->rdx = r ? r->rdx : 0;
    rec->xmm0 = r ? r->xmm[0].lo : 0;
    as_pipe_commit(rec);
}

/* Returns this thread's errno location, fetched once per thread. Can't fail. */
static inline int *errno_ptr(as_tstate *t) {
    if (__builtin_expect(t->errno_p == NULL, 0))
        t->errno_p = &errno;
    return t->errno_p;
}

/* Pops the frames on top whose call can no longer return: their slot lies at or below the
 * new call's slot and no longer holds our exit address (a longjmp left them). A frame whose
 * slot still holds as_thunk_exit is live (a signal handler on another stack, another
 * coroutine) and stops the walk. Each popped frame is recorded as not returned. */
__attribute__((noinline, cold)) static void drop_dead(as_tstate *t, void **slot, int errno_now) {
    uint64_t now = 0;
    while (t->depth > 0) {
        as_shadow_frame *f = &t->frames[t->depth - 1];
        if (f->slot > slot || *f->slot == (void *)as_thunk_exit)
            return;
        if (!now)
            now = as_clock_raw();
        emit(t, f, now, NULL, errno_now);
        t->depth--;
    }
}

as_enter_ret as_hook_enter(uint32_t id, as_regs *regs, void **slot) {
    (void)regs; /* typed capture reads the argument registers from here */
    as_enter_ret out = {as_targets[id].orig, 0};
    as_tstate *t = &ts;
    if (__builtin_expect(t->busy | as_in_agentsight | !as_hook_enabled, 0))
        return out;
    int *ep = errno_ptr(t);
    int e = *ep;
    uint32_t d = t->depth;
    if (d) {
        /* Dead frames are rare: only look closer when the top one is not an outer call. */
        as_shadow_frame *top = &t->frames[d - 1];
        if (__builtin_expect(top->slot <= slot, 0)) {
            t->busy = 1;
            drop_dead(t, slot, e);
            t->busy = 0;
            *ep = e;
            d = t->depth;
        }
        if (__builtin_expect(d >= AS_SHADOW_MAX, 0)) {
            __atomic_fetch_add(&untracked_calls, 1, __ATOMIC_RELAXED);
            return out;
        }
    }
    /* busy keeps a signal handler's calls on this thread off frames[d] while it is
     * filled; nothing here changes errno. */
    t->busy = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    as_shadow_frame *f = &t->frames[d];
    f->slot = slot;
    f->ret = *slot;
    f->id = id;
    f->errno_in = e;
    f->t0 = as_clock_raw();
    t->depth = d + 1;
    /* The thunk's call writes the same value; storing it now already marks the frame live
     * for a signal handler that runs in between (see drop_dead). */
    *slot = (void *)as_thunk_exit;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    t->busy = 0;
    out.tracked = 1;
    return out;
}

/* The slow exit: frames above the returning one were left by a longjmp (each recorded
 * as not returned), or no frame matches at all, which only a corrupted shadow stack can
 * cause: then there is nowhere to return to. Returns the depth of the matching frame. */
__attribute__((noinline, cold)) static uint32_t unwind_to(as_tstate *t, void **slot, uint64_t t1,
                                                          int e) {
    uint32_t k = t->depth;
    while (k > 0 && t->frames[k - 1].slot != slot)
        k--;
    if (k == 0) {
        as_error("return through the thunk with no shadow frame for slot %p", (void *)slot);
        abort();
    }
    int was_busy = t->busy;
    t->busy = 1;
    while (t->depth > k) {
        emit(t, &t->frames[t->depth - 1], t1, NULL, e);
        t->depth--;
    }
    t->busy = was_busy;
    return k;
}

void *as_hook_exit(as_retregs *regs, char *rsp_at_landing) {
    uint64_t t1 = as_clock_raw();
    as_tstate *t = &ts;
    int *ep = errno_ptr(t);
    int e = *ep;
    void **slot = (void **)(rsp_at_landing - sizeof(void *));
    uint32_t k = t->depth;
    if (__builtin_expect(k == 0 || t->frames[k - 1].slot != slot, 0))
        k = unwind_to(t, slot, t1, e);
    as_shadow_frame *f = &t->frames[k - 1];
    void *ret = f->ret; /* read before the frame is freed for a signal handler */
    int was_busy = t->busy;
    t->busy = 1; /* calls made by the pipeline (first ring of a thread) pass through */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    emit(t, f, t1, regs, e);
    t->depth = k - 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    t->busy = was_busy;
    *ep = e;
    return ret;
}

uint64_t as_hook_untracked(void) {
    return __atomic_load_n(&untracked_calls, __ATOMIC_RELAXED);
}

uint32_t as_hook_depth(void) {
    return ts.depth;
}
