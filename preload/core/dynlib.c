/* dynlib.c - opens the libraries of on-demand features (dynlib.h) and remembers which
 * loaded objects they brought, so the installer never instruments the interposer's own. */
#include "core/dynlib.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/bigbss.h"

#define MAX_OWNED 128
#define OWNED_NAME 256

/* Objects our loads brought: appended under g_lock, published by g_nowned (release). */
static struct {
    uintptr_t base;
    char name[OWNED_NAME];
} g_owned[MAX_OWNED] AS_BIG_BSS;
static int g_nowned;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static as_dl_open_fn g_open;
static as_dl_sym_fn g_sym;

void as_dynlib_set_loader(as_dl_open_fn open, as_dl_sym_fn sym) {
    g_open = open;
    g_sym = sym;
}

/* dl_iterate_phdr callbacks: no malloc, no loader call. */
static int count_cb(struct dl_phdr_info *info, size_t size, void *ctx) {
    (void)info;
    (void)size;
    ++*(int *)ctx;
    return 0;
}

typedef struct {
    int skip; /* objects loaded before: the first skip of the list */
    int i;
} owned_ctx;

static int record_cb(struct dl_phdr_info *info, size_t size, void *ctx) {
    (void)size;
    owned_ctx *c = ctx;
    if (c->i++ < c->skip || g_nowned >= MAX_OWNED)
        return 0;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    int n = g_nowned;
    g_owned[n].base = info->dlpi_addr;
    snprintf(g_owned[n].name, sizeof g_owned[n].name, "%s", name);
    __atomic_store_n(&g_nowned, n + 1, __ATOMIC_RELEASE);
    return 0;
}

int as_dynlib_owns(uintptr_t base, const char *name) {
    int n = __atomic_load_n(&g_nowned, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if (g_owned[i].base == base &&
            strncmp(g_owned[i].name, name ? name : "", OWNED_NAME - 1) == 0)
            return 1;
    return 0;
}

/* RTLD_DEEPBIND when the process defines lib's probe symbol in an object not named like
 * the library that should define it (see dynlib.h: own_copy_probe); 0 otherwise, so
 * that sanitizer runtimes, which refuse RTLD_DEEPBIND, see it only where needed. */
static int deep_mode(const as_dynlib *lib, as_dl_sym_fn sym) {
    if (!lib->own_copy_probe)
        return 0;
    char name[96];
    const char *sp = strchr(lib->own_copy_probe, ' ');
    size_t n = sp ? (size_t)(sp - lib->own_copy_probe) : strlen(lib->own_copy_probe);
    if (!sp || n >= sizeof name)
        return 0;
    memcpy(name, lib->own_copy_probe, n);
    name[n] = '\0';
    const char *owner = sp + 1;
    void *f = sym(RTLD_DEFAULT, name);
    Dl_info di;
    if (!f || !dladdr(f, &di))
        return 0;
    const char *path = di.dli_fname ? di.dli_fname : "";
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    return strncmp(b, owner, strlen(owner)) == 0 ? 0 : RTLD_DEEPBIND;
}

/* Returns 0 with the table filled, or -1 (reported once); see dynlib.h. */
int as_dynlib_load(as_dynlib *lib) {
    int st = __atomic_load_n(&lib->state, __ATOMIC_ACQUIRE);
    if (st != 0)
        return st > 0 ? 0 : -1;
    pthread_mutex_lock(&g_lock);
    st = lib->state;
    if (st != 0)
        goto out;
    as_dl_open_fn open = g_open ? g_open : dlopen;
    as_dl_sym_fn sym = g_sym ? g_sym : dlsym;
    /* New objects are appended to the loader's list: those past the count taken before
     * are what this dlopen brought (or what another thread loaded at the same moment,
     * which is then left alone too: a missed plugin, never a hooked library of ours). */
    int before = 0;
    dl_iterate_phdr(count_cb, &before);
    void *h = open(lib->soname, RTLD_NOW | RTLD_LOCAL | deep_mode(lib, sym));
    if (!h) {
        const char *why = dlerror();
        as_warn("%s cannot be loaded (%s): %s are off", lib->soname, why ? why : "not found",
                lib->feature);
        st = -1;
        goto out;
    }
    owned_ctx c = {before, 0};
    dl_iterate_phdr(record_cb, &c);
    const char *missing = NULL;
    if (lib->resolve(h, sym, &missing) != 0) {
        as_warn("%s lacks %s (another version?): %s are off", lib->soname,
                missing ? missing : "a function", lib->feature);
        st = -1; /* kept loaded: its objects may already be running code of theirs */
        goto out;
    }
    st = 1;
out:
    __atomic_store_n(&lib->state, st, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_lock);
    return st > 0 ? 0 : -1;
}
