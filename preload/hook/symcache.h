/* symcache.h - what earlier processes learned about the local symbols of their objects:
 * the object files in which no entry of the config matched a local function, so the next
 * process does not read them again (libc's debug symbols alone are 370 KB).
 *
 * Under `agentsight run` the processes of the tree share a file `run` creates
 * (AGENTSIGHT_SYMCACHE; never created here). Otherwise the answers persist in "symbols"
 * in the cache directory (cachedir.h), for every later process. Lines, appended with one
 * write each, never rewritten (the persistent file starts over past 1 MB):
 *   <entries key, 16 hex> <st_dev hex> <st_ino hex> <st_size hex> <mtime s>.<ns> <debug>\n
 * where <debug> describes the object's build-id debug file ("-" when there is none, else
 * its inode and modification time): installing a debug package later voids the answer.
 * The entries key also covers the interposer's own build, whose rules select symbols. */
#ifndef AS_SYMCACHE_H
#define AS_SYMCACHE_H

#include <stdint.h>

#include "hook/config.h"
#include "hook/got.h"

/* A key naming the entries that read local symbols (pattern, version, lib, hook of
 * every entry that may patch entries) and the interposer's build: a cached answer holds
 * for this set only. */
uint64_t as_symcache_key(const as_config *cfg);

/* 1 when an earlier process found no local function any of these entries selects in
 * the file at path (same device, inode, size and modification time, same debug file),
 * loaded as o, else 0. Reads the cache file once per process. Allocates; not for a
 * dl_iterate_phdr callback. */
int as_symcache_known_empty(const as_obj *o, const char *path, uint64_t key);

/* Records that the file at path (loaded as o) holds no local function these entries
 * select. Appends one line to the cache file; errors are ignored. */
void as_symcache_note_empty(const as_obj *o, const char *path, uint64_t key);

#endif
