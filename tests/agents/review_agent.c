/* review_agent.c - the test agent of the review regressions: what the dl*, exec and
 * file-sink wrappers must leave exactly as without the interposer. One mode per run:
 *   dl            dlopen("$ORIGIN/review/sub/libreview_plug.so", RTLD_LOCAL), plug_run
 *   ns            dlmopen(LM_ID_NEWLM) the plugin, plug_ns and plug_run in that namespace
 *   ctor N R      thread A: R x dlopen/dlclose a library whose constructor calls
 *                 dlopen; thread B: dlopen review/many/libreview_many_1..N.so
 *   vfork         200 x vfork + execl; prints how much the heap in use grew
 *   execle        execle /bin/sh with its own environment
 *   spawn         3 x (review_tool_add, posix_spawn /bin/true, waitpid)
 *   daemon FILE   closes fds 3..1023 (after REVIEW_SETTLE_MS ms when set), opens FILE
 *                 (gets fd 3) and FILE.1..15, writes to them, calls a tracked tool,
 *                 waits REVIEW_SETTLE_MS again and says whether the files are intact
 *   cwd DIR       chdir(DIR), then loads the plugin and calls a tracked tool
 *   cwdexec DIR   chdir(DIR), then execs itself in mode "tool"
 *   tool          loads the plugin and calls a tracked tool
 * Prints what it saw on stdout; exits 0 when every step worked. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char g_dir[PATH_MAX]; /* the directory of this program */

static void find_dir(void) {
    ssize_t n = readlink("/proc/self/exe", g_dir, sizeof g_dir - 1);
    g_dir[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(g_dir, '/');
    if (slash)
        *slash = '\0';
}

/* Calls fn (int (*)(void)) named name in handle h. Returns its value, or -1. */
static int call0(void *h, const char *name) {
    int (*f)(void) = (int (*)(void))dlsym(h, name);
    if (!f) {
        printf("dlsym(%s): %s\n", name, dlerror());
        return -1;
    }
    return f();
}

static int mode_dl(void) {
    void *h = dlopen("$ORIGIN/review/sub/libreview_plug.so", RTLD_NOW | RTLD_LOCAL);
    printf("dlopen($ORIGIN/review/sub/libreview_plug.so) = %s\n", h ? "ok" : dlerror());
    if (!h)
        return 1;
    return call0(h, "plug_run") == 42 ? 0 : 1;
}

static int mode_ns(void) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/review/sub/libreview_plug.so", g_dir);
    void *h = dlmopen(LM_ID_NEWLM, path, RTLD_NOW);
    printf("dlmopen(LM_ID_NEWLM, plugin) = %s\n", h ? "ok" : dlerror());
    if (!h)
        return 1;
    int ns = call0(h, "plug_ns");
    int run = call0(h, "plug_run");
    return ns == 0 && run == 42 ? 0 : 1;
}

static int g_many;

static void *load_many(void *arg) {
    for (int i = 1; i <= g_many; i++) {
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/review/many/libreview_many_%d.so", g_dir, i);
        if (!dlopen(path, RTLD_LAZY)) {
            printf("dlopen(%s): %s\n", path, dlerror());
            break;
        }
    }
    return arg;
}

static int mode_ctor(const char *count, const char *rounds_arg) {
    g_many = count ? atoi(count) : 0;
    int rounds = rounds_arg ? atoi(rounds_arg) : 0;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/review/ctor/libreview_ctor_a.so", g_dir);
    pthread_t t;
    if (pthread_create(&t, NULL, load_many, NULL) != 0)
        return 1;
    int ok = 1;
    for (int i = 0; i < rounds; i++) {
        void *h = dlopen(path, RTLD_NOW);
        if (!h) {
            printf("dlopen(%s): %s\n", path, dlerror());
            ok = 0;
            break;
        }
        dlclose(h);
    }
    pthread_join(t, NULL);
    printf("ctor: done (%s)\n", ok ? "ok" : "failed");
    return ok ? 0 : 1;
}

/* One vfork + execl of /bin/true. Returns 0 when the child exited 0. */
static __attribute__((noinline)) int one_vfork(void) {
    pid_t p = vfork();
    if (p == 0) {
        execl("/bin/true", "true", "a", "b", (char *)NULL);
        _exit(127);
    }
    int st;
    if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 1;
    return 0;
}

static int mode_vfork(void) {
    size_t before = mallinfo2().uordblks;
    for (int i = 0; i < 200; i++)
        if (one_vfork() != 0)
            return 1;
    printf("heap grew by %zu bytes after 200 vfork+execl\n", mallinfo2().uordblks - before);
    return 0;
}

static int mode_execle(void) {
    char *const envp[] = {"REVIEW_X=from-execle", NULL};
    fflush(stdout);
    execle("/bin/sh", "sh", "-c", "echo \"REVIEW_X=$REVIEW_X\"", (char *)NULL, envp);
    printf("execle: %s\n", strerror(errno));
    return 1;
}

/* review_tool_add of the plugin's dependency (loaded with the plugin). */
static int (*load_tool(void))(int, int) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/review/sub/libreview_plug.so", g_dir);
    void *h = dlopen(path, RTLD_NOW);
    if (!h) {
        printf("dlopen(%s): %s\n", path, dlerror());
        return NULL;
    }
    int (*f)(int, int) = (int (*)(int, int))dlsym(h, "review_tool_add");
    if (!f)
        printf("dlsym(review_tool_add): %s\n", dlerror());
    return f;
}

static int mode_tool(void) {
    int (*add)(int, int) = load_tool();
    if (!add)
        return 1;
    printf("review_tool_add=%d\n", add(2, 3));
    return 0;
}

static int mode_spawn(void) {
    int (*add)(int, int) = load_tool();
    if (!add)
        return 1;
    for (int i = 0; i < 3; i++) {
        add(i, i);
        char *argv[] = {"/bin/true", NULL};
        pid_t p;
        int st;
        if (posix_spawn(&p, "/bin/true", NULL, NULL, argv, environ) != 0 ||
            waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 1;
    }
    puts("spawn: 3 children ran");
    return 0;
}

/* Reads back every file of fds and says whether each still holds exactly text. */
static int files_intact(const int *fds, int n, const char *text) {
    size_t len = strlen(text);
    for (int i = 0; i < n; i++) {
        char buf[256];
        ssize_t got = pread(fds[i], buf, sizeof buf, 0);
        if (got != (ssize_t)len || memcmp(buf, text, len) != 0) {
            printf("file on fd %d changed (%zd bytes)\n", fds[i], got);
            return 0;
        }
    }
    return 1;
}

static int mode_daemon(const char *file) {
    int (*add)(int, int) = load_tool();
    if (!add || !file)
        return 1;
    printf("before=%d\n", add(1, 1));
    fflush(stdout);
    const char *settle = getenv("REVIEW_SETTLE_MS"); /* lets an HTTP sink connect first */
    if (settle)
        usleep((useconds_t)atoi(settle) * 1000);
    for (int fd = 3; fd < 1024; fd++)
        close(fd); /* daemon-style fd hygiene */
    /* FILE gets fd 3; FILE.1 .. FILE.15 take the next numbers, where a library's
     * descriptors were before the loop. */
    int fds[16];
    int n = 0;
    char path[PATH_MAX];
    for (; n < 16; n++) {
        if (n == 0)
            snprintf(path, sizeof path, "%s", file);
        else
            snprintf(path, sizeof path, "%s.%d", file, n);
        fds[n] = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fds[n] < 0 || write(fds[n], "PROGRAM DATA\n", 13) != 13)
            return 1;
    }
    printf("after=%d (data fd=%d)\n", add(2, 3), fds[0]);
    fflush(stdout);
    if (settle)
        usleep((useconds_t)atoi(settle) * 1000); /* the second action is sent meanwhile */
    printf("%s\n", files_intact(fds, n, "PROGRAM DATA\n") ? "files intact" : "files changed");
    return 0; /* fds stay open: the exit flush happens while they are */
}

static int mode_cwdexec(const char *dir) {
    if (!dir || chdir(dir) != 0)
        return 1;
    char self[PATH_MAX + 64];
    snprintf(self, sizeof self, "%s/review_agent", g_dir);
    fflush(stdout);
    execl(self, "review_agent", "tool", (char *)NULL);
    printf("execl: %s\n", strerror(errno));
    return 1;
}

int main(int argc, char **argv) {
    find_dir();
    const char *mode = argc > 1 ? argv[1] : "";
    const char *arg = argc > 2 ? argv[2] : NULL;
    if (!strcmp(mode, "dl"))
        return mode_dl();
    if (!strcmp(mode, "ns"))
        return mode_ns();
    if (!strcmp(mode, "ctor"))
        return mode_ctor(arg, argc > 3 ? argv[3] : NULL);
    if (!strcmp(mode, "vfork"))
        return mode_vfork();
    if (!strcmp(mode, "execle"))
        return mode_execle();
    if (!strcmp(mode, "spawn"))
        return mode_spawn();
    if (!strcmp(mode, "daemon"))
        return mode_daemon(arg);
    if (!strcmp(mode, "cwd"))
        return arg && chdir(arg) == 0 ? mode_tool() : 1;
    if (!strcmp(mode, "cwdexec"))
        return mode_cwdexec(arg);
    if (!strcmp(mode, "tool"))
        return mode_tool();
    fprintf(stderr, "usage: review_agent dl|ns|ctor N R|vfork|execle|spawn|daemon FILE|cwd DIR|"
                    "cwdexec DIR|tool\n");
    return 2;
}
