/* selfcall_lib.c - one exported function called from inside its own library, built four
 * ways (hookable.mk): interposable (the call goes through the library's own PLT),
 * -fno-semantic-interposition and -Bsymbolic (direct calls), and protected visibility
 * (direct calls). PREFIX names the functions, VIS their visibility. */
#ifndef VIS
#define VIS "default"
#endif
#define CAT(a, b) a##b
#define XCAT(a, b) CAT(a, b)
#define F(n) XCAT(PREFIX, n)
#define API __attribute__((visibility(VIS)))

/* Called by the program and by F(_api) inside this library. */
API __attribute__((noinline, noclone)) int F(_inner)(int x) {
    return x * 3 + 1;
}

/* Two internal calls of F(_inner). */
__attribute__((visibility("default"))) int F(_api)(int x) {
    return F(_inner)(x) + F(_inner)(x + 1);
}
