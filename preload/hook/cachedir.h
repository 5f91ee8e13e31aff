/* cachedir.h - the directory where the interposer keeps what one process learned about
 * the objects on disk for the next ones (prototypes read from DWARF, objects without a
 * local function a config selects): $AGENTSIGHT_CACHE_DIR, else
 * $XDG_CACHE_HOME/agentsight, else $HOME/.cache/agentsight. AGENTSIGHT_CACHE_DIR=off (or
 * empty, or a relative path) turns caching off; a set-user-ID program never caches. */
#ifndef AS_CACHEDIR_H
#define AS_CACHEDIR_H

#include <stddef.h>

/* Writes "<cache dir>/<sub>" into out. Returns 0, or -1 when caching is off or the path
 * does not fit. Reads the environment on each call; creates nothing (as_secure_dir does,
 * before a write). This function can't fail otherwise. */
int as_cache_path(const char *sub, char *out, size_t cap);

#endif
