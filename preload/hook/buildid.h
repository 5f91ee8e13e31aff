/* buildid.h - the GNU build-id of a loaded object, read from its notes in memory (no file
 * opened): names an object's separate debug file and tells builds apart in caches. */
#ifndef AS_BUILDID_H
#define AS_BUILDID_H

#include <link.h>
#include <stddef.h>
#include <stdint.h>

/* The NT_GNU_BUILD_ID note among the PT_NOTE segments of phdr[0, phnum), loaded with
 * bias. Returns its length with *id pointing at it in memory, or 0 when there is none.
 * Reads memory only; safe in a dl_iterate_phdr callback. This function can't fail. */
size_t as_build_id_mem(const ElfW(Phdr) * phdr, int phnum, uintptr_t bias,
                       const unsigned char **id);

/* Where separate debug files live; one is found by build-id as
 * AS_DEBUG_ROOT/.build-id/<first byte hex>/<the other bytes hex>.debug */
#define AS_DEBUG_ROOT "/usr/lib/debug"

/* Writes the build-id debug file path of id[0, len) into out. Returns 0, or -1 when the
 * id is shorter than 2 or longer than 64 bytes or the path does not fit. */
int as_build_id_debug_path(const unsigned char *id, size_t len, char *out, size_t cap);

/* The build-id of the interposer itself (as_build_id_mem of its own headers). */
size_t as_build_id_self(const unsigned char **id);

#endif
