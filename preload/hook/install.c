/* install.c - turns config entries into hooked calls: matches entries against the
 * exported functions of each loaded object, creates targets whose orig is the resolved
 * function, and points GOT slots and dlsym results at the targets' thunks; repeated for
 * the new objects after each dlopen.
 *
 * Symbols are read from the objects' dynamic symbol tables in memory (what the loader
 * itself binds against): only exported functions are reachable through a GOT or dlsym,
 * and reading memory costs nothing at start-up compared with opening every file. Files
 * are read only when an entry needs more: local functions for entry patching (entry.c),
 * only for objects an entry that matched no exported function, or says hook=entry, may
 * select; DWARF prototypes, only for objects carrying DWARF that hold a matched target
 * without a prototype. */
#include "core/redact.h"
#include "hook/install.h"

#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "core/diag.h"
#include "core/dynlib.h"
#include "core/log.h"
#include "core/pipeline.h"
#include "core/settings.h"
#include "hook/dwarf.h"
#include "hook/dwarf_cache.h"
#include "hook/elfsym.h"
#include "hook/entry.h"
#include "hook/capture.h"
#include "hook/got.h"
#include "hook/hookable.h"
#include "hook/reach.h"
#include "hook/symcache.h"
#include "hook/target.h"
#include "core/bigbss.h"

#define MAX_OBJS 2048

typedef struct seen_obj {
    uintptr_t base;
    char *name;
    void **witness; /* one slot we wrote (got.h), or NULL */
    void *witness_val;
} seen_obj;

/* An IFUNC an entry matched: its implementation is asked from the loader after g_lock is
 * released (the loader's lock may be held by a thread waiting for g_lock). */
typedef struct pending_ifunc {
    char *obj; /* loader name of the object ("" = the program) */
    char *sym, *version, *lib;
    uintptr_t lo, hi;
    int idx; /* config entry */
} pending_ifunc;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static as_config *g_cfg;
static int g_active;       /* pipeline running, installs allowed */
static int g_start_failed; /* as_pipe_start failed once: never patch */
static seen_obj *g_seen;
static size_t g_nseen, g_capseen;
static unsigned char *g_matched;           /* per entry: matched something */
static as_obj g_objs[MAX_OBJS] AS_BIG_BSS; /* scratch for as_objs_collect, under g_lock */
static char g_exe[4096];
static int g_nobjs;               /* objects in g_objs */
static int g_ninitial = -1;       /* objects loaded at start: the global scope's head */
static unsigned long long g_subs; /* dlpi_subs at the last scan */
static pending_ifunc *g_pending;  /* IFUNCs to resolve outside g_lock */
/* Exported functions whose entry is patched as well (reach.h), in the current scan. */
typedef struct pending_entry {
    void *fn;
    size_t size;
    int id;
} pending_entry;
static pending_entry *g_epend;
static size_t g_nepend, g_capepend;
static char **g_pins; /* names of later objects held loaded for this scan */
static int g_npins;
static size_t g_npending, g_cappending;

int as_install_active(void) {
    return __atomic_load_n(&g_active, __ATOMIC_ACQUIRE);
}

const as_config *as_install_config(void) {
    return g_cfg;
}

static uint32_t ntargets(void) {
    return __atomic_load_n(&as_ntargets, __ATOMIC_ACQUIRE);
}

/* The target whose orig is addr, or -1. */
static int target_by_orig(const void *addr) {
    if (!addr)
        return -1;
    uint32_t n = ntargets();
    for (uint32_t i = 0; i < n; i++)
        if (as_targets[i].orig == addr && !as_target_retired(i))
            return (int)i;
    return -1;
}

/* The live target of symbol sym defined by the object at [lo, hi), or -1 (IFUNC targets,
 * whose orig is what the resolver chose). */
static int target_by_def(const char *sym, uintptr_t lo, uintptr_t hi) {
    uint32_t n = ntargets();
    for (uint32_t i = 0; i < n; i++)
        if (as_targets[i].obj_lo == lo && as_targets[i].obj_hi == hi && lo != hi &&
            !as_target_retired(i) && strcmp(as_targets[i].symbol, sym) == 0)
            return (int)i;
    return -1;
}

static int target_by_stand_in(const void *addr);

/* The target of a function by its address: the target whose orig it is (or, for a function
 * of ours that stands for a C library function, the target of its calls), or the one whose
 * entry was patched at it (orig is then the trampoline). -1 when none. */
static int target_by_fn(const void *addr) {
    int id = target_by_orig(addr);
    if (id < 0)
        id = target_by_stand_in(addr);
    if (id < 0 && addr && as_entry_count() > 0) {
        id = as_entry_id(addr);
        if (id >= 0 && as_target_retired((uint32_t)id))
            id = -1; /* patched in an object since unloaded: its code is gone */
    }
    return id;
}

/* The target of the calls a function of ours that stands for a C library function
 * (as_dlwrap_stands_for) makes: a target of its own whose orig is ours, so that the
 * thunk runs our function (it flushes before an exec, installs after a dlopen), with the
 * C library target's names, entry and prototype (also under hook=entry: ours then calls
 * the C library's function past its patched entry, as_install_unhooked, so each call is
 * recorded once). None when the C library's function is no target. Creates the target on
 * first use. -1 when none. */
static int target_by_stand_in(const void *addr) {
    void *real = NULL;
    const char *name = as_dlwrap_stands_for(addr, &real);
    if (!name)
        return -1;
    int id = target_by_orig(addr);
    if (id >= 0)
        return id;
    int lib = target_by_orig(real); /* _Exit: the C library's _exit, by another name */
    if (lib < 0 && as_entry_count() > 0)
        lib = as_entry_id(real); /* entry-patched: orig is the trampoline */
    if (lib < 0 || as_target_retired((uint32_t)lib))
        return -1;
    const as_target *t = &as_targets[lib];
    if (!t->entry)
        return -1;
    id = as_target_get_in((void *)addr, t->symbol, t->action_name, t->library, t->entry, 0, 0);
    if (id >= 0 && as_targets[id].proto != t->proto)
        as_target_set_proto(&as_targets[id], t->proto);
    return id;
}

/* Whether target id is one of ours standing in for a C library function. */
static int stand_in_target(int id) {
    void *real;
    return as_dlwrap_stands_for(as_targets[id].orig, &real) != NULL;
}

/* The functions hooked, for the stats line: every target, a stand-in of ours counted once
 * with the C library function it stands for (bash's execve has both targets). */
static uint64_t hooked_count(void) {
    uint32_t n = ntargets();
    uint64_t c = 0;
    for (uint32_t i = 0; i < n; i++) {
        int twin = 0;
        if (stand_in_target((int)i))
            for (uint32_t k = 0; k < n && !twin; k++)
                twin = k != i && !stand_in_target((int)k) &&
                       strcmp(as_targets[k].symbol, as_targets[i].symbol) == 0;
        c += !twin;
    }
    return c;
}

void *as_install_unhooked(void *fn) {
    if (!fn || as_entry_count() == 0)
        return fn;
    int id = as_entry_id(fn);
    return id >= 0 ? as_targets[id].orig : fn;
}

static int is_target_symbol(const char *name) {
    uint32_t n = ntargets();
    for (uint32_t i = 0; i < n; i++)
        if (as_targets[i].symbol && strcmp(as_targets[i].symbol, name) == 0)
            return 1;
    return 0;
}

static const as_entry *target_entry(int id) {
    return (const as_entry *)as_targets[id].entry;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The file of object o: its loader name, or the program's path for "". */
static const char *obj_path(const as_obj *o) {
    if (o->name[0])
        return o->name;
    if (!g_exe[0]) {
        ssize_t n = readlink("/proc/self/exe", g_exe, sizeof g_exe - 1);
        if (n > 0)
            g_exe[n] = '\0';
        else
            strcpy(g_exe, "program");
    }
    return g_exe;
}

/* Our own library and the dynamic loader are never patched. */
static int skip_obj(const as_obj *o) {
    uintptr_t self = (uintptr_t)&skip_obj;
    if (self >= o->lo && self < o->hi)
        return 1;
    /* Libraries the interposer opened for itself (libcurl, libdw, ... and theirs). */
    if (as_dynlib_owns(o->base, o->name))
        return 1;
    const char *b = base_name(o->name);
    return strncmp(b, "ld-linux", 8) == 0 || strncmp(b, "ld64.so", 7) == 0;
}

static int seen_before(const as_obj *o) {
    for (size_t i = 0; i < g_nseen; i++)
        if (g_seen[i].base == o->base && strcmp(g_seen[i].name, o->name) == 0)
            return 1;
    return 0;
}

/* Makes room for one more element in arr, an array of *cap elements of size elem with n
 * of them used: doubles the capacity (to first when empty) when it is full. Returns the
 * array (moved or not; *cap updated), or NULL when out of memory (arr and *cap are then
 * unchanged). */
static void *grow(void *arr, size_t *cap, size_t n, size_t elem, size_t first) {
    if (n < *cap)
        return arr;
    size_t ncap = *cap ? *cap * 2 : first;
    void *a = realloc(arr, ncap * elem);
    if (a)
        *cap = ncap;
    return a;
}

/* Remembers o. Returns 0, or -1 when out of memory (o will be scanned again: harmless,
 * every step is idempotent). */
static int mark_seen(const as_obj *o) {
    seen_obj *seen = grow(g_seen, &g_capseen, g_nseen, sizeof *seen, 64);
    if (!seen)
        return -1;
    g_seen = seen;
    char *name = strdup(o->name);
    if (!name)
        return -1;
    g_seen[g_nseen].base = o->base;
    g_seen[g_nseen].name = name;
    g_seen[g_nseen].witness = NULL;
    g_seen[g_nseen].witness_val = NULL;
    g_nseen++;
    return 0;
}

/* Number of symbols in the dynamic symbol table (from the hash tables). */
static size_t dynsym_count(const as_dyninfo *di) {
    if (di->sysv_hash)
        return di->sysv_hash[1];
    if (!di->gnu_hash)
        return 0;
    const uint32_t *h = di->gnu_hash;
    uint32_t nbuckets = h[0], symoffset = h[1], bloom_size = h[2];
    const ElfW(Addr) *bloom = (const ElfW(Addr) *)&h[4];
    const uint32_t *buckets = (const uint32_t *)&bloom[bloom_size];
    const uint32_t *chain = &buckets[nbuckets];
    uint32_t last = 0;
    for (uint32_t i = 0; i < nbuckets; i++)
        if (buckets[i] > last)
            last = buckets[i];
    if (last < symoffset)
        return symoffset;
    for (uint32_t guard = 0; guard < (1u << 24) && !(chain[last - symoffset] & 1); guard++)
        last++;
    return (size_t)last + 1;
}

/* The config entry for an exported function: an exact name wins over a glob; among equals
 * the first in the file. NULL when none matches. */
static const as_entry *match_entry(const char *name, const char *version, const char *file,
                                   int *index) {
    return as_config_match(g_cfg, name, version, file, index);
}

/* Queues an IFUNC for resolution outside g_lock. Returns 0, or -1 when out of memory
 * (the function then stays unwrapped). */
static int queue_ifunc(const as_obj *o, const char *name, const char *version, const char *lib,
                       int idx) {
    pending_ifunc *pending = grow(g_pending, &g_cappending, g_npending, sizeof *pending, 16);
    if (!pending)
        return -1;
    g_pending = pending;
    pending_ifunc *p = &g_pending[g_npending];
    p->obj = strdup(o->name);
    p->sym = strdup(name);
    p->version = version ? strdup(version) : NULL;
    p->lib = strdup(lib);
    p->lo = o->lo;
    p->hi = o->hi;
    p->idx = idx;
    if (!p->obj || !p->sym || !p->lib || (version && !p->version)) {
        free(p->obj);
        free(p->sym);
        free(p->version);
        free(p->lib);
        return -1;
    }
    g_npending++;
    return 0;
}

/* What resolve_obj knows of one object's dynamic symbols, computed when first needed. */
typedef struct obj_facts {
    const as_obj *o;
    const as_dyninfo *di;
    size_t n;
    unsigned char *refs; /* per symbol index: named by one of o's own relocations */
    int refs_done;
    as_fnindex fidx; /* sized dynamic functions, for labels inside another function */
    int fidx_done;
    int nscans;          /* functions checked by a pass over the table before fidx is built */
    uint64_t rt_val[16]; /* values of the returns-twice names o defines */
    const char *rt_name[16];
    int nrt; /* -1: not looked up yet */
} obj_facts;

/* as_fnindex_build reader over the dynamic symbol table (non-functions read as size 0). */
static void dynsym_get(const void *ctx, size_t i, uint64_t *value, uint64_t *size,
                       const char **name) {
    const obj_facts *of = ctx;
    const ElfW(Sym) *s = &of->di->symtab[i];
    int type = ELF64_ST_TYPE(s->st_info);
    int fn = (type == STT_FUNC || type == STT_GNU_IFUNC) && s->st_shndx != SHN_UNDEF &&
             (!of->di->strsz || s->st_name < of->di->strsz);
    *value = s->st_value;
    *size = fn ? s->st_size : 0;
    *name = fn ? of->di->strtab + s->st_name : NULL;
}

/* Whether value lies inside a sized dynamic function [lo, hi) with lo < value (what
 * as_fnindex_inside answers), by one pass over the table: cheaper than sorting it when
 * only a few values are asked about. */
static int dyn_inside(const obj_facts *of, uint64_t value) {
    for (size_t i = 0; i < of->n; i++) {
        const ElfW(Sym) *s = &of->di->symtab[i];
        if (s->st_value >= value || value - s->st_value >= s->st_size)
            continue;
        uint64_t v, size;
        const char *name;
        dynsym_get(of, i, &v, &size, &name);
        if (size && name)
            return 1;
    }
    return 0;
}

/* The hookable.c facts of the object's dynamic symbol s, named name. */
static as_symfacts dyn_facts(obj_facts *of, const ElfW(Sym) * s, const char *name) {
    const as_obj *o = of->o;
    as_symfacts f = {.name = name, .size = s->st_size, .exported = 1};
    f.exec = as_reach_in_exec(o->phdr, o->phnum, o->base, o->base + s->st_value, s->st_size);
    if (of->nrt < 0) {
        size_t nn;
        const char *const *names = as_returns_twice_names(&nn);
        of->nrt = 0;
        for (size_t k = 0; k < nn && of->nrt < 16; k++) {
            const ElfW(Sym) *r = as_dyn_lookup(of->di, names[k], NULL);
            if (r && r->st_shndx != SHN_UNDEF) {
                of->rt_val[of->nrt] = r->st_value;
                of->rt_name[of->nrt++] = names[k];
            }
        }
    }
    for (int k = 0; k < of->nrt && !as_returns_twice(name); k++)
        if (of->rt_val[k] == s->st_value)
            f.alias_of = of->rt_name[k];
    return f;
}

/* Whether o is a library the interposer's own object names in DT_NEEDED (the C library):
 * its functions run inside the thunk, the exporter and the patcher. */
static int is_own_dependency(const as_obj *o) {
    static char needed[16][64];
    static int nneeded = -1;
    if (nneeded < 0) {
        nneeded = 0;
        for (int i = 0; i < g_nobjs; i++) {
            if (!skip_obj(&g_objs[i]) || !g_objs[i].dyn || !g_objs[i].name[0])
                continue;
            uintptr_t self = (uintptr_t)&is_own_dependency;
            if (self < g_objs[i].lo || self >= g_objs[i].hi)
                continue;
            as_dyninfo di;
            if (as_dyn_read(g_objs[i].dyn, g_objs[i].base, &di) != 0)
                break;
            for (const ElfW(Dyn) *d = g_objs[i].dyn; d->d_tag != DT_NULL && nneeded < 16; d++)
                if (d->d_tag == DT_NEEDED && (!di.strsz || d->d_un.d_val < di.strsz))
                    snprintf(needed[nneeded++], sizeof needed[0], "%s", di.strtab + d->d_un.d_val);
            break;
        }
    }
    const char *b = base_name(obj_path(o));
    for (int i = 0; i < nneeded; i++)
        if (strcmp(needed[i], b) == 0)
            return 1;
    return 0;
}

/* How the calls of dynamic symbol i (s) of the object are caught for entry e (reach.h). */
static unsigned dyn_reach(obj_facts *of, size_t i, const ElfW(Sym) * s, const as_entry *e) {
    as_reach_facts rf = {.hook = e->hook, .exported = 1};
    rf.in_program = of->o->name[0] == '\0';
    rf.symbolic = of->di->symbolic;
    rf.protected_vis = ELF64_ST_VISIBILITY(s->st_other) == STV_PROTECTED;
    rf.ifunc = ELF64_ST_TYPE(s->st_info) == STT_GNU_IFUNC;
    rf.own_dep = !rf.in_program && is_own_dependency(of->o);
    if (e->hook == AS_HOOK_AUTO && !rf.in_program && !rf.symbolic && !rf.protected_vis) {
        if (!of->refs_done) {
            of->refs_done = 1;
            of->refs = calloc(of->n ? of->n : 1, 1);
            if (of->refs)
                as_reach_selfrefs(of->di->jmprel, of->di->jmprelsz, of->di->rela, of->di->relasz,
                                  of->refs, of->n);
        }
        rf.self_ref = of->refs ? of->refs[i] : 1; /* out of memory: the GOT alone */
    }
    if (s->st_size == 0) {
        rf.patchable = 0;
    } else if (of->nscans < 8) {
        /* A few functions of a large object (the usual config): one pass each costs less
         * than sorting the whole table. */
        of->nscans++;
        rf.patchable = !dyn_inside(of, s->st_value);
    } else {
        if (!of->fidx_done) {
            of->fidx_done = 1;
            as_fnindex_build(&of->fidx, of->n, dynsym_get, of);
        }
        rf.patchable = !as_fnindex_inside(&of->fidx, s->st_value);
    }
    return as_reach_decide(&rf, NULL);
}

/* Queues fn for an entry patch in this scan. Out of memory: it is left to the GOT. */
static void queue_entry(void *fn, size_t size, int id) {
    pending_entry *p = grow(g_epend, &g_capepend, g_nepend, sizeof *p, 16);
    if (!p)
        return;
    g_epend = p;
    g_epend[g_nepend++] = (pending_entry){fn, size, id};
}

/* The body of resolve_obj for dynamic symbol i of of->o in pass pass (0: exact entries,
 * 1: globs). Returns the number of targets created or found (0 or 1). */
static int resolve_sym(obj_facts *of, size_t i, int pass, int versioned, const char *libname) {
    const as_obj *o = of->o;
    const as_dyninfo *di = of->di;
    int made = 0;
    const ElfW(Sym) *s = &di->symtab[i];
    int type = ELF64_ST_TYPE(s->st_info);
    int bind = ELF64_ST_BIND(s->st_info);
    int vis = ELF64_ST_VISIBILITY(s->st_other);
    if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s->st_shndx == SHN_UNDEF ||
        (bind != STB_GLOBAL && bind != STB_WEAK) || (vis != STV_DEFAULT && vis != STV_PROTECTED))
        return made;
    if (di->strsz && s->st_name >= di->strsz)
        return made;
    const char *name = di->strtab + s->st_name;
    const char *version = versioned ? as_dyn_version(di, i, NULL) : NULL;
    int idx;
    const as_entry *e = match_entry(name, version, libname, &idx);
    if (!e || e->is_glob != pass)
        return made;
    as_symfacts facts = dyn_facts(of, s, name);
    int kind = as_nohook_classify(&facts);
    if (kind != AS_HOOKABLE) {
        if (!e->is_glob)
            g_matched[idx] = 1; /* refused with its own message, not "unmatched" */
        as_nohook_note(g_cfg, idx, kind, &facts, libname);
        return made;
    }
    if (type == STT_GNU_IFUNC) {
        if (!versioned)
            version = as_dyn_version(di, i, NULL);
        if (target_by_def(name, o->lo, o->hi) >= 0) {
            g_matched[idx] = 1;
            made++;
        } else {
            queue_ifunc(o, name, version, libname, idx);
        }
        return made;
    }
    void *orig = (void *)(o->base + s->st_value);
    if (target_by_fn(orig) >= 0) {
        g_matched[idx] = 1;
        made++;
        return made;
    }
    /* Strings of a target live for the process: the object may be unloaded later. */
    char *sym = strdup(name);
    char *lib = strdup(libname);
    if (!sym || !lib) {
        free(sym);
        free(lib);
        return made;
    }
    int id = as_target_get_in(orig, sym, e->name ? e->name : sym, lib, e, o->lo, o->hi);
    if (id < 0) {
        as_warn("too many wrapped functions (%d): %s in %s not wrapped", AS_MAX_TARGETS, name,
                libname);
        free(sym);
        free(lib);
        return made;
    }
    g_matched[idx] = 1;
    made++;
    /* hook=entry entries are patched by as_entry_scan_obj (with every local match). */
    if (e->hook == AS_HOOK_AUTO && (dyn_reach(of, i, s, e) & AS_REACH_ENTRY))
        queue_entry(orig, (size_t)s->st_size, id);
    return made;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Writes to *out the sorted, distinct indexes of o's dynamic symbols named by an exact
 * entry, found through the GNU hash table: the only symbols resolve_obj's scan can match
 * when the config has no globs, at the cost of one lookup per entry instead of one per
 * symbol. Returns their number, or -1 when the scan must be used (globs, no index or GNU
 * hash table, more entries than a scan would cost, out of memory). */
static long exact_candidates(const as_dyninfo *di, size_t nsyms, uint32_t **out) {
    *out = NULL;
    const struct as_cfg_index *x = g_cfg->index;
    if (!x || x->nglobs > 0 || !di->gnu_hash || (size_t)g_cfg->nentries * 4 > nsyms)
        return -1;
    size_t n = 0;
    uint32_t *v = NULL;
    for (int k = 0; k < g_cfg->nentries; k++) {
        const as_entry *e = &g_cfg->entries[k];
        if (!e->pattern || e->is_glob || e->dup_line)
            continue;
        long got = as_dyn_named(di, e->pattern, NULL, 0);
        if (got <= 0) {
            if (got == 0)
                continue;
            free(v);
            return -1;
        }
        uint32_t *nv = realloc(v, (n + (size_t)got) * sizeof *nv);
        if (!nv) {
            free(v);
            return -1;
        }
        v = nv;
        n += (size_t)as_dyn_named(di, e->pattern, v + n, (size_t)got);
    }
    /* Increasing order, as the scan visits them (targets are made in that order). */
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_u32);
    size_t m = 0;
    for (size_t a = 0; a < n; a++)
        if ((m == 0 || v[m - 1] != v[a]) && v[a] > 0 && v[a] < nsyms)
            v[m++] = v[a];
    *out = v;
    return (long)m;
}

/* Creates the targets of the entries matching exported functions of o (exact names first,
 * so an alias named by an entry keeps that entry's options over a glob's), refusing what
 * can never be wrapped (hookable.h) and queueing the entry patches reach.h asks for.
 * Returns the number of targets created or found. */
static int resolve_obj(const as_obj *o, const char *libname) {
    as_dyninfo di;
    if (as_dyn_read(o->dyn, o->base, &di) != 0 || !di.symtab)
        return 0;
    obj_facts of = {.o = o, .di = &di, .n = dynsym_count(&di), .nrt = -1};
    int made = 0;
    int versioned = 0; /* an entry names a version: each symbol's is then read first */
    for (int k = 0; k < g_cfg->nentries; k++)
        versioned |= g_cfg->entries[k].version != NULL;
    uint32_t *cand;
    long ncand = exact_candidates(&di, of.n, &cand);
    if (ncand >= 0) {
        /* No globs: only symbols named by an exact entry can match, in pass 0 alone. */
        for (long c = 0; c < ncand; c++)
            made += resolve_sym(&of, cand[c], 0, versioned, libname);
        free(cand);
    } else {
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 1; i < of.n; i++)
                made += resolve_sym(&of, i, pass, versioned, libname);
    }
    free(of.refs);
    as_fnindex_free(&of.fidx);
    return made;
}

/* The target a definition of sym in object d stands for, or -1. */
static int target_of_def(const as_obj *d, const char *sym, const char *version) {
    as_dyninfo di;
    if (as_dyn_read(d->dyn, d->base, &di) != 0)
        return -2; /* no table: not a definition */
    const ElfW(Sym) *s = as_dyn_lookup(&di, sym, version);
    if (!s || ELF64_ST_TYPE(s->st_info) == STT_OBJECT || ELF64_ST_TYPE(s->st_info) == STT_TLS)
        return -2;
    if (ELF64_ST_TYPE(s->st_info) == STT_GNU_IFUNC)
        return target_by_def(sym, d->lo, d->hi);
    return target_by_fn((void *)(d->base + s->st_value));
}

/* How the loader would bind a lazily bound slot of o, found without asking the loader
 * (g_lock is held: the loader's lock may belong to a thread waiting for g_lock). A
 * DT_SYMBOLIC object binds to its own definition first; then the global scope, whose head
 * is the objects loaded at start (never unloaded: their tables are read). Past it the
 * scope depends on how each later object was opened (RTLD_GLOBAL or not, RTLD_DEEPBIND),
 * which memory does not tell, and a later object may be unloading on another thread right
 * now: its tables are not read; the slot is taken only when exactly one live target has
 * the symbol. objs[0, n) are the loaded objects in load order. Returns the target id, or
 * -1 (the slot is then left to the loader: the call runs unwrapped, never elsewhere). */
static int resolve_like_loader(const as_obj *o, const char *sym, const char *version,
                               const as_obj *objs, int n) {
    as_dyninfo own;
    if (as_dyn_read(o->dyn, o->base, &own) == 0 && own.symbolic) {
        int id = target_of_def(o, sym, version);
        if (id != -2)
            return id;
    }
    int head = g_ninitial < 0 ? n : (g_ninitial < n ? g_ninitial : n);
    for (int i = 0; i < head; i++) {
        int id = target_of_def(&objs[i], sym, version);
        if (id != -2)
            return id;
    }
    int found = -1;
    uint32_t nt = ntargets();
    for (uint32_t i = 0; i < nt; i++) {
        if (as_target_retired(i) || strcmp(as_targets[i].symbol, sym) != 0)
            continue;
        if (found >= 0 && as_targets[found].orig != as_targets[i].orig)
            return -1; /* defined twice: which one the loader picks is unknown */
        found = (int)i;
    }
    return found;
}

/* as_got_decide_fn: a slot whose bound value is a target's orig, or a lazy slot whose
 * symbol the loader would bind to a target, gets that target's thunk. */
static void *decide_slot(const as_obj *o, const char *sym, const char *version, void *cur, int lazy,
                         void *ctx) {
    const as_obj *objs = ctx;
    if (as_thunk_id(cur) >= 0)
        return NULL; /* already ours: re-installs are idempotent */
    /* A slot holding a function whose entry is patched takes the lean thunk too: its
     * calls are standard calls, and the thunk calls the trampoline (recorded once). */
    int id = target_by_fn(cur);
    if (id < 0 && lazy && is_target_symbol(sym))
        id = resolve_like_loader(o, sym, version, objs, g_nobjs);
    if (id < 0)
        return NULL;
    const as_entry *e = target_entry(id);
    if (e && e->hook == AS_HOOK_ENTRY && !stand_in_target(id))
        return NULL;
    __atomic_fetch_or(&as_targets[id].via, AS_VIA_GOT, __ATOMIC_RELAXED);
    return as_thunk_addr((uint32_t)id);
}

/* Whether object file `file` may hold a local function some entry still needs: an entry
 * with hook=entry, or a hook=auto entry that matched no exported function yet, whose lib=
 * (if any) matches file. Reading the object's symbols from disk is skipped otherwise. */
static int needs_local_symbols(const char *file) {
    for (int i = 0; i < g_cfg->nentries; i++) {
        const as_entry *e = &g_cfg->entries[i];
        if (!e->pattern || e->hook == AS_HOOK_GOT)
            continue;
        if (e->hook == AS_HOOK_AUTO && g_matched[i])
            continue;
        if (e->lib && !as_glob_match(e->lib, file))
            continue;
        return 1;
    }
    return 0;
}

/* ---- local symbols read once per run (symcache.h) ---- */

/* Whether the local symbols of o must be read: some entry may select one there, and no
 * process of this run found none in the same file before. */
static int wants_local_scan(const as_obj *o) {
    /* The vDSO has no file: its name ("linux-vdso.so.1") would be opened relative to the
     * working directory, in every process. Its exported functions are found in memory. */
    uintptr_t vdso = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (vdso && vdso >= o->lo && vdso < o->hi)
        return 0;
    return needs_local_symbols(base_name(obj_path(o))) &&
           !as_symcache_known_empty(o, obj_path(o), as_symcache_key(g_cfg));
}

/* as_entry_scan_obj for o; a file where no entry selected anything is remembered for the
 * run, so the next process does not read it again. */
static void scan_local(const as_obj *o) {
    unsigned char *hit = calloc((size_t)(g_cfg->nentries > 0 ? g_cfg->nentries : 1), 2);
    for (int i = 0; hit && i < g_cfg->nentries; i++)
        hit[g_cfg->nentries + i] = (unsigned char)as_nohook_seen(i); /* before the scan */
    int rc = as_entry_scan_obj(g_cfg, obj_path(o), o->base, hit ? hit : g_matched);
    if (!hit)
        return;
    int any = 0;
    for (int i = 0; i < g_cfg->nentries; i++) {
        if (hit[i])
            g_matched[i] = any = 1;
    }
    /* A file where a glob only skipped functions that are never wrapped is not empty:
     * the next process must find them again to say why the entry tracks nothing. */
    for (int i = 0; i < g_cfg->nentries && !any; i++)
        if (as_nohook_seen(i) && !hit[g_cfg->nentries + i])
            any = 1;
    free(hit);
    if (rc == 0 && !any)
        as_symcache_note_empty(o, obj_path(o), as_symcache_key(g_cfg));
}

/* as_sym_keep_fn of a caller that wants only whether a file carries DWARF. */
static int keep_none(const char *name, void *ctx) {
    (void)name;
    (void)ctx;
    return 0;
}

/* Gives the targets [first, last) of object o that have no prototype the one DWARF has,
 * when o carries DWARF (in the file or its build-id debug file). The prototypes are kept
 * for the life of the process. Reads files: never call it inside a dl_iterate_phdr
 * callback. Leaves a target untouched on any failure. */
static void add_dwarf_protos(const as_obj *o, uint32_t first, uint32_t last) {
    /* First what earlier processes found (dwarf_disk.h): no DWARF read for those. */
    uint8_t *todo = calloc(last > first ? last - first : 1, 1);
    if (!todo)
        return;
    uint32_t unknown = 0;
    for (uint32_t k = first; k < last; k++) {
        as_target *t = &as_targets[k];
        as_proto p;
        if (t->proto)
            continue;
        int rc = as_dwarf_proto_cached(obj_path(o), t->symbol, &p);
        as_proto *copy = rc == 1 ? malloc(sizeof *copy) : NULL;
        if (copy) {
            *copy = p;
            as_target_set_proto(t, copy);
        } else if (rc != 0) {
            todo[k - first] = 1; /* 0: an earlier process found no prototype to read */
            unknown++;
        }
    }
    as_symtab st;
    if (unknown == 0 || as_symtab_load_some(obj_path(o), &st, NULL, 0, keep_none, NULL) != 0) {
        free(todo);
        return; /* every target has its prototype, written or known: no file is opened */
    }
    int has_debug = st.has_debug;
    as_symtab_free(&st);
    for (uint32_t i = first; has_debug && i < last; i++) {
        as_target *t = &as_targets[i];
        if (!todo[i - first])
            continue;
        as_proto *p = calloc(1, sizeof *p);
        if (!p)
            break;
        if (as_dwarf_proto(obj_path(o), t->symbol, p) != 0) {
            free(p);
            continue;
        }
        as_target_set_proto(t, p);
    }
    free(todo);
}

/* Arms the pipeline before the first slot is written. Returns 0 or -1. */
static int ensure_pipeline(void) {
    if (g_active)
        return 0;
    if (g_start_failed)
        return -1;
    if (as_pipe_arm() != 0) { /* started by the first record (pipeline.h) */
        g_start_failed = 1;
        char shown[512];
        as_redact_uris(as_cfg.output, shown, sizeof shown);
        as_alert_error("output '%s' refused: tracking nothing", shown);
        return -1;
    }
    __atomic_store_n(&g_active, 1, __ATOMIC_RELEASE);
    return 0;
}

static int cmp_lo(const void *a, const void *b) {
    const as_obj *x = *(as_obj *const *)a, *y = *(as_obj *const *)b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Whether target t's defining object is loaded: one of sorted[0, n) (by lo) has its range
 * and file name. */
static int obj_present(const as_target *t, as_obj **sorted, int n) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (sorted[mid]->lo < t->obj_lo)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (int i = lo; i < n && sorted[i]->lo == t->obj_lo; i++)
        if (sorted[i]->hi == t->obj_hi && strcmp(base_name(obj_path(sorted[i])), t->library) == 0)
            return 1;
    return 0;
}

/* After objects were unloaded (dlpi_subs moved): retires the targets whose object is gone
 * and forgets the objects no longer loaded, or loaded again at the same address (the slot
 * we wrote there lost our value): those are scanned anew. Can't fail (out of memory:
 * targets stay as they are). */
static void forget_unloaded(int n) {
    as_obj **sorted = malloc((size_t)(n > 0 ? n : 1) * sizeof *sorted);
    if (sorted) {
        for (int i = 0; i < n; i++)
            sorted[i] = &g_objs[i];
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_lo);
        uint32_t nt = ntargets();
        for (uint32_t i = 0; i < nt; i++) {
            const as_target *t = &as_targets[i];
            if (t->obj_lo != t->obj_hi && !as_target_retired(i) && !obj_present(t, sorted, n))
                as_target_retire(i);
        }
        free(sorted);
        as_entry_forget_retired();
    }
    size_t keep = 0;
    for (size_t i = 0; i < g_nseen; i++) {
        int here = 0;
        for (int k = 0; k < n && !here; k++)
            here = g_seen[i].base == g_objs[k].base && strcmp(g_seen[i].name, g_objs[k].name) == 0;
        if (here && g_seen[i].witness) {
            void *v = NULL;
            here = as_safe_read(&v, g_seen[i].witness, sizeof v) == sizeof v &&
                   v == g_seen[i].witness_val;
        }
        if (here)
            g_seen[keep++] = g_seen[i];
        else
            free(g_seen[i].name);
    }
    g_nseen = keep;
}

/* The seen entry of o, or NULL. */
static seen_obj *seen_entry(const as_obj *o) {
    for (size_t i = g_nseen; i > 0; i--)
        if (g_seen[i - 1].base == o->base && strcmp(g_seen[i - 1].name, o->name) == 0)
            return &g_seen[i - 1];
    return NULL;
}

/* Whether o is held loaded by a pin of this scan (objects loaded later than the start may
 * be unloaded by another thread at any time: only pinned ones are read). */
static int pinned(const as_obj *o) {
    for (int i = 0; i < g_npins; i++)
        if (g_pins[i] && strcmp(g_pins[i], o->name) == 0)
            return 1;
    return 0;
}

/* Holds every later object not seen yet loaded for the coming scan (a dlopen with
 * RTLD_NOLOAD takes a reference), so a dlclose on another thread cannot unmap it while
 * its tables are read. Call without g_lock (the loader's lock is taken). Returns the
 * handles (*nh of them; NULL entries for objects gone meanwhile), or NULL; g_pins and
 * g_npins are set under g_lock. */
static void **pin_fresh(int *nh) {
    *nh = 0;
    pthread_mutex_lock(&g_lock);
    int n = as_objs_collect(g_objs, MAX_OBJS);
    if (n > MAX_OBJS)
        n = MAX_OBJS;
    if (n > 0 && g_objs[0].subs != g_subs) {
        forget_unloaded(n); /* an object loaded again is fresh, hence pinned */
        g_subs = g_objs[0].subs;
    }
    int start = g_ninitial < 0 ? n : g_ninitial;
    char **names = calloc((size_t)(n > start ? n - start : 1), sizeof *names);
    int nn = 0;
    for (int i = start; names && i < n; i++) {
        if (seen_before(&g_objs[i]) || skip_obj(&g_objs[i]) || !g_objs[i].name[0])
            continue;
        names[nn] = strdup(g_objs[i].name);
        if (names[nn])
            nn++;
    }
    pthread_mutex_unlock(&g_lock);
    void **h = names ? calloc((size_t)(nn ? nn : 1), sizeof *h) : NULL;
    if (!h) {
        free(names);
        return NULL;
    }
    for (int i = 0; i < nn; i++) {
        h[i] = as_real.dlopen(names[i], RTLD_NOLOAD | RTLD_LAZY);
        if (!h[i]) {
            free(names[i]);
            names[i] = NULL;
        }
    }
    pthread_mutex_lock(&g_lock);
    g_pins = names;
    g_npins = nn;
    pthread_mutex_unlock(&g_lock);
    *nh = nn;
    return h;
}

/* Drops the pins of pin_fresh. Call without g_lock (dlclose may unload). */
static void unpin(void **h, int nh) {
    pthread_mutex_lock(&g_lock);
    char **names = g_pins;
    g_pins = NULL;
    g_npins = 0;
    pthread_mutex_unlock(&g_lock);
    for (int i = 0; h && i < nh; i++) {
        if (h[i])
            as_real.dlclose(h[i]);
        if (names)
            free(names[i]);
    }
    free(names);
    free(h);
}

/* One pass over the objects not seen before (after an unload: the seen set forgets what
 * went away or came back). Call with g_lock held; never asks the loader
 * anything (IFUNCs matched are queued in g_pending). Returns the number of slots written,
 * or -1 when nothing could be patched. */
static int scan_locked(void) {
    int n = as_objs_collect(g_objs, MAX_OBJS);
    if (n > MAX_OBJS) {
        as_warn("%d objects loaded: only the first %d are instrumented", n, MAX_OBJS);
        n = MAX_OBJS;
    }
    g_nobjs = n;
    if (g_ninitial < 0)
        g_ninitial = n;
    if (n > 0 && g_objs[0].subs != g_subs) {
        forget_unloaded(n);
        g_subs = g_objs[0].subs;
    }
    /* This pass's arrays, on the heap: 32 KiB of stack would cost a short-lived process
     * page faults for nothing (g_lock held: one buffer, kept for the next scan). */
    static int *scratch;
    static int scratch_n;
    if (n > scratch_n) {
        int *b = realloc(scratch, (size_t)n * 4 * sizeof *b);
        if (!b)
            return -1;
        scratch = b;
        scratch_n = n;
    }
    int *fresh = scratch, *scan_entry = scratch + n;
    uint32_t *made_from = (uint32_t *)(scratch + 2 * n), *made_to = (uint32_t *)(scratch + 3 * n);
    int nfresh = 0;
    for (int i = 0; i < n; i++) {
        const as_obj *o = &g_objs[i];
        if (seen_before(o))
            continue;
        if (i >= g_ninitial && !pinned(o))
            continue; /* loaded since the pins were taken: the next scan takes it */
        mark_seen(o);
        if (skip_obj(o))
            continue;
        /* Targets are appended: the ones this object creates are [made_from, made_to). */
        made_from[nfresh] = ntargets();
        resolve_obj(o, base_name(obj_path(o)));
        made_to[nfresh] = ntargets();
        fresh[nfresh++] = i;
    }
    /* DWARF prototypes before any hook is in place: every call is typed alike. */
    for (int k = 0; k < nfresh; k++)
        if (made_to[k] > made_from[k])
            add_dwarf_protos(&g_objs[fresh[k]], made_from[k], made_to[k]);
    /* Which new objects need their local symbols read from disk (entry patching). */
    int nscan = 0;
    if (as_entry_wanted(g_cfg)) {
        for (int k = 0; k < nfresh; k++) {
            const as_obj *o = &g_objs[fresh[k]];
            if (wants_local_scan(o))
                scan_entry[nscan++] = fresh[k];
        }
    }
    as_stat_hooked = hooked_count();
    if (nfresh == 0 || (ntargets() == 0 && nscan == 0)) {
        g_nepend = 0;
        return 0;
    }
    if (ensure_pipeline() != 0) {
        g_nepend = 0;
        return -1;
    }
    /* Entry patches before the GOT pass: a function hooked both ways then has its
     * trampoline as orig, and its GOT slots get the lean thunk, which calls the trampoline
     * (a call is recorded once whichever way it came). */
    for (size_t k = 0; k < g_nepend; k++) {
        const as_target *t = &as_targets[g_epend[k].id];
        as_entry_hook_also(g_epend[k].fn, g_epend[k].size, t->symbol, t->action_name, t->library,
                           target_entry(g_epend[k].id));
    }
    g_nepend = 0;
    for (int k = 0; k < nscan; k++) {
        scan_local(&g_objs[scan_entry[k]]);
    }
    as_dwarf_cache_clear(); /* prototypes read: the debug information need not stay mapped */
    as_stat_hooked = hooked_count();
    /* Every new object's slots, against every target (old objects' targets included: a
     * plugin calls into libraries loaded long before it). */
    int written = 0;
    for (int k = 0; k < nfresh; k++) {
        void **witness = NULL;
        int w = as_got_patch_w(&g_objs[fresh[k]], decide_slot, g_objs, &witness);
        if (w > 0)
            written += w;
        seen_obj *so = witness ? seen_entry(&g_objs[fresh[k]]) : NULL;
        if (so) {
            so->witness = witness;
            so->witness_val = *witness;
        }
    }
    return written;
}

/* Resolves the IFUNCs scan_locked queued, with g_lock released (dlopen/dlsym take the
 * loader's lock), then creates their targets and patches every object's slots again
 * under g_lock. Call with g_lock held; returns with it held. Returns the slots written. */
static int resolve_pending_unlocked(void) {
    if (g_npending == 0)
        return 0;
    pending_ifunc *list = g_pending;
    size_t np = g_npending;
    g_pending = NULL;
    g_npending = g_cappending = 0;
    void **impl = calloc(np, sizeof *impl);
    pthread_mutex_unlock(&g_lock);
    for (size_t i = 0; impl && i < np; i++) {
        void *h = as_real.dlopen(list[i].obj[0] ? list[i].obj : NULL, RTLD_NOLOAD | RTLD_LAZY);
        if (!h)
            continue;
        impl[i] = list[i].version ? as_real.dlvsym(h, list[i].sym, list[i].version)
                                  : as_real.dlsym(h, list[i].sym);
        as_real.dlclose(h);
    }
    pthread_mutex_lock(&g_lock);
    int made = 0;
    for (size_t i = 0; i < np; i++) {
        const as_entry *e = &g_cfg->entries[list[i].idx];
        if (impl && impl[i] && target_by_orig(impl[i]) < 0) {
            int id = as_target_get_in(impl[i], list[i].sym, e->name ? e->name : list[i].sym,
                                      list[i].lib, e, list[i].lo, list[i].hi);
            if (id >= 0) {
                g_matched[list[i].idx] = 1;
                made++;
                list[i].sym = list[i].lib = NULL; /* kept by the target */
            }
        } else if (impl && impl[i]) {
            g_matched[list[i].idx] = 1;
        }
        free(list[i].obj);
        free(list[i].sym);
        free(list[i].lib);
        free(list[i].version);
    }
    free(list);
    free(impl);
    if (made == 0 || ensure_pipeline() != 0)
        return 0;
    as_stat_hooked = hooked_count();
    int n = as_objs_collect(g_objs, MAX_OBJS);
    g_nobjs = n > MAX_OBJS ? MAX_OBJS : n;
    int written = 0;
    for (int i = 0; i < g_nobjs; i++) {
        if (skip_obj(&g_objs[i]))
            continue;
        int w = as_got_patch(&g_objs[i], decide_slot, g_objs);
        if (w > 0)
            written += w;
    }
    return written;
}

int as_install_start(as_config *cfg) {
    if (!cfg || as_real_init() != 0)
        return -1;
    pthread_mutex_lock(&g_lock);
    as_in_agentsight++;
    int rc = -1;
    g_cfg = cfg;
    g_matched = calloc((size_t)(cfg->nentries > 0 ? cfg->nentries : 1), 1);
    if (!g_matched)
        goto out;
    if (scan_locked() < 0)
        goto out;
    resolve_pending_unlocked();
    rc = (int)ntargets();
out:
    as_in_agentsight--;
    pthread_mutex_unlock(&g_lock);
    return rc;
}

void as_install_report_unmatched(void) {
    static long done_pid;
    if (!g_cfg || done_pid == (long)getpid())
        return; /* after a failed start: what the objects scanned before it matched */
    if (pthread_mutex_trylock(&g_lock) != 0)
        return; /* a thread is installing as the process ends: never wait for it */
    done_pid = (long)getpid();
    as_in_agentsight++;
    int unmatched = 0;
    for (int i = 0; g_matched && i < g_cfg->nentries; i++) {
        const as_entry *e = &g_cfg->entries[i];
        if (g_matched[i] || !e->pattern || e->dup_line)
            continue; /* a duplicate was named as one when the config was read */
        if (as_nohook_explain(g_cfg, i))
            continue; /* it reached only functions that are never wrapped: said why */
        if (unmatched++ >= AS_CONFIG_MSG_CAP)
            continue;
        char name[512];
        snprintf(name, sizeof name, "%s%s%s", e->pattern, e->version ? "@" : "",
                 e->version ? e->version : "");
        as_diag_unmatched(AS_ENTRY_SRC(g_cfg, e), e->line, name, e->hook == AS_HOOK_GOT);
    }
    if (unmatched > AS_CONFIG_MSG_CAP)
        as_warn("%s: and %d more entries matched no function of the objects this process loaded",
                g_cfg->path ? g_cfg->path : "config", unmatched - AS_CONFIG_MSG_CAP);
    as_in_agentsight--;
    pthread_mutex_unlock(&g_lock);
}

int as_install_scan(void) {
    if (!g_cfg || as_in_agentsight || g_start_failed)
        return -1;
    int saved = errno;
    as_in_agentsight++;
    int nh;
    void **pins = pin_fresh(&nh);
    pthread_mutex_lock(&g_lock);
    int rc = scan_locked();
    if (rc >= 0)
        rc += resolve_pending_unlocked();
    pthread_mutex_unlock(&g_lock);
    unpin(pins, nh);
    as_in_agentsight--;
    errno = saved;
    return rc;
}

void *as_install_dlsym_result(void *addr) {
    if (!addr || !as_install_active() || as_in_agentsight)
        return addr;
    int id = target_by_fn(addr);
    if (id < 0)
        return addr;
    const as_entry *e = target_entry(id);
    if (e && e->hook == AS_HOOK_ENTRY && !stand_in_target(id))
        return addr;
    __atomic_fetch_or(&as_targets[id].via, AS_VIA_DLSYM, __ATOMIC_RELAXED);
    return as_thunk_addr((uint32_t)id);
}
