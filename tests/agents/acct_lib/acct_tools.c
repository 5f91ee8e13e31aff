/* acct_tools.c - the tool library of acct_agent (tests/integration/test_accounting.py):
 * small functions whose calls the accounting tests count, one that fails with ENOENT,
 * one that calls back into its caller (which may longjmp out of it), and typed ones whose
 * actions recovery must rebuild exactly. Built as libacct_tools.so by acct.mk. */
#include <errno.h>
#include <stddef.h>

#define API __attribute__((visibility("default")))

API int acct_mul(int a, int b) {
    return a * b;
}

/* Fails like a system call: -1 with errno ENOENT, every time. */
API int acct_fail(const char *path) {
    (void)path;
    errno = ENOENT;
    return -1;
}

API int acct_cb(void (*cb)(void)) {
    cb();
    return 0;
}

API double acct_div(double a, double b) {
    return a / b;
}

static const char *const names[] = {"alpha", "beta", "gamma"};
API const char *acct_name(int k) {
    return k >= 0 ? names[k % 3] : NULL;
}

/* -1 (an error under error_if=negative) for every fifth k, else the number of rows. */
API int acct_search(const char *user, int k) {
    if (!user || k % 5 == 0)
        return -1;
    return k % 7;
}

API float acct_scale(float x) {
    return x * 1.5f;
}

API _Bool acct_even(long x) {
    return x % 2 == 0;
}

API unsigned long long acct_big(unsigned long long x) {
    return x * 3000000000ULL;
}

static int logged;
API void acct_log(const char *msg) {
    logged += msg != 0;
}
