/* dlwrap.c - the libc functions the interposer exports over libc's own: dlopen/dlmopen
 * (install into newly loaded objects), dlsym/dlvsym (hand out thunks; keep RTLD_NEXT
 * meaning "after the caller"), and the exec family (flush queued actions first).
 *
 * Our own calls of these functions must never come back here, so the real ones are found
 * in libc's dynamic symbol table in memory (as_real), not through dlsym. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/pipeline.h"
#include "hook/got.h"
#include "hook/install.h"

#define AS_EXPORT __attribute__((visibility("default")))

/* preload_main.c: hands new targets' names to the pipeline (for crash recovery). Both
 * files exist only in the interposer, so no header carries it. */
void as_preload_note_targets(void);

as_real_fns as_real;

static pthread_once_t g_real_once = PTHREAD_ONCE_INIT;
static int g_real_ok;
static pid_t g_pid;

typedef struct find_ctx {
    const char *want; /* file name to look for */
    as_obj obj;
    int found;
} find_ctx;

/* dl_iterate_phdr callback: remembers the object named want; allocates nothing. */
static int find_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    find_ctx *c = arg;
    (void)size;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    const char *b = strrchr(name, '/');
    b = b ? b + 1 : name;
    if (strcmp(b, c->want) != 0)
        return 0;
    c->obj.name = name;
    c->obj.base = info->dlpi_addr;
    c->obj.dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            c->obj.dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    c->found = 1;
    return 1;
}

/* Address of a function defined in one of the named libraries, or NULL. */
static void *libc_sym(const as_dyninfo *libc, const as_dyninfo *libdl, uintptr_t libc_base,
                      uintptr_t libdl_base, const char *name) {
    const ElfW(Sym) *s = libc ? as_dyn_lookup(libc, name, NULL) : NULL;
    if (s)
        return (void *)(libc_base + s->st_value);
    s = libdl ? as_dyn_lookup(libdl, name, NULL) : NULL;
    if (s)
        return (void *)(libdl_base + s->st_value);
    return NULL;
}

static void real_init_once(void) {
    find_ctx c = {.want = "libc.so.6"};
    dl_iterate_phdr(find_cb, &c);
    as_dyninfo libc, libdl;
    int have_libc = c.found && as_dyn_read(c.obj.dyn, c.obj.base, &libc) == 0;
    uintptr_t libc_base = c.obj.base;
    find_ctx d = {.want = "libdl.so.2"}; /* glibc before 2.34 kept dl* there */
    dl_iterate_phdr(find_cb, &d);
    int have_libdl = d.found && as_dyn_read(d.obj.dyn, d.obj.base, &libdl) == 0;
    const as_dyninfo *pc = have_libc ? &libc : NULL;
    const as_dyninfo *pd = have_libdl ? &libdl : NULL;
#define REAL(f) as_real.f = (__typeof__(as_real.f))libc_sym(pc, pd, libc_base, d.obj.base, #f)
    REAL(dlopen);
    REAL(dlmopen);
    REAL(dlsym);
    REAL(dlvsym);
    REAL(dlclose);
    REAL(execve);
    REAL(execv);
    REAL(execvp);
    REAL(execvpe);
    REAL(fexecve);
    REAL(posix_spawn);
    REAL(posix_spawnp);
#undef REAL
    g_real_ok =
        as_real.dlopen && as_real.dlsym && as_real.dlvsym && as_real.dlclose && as_real.execve;
}

int as_real_init(void) {
    pthread_once(&g_real_once, real_init_once);
    return g_real_ok ? 0 : -1;
}

void as_dlwrap_set_pid(void) {
    g_pid = getpid();
}

/* ---- the caller's view of the search path (dlopen's $ORIGIN pitfall) ---- */

/* Expands $ORIGIN, $LIB, $PLATFORM (and their ${} forms) of one RUNPATH element into
 * out. Returns 0, or -1 when it does not fit or names an unknown token. */
static int expand_dir(const char *dir, size_t len, const char *origin, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        const char *val = NULL;
        size_t skip = 0;
        if (dir[i] == '$') {
            static const struct {
                const char *tok;
                const char *val;
            } toks[] = {{"ORIGIN", NULL}, {"LIB", "lib/x86_64-linux-gnu"}, {"PLATFORM", "x86_64"}};
            int braced = i + 1 < len && dir[i + 1] == '{';
            const char *p = dir + i + 1 + braced;
            size_t avail = len - (i + 1 + (size_t)braced);
            for (size_t t = 0; t < sizeof toks / sizeof toks[0]; t++) {
                size_t tl = strlen(toks[t].tok);
                if (avail < tl || strncmp(p, toks[t].tok, tl) != 0)
                    continue;
                if (braced && (avail <= tl || p[tl] != '}'))
                    continue;
                val = toks[t].val ? toks[t].val : origin;
                skip = 1 + (size_t)braced + tl + (size_t)braced;
                break;
            }
            if (!val)
                return -1;
        }
        if (val) {
            size_t vl = strlen(val);
            if (o + vl >= cap)
                return -1;
            memcpy(out + o, val, vl);
            o += vl;
            i += skip;
            continue;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = dir[i++];
    }
    out[o] = '\0';
    return 0;
}

/* Looks for file in a ':'-separated path list. Returns 1 and the path in out when found. */
static int search_list(const char *list, const char *origin, const char *file, char *out,
                       size_t cap) {
    if (!list)
        return 0;
    const char *p = list;
    for (int guard = 0; guard < 256; guard++) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char dir[PATH_MAX];
        if (len == 0) {
            strcpy(dir, ".");
        } else if (expand_dir(p, len, origin ? origin : ".", dir, sizeof dir) != 0) {
            dir[0] = '\0';
        }
        if (dir[0] && strlen(dir) + 1 + strlen(file) < cap) {
            char cand[PATH_MAX];
            size_t dl = strlen(dir);
            memcpy(cand, dir, dl);
            cand[dl] = '/';
            strcpy(cand + dl + 1, file);
            if (access(cand, F_OK) == 0) {
                strcpy(out, cand);
                return 1;
            }
        }
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

/* The directory of an object ($ORIGIN) into out. */
static void origin_of(const struct link_map *lm, char *out, size_t cap) {
    char path[PATH_MAX];
    if (lm->l_name && lm->l_name[0]) {
        snprintf(path, sizeof path, "%s", lm->l_name);
    } else {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
        path[n > 0 ? n : 0] = '\0';
    }
    char *slash = strrchr(path, '/');
    if (slash == path)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(path, ".");
    snprintf(out, cap, "%s", path);
}

/*
 * Resolves a bare library name the way the loader would for the caller's object: DT_RPATH
 * (of the caller, then the program) when the caller has no DT_RUNPATH, then
 * LD_LIBRARY_PATH, then the caller's DT_RUNPATH. Returns 1 and the path in out when the
 * caller's own paths find it where our (path-less) object would not; 0 to pass the name
 * unchanged.
 */
static int resolve_for_caller(const void *caller, const char *file, char *out, size_t cap) {
    Dl_info info;
    struct link_map *lm = NULL;
    if (!dladdr1(caller, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm)
        return 0;
    as_dyninfo di;
    if (as_dyn_read(lm->l_ld, lm->l_addr, &di) != 0)
        return 0;
    char origin[PATH_MAX];
    origin_of(lm, origin, sizeof origin);
    if (!di.runpath) {
        if (search_list(di.rpath, origin, file, out, cap))
            return 1;
        const struct link_map *main = lm;
        for (int guard = 0; main->l_prev && guard < 100000; guard++)
            main = main->l_prev;
        as_dyninfo mi;
        if (main != lm && as_dyn_read(main->l_ld, main->l_addr, &mi) == 0 && !mi.runpath) {
            char morigin[PATH_MAX];
            origin_of(main, morigin, sizeof morigin);
            if (search_list(mi.rpath, morigin, file, out, cap))
                return 1;
        }
    }
    char scratch[PATH_MAX];
    if (search_list(getenv("LD_LIBRARY_PATH"), origin, file, scratch, sizeof scratch))
        return 0; /* the loader finds it there from any caller */
    return search_list(di.runpath, origin, file, out, cap);
}

/* Shared body of dlopen and dlmopen. */
static void *open_common(const void *caller, int use_lmid, Lmid_t lmid, const char *file,
                         int mode) {
    if (as_real_init() != 0 || (use_lmid && !as_real.dlmopen)) {
        errno = ENOSYS;
        return NULL;
    }
#define REAL_OPEN(f, m) (use_lmid ? as_real.dlmopen(lmid, (f), (m)) : as_real.dlopen((f), (m)))
    if (as_in_agentsight)
        return REAL_OPEN(file, mode);
    char path[PATH_MAX];
    const char *use = file;
    if (file && file[0] && !strchr(file, '/') &&
        resolve_for_caller(caller, file, path, sizeof path)) {
        /* A library already loaded under that name is what the loader would return. */
        void *h = as_real.dlopen(file, RTLD_NOLOAD | RTLD_LAZY);
        if (h)
            as_real.dlclose(h);
        else
            use = path;
    }
    void *h = REAL_OPEN(use, mode);
    if (!h && use != file)
        h = REAL_OPEN(file, mode);
#undef REAL_OPEN
    if (h && !(mode & RTLD_NOLOAD)) {
        as_install_scan();
        as_preload_note_targets();
    }
    return h;
}

AS_EXPORT void *dlopen(const char *file, int mode) {
    return open_common(__builtin_return_address(0), 0, 0, file, mode);
}

AS_EXPORT void *dlmopen(Lmid_t lmid, const char *file, int mode) {
    return open_common(__builtin_return_address(0), 1, lmid, file, mode);
}

/* ---- dlsym / dlvsym ---- */

static int in_our_object(const void *addr) {
    Dl_info self, other;
    if (!dladdr((const void *)&in_our_object, &self) || !dladdr(addr, &other))
        return 0;
    return self.dli_fbase == other.dli_fbase;
}

/*
 * RTLD_NEXT as the caller means it: the first object after the caller's (in load order)
 * that defines the symbol. Forwarding RTLD_NEXT to the real dlsym would search after our
 * library instead. Returns the address, or what the real function says when no later
 * object defines it (so dlerror() reports it).
 */
static void *next_lookup(const void *caller, const char *name, const char *version) {
    Dl_info info;
    struct link_map *lm = NULL;
    if (in_our_object(caller) || !dladdr1(caller, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm)
        goto real;
    for (struct link_map *l = lm->l_next; l; l = l->l_next) {
        as_dyninfo di;
        if (as_dyn_read(l->l_ld, l->l_addr, &di) != 0)
            continue;
        const ElfW(Sym) *s = as_dyn_lookup(&di, name, version);
        if (!s)
            continue;
        int type = ELF64_ST_TYPE(s->st_info);
        if (type == STT_TLS)
            goto real; /* per-thread addresses: only the loader knows */
        void *addr = (void *)(l->l_addr + s->st_value);
        if (type == STT_GNU_IFUNC)
            addr = ((void *(*)(void))addr)(); /* x86-64 resolvers take no arguments */
        return addr;
    }
    /* No later object defines it. The real RTLD_NEXT (after our library) may still find
     * one loaded before the caller: refuse it, leaving dlerror() set by a lookup that
     * cannot succeed. */
    if (!(version ? as_real.dlvsym(RTLD_NEXT, name, version) : as_real.dlsym(RTLD_NEXT, name)))
        return NULL;
    as_real.dlvsym(RTLD_NEXT, name, "AGENTSIGHT_NOT_AFTER_CALLER");
    return NULL;
real:
    return version ? as_real.dlvsym(RTLD_NEXT, name, version) : as_real.dlsym(RTLD_NEXT, name);
}

static void *sym_common(const void *caller, void *handle, const char *name, const char *version) {
    if (as_real_init() != 0)
        return NULL;
    if (as_in_agentsight || !name)
        return version ? as_real.dlvsym(handle, name, version) : as_real.dlsym(handle, name);
    void *r;
    if (handle == RTLD_NEXT)
        r = next_lookup(caller, name, version);
    else
        r = version ? as_real.dlvsym(handle, name, version) : as_real.dlsym(handle, name);
    void *out = as_install_dlsym_result(r);
    if (out != r)
        as_preload_note_targets();
    return out;
}

AS_EXPORT void *dlsym(void *handle, const char *name) {
    return sym_common(__builtin_return_address(0), handle, name, NULL);
}

AS_EXPORT void *dlvsym(void *handle, const char *name, const char *version) {
    return sym_common(__builtin_return_address(0), handle, name, version);
}

/* ---- the exec family: deliver what is queued before the image is replaced ---- */

static void flush_before_exec(void) {
    /* A vfork child shares our memory and our exporter: it must not wait on it. */
    if (!as_install_active() || as_in_agentsight || getpid() != g_pid)
        return;
    int saved = errno;
    as_pipe_flush(-1);
    as_pipe_write_stats(); /* the new image reports only what it does itself */
    errno = saved;
}

#define NEED_REAL(f)                                                                               \
    do {                                                                                           \
        if (as_real_init() != 0 || !as_real.f) {                                                   \
            errno = ENOSYS;                                                                        \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

AS_EXPORT int execve(const char *path, char *const argv[], char *const envp[]) {
    NEED_REAL(execve);
    flush_before_exec();
    return as_real.execve(path, argv, envp);
}

AS_EXPORT int execv(const char *path, char *const argv[]) {
    NEED_REAL(execv);
    flush_before_exec();
    return as_real.execv(path, argv);
}

AS_EXPORT int execvp(const char *file, char *const argv[]) {
    NEED_REAL(execvp);
    flush_before_exec();
    return as_real.execvp(file, argv);
}

AS_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[]) {
    NEED_REAL(execvpe);
    flush_before_exec();
    return as_real.execvpe(file, argv, envp);
}

AS_EXPORT int fexecve(int fd, char *const argv[], char *const envp[]) {
    NEED_REAL(fexecve);
    flush_before_exec();
    return as_real.fexecve(fd, argv, envp);
}

AS_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                          const posix_spawnattr_t *attr, char *const argv[], char *const envp[]) {
    if (as_real_init() != 0 || !as_real.posix_spawn)
        return ENOSYS;
    flush_before_exec();
    return as_real.posix_spawn(pid, path, fa, attr, argv, envp);
}

AS_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                           const posix_spawnattr_t *attr, char *const argv[], char *const envp[]) {
    if (as_real_init() != 0 || !as_real.posix_spawnp)
        return ENOSYS;
    flush_before_exec();
    return as_real.posix_spawnp(pid, file, fa, attr, argv, envp);
}

/* Hides a value from the compiler's nonnull reasoning. */
static const char *launder(const char *p) {
    __asm__("" : "+r"(p));
    return p;
}

/* The execl* forms: collect the variadic arguments into an argv array. At most
 * ARGS_MAX arguments (beyond: E2BIG, as the kernel would say for a huge list). */
#define ARGS_MAX 65536

/* Collects arg0, ... up to NULL into a malloc'ed array. Returns it or NULL (errno set);
 * with want_envp, the char *const envp[] after the NULL goes to *envp. */
static char **collect_args(const char *arg0, va_list ap, int want_envp, char *const **envp) {
    size_t cap = 16, n = 0;
    char **argv = malloc(cap * sizeof *argv);
    if (!argv)
        return NULL;
    argv[n++] = (char *)arg0;
    for (const char *a = arg0; a;) {
        a = va_arg(ap, const char *);
        if (n == cap) {
            if (cap >= ARGS_MAX) {
                free(argv);
                errno = E2BIG;
                return NULL;
            }
            char **bigger = realloc(argv, cap * 2 * sizeof *argv);
            if (!bigger) {
                free(argv);
                return NULL;
            }
            argv = bigger;
            cap *= 2;
        }
        argv[n++] = (char *)a;
    }
    if (want_envp)
        *envp = va_arg(ap, char *const *);
    return argv;
}

AS_EXPORT int execl(const char *path, const char *arg, ...) {
    /* glibc declares arg nonnull; a program may still pass NULL */
    const char *arg0 = launder(arg);
    va_list ap;
    va_start(ap, arg);
    char **argv = arg0 ? collect_args(arg0, ap, 0, NULL) : NULL;
    va_end(ap);
    char *none[] = {NULL};
    if (arg0 && !argv)
        return -1;
    int rc = execv(path, argv ? argv : none);
    int saved = errno;
    free(argv);
    errno = saved;
    return rc;
}

AS_EXPORT int execlp(const char *file, const char *arg, ...) {
    /* glibc declares arg nonnull; a program may still pass NULL */
    const char *arg0 = launder(arg);
    va_list ap;
    va_start(ap, arg);
    char **argv = arg0 ? collect_args(arg0, ap, 0, NULL) : NULL;
    va_end(ap);
    char *none[] = {NULL};
    if (arg0 && !argv)
        return -1;
    int rc = execvp(file, argv ? argv : none);
    int saved = errno;
    free(argv);
    errno = saved;
    return rc;
}

AS_EXPORT int execle(const char *path, const char *arg, ...) {
    /* glibc declares arg nonnull; a program may still pass NULL */
    const char *arg0 = launder(arg);
    va_list ap;
    va_start(ap, arg);
    char *const *envp = NULL;
    char **argv = NULL;
    if (arg0) {
        argv = collect_args(arg0, ap, 1, &envp);
    } else {
        envp = va_arg(ap, char *const *);
    }
    va_end(ap);
    char *none[] = {NULL};
    if (arg0 && !argv)
        return -1;
    int rc = execve(path, argv ? argv : none, envp);
    int saved = errno;
    free(argv);
    errno = saved;
    return rc;
}
