/* hookable.c - tells the function symbols that must never be wrapped from the ones that
 * may (hookable.h), with one wording for every place that refuses them.
 *
 * Why each kind cannot go through the thunk, which swaps the return address of a call for
 * its exit path and keeps the real one on a per-thread shadow stack:
 * - returns twice (setjmp, vfork, getcontext): the second return finds the shadow frame
 *   already used, or (vfork) the child's return pops the frame the parent then needs;
 * - fragments (foo.cold) are entered by a jump from inside foo: the "return address" on
 *   the stack is foo's own, and foo's registers are live across the jump;
 * - _start, __restore_rt and __start_context are entered with no return address at all
 *   (argc, a signal frame, a context's link are on the stack);
 * - mcount, __fentry__, __morestack and __tls_get_addr are called before a prologue or
 *   with registers their callers keep live across the call;
 * - a label inside a function is reached by the function's own jumps, and patching its
 *   bytes would break the code around it; a zero-size local symbol gives no size to
 *   decode and nothing says a call enters there;
 * - a symbol outside executable segments is data, whatever its type says;
 * - __errno_location and clock_gettime are called by the thunk's slow paths before their
 *   reentrancy guard is up (the thread's errno location, the clock without a TSC): an entry
 *   patch sends the thunk back into itself until the stack overflows. Their calls from
 *   other objects still go through GOT slots, which the thunk's own calls never use.
 * fork and _Fork return once in each process (the child's copy of the shadow stack holds
 * the frame): they are wrapped. longjmp, siglongjmp, setcontext, exit never return: the
 * thunk reports their calls as not returned, which is what happened. */
#include "hook/hookable.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "hook/config.h"

/* Without one or two leading underscores, as GCC compares setjmp names. */
static const char *strip_underscores(const char *name) {
    if (name[0] == '_')
        return name + (name[1] == '_' ? 2 : 1);
    return name;
}

static const char *const g_rt_names[] = {
    "setjmp", "_setjmp", "__setjmp",   "sigsetjmp",    "_sigsetjmp",  "__sigsetjmp",  "savectx",
    "vfork",  "__vfork", "getcontext", "__getcontext", "swapcontext", "__swapcontext"};

const char *const *as_returns_twice_names(size_t *n) {
    *n = sizeof g_rt_names / sizeof g_rt_names[0];
    return g_rt_names;
}

/* Whether name is one of the n strings in names. */
static int in_list(const char *name, const char *const *names, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return 1;
    return 0;
}

#define IN_LIST(name, names) in_list((name), (names), sizeof(names) / sizeof((names)[0]))

int as_returns_twice(const char *name) {
    if (!name)
        return 0;
    if (strncmp(name, "__GI_", 5) == 0) /* glibc's internal alias of the same function */
        name += 5;
    const char *t = strip_underscores(name);
    /* sigjmp_save: glibc's sigsetjmp ends with a jump to it, so it returns where
     * sigsetjmp does, twice */
    static const char *const stripped[] = {"setjmp",      "sigsetjmp", "vfork",      "getcontext",
                                           "swapcontext", "savectx",   "sigjmp_save"};
    return IN_LIST(t, stripped);
}

/* Entry points with no return address on the stack. */
static int not_called(const char *name) {
    static const char *const names[] = {
        "_start",         "__restore_rt",          "__start_context",   "_dl_start",
        "_dl_start_user", "__kernel_rt_sigreturn", "__kernel_sigreturn"};
    return IN_LIST(name, names);
}

/* Functions whose callers expect registers a C function may change to survive. */
static int own_convention(const char *name) {
    static const char *const names[] = {"mcount",
                                        "_mcount",
                                        "__fentry__",
                                        "__morestack",
                                        "__tls_get_addr",
                                        "___tls_get_addr",
                                        "__cyg_profile_func_enter_bare"};
    return IN_LIST(name, names) || strncmp(name, "_dl_tlsdesc_", 12) == 0 ||
           strncmp(name, "_dl_runtime_", 12) == 0 || strncmp(name, "__x86.get_pc_thunk", 18) == 0;
}

/* The exception unwinder's own functions (libgcc_s, libunwind, libstdc++'s personality
 * routines, glibc's FDE lookup): they run while an exception crosses wrapped calls, and
 * read and rewrite the very frames whose return addresses the thunks diverted; wrapped
 * too, a C++ program catching an exception got a wrong callee-saved register back. */
static int unwinder(const char *name) {
    static const char *const names[] = {"_dl_find_object",       "__gcc_personality_v0",
                                        "__gxx_personality_v0",  "__gxx_personality_sj0",
                                        "__gcc_personality_sj0", "__register_frame",
                                        "__deregister_frame",    "__frame_state_for"};
    return IN_LIST(name, names) || strncmp(name, "_Unwind_", 8) == 0 ||
           strncmp(name, "__register_frame_", 17) == 0 ||
           strncmp(name, "__deregister_frame_", 19) == 0 || strncmp(name, "_ULx86_64_", 10) == 0 ||
           strncmp(name, "__gnu_unwind_", 13) == 0 ||
           (strncmp(name, "__", 2) == 0 && strstr(name, "_personality") != NULL);
}

/* Whether name ends in ".cold" or ".cold.N" after a parent name (foo.cold, foo.cold.1,
 * foo.part.0.cold): the out-of-line part of foo that GCC and clang split off. */
static int is_fragment(const char *name) {
    const char *p = name, *hit = NULL;
    while ((p = strstr(p + 1, ".cold")) != NULL)
        hit = p;
    if (!hit || hit == name)
        return 0;
    const char *q = hit + 5;
    if (*q == '\0')
        return 1;
    if (*q != '.' || !q[1])
        return 0;
    for (q++; *q; q++)
        if (*q < '0' || *q > '9')
            return 0;
    return 1;
}

int as_nohook_classify(const as_symfacts *f) {
    if (!f || !f->name)
        return AS_NOHOOK_LABEL;
    if (as_returns_twice(f->name) || f->alias_of)
        return AS_NOHOOK_RETURNS_TWICE;
    if (own_convention(f->name))
        return AS_NOHOOK_CONVENTION;
    if (not_called(f->name))
        return AS_NOHOOK_NOT_CALLED;
    if (unwinder(f->name))
        return AS_NOHOOK_UNWINDER;
    if (is_fragment(f->name))
        return AS_NOHOOK_FRAGMENT;
    if (strncmp(f->name, ".L", 2) == 0 || (!f->exported && f->inside))
        return AS_NOHOOK_LABEL;
    if (f->exec == 0)
        return AS_NOHOOK_NOT_EXEC;
    /* An exported symbol of size 0 is still the target of calls through GOT slots. */
    if (!f->exported && f->size == 0)
        return AS_NOHOOK_NO_SIZE;
    return AS_HOOKABLE;
}

/* Functions the thunk calls before it can tell a nested call from the program's own (see
 * the top of this file). glibc's internal names too: a call inside libc uses them. */
static int own_use(const char *name) {
    static const char *const names[] = {"__errno_location", "clock_gettime", "__clock_gettime",
                                        "__clock_gettime64"};
    if (strncmp(name, "__GI_", 5) == 0) /* glibc's internal alias of the same function */
        name += 5;
    return IN_LIST(name, names);
}

int as_nohook_entry_classify(const as_symfacts *f) {
    int kind = as_nohook_classify(f);
    if (kind == AS_HOOKABLE && own_use(f->name))
        return AS_NOHOOK_OWN_USE;
    return kind;
}

const char *as_nohook_kind_name(int kind) {
    switch (kind) {
    case AS_HOOKABLE:
        return "hookable";
    case AS_NOHOOK_RETURNS_TWICE:
        return "returns twice";
    case AS_NOHOOK_FRAGMENT:
        return "compiler fragment";
    case AS_NOHOOK_NOT_CALLED:
        return "not entered by a call";
    case AS_NOHOOK_CONVENTION:
        return "own calling convention";
    case AS_NOHOOK_UNWINDER:
        return "exception unwinder";
    case AS_NOHOOK_LABEL:
        return "label inside a function";
    case AS_NOHOOK_NO_SIZE:
        return "no size";
    case AS_NOHOOK_NOT_EXEC:
        return "not executable";
    case AS_NOHOOK_OWN_USE:
        return "used by the interposer";
    default:
        return "not hookable";
    }
}

/* The parent of a fragment: name up to ".cold" (foo.part.0.cold -> foo.part.0). */
static int parent_len(const char *name) {
    const char *p = name, *hit = NULL;
    while ((p = strstr(p + 1, ".cold")) != NULL)
        hit = p;
    return hit ? (int)(hit - name) : (int)strlen(name);
}

const char *as_nohook_why(int kind, const as_symfacts *f, char *buf, size_t cap) {
    const char *n = f && f->name ? f->name : "?";
    if (!buf || !cap)
        return "";
    switch (kind) {
    case AS_NOHOOK_RETURNS_TWICE:
        if (f && f->alias_of && !as_returns_twice(n))
            snprintf(buf, cap,
                     "'%s' is '%s', which returns twice; a wrapped call cannot return twice", n,
                     f->alias_of);
        else
            snprintf(buf, cap, "'%s' returns twice; a wrapped call cannot return twice", n);
        break;
    case AS_NOHOOK_FRAGMENT:
        snprintf(buf, cap,
                 "'%s' is a compiler fragment of '%.*s' (entered by a jump inside it, never "
                 "called); calls of '%.*s' cover it",
                 n, parent_len(n), n, parent_len(n), n);
        break;
    case AS_NOHOOK_NOT_CALLED:
        snprintf(buf, cap,
                 "'%s' is entered by a jump or a signal return, not by a call; it has no "
                 "return address to observe",
                 n);
        break;
    case AS_NOHOOK_CONVENTION:
        snprintf(buf, cap,
                 "'%s' has a calling convention of its own (its callers keep registers live "
                 "across it); a wrapper would change them",
                 n);
        break;
    case AS_NOHOOK_UNWINDER:
        snprintf(buf, cap,
                 "'%s' is part of the exception unwinder, which reads and rewrites the frames "
                 "of the calls it unwinds; wrapped, a caught exception could restore wrong "
                 "registers",
                 n);
        break;
    case AS_NOHOOK_LABEL:
        if (f && f->inside)
            snprintf(buf, cap,
                     "'%s' is a label inside '%s', not a function entered by a call; calls of "
                     "'%s' cover it",
                     n, f->inside, f->inside);
        else
            snprintf(buf, cap, "'%s' is a local label, not a function entered by a call", n);
        break;
    case AS_NOHOOK_NO_SIZE:
        snprintf(buf, cap,
                 "'%s' has size 0 and no caller reaches it through a GOT slot; nothing says a "
                 "call enters there",
                 n);
        break;
    case AS_NOHOOK_NOT_EXEC:
        snprintf(buf, cap, "'%s' lies outside the executable code of its object", n);
        break;
    case AS_NOHOOK_OWN_USE:
        snprintf(buf, cap,
                 "'%s' is called by the interposer's thunk before it can tell its own calls "
                 "from the program's; its entry is never patched (hook=got or hook=auto wrap "
                 "its calls through GOT slots)",
                 n);
        break;
    default:
        snprintf(buf, cap, "'%s' can be wrapped", n);
        break;
    }
    return buf;
}

/* ---- the function around an address ---- */

static int cmp_range(const void *a, const void *b) {
    const as_fnrange *x = a, *y = b;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    return x->hi > y->hi ? -1 : x->hi < y->hi; /* the widest first at one start */
}

int as_fnindex_build(as_fnindex *idx, size_t n,
                     void (*get)(const void *ctx, size_t i, uint64_t *value, uint64_t *size,
                                 const char **name),
                     const void *ctx) {
    idx->r = NULL;
    idx->n = 0;
    as_fnrange *r = malloc((n ? n : 1) * sizeof *r);
    if (!r)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t v, s;
        const char *name;
        get(ctx, i, &v, &s, &name);
        if (s == 0 || !name)
            continue;
        r[k].lo = v;
        r[k].hi = v + s;
        r[k].name = name;
        k++;
    }
    if (k)
        qsort(r, k, sizeof *r, cmp_range);
    idx->r = r;
    idx->n = k;
    return 0;
}

void as_fnindex_free(as_fnindex *idx) {
    if (!idx)
        return;
    free(idx->r);
    idx->r = NULL;
    idx->n = 0;
}

const char *as_fnindex_inside(const as_fnindex *idx, uint64_t value) {
    if (!idx || !idx->n)
        return NULL;
    /* The last range starting before value, then back over earlier ones: functions are
     * laid out without overlap, so the nearest few suffice (bounded). */
    size_t lo = 0, hi = idx->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (idx->r[mid].lo < value)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo, steps = 0; i > 0 && steps < 16; i--, steps++) {
        const as_fnrange *r = &idx->r[i - 1];
        if (r->lo < value && value < r->hi)
            return r->name;
    }
    return NULL;
}

size_t as_fnindex_near(const as_fnindex *idx, uint64_t value, uint64_t window, as_fnrange *out,
                       size_t cap) {
    if (!idx || !idx->n || !cap)
        return 0;
    size_t lo = 0, hi = idx->n;
    while (lo < hi) { /* the first range starting at or after value */
        size_t mid = lo + (hi - lo) / 2;
        if (idx->r[mid].lo < value)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t k = 0;
    /* before: ranges ending within the window below value (bounded walk) */
    for (size_t i = lo, steps = 0; i > 0 && steps < 16 && k < cap; i--, steps++) {
        const as_fnrange *r = &idx->r[i - 1];
        if (r->hi + window < value)
            break;
        if (r->hi <= value)
            out[k++] = *r;
    }
    /* after: ranges starting past value within the window */
    for (size_t i = lo, steps = 0; i < idx->n && steps < 16 && k < cap; i++, steps++) {
        const as_fnrange *r = &idx->r[i];
        if (r->lo == value)
            continue; /* the function itself, or an alias of it */
        if (r->lo > value + window)
            break;
        out[k++] = *r;
    }
    return k;
}

/* ---- telling the user ---- */

/* Per config entry: warned (exact entries), skipped count and the first skip's reason. */
typedef struct nohook_state {
    int warned;
    int skipped;
    int kind;
    char why[200];
} nohook_state;

static nohook_state *g_state;
static int g_nstate;

/* The state of entry idx, or NULL (out of memory, or idx outside [0, n)). */
static nohook_state *state_of(int idx, int n) {
    if (idx < 0 || idx >= n)
        return NULL;
    if (!g_state || g_nstate < n) {
        nohook_state *s = realloc(g_state, (size_t)n * sizeof *s);
        if (!s)
            return NULL;
        memset(s + g_nstate, 0, (size_t)(n - g_nstate) * sizeof *s);
        g_state = s;
        g_nstate = n;
    }
    return &g_state[idx];
}

void as_nohook_note(const struct as_config *cfg, int idx, int kind, const as_symfacts *f,
                    const char *lib) {
    if (!cfg || idx < 0 || idx >= cfg->nentries)
        return;
    const as_entry *e = &cfg->entries[idx];
    char why[200];
    as_nohook_why(kind, f, why, sizeof why);
    nohook_state *st = state_of(idx, cfg->nentries);
    if (st && !st->skipped++) {
        st->kind = kind;
        snprintf(st->why, sizeof st->why, "%s", why);
    }
    if (e->is_glob) {
        as_debug("%s:%d:1: '%s' skips %s in %s: %s", AS_ENTRY_SRC(cfg, e), e->line, e->pattern,
                 f && f->name ? f->name : "?", lib ? lib : "?", as_nohook_kind_name(kind));
        return;
    }
    if (st && st->warned)
        return;
    if (st)
        st->warned = 1;
    as_warn("%s:%d:1: %s: not tracked", AS_ENTRY_SRC(cfg, e), e->line, why);
}

int as_nohook_explain(const struct as_config *cfg, int idx) {
    nohook_state *st = cfg ? state_of(idx, cfg->nentries) : NULL;
    if (!st || !st->skipped)
        return 0;
    const as_entry *e = &cfg->entries[idx];
    if (!e->is_glob)
        return 1; /* its warning was printed when it was refused */
    if (st->warned)
        return 1;
    st->warned = 1;
    as_warn("%s:%d:1: '%s' matches only functions that are never wrapped (%d skipped; %s): "
            "not tracked",
            AS_ENTRY_SRC(cfg, e), e->line, e->pattern, st->skipped, st->why);
    return 1;
}

int as_nohook_seen(int idx) {
    return idx >= 0 && idx < g_nstate && g_state[idx].skipped > 0;
}
