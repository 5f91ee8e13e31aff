/* bench_http.c - the hot-path cost of agentsight_track_action() as the agent sees it,
 * whatever sink the environment names (null, an API that is dead or slow): times a
 * bounded loop inside the program, excluding start and exit, and prints when main
 * returned so the caller can time the exit (the at-exit flush) on its own.
 *
 * usage: bench_http N [PAUSE_MS]
 *   N actions, 10..10,000,000. Without PAUSE_MS they are made back to back in 10 timed
 *   chunks (saturated: once the queue is full, the call waits for the exporter, so this
 *   measures how fast the exporter drains for that sink). With PAUSE_MS (1..1000) they are
 *   made in bursts of 1000 with an untimed pause after each (paced: the queue never fills,
 *   so this is the cost of the call itself while the exporter works for that sink).
 * prints: ns_per_call <median over the chunks or bursts>
 *         dropped <agentsight_dropped()>
 *         main_return_ns <CLOCK_MONOTONIC ns just before main returns> */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "agentsight.h"
#include "bench_util.h"

#define CHUNKS 10
#define BURST 1000
#define MAX_BURSTS 10000

static int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    long n = argc >= 2 ? atol(argv[1]) : 0;
    long pause_ms = argc >= 3 ? atol(argv[2]) : 0;
    if (argc < 2 || argc > 3 || n < CHUNKS || n > 10000000 || pause_ms < 0 || pause_ms > 1000) {
        fprintf(stderr, "usage: bench_http N [PAUSE_MS]   (N 10..10000000, PAUSE_MS 1..1000)\n");
        return 2;
    }
    agentsight_action a = {.action_name = "bench_step",
                           .duration_ms = 1,
                           .tools_used = "{\"function\":\"step\"}",
                           .response = "ok",
                           .metadata = "{\"bench\":1}"};
    agentsight_track_action(&a, NULL); /* start-up (thread ring, exporter) not timed */
    static double per[MAX_BURSTS];
    int parts;
    if (pause_ms == 0) {
        parts = CHUNKS;
        long each = n / CHUNKS;
        for (int c = 0; c < CHUNKS; c++) {
            int64_t t0 = mono_ns();
            for (long i = 0; i < each; i++)
                agentsight_track_action(&a, NULL);
            per[c] = (double)(mono_ns() - t0) / (double)each;
        }
    } else {
        long bursts = n / BURST;
        parts = (int)(bursts < 1 ? 1 : bursts > MAX_BURSTS ? MAX_BURSTS : bursts);
        for (int c = 0; c < parts; c++) {
            sleep_ms(pause_ms); /* untimed: the exporter works meanwhile */
            int64_t t0 = mono_ns();
            for (long i = 0; i < BURST; i++)
                agentsight_track_action(&a, NULL);
            per[c] = (double)(mono_ns() - t0) / (double)BURST;
        }
    }
    printf("ns_per_call %.1f\n", bench_median(per, parts));
    printf("dropped %llu\n", (unsigned long long)agentsight_dropped());
    printf("main_return_ns %lld\n", (long long)mono_ns());
    fflush(stdout);
    return 0;
}
