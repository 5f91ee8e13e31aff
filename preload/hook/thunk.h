/* thunk.h - the C side of the interposer's hot path: the register frames the x86-64
 * thunk (preload/hook/x86_64/thunk.S) hands to C, the per-thread shadow stack that
 * remembers where each tracked call must return, and the counters of calls that passed
 * through untracked. */
#ifndef AS_THUNK_H
#define AS_THUNK_H

#include <stdint.h>

/* Deepest nesting of tracked calls per thread; deeper calls pass through untracked
 * (counted in as_hook_untracked()). The shadow stack is mapped on a thread's first
 * tracked call and unmapped at its exit: the static TLS of a thread stays a few bytes, so
 * threads with the smallest stacks (PTHREAD_STACK_MIN) can still be created. */
#define AS_SHADOW_MAX 512

/* Argument registers as the thunk saved them at entry (SysV x86-64). */
typedef struct as_regs {
    uint64_t gpr[6]; /* rdi, rsi, rdx, rcx, r8, r9 */
    uint64_t rax;    /* al = vector registers used by a varargs call */
    uint64_t r10;    /* static chain */
    struct {
        uint64_t lo, hi;
    } __attribute__((aligned(16))) xmm[8];
} as_regs;

/* Return registers as the exit landing saved them. */
typedef struct as_retregs {
    uint64_t rax;
    uint64_t rdx;
    struct {
        uint64_t lo, hi;
    } __attribute__((aligned(16))) xmm[2];
} as_retregs;

/* One tracked call in flight. The first two members form a frame-pointer record: while
 * the original runs, rbp points at the frame, so [rbp] is the caller's rbp and [rbp+8] the
 * caller's real return address. The CFI of the call site in thunk.S says exactly that, so
 * C++ exceptions, debuggers and frame-pointer profilers unwind through a tracked call. */
typedef struct as_shadow_frame {
    void *caller_rbp;   /* rbp of the caller (restored by the exit landing) */
    void *ret;          /* the caller's return address */
    void **slot;        /* the stack slot that held the caller's return address */
    uint64_t t0;        /* as_clock_raw() at entry */
    uint32_t id;        /* target id */
    int errno_in;       /* errno at entry */
    uint32_t cap_off;   /* typed capture of this call in the thread's arena (capture.h) */
    uint32_t cap_len;   /* its bytes; 0 = nothing captured */
    uint32_t reported;  /* already recorded as not returned (exit, exec): no second record */
    uint32_t ret_items; /* typed: the return adds an item at exit (a string, a struct) */
} as_shadow_frame;

/* What as_hook_enter_slow / _full tell the thunk (returned in rax:rdx). */
typedef struct as_enter_ret {
    void *orig;             /* the target's original function */
    as_shadow_frame *frame; /* non-NULL: tracked; the thunk calls orig with rbp = frame and
                               as_thunk_exit as the return address. NULL: jump to orig */
} as_enter_ret;

/* What as_hook_exit tells the exit landing (rax:rdx). */
typedef struct as_exit_ret {
    void *ret;        /* the caller's real return address */
    void *caller_rbp; /* the caller's rbp */
} as_exit_ret;

/* Called by the thunk only, when its own common path (an untyped call of a warm thread)
 * does not apply; regs holds the argument registers, xmm0-7 included. as_hook_enter_slow
 * pushes a shadow frame when the call is tracked (and stores as_thunk_exit in *ret_slot;
 * ret_slot[-1] holds the caller's rbp, pushed by the thunk). It never changes errno and
 * can't fail: a call it cannot track passes through. as_hook_exit writes the call record
 * and pops the frame. */
as_enter_ret as_hook_enter_slow(uint32_t id, as_regs *regs, void **ret_slot);
/* The same for the full-preservation stubs (entry-patched targets): the landing stored in
 * *ret_slot is as_thunk_full_exit. */
as_enter_ret as_hook_enter_full(uint32_t id, as_regs *regs, void **ret_slot);
as_exit_ret as_hook_exit(as_retregs *regs, char *rsp_at_landing);

/* Personality routine of the thunk's call site (named by its CFI): when an exception or
 * a forced unwind (thread cancel/exit) leaves a tracked call, its shadow frame is popped
 * and the call recorded as not returned (AS_CALL_EXCEPTION). Never stops an unwind. */
int as_thunk_personality(int version, int actions, uint64_t exc_class, void *exc, void *ctx);

/* Typed capture switched off everywhere ([output] capture = off); set by the installer
 * before the first hook is installed. Names, timings and error rules stay. */
extern int as_capture_off;

/* Provided by thunk.S. The lean stubs (GOT slots, dlsym results: interposable calls,
 * whose callers assume the ABI's clobbers) load the id into r11; the full stubs
 * (entry-patched functions, whose direct callers may assume that registers the function
 * leaves alone survive the call: gcc -fipa-ra) change no register on either side. */
extern char as_thunk_stubs[];
extern char as_thunk_stubs_end[];
void as_thunk_exit(void);
extern char as_thunk_full_stubs[];
extern char as_thunk_full_stubs_end[];
void as_thunk_full_exit(void);

/* How much vector state the full path saves, chosen once from CPUID/XCR0 by thunk.c
 * before any hook exists: 0 = xmm0-15, 1 = ymm0-15 (AVX), 2 = zmm0-31 and k0-7
 * (AVX-512F+BW). */
extern unsigned char as_thunk_vec_mode;
extern unsigned char as_thunk_crc; /* thunk.S seals records with crc32 (SSE 4.2) */
/* Raw clock units -> ns (32.32 fixed point) for summarized calls; 0 until the first one
 * (thunk.c computes it, thunk.S reads it). */
extern uint64_t as_thunk_sum_mult;

/* Master switch read on every call (1 by default): 0 makes every stub a plain jump to the
 * original, e.g. while the installer is not ready. */
extern int as_hook_enabled;

/* Calls that passed through untracked because the shadow stack was full, summed over
 * threads that made them (approximate while threads run). This function can't fail. */
uint64_t as_hook_untracked(void);

/* Number of tracked calls in flight on the calling thread (for tests). */
uint32_t as_hook_depth(void);

/* The entry timestamp (raw clock) of the innermost tracked call in flight on the calling
 * thread, 0 when none (for tests: a wrapped function reads its own call's). */
uint64_t as_hook_top_t0(void);

/* Records every tracked call in flight on the calling thread as not returned (now), once:
 * for a process that ends inside a wrapped function (exit() in it; the pipeline's at-exit
 * flush calls this) or replaces its image (exec: call it before the flush). The frames
 * stay, so a call that does return after all (a failed exec) returns normally, without a
 * second record. Returns the number of records written. Not for signal handlers. */
int as_hook_report_live(void);

/* as_hook_report_live for an exec: the frames it reports are marked as reported only for
 * now, so that as_hook_unreport_live can take them back when the exec fails (the caller
 * took the records back from the ring: those calls go on and return, each recorded once
 * then). Returns the number of records written. */
int as_hook_report_live_exec(void);
void as_hook_unreport_live(void);

/* The return address a call really has: ret itself, or, when ret is a thunk's landing
 * (the function was entered through a stub, which swapped its return address), the
 * caller's own, from the innermost call in flight on this thread. For functions that ask
 * who called them (dlopen, dlsym). */
const void *as_hook_caller(const void *ret);

/* Whether ret is a thunk's landing (as_hook_caller). */
int as_hook_is_landing(const void *ret);

#endif
