/* test_fullregs.c - unit tests of the vector state the full-preservation thunk keeps
 * (preload/hook/x86_64/thunk.S with capture.c's risk tests): every zmm/ymm register, the
 * upper halves, zmm16-31 and k0-7 are loaded with patterns, a function that touches none
 * of them is called through its full stub with the real pipeline behind it (null sink),
 * and every register must come back unchanged: on the common path (xmm0-15 saved only),
 * with a typed string argument (capture, items copied into the record), with a string
 * in memory only the system call can read, and on a thread's first calls (its ring and
 * arena are made then). Skipped on a CPU without AVX. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/clock.h"
#include "core/pipeline.h"
#include "core/settings.h"
#include "hook/callrec.h"
#include "hook/capture.h"
#include "hook/config.h"
#include "hook/cproto.h"
#include "hook/target.h"
#include "hook/thunk.h"

/* What wide_call512 / wide_call256 load before the call and store after it. */
__attribute__((used, aligned(64))) unsigned char wide_before[32][64], wide_after[32][64];
__attribute__((used)) uint64_t k_before[8], k_after[8];
__attribute__((used)) void *wide_fn;
__attribute__((used)) const char *wide_arg;
__attribute__((used)) int wide_ret;

void wide_call512(void);
void wide_call256(void);
int victim_plain(int x);
int victim_str(const char *s);

/* wide_call512: zmm0-31 and k0-7 from wide_before/k_before, rdi = wide_arg, call
 * *wide_fn, every one of them into wide_after/k_after. wide_call256: the same for
 * ymm0-15. The victims touch no vector register: victim_plain returns x + 1,
 * victim_str the first byte of s. Everything in one asm body, so the compiler cannot
 * put anything of its own between the loads, the call and the stores. */
/* clang-format off */
__asm__(
    ".text\n"
    ".globl wide_call512\n.type wide_call512,@function\nwide_call512:\n"
    "pushq %rbx\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    "vmovdqu64 wide_before+64*\\i(%rip), %zmm\\i\n.endr\n"
    ".irp i,0,1,2,3,4,5,6,7\n"
    "kmovq k_before+8*\\i(%rip), %k\\i\n.endr\n"
    "movq wide_arg(%rip), %rdi\n"
    "call *wide_fn(%rip)\n"
    "movl %eax, wide_ret(%rip)\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    "vmovdqu64 %zmm\\i, wide_after+64*\\i(%rip)\n.endr\n"
    ".irp i,0,1,2,3,4,5,6,7\n"
    "kmovq %k\\i, k_after+8*\\i(%rip)\n.endr\n"
    "vzeroupper\n"
    "popq %rbx\n"
    "ret\n"
    ".size wide_call512, .-wide_call512\n"
    ".globl wide_call256\n.type wide_call256,@function\nwide_call256:\n"
    "pushq %rbx\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "vmovdqu wide_before+64*\\i(%rip), %ymm\\i\n.endr\n"
    "movq wide_arg(%rip), %rdi\n"
    "call *wide_fn(%rip)\n"
    "movl %eax, wide_ret(%rip)\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "vmovdqu %ymm\\i, wide_after+64*\\i(%rip)\n.endr\n"
    "vzeroupper\n"
    "popq %rbx\n"
    "ret\n"
    ".size wide_call256, .-wide_call256\n"
    ".globl victim_plain\n.type victim_plain,@function\nvictim_plain:\n"
    "leal 1(%rdi), %eax\nret\n"
    ".size victim_plain, .-victim_plain\n"
    ".globl victim_str\n.type victim_str,@function\nvictim_str:\n"
    "movzbl (%rdi), %eax\nret\n"
    ".size victim_str, .-victim_str\n");
/* clang-format on */

static void *plain_stub, *str_stub;
static as_entry str_entry;

/* Fills the patterns (distinct per register and byte, none zero), calls fn(arg) through
 * the widest wide_call the thunk saves for, and returns the number of registers that
 * changed (0: all kept). */
static int call_and_compare(void *fn, const char *arg, int *ret) {
    for (int r = 0; r < 32; r++)
        for (int b = 0; b < 64; b++)
            wide_before[r][b] = (unsigned char)(0x11 + r * 7 + b * 3) | 1;
    for (int k = 0; k < 8; k++)
        k_before[k] = 0x0123456789abcdefull ^ ((uint64_t)(k + 1) * 0x1111111111111111ull);
    memset(wide_after, 0, sizeof wide_after);
    memset(k_after, 0, sizeof k_after);
    wide_fn = fn;
    wide_arg = arg;
    int nregs, width;
    if (as_thunk_vec_mode == 2) {
        wide_call512();
        nregs = 32;
        width = 64;
    } else {
        wide_call256();
        nregs = 16;
        width = 32;
    }
    *ret = wide_ret;
    int changed = 0;
    for (int r = 0; r < nregs; r++) {
        if (memcmp(wide_before[r], wide_after[r], (size_t)width) != 0) {
            print_message("register %d changed\n", r);
            changed++;
        }
    }
    for (int k = 0; as_thunk_vec_mode == 2 && k < 8; k++) {
        if (k_before[k] != k_after[k]) {
            print_message("k%d changed\n", k);
            changed++;
        }
    }
    return changed;
}

/* Actions the pipeline handed to the sink once everything committed is through. */
static uint64_t delivered(void) {
    as_pipe_flush(5000);
    return as_pipe_delivered();
}

static int setup_group(void **state) {
    setenv("AGENTSIGHT_OUTPUT", "null", 1);
    setenv("AGENTSIGHT_CRASH_SAFE", "0", 1);
    setenv("AGENTSIGHT_LOG_LEVEL", "error", 1);
    as_clock_init();
    as_settings_load(AGENTSIGHT_QUEUE_DROP);
    as_callrec_register(); /* callrec.o has no constructor run in a static link */
    if (as_pipe_start() != 0)
        return -1;
    int id = as_target_get((void *)victim_plain, "victim_plain", NULL, "test_fullregs", NULL);
    if (id < 0)
        return -1;
    plain_stub = as_thunk_addr_full((uint32_t)id);
    static const char proto[] = "int victim_str(const char *s)";
    size_t no, nl, used;
    as_cproto_err err;
    if (as_cproto_parse(proto, sizeof proto - 1, &str_entry.proto, &no, &nl, &used, &err) != 0)
        return -1;
    str_entry.has_proto = 1;
    str_entry.max_string = AS_MAX_STRING_DEFAULT;
    id = as_target_get((void *)victim_str, "victim_str", NULL, "test_fullregs", &str_entry);
    if (id < 0)
        return -1;
    str_stub = as_thunk_addr_full((uint32_t)id);
    return plain_stub && str_stub ? 0 : -1;
}

static int teardown_group(void **state) {
    as_pipe_shutdown();
    return 0;
}

/* Skips the test on a CPU whose registers are all xmm (nothing wider to keep). */
static void need_avx(void) {
    if (as_thunk_vec_mode == 0)
        skip();
}

/* Runs an untyped call, a typed call with a heap string and one with a string in an
 * mmap'ed page (read through the system call). Returns the registers changed plus the
 * wrong results, summed (0: all well), and adds the calls made to *calls. Asserts
 * nothing: it also runs on a worker thread, where a cmocka failure cannot unwind. */
static int three_calls(int *calls) {
    int bad = 0, ret = 0;
    bad += call_and_compare(plain_stub, (const char *)41, &ret);
    bad += ret != 42;
    char *heap = malloc(64);
    if (!heap)
        return bad + 1;
    memset(heap, 'q', 63);
    heap[63] = '\0';
    bad += call_and_compare(str_stub, heap, &ret);
    bad += ret != 'q';
    free(heap);
    char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return bad + 1;
    strcpy(m, "mapped text");
    bad += call_and_compare(str_stub, m, &ret);
    bad += ret != 'm';
    munmap(m, 4096);
    *calls += 3;
    return bad;
}

/* Proves: on the main thread, once its ring and arena exist, untyped and typed calls
 * through the full stub keep every vector register (all of zmm0-31 and k0-7 on an
 * AVX-512 CPU, ymm0-15 on an AVX one), and each call is tracked (an action per call). */
static void test_common_path_keeps_vectors(void **state) {
    need_avx();
    int calls = 0;
    uint64_t d0 = delivered();
    assert_int_equal(three_calls(&calls), 0); /* the first calls: ring, arena */
    assert_int_equal(three_calls(&calls), 0); /* the common path */
    assert_int_equal(delivered() - d0, (uint64_t)calls);
}

static void *thread_main(void *arg) {
    int *out = arg;
    int calls = 0;
    out[0] = three_calls(&calls); /* the thread's first calls: no ring, no arena yet */
    out[0] += three_calls(&calls);
    out[1] = calls;
    return NULL;
}

/* Proves: the first calls of a new thread, which make its ring and its capture arena
 * (library code that may use AVX/EVEX registers), keep every vector register too, and
 * are tracked. */
static void test_thread_first_call_keeps_vectors(void **state) {
    need_avx();
    uint64_t d0 = delivered();
    int out[2] = {-1, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, thread_main, out), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(out[0], 0);
    assert_int_equal(delivered() - d0, (uint64_t)out[1]);
}

/* Proves the risk tests themselves: with the ring and arena made and no capture in
 * flight, untyped and typed entries are on the common path (no wide save), an unknown id
 * is not, and the exits of a thread that captured items are not while records are copied
 * by memcpy. */
static void test_risk_rules(void **state) {
    need_avx(); /* call_and_compare uses AVX */
    int ret;
    call_and_compare(str_stub, "x", &ret); /* ring and arena exist from here on */
    int plain_id = as_target_get((void *)victim_plain, "victim_plain", NULL, "test_fullregs", NULL);
    int str_id = as_target_get((void *)victim_str, "victim_str", NULL, "test_fullregs", &str_entry);
    assert_int_equal(as_capture_vec_risk_entry((uint32_t)plain_id), 0);
    assert_int_equal(as_capture_vec_risk_entry((uint32_t)str_id), 0);
    assert_int_equal(as_capture_vec_risk_entry(AS_MAX_TARGETS), 1);
    /* this thread captured items: its exits are risky while records use memcpy */
    assert_int_equal(as_capture_vec_risk_exit(), &as_record_copy_library_free == NULL);
}

static void *risk_thread(void *arg) {
    int *out = arg;
    int ret;
    call_and_compare(plain_stub, (const char *)1, &ret); /* warm: shadow stack, ring */
    int str_id = as_target_get((void *)victim_str, "victim_str", NULL, "test_fullregs", &str_entry);
    out[0] = as_capture_vec_risk_entry((uint32_t)str_id); /* would map the arena */
    as_capture_off = 1;
    out[1] = as_capture_vec_risk_entry((uint32_t)str_id); /* capture off: no arena */
    as_capture_off = 0;
    return NULL;
}

/* Proves a typed target's first call on a thread is risky only when it would capture:
 * with capture switched off the arena is never mapped, so the call stays on the common
 * path. */
static void test_risk_first_typed_call(void **state) {
    need_avx(); /* call_and_compare uses AVX */
    int out[2] = {-1, -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, risk_thread, out), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common_path_keeps_vectors),
        cmocka_unit_test(test_thread_first_call_keeps_vectors),
        cmocka_unit_test(test_risk_rules),
        cmocka_unit_test(test_risk_first_typed_call),
    };
    return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
