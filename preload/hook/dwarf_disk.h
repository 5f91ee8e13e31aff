/* dwarf_disk.h - the prototypes read from an object's DWARF, kept on disk between
 * processes. Reading DWARF means decompressing the object's whole debug information (about
 * 90 ms for libc with its debug package): a bare `malloc` in the config would make every
 * process of an agent's tree pay that before main. The first process to read a function's
 * prototype writes it here; every later process finds it with one small file read.
 *
 * Where: "dwarf" in the cache directory (cachedir.h), mode 0700. One file per object, named
 * by a hash of the object's path, device, inode, size and modification time and of the
 * build-id of the interposer that wrote it: a rebuilt object or a new interposer starts a
 * new file. Lines, appended with one write each:
 *   F <TAB> function <TAB> variadic <TAB> nparams <TAB> result <TAB> (name <TAB> type)...
 *   N <TAB> function                       (DWARF read: no usable prototype)
 * where a type is "kind,size,class0,class1,spelling". A line that does not parse, or
 * describes a type the interposer cannot have written, is ignored (the function's DWARF
 * is read again). */
#ifndef AS_DWARF_DISK_H
#define AS_DWARF_DISK_H

#include "proto.h"

/* The cached answer for func of the object at path: 1 with *out filled (the prototype),
 * 0 when DWARF was read before and gave none, -1 when nothing is cached (or the cache is
 * off). Loads the object's cache file on the first question about path and keeps it until
 * another path is asked about or as_dwdisk_flush(). Not thread-safe: callers serialise
 * (dwarf.c's lock). Allocates; not for a dl_iterate_phdr callback. */
int as_dwdisk_get(const char *path, const char *func, as_proto *out);

/* Notes the answer read from DWARF for func of path (p NULL: none), written to the file at
 * the next as_dwdisk_flush() or question about another path. Errors are ignored: the
 * cache only saves time. */
void as_dwdisk_put(const char *path, const char *func, const as_proto *p);

/* Appends the noted answers to their file (one write) and forgets the loaded file. This
 * function can't fail. */
void as_dwdisk_flush(void);

#endif
