/* dynlib.h - libraries only some features need (libcurl for the HTTP sinks, cJSON for
 * parsing JSON, libdw for DWARF prototypes, capstone for entry patching), opened with
 * dlopen by soname the first time a feature asks, so a process pays only for what it uses.
 *
 * Each library has a table of function pointers named like its functions, declared with
 * AS_DL_FIELD from an X-list in its header (core/dl_curl.h, ...), defined once with
 * AS_DYNLIB_DEFINE, and called as `as_curl.curl_easy_init()` after as_dynlib_load()
 * returned 0. A missing library or symbol is reported once on stderr and the feature that
 * needs it stays off; nothing else changes. */
#ifndef AS_DYNLIB_H
#define AS_DYNLIB_H

#include <stdint.h>

typedef void *(*as_dl_open_fn)(const char *file, int mode);
typedef void *(*as_dl_sym_fn)(void *handle, const char *name);

typedef struct as_dynlib {
    const char *soname;  /* "libcurl.so.4" */
    const char *feature; /* what stays off without it: "HTTP sinks" */
    /* Fills the table from handle; returns 0, or -1 with the first missing name. */
    int (*resolve)(void *handle, as_dl_sym_fn sym, const char **missing);
    int state; /* 0 not tried, 1 ready, -1 unavailable (atomic) */
    /* "SYMBOL LIBPREFIX": a function of the library (or of one it depends on) that
     * programs may carry a copy of (node exports the zlib, brotli and OpenSSL built into
     * it), and the name prefix of the library that normally defines it. When the process
     * already defines SYMBOL in an object whose name does not start with LIBPREFIX (the
     * program itself), the library is opened with RTLD_DEEPBIND, so that its own calls
     * (libz's inflateInit2_ calling inflateReset2, libcurl's libssl calling libcrypto)
     * never reach that copy, whose structures differ. NULL: never. */
    const char *own_copy_probe;
} as_dynlib;

/* Opens lib (once per process; thread-safe) and fills its table. Returns 0 when the table
 * is ready, or -1 when the library or one of its functions is missing: then one message
 * naming the library and the feature was printed (the first time), and every later call
 * returns -1 at once. Takes the loader's lock: never call it from a dl_iterate_phdr
 * callback. */
int as_dynlib_load(as_dynlib *lib);

/* The dlopen/dlsym used by as_dynlib_load. The interposer exports wrappers of its own
 * under those names, so it hands the C library's real ones over before anything loads;
 * elsewhere (the CLI, libagentsight.so, tests) the default dlopen/dlsym are right. */
void as_dynlib_set_loader(as_dl_open_fn open, as_dl_sym_fn sym);

/* 1 when the object loaded at base with loader name name was brought into the process
 * by as_dynlib_load (the library or one of its dependencies), else 0. Those objects are
 * the interposer's own and are never instrumented. Lock-free; safe anywhere. */
int as_dynlib_owns(uintptr_t base, const char *name);

/* ---- declaring a table ---- */
#define AS_DL_FIELD(f) __typeof__(f) *f;
#define AS_DL_SET(f)                                                                               \
    if (!(t->f = (__typeof__(t->f))sym(handle, #f))) {                                             \
        *missing = #f;                                                                             \
        return -1;                                                                                 \
    }
/* Defines the table `var` (struct var##_fns, declared from LIST with AS_DL_FIELD) and its
 * descriptor var##_lib. */
#define AS_DYNLIB_DEFINE(var, LIST, soname, feature)                                               \
    AS_DYNLIB_DEFINE_DEEP(var, LIST, soname, feature, NULL)
/* The same, for a library whose functions the program may define too (own_copy_probe). */
#define AS_DYNLIB_DEFINE_DEEP(var, LIST, soname, feature, probe)                                   \
    struct var##_fns var;                                                                          \
    static int var##_resolve(void *handle, as_dl_sym_fn sym, const char **missing) {               \
        struct var##_fns *t = &var;                                                                \
        LIST(AS_DL_SET)                                                                            \
        return 0;                                                                                  \
    }                                                                                              \
    as_dynlib var##_lib = {soname, feature, var##_resolve, 0, probe}

#endif
