/* internal_agent.c - a test agent whose tools no GOT slot reaches: static functions of the
 * program (one recursive through a pointer, one reached by a tail call, one starting with
 * a RIP-relative load, one of 3 bytes, one the compiler clones), calls inside a library,
 * and a library function called by several threads while a dlopen makes the interposer
 * patch it. Built -O2 as a PIE. Prints deterministic results and exits with status 3.
 *
 * Usage: internal_agent [THREAD_CALLS_AFTER]   (default 2000 per thread) */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOIPA __attribute__((noipa))
#define NTHREADS 4

int lib_api(int x);
int lib_both(int x);

static volatile int g_counter = 40;
static char g_greeting[64];

static NOIPA double weather_lookup(int city) {
    return 18.5 + city;
}

static NOIPA const char *tool_greet(const char *who) {
    snprintf(g_greeting, sizeof g_greeting, "hello %s", who);
    return g_greeting;
}

/* Recursion through a pointer, so every level enters at the patched entry. */
static int fact(int n);
static int (*volatile fact_ptr)(int) = fact;
static NOIPA int fact(int n) {
    return n <= 1 ? 1 : n * fact_ptr(n - 1);
}

/* tail_caller ends with a jump (sibling call) to tail_target. */
static NOIPA int tail_target(int x) {
    return x * 3 + g_counter;
}
static NOIPA int tail_caller(int x) {
    return tail_target(x + 1);
}

/* Its first instruction loads g_counter relative to rip. */
static NOIPA int counter_get(int a) {
    return g_counter + a;
}

/* xor eax, eax; ret: too short to patch, refused with a warning. */
static NOIPA int zero_fn(void) {
    return 0;
}

/* Called with k = 3 only: the compiler may emit a clone (scale.constprop.0). */
static __attribute__((noinline)) int scale(int x, int k) {
    int s = 0;
    for (int i = 0; i < k; i++)
        s += x + i;
    return s;
}

/* ---- threads calling a function of a library while it gets patched ---- */

static int (*volatile hot_fn)(int);
static volatile int g_patched;
static long g_after = 2000;

typedef struct worker {
    pthread_t th;
    long calls, wrong;
} worker;

static void *hot_loop(void *arg) {
    worker *w = arg;
    long after = -1;
    for (long i = 0; i < 100000000L; i++) {
        int a = (int)(i & 1023);
        if (hot_fn(a) != a + 1)
            w->wrong++;
        w->calls++;
        if (after < 0 && __atomic_load_n(&g_patched, __ATOMIC_ACQUIRE))
            after = g_after;
        if (after >= 0 && after-- == 0)
            break;
    }
    return NULL;
}

/* Loads the plugin with libc's own dlopen (the interposer does not see that load), starts
 * the threads, then opens it again through the ordinary dlopen, which makes the
 * interposer scan it while the threads call plugin_hot. Returns 0 or -1. */
static int threads_during_patch(const char *dir) {
    char path[4200];
    if (snprintf(path, sizeof path, "%s/libinternal_plugin.so", dir) >= (int)sizeof path)
        return -1;
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    void *(*raw_dlopen)(const char *, int) =
        libc ? (void *(*)(const char *, int))dlvsym(libc, "dlopen", "GLIBC_2.34") : NULL;
    if (!raw_dlopen)
        raw_dlopen = (void *(*)(const char *, int))dlvsym(libc, "dlopen", "GLIBC_2.2.5");
    if (!raw_dlopen)
        return -1;
    void *h = raw_dlopen(path, RTLD_NOW);
    if (!h)
        return -1;
    hot_fn = (int (*)(int))dlsym(h, "plugin_hot");
    if (!hot_fn)
        return -1;
    worker w[NTHREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&w[i].th, NULL, hot_loop, &w[i]);
    void *h2 = dlopen(path, RTLD_NOW); /* the interposer's scan runs in here */
    __atomic_store_n(&g_patched, 1, __ATOMIC_RELEASE);
    long calls = 0, wrong = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(w[i].th, NULL);
        calls += w[i].calls;
        wrong += w[i].wrong;
    }
    fprintf(stderr, "hot calls %ld\n", calls);
    printf("threads: %d, wrong results: %ld\n", NTHREADS, wrong);
    if (h2)
        dlclose(h2);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1)
        g_after = atol(argv[1]);
    printf("weather %.1f\n", weather_lookup(3));
    printf("greet %s\n", tool_greet("world"));
    printf("fact %d\n", fact(6));
    printf("tail %d\n", tail_caller(4));
    for (int i = 0; i < 3; i++)
        printf("counter %d\n", counter_get(i));
    printf("zero %d\n", zero_fn());
    printf("scale %d\n", scale(5, 3));
    printf("lib_api %d\n", lib_api(2));
    printf("lib_both %d\n", lib_both(7));
    /* The plugin sits beside the program. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", argv[0]);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if (threads_during_patch(dir) != 0)
        printf("plugin unavailable\n");
    return 3;
}
