/* ldpath.h - finds the shared libraries a program needs the way the dynamic linker does,
 * by reading files only: nothing of the program (nor its interpreter) is ever run. */
#ifndef AS_LDPATH_H
#define AS_LDPATH_H

#include <stddef.h>

/*
 * as_ldpath_deps - appends to the list paths (*n entries, grown with realloc; entries are
 * malloc'ed strings, as as_program_objects returns them) every object the dynamic linker
 * would load for the program at path program (absolute), in its load order: DT_NEEDED
 * breadth first, each name looked up in DT_RPATH (of the object and of the program, when
 * the object has no DT_RUNPATH), LD_LIBRARY_PATH (not in a setuid process), DT_RUNPATH,
 * /etc/ld.so.cache (else the directories of /etc/ld.so.conf), then the system directories;
 * $ORIGIN, $LIB and $PLATFORM expanded; a name with a '/' taken as a path; objects of
 * another class or machine skipped, as the linker skips them. The interpreter (PT_INTERP)
 * is listed last when no other object is it. Names not found are left out. At most
 * AS_LDPATH_MAX objects. Returns 0, or -1 when out of memory (the list stays valid).
 */
int as_ldpath_deps(const char *program, char ***paths, int *n);

#define AS_LDPATH_MAX 1024

/* Expands $ORIGIN (as origin), $LIB and $PLATFORM, also written ${...}, in the len bytes
 * at in into out (NUL-terminated), the way the dynamic linker does. A '$' naming none of
 * them is copied as it is when keep_unknown (dlopen's names), else the expansion fails (a
 * search-path element the linker drops). Returns 0, or -1 when the result does not fit in
 * cap bytes or an unknown name is refused (out is then unusable). */
int as_dst_expand(const char *in, size_t len, const char *origin, int keep_unknown, char *out,
                  size_t cap);

#endif
