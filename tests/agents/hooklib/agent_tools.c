/* agent_tools.c - libagent_tools.so: the "tools" the interposer test agents call, one per
 * calling-convention case the thunk and the installer must pass through untouched. */
#include <dlfcn.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#define TOOL __attribute__((visibility("default"), noinline))

TOOL int tool_add(int a, int b) {
    return a + b;
}

TOOL int tool_mul(int a, int b) {
    return a * b;
}

/* Eight integer and three double arguments: two integers travel on the stack. */
TOOL long tool_many(int a, double b, int c, int d, double e, int f, int g, int h, int i, double j,
                    int k) {
    return (long)a + c + d + f + g + h + i + k + (long)(b * 10 + e * 10 + j * 10);
}

/* Varargs: n pairs of (int, double); returns the sum of the ints plus the truncated sum of
 * the doubles. */
TOOL int tool_va(int n, ...) {
    va_list ap;
    va_start(ap, n);
    int si = 0;
    double sd = 0;
    for (int k = 0; k < n; k++) {
        si += va_arg(ap, int);
        sd += va_arg(ap, double);
    }
    va_end(ap);
    return si + (int)sd;
}

/* 32 bytes: returned through a hidden pointer (rdi). */
struct tool_big {
    long v[4];
};

TOOL struct tool_big tool_big_make(long x) {
    struct tool_big b = {{x, x + 1, x + 2, x + 3}};
    return b;
}

/* Recursion through a pointer the library takes from its own GOT (GLOB_DAT: the function
 * is exported, so its address is loaded from the GOT, not computed). */
TOOL int tool_recurse(int n) {
    if (n <= 0)
        return 0;
    int (*volatile self)(int) = tool_recurse;
    return self(n - 1) + 1;
}

/* Fails the Unix way: -1 with errno set. */
TOOL int tool_fail_errno(int e) {
    errno = e;
    return -1;
}

/* Never returns: longjmp back to the caller's setjmp. */
TOOL int tool_jump(jmp_buf env, int v) {
    longjmp(env, v);
}

/* Calls a function the program itself defines and exports (-rdynamic). */
extern int agent_callback(int x);

TOOL int tool_callback(int x) {
    volatile int r = agent_callback(x);
    return r + 1;
}

/* RTLD_NEXT seen from this library: no object loaded after it defines tool_add. */
TOOL int tool_next_is_null(void) {
    return dlsym(RTLD_NEXT, "tool_add") == NULL;
}
