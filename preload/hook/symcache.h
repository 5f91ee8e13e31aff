/* symcache.h - what the processes of one `agentsight run` learned about the local symbols
 * of their objects, shared through a file `run` creates (AGENTSIGHT_SYMCACHE): the object
 * files in which no entry of the config matched a local function, so the next process of
 * the tree does not read them again (libc's debug symbols alone are 370 KB).
 *
 * File layout (lines appended with one write each, never rewritten):
 *   <entries key, 16 hex> <st_dev hex> <st_ino hex> <st_size hex> <mtime s>.<ns>\n
 * Without AGENTSIGHT_SYMCACHE (plain LD_PRELOAD) nothing is cached: every process reads
 * the files it needs. The file is never created here. */
#ifndef AS_SYMCACHE_H
#define AS_SYMCACHE_H

#include <stdint.h>

#include "hook/config.h"

/* A key naming the entries that read local symbols (pattern, version, lib, hook of
 * every entry that may patch entries): a cached answer holds for this set only. */
uint64_t as_symcache_key(const as_config *cfg);

/* 1 when a process of this run found no local function any of these entries selects in
 * the file at path (same device, inode, size and modification time), else 0. Reads the
 * cache file once per process. Allocates; not for a dl_iterate_phdr callback. */
int as_symcache_known_empty(const char *path, uint64_t key);

/* Records that the file at path holds no local function these entries select. Appends
 * one line to the cache file when it exists; errors are ignored. */
void as_symcache_note_empty(const char *path, uint64_t key);

#endif
