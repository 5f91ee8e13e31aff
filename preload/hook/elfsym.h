/* elfsym.h - function symbols of an ELF file on disk (read from a read-only mapping, no library):
 * .dynsym and .symtab, plus the separate debug file found by build-id under /usr/lib/debug; glob
 * matching; and the list of objects a program loads. Used at start-up by the installer and by the
 * CLI. */
#ifndef AS_ELFSYM_H
#define AS_ELFSYM_H

#include <stddef.h>
#include <stdint.h>

typedef struct as_sym {
    const char *name;    /* without @version */
    const char *version; /* "GLIBC_2.2.5" for versioned dynamic symbols, else NULL */
    uint64_t value;      /* st_value: an offset from the load base for ET_DYN objects */
    uint64_t size;
    uint8_t bind;            /* STB_GLOBAL, STB_WEAK, STB_LOCAL */
    uint8_t is_ifunc;        /* STT_GNU_IFUNC */
    uint8_t exported;        /* defined in .dynsym with default/protected visibility */
    uint8_t version_default; /* @@ (default) version, or unversioned */
} as_sym;

typedef struct as_symtab {
    char *path;
    as_sym *syms; /* defined functions (STT_FUNC, STT_GNU_IFUNC), sorted by name, one per
                     (name, version); a name in both .dynsym and .symtab appears once */
    size_t n;
    int is_dyn;       /* ET_DYN (PIE or shared object): values are offsets */
    int has_debug;    /* .debug_info present here or in the build-id debug file */
    char *debug_path; /* the file carrying DWARF (may equal path), or NULL */
    void *priv;       /* string storage */
} as_symtab;

/* Loads the function symbols of path. Returns 0, or -1 with a reason in err ("not an ELF
 * file", "no such file") and *t zeroed. Allocates; never call from a dl_iterate_phdr
 * callback or with the loader lock held. */
int as_symtab_load(const char *path, as_symtab *t, char *err, size_t cap);
void as_symtab_free(as_symtab *t);

/* as_symtab_load keeping only the symbols keep accepts (name as the table spells it: a
 * .symtab name may end in "@VERSION" or "@@VERSION"): a caller after a few names (an
 * entry's exact name, a glob) reads the file without building its whole table, and keep
 * = a function accepting nothing only fills has_debug/debug_path. keep NULL keeps
 * everything. */
typedef int (*as_sym_keep_fn)(const char *name, void *ctx);
int as_symtab_load_some(const char *path, as_symtab *t, char *err, size_t cap, as_sym_keep_fn keep,
                        void *ctx);

/* Binary search by exact name; prefers the default version. NULL when absent. */
const as_sym *as_symtab_find(const as_symtab *t, const char *name);

/* fnmatch-style glob: *, ?, [a-z], [!x]; also "name@VERSION" patterns match a symbol's
 * version. Returns 1 on match. */
int as_glob_match(const char *pattern, const char *s);
int as_is_glob(const char *pattern); /* 1 when pattern has *, ? or [ */

/* Paths of the objects program loads, program first, the way ld.so resolves them
 * (found by reading files, see ldpath.h: nothing of the program is run). Returns the count (>= 1)
 * and a malloc'ed array of malloc'ed strings in *paths (free with as_paths_free), or -1 with a
 * reason in err. */
int as_program_objects(const char *program, char ***paths, char *err, size_t cap);
void as_paths_free(char **paths, int n);

#endif
