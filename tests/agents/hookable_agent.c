/* hookable_agent.c - a program that exercises what the interposer must never wrap, and
 * calls that bypass the GOT (issue 11): setjmp/longjmp, sigsetjmp, getcontext/setcontext,
 * makecontext/swapcontext, vfork, fork, system(); a library function with a .cold
 * fragment; an exported function of the program (-rdynamic) called by the program itself,
 * with an alias; libraries whose exported function is called inside them directly
 * (-fno-semantic-interposition, -Bsymbolic, protected) or through their own PLT; assembly
 * labels typed as functions (one inside another function, one without a size), a
 * function-typed symbol in .data and a local __restore_rt; calls of an IFUNC (strlen).
 * Every line it prints is
 * deterministic. Usage: hookable_agent [MODE...] (default: every mode). */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))

long cold_demo(int n);
int nosi_inner(int x), nosi_api(int x);
int symb_inner(int x), symb_api(int x);
int prot_inner(int x), prot_api(int x);
int interp_inner(int x), interp_api(int x);

/* Exported (-rdynamic) and called directly by this program. */
API __attribute__((noinline)) int self_export(int x) {
    return x * 5 + 2;
}

/* Another name for self_export: one function, one address. */
API int self_alias(int x) __attribute__((alias("self_export")));

/* asm_twice jumps to asm_twice_tail, a label typed as a function inside it (local, no
 * size); asm_nosize is a hidden function without a size; data_fn lies in .data;
 * __restore_rt mimics the C library's signal return trampoline (never called here). */
__asm__(".text\n"
        ".globl asm_twice\n"
        ".type asm_twice, @function\n"
        "asm_twice:\n"
        "  lea (%rdi,%rdi,1), %rax\n"
        "  nop\n  nop\n  nop\n  nop\n  nop\n  nop\n"
        "  jmp asm_twice_tail\n"
        ".type asm_twice_tail, @function\n"
        "asm_twice_tail:\n"
        "  add $1, %rax\n"
        "  ret\n"
        ".size asm_twice, .-asm_twice\n"
        ".globl asm_nosize\n"
        ".hidden asm_nosize\n"
        ".type asm_nosize, @function\n"
        "asm_nosize:\n"
        "  lea 3(%rdi), %rax\n"
        "  ret\n"
        ".type __restore_rt, @function\n"
        "__restore_rt:\n"
        "  mov $15, %rax\n"
        "  syscall\n"
        ".size __restore_rt, .-__restore_rt\n"
        ".data\n"
        ".type data_fn, @function\n"
        "data_fn:\n"
        "  .byte 0xc3\n"
        ".size data_fn, 1\n"
        ".text\n");
long asm_twice(long x);
long asm_nosize(long x);

static void mode_self(void) {
    int s = 0;
    for (int i = 0; i < 3; i++)
        s += self_export(i);
    for (int i = 0; i < 2; i++)
        s += self_alias(i);
    printf("self %d\n", s);
}

static void mode_libs(void) {
    int s[4] = {0};
    for (int i = 0; i < 4; i++) {
        s[0] += nosi_api(i) + nosi_inner(i);
        s[1] += symb_api(i) + symb_inner(i);
        s[2] += prot_api(i) + prot_inner(i);
        s[3] += interp_api(i) + interp_inner(i);
    }
    printf("libs %d %d %d %d\n", s[0], s[1], s[2], s[3]);
}

static void mode_cold(void) {
    printf("s=%ld\n", cold_demo(400));
}

static jmp_buf g_jb;
static sigjmp_buf g_sjb;

/* Leaves through longjmp when k is odd. */
static __attribute__((noinline)) void maybe_jump(int k) {
    if (k & 1)
        longjmp(g_jb, k);
}

/* Kept in memory across setjmp's second return. */
static int g_hits, g_shits, g_k;

static void mode_jmp(void) {
    for (g_k = 0; g_k < 5; g_k++) {
        int r = setjmp(g_jb);
        if (r == 0)
            maybe_jump(g_k);
        else
            g_hits += r;
    }
    for (g_k = 1; g_k <= 3; g_k++) {
        int r = sigsetjmp(g_sjb, 1);
        if (r == 0)
            siglongjmp(g_sjb, g_k * 10);
        g_shits += r;
    }
    printf("jmp %d %d\n", g_hits, g_shits);
}

static ucontext_t g_main_uc, g_co_uc;
static int g_co_steps;

static void coroutine(void) {
    for (int i = 0; i < 3; i++) {
        g_co_steps += i + 1;
        swapcontext(&g_co_uc, &g_main_uc);
    }
}

static void mode_ctx(void) {
    volatile int again = 0;
    ucontext_t uc;
    getcontext(&uc);
    if (again < 3) {
        again++;
        setcontext(&uc);
    }
    static char stack[64 * 1024];
    getcontext(&g_co_uc);
    g_co_uc.uc_stack.ss_sp = stack;
    g_co_uc.uc_stack.ss_size = sizeof stack;
    g_co_uc.uc_link = &g_main_uc;
    makecontext(&g_co_uc, coroutine, 0);
    for (int i = 0; i < 3; i++)
        swapcontext(&g_main_uc, &g_co_uc);
    printf("ctx %d %d\n", (int)again, g_co_steps);
}

static void mode_system(void) {
    fflush(stdout);
    int st = system("echo from system");
    printf("system %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static void mode_vfork(void) {
    fflush(stdout);
    pid_t p = vfork();
    if (p == 0) {
        execl("/bin/echo", "echo", "from vfork", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(p, &st, 0);
    printf("vfork %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static void mode_fork(void) {
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        printf("from fork child\n");
        fflush(stdout);
        _exit(7);
    }
    int st = 0;
    waitpid(p, &st, 0);
    printf("fork %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* strlen is an IFUNC of the C library: each call goes through the program's PLT to the
 * implementation the loader chose. */
static void mode_ifunc(void) {
    static volatile char words[][8] = {"a", "bb", "ccc", "dddd", "eeeee"};
    size_t n = 0;
    for (int i = 0; i < 5; i++)
        n += strlen((const char *)words[i]);
    printf("ifunc %zu\n", n);
}

static void mode_labels(void) {
    printf("labels %ld %ld\n", asm_twice(20), asm_nosize(4));
}

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        void (*fn)(void);
    } modes[] = {{"self", mode_self},   {"libs", mode_libs}, {"cold", mode_cold},
                 {"jmp", mode_jmp},     {"ctx", mode_ctx},   {"system", mode_system},
                 {"vfork", mode_vfork}, {"fork", mode_fork}, {"labels", mode_labels},
                 {"ifunc", mode_ifunc}};
    size_t n = sizeof modes / sizeof modes[0];
    for (size_t i = 0; i < n; i++) {
        int want = argc < 2;
        for (int a = 1; a < argc && !want; a++)
            want = strcmp(argv[a], modes[i].name) == 0;
        if (want)
            modes[i].fn();
    }
    return 0;
}
