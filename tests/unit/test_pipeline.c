/* test_pipeline.c - unit tests of the per-thread ring (single-threaded edge cases and a
 * producer/consumer pair) and of the pipeline end to end: several producer threads into
 * a file sink with nothing lost or duplicated, both full-queue policies with a slow sink,
 * the dropped count merged into metadata, flush and the stats line, a damaged record
 * counted and skipped; ring files left by a dead process recovered with a damaged record
 * skipped. Also run under
 * ThreadSanitizer (make test-tsan). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/pipeline.h"
#include "core/ring.h"
#include "core/settings.h"

/* ---- ring ------------------------------------------------------------------------------- */

/* Proves sizes round up, a reservation is invisible until committed, and a full ring
 * refuses without changing anything. */
static void test_ring_basic(void **state) {
    as_ring *r = as_ring_create(100);
    assert_non_null(r);
    assert_int_equal(r->size, AS_RING_MIN);
    assert_true(as_ring_fits(r, 100));
    assert_false(as_ring_fits(r, AS_RING_MIN));
    char *p = as_ring_reserve(r, 3, 5);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 8, 0);
    memcpy(p, "hello", 5);
    uint64_t cur = as_ring_tail(r);
    unsigned kind;
    size_t len;
    assert_null(as_ring_read(r, &cur, as_ring_head(r), &kind, &len));
    as_ring_commit(r);
    const char *q = as_ring_read(r, &cur, as_ring_head(r), &kind, &len);
    assert_non_null(q);
    assert_int_equal(kind, 3);
    assert_int_equal(len, 5);
    assert_memory_equal(q, "hello", 5);
    assert_null(as_ring_read(r, &cur, as_ring_head(r), &kind, &len));
    as_ring_release(r, cur);
    assert_int_equal(as_ring_used(r), 0);
    /* Fill: 1000-byte records, 4 fit in 4096 minus nothing else. */
    int n = 0;
    while (n < 100 && as_ring_reserve(r, 1, 1000)) {
        as_ring_commit(r);
        n++;
    }
    assert_int_equal(n, 4);
    uint64_t head = as_ring_head(r);
    assert_null(as_ring_reserve(r, 1, 1000));
    assert_int_equal(as_ring_head(r), head);
    as_ring_destroy(r);
    as_ring_destroy(NULL);
}

/* Proves one reservation at a time, as a signal handler of the producer sees it: while
 * one is open (reserved, not committed) the ring refuses another without touching it;
 * a refusal for lack of room leaves nothing open; after the commit it reserves again. */
static void test_ring_one_open_reservation(void **state) {
    as_ring *r = as_ring_create(4096);
    assert_non_null(r);
    assert_false(as_ring_open(r));
    char *p = as_ring_reserve(r, 3, 16);
    assert_non_null(p);
    assert_true(as_ring_open(r));
    uint64_t head = as_ring_head(r);
    assert_null(as_ring_reserve(r, 3, 16)); /* the interrupted one is still open */
    assert_int_equal(as_ring_head(r), head);
    memcpy(p, "0123456789abcdef", 16);
    as_ring_commit(r);
    assert_false(as_ring_open(r));
    uint64_t cur = as_ring_tail(r);
    unsigned kind;
    size_t len;
    const char *q = as_ring_read(r, &cur, as_ring_head(r), &kind, &len);
    assert_non_null(q);
    assert_memory_equal(q, "0123456789abcdef", 16); /* not overwritten */
    assert_null(as_ring_read(r, &cur, as_ring_head(r), &kind, &len));
    while (as_ring_reserve(r, 1, 1000)) /* fill: bounded by the ring's 4096 bytes */
        as_ring_commit(r);
    assert_false(as_ring_open(r)); /* the refused reservation left nothing open */
    as_ring_release(r, as_ring_head(r));
    assert_non_null(as_ring_reserve(r, 1, 1000));
    as_ring_commit(r);
    as_ring_destroy(r);
}

/* Proves records of varying sizes survive many laps around the ring (padding records
 * at the wrap are skipped) with their content intact. */
static void test_ring_wrap(void **state) {
    as_ring *r = as_ring_create(4096);
    assert_non_null(r);
    uint32_t wseq = 0, rseq = 0;
    for (int round = 0; round < 20000; round++) {
        size_t len = 4 + (size_t)(round * 37 % 700);
        unsigned char *p = as_ring_reserve(r, 2, len);
        if (p) {
            memcpy(p, &wseq, 4);
            memset(p + 4, (int)(wseq & 0xff), len - 4);
            as_ring_commit(r);
            wseq++;
        }
        if (!p || round % 3 == 0) {
            uint64_t cur = as_ring_tail(r), head = as_ring_head(r);
            unsigned kind;
            size_t l;
            const unsigned char *q;
            while ((q = as_ring_read(r, &cur, head, &kind, &l))) {
                uint32_t s;
                memcpy(&s, q, 4);
                assert_int_equal(s, rseq);
                assert_int_equal(kind, 2);
                for (size_t i = 4; i < l; i++)
                    assert_int_equal(q[i], s & 0xff);
                rseq++;
            }
            as_ring_release(r, cur);
        }
    }
    assert_true(wseq > 10000);
    assert_true(rseq + 8 >= wseq);
    as_ring_destroy(r);
}

enum { PC_COUNT = 200000 };

static void *ring_producer(void *arg) {
    as_ring *r = arg;
    for (uint32_t seq = 0; seq < PC_COUNT;) {
        size_t len = 4 + seq % 61;
        unsigned char *p = as_ring_reserve(r, 1, len);
        if (!p) {
            sched_yield();
            continue;
        }
        memcpy(p, &seq, 4);
        memset(p + 4, (int)(seq & 0xff), len - 4);
        as_ring_commit(r);
        seq++;
    }
    return NULL;
}

/* Proves one producer and one consumer thread exchange PC_COUNT messages through a small
 * ring in order, none lost, none corrupted (bounded by the count). */
static void test_ring_threads(void **state) {
    as_ring *r = as_ring_create(4096);
    assert_non_null(r);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, ring_producer, r), 0);
    uint32_t next = 0;
    int bad = 0;
    while (next < PC_COUNT && !bad) {
        uint64_t cur = as_ring_tail(r), head = as_ring_head(r);
        unsigned kind;
        size_t len;
        const unsigned char *q;
        if (cur == head) {
            sched_yield();
            continue;
        }
        while ((q = as_ring_read(r, &cur, head, &kind, &len))) {
            uint32_t s;
            memcpy(&s, q, 4);
            bad |= s != next || len != 4 + next % 61 || (len > 4 && q[len - 1] != (s & 0xff));
            next++;
        }
        as_ring_release(r, cur);
    }
    pthread_join(t, NULL);
    assert_false(bad);
    assert_int_equal(next, PC_COUNT);
    as_ring_destroy(r);
}

/* ---- ring files left by dead processes ---------------------------------------------- */

typedef struct got_actions {
    int n;
    char names[8][32];
} got_actions;

static int collect(const as_action *a, const as_recover_origin *o, void *ctx) {
    got_actions *g = ctx;
    assert_string_equal(o->conversation_id, "conv_dead");
    if (g->n < 8)
        snprintf(g->names[g->n], sizeof g->names[0], "%s", a->action_name);
    g->n++;
    return 0;
}

/* Writes one packed action named name into r. */
static void put_action(as_ring *r, const char *name) {
    as_action a = {.action_name = name,
                   .conversation_id = "conv_dead",
                   .started_ns = 1705314600LL * 1000000000LL,
                   .ended_ns = 1705314600LL * 1000000000LL,
                   .timestamp_ns = 1705314600LL * 1000000000LL};
    size_t n = as_action_pack_size(&a);
    void *p = as_ring_reserve(r, AS_MSG_ACTION, n);
    assert_non_null(p);
    as_action_pack(&a, p);
    as_ring_commit(r);
}

/* Minor page faults of this process so far. */
static long minor_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* Under a sanitizer its shadow memory faults in as the pages are touched: the fault count
 * says nothing about the ring's own pages there. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FAULTS_MEANINGFUL 0
#else
#define FAULTS_MEANINGFUL 1
#endif

/* Writes one byte in every page of the first bytes of the ring's data. */
static void touch_pages(as_ring *r, size_t bytes) {
    volatile unsigned char *d = as_ring_data(r);
    for (uint64_t o = 0; o < bytes && o < r->size; o += 4096)
        d[o] = 1;
}

/* Whether this filesystem allocates blocks with fallocate (a probe file beside path). */
static int fallocate_works(const char *path) {
    char probe[96];
    snprintf(probe, sizeof probe, "%s.probe", path);
    int fd = open(probe, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 0;
    int ok = fallocate(fd, 0, 0, 65536) == 0;
    close(fd);
    unlink(probe);
    return ok;
}

/* Proves the first 256 KiB of a ring, anonymous or file-backed, can be mapped writable
 * ahead (as a thread attaching does): writing a record into every page of them then takes
 * (almost) no page fault, where a plain mapping takes one per page (64), each a
 * microsecond on the hot path; the contents are unchanged. The file of a file-backed ring
 * has its blocks allocated (no hole: a write into a hole of a full disk would be a SIGBUS).
 * Skipped parts: fault counts before Linux 5.14 or under a sanitizer; blocks where the
 * filesystem has no fallocate. */
static void test_ring_pages_ready(void **state) {
    const size_t ahead = 256u << 10;
    as_ring *r = as_ring_create(1u << 20);
    assert_non_null(r);
    uint64_t head = as_ring_head(r);
    int can = as_ring_prefault(r, ahead) == 0;
    assert_int_equal(as_ring_head(r), head);
    long before = minor_faults();
    touch_pages(r, ahead);
    assert_true(!can || !FAULTS_MEANINGFUL || minor_faults() - before < 8);
    as_ring_destroy(r);

    char path[64];
    snprintf(path, sizeof path, "/tmp/as-ring-pages-%d.ring", (int)getpid());
    as_ring_info info;
    memset(&info, 0, sizeof info);
    r = as_ring_create_file(path, 1u << 20, &info);
    assert_non_null(r);
    can = as_ring_prefault(r, ahead) == 0;
    before = minor_faults();
    touch_pages(r, ahead);
    assert_true(!can || !FAULTS_MEANINGFUL || minor_faults() - before < 8);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    /* Every block of the file is allocated at its creation (a write into a hole that a
     * full disk cannot fill would be a SIGBUS in the program). */
    if (fallocate_works(path))
        assert_true((uint64_t)st.st_blocks * 512 >= (uint64_t)st.st_size);
    as_ring_destroy(r);
    unlink(path);
}

/* Proves a ring file of a dead process is recovered in order, a record whose header was
 * damaged is skipped (the records after it still come), the file is removed, a second
 * recovery finds nothing, and a file of a live process (this one) is never taken. */
static void test_ring_file_recover(void **state) {
    char root[64], rings[80], path[160], live[160];
    snprintf(root, sizeof root, "/tmp/as-recover-%d", (int)getpid());
    snprintf(rings, sizeof rings, "%s/rings", root);
    mkdir(root, 0700);
    mkdir(rings, 0700);
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    assert_true(child > 0);
    waitpid(child, NULL, 0); /* its pid is now dead */
    assert_int_equal(as_proc_dead(child, 1), 1);
    uint64_t me_start = as_proc_start_time((int)getpid());
    assert_true(me_start > 0);
    assert_int_equal(as_proc_dead((int)getpid(), me_start), 0);
    assert_int_equal(as_proc_dead((int)getpid(), me_start + 1), 1); /* pid reused */

    as_ring_info info;
    memset(&info, 0, sizeof info);
    info.pid = child;
    info.start_time = 1;
    info.clock_ns_per_raw = 1;
    snprintf(info.conversation_id, sizeof info.conversation_id, "conv_dead");
    snprintf(path, sizeof path, "%s/%d-1-ab-0.ring", rings, (int)child);
    as_ring *r = as_ring_create_file(path, 4096, &info);
    assert_non_null(r);
    assert_null(as_ring_create_file(path, 4096, &info)); /* never overwritten */
    put_action(r, "first");
    uint64_t second = as_ring_head(r);
    put_action(r, "second");
    put_action(r, "third");
    memset(as_ring_data(r) + (second & r->mask), 0xff, 8); /* damage the 2nd header */
    as_ring_destroy(r);

    info.pid = (int32_t)getpid();
    info.start_time = me_start;
    snprintf(live, sizeof live, "%s/%d-%llu-ab-0.ring", rings, (int)getpid(),
             (unsigned long long)me_start);
    r = as_ring_create_file(live, 4096, &info);
    assert_non_null(r);
    put_action(r, "mine");
    as_ring_destroy(r);

    got_actions g = {0};
    assert_int_equal(as_pipe_recover(root, collect, &g), 2);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.names[0], "first");
    assert_string_equal(g.names[1], "third");
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(access(live, F_OK), 0);
    memset(&g, 0, sizeof g);
    assert_int_equal(as_pipe_recover(root, collect, &g), 0);
    assert_int_equal(g.n, 0);
    unlink(live);
    rmdir(rings);
    rmdir(root);
}

/* ---- pipeline --------------------------------------------------------------------------- */

typedef struct msg {
    uint32_t thread, seq;
} msg;

/* Test decoder for AS_MSG_CALL: the action carries thread and sequence in metadata. */
static int decode_msg(const void *payload, size_t len, as_action *out, as_buf *scratch) {
    if (len != sizeof(msg))
        return -1;
    msg m;
    memcpy(&m, payload, sizeof(m));
    memset(out, 0, sizeof(*out));
    out->action_name = "unit";
    out->conversation_id = "c";
    out->started_ns = out->ended_ns = out->timestamp_ns = 1705314600LL * 1000000000LL;
    as_buf_printf(scratch, "{\"t\":%u,\"s\":%u}", m.thread, m.seq);
    out->metadata = as_buf_cstr(scratch);
    return 0;
}

static char out_path[64];

static void configure(const char *extra_sink, int policy, size_t qbytes) {
    as_settings_load(policy);
    snprintf(as_cfg.output, sizeof(as_cfg.output), "file:%s%s%s", out_path, extra_sink ? "," : "",
             extra_sink ? extra_sink : "");
    as_cfg.queue_bytes = qbytes;
    as_cfg.queue_policy = policy;
    as_cfg.queue_wait_ms = 10000;
    as_cfg.flush_timeout_ms = 10000;
    unlink(out_path);
    as_pipe_register(AS_MSG_CALL, decode_msg);
}

static int setup(void **state) {
    snprintf(out_path, sizeof(out_path), "/tmp/as-pipe-%d.jsonl", (int)getpid());
    return 0;
}

static int teardown(void **state) {
    as_pipe_shutdown();
    unlink(out_path);
    return 0;
}

typedef struct prod {
    uint32_t thread, count;
    int may_wait;
    uint32_t refused;
} prod;

static void *producer(void *arg) {
    prod *p = arg;
    for (uint32_t i = 0; i < p->count; i++) {
        msg *m = as_pipe_reserve(AS_MSG_CALL, sizeof(msg), p->may_wait);
        if (!m) {
            p->refused++;
            continue;
        }
        m->thread = p->thread;
        m->seq = i;
        as_pipe_commit(m);
    }
    return NULL;
}

/* Reads the output: counts lines, marks (thread, seq) pairs in seen (duplicates
 * counted), sums "agentsight_dropped". Returns the number of lines. */
static int read_out(uint8_t *seen, uint32_t per, int *dups, uint64_t *dropped_sum) {
    FILE *f = fopen(out_path, "r");
    if (!f)
        return 0;
    static char line[4096];
    int n = 0;
    *dups = 0;
    *dropped_sum = 0;
    while (fgets(line, sizeof(line), f)) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        cJSON *m = cJSON_GetObjectItem(j, "metadata");
        assert_true(cJSON_IsObject(m));
        uint32_t t = (uint32_t)cJSON_GetObjectItem(m, "t")->valuedouble;
        uint32_t s = (uint32_t)cJSON_GetObjectItem(m, "s")->valuedouble;
        cJSON *d = cJSON_GetObjectItem(m, "agentsight_dropped");
        if (d)
            *dropped_sum += (uint64_t)d->valuedouble;
        if (seen) {
            uint8_t *b = &seen[t * per + s];
            *dups += *b;
            *b = 1;
        }
        cJSON_Delete(j);
        n++;
    }
    fclose(f);
    return n;
}

/* Runs nthreads producers of per messages each (allowed to wait), joins them, checks
 * none was refused, flushes, and checks every message reached the file sink exactly
 * once. Returns the sum of "agentsight_dropped" the output carried. */
static uint64_t produce_and_check_all(int nthreads, uint32_t per) {
    pthread_t th[nthreads];
    prod p[nthreads];
    for (int i = 0; i < nthreads; i++) {
        p[i] = (prod){.thread = (uint32_t)i, .count = per, .may_wait = 1};
        assert_int_equal(pthread_create(&th[i], NULL, producer, &p[i]), 0);
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(p[i].refused, 0);
    }
    assert_int_equal(as_pipe_flush(-1), 0);
    uint8_t *seen = calloc((size_t)nthreads * per, 1);
    assert_non_null(seen);
    int dups;
    uint64_t dsum;
    assert_int_equal(read_out(seen, per, &dups, &dsum), (int)(nthreads * per));
    assert_int_equal(dups, 0);
    free(seen);
    return dsum;
}

/* Proves 4 threads x 20,000 messages all reach the file sink exactly once (the threads
 * exit before the flush, so their slots are drained, then retired). */
static void test_pipeline_threads(void **state) {
    enum { T = 4, PER = 20000 };
    configure(NULL, AGENTSIGHT_QUEUE_WAIT, 64 * 1024);
    assert_int_equal(as_pipe_start(), 0);
    assert_int_equal(as_pipe_start(), 0); /* idempotent */
    assert_int_equal(produce_and_check_all(T, PER), 0);
    assert_int_equal(as_pipe_delivered(), T * PER);
    assert_int_equal(as_pipe_dropped(), 0);
    as_pipe_shutdown();
    as_pipe_shutdown(); /* idempotent */
}

/* Proves policy DROP with a slow sink drops at once, counts every drop, and reports the
 * count in the metadata of later actions ("agentsight_dropped", merged with the
 * action's own keys). */
static void test_pipeline_drop_policy(void **state) {
    enum { PER = 3000 };
    uint64_t before = as_pipe_dropped();
    uint64_t delivered_before = as_pipe_delivered();
    configure("null:delay_ms=20", AGENTSIGHT_QUEUE_DROP, 4096);
    assert_int_equal(as_pipe_start(), 0);
    prod p = {.thread = 0, .count = PER, .may_wait = 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, producer, &p), 0);
    pthread_join(th, NULL);
    assert_int_equal(as_pipe_flush(-1), 0);
    /* Drops that happen while the last batch is in the sink have no later action to
     * ride on; one more action after the flush carries them. */
    prod last = {.thread = 0, .count = 1, .may_wait = 1};
    producer(&last);
    assert_int_equal(last.refused, 0);
    assert_int_equal(as_pipe_flush(-1), 0);
    uint64_t dropped = as_pipe_dropped() - before;
    assert_true(p.refused > 0);
    assert_int_equal(dropped, p.refused);
    int dups;
    uint64_t dsum;
    int lines = read_out(NULL, PER, &dups, &dsum);
    assert_int_equal((uint64_t)lines + dropped, PER + 1);
    assert_int_equal(as_pipe_delivered() - delivered_before, lines);
    assert_int_equal(dsum, dropped);
    as_pipe_shutdown();
}

/* Proves policy WAIT with the same slow sink and a tiny queue loses nothing: producers
 * wait for room instead of dropping. */
static void test_pipeline_wait_policy(void **state) {
    enum { T = 2, PER = 600 };
    uint64_t before = as_pipe_dropped();
    configure("null:delay_ms=2", AGENTSIGHT_QUEUE_WAIT, 4096);
    assert_int_equal(as_pipe_start(), 0);
    produce_and_check_all(T, PER);
    assert_int_equal(as_pipe_dropped(), before);
    as_pipe_shutdown();
}

/* Proves (review item 12) that under policy WAIT a thread whose ring fills while the
 * pipeline is stopped by a shutdown starts it again and loses nothing (it dropped at
 * once because the pipeline was not running). */
static void test_pipeline_wait_after_shutdown(void **state) {
    enum { PER = 600 };
    uint64_t before = as_pipe_dropped();
    configure(NULL, AGENTSIGHT_QUEUE_WAIT, 4096);
    assert_int_equal(as_pipe_start(), 0);
    as_pipe_shutdown();
    assert_false(as_pipe_running());
    prod p = {.thread = 0, .count = PER, .may_wait = 1};
    producer(&p);
    assert_int_equal(p.refused, 0);
    assert_true(as_pipe_running());
    assert_int_equal(as_pipe_flush(-1), 0);
    static uint8_t seen[PER];
    memset(seen, 0, sizeof(seen));
    int dups;
    uint64_t dsum;
    assert_int_equal(read_out(seen, PER, &dups, &dsum), PER);
    assert_int_equal(dups, 0);
    assert_int_equal(as_pipe_dropped(), before);
    as_pipe_shutdown();
}

/* Proves shutdown delivers what is still queued without an explicit flush, and appends
 * the stats line to AGENTSIGHT_STATS_FILE. */
static void test_pipeline_shutdown_stats(void **state) {
    char stats[80];
    snprintf(stats, sizeof(stats), "/tmp/as-stats-%d.jsonl", (int)getpid());
    unlink(stats);
    setenv("AGENTSIGHT_STATS_FILE", stats, 1);
    configure(NULL, AGENTSIGHT_QUEUE_WAIT, 64 * 1024);
    assert_int_equal(as_pipe_start(), 0);
    uint64_t delivered_before = as_pipe_delivered();
    prod p = {.thread = 0, .count = 500, .may_wait = 1};
    producer(&p);
    as_pipe_shutdown();
    unsetenv("AGENTSIGHT_STATS_FILE");
    int dups;
    uint64_t dsum;
    assert_int_equal(read_out(NULL, 500, &dups, &dsum), 500);
    FILE *f = fopen(stats, "r");
    assert_non_null(f);
    char line[1024];
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    unlink(stats);
    cJSON *j = cJSON_Parse(line);
    assert_non_null(j);
    assert_int_equal((int)cJSON_GetObjectItem(j, "pid")->valuedouble, getpid());
    assert_int_equal((uint64_t)cJSON_GetObjectItem(j, "actions")->valuedouble,
                     delivered_before + 500);
    assert_non_null(cJSON_GetObjectItem(j, "dropped"));
    assert_non_null(cJSON_GetObjectItem(j, "hooked"));
    char want[128];
    snprintf(want, sizeof(want), "file:%s", out_path);
    assert_string_equal(cJSON_GetObjectItem(j, "output")->valuestring, want);
    cJSON_Delete(j);
    /* Stopped: flush has nothing to wait for. */
    assert_int_equal(as_pipe_flush(100), 0);
}

/* The API's decoder of packed actions (api.c registers the same). */
static int decode_packed(const void *payload, size_t len, as_action *out, as_buf *scratch) {
    (void)scratch;
    return as_action_unpack(payload, len, out);
}

/* Proves the live exporter counts a record whose checksum does not match as a drop of
 * its own cause (as_pipe_drop_counts().damaged, as_pipe_dropped, "damaged" and "dropped"
 * in the stats line), never ships it, and ships the records around it: three packed
 * actions, one bit of the second flipped before its commit. */
static void test_pipeline_damaged_record(void **state) {
    char stats[80];
    snprintf(stats, sizeof(stats), "/tmp/as-stats-dmg-%d.jsonl", (int)getpid());
    unlink(stats);
    setenv("AGENTSIGHT_STATS_FILE", stats, 1);
    configure(NULL, AGENTSIGHT_QUEUE_WAIT, 64 * 1024);
    as_pipe_register(AS_MSG_ACTION, decode_packed);
    assert_int_equal(as_pipe_start(), 0);
    as_pipe_drops d0;
    as_pipe_drop_counts(&d0);
    uint64_t dropped0 = as_pipe_dropped();
    const char *names[3] = {"first", "second", "third"};
    for (int i = 0; i < 3; i++) {
        as_action a = {.action_name = names[i], .conversation_id = "c"};
        a.started_ns = a.ended_ns = a.timestamp_ns = 1705314600LL * 1000000000LL;
        size_t n = as_action_pack_size(&a);
        unsigned char *p = as_pipe_reserve(AS_MSG_ACTION, n, 1);
        assert_non_null(p);
        as_action_pack(&a, p);
        if (i == 1)
            p[n - 3] ^= 4; /* in its name's bytes */
        as_pipe_commit(p);
    }
    assert_int_equal(as_pipe_flush(10000), 0);
    as_pipe_drops d;
    as_pipe_drop_counts(&d);
    assert_int_equal(d.damaged - d0.damaged, 1);
    assert_int_equal(as_pipe_dropped() - dropped0, 1);
    FILE *f = fopen(out_path, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    const char *want[2] = {"first", "third"};
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        assert_true(n < 2);
        assert_string_equal(cJSON_GetObjectItem(j, "action_name")->valuestring, want[n]);
        cJSON_Delete(j);
        n++;
    }
    fclose(f);
    assert_int_equal(n, 2);
    as_pipe_shutdown();
    unsetenv("AGENTSIGHT_STATS_FILE");
    f = fopen(stats, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    unlink(stats);
    cJSON *j = cJSON_Parse(line);
    assert_non_null(j);
    assert_int_equal((int)cJSON_GetObjectItem(j, "damaged")->valuedouble, 1);
    assert_true(cJSON_GetObjectItem(j, "dropped")->valuedouble >= 1);
    cJSON_Delete(j);
}

/* Proves a pipeline whose only sink cannot open refuses to start. */
static void test_pipeline_no_sink(void **state) {
    as_settings_load(AGENTSIGHT_QUEUE_WAIT);
    snprintf(as_cfg.output, sizeof(as_cfg.output), "file:/nonexistent-dir-xyz/a.jsonl");
    assert_int_equal(as_pipe_start(), -1);
}

/* Proves an output set empty on purpose (an over-long AGENTSIGHT_OUTPUT: settings report
 * it and leave it empty and explicit) opens no sink at all: the pipeline refuses to start
 * and nothing is written to the default file in the working directory. */
static void test_pipeline_explicit_empty_output(void **state) {
    char dir[] = "/tmp/as-pipe-empty-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char old[4096];
    assert_non_null(getcwd(old, sizeof old));
    assert_int_equal(chdir(dir), 0);
    as_settings_load(AGENTSIGHT_QUEUE_WAIT);
    as_cfg.output[0] = '\0';
    as_cfg.output_explicit = 1;
    int rc = as_pipe_start();
    int made = access("agentsight-actions.jsonl", F_OK) == 0;
    unlink("agentsight-actions.jsonl");
    assert_int_equal(chdir(old), 0);
    assert_int_equal(rc, -1);
    assert_false(made);
    assert_int_equal(rmdir(dir), 0);
}

/* Proves a file sink that cannot write (the file size limit, as a full disk) holds
 * nothing in memory while the exporter keeps the batch and its ring unreleased: the file
 * gains no line (and no partial line) meanwhile, nothing is lost or counted as dropped,
 * and once the file can be written again every message is in it exactly once. */
static void test_pipeline_file_failure_keeps_ring(void **state) {
    enum { PER = 100 }; /* fits the calling thread's ring of an earlier test (4 KiB) */
    configure(NULL, AGENTSIGHT_QUEUE_WAIT, 1 << 20);
    assert_int_equal(as_pipe_start(), 0);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    uint64_t dropped_before = as_pipe_dropped();
    uint64_t delivered_before = as_pipe_delivered();
    prod first = {.thread = 0, .count = 1, .may_wait = 1};
    producer(&first);
    assert_int_equal(as_pipe_flush(-1), 0);
    struct stat st;
    assert_int_equal(stat(out_path, &st), 0);
    struct rlimit lim = {(rlim_t)st.st_size + 10, old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    prod p = {.thread = 1, .count = PER, .may_wait = 0};
    producer(&p);
    assert_int_equal(p.refused, 0);
    as_pipe_flush(500); /* the exporter tried: the batch is still kept */
    /* The exporter tries again meanwhile, each try a partial write cut back under the
     * file's lock: the size is read under that lock. */
    struct stat now;
    int lfd = open(out_path, O_RDONLY);
    assert_true(lfd >= 0);
    assert_int_equal(flock(lfd, LOCK_EX), 0);
    assert_int_equal(fstat(lfd, &now), 0);
    close(lfd);
    assert_int_equal(now.st_size, st.st_size);
    assert_int_equal(as_pipe_delivered() - delivered_before, 1); /* not handed off yet */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_sig);
    assert_int_equal(as_pipe_flush(-1), 0);
    uint8_t *seen = calloc(2 * PER, 1);
    assert_non_null(seen);
    int dups;
    uint64_t dsum;
    assert_int_equal(read_out(seen, PER, &dups, &dsum), PER + 1);
    assert_int_equal(dups, 0);
    free(seen);
    assert_int_equal(as_pipe_dropped(), dropped_before);
    assert_int_equal(as_pipe_delivered() - delivered_before, PER + 1);
    as_pipe_shutdown();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_basic),
        cmocka_unit_test(test_ring_one_open_reservation),
        cmocka_unit_test(test_ring_wrap),
        cmocka_unit_test(test_ring_threads),
        cmocka_unit_test(test_ring_file_recover),
        cmocka_unit_test(test_ring_pages_ready),
        cmocka_unit_test_teardown(test_pipeline_threads, teardown),
        cmocka_unit_test_teardown(test_pipeline_drop_policy, teardown),
        cmocka_unit_test_teardown(test_pipeline_wait_policy, teardown),
        cmocka_unit_test_teardown(test_pipeline_wait_after_shutdown, teardown),
        cmocka_unit_test_teardown(test_pipeline_shutdown_stats, teardown),
        cmocka_unit_test_teardown(test_pipeline_damaged_record, teardown),
        cmocka_unit_test_teardown(test_pipeline_no_sink, teardown),
        cmocka_unit_test_teardown(test_pipeline_explicit_empty_output, teardown),
        cmocka_unit_test_teardown(test_pipeline_file_failure_keeps_ring, teardown),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
