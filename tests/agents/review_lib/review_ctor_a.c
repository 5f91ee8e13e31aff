/* review_ctor_a.c - a library whose constructor calls dlopen: it runs inside the outer
 * dlopen with the loader's lock held. */
#include <dlfcn.h>

__attribute__((constructor)) static void review_ctor(void) {
    void *h = dlopen("libreview_ctor_b.so", RTLD_NOW); /* found through RUNPATH $ORIGIN */
    if (h)
        dlclose(h);
}

int review_ctor_a_tool(int x) {
    return x + 1;
}
