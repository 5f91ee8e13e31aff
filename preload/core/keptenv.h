/* keptenv.h - the variables `agentsight run` sets for one process tree, read as the process
 * started with them, even after `run --no-follow` removed them from environ. */
#ifndef AS_KEPTENV_H
#define AS_KEPTENV_H

/* as_keptenv_keep - takes AGENTSIGHT_LOG, AGENTSIGHT_DIAG_FILE, AGENTSIGHT_RUN_ID and
 * AGENTSIGHT_SYMCACHE, AGENTSIGHT_STATS_FILE and AGENTSIGHT_RUN_DIR from the environment, once; the
 * preload's constructor calls it before it puts back what `run --no-follow` changed
 * (hook/nofollow.h). The strings stay valid: environ's slots are moved, never freed. This function
 * can't fail. */
void as_keptenv_keep(void);

/* as_keptenv_get - the value of one of the variables above: the kept one once
 * as_keptenv_keep ran, else secure_getenv(name) (the CLI and unit tests never keep). NULL when
 * unset. */
const char *as_keptenv_get(const char *name);

#endif
