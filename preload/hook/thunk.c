/* thunk.c - the C half of the hot path: what the x86-64 thunk calls at a wrapped
 * function's entry and at its return. Keeps the per-thread shadow stack of calls in
 * flight (the real return addresses), takes the timestamps and writes one AS_MSG_CALL
 * record per call.
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
#include <sys/syscall.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/pipeline.h"
#include "hook/callrec.h"
#include "hook/capture.h"
#include "hook/config.h"
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
_Static_assert(offsetof(as_shadow_frame, caller_rbp) == 0, "[rbp] in thunk.S CFI");
_Static_assert(offsetof(as_shadow_frame, ret) == 8, "[rbp+8] in thunk.S CFI");

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
    int busy;                /* inside as_hook_enter/exit: nested calls pass through */
    int32_t tid;             /* cached gettid(), 0 = not yet (reset in a fork child) */
    int *errno_p;            /* this thread's errno (saves a libc call per read) */
    int dead;                /* the thread is exiting: track nothing more */
    uintptr_t stack_lo, stack_hi;  /* this thread's own stack, 0 = unknown */
    struct as_tstate *next;        /* registry of threads with a shadow stack */
} as_tstate;

/* A hole: a frame taken out of the middle of a shadow stack (a coroutine returned while
 * another one parked above it, or the call returned on another thread). Its slot is NULL;
 * holes on top are popped by the next slow path. Frames never move: rbp of a parked call
 * points at its frame (the CFI reads it). */

static __thread as_tstate ts;

/* Threads with a shadow stack, and frames of exited threads whose slot still held our
 * landing (a coroutine parked there may return on another thread): searched only when a
 * call returns through a slot its own thread does not know. */
#define AS_ORPHANS 256
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static as_tstate *reg_head;
static as_shadow_frame orphans[AS_ORPHANS];
static pthread_key_t frames_key;
static int frames_key_ok;

int as_hook_enabled = 1;
int as_capture_off;
unsigned char as_thunk_vec_mode;
static uint64_t untracked_calls; /* atomic; only touched when a stack is full */

static void fork_prepare(void) {
    pthread_mutex_lock(&reg_lock);
}

static void fork_parent(void) {
    pthread_mutex_unlock(&reg_lock);
}

static void child_after_fork(void) {
    ts.tid = 0; /* the child's only thread has a new tid */
    /* The other threads are gone: only this one's stack remains registered. */
    reg_head = ts.frames ? &ts : NULL;
    ts.next = NULL;
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

__attribute__((constructor)) static void thunk_init(void) {
    as_thunk_vec_mode = detect_vec_mode();
    frames_key_ok = pthread_key_create(&frames_key, thread_exit) == 0;
    pthread_atfork(fork_prepare, fork_parent, child_after_fork);
}

/* Returns the cached thread id; fetches it once per thread. Can't fail. */
static inline int32_t thread_id(as_tstate *t) {
    if (__builtin_expect(t->tid == 0, 0))
        t->tid = (int32_t)syscall(SYS_gettid);
    return t->tid;
}

/* Writes one record for frame f ending at t1, with the frame's typed capture behind it,
 * and frees the capture. r is NULL for a frame that did not return (flags then say how it
 * was left). A full ring drops the record (counted by the pipeline); a capture too large
 * for the ring is dropped alone. May change errno. */
static void emit(as_tstate *t, as_shadow_frame *f, uint64_t t1, const as_retregs *r, int errno_out,
                 uint32_t flags) {
    const void *cap = f->cap_len ? as_capture_data(f) : NULL;
    uint32_t ext = cap ? f->cap_len : 0;
    as_callrec *rec = as_pipe_reserve(AS_MSG_CALL, sizeof *rec + ext, 0);
    if (!rec && ext) {
        ext = 0;
        rec = as_pipe_reserve(AS_MSG_CALL, sizeof *rec, 0);
    }
    if (rec) {
        rec->id = f->id;
        rec->flags = r ? AS_CALL_RETURNED : flags;
        rec->tid = thread_id(t);
        rec->errno_in = f->errno_in;
        rec->errno_out = errno_out;
        rec->ext = ext;
        rec->t0 = f->t0;
        rec->t1 = t1;
        rec->rax = r ? r->rax : 0;
        rec->rdx = r ? r->rdx : 0;
        rec->xmm0 = r ? r->xmm[0].lo : 0;
        if (ext)
            memcpy(rec + 1, cap, ext);
        as_pipe_commit(rec);
    }
    as_capture_release(f);
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
        if (f->slot > slot || *f->slot == (void *)as_thunk_exit ||
            *f->slot == (void *)as_thunk_full_exit)
            return;
        if (!now)
            now = as_clock_raw();
        emit(t, f, now, NULL, errno_now, AS_CALL_NOT_RETURNED);
        t->depth--;
    }
}

/* Returns max_string for target tg: the entry's (the parser resolved [output] and the
 * default into it), else the default. */
static inline int max_string_of(const as_target *tg) {
    int m = tg->entry ? tg->entry->max_string : 0;
    return m > 0 ? m : AS_MAX_STRING_DEFAULT;
}

/* Returns the prototype whose values are captured for tg, or NULL (no prototype, or
 * capture switched off for the entry or everywhere). */
static inline const as_proto *capture_proto(const as_target *tg) {
    const as_proto *p = tg->proto;
    if (!p || as_capture_off || (tg->entry && tg->entry->capture_none))
        return NULL;
    return p;
}

/* The entry of both stub kinds; landing is the exit the thunk's call will push. */
__attribute__((always_inline)) static inline as_enter_ret enter(uint32_t id, as_regs *regs,
                                                                void **slot, void *landing) {
    const as_target *tg = &as_targets[id];
    as_enter_ret out = {tg->orig, NULL};
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
    const as_proto *p = capture_proto(tg);
    if (p) {
        as_capture_entry(f, p, max_string_of(tg), regs, slot);
        *ep = e;
    }
    f->t0 = as_clock_raw(); /* after the capture: the duration is the function's own */
    t->depth = d + 1;
    /* The thunk's call writes the same value; storing it now already marks the frame live
     * for a signal handler that runs in between (see drop_dead). */
    *slot = landing;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    t->busy = 0;
    out.frame = f;
    return out;
}

as_enter_ret as_hook_enter(uint32_t id, as_regs *regs, void **slot) {
    return enter(id, regs, slot, (void *)as_thunk_exit);
}

as_enter_ret as_hook_enter_full(uint32_t id, as_regs *regs, void **slot) {
    return enter(id, regs, slot, (void *)as_thunk_full_exit);
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
        emit(t, &t->frames[t->depth - 1], t1, NULL, e, AS_CALL_NOT_RETURNED);
        t->depth--;
    }
    t->busy = was_busy;
    return k;
}

as_exit_ret as_hook_exit(as_retregs *regs, char *rsp_at_landing) {
    uint64_t t1 = as_clock_raw();
    as_tstate *t = &ts;
    int *ep = errno_ptr(t);
    int e = *ep;
    void **slot = (void **)(rsp_at_landing - sizeof(void *));
    uint32_t k = t->depth;
    if (__builtin_expect(k == 0 || t->frames[k - 1].slot != slot, 0))
        k = unwind_to(t, slot, t1, e);
    as_shadow_frame *f = &t->frames[k - 1];
    /* read before the frame is freed for a signal handler */
    as_exit_ret out = {f->ret, f->caller_rbp};
    int was_busy = t->busy;
    t->busy = 1; /* calls made by the pipeline (first ring of a thread) pass through */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (f->cap_off != UINT32_MAX) {
        const as_target *tg = &as_targets[f->id];
        const as_proto *p = capture_proto(tg);
        if (p)
            as_capture_exit(f, p, max_string_of(tg), regs);
    }
    emit(t, f, t1, regs, e, AS_CALL_RETURNED);
    t->depth = k - 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    t->busy = was_busy;
    *ep = e;
    return out;
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
    as_tstate *t = &ts;
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
        if (f->slot == slot)
            break;
    }
    t->busy = was_busy;
    *ep = e;
    return URC_CONTINUE_UNWIND;
}

uint64_t as_hook_untracked(void) {
    return __atomic_load_n(&untracked_calls, __ATOMIC_RELAXED);
}

uint32_t as_hook_depth(void) {
    return ts.depth;
}
