/* agent_loader.c - libagent_loader.so: lives in its own directory with RUNPATH
 * $ORIGIN/plugins and dlopens a plugin there by bare name, so the lookup only works when
 * dlopen honours the caller's RUNPATH. */
#include <dlfcn.h>

__attribute__((visibility("default"))) int loader_run(int x) {
    void *h = dlopen("libagent_origin.so", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return -1;
    int (*f)(int) = (int (*)(int))dlsym(h, "origin_tool");
    if (!f)
        return -2;
    return f(x);
}
