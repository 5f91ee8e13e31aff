/* review_plug.c - a plugin the review agent loads RTLD_LOCAL (or into a new namespace):
 * it looks up its own dependency's symbol with dlsym(RTLD_DEFAULT), which the loader
 * answers from the caller's local scope, and dlopens that dependency by its bare name,
 * which the loader loads into the caller's namespace through the caller's RUNPATH. */
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>

int review_dep_helper(void);
int review_tool_add(int a, int b);

/* Prints whether dlsym(RTLD_DEFAULT) found the helper and what calling it gave. Returns
 * the helper's value, or -1 when it was not found. */
int plug_run(void) {
    int (*f)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "review_dep_helper");
    printf("plugin: dlsym(RTLD_DEFAULT, review_dep_helper) = %s\n", f ? "found" : "NULL");
    int v = f ? f() : -1;
    printf("plugin: helper=%d tool=%d\n", v, review_tool_add(v, 1));
    fflush(stdout); /* in another namespace this is another libc's stdout */
    return v;
}

/* Prints whether dlopen of the bare dependency name came back in our own namespace.
 * Returns 0 when it did, 1 when not, -1 when the dlopen failed. */
int plug_ns(void) {
    Dl_info info;
    struct link_map *self = NULL;
    Lmid_t mine = -1, theirs = -2;
    if (!dladdr1((void *)plug_ns, &info, (void **)&self, RTLD_DL_LINKMAP) || !self ||
        dlinfo(self, RTLD_DI_LMID, &mine) != 0) {
        puts("plugin: own namespace unknown");
        return -1;
    }
    void *h = dlopen("libreview_dep.so", RTLD_NOW);
    if (!h) {
        printf("plugin: dlopen(libreview_dep.so) failed: %s\n", dlerror());
        return -1;
    }
    if (dlinfo(h, RTLD_DI_LMID, &theirs) != 0)
        theirs = -2;
    printf("plugin: dlopen(libreview_dep.so) in %s namespace\n",
           mine == theirs ? "the caller's" : "another");
    fflush(stdout);
    dlclose(h);
    return mine == theirs ? 0 : 1;
}
