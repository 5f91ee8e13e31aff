/* capture.h - typed capture on the hot path: for a target with a prototype, the argument
 * values the SysV x86-64 classification puts in registers or on the stack, bounded copies
 * of strings, and the returned string or aggregate. Captures live in a per-thread arena
 * between entry and exit and travel behind the call record as "items"; no pointer into
 * the agent survives the call. Memory the agent hands us is read without ever faulting. */
#ifndef AS_CAPTURE_H
#define AS_CAPTURE_H

#include <emmintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "core/record.h"
#include "hook/proto.h"
#include "hook/target.h"
#include "hook/thunk.h"

/* Bytes of the per-thread arena (mapped on a thread's first typed call). */
#define AS_CAP_ARENA (512 * 1024)
/* Most item bytes one call may carry (arguments and return together). */
#define AS_CAP_MAX_CALL (128 * 1024)

/* The capture items (as_cap_item, enum as_cap_tag, AS_CAP_TRUNC, AS_CAP_RET) are part of
 * the record format: core/record.h. */

/* Hot path, at entry of a tracked call whose target has prototype p: appends the items
 * of every parameter to the calling thread's arena (maps it on first use) and sets
 * f->cap_off / f->cap_len. max_string bounds each string. On any failure (no arena) the
 * frame captures nothing (cap_len 0). Never faults, never changes errno. */
void as_capture_entry(as_shadow_frame *f, const as_proto *p, int max_string, const as_regs *regs,
                      void *const *slot);

/* The capture of a prototype worked out once, off the hot path, for as_capture_entry_plan:
 * when every parameter is a scalar (integer, bool, enum, pointer, float, double) or a
 * string that arrives in a register, and the return adds no item at entry, fast is 1 and
 * parameter i is the word src[i] & ~AS_PLAN_STR of as_regs (0-5: rdi..r9, 8 + 2k: xmm k),
 * copied as text when src[i] has AS_PLAN_STR; otherwise the general classification runs
 * on every call. */
#define AS_PLAN_STR 0x80
typedef struct as_cap_plan {
    const as_proto *proto; /* the prototype it was made for (atomic); NULL: not yet */
    uint32_t need;         /* the most one call's items take (made for a target) */
    uint32_t max;          /* the target's max_string (made for a target) */
    uint8_t claimed;       /* a thread is making it, or made it (atomic) */
    uint8_t fast;
    uint8_t n;        /* fast: parameters */
    uint8_t nstr;     /* fast: how many parameters are strings */
    uint8_t gpr_only; /* fast, and every parameter comes in an integer register (src <
                         6): the thunk's assembly can capture the calls (plan_of) */
    uint8_t src[AS_PROTO_MAX_PARAMS];
    uint8_t ret_str; /* the return is a string (captured at exit) */
} as_cap_plan;

/* The plans of the targets (made on a target's first typed call), and the memory known to
 * stay readable: read by the thunk's assembly entry (x86_64/thunk.S), which captures the
 * calls of a target whose plan is gpr_only (AS_CAPTURES_ASM in target.h) itself, with the
 * same items as_capture_entry_plan writes. */
extern as_cap_plan as_cap_plans[AS_MAX_TARGETS];
typedef struct as_cap_region {
    uintptr_t lo, hi;
} as_cap_region;
extern as_cap_region as_cap_regions[];
extern int as_cap_nregions;
extern uintptr_t as_cap_brk_lo;

/* Takes the stable regions of the objects loaded now and the heap's start (reads
 * /proc/self/stat). Run by a constructor, except in the interposer, which calls it before
 * installing anything. Idempotent; not thread-safe (start-up only). */
void as_capture_start(void);
/* 16 bytes of 0xff then 16 of 0: loaded at 16 - k, a mask that keeps the first k bytes
 * (the string copies of capture.c and thunk.S). */
extern const unsigned char as_cap_keep_mask[32];

/* Returns the prototype whose values are captured for target tg, or NULL (no prototype,
 * or capture switched off for its entry (AS_CAPTURES says both) or everywhere). Usable
 * from general-registers-only code. */
__attribute__((always_inline, target("general-regs-only"))) static inline const as_proto *
as_capture_proto(const as_target *tg) {
    if (!(__atomic_load_n(&tg->captures, __ATOMIC_RELAXED) & AS_CAPTURES) || as_capture_off)
        return NULL;
    return tg->proto;
}

/* Makes the plan of prototype p into *pl (plain stores; the caller publishes it). Can't
 * fail: a prototype the fast case cannot serve gets fast 0. Library-free. */
void as_capture_plan_make(as_cap_plan *pl, const as_proto *p);

/* as_capture_entry for a call of target f->id: the fast case of the target's plan (made
 * on the target's first typed call, kept per target id), else as_capture_entry. Captures
 * exactly the same items. Never faults; the fast case never changes errno. */
void as_capture_entry_plan(as_shadow_frame *f, const as_proto *p, int max_string,
                           const as_regs *regs, void *const *slot);

/* Hot path, at exit: appends the return value's item when the return type needs one
 * (a string, or an aggregate) after the frame's arguments. Never faults. */
void as_capture_exit(as_shadow_frame *f, const as_proto *p, int max_string, const as_retregs *r);

/* Per-thread capture state (capture.c owns it; inline readers below). */
typedef struct as_cap_tstate {
    char *arena;
    uint32_t top;       /* bytes in use */
    int arena_failed;   /* mapping failed once: capture nothing on this thread */
    uintptr_t stack_lo; /* this thread's stack, [stack_lo, stack_hi); 0 = not known */
    uintptr_t stack_hi;
    uint64_t slow; /* reads done through the system call */
    int warm;      /* a tracked call returned through the full thunk on this thread */
} as_cap_tstate;
extern __thread as_cap_tstate as_cap_ts;

/* Start of the frame's items in the arena (valid until as_capture_release), or NULL. */
static inline const void *as_capture_data(const as_shadow_frame *f) {
    if (f->cap_off == UINT32_MAX || !as_cap_ts.arena)
        return NULL;
    return as_cap_ts.arena + f->cap_off;
}

/* Frees the frame's arena space (and any left above it by frames dropped earlier). */
static inline void as_capture_release(const as_shadow_frame *f) {
    if (f->cap_off != UINT32_MAX && f->cap_off <= as_cap_ts.top)
        as_cap_ts.top = f->cap_off;
}

/*
 * as_safe_read - copies up to n bytes from src (any address the agent gave us) to dst
 * without ever faulting. Returns the number of bytes copied: n, or fewer when memory at
 * src + result is unreadable (0: src itself is unreadable). Memory known to stay mapped
 * (this thread's stack, the brk heap, the objects loaded at start) is read directly;
 * anything else through process_vm_readv on our own pid. May set errno.
 */
size_t as_safe_read(void *dst, const void *src, size_t n);

/*
 * as_safe_strcpy - copies the NUL-terminated string at src, at most max bytes (no NUL
 * written), to dst, which must have room for max + 1 bytes (bytes after the string may be
 * written too). Returns the length copied and sets *trunc when the string was longer
 * than max or ran into unreadable memory; returns (size_t)-1 when src is unreadable.
 * Makes no library call unless src lies outside the memory known to stay mapped.
 */
size_t as_safe_strcpy(char *dst, const char *src, size_t max, int *trunc);

/* Copies n bytes from src to dst with SSE2 16-byte loads and stores (legacy encodings:
 * xmm0-15 only, the upper halves and zmm16-31 untouched) and plain 8-byte ones: no
 * library call, so no wider vector state is touched. For copying capture items into a
 * record on the hot path (see as_record_copy_library_free). The empty asm keeps the
 * compiler from turning the tail loop into a call of memcpy. Can't fail. */
static inline void as_capture_copy(void *dst, const void *src, size_t n) {
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm_storeu_si128((__m128i *)(void *)(d + i),
                         _mm_loadu_si128((const __m128i *)(const void *)(s + i)));
    if (i + 8 <= n) {
        uint64_t w;
        __builtin_memcpy(&w, s + i, 8);
        __builtin_memcpy(d + i, &w, 8);
        i += 8;
    }
    for (; i < n; i++) {
        unsigned char c = s[i];
        __asm__("" : "+r"(c));
        d[i] = c;
    }
}

/* Defined (const char, any value) by the file that writes call records (thunk.c) when it
 * copies capture items into a record with as_capture_copy instead of memcpy: then a
 * typed call needs no wide vector save around its exit. Weak and hidden: while nobody
 * defines it, its address is NULL and memcpy is assumed. */
extern const char as_record_copy_library_free __attribute__((weak, visibility("hidden")));

/* For the full-preservation thunk (x86_64/thunk.S) only, with no register of the caller
 * saved but xmm0-15 and the GPRs: 1 when the C side of this call (as_hook_enter_full for
 * target id; as_hook_exit at the full exit landing) may run a library routine that uses vector
 * state beyond xmm0-15 (ymm/zmm upper halves, zmm16-31, k0-7: the AVX2/EVEX memcpy, strlen...), so
 * the thunk saves that state around it; 0 when only the library-free common path can run.
 * Library-free themselves; can't fail. */
int as_capture_vec_risk_entry(uint32_t id);
int as_capture_vec_risk_exit(void);

/* Reads served by the system call instead of directly, on the calling thread (tests and
 * the benchmark check which path a read took). */
uint64_t as_capture_slow_reads(void);

/* Bounds [*lo, *hi) of the calling thread's stack, both 0 when unknown. Not for the hot
 * path (pthread_getattr_np): called once per thread. Can't fail. */
void as_thread_stack(uintptr_t *lo, uintptr_t *hi);

#endif
