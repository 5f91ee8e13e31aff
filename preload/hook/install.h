/* install.h - from config entries to hooked calls: resolve entries against the exported
 * functions of every loaded object, create their targets, point GOT slots at the thunks
 * (again for each object a later dlopen brings), and route dlsym results; plus the table
 * of real libc functions our exported wrappers (dlwrap.c) call. */
#ifndef AS_INSTALL_H
#define AS_INSTALL_H

#include <dlfcn.h>
#include <spawn.h>

#include "hook/config.h"

/*
 * as_install_start - keeps cfg for the life of the process (its entries are referenced by
 * targets; the caller must not free it) and installs into every object loaded now.
 *
 * Entries that match nothing are reported at the process's end, not here
 * (as_install_report_unmatched): a library loaded later by dlopen may have them. Symbols that
 * are never wrapped (hookable.h) are refused, an entry naming one with one warning saying why;
 * with hook=auto an exported function whose calls may bypass the GOT gets its entry patched as
 * well (reach.h). The pipeline is armed (as_pipe_arm: it starts at the first record) before the
 * first slot is written; when the sink URIs are refused, nothing is patched. Returns the number
 * of targets created (0 when nothing matched), or -1 when the pipeline could not be armed (the
 * process then runs as without us).
 */
int as_install_start(as_config *cfg);

/*
 * as_install_report_unmatched - reports each entry that matched no function of any object
 * this process loaded, dlopen'ed ones included (diag.h: once per run). Call at the
 * process's end; once per process (a fork child reports for itself). Does nothing before
 * as_install_start(), or when another thread holds the installer's lock (it never waits).
 * This function can't fail.
 */
void as_install_report_unmatched(void);

/*
 * as_install_scan - installs into objects loaded since the last scan (after dlopen).
 * Objects already seen are left as they are. Does nothing before as_install_start(), or
 * on the calling thread while as_in_agentsight is set. Returns the number of slots
 * written, or -1 when nothing was done. Takes the installer's lock; never call it from a
 * dl_iterate_phdr callback.
 */
int as_install_scan(void);

/*
 * as_install_dlsym_result - what dlsym/dlvsym should return for a resolved address: the
 * thunk of the target whose original function addr is (marking the target AS_VIA_DLSYM),
 * else addr itself. This function can't fail.
 */
void *as_install_dlsym_result(void *addr);

/* Whether as_install_start() succeeded and the pipeline runs. */
int as_install_active(void);

/* The config given to as_install_start(), or NULL. */
const as_config *as_install_config(void);

/* The real functions behind our exported wrappers, looked up in libc's own dynamic
 * symbol table (never through dlsym, which is ours). */
typedef struct as_real_fns {
    void *(*dlopen)(const char *, int);
    void *(*dlmopen)(Lmid_t, const char *, int);
    void *(*dlsym)(void *, const char *);
    void *(*dlvsym)(void *, const char *, const char *);
    int (*dlclose)(void *);
    int (*execve)(const char *, char *const[], char *const[]);
    int (*execv)(const char *, char *const[]);
    int (*execvp)(const char *, char *const[]);
    int (*execvpe)(const char *, char *const[], char *const[]);
    int (*fexecve)(int, char *const[], char *const[]);
    int (*posix_spawn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                       const posix_spawnattr_t *, char *const[], char *const[]);
    int (*posix_spawnp)(pid_t *, const char *, const posix_spawn_file_actions_t *,
                        const posix_spawnattr_t *, char *const[], char *const[]);
} as_real_fns;

extern as_real_fns as_real;

/* Fills as_real. Idempotent and thread-safe. Returns 0, or -1 when libc's tables could
 * not be read (then the wrappers fail with ENOSYS). */
int as_real_init(void);

/* When addr is one of the functions the interposer exports over the C library's (dlopen,
 * dlsym, the exec family: dlwrap.c), returns its name and the C library's function in
 * *real: a GOT slot or a dlsym result holding ours stands for a call of that function.
 * NULL otherwise. */
const char *as_dlwrap_stands_for(const void *addr, void **real);

/* The function fn itself, or, when its entry is patched, the way past the patch (its
 * target's trampoline): what a function of ours that stands in for fn calls, its own
 * calls being recorded by the thunk of its own GOT slot. Lock-free. */
void *as_install_unhooked(void *fn);

/* Records the current pid as the one whose pipeline may be flushed before an exec (a
 * vfork child shares our memory and must not). Called at start and in fork children. */
void as_dlwrap_set_pid(void);

#endif
