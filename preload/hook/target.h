/* target.h - the table of wrapped functions: one entry per (symbol, defining object),
 * shared by the installer (GOT, dlsym, entry patches), the thunk and the record decoder.
 *
 * Targets are only ever appended (under as_targets_lock); an id, once handed out, stays
 * valid for the life of the process, so the hot path reads as_targets[id] without a lock.
 * A target whose defining object was unloaded (dlclose) is retired: lookups by address
 * skip it, so a function loaded later at the same address gets a target of its own. */
#ifndef AS_TARGET_H
#define AS_TARGET_H

#include <pthread.h>
#include <stdint.h>

#include "hook/config.h"
#include "proto.h"

#define AS_MAX_TARGETS 4096

/* How a call reached the thunk (metadata "hook"). */
enum as_hook_via { AS_VIA_GOT = 1, AS_VIA_DLSYM = 2, AS_VIA_ENTRY = 4 };

struct as_entry; /* config.h */

typedef struct as_target {
    void *orig;                   /* the resolved function (never a lazy PLT stub) */
    const char *symbol;           /* e.g. "sqlite3_step" */
    const char *action_name;      /* name= of the entry, else symbol */
    const char *library;          /* file name of the defining object: "libsqlite3.so.0" */
    const struct as_entry *entry; /* config entry that selected it (prototype, options) */
    const as_proto *proto;        /* entry's prototype, else DWARF's, else NULL */
    uint32_t id;
    uint32_t via;             /* enum as_hook_via bits seen so far */
    uintptr_t obj_lo, obj_hi; /* the defining object's PT_LOAD range; 0, 0 = unknown */
    int retired;              /* its object was unloaded (atomic) */
    uint32_t captures;        /* AS_CAPTURES_* bits, read by the thunk (atomic) */
} as_target;

/* as_target.captures: its calls capture (proto set, the entry not capture=none, unless
 * capture = off everywhere); their capture plan needs only the integer registers, so the
 * thunk's assembly entry captures them (capture.c sets it once the plan is made). */
#define AS_CAPTURES 1u
#define AS_CAPTURES_ASM 2u

extern as_target as_targets[AS_MAX_TARGETS];

/* Per target id: 0 when its entry has no error_if rule. Only a target with one has errno
 * 0 while a call runs (the caller's value given back when the call sets none), so that
 * the rule sees what the call set, ENOENT after ENOENT included. Every other call sees
 * and leaves errno exactly as without the interposer: a function may read the caller's
 * value (PyErr_SetFromErrno, perror, printf's %m). Non-zero, it also says how a call is
 * judged against the rule from the return register and errno alone (as
 * as_callrec_failed judges it), for the full-ring exit of the thunk, which counts
 * failures without calling C: AS_JUDGE_* in the low 3 bits, and from bit
 * AS_JUDGE_DROP_SHIFT the bytes of rax above the returned value (8 - its size; 0 when
 * rax is the value). Set before the id is published, and again by as_target_set_proto
 * (one byte store, non-zero either way: a call in flight sees one judge or the other). */
enum {
    AS_JUDGE_NONE = 0,    /* no error rule: never failed, errno untouched */
    AS_JUDGE_C,           /* judged in C (a float return) */
    AS_JUDGE_NEVER,       /* a value rule on a function that returns no value to judge */
    AS_JUDGE_ZERO,        /* failed when the value is 0 (null, zero, false) */
    AS_JUDGE_NONZERO,     /* failed when it is not 0 */
    AS_JUDGE_NEG,         /* failed when the value's sign bit is set (a signed type) */
    AS_JUDGE_NEG_UNTYPED, /* failed when as_untyped_int reads it negative */
    AS_JUDGE_ERRNO        /* failed when the call set errno */
};
#define AS_JUDGE_DROP_SHIFT 3
extern uint8_t as_target_errif[AS_MAX_TARGETS];
extern uint32_t as_ntargets; /* published with release semantics after filling */
extern pthread_mutex_t as_targets_lock;

/* Finds the target for orig, or adds one. Returns its id, or -1 when the table is full.
 * Takes as_targets_lock. Copies nothing: strings must live for the process lifetime. */
int as_target_get(void *orig, const char *symbol, const char *action_name, const char *library,
                  const struct as_entry *entry);

/* The same, recording the range [obj_lo, obj_hi) of the defining object (for retiring the
 * target when that object is unloaded). Only live targets are found. */
int as_target_get_in(void *orig, const char *symbol, const char *action_name, const char *library,
                     const struct as_entry *entry, uintptr_t obj_lo, uintptr_t obj_hi);

/* Retires target id (its object was unloaded). This function can't fail. */
void as_target_retire(uint32_t id);

/* Gives target t the prototype p (NULL: none), and with it the captures bits the thunk
 * reads (AS_CAPTURES_ASM cleared: a plan made for another prototype is not used). Before any hook
 * leads to t: a call in flight sees one or the other. */
void as_target_set_proto(as_target *t, const as_proto *p);

/* Returns max_string for target tg: the entry's (the parser resolved [output] and the
 * default into it), else the default. Usable from general-registers-only code. */
__attribute__((always_inline, target("general-regs-only"))) static inline int
as_target_max_string(const as_target *tg) {
    int m = tg->entry ? tg->entry->max_string : 0;
    return m > 0 ? m : AS_MAX_STRING_DEFAULT;
}

/* Whether target id is retired. */
static inline int as_target_retired(uint32_t id) {
    return __atomic_load_n(&as_targets[id].retired, __ATOMIC_ACQUIRE);
}

/* The address a GOT slot or dlsym result should hold to route calls of target id through
 * the thunk (a per-target stub in preload/hook/x86_64/). */
void *as_thunk_addr(uint32_t id);

/* The address an entry patch of target id jumps to: its full-preservation stub, which
 * changes no register a direct caller may rely on (thunk.h). NULL for an id outside the
 * stub array. */
void *as_thunk_addr_full(uint32_t id);

/* The target id whose stub is at addr, or -1 when addr is no stub of ours. */
int as_thunk_id(const void *addr);

#endif
