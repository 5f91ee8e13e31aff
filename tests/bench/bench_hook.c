/* bench_hook.c - measures the cost of one call of f(int,int) (libbenchf.so, through the
 * PLT) under whatever LD_PRELOAD the caller set: the median over BATCHES batches of CALLS
 * calls each, printed as "BENCH <label> <ns> ns/call".
 *
 * Usage: bench_hook LABEL [CALLS [BATCHES [int|str|stru|full|fullstr|fullstru]]]
 * (defaults 1000000, 21, int). With "str" the calls are fs(s) with a 64-byte string s
 * (the typed-capture row); "stru" makes the same calls, and in the direct build fs has no
 * prototype (the untyped baseline of the same call; under the interposer the config
 * says so). "full" and "fullstr" (direct build only) make the same calls
 * through the full-preservation stubs that entry patches use instead of the lean ones.
 * BENCH_PAUSE_MS (environment, default 0): an untimed pause after the warm-up and after
 * every batch, so the exporter drains the ring and no timed call meets a full ring (the
 * drop path would otherwise be measured instead of the record path).
 *
 * Built with -DAS_DIRECT (and linked with the internal library) it measures the thunk
 * without the installer: f is registered as a target and called through its stub with
 * the real pipeline behind it (sink from AGENTSIGHT_OUTPUT). It then also prints how many
 * string reads took the system call instead of the direct copy ("slow_reads=N": 0 means
 * the row measured the fast path it claims to). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

int f(int a, int b);
int fs(const char *s);

#ifdef AS_DIRECT

#include "core/clock.h"
#include "core/pipeline.h"
#include "core/settings.h"
#include "hook/callrec.h"
#include "hook/capture.h"
#include "hook/target.h"

#include "hook/config.h"
#include "hook/cproto.h"

/* Routes every call of f and fs below through the stubs of targets for the real ones;
 * fs has the prototype int fs(const char *s), so its string is captured. */
static int (*fp)(int, int);
static int (*fsp)(const char *);
static as_entry fs_entry;
#define f(a, b) fp(a, b)
#define fs(s) fsp(s)

/* Sets fp and fsp to the stubs of targets for f and fs: the full-preservation ones when
 * full is set; fs gets its prototype when typed is set. Returns 0, or -1 when the pipeline
 * or a target cannot be set up. */
static int direct_setup(int full, int typed) {
    as_clock_init();
    as_settings_load(AGENTSIGHT_QUEUE_DROP);
    as_callrec_register();
    if (as_pipe_start() != 0)
        return -1;
    int id = as_target_get((void *)&f, "f", NULL, "libbenchf.so", NULL);
    if (id < 0)
        return -1;
    fp = (int (*)(int, int))(full ? as_thunk_addr_full((uint32_t)id) : as_thunk_addr((uint32_t)id));
    static const char proto[] = "int fs(const char *s)";
    size_t no, nl, used;
    as_cproto_err err;
    if (as_cproto_parse(proto, sizeof proto - 1, &fs_entry.proto, &no, &nl, &used, &err) != 0)
        return -1;
    fs_entry.has_proto = 1;
    fs_entry.max_string = AS_MAX_STRING_DEFAULT;
    id = as_target_get((void *)&fs, "fs", NULL, "libbenchf.so", typed ? &fs_entry : NULL);
    if (id < 0)
        return -1;
    fsp = (int (*)(const char *))(full ? as_thunk_addr_full((uint32_t)id)
                                       : as_thunk_addr((uint32_t)id));
    as_stat_hooked = 2; /* f and fs, as the installer would count them */
    return 0;
}
#endif

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_hook LABEL [CALLS [BATCHES]]\n");
        return 2;
    }
    long calls = argc > 2 ? atol(argv[2]) : 1000000;
    int batches = argc > 3 ? atoi(argv[3]) : 21;
    const char *mode = argc > 4 ? argv[4] : "int";
    int full = strncmp(mode, "full", 4) == 0;
    const char *m = full ? mode + 4 : mode;
    int str = strcmp(m, "str") == 0 || strcmp(m, "stru") == 0;
    int str_typed = strcmp(m, "str") == 0;
    /* 64 bytes of text (63 + NUL), on the heap like an agent's request strings */
    /* BENCH_STR_OFF (tests of layout effects): the string at that offset in a page */
    const char *so = getenv("BENCH_STR_OFF");
    static char in_data[64]; /* BENCH_STR_STATIC (instruction counts under valgrind, whose
                              * heap is not the program's break): the string in .bss */
    char *s64 = getenv("BENCH_STR_STATIC") ? in_data
                : so ? (char *)aligned_alloc(4096, 8192) + (atoi(so) & 4095)
                     : malloc(64);
    if (!s64)
        return 1;
    memset(s64, 'q', 63);
    s64[63] = '\0';
    if (calls < 1 || batches < 1 || batches > 1000) {
        fprintf(stderr, "bench_hook: bad CALLS or BATCHES\n");
        return 2;
    }
#ifndef AS_DIRECT
    (void)str_typed; /* the config decides under the interposer */
    if (full) {
        fprintf(stderr, "bench_hook: full stubs need the direct build\n");
        return 2;
    }
#endif
#ifdef AS_DIRECT
    if (direct_setup(full, str_typed) != 0) {
        fprintf(stderr, "bench_hook: pipeline or target setup failed\n");
        return 1;
    }
#endif
    double per[1000];
    volatile int sink = 0;
    int acc = 0;
    const char *pe = getenv("BENCH_PAUSE_MS");
    long pause_ms = pe ? atol(pe) : 0;
    if (pause_ms < 0 || pause_ms > 10000)
        pause_ms = 0;
    for (long i = 0; i < calls / 10 + 1; i++) /* warm-up: binds the PLT, fills the ring */
        acc += str ? fs(s64) : f((int)i, 1);
    for (int b = 0; b < batches; b++) {
        if (pause_ms)
            usleep((useconds_t)pause_ms * 1000); /* untimed: the exporter drains */
        double t0 = bench_now_ns();
        if (str) {
            for (long i = 0; i < calls; i++)
                acc += fs(s64);
        } else {
            for (long i = 0; i < calls; i++)
                acc += f((int)i, b);
        }
        per[b] = (bench_now_ns() - t0) / (double)calls;
    }
    if (!so && s64 != in_data)
        free(s64);
    sink = acc;
    (void)sink;
    double med = bench_median(per, batches);
#ifdef AS_DIRECT
    printf("BENCH %s %.2f ns/call slow_reads=%llu\n", argv[1], med,
           (unsigned long long)as_capture_slow_reads());
    fflush(stdout);
    as_pipe_shutdown();
#else
    printf("BENCH %s %.2f ns/call\n", argv[1], med);
#endif
    return 0;
}
