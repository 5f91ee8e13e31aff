/* hookable.h - which function symbols are never wrapped, and why: functions that return
 * twice, symbols not entered by a call (compiler fragments, signal-return and context
 * trampolines, labels inside a function), functions with a calling convention of their
 * own, symbols outside executable code. Shared by the installer, the entry patcher and
 * `agentsight check`, so all three refuse the same symbols with the same words. */
#ifndef AS_HOOKABLE_H
#define AS_HOOKABLE_H

#include <stddef.h>
#include <stdint.h>

/* What a symbol is, for wrapping. AS_HOOKABLE: a function entered by a call. */
enum as_nohook {
    AS_HOOKABLE = 0,
    AS_NOHOOK_RETURNS_TWICE, /* setjmp family, vfork, getcontext, swapcontext, savectx */
    AS_NOHOOK_FRAGMENT,      /* foo.cold, foo.cold.1: part of foo, reached by jumps */
    AS_NOHOOK_NOT_CALLED,    /* _start, __restore_rt, __start_context: entered by a jump or
                                a return, with no return address on the stack */
    AS_NOHOOK_CONVENTION,    /* mcount, __fentry__, __morestack, __tls_get_addr: callers
                                rely on registers a C function may change */
    AS_NOHOOK_UNWINDER,      /* _Unwind_*, personality routines, _dl_find_object: run
                                while an exception unwinds through the frames whose return
                                addresses wrapping diverted */
    AS_NOHOOK_LABEL,         /* an address inside another function, or an .L label */
    AS_NOHOOK_NO_SIZE,       /* size 0 and reached by no GOT slot: nothing says it starts a
                                function */
    AS_NOHOOK_NOT_EXEC,      /* outside the object's executable segments */
    AS_NOHOOK_OWN_USE,       /* entry patching only: __errno_location, clock_gettime: the
                                thunk calls them before it can tell its own calls from the
                                program's (as_nohook_entry_classify) */
    AS_NOHOOK_KINDS
};

/* What is known of one function symbol. */
typedef struct as_symfacts {
    const char *name;     /* without @version */
    uint64_t size;        /* st_size */
    int exported;         /* in .dynsym, defined, default or protected visibility */
    int exec;             /* 1 inside an executable PT_LOAD, 0 outside, -1 unknown */
    const char *inside;   /* the function whose body holds its address past its start,
                             or NULL */
    const char *alias_of; /* a symbol at the same address that is not hookable (a
                             returns-twice name), or NULL */
} as_symfacts;

/* Classifies f. Returns AS_HOOKABLE or the first AS_NOHOOK_* reason that applies, in the
 * order of the enum. Pure; this function can't fail. */
int as_nohook_classify(const as_symfacts *f);

/* Classifies f for entry patching (hook=entry, or hook=auto on a function no GOT slot
 * reaches): as_nohook_classify, then AS_NOHOOK_OWN_USE for the functions the thunk itself
 * calls before its reentrancy guard (a patched entry would send the thunk back into
 * itself). Their GOT slots may still be wrapped. Pure; this function can't fail. */
int as_nohook_entry_classify(const as_symfacts *f);

/* Whether name (without @version) names a function that returns twice: setjmp, sigsetjmp
 * with one or two leading '_', savectx, vfork, getcontext, swapcontext (and their '__'
 * forms). The list GCC's special_function_p marks returns_twice, plus glibc's aliases and
 * swapcontext (returns_twice under CET in <ucontext.h>). */
int as_returns_twice(const char *name);

/* Writes why f is not wrapped (kind from as_nohook_classify), one clause starting with the
 * quoted name: "'vfork' returns twice; a wrapped call cannot return twice". Returns buf.
 * This function can't fail (the text is cut at cap). */
const char *as_nohook_why(int kind, const as_symfacts *f, char *buf, size_t cap);

/* Short name of a kind for summaries and `check`: "returns twice", "compiler fragment",
 * "not entered by a call", "own calling convention", "label inside a function", "no
 * size", "not executable", "used by the interposer". */
const char *as_nohook_kind_name(int kind);

/* ---- finding the function around an address ---- */

/* The start and end of each sized function of one object, sorted by start, to tell a
 * label inside a function from a function's entry. */
typedef struct as_fnrange {
    uint64_t lo, hi; /* [lo, hi) */
    const char *name;
} as_fnrange;

typedef struct as_fnindex {
    as_fnrange *r;
    size_t n;
} as_fnindex;

/* Builds the index over n symbols given as parallel reads through get(i, &lo, &size,
 * &name). Returns 0, or -1 when out of memory (idx then empty: nothing is found inside).
 * Strings are borrowed. */
int as_fnindex_build(as_fnindex *idx, size_t n,
                     void (*get)(const void *ctx, size_t i, uint64_t *value, uint64_t *size,
                                 const char **name),
                     const void *ctx);
void as_fnindex_free(as_fnindex *idx);

/* The name of a function whose body [lo, hi) holds value with lo < value, or NULL. */
const char *as_fnindex_inside(const as_fnindex *idx, uint64_t value);

/* Copies into out (at most cap) the functions other than the one starting at value whose
 * body lies within window bytes before or after value, nearest first on each side; they
 * may jump into the first bytes of the function at value (glibc's __mempcpy_* ends with a
 * jump past the first instruction of __memmove_*). Returns how many. */
size_t as_fnindex_near(const as_fnindex *idx, uint64_t value, uint64_t window, as_fnrange *out,
                       size_t cap);

/* ---- telling the user ---- */

struct as_config;

/* Names of the returns-twice functions as spelled in symbol tables (for finding their
 * aliases by address); *n gets the count. This function can't fail. */
const char *const *as_returns_twice_names(size_t *n);

/*
 * as_nohook_note - records that entry idx of cfg reached symbol f (in object lib) and that
 * it is not wrapped for reason kind. An entry naming the symbol exactly gets one warning
 * "FILE:LINE:1: WHY: not tracked" (once per entry and process); a glob skips it silently
 * (a debug line) and counts it, for as_nohook_explain. Call under the installer's lock.
 * This function can't fail (out of memory: the count is lost, the warning still printed).
 */
void as_nohook_note(const struct as_config *cfg, int idx, int kind, const as_symfacts *f,
                    const char *lib);

/* For an entry that matched nothing wrappable: when it reached symbols that are never
 * wrapped, says so once (a warning naming how many were skipped and the first reason)
 * and returns 1 (the entry was explained, it is not "unmatched"); else returns 0. */
int as_nohook_explain(const struct as_config *cfg, int idx);

/* Whether entry idx was refused or skipped something (as_nohook_note was called). */
int as_nohook_seen(int idx);

#endif
