/* test_capture.c - unit tests of typed capture (preload/hook/capture.c) and its decoding
 * (callrec.c): functions of this binary with prototypes parsed by the real prototype
 * parser are called through their thunk stubs; the records, capture items included, are
 * read back from real rings (the pipeline's slow reserve is replaced with -Wl,--wrap so
 * each thread gets a ring this file reads) and decoded with the real decoder, whose JSON
 * is parsed with cJSON and compared field by field. Also the fault-free memory readers on
 * stack, heap, literals, unmapped and PROT_NONE pages. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/jsonw.h"
#include "core/pipeline.h"
#include "core/ring.h"
#include "hook/callrec.h"
#include "hook/capture.h"
#include "hook/config.h"
#include "hook/cproto.h"
#include "hook/target.h"
#include "hook/thunk.h"
#include "test_hotpath.h"

#define NOIPA __attribute__((noinline, noipa))

/* ---- records through real rings --------------------------------------------------- */

#define blob as_test_blob
#define rec_off as_test_rec_off
#define rec_len as_test_rec_len
#define collect as_test_collect

static int setup(void **state) {
    as_clock_init();
    as_test_store_reset();
    as_capture_off = 0;
    return 0;
}

/* A decoded action with its JSON parsed. */
typedef struct got {
    as_action a;
    as_buf scratch;
    cJSON *tools;
    cJSON *params;
} got;

/* Decodes record i into g (the test fails when the decoder refuses it). */
static void decode(size_t i, got *g) {
    assert_true(i < collect());
    as_buf_init(&g->scratch);
    assert_int_equal(as_callrec_decode(blob + rec_off[i], rec_len[i], &g->a, &g->scratch), 0);
    g->tools = cJSON_Parse(g->a.tools_used);
    assert_non_null(g->tools);
    g->params = cJSON_GetObjectItem(g->tools, "parameters");
}

static void got_free(got *g) {
    cJSON_Delete(g->tools);
    as_buf_free(&g->scratch);
}

static double num(const got *g, const char *name) {
    cJSON *v = cJSON_GetObjectItem(g->params, name);
    assert_non_null(v);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static const char *str(const got *g, const char *name) {
    cJSON *v = cJSON_GetObjectItem(g->params, name);
    assert_non_null(v);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

/* Entries live as long as the targets that point at them. */
static as_entry entries[64];
static int nentries;

/* Registers fn with the prototype text and options; returns its stub. */
static void *typed(void *fn, const char *proto, int max_string, int error_if, int capture_none) {
    assert_true(nentries < 64);
    as_entry *e = &entries[nentries++];
    int id = as_test_typed_target(e, fn, NULL, proto, max_string, "test_capture");
    e->error_if = error_if; /* before any call: the capture reads them per call */
    e->capture_none = capture_none;
    as_target_set_proto(&as_targets[id], &e->proto); /* captures follows capture_none */
    return as_thunk_addr((uint32_t)id);
}
#define TYPED(fn, proto, ...) ((__typeof__(&fn))typed((void *)(fn), proto, __VA_ARGS__))

/* ---- functions called through the thunk -------------------------------------------- */

NOIPA int multiply(int a, int b) {
    return a * b;
}

static const char weather_text[] = "Temperature: 18\xc2\xb0"
                                   "C, Conditions: Sunny";
NOIPA const char *weather_lookup(const char *location, const char *units) {
    return location && units ? weather_text : NULL;
}

NOIPA long mixed(int a, double b, long c, double d, int e, float f, int g, double h, long i,
                 short j, unsigned char k, bool l) {
    return a + (long)b + c + (long)d + e + (long)f + g + (long)h + i + j + k + l;
}

NOIPA size_t text_len(const char *s) {
    return s ? strlen(s) : 0;
}

NOIPA double doubles10(double a, double b, double c, double d, double e, double f, double g,
                       double h, double i, double j) {
    return a + b + c + d + e + f + g + h + i + j;
}

typedef struct pt {
    int x, y;
} pt; /* 8 bytes, INTEGER */
typedef struct dp {
    double x, y;
} dp; /* 16 bytes, SSE SSE */
typedef struct big {
    long a, b, c, d;
} big; /* 32 bytes, MEMORY */

NOIPA long pt_sum(pt p, dp q, long z) {
    return p.x + p.y + (long)q.x + (long)q.y + z;
}

NOIPA big make_big(long x, big in) {
    big r = {x, in.a, in.b, in.c + in.d};
    return r;
}

NOIPA dp make_dp(double x) {
    dp r = {x, -x};
    return r;
}

NOIPA int fail_enoent(const char *path) {
    (void)path;
    errno = ENOENT;
    return -1;
}

NOIPA long double ld_half(long double x) {
    return x / 2;
}

/* ---- tests ------------------------------------------------------------------------- */

/* Proves the reference page's first example: multiply(12, 5) gives parameters
 * {"a":12,"b":5} (JSON numbers) and response "60". */
static void test_multiply_example(void **state) {
    int (*f)(int, int) = TYPED(multiply, "int multiply(int a, int b)", 256, 0, 0);
    assert_int_equal(f(12, 5), 60);
    assert_int_equal(collect(), 1);
    got g;
    decode(0, &g);
    assert_string_equal(cJSON_GetObjectItem(g.tools, "function")->valuestring, "multiply");
    assert_int_equal(cJSON_GetArraySize(g.params), 2);
    assert_true(num(&g, "a") == 12);
    assert_true(num(&g, "b") == 5);
    assert_string_equal(g.a.response, "60");
    assert_null(g.a.error_msg);
    got_free(&g);
}

/* Proves strings as arguments and as the return value: the text is copied (UTF-8 kept),
 * a NULL argument becomes null and a NULL return no response. */
static void test_strings(void **state) {
    const char *(*f)(const char *, const char *) =
        TYPED(weather_lookup, "const char *weather_lookup(const char *location, const char *units)",
              256, 0, 0);
    char units[16];
    strcpy(units, "metric");                 /* on the stack */
    char *loc = strdup("San Francisco, CA"); /* on the heap */
    assert_ptr_equal(f(loc, units), weather_text);
    assert_null(f(NULL, "metric"));
    free(loc);
    assert_int_equal(collect(), 2);
    got g;
    decode(0, &g);
    assert_string_equal(str(&g, "location"), "San Francisco, CA");
    assert_string_equal(str(&g, "units"), "metric");
    assert_string_equal(g.a.response, weather_text);
    got_free(&g);
    decode(1, &g);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(g.params, "location")));
    assert_string_equal(str(&g, "units"), "metric");
    assert_null(g.a.response);
    got_free(&g);
}

/* Proves more than six integer arguments and doubles mixed with integers: the stack
 * arguments (i, j, k, l) and register ones each land under their name with their value;
 * float, short, unsigned char and bool are formatted by type. */
static void test_mixed_many(void **state) {
    __typeof__(&mixed) f =
        TYPED(mixed,
              "long mixed(int a, double b, long c, double d, int e, float f, int g, double h, "
              "long i, short j, unsigned char k, bool l)",
              256, 0, 0);
    long want = mixed(-7, 2.5, 1L << 40, -0.125, 5, 1.5f, 6, 1e300, -9, -300, 200, true);
    assert_int_equal(f(-7, 2.5, 1L << 40, -0.125, 5, 1.5f, 6, 1e300, -9, -300, 200, true), want);
    got g;
    decode(0, &g);
    assert_true(num(&g, "a") == -7);
    assert_true(num(&g, "b") == 2.5);
    assert_true(num(&g, "c") == (double)(1L << 40));
    assert_true(num(&g, "d") == -0.125);
    assert_true(num(&g, "e") == 5);
    assert_true(num(&g, "f") == 1.5);
    assert_true(num(&g, "g") == 6);
    assert_true(num(&g, "h") == 1e300);
    assert_true(num(&g, "i") == -9);
    assert_true(num(&g, "j") == -300);
    assert_true(num(&g, "k") == 200);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(g.params, "l")));
    char w[32];
    snprintf(w, sizeof w, "%ld", want);
    assert_string_equal(g.a.response, w);
    got_free(&g);
}

/* Proves ten doubles: two travel on the stack after xmm0-7; the double response is the
 * shortest round-trip text. */
static void test_doubles_on_stack(void **state) {
    __typeof__(&doubles10) f = TYPED(doubles10,
                                     "double doubles10(double a, double b, double c, double d, "
                                     "double e, double f, double g, double h, double i, double j)",
                                     256, 0, 0);
    assert_true(f(.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 0.1, -0.25) ==
                doubles10(.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 0.1, -0.25));
    got g;
    decode(0, &g);
    assert_true(num(&g, "a") == .5);
    assert_true(num(&g, "h") == 4);
    assert_true(num(&g, "i") == 0.1);
    assert_true(num(&g, "j") == -0.25);
    char w[40];
    as_fmt_double(w, sizeof w, doubles10(.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 0.1, -0.25));
    assert_string_equal(g.a.response, w);
    got_free(&g);
}

/* Proves unreadable pointers never fault and are reported: 0x10, a page that was
 * unmapped, a PROT_NONE page; a string running into a PROT_NONE page is cut there; a
 * string longer than max_string is cut at max_string. */
static void test_unreadable(void **state) {
    size_t (*f)(const char *) = TYPED(text_len, "size_t text_len(const char *s)", 8, 0, 0);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    memset(m, 'x', 3 * pg);
    memcpy(m + pg - 4, "abcd", 4); /* runs into the PROT_NONE page below */
    assert_int_equal(mprotect(m + pg, pg, PROT_NONE), 0);
    assert_int_equal(munmap(m + 2 * pg, pg), 0);
    char *gone = m + 2 * pg;
    char *none = m + pg;
    char *edge = m + pg - 4;
    /* text_len would fault on these itself: the readers are checked directly, the
     * through-call case is test_unreadable_through_call. */
    assert_int_equal(f("hello world, long"), 17);
    char tmp[64];
    int trunc = 0;
    assert_int_equal(as_safe_strcpy(tmp, (const char *)0x10, 8, &trunc), (size_t)-1);
    assert_int_equal(as_safe_strcpy(tmp, gone, 8, &trunc), (size_t)-1);
    assert_int_equal(as_safe_strcpy(tmp, none, 8, &trunc), (size_t)-1);
    assert_int_equal(as_safe_strcpy(tmp, edge, 8, &trunc), 4);
    assert_true(trunc);
    assert_memory_equal(tmp, "abcd", 4);
    assert_int_equal(as_safe_read(tmp, gone, 8), 0);
    assert_int_equal(as_safe_read(tmp, edge, 8), 4);
    got g;
    decode(0, &g);
    assert_string_equal(str(&g, "s"), "hello wo"); /* max_string=8 */
    assert_string_equal(g.a.response, "17");
    got_free(&g);
    munmap(m, 2 * pg);
}

static size_t (*len_ptr)(const char *);
/* A callee that never reads its argument, so bad pointers can be passed through a call. */
NOIPA size_t ignore_arg(const char *s) {
    (void)s;
    return 42;
}

/* Proves an unreadable pointer argument through a real call: (char *)0x10 and a pointer
 * into an unmapped page give "<unreadable 0x...>" and the call runs normally. */
static void test_unreadable_through_call(void **state) {
    len_ptr = TYPED(ignore_arg, "size_t ignore_arg(const char *s)", 256, 0, 0);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(munmap(m, pg), 0);
    assert_int_equal(len_ptr((const char *)0x10), 42);
    assert_int_equal(len_ptr(m + 100), 42);
    got g;
    decode(0, &g);
    assert_string_equal(str(&g, "s"), "<unreadable 0x10>");
    got_free(&g);
    decode(1, &g);
    char w[64];
    snprintf(w, sizeof w, "<unreadable %p>", (void *)(m + 100));
    assert_string_equal(str(&g, "s"), w);
    got_free(&g);
}

/* Proves the fast path: strings on this thread's stack, in the program's data and in the
 * brk heap are read without the system call; an mmap'ed page takes it and is right. */
static void test_fast_and_slow_paths(void **state) {
    char tmp[300];
    int trunc;
    char onstack[] = "on the stack";
    uint64_t s0 = as_capture_slow_reads();
    assert_int_equal(as_safe_strcpy(tmp, onstack, 256, &trunc), strlen(onstack));
    assert_int_equal(as_safe_strcpy(tmp, "a literal", 256, &trunc), 9);
    char *small = malloc(32);
    strcpy(small, "heap");
    assert_int_equal(as_safe_strcpy(tmp, small, 256, &trunc), 4);
    free(small);
#ifdef __SANITIZE_ADDRESS__
    s0 = as_capture_slow_reads(); /* ASan's malloc is mmap'ed, not the brk heap */
#endif
    assert_int_equal(as_capture_slow_reads(), s0);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strcpy(m, "mapped");
    assert_int_equal(as_safe_strcpy(tmp, m, 256, &trunc), 6);
    assert_false(trunc);
    assert_memory_equal(tmp, "mapped", 6);
    assert_int_equal(as_capture_slow_reads(), s0 + 1);
    /* exactly max bytes is not truncated; one more is */
    assert_int_equal(as_safe_strcpy(tmp, "12345678", 8, &trunc), 8);
    assert_false(trunc);
    assert_int_equal(as_safe_strcpy(tmp, "123456789", 8, &trunc), 8);
    assert_true(trunc);
    munmap(m, pg);
}

/* A heap string made before capture.c's constructor runs (priority constructors come
 * first): the heap already grew when capture.c learned where it starts. */
static char *early_heap;
__attribute__((constructor(101))) static void make_early_heap(void) {
    early_heap = malloc(100);
    if (early_heap)
        strcpy(early_heap, "allocated before the capture constructor");
}

/* Proves the brk heap is known from its start, not from where the break was when
 * capture.c started: a string malloc'ed before that is read without the system call. */
static void test_early_heap_is_fast(void **state) {
    assert_non_null(early_heap);
#ifdef __SANITIZE_ADDRESS__
    skip(); /* ASan's malloc is mmap'ed, not the brk heap */
#endif
    if ((uintptr_t)early_heap >= (uintptr_t)sbrk(0))
        skip(); /* this malloc did not use the brk heap */
    char tmp[128];
    int trunc;
    uint64_t s0 = as_capture_slow_reads();
    assert_int_equal(as_safe_strcpy(tmp, early_heap, 100, &trunc), strlen(early_heap));
    assert_memory_equal(tmp, early_heap, strlen(early_heap));
    assert_int_equal(as_capture_slow_reads(), s0);
}

/* Proves the word-at-a-time string copy against a plain reference, for every length
 * 0..80, source alignments 0..7 and bounds around the word size (heap and stack, fast
 * path): the length, the truncation flag and the bytes match, and nothing is written
 * past max + 1 bytes of the destination. */
static void test_strcpy_lengths(void **state) {
    static const size_t maxes[] = {1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 256};
    char *heap = malloc(96);
    char stack[96];
    assert_non_null(heap);
    for (int where = 0; where < 2; where++) {
        char *buf = where ? stack : heap;
        for (size_t align = 0; align < 8; align++) {
            for (size_t len = 0; len <= 80; len++) {
                if (align + len + 1 > 96)
                    continue;
                char *src = buf + align;
                for (size_t i = 0; i < len; i++)
                    src[i] = (char)('a' + (i * 7 + align) % 26);
                src[len] = '\0';
                for (size_t m = 0; m < sizeof maxes / sizeof maxes[0]; m++) {
                    size_t max = maxes[m];
                    char dst[300];
                    memset(dst, '#', sizeof dst);
                    int trunc = -1;
                    size_t got = as_safe_strcpy(dst, src, max, &trunc);
                    size_t want = len < max ? len : max;
                    assert_int_equal(got, want);
                    assert_int_equal(trunc, len > max);
                    assert_memory_equal(dst, src, want);
                    for (size_t k = max + 1; k < sizeof dst; k++)
                        assert_int_equal(dst[k], '#');
                }
            }
        }
    }
    free(heap);
}

/* What the coroutine of test_coroutine_stack reads, and what it got. */
static const char *co_ptr;
static size_t co_got;
static int co_trunc;
static ucontext_t co_main, co_ctx;

NOIPA size_t co_len(const char *s) {
    return strlen(s);
}

static void co_body(void) {
    char tmp[64];
    co_got = as_safe_strcpy(tmp, co_ptr, 16, &co_trunc);
}

/* Proves reads made while running on a coroutine's stack never fault: a pointer into an
 * unmapped page lying above the coroutine's stack but below the thread's own stack end
 * (inside the range "above our frame, below the stack's end") is found unreadable. */
static void test_coroutine_stack(void **state) {
    size_t (*f)(const char *) = TYPED(co_len, "size_t co_len(const char *s)", 8, 0, 0);
    assert_int_equal(f("maps the arena"), 14); /* the thread's stack bounds are known now */
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t size = 16 * pg;
    char *m = mmap(NULL, size + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(munmap(m + size, pg), 0); /* the hole right above the stack */
    char here;
    if ((uintptr_t)(m + size) > (uintptr_t)&here)
        skip(); /* the mapping landed above this stack: no hole in between to test */
    co_ptr = m + size + 100;
    co_got = 0;
    assert_int_equal(getcontext(&co_ctx), 0);
    co_ctx.uc_stack.ss_sp = m;
    co_ctx.uc_stack.ss_size = size;
    co_ctx.uc_link = &co_main;
    makecontext(&co_ctx, co_body, 0);
    assert_int_equal(swapcontext(&co_main, &co_ctx), 0);
    assert_int_equal(co_got, (size_t)-1);
    munmap(m, size);
}

/* Sets the aggregate fields the config parser cannot know (DWARF would). */
static void set_agg(as_type *t, int size, int c0, int c1) {
    t->kind = AS_K_AGG;
    t->size = (uint8_t)size;
    t->cls[0] = (uint8_t)c0;
    t->cls[1] = (uint8_t)c1;
}

/* Proves structs by value: an 8-byte INTEGER struct and a 16-byte SSE struct in
 * registers, then an integer after them; a 32-byte struct on the stack with the hidden
 * return pointer shifting the integer arguments; struct returns in xmm0:xmm1 and through
 * memory as hex bytes; a struct of unknown size skipped with a note. */
static void test_structs(void **state) {
    long (*f)(pt, dp, long) =
        TYPED(pt_sum, "long pt_sum(struct pt p, struct dp q, long z)", 256, 0, 0);
    as_proto *p = &entries[nentries - 1].proto;
    set_agg(&p->params[0], 8, AS_AGG_INTEGER, AS_AGG_NONE);
    set_agg(&p->params[1], 16, AS_AGG_SSE, AS_AGG_SSE);
    assert_int_equal(f((pt){12, 5}, (dp){1.0, 2.0}, 7), 27);

    big (*mb)(long, big) = TYPED(make_big, "struct big make_big(long x, struct big in)", 256, 0, 0);
    p = &entries[nentries - 1].proto;
    set_agg(&p->ret, 32, AS_AGG_MEMORY, AS_AGG_MEMORY);
    set_agg(&p->params[1], 32, AS_AGG_MEMORY, AS_AGG_MEMORY);
    big r = mb(9, (big){1, 2, 3, 4});
    assert_true(r.a == 9 && r.b == 1 && r.c == 2 && r.d == 7);

    dp (*md)(double) = TYPED(make_dp, "struct dp make_dp(double x)", 256, 0, 0);
    p = &entries[nentries - 1].proto;
    set_agg(&p->ret, 16, AS_AGG_SSE, AS_AGG_SSE);
    dp q = md(1.0);
    assert_true(q.x == 1.0 && q.y == -1.0);

    got g;
    decode(0, &g);
    assert_string_equal(str(&g, "p"), "0c00000005000000");
    assert_string_equal(str(&g, "q"), "000000000000f03f0000000000000040");
    assert_true(num(&g, "z") == 7);
    got_free(&g);
    decode(1, &g);
    assert_true(num(&g, "x") == 9);
    assert_string_equal(str(&g, "in"),
                        "0100000000000000020000000000000003000000000000000400000000000000");
    assert_string_equal(g.a.response,
                        "0900000000000000010000000000000002000000000000000700000000000000");
    got_free(&g);
    decode(2, &g);
    assert_string_equal(g.a.response, "000000000000f03f000000000000f0bf");
    got_free(&g);
}

/* Proves a struct of unknown size is skipped with a note, with the arguments after it,
 * while those before it are captured. */
NOIPA long after_unknown(long a, pt p, long z) {
    return a + p.x + z;
}
static void test_unknown_struct(void **state) {
    long (*f)(long, pt, long) =
        TYPED(after_unknown, "long after_unknown(long a, struct pt p, long z)", 256, 0, 0);
    assert_int_equal(f(1, (pt){2, 3}, 4), 7);
    got g;
    decode(0, &g);
    assert_true(num(&g, "a") == 1);
    assert_string_equal(str(&g, "p"), "<skipped: struct of unknown size>");
    assert_string_equal(str(&g, "z"), "<skipped: struct of unknown size>");
    assert_string_equal(g.a.response, "7");
    got_free(&g);
}

/* Proves error rules: error_if=negative with errno changed gives "returned -1: No such
 * file or directory"; error_if=null on a string return gives "returned NULL". */
static void test_error_rules(void **state) {
    int (*f)(const char *) =
        TYPED(fail_enoent, "int fail_enoent(const char *path)", 256, AS_ERRIF_NEGATIVE, 0);
    errno = 0;
    assert_int_equal(f("/nonexistent"), -1);
    assert_int_equal(errno, ENOENT);
    got g;
    decode(0, &g);
    assert_string_equal(g.a.error_msg, "returned -1: No such file or directory");
    assert_string_equal(str(&g, "path"), "/nonexistent");
    got_free(&g);
}

/* Proves capture=none on an entry and capture = off everywhere: no parameters, no
 * response, yet the name, the timing and the error rule stay. */
NOIPA int secret(const char *password) {
    (void)password;
    errno = EACCES;
    return -1;
}
NOIPA int open_int(int x) {
    return x * 2;
}
static void test_capture_off(void **state) {
    int (*f)(const char *) =
        TYPED(secret, "int secret(const char *password)", 256, AS_ERRIF_ERRNO, 1);
    errno = 0;
    assert_int_equal(f("hunter2"), -1);
    int (*o)(int) = TYPED(open_int, "int open_int(int x)", 256, 0, 0);
    as_capture_off = 1; /* set once at start in production: read by both sides */
    assert_int_equal(o(21), 42);
    assert_int_equal(collect(), 2);
    got g1;
    decode(1, &g1);
    assert_null(g1.params);
    assert_null(g1.a.response);
    assert_string_equal(g1.a.action_name, "open_int");
    got_free(&g1);
    as_capture_off = 0;
    assert_int_equal(o(4), 8);
    assert_int_equal(collect(), 3);
    got g;
    decode(0, &g);
    assert_null(g.params);
    assert_null(g.a.response);
    assert_string_equal(g.a.action_name, "secret");
    assert_string_equal(g.a.error_msg, "returned -1: Permission denied");
    assert_true(strstr(g.a.tools_used, "hunter2") == NULL);
    got_free(&g);
    decode(2, &g);
    assert_true(num(&g, "x") == 4);
    assert_string_equal(g.a.response, "8");
    got_free(&g);
}

/* Proves a long double argument (memory class, 16-byte aligned on the stack) is read. */
static void test_long_double_arg(void **state) {
    long double (*f)(long double) = TYPED(ld_half, "long double ld_half(long double x)", 256, 0, 0);
    assert_true(f(5.0L) == 2.5L);
    got g;
    decode(0, &g);
    assert_true(num(&g, "x") == 5.0);
    assert_null(g.a.response); /* st0 is not carried */
    got_free(&g);
}

/* Proves a malformed capture trailer (an item running past the end) is refused by the
 * decoder rather than read out of bounds. */
NOIPA int add_for_items(int a, int b) {
    return a + b;
}
static void test_bad_items(void **state) {
    int (*f)(int, int) = TYPED(add_for_items, "int add_for_items(int a, int b)", 256, 0, 0);
    assert_int_equal(f(2, 3), 5);
    assert_int_equal(collect(), 1);
    _Alignas(8) unsigned char buf[512];
    memcpy(buf, blob + rec_off[0], rec_len[0]);
    as_callrec r;
    memcpy(&r, buf, sizeof r);
    assert_true(r.ext > 0);
    as_cap_item h;
    memcpy(&h, buf + sizeof r, sizeof h);
    h.len = 4000;
    memcpy(buf + sizeof r, &h, sizeof h);
    as_buf b;
    as_buf_init(&b);
    as_action a;
    assert_int_equal(as_callrec_decode(buf, rec_len[0], &a, &b), AS_REC_DAMAGED); /* sum */
    as_rec_call_seal((as_callrec *)buf); /* sealed: the items themselves are refused */
    assert_int_equal(as_callrec_decode(buf, rec_len[0], &a, &b), -1);
    assert_int_equal(as_callrec_decode(buf, sizeof r + 4, &a, &b),
                     AS_REC_DAMAGED); /* ext past the end */
    as_buf_free(&b);
}

/* Captures the call described by regs for prototype text with the general path and with
 * the precomputed plan (target id `id`), and checks both wrote the same items. Returns
 * whether the plan took its fast case. */
static int plan_matches(uint32_t id, const char *text, const as_regs *regs, int max_string) {
    as_proto p;
    size_t no, nl, used;
    as_cproto_err err;
    assert_int_equal(as_cproto_parse(text, strlen(text), &p, &no, &nl, &used, &err), 0);
    void *slot[4] = {0};
    as_shadow_frame g, f;
    memset(&g, 0, sizeof g);
    memset(&f, 0, sizeof f);
    g.id = f.id = id;
    as_capture_entry(&g, &p, max_string, regs, slot);
    assert_true(g.cap_len > 0);
    unsigned char general[1024];
    assert_true(g.cap_len <= sizeof general);
    memcpy(general, as_capture_data(&g), g.cap_len);
    as_capture_release(&g);
    as_capture_entry_plan(&f, &p, max_string, regs, slot);
    assert_int_equal(f.cap_len, g.cap_len);
    assert_memory_equal(as_capture_data(&f), general, g.cap_len);
    as_capture_release(&f);
    as_cap_plan pl;
    as_capture_plan_make(&pl, &p);
    return pl.fast;
}

/* Proves: prototypes with string parameters take the plan's fast case, and it writes
 * exactly the items of the general path: strings (heap, empty, NULL, cut at max_string,
 * unreadable) between integers and doubles. */
static void test_plan_strings_match_general(void **state) {
    (void)state;
    char *heap = strdup("Paris, with a string long enough to be cut");
    void *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(none != MAP_FAILED);
    as_regs r;
    memset(&r, 0, sizeof r);
    r.gpr[0] = (uintptr_t)heap;
    r.gpr[1] = 42;
    r.gpr[2] = (uintptr_t) "";
    r.gpr[3] = 0; /* NULL */
    r.gpr[4] = (uintptr_t)none;
    double d = 2.5;
    memcpy(&r.xmm[0].lo, &d, 8);
    assert_true(plan_matches(4001,
                             "int f(const char *a, int n, const char *b, const char *c, "
                             "const char *bad, double d)",
                             &r, 256));
    assert_true(plan_matches(4002,
                             "int f(const char *a, int n, const char *b, const char *c, "
                             "const char *bad, double d)",
                             &r, 8)); /* the first string cut at 8 bytes */
    assert_true(plan_matches(4003, "int f(const char *s)", &r, 256));
    munmap(none, 4096);
    free(heap);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_multiply_example, setup),
        cmocka_unit_test_setup(test_strings, setup),
        cmocka_unit_test_setup(test_mixed_many, setup),
        cmocka_unit_test_setup(test_doubles_on_stack, setup),
        cmocka_unit_test_setup(test_unreadable, setup),
        cmocka_unit_test_setup(test_unreadable_through_call, setup),
        cmocka_unit_test_setup(test_fast_and_slow_paths, setup),
        cmocka_unit_test_setup(test_early_heap_is_fast, setup),
        cmocka_unit_test_setup(test_strcpy_lengths, setup),
        cmocka_unit_test_setup(test_coroutine_stack, setup),
        cmocka_unit_test_setup(test_structs, setup),
        cmocka_unit_test_setup(test_unknown_struct, setup),
        cmocka_unit_test_setup(test_error_rules, setup),
        cmocka_unit_test_setup(test_capture_off, setup),
        cmocka_unit_test_setup(test_long_double_arg, setup),
        cmocka_unit_test_setup(test_bad_items, setup),
        cmocka_unit_test_setup(test_plan_strings_match_general, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
