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
#include "hook/install.h"

#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pipeline.h"
#include "core/settings.h"
#include "hook/dwarf.h"
#include "hook/elfsym.h"
#include "hook/entry.h"
#include "hook/got.h"
#include "hook/target.h"

#define MAX_OBJS 2048

typedef struct seen_obj {
    uintptr_t base;
    char *name;
} seen_obj;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static as_config *g_cfg;
static int g_active;       /* pipeline running, installs allowed */
static int g_start_failed; /* as_pipe_start failed once: never patch */
static seen_obj *g_seen;
static size_t g_nseen, g_capseen;
static unsigned char *g_matched; /* per entry: matched something */
static as_obj g_objs[MAX_OBJS];  /* scratch for as_objs_collect, under g_lock */
static char g_exe[4096];

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
        if (as_targets[i].orig == addr)
            return (int)i;
    return -1;
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
    const char *b = base_name(o->name);
    return strncmp(b, "ld-linux", 8) == 0 || strncmp(b, "ld64.so", 7) == 0;
}

static int seen_before(const as_obj *o) {
    for (size_t i = 0; i < g_nseen; i++)
        if (g_seen[i].base == o->base && strcmp(g_seen[i].name, o->name) == 0)
            return 1;
    return 0;
}

/* Remembers o. Returns 0, or -1 when out of memory (o will be scanned again: harmless,
 * every step is idempotent). */
static int mark_seen(const as_obj *o) {
    if (g_nseen == g_capseen) {
        size_t cap = g_capseen ? g_capseen * 2 : 64;
        seen_obj *n = realloc(g_seen, cap * sizeof *n);
        if (!n)
            return -1;
        g_seen = n;
        g_capseen = cap;
    }
    char *name = strdup(o->name);
    if (!name)
        return -1;
    g_seen[g_nseen].base = o->base;
    g_seen[g_nseen].name = name;
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
    const as_entry *glob = NULL;
    int glob_i = -1;
    for (int i = 0; i < g_cfg->nentries; i++) {
        const as_entry *e = &g_cfg->entries[i];
        if (!e->pattern)
            continue;
        if (e->version && (!version || strcmp(e->version, version) != 0))
            continue;
        if (e->lib && !as_glob_match(e->lib, file))
            continue;
        if (!e->is_glob) {
            if (strcmp(e->pattern, name) == 0) {
                *index = i;
                return e;
            }
        } else if (!glob && as_glob_match(e->pattern, name)) {
            glob = e;
            glob_i = i;
        }
    }
    *index = glob_i;
    return glob;
}

/* The resolved address of an exported function of o: base + st_value, or for an IFUNC
 * the implementation its resolver picks, asked from dlsym on a handle of that object.
 * Returns NULL when it cannot be resolved. */
static void *resolve_orig(const as_obj *o, const ElfW(Sym) * s, const char *name,
                          const char *version) {
    if (ELF64_ST_TYPE(s->st_info) != STT_GNU_IFUNC)
        return (void *)(o->base + s->st_value);
    void *h = as_real.dlopen(o->name[0] ? o->name : NULL, RTLD_NOLOAD | RTLD_LAZY);
    if (!h)
        return NULL;
    void *r = version ? as_real.dlvsym(h, name, version) : as_real.dlsym(h, name);
    as_real.dlclose(h);
    return r;
}

/* Creates the targets of the entries matching exported functions of o. Returns the number
 * of targets created or found. */
static int resolve_obj(const as_obj *o, const char *libname) {
    as_dyninfo di;
    if (as_dyn_read(o->dyn, o->base, &di) != 0 || !di.symtab)
        return 0;
    size_t n = dynsym_count(&di);
    int made = 0;
    for (size_t i = 1; i < n; i++) {
        const ElfW(Sym) *s = &di.symtab[i];
        int type = ELF64_ST_TYPE(s->st_info);
        int bind = ELF64_ST_BIND(s->st_info);
        int vis = ELF64_ST_VISIBILITY(s->st_other);
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s->st_shndx == SHN_UNDEF ||
            (bind != STB_GLOBAL && bind != STB_WEAK) ||
            (vis != STV_DEFAULT && vis != STV_PROTECTED))
            continue;
        if (di.strsz && s->st_name >= di.strsz)
            continue;
        const char *name = di.strtab + s->st_name;
        const char *version = as_dyn_version(&di, i, NULL);
        int idx;
        const as_entry *e = match_entry(name, version, libname, &idx);
        if (!e)
            continue;
        void *orig = resolve_orig(o, s, name, version);
        if (!orig)
            continue;
        if (target_by_orig(orig) >= 0) {
            g_matched[idx] = 1;
            made++;
            continue;
        }
        /* Strings of a target live for the process: the object may be unloaded later. */
        char *sym = strdup(name);
        char *lib = strdup(libname);
        if (!sym || !lib) {
            free(sym);
            free(lib);
            continue;
        }
        int id = as_target_get(orig, sym, e->name ? e->name : sym, lib, e);
        if (id < 0) {
            as_warn("too many wrapped functions (%d): %s in %s not wrapped", AS_MAX_TARGETS, name,
                    libname);
            free(sym);
            free(lib);
            continue;
        }
        g_matched[idx] = 1;
        made++;
    }
    return made;
}

/* How the loader binds a lazily bound slot of o: the global scope first, then o's own
 * dependency scope. Returns the address or NULL. */
static void *resolve_like_loader(const as_obj *o, const char *sym, const char *version) {
    void *r =
        version ? as_real.dlvsym(RTLD_DEFAULT, sym, version) : as_real.dlsym(RTLD_DEFAULT, sym);
    if (r)
        return r;
    void *h = as_real.dlopen(o->name[0] ? o->name : NULL, RTLD_NOLOAD | RTLD_LAZY);
    if (!h)
        return NULL;
    r = version ? as_real.dlvsym(h, sym, version) : as_real.dlsym(h, sym);
    as_real.dlclose(h);
    return r;
}

/* as_got_decide_fn: a slot whose bound value is a target's orig, or a lazy slot whose
 * symbol the loader would bind to a target, gets that target's thunk. */
static void *decide_slot(const as_obj *o, const char *sym, const char *version, void *cur, int lazy,
                         void *ctx) {
    (void)ctx;
    if (as_thunk_id(cur) >= 0)
        return NULL; /* already ours: re-installs are idempotent */
    int id = target_by_orig(cur);
    if (id < 0 && lazy && is_target_symbol(sym))
        id = target_by_orig(resolve_like_loader(o, sym, version));
    if (id < 0)
        return NULL;
    const as_entry *e = target_entry(id);
    if (e && e->hook == AS_HOOK_ENTRY)
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

/* Gives the targets [first, last) of object o that have no prototype the one DWARF has,
 * when o carries DWARF (in the file or its build-id debug file). The prototypes are kept
 * for the life of the process. Reads files: never call it inside a dl_iterate_phdr
 * callback. Leaves a target untouched on any failure. */
static void add_dwarf_protos(const as_obj *o, uint32_t first, uint32_t last) {
    uint32_t i = first;
    while (i < last && as_targets[i].proto)
        i++;
    if (i == last)
        return; /* every target has its written prototype: no file is opened */
    as_symtab st;
    if (as_symtab_load(obj_path(o), &st, NULL, 0) != 0)
        return;
    int has_debug = st.has_debug;
    as_symtab_free(&st);
    if (!has_debug)
        return;
    for (; i < last; i++) {
        as_target *t = &as_targets[i];
        if (t->proto)
            continue;
        as_proto *p = calloc(1, sizeof *p);
        if (!p)
            return;
        if (as_dwarf_proto(obj_path(o), t->symbol, p) != 0) {
            free(p);
            continue;
        }
        __atomic_store_n(&t->proto, p, __ATOMIC_RELEASE);
    }
}

/* Starts the pipeline before the first slot is written. Returns 0 or -1. */
static int ensure_pipeline(void) {
    if (g_active)
        return 0;
    if (g_start_failed)
        return -1;
    if (as_pipe_start() != 0) {
        g_start_failed = 1;
        as_error("no sink could be opened (output '%s'): tracking nothing", as_cfg.output);
        return -1;
    }
    __atomic_store_n(&g_active, 1, __ATOMIC_RELEASE);
    return 0;
}

/* One pass over the objects not seen before. Call with g_lock held. Returns the number of
 * slots written, or -1 when nothing could be patched. */
static int scan_locked(void) {
    int n = as_objs_collect(g_objs, MAX_OBJS);
    if (n > MAX_OBJS) {
        as_warn("%d objects loaded: only the first %d are instrumented", n, MAX_OBJS);
        n = MAX_OBJS;
    }
    int fresh[MAX_OBJS];
    uint32_t made_from[MAX_OBJS], made_to[MAX_OBJS];
    int nfresh = 0;
    for (int i = 0; i < n; i++) {
        const as_obj *o = &g_objs[i];
        if (seen_before(o))
            continue;
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
    int scan_entry[MAX_OBJS];
    int nscan = 0;
    if (as_entry_wanted(g_cfg)) {
        for (int k = 0; k < nfresh; k++) {
            const as_obj *o = &g_objs[fresh[k]];
            if (needs_local_symbols(base_name(obj_path(o))))
                scan_entry[nscan++] = fresh[k];
        }
    }
    as_stat_hooked = ntargets();
    if (nfresh == 0 || (ntargets() == 0 && nscan == 0))
        return 0;
    if (ensure_pipeline() != 0)
        return -1;
    /* Entry patches before the GOT pass: a function hooked both ways then has its
     * trampoline as orig, and its GOT slots stay as they are (calls through them reach the
     * patched entry, hence the thunk, once). */
    for (int k = 0; k < nscan; k++) {
        const as_obj *o = &g_objs[scan_entry[k]];
        as_entry_scan_obj(g_cfg, obj_path(o), o->base, g_matched);
    }
    as_stat_hooked = ntargets();
    /* Every new object's slots, against every target (old objects' targets included: a
     * plugin calls into libraries loaded long before it). */
    int written = 0;
    for (int k = 0; k < nfresh; k++) {
        int w = as_got_patch(&g_objs[fresh[k]], decide_slot, NULL);
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
    for (int i = 0; i < cfg->nentries; i++) {
        const as_entry *e = &cfg->entries[i];
        if (g_matched[i] || e->lib || !e->pattern)
            continue; /* lib= entries may name a library loaded later by dlopen */
        as_warn("%s:%d:1: '%s%s%s' matches no %sfunction of the loaded objects",
                cfg->path ? cfg->path : "config", e->line, e->pattern, e->version ? "@" : "",
                e->version ? e->version : "", e->hook == AS_HOOK_GOT ? "exported " : "");
    }
    rc = (int)ntargets();
out:
    as_in_agentsight--;
    pthread_mutex_unlock(&g_lock);
    return rc;
}

int as_install_scan(void) {
    if (!g_cfg || as_in_agentsight || g_start_failed)
        return -1;
    int saved = errno;
    pthread_mutex_lock(&g_lock);
    as_in_agentsight++;
    int rc = scan_locked();
    as_in_agentsight--;
    pthread_mutex_unlock(&g_lock);
    errno = saved;
    return rc;
}

void *as_install_dlsym_result(void *addr) {
    if (!addr || !as_install_active() || as_in_agentsight)
        return addr;
    int id = target_by_orig(addr);
    if (id < 0)
        return addr;
    const as_entry *e = target_entry(id);
    if (e && e->hook == AS_HOOK_ENTRY)
        return addr;
    __atomic_fetch_or(&as_targets[id].via, AS_VIA_DLSYM, __ATOMIC_RELAXED);
    return as_thunk_addr((uint32_t)id);
}
