/* securedir.h - checks (and creates) the private directories the library writes into.
 *
 * The spool and the crash-safe ring files are read back later and shipped as the user's
 * own actions, so the directories holding them must belong to the user and nobody else
 * may be able to place or swap files in them. */
#ifndef AS_SECUREDIR_H
#define AS_SECUREDIR_H

#include <stddef.h>

/* 0 when path is (or, with create, was made, parents included, mode 0700) a directory
 * owned by geteuid(), not a symlink, with no group/other write bits; -1 with the
 * reason in why ("owned by uid 65534", "is a symlink", "mode 0777").
 *
 * Existing parents must be owned by root or geteuid() (a symlink among them too) and,
 * when writable by others, carry the sticky bit (/tmp); otherwise their owner could swap
 * the final directory: the reason then names the parent ("parent /x owned by uid 1001").
 * Each directory created is checked with lstat after mkdir and set to 0700 whatever the
 * umask. why may be NULL; it is always NUL-terminated when cap > 0. Directories created
 * before a failure are left in place. Thread-safe; not async-signal-safe. */
int as_secure_dir(const char *path, int create, char *why, size_t cap);

#endif
