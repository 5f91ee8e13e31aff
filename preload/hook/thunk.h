/* thunk.h - the C side of the interposer's hot path: the register frames the x86-64
 * thunk (preload/hook/x86_64/thunk.S) hands to C, the per-thread shadow stack that
 * remembers where each tracked call must return, and the counters of calls that passed
 * through untracked. */
#ifndef AS_THUNK_H
#define AS_THUNK_H

#include <stdint.h>

/* Deepest nesting of tracked calls per thread; deeper calls pass through untracked
 * (counted in as_hook_untracked()). */
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

/* One tracked call in flight. */
typedef struct as_shadow_frame {
    void **slot;  /* the stack slot that held the caller's return address */
    void *ret;    /* the caller's return address */
    uint64_t t0;  /* as_clock_raw() at entry */
    uint32_t id;  /* target id */
    int errno_in; /* errno at entry */
} as_shadow_frame;

/* What as_hook_enter tells the thunk (returned in rax:rdx). */
typedef struct as_enter_ret {
    void *orig;        /* the target's original function */
    uintptr_t tracked; /* 1: a shadow frame was pushed; call orig with as_thunk_exit as
                          the return address. 0: jump to orig untouched */
} as_enter_ret;

/* Called by the thunk only. as_hook_enter pushes a shadow frame when the call is tracked
 * (and stores as_thunk_exit in *ret_slot). It never changes errno and can't fail: a call
 * it cannot track passes through. as_hook_exit returns the caller's real return address
 * after writing the call record. */
as_enter_ret as_hook_enter(uint32_t id, as_regs *regs, void **ret_slot);
void *as_hook_exit(as_retregs *regs, char *rsp_at_landing);

/* Provided by thunk.S. */
extern char as_thunk_stubs[];
extern char as_thunk_stubs_end[];
void as_thunk_exit(void);

/* Master switch read on every call (1 by default): 0 makes every stub a plain jump to the
 * original, e.g. while the installer is not ready. */
extern int as_hook_enabled;

/* Calls that passed through untracked because the shadow stack was full, summed over
 * threads that made them (approximate while threads run). This function can't fail. */
uint64_t as_hook_untracked(void);

/* Number of tracked calls in flight on the calling thread (for tests). */
uint32_t as_hook_depth(void);

#endif
