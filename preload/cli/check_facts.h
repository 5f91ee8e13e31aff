/* check_facts.h - facts of an object file that decide how `agentsight check` says its
 * functions will be reached and which it never wraps (check_facts.c). */
#ifndef AS_CHECK_FACTS_H
#define AS_CHECK_FACTS_H

#include <stddef.h>
#include <stdint.h>

#define AS_OBJFACTS_MAX_EXEC 8

typedef struct as_objfacts {
    int symbolic;   /* DT_SYMBOLIC or DF_SYMBOLIC */
    char **selfref; /* sorted names of its own definitions its relocations name */
    size_t nselfref;
    char **prot; /* sorted names of its STV_PROTECTED dynamic symbols */
    size_t nprot;
    uint64_t exec_lo[AS_OBJFACTS_MAX_EXEC], exec_hi[AS_OBJFACTS_MAX_EXEC]; /* PF_X loads */
    int nexec;
} as_objfacts;

/* Reads the facts of the file at path. Returns 0, or -1 (not readable, not ELF, out of
 * memory) with *f zeroed. */
int as_objfacts_load(const char *path, as_objfacts *f);
void as_objfacts_free(as_objfacts *f);

/* Whether a relocation of the object names its own definition of name. */
int as_objfacts_selfref(const as_objfacts *f, const char *name);

/* Whether name is a protected dynamic symbol of the object. */
int as_objfacts_protected(const as_objfacts *f, const char *name);

/* 1 when [value, value + size) lies in an executable segment, 0 when not, -1 unknown. */
int as_objfacts_exec(const as_objfacts *f, uint64_t value, uint64_t size);

#endif
