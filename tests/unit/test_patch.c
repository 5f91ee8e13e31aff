/* test_patch.c - unit tests of entry patching (preload/hook/x86_64/patch.c, entry.c,
 * cet.c): small assembly functions of this binary with known first instructions are
 * patched to jump to C functions of the test, which call the trampoline; results, call
 * counts and refusals are checked. The thunk path writes records into an array
 * (the pipeline's slow reserve replaced with -Wl,--wrap: records go to a private ring). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/pipeline.h"
#include "core/ring.h"
#include "hook/callrec.h"
#include "hook/entry.h"
#include "hook/patch.h"
#include "hook/target.h"

/* ---- functions with known prologues ------------------------------------------------- */

__attribute__((used)) int pf_data = 40;

#define FN(name) ".globl " #name "\n.type " #name ",@function\n" #name ":\n"
#define END(name) #name "_end:\n.size " #name ", " #name "_end - " #name "\n"

__asm__(
    ".text\n"
    /* RIP-relative first instruction: pf_data + a */
    FN(pf_riprel) "movl pf_data(%rip), %eax\n addl %edi, %eax\n ret\n" END(pf_riprel)
    /* endbr64 first: 2 * (a + 1) */
    FN(pf_endbr) "endbr64\n leal 1(%rdi), %eax\n leal (%rax,%rax), %eax\n ret\n" END(pf_endbr)
    /* 3 bytes: refused */
    FN(pf_short) "xorl %eax, %eax\n ret\n nop\n" END(pf_short)
    /* a jcc in the displaced bytes: a > 0 ? 2a : -1 */
    FN(pf_jcc) "testl %edi, %edi\n jle 1f\n leal (%rdi,%rdi), %eax\n ret\n"
               "1: movl $-1, %eax\n ret\n" END(pf_jcc)
    /* a call rel32 in the displaced bytes: pf_helper(a) + 1 = a + 101 */
    FN(pf_call) "pushq %rbx\n call pf_helper\n popq %rbx\n addl $1, %eax\n ret\n" END(pf_call)
        FN(pf_helper) "leal 100(%rdi), %eax\n ret\n" END(pf_helper)
    /* a loop jumping back into the first 5 bytes: refused */
    FN(pf_back) "xorl %eax, %eax\n 1: addl $1, %eax\n cmpl %edi, %eax\n jl 1b\n ret\n" END(pf_back)
    /* jrcxz in the first bytes: refused */
    FN(pf_jrcxz) "jrcxz 1f\n movl $5, %eax\n ret\n 1: xorl %eax, %eax\n ret\n" END(pf_jrcxz)
    /* plain functions: a + 1, a + 7, a * 3 */
    FN(pf_work) "pushq %rbp\n movq %rsp, %rbp\n leal 1(%rdi), %eax\n popq %rbp\n ret\n" END(pf_work)
        FN(pf_far) "movl %edi, %eax\n addl $7, %eax\n ret\n" END(pf_far)
            FN(pf_trap) "movl %edi, %eax\n addl $9, %eax\n ret\n" END(pf_trap)
                FN(pf_ent) "pushq %rbp\n movq %rsp, %rbp\n leal (%rdi,%rdi,2), %eax\n popq %rbp\n "
                           "ret\n" END(pf_ent)
    /* read(fd, buf, n) with the syscall inside the patched bytes: xor eax, eax; syscall */
    FN(pf_rsys) "xorl %eax, %eax\n syscall\n nop\n nop\n ret\n" END(pf_rsys)
    /* read(fd, buf, n) with the syscall as the last patched instruction (+3..+5) */
    FN(pf_rsys_last) "xorl %eax, %eax\n nop\n syscall\n ret\n" END(pf_rsys_last)
    /* plain: a + 5 */
    FN(pf_plain) "pushq %rbp\n movq %rsp, %rbp\n leal 5(%rdi), %eax\n popq %rbp\n ret\n" END(
        pf_plain)
    /* calls as the last displaced instruction, to pf_retaddr (a + 100, its return address
     * kept in pf_seen_ret): rel32, through a register, through memory at rip, and through
     * the stack (refused: the relocated call moves rsp first) */
    FN(pf_call2) "pushq %rbx\n call pf_retaddr\n popq %rbx\n addl $1, %eax\n ret\n" END(pf_call2)
        FN(pf_icall_reg) "pushq %rbx\n pushq %rbp\n pushq %r12\n call *%rsi\n popq %r12\n"
                         " popq %rbp\n popq %rbx\n addl $1, %eax\n ret\n" END(pf_icall_reg)
                             FN(pf_icall_rip) "pushq %rbx\n pushq %rbp\n pushq %r12\n call "
                                              "*pf_fnptr(%rip)\n"
                                              " popq %r12\n popq %rbp\n popq %rbx\n addl $1, "
                                              "%eax\n ret\n" END(pf_icall_rip) FN(
                                                  pf_icall_stk) "pushq %rsi\n pushq %rbp\n call "
                                                                "*8(%rsp)\n popq %rbp\n popq %rsi\n"
                                                                " ret\n" END(pf_icall_stk) FN(
                                                                    pf_retaddr) "movq (%rsp), "
                                                                                "%rax\n movq %rax, "
                                                                                "pf_seen_ret(%rip)"
                                                                                "\n leal "
                                                                                "100(%rdi), %eax\n"
                                                                                " ret\n" END(
                                                                                    pf_retaddr)
    /* an indirect call followed by more patched bytes: refused */
    FN(pf_icall) "call *%rsi\n addl $1, %eax\n ret\n" END(pf_icall)
        FN(pf_ent2) "pushq %rbp\n movq %rsp, %rbp\n leal (%rdi,%rdi,2), "
                    "%eax\n popq %rbp\n ret\n" END(pf_ent2));

#define DECL(name)                                                                                 \
    int name(int);                                                                                 \
    extern char name##_end[];
DECL(pf_riprel)
DECL(pf_endbr)
DECL(pf_short)
DECL(pf_jcc)
DECL(pf_call)
DECL(pf_back)
DECL(pf_jrcxz)
DECL(pf_work)
DECL(pf_far)
DECL(pf_trap)
DECL(pf_ent)
DECL(pf_ent2)
DECL(pf_rsys)
DECL(pf_rsys_last)
DECL(pf_plain)
DECL(pf_icall)
DECL(pf_call2)
DECL(pf_icall_reg)
DECL(pf_icall_rip)
DECL(pf_icall_stk)
DECL(pf_retaddr)
__attribute__((used)) void *pf_seen_ret;
__attribute__((used)) void *pf_fnptr = (void *)pf_retaddr;
#define SIZE(name) ((size_t)(name##_end - (char *)(name)))

typedef int (*int_fn)(int);

/* Calls through a volatile pointer so the compiler cannot assume anything. */
static int call(int_fn f, int a) {
    int_fn volatile v = f;
    return v(a);
}

/* ---- destinations: count, call the original through the trampoline, add 1000 ----- */

static void *volatile cur_tramp;
static int hits;

static int dest_plus1000(int a) {
    hits++;
    return ((int_fn)cur_tramp)(a) + 1000;
}

/* Prepares and installs a patch of fn to dest_plus1000. */
static void patch_to_dest(void *fn, size_t size, as_patch *p) {
    char why[160] = "";
    int rc = as_patch_prepare(fn, size, p, why, sizeof why);
    if (rc != 0)
        fprintf(stderr, "refused: %s\n", why);
    assert_int_equal(rc, 0);
    cur_tramp = p->tramp;
    assert_int_equal(as_patch_install(p, (void *)dest_plus1000, why, sizeof why), 0);
    assert_true(p->installed);
}

/* ---- the replaced pipeline ---------------------------------------------------------- */

/* as_pipe_reserve is inline (pipeline.h): its slow path is replaced instead. The first
 * record of a thread attaches a ring of 1 MiB; collect() moves committed records into
 * recs_ (single-threaded use). */
#define REC_CAP 64
static as_callrec recs_[REC_CAP];
static int nrecs_;
static as_ring *ring;
static uint64_t cursor;

void *__wrap_as_pipe_reserve_slow(int kind, size_t len, int may_wait);

void *__wrap_as_pipe_reserve_slow(int kind, size_t len, int may_wait) {
    (void)may_wait;
    if (kind != AS_MSG_CALL || len != sizeof(as_callrec))
        return NULL;
    if (!as_pipe_tring) {
        if (!ring) {
            ring = as_ring_create(1u << 20);
            if (!ring)
                abort();
            cursor = as_ring_tail(ring);
        }
        as_pipe_tring = ring;
    }
    return as_ring_reserve(as_pipe_tring, (unsigned)kind, len);
}

/* Moves every committed record into recs_. Returns how many there are. */
static int collect(void) {
    if (!ring)
        return nrecs_;
    uint64_t head = as_ring_head(ring);
    unsigned kind;
    size_t len;
    const void *p;
    while ((p = as_ring_read(ring, &cursor, head, &kind, &len)) != NULL) {
        if (kind != AS_MSG_CALL || len < sizeof(as_callrec))
            abort();
        if (nrecs_ < REC_CAP)
            memcpy(&recs_[nrecs_++], p, sizeof(as_callrec));
    }
    as_ring_release(ring, cursor);
    return nrecs_;
}
static void reset_recs(void) {
    collect();
    nrecs_ = 0;
}
#define recs (collect(), recs_)

/* ---- tests -------------------------------------------------------------------------- */

/* Proves: a function starting with a RIP-relative load works through its trampoline
 * (the displacement was recomputed) and, patched, reaches the destination exactly once
 * per call with the original result. */
static void test_riprel_first(void **state) {
    as_patch p;
    char why[160];
    assert_int_equal(as_patch_prepare((void *)pf_riprel, SIZE(pf_riprel), &p, why, sizeof why), 0);
    assert_int_equal(call((int_fn)(void *)p.tramp, 2), 42); /* before the patch */
    pf_data = 50;
    assert_int_equal(call((int_fn)(void *)p.tramp, 2), 52); /* reads the live variable */
    pf_data = 40;
    cur_tramp = p.tramp;
    hits = 0;
    assert_int_equal(as_patch_install(&p, (void *)dest_plus1000, why, sizeof why), 0);
    assert_int_equal(call(pf_riprel, 2), 1042);
    assert_int_equal(call(pf_riprel, -40), 1000);
    assert_int_equal(hits, 2);
    assert_true(as_patch_is_trampoline(p.tramp));
    assert_false(as_patch_is_trampoline((void *)pf_riprel));
}

/* Proves: an endbr64 at the entry is kept and the jump is written after it. */
static void test_endbr_skipped(void **state) {
    as_patch p;
    hits = 0;
    patch_to_dest((void *)pf_endbr, SIZE(pf_endbr), &p);
    assert_ptr_equal(p.at, (uint8_t *)(void *)pf_endbr + 4);
    assert_int_equal(((uint8_t *)(void *)pf_endbr)[0], 0xf3); /* endbr64 still there */
    assert_int_equal(p.at[0], 0xe9);
    assert_int_equal(call(pf_endbr, 4), 1010);
    assert_int_equal(hits, 1);
}

/* Proves: a 3-byte function is refused with a reason naming it too short, untouched. */
static void test_short_refused(void **state) {
    as_patch p;
    char why[160] = "";
    uint8_t before[3];
    memcpy(before, (void *)pf_short, 3);
    assert_int_equal(as_patch_prepare((void *)pf_short, 3, &p, why, sizeof why), -1);
    assert_non_null(strstr(why, "too short"));
    assert_memory_equal(before, (void *)pf_short, 3);
    assert_int_equal(call(pf_short, 5), 0);
    /* An unknown size is refused too. */
    assert_int_equal(as_patch_prepare((void *)pf_work, 0, &p, why, sizeof why), -1);
    assert_non_null(strstr(why, "unknown size"));
}

/* Proves: a conditional branch in the displaced bytes is re-encoded: both directions
 * still go where they went. */
static void test_jcc_relocated(void **state) {
    as_patch p;
    hits = 0;
    patch_to_dest((void *)pf_jcc, SIZE(pf_jcc), &p);
    assert_int_equal(call(pf_jcc, 5), 1010);
    assert_int_equal(call(pf_jcc, -3), 999);
    assert_int_equal(call(pf_jcc, 0), 999);
    assert_int_equal(hits, 3);
}

/* Proves: a call rel32 in the displaced bytes reaches its callee from the trampoline and
 * returns into it. */
static void test_call_relocated(void **state) {
    as_patch p;
    hits = 0;
    patch_to_dest((void *)pf_call, SIZE(pf_call), &p);
    assert_int_equal(call(pf_call, 1), 1102);
    assert_int_equal(hits, 1);
}

/* Whether pf_seen_ret, the return address pf_retaddr saw, lies inside fn. */
static int returned_into(void *fn, char *end) {
    return (char *)pf_seen_ret > (char *)fn && (char *)pf_seen_ret < end;
}

/* Proves: a call displaced into the trampoline (rel32, through a register, through a
 * RIP-relative pointer) returns into the original function, right after the call, so its
 * unwind information covers the callee's caller (C++ exceptions); the results are those
 * of the function. A call through the stack pointer is refused with its reason. */
static void test_displaced_call_returns_into_function(void **state) {
    as_patch p;
    char why[160] = "";
    assert_int_equal(as_patch_prepare((void *)pf_call2, SIZE(pf_call2), &p, why, sizeof why), 0);
    pf_seen_ret = NULL;
    assert_int_equal(call((int_fn)(void *)p.tramp, 1), 102);
    assert_true(returned_into((void *)pf_call2, pf_call2_end));
    assert_int_equal(
        as_patch_prepare((void *)pf_icall_reg, SIZE(pf_icall_reg), &p, why, sizeof why), 0);
    pf_seen_ret = NULL;
    int (*volatile two)(int, void *) = (int (*)(int, void *))(void *)p.tramp;
    assert_int_equal(two(2, (void *)pf_retaddr), 103);
    assert_true(returned_into((void *)pf_icall_reg, pf_icall_reg_end));
    assert_int_equal(
        as_patch_prepare((void *)pf_icall_rip, SIZE(pf_icall_rip), &p, why, sizeof why), 0);
    pf_seen_ret = NULL;
    assert_int_equal(call((int_fn)(void *)p.tramp, 3), 104);
    assert_true(returned_into((void *)pf_icall_rip, pf_icall_rip_end));
    assert_int_equal(
        as_patch_prepare((void *)pf_icall_stk, SIZE(pf_icall_stk), &p, why, sizeof why), -1);
    assert_non_null(strstr(why, "reads the stack"));
}

/* Proves: a branch back into the displaced bytes and a jrcxz are refused with a reason,
 * and the functions are left working. */
static void test_unsafe_refused(void **state) {
    as_patch p;
    char why[160] = "";
    assert_int_equal(as_patch_prepare((void *)pf_back, SIZE(pf_back), &p, why, sizeof why), -1);
    assert_non_null(strstr(why, "back into the patched bytes"));
    assert_int_equal(call(pf_back, 4), 4);
    assert_int_equal(as_patch_prepare((void *)pf_jrcxz, SIZE(pf_jrcxz), &p, why, sizeof why), -1);
    assert_non_null(strstr(why, "jrcxz"));
}

/* Proves: a destination more than 2 GB away is reached through a jump pad near the
 * function. */
static void test_far_dest_pad(void **state) {
    /* A stub far from this binary: movabs r11, dest; jmp r11. */
    uint8_t *far = NULL;
    uintptr_t self = (uintptr_t)(void *)pf_far;
    for (uintptr_t d = 8ull << 30; d < (64ull << 30) && !far; d += 1ull << 30) {
        void *m =
            mmap((void *)((self + d) & ~(uintptr_t)4095), 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (m != MAP_FAILED)
            far = m;
    }
    assert_non_null(far);
    uint64_t d = (uint64_t)(uintptr_t)dest_plus1000;
    far[0] = 0x49;
    far[1] = 0xbb;
    memcpy(far + 2, &d, 8);
    far[10] = 0x41;
    far[11] = 0xff;
    far[12] = 0xe3;
    as_patch p;
    char why[160];
    assert_int_equal(as_patch_prepare((void *)pf_far, SIZE(pf_far), &p, why, sizeof why), 0);
    cur_tramp = p.tramp;
    hits = 0;
    assert_int_equal(as_patch_install(&p, far, why, sizeof why), 0);
    assert_ptr_not_equal(p.jump_to, far); /* went through a pad */
    assert_true(as_patch_is_trampoline(p.jump_to));
    assert_int_equal(call(pf_far, 1), 1008);
    assert_int_equal(hits, 1);
}

/* Installs handler (SA_SIGINFO plus flags) for sig, the previous action into *old. */
static void set_handler(int sig, void (*handler)(int, siginfo_t *, void *), int flags,
                        struct sigaction *old) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(sig, &sa, old), 0);
}

static int trap_seen;
static void user_trap(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)si;
    (void)uc;
    trap_seen++;
}

/* Proves: a thread that meets the int3 of a patch in progress is sent to the destination
 * (simulated by putting the int3 back by hand), and an int3 that is not ours still reaches
 * the handler the program had installed. */
static void test_trap_redirect(void **state) {
    struct sigaction old;
    set_handler(SIGTRAP, user_trap, 0, &old);
    as_patch p;
    hits = 0;
    patch_to_dest((void *)pf_trap, SIZE(pf_trap), &p); /* our handler chains to user_trap */
    uintptr_t pg = (uintptr_t)p.at & ~(uintptr_t)4095;
    assert_int_equal(mprotect((void *)pg, 8192, PROT_READ | PROT_WRITE | PROT_EXEC), 0);
    p.at[0] = 0xcc;
    assert_int_equal(call(pf_trap, 1), 1010);
    p.at[0] = 0xe9;
    mprotect((void *)pg, 8192, PROT_READ | PROT_EXEC);
    assert_int_equal(hits, 1);
    assert_int_equal(trap_seen, 0);
    __asm__ volatile("int3");
    assert_int_equal(trap_seen, 1);
    sigaction(SIGTRAP, &old, NULL);
}

/* ---- threads calling while the patch lands ---------------------------------------- */

#define NTHREADS 3
static int work_hits;
static int work_stop;
static void *volatile work_tramp;

static int work_dest(int a) {
    __atomic_fetch_add(&work_hits, 1, __ATOMIC_RELAXED);
    return ((int_fn)work_tramp)(a);
}

typedef struct worker {
    pthread_t th;
    long calls, wrong;
} worker;

static void *work_loop(void *arg) {
    worker *w = arg;
    for (long i = 0; i < 200000000L && !__atomic_load_n(&work_stop, __ATOMIC_RELAXED); i++) {
        int a = (int)(i & 0xffff);
        if (call(pf_work, a) != a + 1)
            w->wrong++;
        __atomic_store_n(&w->calls, w->calls + 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Proves: threads calling a function in a tight loop while its entry is patched all get
 * correct results throughout, and their calls reach the destination afterwards. */
static void test_threads_while_patching(void **state) {
    worker w[NTHREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&w[i].th, NULL, work_loop, &w[i]), 0);
    for (int k = 0; k < 1000; k++) { /* until every thread runs (bounded: 10 s) */
        int ready = 1;
        for (int i = 0; i < NTHREADS; i++)
            ready &= __atomic_load_n(&w[i].calls, __ATOMIC_RELAXED) > 1000;
        if (ready)
            break;
        sleep_ms(10);
    }
    as_patch p;
    char why[160];
    assert_int_equal(as_patch_prepare((void *)pf_work, SIZE(pf_work), &p, why, sizeof why), 0);
    work_tramp = p.tramp;
    assert_int_equal(as_patch_install(&p, (void *)work_dest, why, sizeof why), 0);
    for (int k = 0; k < 1000 && __atomic_load_n(&work_hits, __ATOMIC_RELAXED) < 30000; k++)
        sleep_ms(10);
    __atomic_store_n(&work_stop, 1, __ATOMIC_RELAXED);
    long calls = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(w[i].th, NULL);
        assert_int_equal(w[i].wrong, 0);
        calls += w[i].calls;
    }
    assert_true(work_hits >= 30000);
    assert_true(calls >= work_hits);
}

/* ---- a thread blocked inside the patched bytes ------------------------------------- */

typedef long (*read_fn)(int, void *, size_t);
static pid_t rsys_tid;
static long rsys_result;

/* A reader thread: calls read_fn fn (one of the pf_rsys* functions) on fd. */
typedef struct reader {
    pthread_t th;
    int fds[2];
    void *fn;
} reader;

static void *reader_main(void *arg) {
    reader *rd = arg;
    char c;
    __atomic_store_n(&rsys_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
    read_fn volatile f = (read_fn)rd->fn;
    rsys_result = f(rd->fds[0], &c, 1);
    return NULL;
}

/* Whether thread tid is blocked in read(2) (syscall 0), from /proc. */
static int blocked_in_read(pid_t tid) {
    char path[64], buf[256] = "";
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strncmp(buf, "0 ", 2) == 0;
}

/* Waits (bounded: 5 s) until the reader is blocked in read(2). Returns 1, or 0 when it
 * never was. */
static int reader_wait_blocked(void) {
    for (int k = 0; k < 500; k++) {
        pid_t tid = __atomic_load_n(&rsys_tid, __ATOMIC_ACQUIRE);
        if (tid > 0 && blocked_in_read(tid))
            return 1;
        sleep_ms(10);
    }
    return 0;
}

/* Starts a reader of an empty pipe calling fn, and waits (bounded: 5 s) until it is
 * blocked in read(2) inside fn. */
static void reader_start(reader *rd, void *fn) {
    assert_int_equal(pipe(rd->fds), 0);
    rd->fn = fn;
    rsys_tid = 0;
    rsys_result = 0;
    assert_int_equal(pthread_create(&rd->th, NULL, reader_main, rd), 0);
    assert_true(reader_wait_blocked());
}

/* Checks the reader is blocked again (its read restarted, not interrupted: on a busy
 * machine it may take a moment to be scheduled after a signal), writes the byte it waits
 * for, and checks it returned it (bounded: 5 s). */
static void reader_finish(reader *rd) {
    assert_true(reader_wait_blocked());
    assert_int_equal(rsys_result, 0); /* read has not returned yet */
    assert_int_equal(write(rd->fds[1], "x", 1), 1);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    assert_int_equal(pthread_timedjoin_np(rd->th, NULL, &dl), 0);
    assert_int_equal(rsys_result, 1);
    close(rd->fds[0]);
    close(rd->fds[1]);
}

/* Proves: a thread blocked in a syscall whose instruction lies inside the patched bytes
 * (its pc, rewound by the kernel for the restart, points there) is moved to the same
 * instruction in the trampoline while the jump is written: its read(2) is restarted, not
 * interrupted, completes with the byte written later, and the thread returns normally
 * (without the move it would resume in the middle of the jump). */
static void test_blocked_in_patched_bytes(void **state) {
    reader rd;
    reader_start(&rd, (void *)pf_rsys);
    as_patch p;
    hits = 0;
    patch_to_dest((void *)pf_rsys, SIZE(pf_rsys), &p);
    assert_int_equal(p.unanswered, 0);
    assert_int_equal(p.nbound, 2); /* syscall at +2, nop at +4 */
    reader_finish(&rd);
    assert_int_equal(hits, 0); /* the blocked call was not a new call */
}

static void on_usr1(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)si;
    (void)uc;
}

/* Proves: a thread blocked in a syscall that is the last patched instruction (its pc is
 * the end of the patched bytes) is moved too: a signal with an SA_RESTART handler arriving
 * after the patch restarts the syscall in the trampoline, not in the middle of the jump,
 * and the thread returns normally. */
static void test_blocked_in_last_instruction(void **state) {
    struct sigaction old;
    set_handler(SIGUSR1, on_usr1, SA_RESTART, &old);
    reader rd;
    reader_start(&rd, (void *)pf_rsys_last);
    as_patch p;
    hits = 0;
    patch_to_dest((void *)pf_rsys_last, SIZE(pf_rsys_last), &p);
    assert_int_equal(p.unanswered, 0);
    assert_int_equal(pthread_kill(rd.th, SIGUSR1), 0); /* the program's own signal: a restart */
    reader_finish(&rd);
    sigaction(SIGUSR1, &old, NULL);
}

static int spin_stop;
static pthread_t spin_th;
static int spin_running; /* spin_th was started and not joined yet */

/* Stops and joins the spinning thread, also when the test failed half-way (it would
 * spin on, for minutes, under the next tests). */
static int spin_teardown(void **state) {
    (void)state;
    if (spin_running) {
        __atomic_store_n(&spin_stop, 1, __ATOMIC_RELAXED);
        pthread_join(spin_th, NULL);
        spin_running = 0;
    }
    return 0;
}

static void *spin_blocking_urg(void *arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGURG);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    __atomic_store_n(&rsys_tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
    for (long i = 0; i < 20000000000L && !__atomic_load_n(&spin_stop, __ATOMIC_RELAXED); i++)
        ;
    return NULL;
}

/* Proves: a running thread that blocks the request signal is seen as such (counted in
 * unanswered at once, no request left pending in it), the patch still lands, and the
 * program's SIGURG disposition is what it was before. */
static void test_thread_blocking_request_signal(void **state) {
    struct sigaction before, after;
    sigaction(SIGURG, NULL, &before);
    rsys_tid = 0;
    spin_stop = 0;
    assert_int_equal(pthread_create(&spin_th, NULL, spin_blocking_urg, NULL), 0);
    spin_running = 1;
    for (int k = 0; k < 500 && !__atomic_load_n(&rsys_tid, __ATOMIC_ACQUIRE); k++)
        sleep_ms(10);
    sleep_ms(10);
    as_patch p;
    hits = 0;
    patch_to_dest((void *)pf_plain, SIZE(pf_plain), &p);
    assert_int_equal(p.unanswered, 1);
    /* nothing queued for it: SigPnd (this thread's pending set) has no SIGURG */
    char path[64], st[4096] = "";
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)rsys_tid);
    FILE *f = fopen(path, "re");
    assert_non_null(f);
    size_t n = fread(st, 1, sizeof st - 1, f);
    fclose(f);
    st[n] = 0;
    const char *pnd = strstr(st, "SigPnd:");
    assert_non_null(pnd);
    assert_int_equal(strtoull(pnd + 7, NULL, 16) & (1ull << (SIGURG - 1)), 0);
    assert_int_equal(call(pf_plain, 1), 1006);
    spin_teardown(NULL);
    sigaction(SIGURG, NULL, &after);
    assert_ptr_equal((void *)after.sa_handler, (void *)before.sa_handler);
    assert_int_equal(after.sa_flags & SA_SIGINFO, before.sa_flags & SA_SIGINFO);
}

/* Proves: a call that is not the last patched instruction is refused (a thread inside the
 * callee would return into the middle of the jump). */
static void test_call_not_last_refused(void **state) {
    as_patch p;
    char why[160] = "";
    assert_int_equal(as_patch_prepare((void *)pf_icall, SIZE(pf_icall), &p, why, sizeof why), -1);
    assert_non_null(strstr(why, "call"));
}

/* ---- entry.c: targets, the thunk, CET fallback ------------------------------------ */

/* Proves: as_entry_hook routes a patched function through its thunk (one record with the
 * right id and result per call), a call that also comes through the thunk stub (a GOT slot
 * pointing at it) is recorded once, not twice, and a second hook of the same function
 * returns the same target. */
static void test_entry_hook_once(void **state) {
    as_cet_force(0);
    int id = as_entry_hook((void *)pf_ent, SIZE(pf_ent), "pf_ent", "pf_ent", "test", NULL);
    assert_true(id >= 0);
    assert_int_equal(as_entry_id((void *)pf_ent), id);
    assert_int_equal(as_entry_hook((void *)pf_ent, SIZE(pf_ent), "pf_ent", "pf_ent", "test", NULL),
                     id);
    assert_true(as_patch_is_trampoline(as_targets[id].orig));
    assert_true(as_targets[id].via & AS_VIA_ENTRY);
    reset_recs();
    assert_int_equal(call(pf_ent, 7), 21);
    assert_int_equal(collect(), 1);
    assert_int_equal(recs[0].id, (uint32_t)id);
    assert_int_equal(recs[0].flags, AS_CALL_RETURNED);
    assert_int_equal((int)recs[0].rax, 21);
    int_fn stub = (int_fn)as_thunk_addr((uint32_t)id);
    assert_int_equal(call(stub, 5), 15);
    assert_int_equal(collect(), 2);
    assert_true(recs[1].t1 >= recs[1].t0);
}

/* Proves: with a shadow stack (forced), an entry-patched function records its entry only
 * (t1 = t0, not returned, the entry-only flag) through the generated stub, and still
 * returns its own result. */
static void test_entry_only_cet(void **state) {
    as_cet_force(1);
    int id = as_entry_hook((void *)pf_ent2, SIZE(pf_ent2), "pf_ent2", "pf_ent2", "test", NULL);
    as_cet_force(-1);
    assert_true(id >= 0);
    reset_recs();
    assert_int_equal(call(pf_ent2, 4), 12);
    assert_int_equal(call(pf_ent2, -1), -3);
    assert_int_equal(collect(), 2);
    assert_int_equal(recs[0].id, (uint32_t)id);
    assert_true(recs[0].flags & AS_CALL_ENTRY_ONLY);
    assert_false(recs[0].flags & AS_CALL_RETURNED);
    assert_true(recs[0].t0 == recs[0].t1);
}

/* Proves: detection answers 0 or 1 on this machine, and forcing overrides it. */
static void test_cet_detect(void **state) {
    int d = as_cet_shstk_enabled();
    assert_true(d == 0 || d == 1);
    as_cet_force(1);
    assert_int_equal(as_cet_shstk_enabled(), 1);
    as_cet_force(-1);
    assert_int_equal(as_cet_shstk_enabled(), d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_riprel_first),
        cmocka_unit_test(test_endbr_skipped),
        cmocka_unit_test(test_short_refused),
        cmocka_unit_test(test_jcc_relocated),
        cmocka_unit_test(test_call_relocated),
        cmocka_unit_test(test_displaced_call_returns_into_function),
        cmocka_unit_test(test_unsafe_refused),
        cmocka_unit_test(test_far_dest_pad),
        cmocka_unit_test(test_trap_redirect),
        cmocka_unit_test(test_threads_while_patching),
        cmocka_unit_test(test_entry_hook_once),
        cmocka_unit_test(test_entry_only_cet),
        cmocka_unit_test(test_cet_detect),
        cmocka_unit_test(test_blocked_in_patched_bytes),
        cmocka_unit_test(test_call_not_last_refused),
        cmocka_unit_test(test_blocked_in_last_instruction),
        cmocka_unit_test_teardown(test_thread_blocking_request_signal, spin_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
