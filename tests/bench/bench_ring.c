/* bench_ring.c - cost of one 64-byte message on the producer's side: as_ring_reserve +
 * as_ring_commit alone (the consumer's release done by the same thread every 4096
 * messages), and as_pipe_reserve + as_pipe_commit through the real pipeline with its
 * exporter draining into the null sink (anonymous and file-backed rings). Prints
 * "BENCH <label> <ns> ns/msg" (median of 21 batches) and, for the pipeline, the drops. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "core/pipeline.h"
#include "core/ring.h"
#include "core/settings.h"

#define BATCHES 21
#define PER_BATCH 200000

static void bench_ring_alone(void) {
    as_ring *r = as_ring_create(1 << 20);
    if (!r)
        return;
    double per[BATCHES];
    for (int b = 0; b < BATCHES; b++) {
        double t0 = bench_now_ns();
        for (int i = 0; i < PER_BATCH; i++) {
            uint64_t *p = as_ring_reserve(r, 2, 64);
            if (!p)
                abort();
            p[0] = (uint64_t)i;
            p[1] = (uint64_t)b;
            p[2] = p[3] = p[4] = p[5] = p[6] = p[7] = 0;
            as_ring_commit(r);
            if ((i & 4095) == 4095)
                as_ring_release(r, as_ring_head(r));
        }
        per[b] = (bench_now_ns() - t0) / PER_BATCH;
    }
    printf("BENCH ring_reserve_commit %.2f ns/msg\n", bench_median(per, BATCHES));
    as_ring_destroy(r);
}

static int decode_null(const void *payload, size_t len, as_action *out, as_buf *scratch) {
    (void)payload;
    (void)len;
    (void)scratch;
    memset(out, 0, sizeof *out);
    out->action_name = "bench";
    out->conversation_id = "bench";
    return 0;
}

/* Messages paced in bursts of 1000 with a pause after each so the exporter keeps up:
 * what is measured is the producer's cost while a consumer is active. */
static void bench_pipe(const char *label) {
    as_settings_load(AGENTSIGHT_QUEUE_DROP);
    snprintf(as_cfg.output, sizeof as_cfg.output, "null");
    as_pipe_register(AS_MSG_CALL, decode_null);
    if (as_pipe_start() != 0)
        return;
    double per[BATCHES];
    uint64_t drop0 = as_pipe_dropped();
    for (int b = 0; b < BATCHES; b++) {
        double spent = 0;
        for (int burst = 0; burst < PER_BATCH / 1000; burst++) {
            double t0 = bench_now_ns();
            for (int i = 0; i < 1000; i++) {
                uint64_t *p = as_pipe_reserve(AS_MSG_CALL, 64, 0);
                if (!p)
                    continue;
                p[0] = (uint64_t)i;
                p[1] = (uint64_t)b;
                p[2] = p[3] = p[4] = p[5] = p[6] = p[7] = 0;
                as_pipe_commit(p);
            }
            spent += bench_now_ns() - t0;
            struct timespec pause = {0, 20000};
            nanosleep(&pause, NULL);
        }
        per[b] = spent / PER_BATCH;
    }
    as_pipe_flush(10000);
    printf("BENCH %s %.2f ns/msg (dropped %llu)\n", label, bench_median(per, BATCHES),
           (unsigned long long)(as_pipe_dropped() - drop0));
    as_pipe_shutdown();
}

/* Usage: bench_ring [anon|file]  (the pipeline decides ring files once per process) */
int main(int argc, char **argv) {
    int file = argc > 1 && strcmp(argv[1], "file") == 0;
    if (!file)
        bench_ring_alone();
    setenv("AGENTSIGHT_CRASH_SAFE", file ? "1" : "0", 1);
    bench_pipe(file ? "pipe_reserve_commit_file" : "pipe_reserve_commit_anon");
    return 0;
}
