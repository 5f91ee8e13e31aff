/* bench_hook.c - measures the cost of one call of f(int,int) (libbenchf.so, through the
 * PLT) under whatever LD_PRELOAD the caller set: the median over BATCHES batches of CALLS
 * calls each, printed as "BENCH <label> <ns> ns/call".
 *
 * Usage: bench_hook LABEL [CALLS [BATCHES]]   (defaults 1000000 and 21)
 *
 * Built with -DAS_DIRECT (and linked with the internal library) it measures the thunk
 * without the installer: f is registered as a target and called through its stub with
 * the real pipeline behind it (sink from AGENTSIGHT_OUTPUT). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int f(int a, int b);

#ifdef AS_DIRECT

#include "core/clock.h"
#include "core/pipeline.h"
#include "core/settings.h"
#include "hook/callrec.h"
#include "hook/target.h"

/* Routes every call of f below through the stub of a target for the real f. */
static int (*fp)(int, int);
#define f(a, b) fp(a, b)

static int direct_setup(void) {
    as_clock_init();
    as_settings_load(AGENTSIGHT_QUEUE_DROP);
    as_callrec_register();
    if (as_pipe_start() != 0)
        return -1;
    int id = as_target_get((void *)&f, "f", NULL, "libbenchf.so", NULL);
    if (id < 0)
        return -1;
    fp = (int (*)(int, int))as_thunk_addr((uint32_t)id);
    return 0;
}
#endif

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_hook LABEL [CALLS [BATCHES]]\n");
        return 2;
    }
    long calls = argc > 2 ? atol(argv[2]) : 1000000;
    int batches = argc > 3 ? atoi(argv[3]) : 21;
    if (calls < 1 || batches < 1 || batches > 1000) {
        fprintf(stderr, "bench_hook: bad CALLS or BATCHES\n");
        return 2;
    }
#ifdef AS_DIRECT
    if (direct_setup() != 0) {
        fprintf(stderr, "bench_hook: pipeline or target setup failed\n");
        return 1;
    }
#endif
    double per[1000];
    volatile int sink = 0;
    int acc = 0;
    for (long i = 0; i < calls / 10 + 1; i++) /* warm-up: binds the PLT, fills the ring */
        acc += f((int)i, 1);
    for (int b = 0; b < batches; b++) {
        double t0 = now_ns();
        for (long i = 0; i < calls; i++)
            acc += f((int)i, b);
        per[b] = (now_ns() - t0) / (double)calls;
    }
    sink = acc;
    (void)sink;
    qsort(per, (size_t)batches, sizeof per[0], cmp_double);
    printf("BENCH %s %.2f ns/call\n", argv[1], per[batches / 2]);
#ifdef AS_DIRECT
    fflush(stdout);
    as_pipe_shutdown();
#endif
    return 0;
}
