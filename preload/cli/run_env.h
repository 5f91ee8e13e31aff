/* run_env.h - the parts of `agentsight run`'s environment that come from -e and
 * --no-follow: the patterns handed to the interposer, and the record of what `run`
 * changed so that the traced process can put it back for the programs it executes. */
#ifndef AS_RUN_ENV_H
#define AS_RUN_ENV_H

#include <stddef.h>

/* Checks the -e patterns (each parsed as an [actions] line; errors printed as
 * "agentsight: error: -e:N:COL: ...") and appends them, one per line, to
 * AGENTSIGHT_ENTRIES. Returns 0, or -1 when one was refused or out of memory (the
 * environment unchanged). n may be 0 (nothing done). */
int as_run_env_entries(char *const *patterns, size_t n);

/* Remembers the variables `run` may change (call before changing any). Can't fail. */
void as_run_env_snapshot(void);

/* After `run` has set its variables: names in AGENTSIGHT_NO_FOLLOW each one whose value
 * changed since the snapshot and keeps the original in AGENTSIGHT_SAVED_<NAME>
 * (preload/hook/nofollow.h). Returns 0, or -1 when out of memory (message printed). */
int as_run_env_nofollow(void);

#endif
