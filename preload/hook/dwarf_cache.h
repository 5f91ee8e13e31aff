/* dwarf_cache.h - the one DWARF file dwarf.c keeps open between as_dwarf_proto() calls, so
 * looking up many functions of one object reads its DWARF once. */
#ifndef AS_DWARF_CACHE_H
#define AS_DWARF_CACHE_H

/* Closes the cached DWARF handle and frees its function index. Safe to call at any time
 * from any thread (the cache has its own lock); the next as_dwarf_proto() opens the file
 * again. This function can't fail. */
void as_dwarf_cache_clear(void);

#endif
