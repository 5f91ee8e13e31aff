/* bench_http.c - the hot-path cost of agentsight_track_action() as the agent sees it,
 * whatever sink the environment names (null, an API that is dead or slow): times a
 * bounded loop inside the program, excluding start and exit, and prints when main
 * returned so the caller can time the exit (the at-exit flush) on its own.
 *
 * usage: bench_http N     (N actions, 1..10,000,000)
 * prints: ns_per_call <median over 10 chunks>
 *         main_return_ns <CLOCK_MONOTONIC ns just before main returns> */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "agentsight.h"
#include "bench_util.h"

#define CHUNKS 10

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long n = argc == 2 ? atol(argv[1]) : 0;
    if (n < CHUNKS || n > 10000000) {
        fprintf(stderr, "usage: bench_http N (10..10000000)\n");
        return 2;
    }
    agentsight_action a = {.action_name = "bench_step",
                           .duration_ms = 1,
                           .tools_used = "{\"function\":\"step\"}",
                           .response = "ok",
                           .metadata = "{\"bench\":1}"};
    agentsight_track_action(&a, NULL); /* start-up (thread ring, exporter) not timed */
    double per[CHUNKS];
    long each = n / CHUNKS;
    for (int c = 0; c < CHUNKS; c++) {
        int64_t t0 = mono_ns();
        for (long i = 0; i < each; i++)
            agentsight_track_action(&a, NULL);
        per[c] = (double)(mono_ns() - t0) / (double)each;
    }
    qsort(per, CHUNKS, sizeof per[0], bench_cmp_double);
    printf("ns_per_call %.1f\n", (per[CHUNKS / 2 - 1] + per[CHUNKS / 2]) / 2);
    printf("dropped %llu\n", (unsigned long long)agentsight_dropped());
    printf("main_return_ns %lld\n", (long long)mono_ns());
    fflush(stdout);
    return 0;
}
