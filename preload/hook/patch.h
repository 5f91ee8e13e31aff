/* patch.h - entry patching of a function in memory: copy its first instructions into a
 * trampoline (a callable stand-in for the original) and make its entry jump elsewhere.
 * Arch-neutral interface; the x86-64 implementation is preload/hook/x86_64/patch.c. */
#ifndef AS_PATCH_H
#define AS_PATCH_H

#include <stddef.h>
#include <stdint.h>

#define AS_PATCH_MAX_SAVED 32
#define AS_PATCH_MAX_BOUNDS 8

/* One patch site. Filled by as_patch_prepare; owned by the caller (entry.c keeps one per
 * patched function for the life of the process: the trampoline is never freed). */
typedef struct as_patch {
    uint8_t *fn;      /* the function's entry */
    uint8_t *at;      /* where the jump is written: fn, or fn + 4 after an endbr64 */
    uint8_t *tramp;   /* callable: endbr64, the displaced instructions relocated, then a
                         jump back to at + len. Behaves exactly like fn. */
    uint8_t *jump_to; /* what the jmp at `at` reaches: dest itself or a near jump pad */
    void *dest;       /* where calls of fn go once installed */
    uint8_t saved[AS_PATCH_MAX_SAVED]; /* the original bytes at `at` */
    uint8_t len;                       /* displaced bytes (>= 5) */
    uint8_t installed;                 /* the jump is in place */
    /* Instruction starts inside the displaced bytes (offsets 1..len-1 from at) and where
     * the same instruction begins in the trampoline: a thread stopped at one of them while
     * the jump is written is moved to its copy (as_patch_install). */
    uint8_t nbound;
    uint8_t bound_at[AS_PATCH_MAX_BOUNDS];
    uint8_t bound_tramp[AS_PATCH_MAX_BOUNDS];
    uint16_t unanswered; /* threads that did not answer the move request (install) */
} as_patch;

/*
 * as_patch_prepare - decodes the first instructions of fn (size bytes long, from the
 * symbol table), checks that the entry can be patched safely and builds its trampoline in
 * memory within +/-2 GB of fn. fn itself is not modified.
 *
 * Refused (returns -1, reason in why, nothing allocated): a function shorter than the
 * jump, an unknown size, a branch of the function back into the displaced bytes, an
 * instruction that cannot be relocated (loop, jrcxz, xbegin, an undecodable byte), a
 * RIP-relative operand out of reach of the trampoline, a call that is not the last
 * displaced instruction (its return address would fall inside the jump), or no memory
 * near fn.
 * Returns 0 with *p filled (p->installed 0). Takes the patcher's lock; allocates.
 */
int as_patch_prepare(void *fn, size_t size, as_patch *p, char *why, size_t cap);

/*
 * as_patch_check_near - refuses the prepared site p (returns -1, reason in why) when the
 * code at [lo, lo + size), another function near it, has a relative branch landing inside
 * its displaced bytes past their first (the jump written there would be entered in its
 * middle). Returns 0 when none does, or when the decoder is missing (as_patch_prepare
 * would have refused). Reads the code only.
 */
int as_patch_check_near(const as_patch *p, const void *lo, size_t size, char *why, size_t cap);

/*
 * as_patch_install - makes the entry of a prepared site jump to dest, safely for threads
 * executing fn at that moment: an int3 is written first (a SIGTRAP handler sends a thread
 * that hits it to dest), then the jump's last four bytes, then its first byte, with a
 * cross-modifying-code barrier between the steps. The text page's protection is restored.
 *
 * Threads already past the int3 but inside the displaced bytes (preempted there, or
 * blocked in a syscall there) would resume in the middle of the new jump. Before the jump
 * is written, every other thread that runs, or is blocked with its pc inside those bytes,
 * gets a SIGURG queued with a private cookie (SI_QUEUE; while the requests are out, a
 * handler chaining to the program's, with its mask and flags, is installed): the handler
 * moves a pc found inside the displaced bytes to the same instruction in the trampoline
 * and answers. Threads blocked in a syscall elsewhere are not disturbed. The wait for
 * answers is bounded (250 ms); p->unanswered counts threads that did not answer (SIGURG
 * blocked, exiting). Not covered: a thread running a signal handler while the context it
 * interrupted lies inside the displaced bytes (the request reaches the handler's context,
 * not the interrupted one).
 *
 * Returns 0, or -1 with a reason in why (fn unchanged: page protection could not be
 * changed, dest out of reach and no jump pad). Takes the patcher's lock.
 */
int as_patch_install(as_patch *p, void *dest, char *why, size_t cap);

/* Whether addr lies in a trampoline page of the patcher. This function can't fail. */
int as_patch_is_trampoline(const void *addr);

/* Around fork (pthread_atfork handlers of the caller, which holds its own lock first):
 * prepare waits, bounded, for a patch in progress to end and holds the patcher's lock;
 * parent releases it; child makes it usable again whatever state it was in. */
void as_patch_fork_prepare(void);
void as_patch_fork_parent(void);
void as_patch_fork_child(void);

#endif
