/* fix_ctor.c - a library whose constructor calls dlopen (the loader's lock is held then)
 * while another thread of the fix agent loads libraries with tracked functions. */
#include <dlfcn.h>

#ifndef FIX_CTOR_DEP
#define FIX_CTOR_DEP "libfix_ctor_dep.so"
#endif

__attribute__((constructor)) static void ctor(void) {
    void *h = dlopen(FIX_CTOR_DEP, RTLD_NOW);
    if (h)
        dlclose(h);
}

int fix_ctor_func(void) {
    return 2;
}
