/* hook_agent.c - the interposer's test agent: calls the tools of libagent_tools.so (and a
 * plugin, a RUNPATH-found plugin, threads, fork, exec) and prints how many times it called
 * each one, so a test can compare its own counts with the actions recorded.
 *
 * Usage: hook_agent MODE   (basic | threads | fork | exec | plugin | origin)
 * Every line of output is deterministic, so it must be identical with and without the
 * interposer. Built three ways: lazy binding, -z now, -fno-plt. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct tool_big {
    long v[4];
};
int tool_add(int a, int b);
int tool_mul(int a, int b);
long tool_many(int a, double b, int c, int d, double e, int f, int g, int h, int i, double j,
               int k);
int tool_va(int n, ...);
struct tool_big tool_big_make(long x);
int tool_recurse(int n);
int tool_fail_errno(int e);
int tool_jump(jmp_buf env, int v);
int tool_callback(int x);
int tool_next_is_null(void);
int loader_run(int x);

/* Exported from the program (-rdynamic) and called by libagent_tools.so. */
__attribute__((visibility("default"), noinline)) int agent_callback(int x) {
    return x * 10;
}

static void count(const char *name, int n) {
    printf("count %s %d\n", name, n);
}

static int mode_basic(void) {
    int s = 0;
    for (int i = 0; i < 5; i++)
        s += tool_add(i, 2);
    printf("tool_add sum %d\n", s);
    int m = 0;
    for (int i = 0; i < 3; i++)
        m += tool_mul(6, 7);
    printf("tool_mul sum %d\n", m);
    printf("tool_many %ld\n", tool_many(1, 0.5, 2, 3, 1.5, 4, 5, 6, 7, 2.5, 8));
    printf("tool_va %d\n", tool_va(2, 1, 2.5, 3, 4.5));
    struct tool_big b = tool_big_make(10);
    printf("tool_big_make %ld %ld %ld %ld\n", b.v[0], b.v[1], b.v[2], b.v[3]);
    printf("tool_recurse %d\n", tool_recurse(4));
    errno = 0;
    int r = tool_fail_errno(ENOENT);
    printf("tool_fail_errno %d errno %s\n", r, errno == ENOENT ? "ENOENT" : "changed");
    static jmp_buf env;
    volatile int jumped = 0;
    if (setjmp(env) == 0)
        tool_jump(env, 7);
    else
        jumped = 1;
    printf("tool_jump jumped %d\n", jumped);
    printf("tool_add after jump %d\n", tool_add(20, 22));
    printf("tool_callback %d\n", tool_callback(5));
    printf("tool_next_is_null %d\n", tool_next_is_null());
    count("tool_add", 6);
    count("tool_mul", 3);
    count("tool_many", 1);
    count("tool_va", 1);
    count("tool_big_make", 1);
    count("tool_recurse", 5);
    count("tool_fail_errno", 1);
    count("tool_jump", 1);
    count("tool_callback", 1);
    count("callback_from_lib", 1);
    count("tool_next_is_null", 1);
    return 0;
}

#define THREADS 4
#define PER_THREAD 200

static void *thread_main(void *arg) {
    long k = (long)arg;
    long s = 0;
    for (int i = 0; i < PER_THREAD; i++)
        s += tool_add((int)k, i);
    return (void *)s;
}

static int mode_threads(void) {
    pthread_t t[THREADS];
    for (long k = 0; k < THREADS; k++)
        if (pthread_create(&t[k], NULL, thread_main, (void *)k) != 0)
            return 1;
    long total = 0;
    for (int k = 0; k < THREADS; k++) {
        void *r;
        pthread_join(t[k], &r);
        total += (long)r;
    }
    printf("threads total %ld\n", total);
    count("tool_add", THREADS * PER_THREAD);
    return 0;
}

static int mode_fork(void) {
    int a = tool_add(1, 2) + tool_add(3, 4);
    printf("parent before fork %d\n", a);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        int m = tool_mul(2, 3) + tool_mul(4, 5) + tool_mul(6, 7);
        printf("child %d\n", m);
        printf("count child tool_mul 3\n");
        exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    printf("parent after fork %d child exit %d\n", tool_add(5, 6),
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    printf("count parent tool_add 3\n");
    return 0;
}

static int mode_exec(const char *self) {
    printf("before exec %d\n", tool_add(40, 2));
    fflush(stdout);
    char *argv[] = {(char *)self, "exec2", NULL};
    execv("/proc/self/exe", argv);
    printf("exec failed\n");
    return 1;
}

static int mode_exec2(void) {
    printf("after exec %d\n", tool_mul(2, 3) + tool_mul(3, 3));
    count("tool_add", 1);
    count("tool_mul", 2);
    return 0;
}

static int mode_plugin(void) {
    char exe[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return 1;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(path, sizeof path, "%s/plugins/libagent_plugin.so", exe);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        printf("dlopen failed\n");
        return 1;
    }
    int (*search)(int) = (int (*)(int))dlsym(h, "plugin_search");
    if (!search)
        return 1;
    int s = 0;
    for (int i = 0; i < 3; i++)
        s += search(i);
    printf("plugin sum %d\n", s);
    count("search_plugin", 3);
    count("tool_add", 3);
    return 0;
}

static int mode_origin(void) {
    int a = loader_run(7);
    int b = loader_run(8);
    printf("origin %d %d\n", a, b);
    count("origin_tool", 2);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "basic";
    int rc = 2;
    if (strcmp(mode, "basic") == 0)
        rc = mode_basic();
    else if (strcmp(mode, "threads") == 0)
        rc = mode_threads();
    else if (strcmp(mode, "fork") == 0)
        rc = mode_fork();
    else if (strcmp(mode, "exec") == 0)
        rc = mode_exec(argv[0]);
    else if (strcmp(mode, "exec2") == 0)
        rc = mode_exec2();
    else if (strcmp(mode, "plugin") == 0)
        rc = mode_plugin();
    else if (strcmp(mode, "origin") == 0)
        rc = mode_origin();
    else
        fprintf(stderr, "unknown mode %s\n", mode);
    /* A distinctive exit code, so "same exit code" is a real check. */
    return rc == 0 ? 3 : rc;
}
