/* dlwrap.c - the libc functions the interposer exports over libc's own: dlopen/dlmopen
 * (install into newly loaded objects), dlsym/dlvsym (hand out thunks for tracked
 * functions), the exec family (flush queued actions first, and record the calls in flight
 * so that they survive the exec) and _exit/_Exit (record the calls in flight).
 *
 * The loader looks at the return address of dlopen/dlsym to learn who called: it expands
 * $ORIGIN against the caller's directory, searches the caller's RUNPATH, loads into the
 * caller's namespace (dlmopen'ed callers), and searches the caller's local scope for
 * dlsym(RTLD_DEFAULT) and after the caller for RTLD_NEXT. A C wrapper hides the caller
 * behind our own object. So the four dl* entry points are small assembly trampolines
 * (below): they ask as_dl_pass() whether this call needs any work of ours, and when it
 * does not (AGENTSIGHT_DISABLE=1, nothing configured, our own calls, RTLD_NOLOAD, dlsym
 * of a name that is no tracked function) they jump to the real function with the
 * caller's return address untouched, so the loader sees the real caller. Only calls that
 * need post-processing (a dlopen that may load objects to install into; a dlsym of a
 * tracked function's name) enter C, which then stands in for the caller: DSTs in the file
 * name, the caller's search path, its namespace, its local scope.
 *
 * Our own calls of these functions must never come back here, so the real ones are found
 * in libc's dynamic symbol table in memory (as_real), not through dlsym. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/pipeline.h"
#include "core/keptenv.h"
#include "hook/got.h"
#include "hook/install.h"
#include "hook/ldpath.h"
#include "hook/llm_sock.h"
#include "hook/llm_tls.h"
#include "hook/target.h"
#include "hook/thunk.h"

#define AS_EXPORT __attribute__((visibility("default")))
#define AS_HIDDEN __attribute__((visibility("hidden")))

/* preload_main.c: hands new targets' names to the pipeline (for crash recovery). Both
 * files exist only in the interposer, so no header carries it. */
void as_preload_note_targets(void);

as_real_fns as_real;

static pthread_once_t g_real_once = PTHREAD_ONCE_INIT;
static int g_real_ok;
static pid_t g_pid;

/* dlopen calls in progress on this thread. A library constructor that calls dlopen runs
 * inside the outer dlopen with the loader's lock held: only the outermost call, after
 * the real dlopen returned (lock released), may take the installer's lock to scan. */
static __thread int dl_depth;

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

/* The functions we export over the C library's, each with the C library's own: a call of
 * ours is a call of it (as_dlwrap_stands_for). Our addresses are filled at first use. */
typedef struct stand {
    const char *name;
    void *ours, *real;
} stand;
static stand g_stands[] = {{"dlopen", NULL, NULL}, {"dlmopen", NULL, NULL}, {"dlsym", NULL, NULL},
                           {"dlvsym", NULL, NULL}, {"execve", NULL, NULL},  {"execv", NULL, NULL},
                           {"execvp", NULL, NULL}, {"execvpe", NULL, NULL}, {"fexecve", NULL, NULL},
                           {"execl", NULL, NULL},  {"execlp", NULL, NULL},  {"execle", NULL, NULL},
                           {"_exit", NULL, NULL},  {"_Exit", NULL, NULL}};
#define NSTANDS (sizeof g_stands / sizeof g_stands[0])

static void real_init_once(void) {
    void *ours[NSTANDS] = {(void *)&dlopen,  (void *)&dlmopen, (void *)&dlsym,  (void *)&dlvsym,
                           (void *)&execve,  (void *)&execv,   (void *)&execvp, (void *)&execvpe,
                           (void *)&fexecve, (void *)&execl,   (void *)&execlp, (void *)&execle,
                           (void *)&_exit,   (void *)&_Exit};
    for (size_t i = 0; i < NSTANDS; i++)
        g_stands[i].ours = ours[i];
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
    for (size_t i = 0; i < NSTANDS; i++)
        g_stands[i].real = libc_sym(pc, pd, libc_base, d.obj.base, g_stands[i].name);
    g_real_ok =
        as_real.dlopen && as_real.dlsym && as_real.dlvsym && as_real.dlclose && as_real.execve;
}

int as_real_init(void) {
    pthread_once(&g_real_once, real_init_once);
    return g_real_ok ? 0 : -1;
}

const char *as_dlwrap_stands_for(const void *addr, void **real) {
    if (!addr || as_real_init() != 0)
        return NULL;
    for (size_t i = 0; i < NSTANDS; i++)
        if (g_stands[i].ours == addr && g_stands[i].real) {
            *real = g_stands[i].real;
            return g_stands[i].name;
        }
    return NULL;
}

void as_dlwrap_set_pid(void) {
    g_pid = getpid();
}

/* ---- the trampolines ----
 *
 * Each exported dl* function saves its (up to three) argument registers, calls
 * as_dl_pass(which, a0, a1, a2, return address), restores them and either jumps to the real
 * function (non-NULL answer: the caller's return address is still on top of the stack, so the
 * loader sees the real caller) or to the C body as_<fn>_slow, also by a jump, so that
 * __builtin_return_address(0) there is the real caller's address.
 *
 * Stack: on entry %rsp = 8 mod 16 (the return address); three pushes make it 0 mod 16,
 * as the call of as_dl_pass needs. */
#define AS_TRAMPOLINE(name, which)                                                                 \
    ".globl " #name "\n"                                                                           \
    ".type " #name ", @function\n" #name ":\n"                                                     \
    ".cfi_startproc\n"                                                                             \
    "endbr64\n"                                                                                    \
    "push %rdi\n"                                                                                  \
    ".cfi_adjust_cfa_offset 8\n"                                                                   \
    "push %rsi\n"                                                                                  \
    ".cfi_adjust_cfa_offset 8\n"                                                                   \
    "push %rdx\n"                                                                                  \
    ".cfi_adjust_cfa_offset 8\n"                                                                   \
    "mov 24(%rsp), %r8\n"                                                                          \
    "mov %rdx, %rcx\n"                                                                             \
    "mov %rsi, %rdx\n"                                                                             \
    "mov %rdi, %rsi\n"                                                                             \
    "mov $" #which ", %edi\n"                                                                      \
    "call as_dl_pass\n"                                                                            \
    "pop %rdx\n"                                                                                   \
    ".cfi_adjust_cfa_offset -8\n"                                                                  \
    "pop %rsi\n"                                                                                   \
    ".cfi_adjust_cfa_offset -8\n"                                                                  \
    "pop %rdi\n"                                                                                   \
    ".cfi_adjust_cfa_offset -8\n"                                                                  \
    "test %rax, %rax\n"                                                                            \
    "jz 1f\n"                                                                                      \
    "jmp *%rax\n"                                                                                  \
    "1:\n"                                                                                         \
    "jmp as_" #name "_slow\n"                                                                      \
    ".cfi_endproc\n"                                                                               \
    ".size " #name ", .-" #name "\n"

__asm__(".text\n" AS_TRAMPOLINE(dlopen, 0) AS_TRAMPOLINE(dlmopen, 1) AS_TRAMPOLINE(dlsym, 2)
            AS_TRAMPOLINE(dlvsym, 3));

enum { PASS_DLOPEN, PASS_DLMOPEN, PASS_DLSYM, PASS_DLVSYM };

/* Whether name is the symbol of a tracked function. Lock-free: targets are only
 * appended and as_ntargets is published after filling. */
static int is_target_name(const char *name) {
    uint32_t n = __atomic_load_n(&as_ntargets, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < n; i++)
        if (as_targets[i].symbol && strcmp(as_targets[i].symbol, name) == 0)
            return 1;
    return 0;
}

/* A dlopen that may bring new objects while the installer is configured. */
static int open_needs_us(const char *file, int mode) {
    return file && !(mode & RTLD_NOLOAD) && (as_install_config() != NULL || as_llm_tls_active());
}

/*
 * as_dl_pass - called by the trampolines with the caller's arguments. Returns the real
 * function to jump to when the call needs nothing of ours, or NULL to run the C body.
 * Touches neither errno nor the loader's state; takes no lock after the first call.
 * ret: the caller's return address.
 */
AS_HIDDEN void *as_dl_pass(long which, void *a0, void *a1, void *a2, const void *ret) {
    (void)a2;
    if (as_real_init() != 0)
        return NULL; /* the C body reports ENOSYS */
    /* Entered through a thunk (the call is tracked): the return address is the thunk's
     * landing, and only the C body knows the real caller (as_hook_caller). */
    if (as_hook_is_landing(ret))
        return NULL;
    switch (which) {
    case PASS_DLOPEN:
        if (as_in_agentsight || !open_needs_us(a0, (int)(intptr_t)a1))
            return (void *)as_real.dlopen;
        return NULL;
    case PASS_DLMOPEN:
        if (!as_real.dlmopen)
            return NULL;
        if (as_in_agentsight || !open_needs_us(a1, (int)(intptr_t)a2))
            return (void *)as_real.dlmopen;
        return NULL;
    case PASS_DLSYM:
    case PASS_DLVSYM: {
        void *real = which == PASS_DLSYM ? (void *)as_real.dlsym : (void *)as_real.dlvsym;
        if (as_in_agentsight || !a1 || !as_install_active() || !is_target_name(a1))
            return real;
        return NULL;
    }
    }
    return NULL;
}

/* ---- the caller's view of the search path ---- */

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
        } else if (as_dst_expand(p, len, origin ? origin : ".", 1, dir, sizeof dir) != 0) {
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

/* The directory of an object ($ORIGIN) into out: the program's from /proc/self/exe, a
 * library's from its file name (made absolute against the working directory). */
static void origin_of(const struct link_map *lm, char *out, size_t cap) {
    char path[PATH_MAX];
    if (lm->l_name && lm->l_name[0]) {
        char cwd[PATH_MAX];
        size_t cl;
        if (lm->l_name[0] != '/' && getcwd(cwd, sizeof cwd) &&
            (cl = strlen(cwd)) + 1 + strlen(lm->l_name) < sizeof path) {
            memcpy(path, cwd, cl);
            path[cl] = '/';
            strcpy(path + cl + 1, lm->l_name);
        } else {
            snprintf(path, sizeof path, "%s", lm->l_name);
        }
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

/* Who called: its link map and namespace. */
typedef struct caller_info {
    struct link_map *lm; /* NULL when unknown (then we act as the base namespace) */
    Lmid_t lmid;
} caller_info;

static int in_our_object(const void *addr);

/* Fills ci for the code address caller. This function can't fail (ci->lm NULL then). */
static void caller_lookup(const void *caller, caller_info *ci) {
    Dl_info info;
    ci->lm = NULL;
    ci->lmid = LM_ID_BASE;
    if (!caller || !dladdr1(caller, &info, (void **)&ci->lm, RTLD_DL_LINKMAP) || !ci->lm) {
        ci->lm = NULL;
        return;
    }
    Lmid_t id;
    if (dlinfo(ci->lm, RTLD_DI_LMID, &id) == 0)
        ci->lmid = id;
}

/*
 * Resolves a bare library name the way the loader would for the caller's object: DT_RPATH
 * (of the caller, then the program) when the caller has no DT_RUNPATH, then
 * LD_LIBRARY_PATH, then the caller's DT_RUNPATH. Returns 1 and the path in out when the
 * caller's own paths find it where our (path-less) object would not; 0 to pass the name
 * unchanged.
 */
static int resolve_for_caller(const struct link_map *lm, const char *file, char *out, size_t cap) {
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
    if (search_list(as_keptenv_get("LD_LIBRARY_PATH"), origin, file, scratch, sizeof scratch))
        return 0; /* the loader finds it there from any caller */
    return search_list(di.runpath, origin, file, out, cap);
}

/* The real dlopen, in the base namespace or in lmid. */
static void *real_open(int use_lmid, Lmid_t lmid, const char *file, int mode) {
    if (use_lmid) {
        __typeof__(as_real.dlmopen) f =
            (__typeof__(as_real.dlmopen))as_install_unhooked((void *)as_real.dlmopen);
        return f ? f(lmid, file, mode) : NULL;
    }
    __typeof__(as_real.dlopen) f =
        (__typeof__(as_real.dlopen))as_install_unhooked((void *)as_real.dlopen);
    return f(file, mode);
}

/* Shared body of dlopen and dlmopen for calls that need installing afterwards. Stands in
 * for the caller: DSTs in a file name with '/', the caller's search path for a bare name,
 * the caller's namespace. Returns the handle, or NULL with dlerror() set by the loader
 * (errno ENOSYS when libc's functions could not be found). */
static void *open_common(const void *caller, int use_lmid, Lmid_t lmid, const char *file,
                         int mode) {
    if (as_real_init() != 0 || (use_lmid && !as_real.dlmopen)) {
        errno = ENOSYS;
        return NULL;
    }
    caller_info ci = {NULL, LM_ID_BASE};
    if (!as_in_agentsight && !in_our_object(caller))
        caller_lookup(caller, &ci);
    if (!use_lmid && ci.lm && ci.lmid != LM_ID_BASE && file && as_real.dlmopen) {
        use_lmid = 1; /* dlopen loads into the caller's namespace */
        lmid = ci.lmid;
    }
    char path[PATH_MAX];
    const char *use = file;
    int retry_plain = 0;
    if (ci.lm && file && strchr(file, '/')) {
        if (strchr(file, '$')) {
            char origin[PATH_MAX];
            origin_of(ci.lm, origin, sizeof origin);
            if (as_dst_expand(file, strlen(file), origin, 1, path, sizeof path) == 0)
                use = path;
        }
    } else if (ci.lm && file && file[0] && resolve_for_caller(ci.lm, file, path, sizeof path)) {
        /* A library already loaded under that name is what the loader would return. */
        void *h = real_open(use_lmid, lmid, file, RTLD_NOLOAD | RTLD_LAZY);
        if (h)
            as_real.dlclose(h);
        else
            use = path, retry_plain = 1;
    }
    dl_depth++;
    void *h = real_open(use_lmid, lmid, use, mode);
    if (!h && retry_plain)
        h = real_open(use_lmid, lmid, file, mode);
    dl_depth--;
    if (h && dl_depth == 0 && !(mode & RTLD_NOLOAD)) {
        int saved = errno;
        as_install_scan();
        as_llm_tls_scan();
        as_llm_sock_scan();
        as_preload_note_targets();
        errno = saved;
    }
    return h;
}

AS_HIDDEN void *as_dlopen_slow(const char *file, int mode) {
    return open_common(as_hook_caller(__builtin_return_address(0)), 0, 0, file, mode);
}

AS_HIDDEN void *as_dlmopen_slow(Lmid_t lmid, const char *file, int mode) {
    return open_common(as_hook_caller(__builtin_return_address(0)), 1, lmid, file, mode);
}

/* ---- dlsym / dlvsym of a tracked function's name ---- */

static int in_our_object(const void *addr) {
    Dl_info self, other;
    if (!dladdr((const void *)&in_our_object, &self) || !dladdr(addr, &other))
        return 0;
    return self.dli_fbase == other.dli_fbase;
}

static void *real_sym(void *handle, const char *name, const char *version) {
    if (version) {
        __typeof__(as_real.dlvsym) f =
            (__typeof__(as_real.dlvsym))as_install_unhooked((void *)as_real.dlvsym);
        return f(handle, name, version);
    }
    __typeof__(as_real.dlsym) f =
        (__typeof__(as_real.dlsym))as_install_unhooked((void *)as_real.dlsym);
    return f(handle, name);
}

/*
 * RTLD_NEXT as the caller means it: the first object after the caller's (in load order)
 * that defines the symbol. Forwarding RTLD_NEXT to the real dlsym would search after our
 * library instead. Returns the address, or what the real function says when no later
 * object defines it (so dlerror() reports it).
 */
static void *next_lookup(const caller_info *ci, const char *name, const char *version) {
    if (!ci->lm)
        goto real;
    for (struct link_map *l = ci->lm->l_next; l; l = l->l_next) {
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
    if (!real_sym(RTLD_NEXT, name, version))
        return NULL;
    as_real.dlvsym(RTLD_NEXT, name, "AGENTSIGHT_NOT_AFTER_CALLER");
    return NULL;
real:
    return real_sym(RTLD_NEXT, name, version);
}

/*
 * RTLD_DEFAULT as the caller means it: the global scope of its namespace, then its own
 * local scope (an RTLD_LOCAL plugin sees its own dependencies). The real lookup from our
 * object searches only the base namespace's global scope; what it misses is looked up
 * again through a handle of the caller's object (its local scope). For a caller in
 * another namespace, the global scope used is that of the namespace's first object.
 * Returns the address, or NULL with dlerror() set.
 */
static void *default_lookup(const caller_info *ci, const char *name, const char *version) {
    void *r = NULL;
    const struct link_map *lm = ci->lm;
    if (!lm || ci->lmid == LM_ID_BASE) {
        r = real_sym(RTLD_DEFAULT, name, version);
        if (r || !lm || !lm->l_name || !lm->l_name[0])
            return r; /* the program itself is in the global scope */
    } else {
        const struct link_map *head = lm;
        for (int guard = 0; head->l_prev && guard < 100000; guard++)
            head = head->l_prev;
        void *h = head->l_name && head->l_name[0]
                      ? as_real.dlmopen(ci->lmid, head->l_name, RTLD_NOLOAD | RTLD_LAZY)
                      : NULL;
        if (h) {
            r = real_sym(h, name, version);
            as_real.dlclose(h);
        }
        if (r || !lm->l_name || !lm->l_name[0])
            return r;
    }
    void *h = ci->lmid == LM_ID_BASE
                  ? as_real.dlopen(lm->l_name, RTLD_NOLOAD | RTLD_LAZY)
                  : as_real.dlmopen(ci->lmid, lm->l_name, RTLD_NOLOAD | RTLD_LAZY);
    if (!h)
        return real_sym(RTLD_DEFAULT, name, version); /* sets dlerror() */
    r = real_sym(h, name, version);
    as_real.dlclose(h);
    return r;
}

/* The body of dlsym/dlvsym when name is a tracked function's: look up as the caller
 * would, then hand out the thunk. Returns the address or NULL (dlerror() set). */
static void *sym_common(const void *caller, void *handle, const char *name, const char *version) {
    if (as_real_init() != 0) {
        errno = ENOSYS;
        return NULL;
    }
    if (as_in_agentsight || !name)
        return real_sym(handle, name, version);
    caller_info ci = {NULL, LM_ID_BASE};
    if (!in_our_object(caller))
        caller_lookup(caller, &ci);
    void *r;
    if (handle == RTLD_NEXT)
        r = next_lookup(&ci, name, version);
    else if (handle == RTLD_DEFAULT)
        r = default_lookup(&ci, name, version);
    else
        r = real_sym(handle, name, version);
    void *out = as_install_dlsym_result(r);
    if (out != r && dl_depth == 0)
        as_preload_note_targets();
    return out;
}

AS_HIDDEN void *as_dlsym_slow(void *handle, const char *name) {
    return sym_common(as_hook_caller(__builtin_return_address(0)), handle, name, NULL);
}

AS_HIDDEN void *as_dlvsym_slow(void *handle, const char *name, const char *version) {
    return sym_common(as_hook_caller(__builtin_return_address(0)), handle, name, version);
}

/* ---- the exec family: deliver what is queued before the image is replaced ---- */

/* Before the image is replaced: what is queued goes out, then the calls in flight (the
 * exec itself when it is tracked, and the tracked calls it runs inside) are recorded as
 * not returned into this thread's ring file while the exporter is held off it
 * (as_pipe_exec_hold). The exec succeeds: that file outlives the image and recovery ships
 * them (at the end of `agentsight run`, or when the next process starts). It fails:
 * exec_failed takes them back and each of those calls is recorded once, when it returns
 * (with its error). Without a ring file (crash-safe capture off) they are flushed as not
 * returned, and keep that record. Returns 1 when a hold is open (*head: where). */
static int flush_before_exec(uint64_t *head) {
    /* A vfork child shares our memory and our exporter: it must not wait on it. */
    if (!as_install_active() || as_in_agentsight || getpid() != g_pid)
        return 0;
    int saved = errno;
    /* This thread's summaries of calls that found its ring full go in too (once the
     * flush made room, when the ring was full). */
    as_ring *r = as_pipe_tring;
    int left = r && !as_ring_open(r) && !as_ring_sum_flush(r);
    as_pipe_set_final_flush(1); /* a collector refusing connections: spool, no retries */
    as_pipe_flush(-1);
    if (left && as_ring_sum_flush(r))
        as_pipe_flush(-1);
    /* No call in flight on this thread: nothing to record (and no ring to make: a process
     * that tracked nothing starts no thread and creates no file). */
    int held = as_hook_depth() > 0 && as_pipe_exec_hold(head) == 0;
    if (held) {
        as_hook_report_live_exec();
    } else {
        as_hook_report_live();
        as_pipe_flush(-1);
    }
    as_pipe_set_final_flush(0); /* should the exec fail, retries are back */
    as_pipe_write_stats();      /* the new image reports only what it does itself */
    errno = saved;
    return held;
}

/* The exec returned (it failed): what flush_before_exec left in the ring is taken back
 * and the exporter goes on. Keeps errno. */
static void exec_failed(int held, uint64_t head) {
    if (!held)
        return;
    int saved = errno;
    as_pipe_exec_release(head, 1);
    as_hook_unreport_live();
    errno = saved;
}

#define NEED_REAL(f)                                                                               \
    do {                                                                                           \
        if (as_real_init() != 0 || !as_real.f) {                                                   \
            errno = ENOSYS;                                                                        \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

/* The body of an exec wrapper: flush, the C library's f, and when it returns, take back. */
#define EXEC_BODY(f, ...)                                                                          \
    do {                                                                                           \
        NEED_REAL(f);                                                                              \
        uint64_t head = 0;                                                                         \
        int held = flush_before_exec(&head);                                                       \
        __typeof__(as_real.f) fn = (__typeof__(as_real.f))as_install_unhooked((void *)as_real.f);  \
        int rc = fn(__VA_ARGS__);                                                                  \
        exec_failed(held, head);                                                                   \
        return rc;                                                                                 \
    } while (0)

AS_EXPORT int execve(const char *path, char *const argv[], char *const envp[]) {
    EXEC_BODY(execve, path, argv, envp);
}

AS_EXPORT int execv(const char *path, char *const argv[]) {
    EXEC_BODY(execv, path, argv);
}

AS_EXPORT int execvp(const char *file, char *const argv[]) {
    EXEC_BODY(execvp, file, argv);
}

AS_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[]) {
    EXEC_BODY(execvpe, file, argv, envp);
}

AS_EXPORT int fexecve(int fd, char *const argv[], char *const envp[]) {
    EXEC_BODY(fexecve, fd, argv, envp);
}

/* ---- _exit and _Exit: the calls in flight are recorded before the process ends ----
 *
 * exit() records them at its flush; _exit runs no handler. Ours record the calls in flight
 * on this thread (the _exit itself when it is tracked) as not returned into the thread's
 * ring, whose file outlives the process: recovery ships them, as it ships whatever else
 * the process left queued (an anonymous ring, crash-safe capture off, loses them with the
 * rest). Nothing is flushed: _exit is async-signal-safe and stays bounded. A vfork child
 * (another pid in our memory) records nothing: its frames are not calls of ours. Then the
 * process ends as the C library's _exit ends it: exit_group. */
static void report_before_end(void) {
    if (!as_install_active() || as_in_agentsight || getpid() != g_pid)
        return;
    int saved = errno;
    as_hook_report_live();
    errno = saved;
}

AS_EXPORT void _exit(int status) {
    report_before_end();
    for (;;)
        syscall(SYS_exit_group, status);
}

AS_EXPORT void _Exit(int status) {
    report_before_end();
    for (;;)
        syscall(SYS_exit_group, status);
}

/* posix_spawn/posix_spawnp are not wrapped: the calling process goes on and delivers its
 * own actions, and the child is a new process with its own interposer. */

/* Hides a value from the compiler's nonnull reasoning. */
static const char *launder(const char *p) {
    __asm__("" : "+r"(p));
    return p;
}

/* The execl* forms collect their variadic arguments into an argv array on the stack,
 * never on the heap: they must stay async-signal-safe, and a vfork child shares the
 * parent's heap. At most ARGS_MAX arguments (32 KiB of stack); beyond, E2BIG. */
#define ARGS_MAX 4096

/* Counts arg0 and the arguments after it up to the NULL. Returns the count, or -1 when
 * there are more than ARGS_MAX. */
static long count_args(const char *arg0, va_list *ap) {
    long n = 1;
    for (const char *a = arg0; a; n++) {
        if (n > ARGS_MAX)
            return -1;
        a = va_arg(*ap, const char *);
    }
    return n - 1;
}

/* Fills argv[0..n) from arg0 and *ap, argv[n] = NULL, and consumes the terminating NULL
 * (so *ap is left at execle's envp). This function can't fail. */
static void fill_args(char **argv, long n, const char *arg0, va_list *ap) {
    argv[0] = (char *)arg0;
    for (long i = 1; i < n; i++)
        argv[i] = va_arg(*ap, char *);
    (void)va_arg(*ap, char *);
    argv[n] = NULL;
}

/* Which exec function an execl* form ends in. */
enum exec_kind { EXEC_PATH, EXEC_SEARCH, EXEC_ENV };

/* Collects arg and the arguments after it (and, for EXEC_ENV, the envp after the NULL)
 * from *ap into an argv array on the stack and calls execv, execvp or execve. Returns
 * what that call returns (it does not return on success), or -1 with errno E2BIG when
 * there are more than ARGS_MAX arguments (nothing is executed). *ap is left consumed;
 * the caller ends it. */
static int exec_list(enum exec_kind kind, const char *file, const char *arg, va_list *ap) {
    /* glibc declares arg nonnull; a program may still pass NULL */
    const char *arg0 = launder(arg);
    va_list cp;
    va_copy(cp, *ap);
    long n = arg0 ? count_args(arg0, &cp) : 0;
    va_end(cp);
    if (n < 0) {
        errno = E2BIG;
        return -1;
    }
    char *argv[n + 1];
    if (arg0)
        fill_args(argv, n, arg0, ap);
    else
        argv[0] = NULL;
    if (kind == EXEC_ENV) {
        char *const *envp = va_arg(*ap, char *const *);
        return execve(file, argv, envp);
    }
    if (kind == EXEC_SEARCH)
        return execvp(file, argv);
    return execv(file, argv);
}

AS_EXPORT int execl(const char *path, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    int rc = exec_list(EXEC_PATH, path, arg, &ap);
    va_end(ap);
    return rc;
}

AS_EXPORT int execlp(const char *file, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    int rc = exec_list(EXEC_SEARCH, file, arg, &ap);
    va_end(ap);
    return rc;
}

AS_EXPORT int execle(const char *path, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    int rc = exec_list(EXEC_ENV, path, arg, &ap);
    va_end(ap);
    return rc;
}
