/* bench_api.c - throughput of agentsight_track_action() from 1 and 2 threads into the
 * file sink and into the null sink. Each run lasts about 1 s or 1 M calls, whichever
 * comes first, and includes the final flush. Prints "BENCH api_<sink>_<n>t <N> calls/s". */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agentsight.h"

#define MAX_CALLS 1000000L
#define CHUNK 1000

static atomic_long calls_left;
static atomic_long refused;
static double t_end;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *arg) {
    long *done = arg;
    agentsight_action a = {.action_name = "calculator_multiply",
                           .duration_ms = 50,
                           .tools_used = "{\"function\":\"multiply\",\"parameters\":{\"a\":12,"
                                         "\"b\":5}}",
                           .response = "60",
                           .conversation_id = "math_help_123"};
    while (now_s() < t_end) {
        long got = atomic_fetch_sub(&calls_left, CHUNK);
        if (got <= 0)
            break;
        for (int i = 0; i < CHUNK; i++)
            if (agentsight_track_action(&a, NULL) != 0)
                atomic_fetch_add(&refused, 1);
        *done += CHUNK;
    }
    return NULL;
}

/* Returns 0, or 1 when the run could not start. */
static int bench(const char *sink, const char *output, int nthreads) {
    agentsight_options o = {.output = output, .queue_policy = AGENTSIGHT_QUEUE_WAIT};
    if (agentsight_init(&o) != 0)
        return 1;
    atomic_store(&calls_left, MAX_CALLS);
    atomic_store(&refused, 0);
    pthread_t th[2];
    long done[2] = {0, 0};
    double t0 = now_s();
    t_end = t0 + 1.0;
    for (int i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, worker, &done[i]);
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    int flushed = agentsight_flush(60000);
    double dt = now_s() - t0;
    long total = done[0] + done[1];
    printf("BENCH api_%s_%dt %.0f calls/s (%ld calls, %.3f s, refused %ld, flush %s)\n", sink,
           nthreads, (double)total / dt, total, dt, (long)atomic_load(&refused),
           flushed == 0 ? "ok" : "timeout");
    agentsight_shutdown();
    return 0;
}

int main(void) {
    int rc = 0;
    rc |= bench("file", "file:bench-api.jsonl", 1);
    rc |= bench("file", "file:bench-api.jsonl", 2);
    rc |= bench("null", "null", 1);
    rc |= bench("null", "null", 2);
    return rc;
}
