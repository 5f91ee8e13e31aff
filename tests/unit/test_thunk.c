/* test_thunk.c - unit tests of the interposer's hot path (preload/hook/x86_64/thunk.S,
 * thunk.c, target.c, callrec.c): functions of this binary are called through their
 * stubs via function pointers and must behave exactly as when called directly, while
 * exactly one call record per tracked call is written. The pipeline's slow reserve is
 * replaced (-Wl,--wrap): it gives each thread a real ring this file reads back, so the
 * inline reserve/commit of the hot path run as in production; records are decoded with
 * the real decoder and its JSON parsed with cJSON. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/jsonw.h"
#include "core/pipeline.h"
#include "core/ring.h"
#include "hook/callrec.h"
#include "hook/config.h"
#include "hook/cproto.h"
#include "hook/target.h"
#include "hook/thunk.h"
#include "test_hotpath.h"

#define NOIPA __attribute__((noinline, noipa))

/* ---- the replaced pipeline: records land in rings read into recs[] --------------- */

#define REC_CAP (1 << 18)
static as_callrec recs_[REC_CAP];
static size_t nrecs_;
#define reserve_refuse as_test_reserve_refuse

static void keep_fixed_part(const void *p, size_t len, void *arg) {
    (void)len;
    (void)arg;
    if (nrecs_ >= REC_CAP)
        abort();
    memcpy(&recs_[nrecs_++], p, sizeof(as_callrec));
}

/* Moves every committed record into recs_ (the fixed part). Returns how many there are. */
static size_t collect(void) {
    as_test_rings_read(keep_fixed_part, NULL);
    return nrecs_;
}
#define nrecs collect()
#define recs (collect(), recs_)

static void reset_recs(void) {
    collect();
    nrecs_ = 0;
    memset(recs_, 0, sizeof recs_);
}

/* ---- helpers ------------------------------------------------------------------------ */

/* Registers fn as a target and returns its stub. */
static void *wrap(void *fn, const char *name) {
    int id = as_target_get(fn, name, NULL, "test_thunk", NULL);
    assert_true(id >= 0);
    void *stub = as_thunk_addr((uint32_t)id);
    assert_non_null(stub);
    assert_int_equal(as_thunk_id(stub), id);
    return stub;
}
#define WRAP(fn) ((__typeof__(&fn))wrap((void *)(fn), #fn))

static int id_of(void *fn) {
    return as_target_get(fn, "unused", NULL, NULL, NULL);
}

/* Decoded view of one record. */
typedef struct decoded {
    as_action a;
    as_buf scratch;
} decoded;

static void decode(size_t i, decoded *d) {
    as_buf_init(&d->scratch);
    assert_int_equal(as_callrec_decode(&recs[i], sizeof recs[i], &d->a, &d->scratch), 0);
}

static void decoded_free(decoded *d) {
    as_buf_free(&d->scratch);
}

/* Asserts record i is a returned call of fn whose decoded response is resp. */
static void check_rec(size_t i, void *fn, const char *resp) {
    assert_true(i < nrecs);
    assert_int_equal(recs[i].id, id_of(fn));
    assert_int_equal(recs[i].flags, AS_CALL_RETURNED);
    decoded d;
    decode(i, &d);
    if (resp)
        assert_string_equal(d.a.response, resp);
    assert_null(d.a.error_msg);
    decoded_free(&d);
}

static int setup(void **state) {
    as_clock_init();
    reset_recs();
    return 0;
}

/* ---- functions called through the thunk -------------------------------------------- */

NOIPA int add2(int a, int b) {
    return a + b;
}

NOIPA double mix10(int a, double b, int c, double d, int e, double f, int g, double h, int i,
                   double j) {
    return a * 1.0 + b * 2 + c * 3 + d * 4 + e * 5 + f * 6 + g * 7 + h * 8 + i * 9 + j * 10;
}

/* 10 integers and 10 doubles: four integers and two doubles travel on the stack. */
NOIPA long mix20(long a0, double d0, long a1, double d1, long a2, double d2, long a3, double d3,
                 long a4, double d4, long a5, double d5, long a6, double d6, long a7, double d7,
                 long a8, double d8, long a9, double d9) {
    long s = a0 + 2 * a1 + 3 * a2 + 4 * a3 + 5 * a4 + 6 * a5 + 7 * a6 + 8 * a7 + 9 * a8 + 10 * a9;
    double t = d0 + 2 * d1 + 3 * d2 + 4 * d3 + 5 * d4 + 6 * d5 + 7 * d6 + 8 * d7 + 9 * d8 + 10 * d9;
    return s * 1000 + (long)t;
}

NOIPA double vsum(int n, ...) {
    va_list ap;
    va_start(ap, n);
    double s = 0;
    for (int i = 0; i < n; i++)
        s += va_arg(ap, double);
    va_end(ap);
    return s;
}

NOIPA int vfmt(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return n;
}

typedef struct big {
    long a, b, c, d;
} big; /* 32 bytes: returned through a hidden pointer in rdi */
typedef struct pair {
    long a, b;
} pair; /* 16 bytes of INTEGER class: rax:rdx */
typedef struct dpair {
    double x, y;
} dpair; /* 16 bytes of SSE class: xmm0:xmm1 */

NOIPA big make_big(long x, long y) {
    big r = {x, y, x + y, x * y};
    return r;
}

NOIPA pair make_pair(long x) {
    pair r = {x, -x};
    return r;
}

NOIPA dpair make_dpair(double x) {
    dpair r = {x / 2, x * 3};
    return r;
}

NOIPA double half(double x) {
    return x / 2;
}

NOIPA long double ld_scale(long double x, int k) {
    return x * k;
}

static int (*rec_ptr)(int);
NOIPA int recurse(int n) {
    return n == 0 ? 0 : 1 + rec_ptr(n - 1);
}

static jmp_buf jump_env;
NOIPA void jumper(int v) {
    longjmp(jump_env, v);
}

static void (*jumper_ptr)(int);
/* Sets a jump target inside itself, calls the jumper through the thunk, lands back here. */
NOIPA int catcher(int n) {
    if (setjmp(jump_env) == 0) {
        jumper_ptr(n);
        return -1; /* not reached */
    }
    return n * 2;
}

NOIPA int fail_enoent(int x) {
    errno = ENOENT;
    return -x;
}

static int (*add2_ptr)(int, int);
/* Calls add2 through the thunk in tail position: with -O2 usually a sibling jump whose
 * return slot is the one already swapped for this call. */
NOIPA int tail(int a) {
    return add2_ptr(a, 1);
}

/* ---- tests ------------------------------------------------------------------------- */

/* Proves int f(int,int) through the stub returns what the function returns, and each call
 * gives one record whose untyped response, name, tools_used and metadata are right. */
static void test_int_args(void **state) {
    int (*f)(int, int) = WRAP(add2);
    static const int v[][2] = {{1, 2}, {-5, 2}, {2147483647, 0}, {-2147483647 - 1, 0}, {0, 0}};
    size_t n = sizeof v / sizeof v[0];
    for (size_t i = 0; i < n; i++)
        assert_int_equal(f(v[i][0], v[i][1]), add2(v[i][0], v[i][1]));
    assert_int_equal(nrecs, n);
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "%d", add2(v[i][0], v[i][1]));
        check_rec(i, (void *)add2, want);
    }
    decoded d;
    decode(0, &d);
    assert_string_equal(d.a.action_name, "add2");
    assert_true(d.a.ended_ns >= d.a.started_ns);
    assert_non_null(d.a.conversation_id);
    cJSON *tools = cJSON_Parse(d.a.tools_used);
    assert_non_null(tools);
    assert_string_equal(cJSON_GetObjectItem(tools, "function")->valuestring, "add2");
    assert_string_equal(cJSON_GetObjectItem(tools, "library")->valuestring, "test_thunk");
    cJSON_Delete(tools);
    cJSON *meta = cJSON_Parse(d.a.metadata);
    assert_non_null(meta);
    assert_int_equal(cJSON_GetObjectItem(meta, "pid")->valuedouble, getpid());
    assert_int_equal(cJSON_GetObjectItem(meta, "tid")->valuedouble, recs[0].tid);
    double ns = cJSON_GetObjectItem(meta, "duration_ns")->valuedouble;
    assert_true(ns >= 0);
    assert_int_equal(d.a.duration_ms, (int64_t)((ns + 500000) / 1000000));
    assert_null(cJSON_GetObjectItem(meta, "hook")); /* no installer ran: via is 0 */
    cJSON_Delete(meta);
    decoded_free(&d);
    assert_int_equal(as_hook_depth(), 0);
}

/* Proves integer and double arguments beyond the registers (stack arguments) arrive
 * unchanged, bit for bit. */
static void test_many_args(void **state) {
    double (*f10)(int, double, int, double, int, double, int, double, int, double) = WRAP(mix10);
    double want = mix10(1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5);
    assert_memory_equal(&(double){f10(1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5)}, &want, sizeof want);
    __typeof__(&mix20) f20 = WRAP(mix20);
    long w20 =
        mix20(1, .5, 2, 1.5, 3, 2.5, 4, 3.5, 5, 4.5, 6, 5.5, 7, 6.5, 8, 7.5, 9, 8.5, 10, 9.5);
    assert_int_equal(
        f20(1, .5, 2, 1.5, 3, 2.5, 4, 3.5, 5, 4.5, 6, 5.5, 7, 6.5, 8, 7.5, 9, 8.5, 10, 9.5), w20);
    assert_int_equal(nrecs, 2);
    char s[32];
    snprintf(s, sizeof s, "%d", (int)w20); /* untyped: lower 32 bits */
    check_rec(1, (void *)mix20, s);
}

/* Proves varargs calls (al = vector count, doubles in xmm, a format string) pass through. */
static void test_varargs(void **state) {
    double (*vs)(int, ...) = WRAP(vsum);
    assert_true(vs(5, 1.0, 2.0, 3.25, 4.5, 5.0) == 15.75);
    assert_true(vs(10, 1., 2., 3., 4., 5., 6., 7., 8., 9., 10.) == 55.0); /* some on stack */
    int (*vf)(char *, size_t, const char *, ...) = WRAP(vfmt);
    char got[128], want[128];
    int n = vf(got, sizeof got, "%d %.3f %s %g %ld", 42, 3.14159, "xyz", -0.5, 1234567890123L);
    int m =
        snprintf(want, sizeof want, "%d %.3f %s %g %ld", 42, 3.14159, "xyz", -0.5, 1234567890123L);
    assert_int_equal(n, m);
    assert_string_equal(got, want);
    assert_int_equal(nrecs, 3);
    char resp[16];
    snprintf(resp, sizeof resp, "%d", m);
    check_rec(2, (void *)vfmt, resp);
}

/* Proves struct returns: 32 bytes through the hidden pointer, 16 bytes in rax:rdx and in
 * xmm0:xmm1 all reach the caller intact, and the record holds rax and rdx. */
static void test_struct_returns(void **state) {
    big (*fb)(long, long) = WRAP(make_big);
    big b = fb(6, 7);
    assert_int_equal(b.a, 6);
    assert_int_equal(b.b, 7);
    assert_int_equal(b.c, 13);
    assert_int_equal(b.d, 42);
    pair (*fp)(long) = WRAP(make_pair);
    pair p = fp(99);
    assert_int_equal(p.a, 99);
    assert_int_equal(p.b, -99);
    dpair (*fd)(double) = WRAP(make_dpair);
    dpair q = fd(5.0);
    assert_true(q.x == 2.5 && q.y == 15.0);
    assert_int_equal(nrecs, 3);
    assert_int_equal(recs[1].rax, 99);
    assert_int_equal((int64_t)recs[1].rdx, -99);
    double x0;
    memcpy(&x0, &recs[2].xmm0, sizeof x0);
    assert_true(x0 == 2.5);
}

/* Proves floating returns: double in xmm0 (and in the record), long double in st0. */
static void test_float_returns(void **state) {
    double (*fh)(double) = WRAP(half);
    assert_true(fh(7.0) == 3.5);
    double x0;
    memcpy(&x0, &recs[0].xmm0, sizeof x0);
    assert_true(x0 == 3.5);
    long double (*fl)(long double, int) = WRAP(ld_scale);
    long double want = ld_scale(1.25L, 3);
    assert_true(fl(1.25L, 3) == want);
    assert_true(fl(1e4000L, 2) == 2e4000L); /* only representable in the x87 format */
    assert_int_equal(nrecs, 3);
}

/* Proves recursion through the thunk: 101 nested calls, one record each, innermost
 * first, with the right responses, and the shadow stack empty afterwards. */
static void test_recursion(void **state) {
    rec_ptr = WRAP(recurse);
    assert_int_equal(rec_ptr(100), 100);
    assert_int_equal(nrecs, 101);
    for (size_t i = 0; i < 101; i++) {
        char s[16];
        snprintf(s, sizeof s, "%zu", i);
        check_rec(i, (void *)recurse, s);
    }
    assert_int_equal(as_hook_depth(), 0);
}

/* Proves calls nested deeper than AS_SHADOW_MAX still run right, pass through untracked
 * and are counted. */
static void test_depth_limit(void **state) {
    rec_ptr = WRAP(recurse);
    uint64_t before = as_hook_untracked();
    assert_int_equal(rec_ptr(AS_SHADOW_MAX + 88), AS_SHADOW_MAX + 88);
    assert_int_equal(nrecs, AS_SHADOW_MAX);
    assert_int_equal(as_hook_untracked() - before, 89);
    assert_int_equal(as_hook_depth(), 0);
}

/* Proves longjmp out of a wrapped function: the frame is reported not returned (at the
 * next tracked call), with the decoder's message and no response, and later calls are
 * tracked right. */
static void test_longjmp(void **state) {
    void (*j)(int) = WRAP(jumper);
    int (*f)(int, int) = WRAP(add2);
    volatile int landed = 0;
    if (setjmp(jump_env) == 0)
        j(1);
    else
        landed = 1;
    assert_int_equal(landed, 1);
    assert_int_equal(f(2, 3), 5);
    assert_int_equal(as_hook_depth(), 0);
    assert_int_equal(nrecs, 2);
    assert_int_equal(recs[0].id, id_of((void *)jumper));
    assert_int_equal(recs[0].flags, AS_CALL_NOT_RETURNED);
    decoded d;
    decode(0, &d);
    assert_null(d.a.response);
    assert_string_equal(d.a.error_msg, "did not return (left by longjmp or an exception)");
    decoded_free(&d);
    check_rec(1, (void *)add2, "5");
}

/* Proves a longjmp to a wrapped caller: the inner frame is dropped when the outer call
 * returns (reported first, not returned), then the outer call with its response. */
static void test_longjmp_nested(void **state) {
    jumper_ptr = WRAP(jumper);
    int (*c)(int) = WRAP(catcher);
    assert_int_equal(c(21), 42);
    assert_int_equal(as_hook_depth(), 0);
    assert_int_equal(nrecs, 2);
    assert_int_equal(recs[0].id, id_of((void *)jumper));
    assert_int_equal(recs[0].flags, AS_CALL_NOT_RETURNED);
    check_rec(1, (void *)catcher, "42");
}

/* Proves errno is never changed by the interposer for functions with no error rule (these
 * have none): the callee sees the caller's value at its entry (a function may read it:
 * PyErr_SetFromErrno, perror; clearing it made python3 abort at start with "OSError: [Errno 0]"
 * under a '*' glob), what the callee sets reaches the caller, a callee that sets none leaves the
 * caller's value; the record carries errno at entry and at return. */
static int seen_errno;
__attribute__((noinline)) static int read_errno(int x) {
    seen_errno = errno;
    return x;
}

static void test_errno(void **state) {
    int (*fe)(int) = WRAP(fail_enoent);
    int (*f)(int, int) = WRAP(add2);
    int (*re)(int) = WRAP(read_errno);
    errno = 7;
    assert_int_equal(fe(1), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(fe(1), -1); /* ENOENT again, over ENOENT */
    assert_int_equal(errno, ENOENT);
    errno = 123;
    assert_int_equal(f(1, 1), 2);
    assert_int_equal(errno, 123);
    errno = EPIPE;
    assert_int_equal(re(5), 5);
    assert_int_equal(seen_errno, EPIPE);
    assert_int_equal(errno, EPIPE);
    assert_int_equal(nrecs, 4);
    assert_int_equal(recs[0].errno_in, 7);
    assert_int_equal(recs[0].errno_out, ENOENT);
    assert_int_equal(recs[1].errno_in, ENOENT);
    assert_int_equal(recs[1].errno_out, ENOENT);
    assert_int_equal(recs[2].errno_in, 123);
    assert_int_equal(recs[2].errno_out, 123);
    assert_int_equal(recs[3].errno_in, EPIPE);
}

/* Proves a tail call from one wrapped function into another: both are recorded, inner
 * first, and control returns to the original caller. */
static void test_tail_call(void **state) {
    add2_ptr = WRAP(add2);
    int (*t)(int) = WRAP(tail);
    assert_int_equal(t(41), 42);
    assert_int_equal(nrecs, 2);
    check_rec(0, (void *)add2, "42");
    check_rec(1, (void *)tail, "42");
    assert_int_equal(as_hook_depth(), 0);
}

#define THREADS 4
#define PER_THREAD 10000

static void *thread_main(void *arg) {
    int (*f)(int, int) = (int (*)(int, int))arg;
    long bad = 0;
    for (int i = 0; i < PER_THREAD; i++)
        bad += f(i, 1) != i + 1;
    return (void *)bad;
}

/* Proves 4 threads calling the same stub concurrently: every call right, exactly
 * PER_THREAD records per thread id, each response matching its call. */
static void test_threads(void **state) {
    int (*f)(int, int) = WRAP(add2);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, (void *)f), 0);
    for (int i = 0; i < THREADS; i++) {
        void *bad;
        pthread_join(th[i], &bad);
        assert_null(bad);
    }
    assert_int_equal(nrecs, THREADS * PER_THREAD);
    int32_t tids[THREADS] = {0};
    size_t counts[THREADS] = {0};
    for (size_t i = 0; i < nrecs; i++) {
        assert_int_equal(recs[i].flags, AS_CALL_RETURNED);
        int k = 0;
        while (k < THREADS && tids[k] && tids[k] != recs[i].tid)
            k++;
        assert_true(k < THREADS);
        tids[k] = recs[i].tid;
        counts[k]++;
        assert_true(recs[i].rax >= 1 && recs[i].rax <= PER_THREAD);
    }
    for (int k = 0; k < THREADS; k++)
        assert_int_equal(counts[k], PER_THREAD);
}

/* Proves the pass-through cases write nothing and still call the function: our own code
 * (as_in_agentsight), the master switch, and a full ring (record dropped, call right). */
static void test_passthrough(void **state) {
    int (*f)(int, int) = WRAP(add2);
    as_in_agentsight = 1;
    assert_int_equal(f(3, 4), 7);
    as_in_agentsight = 0;
    as_hook_enabled = 0;
    assert_int_equal(f(3, 5), 8);
    as_hook_enabled = 1;
    assert_int_equal(nrecs, 0);
    reserve_refuse = 1;
    as_ring *mine = as_pipe_tring;
    as_pipe_tring = NULL; /* the slow path, as for a full ring */
    assert_int_equal(f(3, 6), 9);
    as_pipe_tring = mine;
    reserve_refuse = 0;
    assert_int_equal(nrecs, 0);
    assert_int_equal(as_hook_depth(), 0);
    assert_int_equal(f(3, 7), 10);
    assert_int_equal(nrecs, 1);
}

/* Proves the assembly exit path and the C one write the same ring correctly around its
 * end: through a 4 KiB ring, 56 records per lap, most records are written by thunk.S and
 * the one that would pass the end goes to C, which pads; the ring is drained every 20
 * calls. Every call gives exactly one intact record with its own result, in order. */
static void test_small_ring_wraps(void **state) {
    int (*f)(int, int) = WRAP(add2);
    as_ring *small = as_ring_create(4096);
    assert_non_null(small);
    assert_int_equal(small->size, 4096);
    as_test_rings_add(small);
    as_ring *mine = as_pipe_tring;
    as_pipe_tring = small;
    enum { CALLS = 2000 };
    for (int i = 0; i < CALLS; i++) {
        assert_int_equal(f(i, 1), i + 1);
        if (i % 20 == 19)
            collect();
    }
    as_pipe_tring = mine;
    assert_int_equal(nrecs, CALLS);
    for (int i = 0; i < CALLS; i++) {
        assert_int_equal(recs[i].id, id_of((void *)add2));
        assert_int_equal(recs[i].flags, AS_CALL_RETURNED);
        assert_int_equal((int)recs[i].rax, i + 1);
        assert_int_equal(recs[i].ext, 0);
        assert_true(recs[i].t1 >= recs[i].t0);
    }
    assert_true(as_ring_head(small) > 8 * 4096); /* it went round several times */
    assert_int_equal(as_hook_depth(), 0);
}

static int (*sig_add2)(int, int);
static volatile sig_atomic_t sig_calls;
static void sig_calls_add2(int sig) {
    (void)sig;
    int e = errno;
    if (sig_add2(1000000, 1) == 1000001) /* a marker main's calls never return */
        sig_calls++;
    errno = e;
}

/* Proves a signal handler that makes tracked calls while the thread is inside the hot
 * path (entry, exit, ring write) corrupts nothing: a timer interrupts a loop of tracked
 * calls about every 50 us; every record read back is intact, every call of the loop has its
 * record, and the handler's calls have one each or pass through untracked (those that
 * arrive while a record is being written). */
static void test_signal_handler_calls(void **state) {
    int (*f)(int, int) = WRAP(add2);
    sig_add2 = f;
    sig_calls = 0;
    struct sigaction old;
    as_test_alarm_start(sig_calls_add2, &old);
    enum { CALLS = 200000 };                        /* fits REC_CAP with the handler's records */
    int64_t deadline = as_mono_ns() + 3000000000LL; /* bounded in time as well */
    int made = 0;
    for (int i = 0; i < CALLS && (i % 1024 || as_mono_ns() < deadline); i++, made++) {
        assert_int_equal(f(i, 1), i + 1);
        if (i % 4096 == 4095)
            collect();
    }
    as_test_alarm_stop(&old);
    size_t n = nrecs;
    size_t mains = 0, handlers = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(recs[i].id, id_of((void *)add2));
        assert_int_equal(recs[i].flags, AS_CALL_RETURNED);
        assert_true(recs[i].t1 >= recs[i].t0);
        if ((int)recs[i].rax == 1000001)
            handlers++;
        else
            assert_int_equal((int)recs[i].rax, (int)mains++ + 1); /* in order, none lost */
    }
    assert_int_equal(mains, made);
    assert_true(sig_calls > 0); /* the handler did interrupt the loop */
    assert_true(handlers <= (size_t)sig_calls);
    assert_int_equal(as_hook_depth(), 0);
    print_message("%d calls, %d from the handler, %zu of those tracked\n", made, (int)sig_calls,
                  handlers);
}

/* Proves the untyped integer rule of config/README.md on raw rax values: upper half zero
 * -> the lower 32 bits as a signed int; anything else -> rax as a signed 64-bit value. */
static void test_untyped_rule(void **state) {
    assert_int_equal(as_untyped_int(5), 5);
    assert_int_equal(as_untyped_int(0x00000000fffffffdULL), -3); /* int -3 via movl */
    assert_int_equal(as_untyped_int(0xfffffffffffffffdULL), -3); /* long -3 */
    assert_int_equal(as_untyped_int(0x0000000080000000ULL), -2147483648LL);
    assert_int_equal(as_untyped_int(0x00000000ffffffffULL), -1);
    assert_int_equal(as_untyped_int(0x0000000100000000ULL), 4294967296LL); /* a long */
    assert_int_equal(as_untyped_int(0xdeadbeef00000007ULL), (int64_t)0xdeadbeef00000007ULL);
    assert_int_equal(as_untyped_int(0xffffffff7fffffffULL), -2147483649LL);
    assert_int_equal(as_untyped_int(0x00007f00deadbeefULL), 0x7f00deadbeefLL); /* a pointer */
}

/* Builds a synthetic record for target id. */
static as_callrec synth(int id, uint64_t rax, uint32_t flags) {
    as_callrec r;
    memset(&r, 0, sizeof r);
    r.id = (uint32_t)id;
    r.flags = flags;
    r.tid = 1234;
    r.t0 = as_clock_raw();
    r.t1 = r.t0;
    r.rax = rax;
    return r;
}

static const char *decode_resp(as_callrec *r, as_buf *b, as_action *a) {
    as_buf_reset(b);
    as_rec_call_seal(r);
    assert_int_equal(as_callrec_decode(r, sizeof *r, a, b), 0);
    return a->response;
}

/* Proves the decoder: typed responses by prototype (int of each size, unsigned, bool,
 * double, void, pointer), error_if rules with strerror, capture=none, display name and
 * hook names, and refusal of short payloads and unknown ids. */
static void test_decoder(void **state) {
    static as_entry ent;
    memset(&ent, 0, sizeof ent);
    ent.has_proto = 1;
    ent.display = "Nice \"name\"";
    int id = as_target_get((void *)0x1000, "typed_fn", "typed_action", "libx.so", &ent);
    assert_true(id >= 0);
    as_targets[id].via = AS_VIA_GOT | AS_VIA_DLSYM;
    as_buf b;
    as_buf_init(&b);
    as_action a;

    ent.proto.ret.kind = AS_K_SINT;
    ent.proto.ret.size = 2;
    as_callrec r = synth(id, 0x1234ffff, AS_CALL_RETURNED);
    assert_string_equal(decode_resp(&r, &b, &a), "-1");
    assert_string_equal(a.action_name, "typed_action");
    cJSON *meta = cJSON_Parse(a.metadata);
    assert_non_null(meta);
    assert_string_equal(cJSON_GetObjectItem(meta, "hook")->valuestring, "got+dlsym");
    assert_string_equal(cJSON_GetObjectItem(meta, "display_name")->valuestring, "Nice \"name\"");
    assert_int_equal(cJSON_GetObjectItem(meta, "tid")->valuedouble, 1234);
    cJSON_Delete(meta);

    ent.proto.ret.size = 8;
    r.rax = 0x100000000ULL;
    assert_string_equal(decode_resp(&r, &b, &a), "4294967296");
    ent.proto.ret.kind = AS_K_UINT;
    ent.proto.ret.size = 4;
    r.rax = 0xffffffffffffffffULL;
    assert_string_equal(decode_resp(&r, &b, &a), "4294967295");
    ent.proto.ret.kind = AS_K_BOOL;
    ent.proto.ret.size = 1;
    r.rax = 0x100; /* only al counts */
    assert_string_equal(decode_resp(&r, &b, &a), "false");
    ent.proto.ret.kind = AS_K_FLOAT;
    ent.proto.ret.size = 8;
    double dv = 2.5;
    memcpy(&r.xmm0, &dv, sizeof dv);
    assert_string_equal(decode_resp(&r, &b, &a), "2.5");
    ent.proto.ret.kind = AS_K_VOID;
    ent.proto.ret.size = 0;
    assert_null(decode_resp(&r, &b, &a));
    ent.proto.ret.kind = AS_K_PTR;
    ent.proto.ret.size = 8;
    r.rax = 0x7f00deadbeefULL;
    assert_string_equal(decode_resp(&r, &b, &a), "0x7f00deadbeef");

    /* error_if=negative with errno changed during the call */
    ent.proto.ret.kind = AS_K_SINT;
    ent.proto.ret.size = 4;
    ent.error_if = AS_ERRIF_NEGATIVE;
    r.rax = 0xffffffff;
    r.errno_in = 0;
    r.errno_out = ENOENT;
    assert_string_equal(decode_resp(&r, &b, &a), "-1");
    assert_string_equal(a.error_msg, "returned -1: No such file or directory");
    r.rax = 3;
    decode_resp(&r, &b, &a);
    assert_null(a.error_msg);
    /* error_if=null on a pointer, errno unchanged */
    ent.proto.ret.kind = AS_K_PTR;
    ent.proto.ret.size = 8;
    ent.error_if = AS_ERRIF_NULL;
    r.rax = 0;
    r.errno_out = 0;
    assert_null(decode_resp(&r, &b, &a));
    assert_string_equal(a.error_msg, "returned NULL");
    /* error_if=errno */
    ent.proto.ret.kind = AS_K_SINT;
    ent.error_if = AS_ERRIF_ERRNO;
    r.errno_out = EACCES;
    decode_resp(&r, &b, &a);
    assert_string_equal(a.error_msg, "returned 0: Permission denied");
    /* capture=none hides the response, keeps the error rule */
    ent.capture_none = 1;
    assert_null(decode_resp(&r, &b, &a));
    assert_non_null(a.error_msg);
    ent.capture_none = 0;
    /* not returned: no response, the fixed message, whatever the rule says */
    r.flags = AS_CALL_NOT_RETURNED;
    assert_null(decode_resp(&r, &b, &a));
    assert_string_equal(a.error_msg, "did not return (left by longjmp or an exception)");

    /* bad payloads */
    r.flags = AS_CALL_RETURNED;
    assert_int_equal(as_callrec_decode(&r, sizeof r - 1, &a, &b), -1);
    assert_int_equal(as_callrec_decode(NULL, sizeof r, &a, &b), -1);
    r.id = AS_MAX_TARGETS + 5;
    assert_int_equal(as_callrec_decode(&r, sizeof r, &a, &b), AS_REC_DAMAGED); /* not sealed */
    as_rec_call_seal(&r);
    assert_int_equal(as_callrec_decode(&r, sizeof r, &a, &b), -1); /* an unknown id */
    as_buf_free(&b);
}

/* Proves the target table: one id per original, NULL refused, stub <-> id mapping exact,
 * foreign and misaligned addresses refused, and a full table answers -1 (run last: it
 * fills the table). */
static void test_target_table(void **state) {
    int a = as_target_get((void *)add2, "add2", NULL, "x", NULL);
    assert_true(a >= 0);
    assert_int_equal(as_target_get((void *)add2, "other", NULL, "y", NULL), a);
    assert_int_equal(as_target_get(NULL, "x", NULL, NULL, NULL), -1);
    assert_string_equal(as_targets[a].action_name, "add2");
    char *stub = as_thunk_addr((uint32_t)a);
    assert_int_equal(as_thunk_id(stub), a);
    assert_int_equal(as_thunk_id(stub + 1), -1);
    assert_int_equal(as_thunk_id((void *)add2), -1);
    assert_int_equal(as_thunk_id(as_thunk_addr(AS_MAX_TARGETS - 1)), AS_MAX_TARGETS - 1);
    assert_null(as_thunk_addr(AS_MAX_TARGETS));
    assert_int_equal(as_thunk_id(as_thunk_stubs_end), -1);
    for (uintptr_t i = as_ntargets; i < AS_MAX_TARGETS; i++)
        assert_int_equal(as_target_get((void *)(0x100000 + i), "fill", NULL, NULL, NULL), i);
    assert_int_equal(as_ntargets, AS_MAX_TARGETS);
    assert_int_equal(as_target_get((void *)0x99, "more", NULL, NULL, NULL), -1);
    assert_int_equal(as_target_get((void *)add2, "add2", NULL, NULL, NULL), a);
}

/* ---- coroutines and calls that never return -------------------------------------- */

static ucontext_t co_main, co_a, co_b;
static char co_stack_a[65536], co_stack_b[65536];
static int co_ret_a, co_ret_b;

NOIPA int call_cb(void (*cb)(void)) {
    cb();
    return 7;
}
static int (*call_cb_ptr)(void (*)(void));

static void co_park_a(void) {
    swapcontext(&co_a, &co_b);
}
static void co_park_b(void) {
    swapcontext(&co_b, &co_a);
}
static void co_run_a(void) {
    co_ret_a = call_cb_ptr(co_park_a);
    swapcontext(&co_a, &co_b);
}
static void co_run_b(void) {
    co_ret_b = call_cb_ptr(co_park_b);
    swapcontext(&co_b, &co_main);
}

/* Proves two coroutines parked inside tracked calls on one thread, the first returning
 * while the second is still parked: both return where they must (this aborted when the
 * first return dropped the second's frame), both are recorded as returned, and the shadow
 * stack is empty afterwards. */
static void test_coroutines(void **state) {
    call_cb_ptr = WRAP(call_cb);
    getcontext(&co_a);
    co_a.uc_stack.ss_sp = co_stack_a;
    co_a.uc_stack.ss_size = sizeof co_stack_a;
    co_a.uc_link = &co_main;
    makecontext(&co_a, co_run_a, 0);
    getcontext(&co_b);
    co_b.uc_stack.ss_sp = co_stack_b;
    co_b.uc_stack.ss_size = sizeof co_stack_b;
    co_b.uc_link = &co_main;
    makecontext(&co_b, co_run_b, 0);
    swapcontext(&co_main, &co_a);
    assert_int_equal(co_ret_a, 7);
    assert_int_equal(co_ret_b, 7);
    assert_int_equal(as_hook_depth(), 0);
    assert_int_equal(nrecs, 2);
    check_rec(0, (void *)call_cb, "7");
    check_rec(1, (void *)call_cb, "7");
}

static int live_reported;
NOIPA int report_inside(int x) {
    live_reported = as_hook_report_live();
    return x + 1;
}

/* Proves as_hook_report_live (called at exit and before exec) records each call in flight
 * once as not returned, and a call that then returns after all writes no second record. */
static void test_report_live(void **state) {
    int (*f)(int) = WRAP(report_inside);
    assert_int_equal(f(1), 2);
    assert_int_equal(live_reported, 1);
    assert_int_equal(as_hook_depth(), 0);
    assert_int_equal(nrecs, 1);
    assert_int_equal(recs[0].flags, AS_CALL_NOT_RETURNED | AS_CALL_ENDED);
    decoded d;
    decode(0, &d);
    assert_string_equal(d.a.error_msg,
                        "did not return (the process exited or called exec inside it)");
    decoded_free(&d);
    assert_int_equal(as_hook_report_live(), 0);
}

static void *small_main(void *arg) {
    int (*f)(int, int) = (int (*)(int, int))arg;
    return (void *)(long)f(20, 22);
}

/* Proves a thread with a PTHREAD_STACK_MIN stack can be created with the thunk linked in
 * (its static TLS once held the whole shadow stack) and its tracked call is recorded; the
 * shadow stack it mapped is released at its exit. */
static void test_small_stack_thread(void **state) {
    int (*f)(int, int) = WRAP(add2);
    pthread_attr_t at;
    pthread_attr_init(&at);
    assert_int_equal(pthread_attr_setstacksize(&at, PTHREAD_STACK_MIN), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, &at, small_main, (void *)f), 0);
    void *r;
    pthread_join(t, &r);
    pthread_attr_destroy(&at);
    assert_int_equal((long)r, 42);
    assert_int_equal(nrecs, 1);
    check_rec(0, (void *)add2, "42");
}

/* ---- the full-preservation path (entry-patched targets) ---------------------------- */

/* Every register but rsp: g[] in the order rax rbx rcx rdx rsi rdi rbp r8..r15, then
 * xmm0-15. reg_probe stores what it arrives with into probe_in, then sets every
 * caller-saved register to probe_pat and returns; reg_call loads call_before into every
 * register, calls call_fn and stores every register into call_after. */
typedef struct regset {
    uint64_t g[16];
    uint64_t x[16][2];
} regset;

__attribute__((used)) regset probe_in, probe_pat, call_before, call_after;
__attribute__((used)) void *call_fn;
void reg_probe(void);
void reg_call(void);

/* clang-format off */
__asm__(
    ".text\n"
    ".globl reg_probe\n.type reg_probe,@function\nreg_probe:\n"
    ".irp r,rax,rbx,rcx,rdx,rsi,rdi,rbp,r8,r9,r10,r11,r12,r13,r14,r15\n"
    "movq %\\r, probe_in+8*.Li_\\r(%rip)\n.endr\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "movups %xmm\\i, probe_in+128+16*\\i(%rip)\n.endr\n"
    ".irp r,rax,rcx,rdx,rsi,rdi,r8,r9,r10,r11\n"
    "movq probe_pat+8*.Li_\\r(%rip), %\\r\n.endr\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "movups probe_pat+128+16*\\i(%rip), %xmm\\i\n.endr\n"
    "ret\n.size reg_probe, .-reg_probe\n"
    ".globl reg_call\n.type reg_call,@function\nreg_call:\n"
    "pushq %rbx\npushq %rbp\npushq %r12\npushq %r13\npushq %r14\npushq %r15\nsubq $8, %rsp\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "movups call_before+128+16*\\i(%rip), %xmm\\i\n.endr\n"
    ".irp r,rax,rbx,rcx,rdx,rsi,rdi,rbp,r8,r9,r10,r11,r12,r13,r14,r15\n"
    "movq call_before+8*.Li_\\r(%rip), %\\r\n.endr\n"
    "call *call_fn(%rip)\n"
    ".irp r,rax,rbx,rcx,rdx,rsi,rdi,rbp,r8,r9,r10,r11,r12,r13,r14,r15\n"
    "movq %\\r, call_after+8*.Li_\\r(%rip)\n.endr\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "movups %xmm\\i, call_after+128+16*\\i(%rip)\n.endr\n"
    "addq $8, %rsp\npopq %r15\npopq %r14\npopq %r13\npopq %r12\npopq %rbp\npopq %rbx\nret\n"
    ".size reg_call, .-reg_call\n"
    ".set .Li_rax,0\n.set .Li_rbx,1\n.set .Li_rcx,2\n.set .Li_rdx,3\n.set .Li_rsi,4\n"
    ".set .Li_rdi,5\n.set .Li_rbp,6\n.set .Li_r8,7\n.set .Li_r9,8\n.set .Li_r10,9\n"
    ".set .Li_r11,10\n.set .Li_r12,11\n.set .Li_r13,12\n.set .Li_r14,13\n.set .Li_r15,14\n");
/* clang-format on */

enum { G_RAX, G_RBX, G_RCX, G_RDX, G_RSI, G_RDI, G_RBP, G_R8, G_R9, G_R10, G_R11 };

static int callee_saved(int i) {
    return i == G_RBX || i == G_RBP || i >= G_R11 + 1;
}

/* Calls reg_probe through stub with distinct values in every register and checks both
 * sides: the original saw every register the caller set (rbp only when untracked: a
 * tracked call runs with rbp = its shadow frame), and the caller got back exactly what
 * the original left (callee-saved ones as it set them). */
static void check_full_preservation(void *stub, int tracked) {
    for (int i = 0; i < 15; i++) {
        call_before.g[i] = 0x1000000000000000ull * (uint64_t)(i + 1) + 0x1234u + (uint64_t)i;
        probe_pat.g[i] = 0xa0a0000000000000ull + (uint64_t)i * 0x10001u;
    }
    for (int i = 0; i < 16; i++) {
        call_before.x[i][0] = 0x5151000000000000ull + (uint64_t)i;
        call_before.x[i][1] = 0x6262000000000000ull + (uint64_t)i;
        probe_pat.x[i][0] = 0x7373000000000000ull + (uint64_t)i;
        probe_pat.x[i][1] = 0x8484000000000000ull + (uint64_t)i;
    }
    memset(&probe_in, 0, sizeof probe_in);
    memset(&call_after, 0, sizeof call_after);
    call_fn = stub;
    reg_call();
    for (int i = 0; i < 15; i++) {
        if (i == G_RBP && tracked)
            continue;
        if (probe_in.g[i] != call_before.g[i])
            fail_msg("entry: gpr %d changed: %llx != %llx", i, (unsigned long long)probe_in.g[i],
                     (unsigned long long)call_before.g[i]);
        uint64_t want = callee_saved(i) ? call_before.g[i] : probe_pat.g[i];
        if (call_after.g[i] != want)
            fail_msg("exit: gpr %d changed: %llx != %llx", i, (unsigned long long)call_after.g[i],
                     (unsigned long long)want);
    }
    assert_memory_equal(probe_in.x, call_before.x, sizeof probe_in.x);
    assert_memory_equal(call_after.x, probe_pat.x, sizeof call_after.x);
}

/* Calls of the thunk's C entry of full stubs and of its C exit on this thread (their
 * assembly takes the common untyped case). */
static __thread uint64_t c_full_entries, c_exits;
as_enter_ret __real_as_hook_enter_full(uint32_t id, as_regs *regs, void **slot);
as_enter_ret __wrap_as_hook_enter_full(uint32_t id, as_regs *regs, void **slot);
as_enter_ret __wrap_as_hook_enter_full(uint32_t id, as_regs *regs, void **slot) {
    c_full_entries++;
    return __real_as_hook_enter_full(id, regs, slot);
}
as_exit_ret __real_as_hook_exit(as_retregs *regs, char *rsp_at_landing);
as_exit_ret __wrap_as_hook_exit(as_retregs *regs, char *rsp_at_landing);
as_exit_ret __wrap_as_hook_exit(as_retregs *regs, char *rsp_at_landing) {
    c_exits++;
    return __real_as_hook_exit(regs, rsp_at_landing);
}

/* Proves a call that finds its ring full (queue = drop) is counted by the assembly exit
 * into its function's summary exactly as as_ring_sum_add would: with a 4 KiB ring that is
 * never read, every call past the first ~56 records is summarized, nearly all without
 * the C exit; calls + records = calls made, every call in exactly one histogram bucket,
 * the buckets of min and max used and none outside them, total within calls x [min, max],
 * summarized counted. */
static void test_full_ring_summary(void **state) {
    int (*f)(int, int) = WRAP(add2);
    as_ring *small = as_ring_create(4096);
    assert_non_null(small);
    as_test_rings_add(small);
    as_ring *mine = as_pipe_tring;
    as_pipe_tring = small;
    enum { CALLS = 20000 };
    uint64_t c0 = c_exits;
    for (int i = 0; i < CALLS; i++)
        assert_int_equal(f(i, 1), i + 1);
    uint64_t through_c = c_exits - c0;
    as_pipe_tring = mine;
    assert_int_equal(small->sum_n, 1);
    const as_sum *s = &small->sums[0];
    assert_int_equal(s->id, (uint32_t)id_of((void *)add2) + 1);
    size_t recorded = collect();
    assert_int_equal(s->calls + recorded, CALLS);
    assert_true(s->calls > CALLS - 100);
    assert_true(through_c < 200); /* the assembly took the rest */
    assert_int_equal(atomic_load(&small->summarized), s->calls);
    assert_int_equal(s->errors, 0);
    assert_true(s->min_ns <= s->max_ns);
    assert_true(s->total_ns >= s->min_ns * s->calls && s->total_ns <= s->max_ns * s->calls);
    unsigned lo = as_sum_bucket(s->min_ns), hi = as_sum_bucket(s->max_ns);
    uint64_t in = 0;
    for (unsigned k = 0; k < AS_SUM_BUCKETS; k++) {
        if (s->hist[k])
            assert_true(k >= lo && k <= hi);
        in += s->hist[k];
    }
    assert_int_equal(in, s->calls);
    assert_true(s->hist[lo] > 0 && s->hist[hi] > 0);
    assert_int_equal(as_hook_depth(), 0);
}

/* Spins for at least ns ns (a clock_gettime loop); keeps its own call's entry timestamp
 * in spin_t0 (of spin_a or spin_b: two functions, two summary slots). */
static uint64_t spin_t0;
static void spin_for(uint64_t ns) {
    spin_t0 = as_hook_top_t0();
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; ns && i < 100000000; i++) {
        clock_gettime(CLOCK_MONOTONIC, &b);
        if ((uint64_t)((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec)) >= ns)
            break;
    }
}
NOIPA static int spin_a(uint64_t ns) {
    spin_for(ns);
    return 7;
}
NOIPA static int spin_b(uint64_t ns) {
    spin_for(ns);
    return 8;
}

/* The summary slot of target id in r (NULL when it has none). */
static as_sum *slot_of(as_ring *r, int id) {
    for (uint32_t i = 0; i < r->sum_n; i++)
        if (r->sums[i].id == (uint32_t)id + 1)
            return &r->sums[i];
    return NULL;
}

/* Makes 3000 calls of spin_a and spin_b in turn (through their full-preservation stubs
 * when full is set) into a full ring, each checked as test_full_ring_buckets says. */
static void check_buckets(int full) {
    int ida = as_target_get((void *)spin_a, "spin_a", NULL, "test_thunk", NULL);
    int idb = as_target_get((void *)spin_b, "spin_b", NULL, "test_thunk", NULL);
    assert_true(ida >= 0 && idb >= 0);
    int (*fa)(uint64_t) = (int (*)(uint64_t))(full ? as_thunk_addr_full((uint32_t)ida)
                                                   : as_thunk_addr((uint32_t)ida));
    int (*fb)(uint64_t) = (int (*)(uint64_t))(full ? as_thunk_addr_full((uint32_t)idb)
                                                   : as_thunk_addr((uint32_t)idb));
    as_ring *small = as_ring_create(4096);
    assert_non_null(small);
    as_test_rings_add(small);
    as_ring *mine = as_pipe_tring;
    as_pipe_tring = small;
    for (int i = 0; i < 100; i++) /* fills the ring; each function gets its slot */
        assert_int_equal(fa(0) + fb(0), 15);
    assert_non_null(slot_of(small, ida));
    assert_non_null(slot_of(small, idb));
    static const uint64_t pick[] = {0, 0, 0, 0, 0, 0, 40, 100, 300, 1000, 3000, 20000, 70000};
    uint32_t rnd = 12345;
    enum { CALLS = 3000 };
    int bad = 0;
    uint64_t c0 = c_exits;
    for (int i = 0; i < CALLS && !bad; i++) {
        rnd = rnd * 1103515245u + 12345u;
        /* runs of one duration, then a jump: the guess is kept, then moved */
        uint64_t ns = pick[(rnd >> 16) % (sizeof pick / sizeof pick[0])];
        int b = (i / 3) & 1;
        as_sum *s = slot_of(small, b ? idb : ida);
        as_sum before = *s;
        uint64_t head = as_ring_head(small);
        assert_int_equal(b ? fb(ns) : fa(ns), b ? 8 : 7);
        uint64_t t0 = spin_t0;
        as_sum after = *s;
        uint64_t ticks = after.t_last > t0 ? after.t_last - t0 : 0;
        uint64_t dur = (uint64_t)(((unsigned __int128)ticks * as_thunk_sum_mult) >> 32);
        unsigned k = as_sum_bucket(dur);
        bad |= as_ring_head(small) != head || after.calls != before.calls + 1 ||
               after.total_ns != before.total_ns + dur ||
               after.min_ns != (dur < before.min_ns ? dur : before.min_ns) ||
               after.max_ns != (dur > before.max_ns ? dur : before.max_ns);
        for (unsigned j = 0; j < AS_SUM_BUCKETS; j++)
            bad |= after.hist[j] != before.hist[j] + (j == k);
        if (bad)
            fprintf(stderr, "call %d: %llu ns, bucket %u, calls %llu -> %llu\n", i,
                    (unsigned long long)dur, k, (unsigned long long)before.calls,
                    (unsigned long long)after.calls);
    }
    uint64_t through_c = c_exits - c0;
    as_pipe_tring = mine;
    assert_false(bad);
    if (as_clock_use_tsc && as_thunk_crc)
        assert_true(through_c < 20); /* the assembly exit counted them */
    assert_int_equal(as_hook_depth(), 0);
}

/* Proves every call summarized into a full ring lands in exactly the histogram bucket of
 * its own duration (as_sum_bucket of (t1 - t0) at the summary's factor, t1 the summary's
 * t_last, t0 the call's entry timestamp), with calls, total, min and max moved by that
 * call alone: durations that stay in one bucket, straddle two, and jump up and down by
 * many (the assembly exit counts a call through a per-slot guess of its bucket and must
 * count it right whatever the guess), for two functions in turn (two slots). */
static void test_full_ring_buckets(void **state) {
    check_buckets(0);
}

/* Proves the same through the full-preservation stubs of entry patches, whose exit
 * counts a call into a full ring with the same assembly. */
static void test_full_ring_buckets_full_stubs(void **state) {
    check_buckets(1);
}

/* Functions whose result is their argument (all of rax), for the error rules below. */
#define RV_IDENTITY(name)                                                                          \
    NOIPA static long name(long v) {                                                               \
        return v;                                                                                  \
    }
RV_IDENTITY(rv_untyped_neg)
RV_IDENTITY(rv_untyped_zero)
RV_IDENTITY(rv_untyped_nonzero)
RV_IDENTITY(rv_int_neg)
RV_IDENTITY(rv_short_zero)
RV_IDENTITY(rv_uint_neg)
RV_IDENTITY(rv_bool_false)
RV_IDENTITY(rv_ptr_null)
/* Sets errno to v when v > 0; returns 0. */
NOIPA static long rv_errno(long v) {
    if (v > 0)
        errno = (int)v;
    return 0;
}

/* Proves a call into a full ring of a function with an error rule is counted by the
 * assembly exit as failed exactly when as_callrec_failed says so (rules null, zero,
 * false, nonzero, negative and errno; untyped, and typed int, short, unsigned, _Bool
 * and pointer results, judged on the value's own bytes of rax), and leaves errno as the
 * C exit does: what the call set, else the caller's value. */
static void test_full_ring_error_rules(void **state) {
    static const struct {
        void *fn;
        const char *name, *proto;
        int rule;
    } fns[] = {
        {(void *)rv_untyped_neg, "rv_untyped_neg", NULL, AS_ERRIF_NEGATIVE},
        {(void *)rv_untyped_zero, "rv_untyped_zero", NULL, AS_ERRIF_ZERO},
        {(void *)rv_untyped_nonzero, "rv_untyped_nonzero", NULL, AS_ERRIF_NONZERO},
        {(void *)rv_int_neg, "rv_int_neg", "int rv_int_neg(long v)", AS_ERRIF_NEGATIVE},
        {(void *)rv_short_zero, "rv_short_zero", "short rv_short_zero(long v)", AS_ERRIF_ZERO},
        {(void *)rv_uint_neg, "rv_uint_neg", "unsigned rv_uint_neg(long v)", AS_ERRIF_NEGATIVE},
        {(void *)rv_bool_false, "rv_bool_false", "_Bool rv_bool_false(long v)", AS_ERRIF_FALSE},
        {(void *)rv_ptr_null, "rv_ptr_null", "void *rv_ptr_null(long v)", AS_ERRIF_NULL},
        {(void *)rv_errno, "rv_errno", NULL, AS_ERRIF_ERRNO},
    };
    enum { N = sizeof fns / sizeof fns[0] };
    static as_entry entries[N];
    long (*call[N])(long);
    int ids[N];
    for (int i = 0; i < N; i++) {
        as_entry *e = &entries[i];
        memset(e, 0, sizeof *e);
        e->error_if = fns[i].rule;
        e->max_string = AS_MAX_STRING_DEFAULT;
        if (fns[i].proto) {
            size_t no, nl, used;
            as_cproto_err err;
            assert_int_equal(as_cproto_parse(fns[i].proto, strlen(fns[i].proto), &e->proto, &no,
                                             &nl, &used, &err),
                             0);
            e->has_proto = 1;
        }
        ids[i] = as_target_get(fns[i].fn, fns[i].name, NULL, "test_thunk", e);
        assert_true(ids[i] >= 0);
        call[i] = (long (*)(long))as_thunk_addr((uint32_t)ids[i]);
    }
    static const long vals[] = {0,           1,           -1,          0x80,         0xff,
                                0x100,       0x8000,      0xffff,      0x10000,      0x7fffffff,
                                0x80000000L, 0xffffffffL, 0xfffffffdL, 0x100000000L, -0x100000000L,
                                LONG_MAX,    LONG_MIN,    2,           0x1ff00,      -2};
    as_ring *small = as_ring_create(4096);
    assert_non_null(small);
    as_test_rings_add(small);
    as_ring *mine = as_pipe_tring;
    as_pipe_tring = small;
    for (int k = 0; k < 20; k++) /* fills the ring; each function gets its slot */
        for (int i = 0; i < N; i++)
            call[i](0);
    int bad = 0;
    uint64_t c0 = c_exits;
    for (int round = 0; round < 3; round++) {
        for (size_t v = 0; v < sizeof vals / sizeof vals[0]; v++) {
            for (int i = 0; i < N; i++) {
                as_sum *s = slot_of(small, ids[i]);
                if (!s) {
                    bad = 1;
                    continue;
                }
                uint64_t calls = s->calls, errors = s->errors;
                errno = 77;
                long r = call[i](vals[v]);
                int e_after = errno;
                int set = fns[i].fn == (void *)rv_errno && vals[v] > 0 ? (int)vals[v] : 0;
                int failed = as_callrec_failed((uint32_t)ids[i], (uint64_t)r, 0, 0, set ? set : 0);
                if (s->calls != calls + 1 || s->errors != errors + (uint64_t)failed ||
                    e_after != (set ? set : 77)) {
                    fprintf(stderr, "%s(%#lx): calls +%llu errors +%llu (want %d) errno %d\n",
                            fns[i].name, (unsigned long)vals[v],
                            (unsigned long long)(s->calls - calls),
                            (unsigned long long)(s->errors - errors), failed, e_after);
                    bad = 1;
                }
            }
        }
    }
    uint64_t through_c = c_exits - c0;
    as_pipe_tring = mine;
    assert_false(bad);
    if (as_clock_use_tsc && as_thunk_crc)
        assert_true(through_c < 20); /* the assembly exit judged them */
    assert_int_equal(as_hook_depth(), 0);
}

/* Proves: through a full stub, a tracked call (through C, then through the assembly's
 * common entry and exit) and an untracked one (hooks switched off)
 * change no register on the way in or out (what gcc -fipa-ra callers of a static function
 * rely on), and the tracked call is recorded once with the original's rax. */
static void test_full_preserves_registers(void **state) {
    int id = as_target_get((void *)reg_probe, "reg_probe", NULL, "test_thunk", NULL);
    assert_true(id >= 0);
    void *stub = as_thunk_addr_full((uint32_t)id);
    assert_non_null(stub);
    assert_int_equal(as_thunk_id(stub), -1); /* never mistaken for a GOT-slot stub */
    /* The first call may go through C (a thread's first full exit); the later ones are
     * the assembly's common paths when the TSC is used: every register kept either way. */
    for (int k = 0; k < 3; k++) {
        size_t before = nrecs;
        uint64_t e0 = c_full_entries, x0 = c_exits;
        check_full_preservation(stub, 1);
        assert_int_equal(nrecs, before + 1);
        assert_int_equal(recs[before].id, (uint32_t)id);
        assert_int_equal(recs[before].flags, AS_CALL_RETURNED);
        assert_int_equal(recs[before].rax, probe_pat.g[G_RAX]);
        assert_int_equal(as_hook_depth(), 0);
        if (k > 0 && as_clock_use_tsc) {
            assert_int_equal(c_full_entries, e0); /* the assembly entry took it */
            assert_int_equal(c_exits, x0);        /* and the assembly exit */
        }
    }
    size_t before = nrecs;
    as_hook_enabled = 0;
    check_full_preservation(stub, 0);
    as_hook_enabled = 1;
    assert_int_equal(nrecs, before); /* untracked: no record */
}

/* Proves: a call through a full stub that finds its ring full (queue = drop) and is
 * counted into its summary by the assembly exit changes no register either, and is
 * counted once, with no record and no C exit. */
static void test_full_ring_preserves_registers(void **state) {
    int id = as_target_get((void *)reg_probe, "reg_probe", NULL, "test_thunk", NULL);
    assert_true(id >= 0);
    void *stub = as_thunk_addr_full((uint32_t)id);
    as_ring *small = as_ring_create(4096);
    assert_non_null(small);
    as_test_rings_add(small);
    as_ring *mine = as_pipe_tring;
    as_pipe_tring = small;
    for (int i = 0; i < 100; i++) /* fills the ring; the function gets its slot */
        check_full_preservation(stub, 1);
    as_sum *s = slot_of(small, id);
    assert_non_null(s);
    for (int k = 0; k < 3; k++) {
        uint64_t calls = s->calls, head = as_ring_head(small), x0 = c_exits;
        check_full_preservation(stub, 1);
        assert_int_equal(s->calls, calls + 1);
        assert_int_equal(as_ring_head(small), head);
        if (as_clock_use_tsc && as_thunk_crc)
            assert_int_equal(c_exits, x0); /* the assembly exit counted it */
        assert_int_equal(as_hook_depth(), 0);
    }
    as_pipe_tring = mine;
}

/* Proves: the vector width the full path saves matches what the CPU offers, so a wider
 * register the C side could clobber (glibc's AVX/EVEX string functions) is saved. */
static void test_full_vec_mode(void **state) {
    __builtin_cpu_init();
    int want = 0;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
        want = 2;
    else if (__builtin_cpu_supports("avx"))
        want = 1;
    assert_int_equal(as_thunk_vec_mode, want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_int_args, setup),
        cmocka_unit_test_setup(test_many_args, setup),
        cmocka_unit_test_setup(test_varargs, setup),
        cmocka_unit_test_setup(test_struct_returns, setup),
        cmocka_unit_test_setup(test_float_returns, setup),
        cmocka_unit_test_setup(test_recursion, setup),
        cmocka_unit_test_setup(test_depth_limit, setup),
        cmocka_unit_test_setup(test_longjmp, setup),
        cmocka_unit_test_setup(test_longjmp_nested, setup),
        cmocka_unit_test_setup(test_errno, setup),
        cmocka_unit_test_setup(test_tail_call, setup),
        cmocka_unit_test_setup(test_threads, setup),
        cmocka_unit_test_setup(test_passthrough, setup),
        cmocka_unit_test_setup(test_small_ring_wraps, setup),
        cmocka_unit_test_setup(test_signal_handler_calls, setup),
        cmocka_unit_test_setup(test_untyped_rule, setup),
        cmocka_unit_test_setup(test_decoder, setup),
        cmocka_unit_test_setup(test_coroutines, setup),
        cmocka_unit_test_setup(test_report_live, setup),
        cmocka_unit_test_setup(test_small_stack_thread, setup),
        cmocka_unit_test_setup(test_full_preserves_registers, setup),
        cmocka_unit_test_setup(test_full_vec_mode, setup),
        cmocka_unit_test_setup(test_full_ring_summary, setup),
        cmocka_unit_test_setup(test_full_ring_buckets, setup),
        cmocka_unit_test_setup(test_full_ring_buckets_full_stubs, setup),
        cmocka_unit_test_setup(test_full_ring_preserves_registers, setup),
        cmocka_unit_test_setup(test_full_ring_error_rules, setup),
        cmocka_unit_test_setup(test_target_table, setup), /* last: fills the table */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
