/* fix_agent.c - the fix regression agent: one mode per defect the review found in the
 * thunk and the installer. Each mode prints what it saw; the integration test
 * (tests/integration/test_fixes.py) compares the output bare and under the interposer
 * and reads the actions.
 *   coro    two ucontext coroutines park inside fix_call; the first one returns first
 *   stack   a thread with a PTHREAD_STACK_MIN stack calls fix_add
 *   reload  a plugin calling fix_add is loaded, called, unloaded, three times
 *   swap    one plugin is unloaded and another loaded (likely at the same address)
 *   table   fix_add called through a function pointer stored in a data table
 *   exit    fix_exit(7) calls exit() inside the tracked call
 *   dead    a constructor calls dlopen while another thread loads tracked libraries */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

int fix_add(int a, int b);
int fix_call(void (*cb)(void));
int fix_exit(int code);

static char dir[PATH_MAX]; /* folder of this executable */

/* out = dir/rel, cut to cap bytes (a test path is far shorter). */
static void path_of(char *out, size_t cap, const char *rel) {
    size_t n = strlen(dir);
    if (n + 1 + strlen(rel) + 1 > cap) {
        out[0] = '\0';
        return;
    }
    memcpy(out, dir, n);
    out[n] = '/';
    strcpy(out + n + 1, rel);
}

/* ---- coro ---- */
static ucontext_t main_ctx, ctx_a, ctx_b;
static char stack_a[65536], stack_b[65536];

static void park_a(void) {
    swapcontext(&ctx_a, &ctx_b); /* A parks inside fix_call */
}
static void park_b(void) {
    swapcontext(&ctx_b, &ctx_a); /* B parks inside fix_call; A resumes and returns first */
}
static void run_a(void) {
    printf("A: %d\n", fix_call(park_a));
    swapcontext(&ctx_a, &ctx_b);
}
static void run_b(void) {
    printf("B: %d\n", fix_call(park_b));
    swapcontext(&ctx_b, &main_ctx);
}

static int mode_coro(void) {
    getcontext(&ctx_a);
    ctx_a.uc_stack.ss_sp = stack_a;
    ctx_a.uc_stack.ss_size = sizeof stack_a;
    ctx_a.uc_link = &main_ctx;
    makecontext(&ctx_a, run_a, 0);
    getcontext(&ctx_b);
    ctx_b.uc_stack.ss_sp = stack_b;
    ctx_b.uc_stack.ss_size = sizeof stack_b;
    ctx_b.uc_link = &main_ctx;
    makecontext(&ctx_b, run_b, 0);
    swapcontext(&main_ctx, &ctx_a);
    printf("after: %d\n", fix_add(2, 2));
    return 0;
}

/* ---- stack ---- */
static void *small_thread(void *arg) {
    (void)arg;
    char buf[1024];
    memset(buf, 1, sizeof buf);
    return (void *)(long)(fix_add(buf[5], 40));
}

static int mode_stack(void) {
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, PTHREAD_STACK_MIN);
    pthread_t t;
    int rc = pthread_create(&t, &at, small_thread, NULL);
    printf("pthread_create rc=%d\n", rc);
    if (rc)
        return 1;
    void *r;
    pthread_join(t, &r);
    printf("thread result %ld\n", (long)r);
    return 0;
}

/* ---- reload / swap ---- */
static int mode_reload(void) {
    char p[PATH_MAX];
    path_of(p, sizeof p, "fix/libfix_plug.so");
    printf("main: %d\n", fix_add(1, 1));
    for (int i = 0; i < 3; i++) {
        void *h = dlopen(p, RTLD_NOW);
        if (!h) {
            printf("dlopen: %s\n", dlerror());
            return 1;
        }
        int (*go)(int) = (int (*)(int))dlsym(h, "fix_plug_go");
        printf("round %d: %d\n", i, go ? go(i) : -1);
        dlclose(h);
    }
    return 0;
}

static int mode_swap(void) {
    const char *libs[2] = {"fix/libfix_swap_a.so", "fix/libfix_swap_b.so"};
    for (int i = 0; i < 2; i++) {
        char p[PATH_MAX];
        path_of(p, sizeof p, libs[i]);
        void *h = dlopen(p, RTLD_NOW);
        if (!h) {
            printf("dlopen: %s\n", dlerror());
            return 1;
        }
        int (*f)(int) = (int (*)(int))dlsym(h, "fix_swap_tool");
        printf("%s: %d\n", libs[i], f ? f(1) : -1);
        dlclose(h);
    }
    return 0;
}

/* ---- table ---- */
struct tool {
    const char *name;
    int (*fn)(int, int);
};
struct tool tools[] = {{"add", fix_add}}; /* R_X86_64_64 against fix_add, in data */

static int mode_table(int argc) {
    printf("table: %d\n", tools[argc > 99 ? 1 : 0].fn(3, 4));
    return 0;
}

/* ---- exit ---- */
static int mode_exit(void) {
    printf("add: %d\n", fix_add(1, 2));
    fflush(stdout);
    return fix_exit(7);
}

/* ---- dead ---- */
static int rounds = 300;

static void *loader_thread(void *arg) {
    (void)arg;
    for (int i = 1; i <= 12; i++) {
        char rel[64], p[PATH_MAX];
        snprintf(rel, sizeof rel, "fix/many/libfix_many_%d.so", i);
        path_of(p, sizeof p, rel);
        if (!dlopen(p, RTLD_NOW)) {
            printf("dlopen: %s\n", dlerror());
            exit(1);
        }
    }
    return NULL;
}

static int mode_dead(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, loader_thread, NULL) != 0)
        return 1;
    char p[PATH_MAX];
    path_of(p, sizeof p, "fix/libfix_ctor.so");
    for (int i = 0; i < rounds; i++) {
        void *h = dlopen(p, RTLD_NOW);
        if (!h) {
            printf("dlopen: %s\n", dlerror());
            return 1;
        }
        dlclose(h);
    }
    pthread_join(t, NULL);
    printf("dead: done\n");
    return 0;
}

int main(int argc, char **argv) {
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0)
        return 2;
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    const char *m = argc > 1 ? argv[1] : "";
    if (argc > 2)
        rounds = atoi(argv[2]);
    if (!strcmp(m, "coro"))
        return mode_coro();
    if (!strcmp(m, "stack"))
        return mode_stack();
    if (!strcmp(m, "reload"))
        return mode_reload();
    if (!strcmp(m, "swap"))
        return mode_swap();
    if (!strcmp(m, "table"))
        return mode_table(argc);
    if (!strcmp(m, "exit"))
        return mode_exit();
    if (!strcmp(m, "dead"))
        return mode_dead();
    fprintf(stderr, "usage: fix_agent coro|stack|reload|swap|table|exit|dead [rounds]\n");
    return 2;
}
