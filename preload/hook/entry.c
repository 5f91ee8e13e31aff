/* entry.c - decides which functions get their entry patched (functions no GOT slot
 * reaches: static functions, calls inside one library, dlsym'ed pointers), gives each a
 * target whose orig is the patch's trampoline, and writes the jump to the target's thunk.
 * Under a CET shadow stack the jump goes to a small generated stub that records the entry
 * only, since swapping the return address would fault. */
#include "hook/entry.h"

#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/lockwait.h"
#include "core/log.h"
#include "core/pipeline.h"
#include "hook/callrec.h"
#include "hook/dwarf.h"
#include "hook/elfsym.h"
#include "hook/hookable.h"
#include "hook/patch.h"
#include "hook/reach.h"
#include "hook/target.h"

/* One patched function, kept for the life of the process (the trampoline is live). */
typedef struct entry_site {
    void *fn;
    int id;
    as_patch patch;
} entry_site;

static pthread_mutex_t g_elock = PTHREAD_MUTEX_INITIALIZER;
static entry_site *g_esites;
static int g_nesites, g_capesites;
static int g_cet_warned;

/* fork: no patch may be half done in the child with its locks held by a thread that is
 * gone. The locks are taken in their usual order (g_elock, then the patcher's), bounded:
 * a fork from a signal handler of a thread inside a patch must not hang. */
static int g_fork_elocked;

static void fork_prepare(void) {
    g_fork_elocked = as_mutex_lock_bounded(&g_elock, 1000);
    as_patch_fork_prepare();
}

static void fork_parent(void) {
    as_patch_fork_parent();
    if (g_fork_elocked)
        pthread_mutex_unlock(&g_elock);
}

static void fork_child(void) {
    as_patch_fork_child();
    pthread_mutex_init(&g_elock, NULL);
}

AS_OWN_ATFORK(own_fork, fork_prepare, fork_parent, fork_child)

__attribute__((constructor)) static void entry_init(void) {
    pthread_atfork(own_fork_prepare, own_fork_parent, own_fork_child);
}

/* ---- the entry-only path (CET shadow stack) ---- */

#define STUB_SIZE 256
static uint8_t *g_stub_page;
static size_t g_stub_used;
static __thread int t_busy;
static __thread int32_t t_tid;

/* Called by an entry-only stub with the target id: writes a record with t1 = t0 and no
 * return value. Preserves errno; never fails (a full ring drops the record). */
static void entry_only_hit(uint32_t id) {
    if (t_busy || as_in_agentsight)
        return;
    int e = errno;
    t_busy = 1;
    uint64_t t = as_clock_raw();
    as_callrec *rec = as_pipe_reserve(AS_MSG_CALL, sizeof *rec, 0);
    if (rec) {
        if (!t_tid)
            t_tid = (int32_t)syscall(SYS_gettid);
        memset(rec, 0, sizeof *rec);
        rec->id = (uint16_t)id;
        rec->flags = AS_CALL_ENTRY_ONLY; /* no return observed: callrec.c decodes it as
                                            response null, "hook":"entry-only" */
        rec->tid = t_tid;
        rec->errno_in = e;
        rec->errno_out = e;
        rec->t0 = t;
        rec->t1 = t;
        as_rec_call_seal(rec);
        as_pipe_commit(rec);
    }
    t_busy = 0;
    errno = e;
}

/* Appends b (n bytes) at *o. */
static void put(uint8_t *buf, size_t *o, const void *b, size_t n) {
    memcpy(buf + *o, b, n);
    *o += n;
}

/* Builds a stub that saves every argument register, calls entry_only_hit(id) and jumps
 * to the trampoline with the registers and stack as they were. Returns its address, or
 * NULL when no memory (call with g_elock held). */
static void *entry_only_stub(uint32_t id, const void *tramp) {
    if (!g_stub_page || g_stub_used + STUB_SIZE > 4096) {
        void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        memset(m, 0xcc, 4096);
        if (mprotect(m, 4096, PROT_READ | PROT_EXEC) != 0) {
            munmap(m, 4096);
            return NULL;
        }
        g_stub_page = m;
        g_stub_used = 0;
    }
    uint8_t b[STUB_SIZE];
    size_t o = 0;
    static const uint8_t head[] = {
        0xf3, 0x0f, 0x1e, 0xfa,                  /* endbr64 */
        0x57, 0x56, 0x52, 0x51,                  /* push rdi, rsi, rdx, rcx */
        0x41, 0x50, 0x41, 0x51, 0x50,            /* push r8, r9, rax */
        0x41, 0x52, 0x41, 0x53,                  /* push r10, r11: rsp = 0 mod 16 */
        0x48, 0x81, 0xec, 0x80, 0x00, 0x00, 0x00 /* sub rsp, 128 */
    };
    put(b, &o, head, sizeof head);
    for (int i = 0; i < 8; i++) { /* movups [rsp + 16 i], xmm i */
        uint8_t m[5] = {0x0f, 0x11, (uint8_t)(0x44 | (i << 3)), 0x24, (uint8_t)(16 * i)};
        put(b, &o, m, sizeof m);
    }
    uint8_t mov_id[5] = {0xbf}; /* mov edi, id */
    memcpy(mov_id + 1, &id, 4);
    put(b, &o, mov_id, sizeof mov_id);
    uint8_t movabs[10] = {0x48, 0xb8}; /* movabs rax, entry_only_hit */
    uint64_t fnaddr = (uint64_t)(uintptr_t)&entry_only_hit;
    memcpy(movabs + 2, &fnaddr, 8);
    put(b, &o, movabs, sizeof movabs);
    static const uint8_t call_rax[2] = {0xff, 0xd0};
    put(b, &o, call_rax, sizeof call_rax);
    for (int i = 0; i < 8; i++) { /* movups xmm i, [rsp + 16 i] */
        uint8_t m[5] = {0x0f, 0x10, (uint8_t)(0x44 | (i << 3)), 0x24, (uint8_t)(16 * i)};
        put(b, &o, m, sizeof m);
    }
    static const uint8_t tail[] = {
        0x48, 0x81, 0xc4, 0x80, 0x00, 0x00, 0x00, /* add rsp, 128 */
        0x41, 0x5b, 0x41, 0x5a, 0x58,             /* pop r11, r10, rax */
        0x41, 0x59, 0x41, 0x58,                   /* pop r9, r8 */
        0x59, 0x5a, 0x5e, 0x5f,                   /* pop rcx, rdx, rsi, rdi */
        0xff, 0x25, 0x00, 0x00, 0x00, 0x00        /* jmp *[rip]: the trampoline */
    };
    put(b, &o, tail, sizeof tail);
    uint64_t t = (uint64_t)(uintptr_t)tramp;
    put(b, &o, &t, 8);
    uint8_t *dst = g_stub_page + g_stub_used;
    if (mprotect(g_stub_page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
        return NULL;
    memcpy(dst, b, o);
    mprotect(g_stub_page, 4096, PROT_READ | PROT_EXEC);
    __builtin___clear_cache((char *)dst, (char *)dst + o);
    g_stub_used += STUB_SIZE;
    return dst;
}

/* ---- the table of patched functions ---- */

static entry_site *find_site(const void *fn) {
    for (int i = 0; i < g_nesites; i++)
        if (g_esites[i].fn == fn)
            return &g_esites[i];
    return NULL;
}

int as_entry_id(const void *fn) {
    pthread_mutex_lock(&g_elock);
    entry_site *s = find_site(fn);
    int id = s ? s->id : -1;
    pthread_mutex_unlock(&g_elock);
    return id;
}

void as_entry_forget_retired(void) {
    pthread_mutex_lock(&g_elock);
    int keep = 0;
    for (int i = 0; i < g_nesites; i++)
        if (!as_target_retired((uint32_t)g_esites[i].id))
            g_esites[keep++] = g_esites[i];
    g_nesites = keep;
    pthread_mutex_unlock(&g_elock);
}

int as_entry_count(void) {
    pthread_mutex_lock(&g_elock);
    int n = g_nesites;
    pthread_mutex_unlock(&g_elock);
    return n;
}

/* Reserves a site. Returns it (zeroed) or NULL when out of memory. g_elock held. */
static entry_site *new_site(void) {
    if (g_nesites == g_capesites) {
        int cap = g_capesites ? g_capesites * 2 : 32;
        entry_site *n = realloc(g_esites, (size_t)cap * sizeof *n);
        if (!n)
            return NULL;
        g_esites = n;
        g_capesites = cap;
    }
    entry_site *s = &g_esites[g_nesites];
    memset(s, 0, sizeof *s);
    return s;
}

/* The refusal of an entry patch: a warning when the function then runs unwrapped; an
 * info line when its GOT slots are diverted too (also_got), which still see its calls
 * from other objects; a debug line for a glob's match (as_entry_scan_obj counts them). */
#define REFUSED(fmt, ...)                                                                          \
    do {                                                                                           \
        if (entry && entry->is_glob)                                                               \
            as_debug("'%s' in %s not entry-patched: " fmt, symbol, library, __VA_ARGS__);          \
        else if (also_got)                                                                         \
            as_info("'%s' in %s: calls inside %s are not seen: " fmt, symbol, library, library,    \
                    __VA_ARGS__);                                                                  \
        else                                                                                       \
            as_warn("'%s' in %s not entry-patched: " fmt " (it runs unwrapped)", symbol, library,  \
                    __VA_ARGS__);                                                                  \
    } while (0)

/* The functions around the one as_entry_scan_obj is patching (their code may jump into
 * its first bytes), in memory; n 0 when unknown (as_entry_hook_also, the unit tests). */
#define NEAR_MAX 8
#define NEAR_WINDOW 1024
typedef struct near_fns {
    size_t n;
    const uint8_t *lo[NEAR_MAX];
    size_t size[NEAR_MAX];
} near_fns;
static __thread const near_fns *t_near;

static int entry_hook(void *fn, size_t size, const char *symbol, const char *action_name,
                      const char *library, const as_entry *entry, int also_got) {
    char why[200];
    pthread_mutex_lock(&g_elock);
    int id = -1;
    entry_site *s = find_site(fn);
    if (s) {
        id = s->id;
        goto out;
    }
    as_symfacts facts = {.name = symbol, .size = size, .exported = 1, .exec = 1};
    int kind = as_nohook_entry_classify(&facts);
    /* by address too: an alias under another name is the same function */
    if (fn == (void *)&__errno_location || fn == (void *)&clock_gettime)
        kind = AS_NOHOOK_OWN_USE;
    if (kind != AS_HOOKABLE) {
        REFUSED("%s", as_nohook_why(kind, &facts, why, sizeof why));
        goto out;
    }
    s = new_site();
    if (!s) {
        REFUSED("%s", "out of memory");
        goto out;
    }
    if (as_patch_prepare(fn, size, &s->patch, why, sizeof why) != 0) {
        REFUSED("%s", why);
        goto out;
    }
    for (size_t k = 0; t_near && k < t_near->n; k++) {
        if (as_patch_check_near(&s->patch, t_near->lo[k], t_near->size[k], why, sizeof why)) {
            REFUSED("%s", why); /* its trampoline slot is left unused, as for a refusal */
            goto out;
        }
    }
    int tid = as_target_get(fn, symbol, action_name, library, (const struct as_entry *)entry);
    if (tid < 0) {
        REFUSED("too many wrapped functions (%d)", AS_MAX_TARGETS);
        goto out;
    }
    as_target *t = &as_targets[tid];
    int entry_only = as_cet_shstk_enabled();
    /* The full-preservation stub: the function's direct callers may rely on registers it
     * does not touch (gcc -fipa-ra), which the lean stub and its exit would clobber. */
    void *dest = entry_only ? entry_only_stub((uint32_t)tid, s->patch.tramp)
                            : as_thunk_addr_full((uint32_t)tid);
    if (!dest) {
        REFUSED("%s", "no memory for its stub");
        goto out;
    }
    if (entry_only && !g_cet_warned) {
        g_cet_warned = 1;
        as_warn("CET shadow stack is on: entry-patched functions record their entries only "
                "(no duration, no response)");
    }
    /* The trampoline is the original from now on: a call that also comes through a GOT
     * slot enters the thunk once and then runs the function body without a second
     * entry. It must be in place before the jump is, or the thunk would jump to the
     * patched entry and loop. */
    __atomic_store_n(&t->orig, (void *)s->patch.tramp, __ATOMIC_RELEASE);
    /* Calls reach the thunk through the int3 as soon as it is written, and the exporter
     * may decode their records before the install returns: the hook is named first. */
    uint32_t via_before = __atomic_fetch_or(&t->via, AS_VIA_ENTRY, __ATOMIC_RELEASE);
    if (as_patch_install(&s->patch, dest, why, sizeof why) != 0) {
        if (!(via_before & AS_VIA_ENTRY)) /* other bits may have been added meanwhile */
            __atomic_fetch_and(&t->via, ~(uint32_t)AS_VIA_ENTRY, __ATOMIC_RELEASE);
        __atomic_store_n(&t->orig, fn, __ATOMIC_RELEASE);
        REFUSED("%s", why);
        goto out;
    }
    if (s->patch.unanswered)
        as_warn("'%s' in %s entry-patched while %u thread(s) could not be asked to leave its "
                "first bytes (SIGURG blocked or no answer within 250 ms)",
                symbol, library, (unsigned)s->patch.unanswered);
    s->fn = fn;
    s->id = tid;
    g_nesites++;
    id = tid;
out:
    pthread_mutex_unlock(&g_elock);
    return id;
}
#undef REFUSED

int as_entry_hook(void *fn, size_t size, const char *symbol, const char *action_name,
                  const char *library, const as_entry *entry) {
    return entry_hook(fn, size, symbol, action_name, library, entry, 0);
}

int as_entry_hook_also(void *fn, size_t size, const char *symbol, const char *action_name,
                       const char *library, const as_entry *entry) {
    return entry_hook(fn, size, symbol, action_name, library, entry, 1);
}

/* ---- selecting functions from a config ---- */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The entry selecting symbol sym of file for entry patching, as install.c matches: exact
 * name first, else the first glob. NULL when none or when the entry wants the GOT path. */
static const as_entry *pick_entry(const as_config *cfg, const as_sym *sym, const char *file,
                                  int *index) {
    return as_config_match(cfg, sym->name, sym->version, file, index);
}

/* ---- reading only the symbols an entry may select (start-up cost) ---- */

typedef struct keep_ctx {
    const as_config *cfg;
    const char *file;
} keep_ctx;

/* as_sym_keep_fn: 1 when some entry that may patch entries in file could select the
 * symbol name (maybe "name@VERSION"), so a large .symtab (libc's debug file) is read
 * without building its whole table. One hash lookup per symbol (cfgmatch.c). */
static int keep_sym(const char *name, void *ctxp) {
    const keep_ctx *c = ctxp;
    return as_config_may_entry_patch(c->cfg, name, c->file);
}

int as_entry_wanted(const as_config *cfg) {
    if (!cfg)
        return 0;
    for (int i = 0; i < cfg->nentries; i++)
        if (cfg->entries[i].pattern && cfg->entries[i].hook != AS_HOOK_GOT)
            return 1;
    return 0;
}

/* Gives a target without a prototype the one DWARF has, when the object carries DWARF.
 * The prototype is allocated for the life of the process. */
static void add_dwarf_proto(int id, const as_symtab *st) {
    as_target *t = &as_targets[id];
    if (t->proto || !st->has_debug)
        return;
    as_proto *p = calloc(1, sizeof *p);
    if (!p)
        return;
    if (as_dwarf_proto(st->path, t->symbol, p) != 0) {
        free(p);
        return;
    }
    __atomic_store_n(&t->proto, p, __ATOMIC_RELEASE);
}

/* The program headers of the loaded object at base (dl_iterate_phdr; nothing allocated). */
typedef struct phdr_find {
    uintptr_t base;
    const ElfW(Phdr) * phdr;
    int phnum;
} phdr_find;

static int phdr_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    phdr_find *f = arg;
    (void)size;
    if (info->dlpi_addr != f->base || f->phdr)
        return 0;
    f->phdr = info->dlpi_phdr;
    f->phnum = info->dlpi_phnum;
    return 1;
}

/* as_fnindex_build reader over an as_symtab. */
static void symtab_get(const void *ctx, size_t i, uint64_t *value, uint64_t *size,
                       const char **name) {
    const as_sym *s = &((const as_symtab *)ctx)->syms[i];
    *value = s->value;
    *size = s->size;
    *name = s->name;
}

/* What hookable.c needs to know of sym. idx is built on first use (*built). */
static as_symfacts facts_of(const as_symtab *st, const as_sym *sym, as_fnindex *idx, int *built,
                            const phdr_find *ph, uintptr_t base) {
    if (!*built) {
        as_fnindex_build(idx, st->n, symtab_get, st);
        *built = 1;
    }
    as_symfacts f = {.name = sym->name, .size = sym->size, .exported = sym->exported, .exec = -1};
    f.inside = as_fnindex_inside(idx, sym->value);
    if (ph->phdr)
        f.exec = as_reach_in_exec(ph->phdr, ph->phnum, ph->base,
                                  (uintptr_t)((st->is_dyn ? base : 0) + sym->value), sym->size);
    size_t nrt;
    const char *const *rt = as_returns_twice_names(&nrt);
    for (size_t i = 0; i < nrt && !as_returns_twice(sym->name); i++) {
        const as_sym *r = as_symtab_find(st, rt[i]);
        if (r && r->value == sym->value)
            f.alias_of = r->name;
    }
    return f;
}

/* The matches of glob entries in one object that were not entry-patched: a glob skips
 * what cannot be patched without a word on the program's stderr, and one info line per
 * entry and object counts them (an exact name gets its warning instead). */
typedef struct glob_refusals {
    int *count; /* per config entry, allocated on the first refusal */
    const char **first;
    const char **what;
} glob_refusals;

static void glob_refused(glob_refusals *g, const as_config *cfg, int idx, const char *name,
                         const char *what) {
    if (idx < 0 || idx >= cfg->nentries)
        return;
    if (!g->count) {
        g->count = calloc((size_t)cfg->nentries, sizeof *g->count);
        g->first = calloc((size_t)cfg->nentries, sizeof *g->first);
        g->what = calloc((size_t)cfg->nentries, sizeof *g->what);
        if (!g->count || !g->first || !g->what) {
            free(g->count);
            free(g->first);
            free(g->what);
            g->count = NULL;
            return;
        }
    }
    if (!g->count[idx]++) {
        g->first[idx] = name; /* lives as long as the symbol table */
        g->what[idx] = what;
    }
}

static void glob_report(glob_refusals *g, const as_config *cfg, const char *file) {
    if (!g->count)
        return;
    for (int i = 0; i < cfg->nentries; i++) {
        if (!g->count[i])
            continue;
        const as_entry *e = &cfg->entries[i];
        as_info("%s:%d:1: '%s' skips %d function%s in %s whose entry cannot be patched (the "
                "first: '%s', %s; `agentsight check` lists them)",
                AS_ENTRY_SRC(cfg, e), e->line, e->pattern, g->count[i], g->count[i] == 1 ? "" : "s",
                file, g->first[i], g->what[i]);
    }
    free(g->count);
    free(g->first);
    free(g->what);
    g->count = NULL;
}

int as_entry_scan_obj(const as_config *cfg, const char *path, uintptr_t base,
                      unsigned char *matched) {
    if (!cfg || !path || !*path || !as_entry_wanted(cfg))
        return 0;
    as_symtab st;
    char err[256];
    keep_ctx kc = {cfg, base_name(path)};
    if (as_symtab_load_some(path, &st, err, sizeof err, keep_sym, &kc) != 0) {
        as_debug("%s: no symbols for entry patching: %s", path, err);
        return -1;
    }
    const char *file = base_name(path);
    int done = 0;
    glob_refusals gr = {0};
    as_fnindex fidx = {0};
    int fidx_built = 0;
    phdr_find ph = {.base = base};
    dl_iterate_phdr(phdr_cb, &ph);
    for (size_t k = 0; k < st.n; k++) {
        const as_sym *sym = &st.syms[k];
        int idx;
        const as_entry *e = pick_entry(cfg, sym, file, &idx);
        if (!e || e->hook == AS_HOOK_GOT)
            continue;
        if (e->hook == AS_HOOK_AUTO && sym->exported)
            continue; /* the GOT path (install.c) has it */
        as_symfacts facts = facts_of(&st, sym, &fidx, &fidx_built, &ph, base);
        int kind = as_nohook_entry_classify(&facts);
        if (kind != AS_HOOKABLE) {
            if (matched && !e->is_glob)
                matched[idx] = 1; /* refused with its own message, not "unmatched" */
            as_nohook_note(cfg, idx, kind, &facts, file);
            continue;
        }
        if (facts.inside && sym->exported) {
            as_info("'%s' in %s lies inside '%s': not entry-patched", sym->name, file,
                    facts.inside);
            continue;
        }
        if (sym->is_ifunc) {
            if (e->is_glob)
                glob_refused(&gr, cfg, idx, sym->name, "an IFUNC resolver");
            else
                as_warn("%s:%d:1: '%s' in %s is an IFUNC resolver: not entry-patched",
                        AS_ENTRY_SRC(cfg, e), e->line, sym->name, file);
            continue;
        }
        void *fn = (void *)((st.is_dyn ? base : 0) + (uintptr_t)sym->value);
        if (matched)
            matched[idx] = 1;
        /* Strings of a target live for the process: the object may be unloaded later. */
        char *name = strdup(sym->name);
        char *lib = strdup(file);
        if (!name || !lib) {
            free(name);
            free(lib);
            continue;
        }
        near_fns nf = {0};
        as_fnrange near[NEAR_MAX];
        size_t nn = as_fnindex_near(&fidx, sym->value, NEAR_WINDOW, near, NEAR_MAX);
        for (size_t k = 0; k < nn; k++) {
            uintptr_t lo = (uintptr_t)(st.is_dyn ? base : 0) + (uintptr_t)near[k].lo;
            size_t len = (size_t)(near[k].hi - near[k].lo);
            if (len > 4 * NEAR_WINDOW) /* a long function before: its tail is what is near */
                continue;
            if (ph.phdr && !as_reach_in_exec(ph.phdr, ph.phnum, ph.base, lo, len))
                continue;
            nf.lo[nf.n] = (const uint8_t *)lo;
            nf.size[nf.n++] = len;
        }
        t_near = &nf;
        int before = as_entry_id(fn);
        int id = as_entry_hook(fn, (size_t)sym->size, name, e->name ? e->name : name, lib, e);
        t_near = NULL;
        if (id < 0 || before >= 0 || as_targets[id].symbol != name) {
            free(name); /* refused, or the target already had its strings */
            free(lib);
        }
        if (id < 0) {
            if (e->is_glob)
                glob_refused(&gr, cfg, idx, sym->name, "first instructions that cannot be moved");
            else
                as_warn("%s:%d:1: '%s' in %s runs unwrapped (see the reason above)",
                        AS_ENTRY_SRC(cfg, e), e->line, sym->name, file);
            continue;
        }
        add_dwarf_proto(id, &st);
        done++;
    }
    glob_report(&gr, cfg, file);
    as_fnindex_free(&fidx);
    as_symtab_free(&st);
    return done;
}
