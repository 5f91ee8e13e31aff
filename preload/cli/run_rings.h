/* run_rings.h - what `agentsight run` learns from the ring files of its run before it
 * recovers them: the sinks and the functions of processes that ended without a stats
 * line (killed, `_exit`), for its summary. */
#ifndef AS_RUN_RINGS_H
#define AS_RUN_RINGS_H

#include <stddef.h>

/* Called once per ring file of run_id found under <root>/rings that held an action (one
 * its process delivered, or one still in it), with the writer's sink
 * URIs (no secrets) and the number of distinct targets (hooked functions) its process
 * image described in its .targets file. */
typedef void (*as_run_rings_fn)(const char *sinks, size_t targets, void *ctx);

/* Reads the header of every ring file under <root>/rings (at most 4096 files; taken,
 * damaged, foreign and other users' files skipped) and calls fn for those of run_id.
 * Returns the number of files fn was called for, or -1 when the directory cannot be
 * read. */
int as_run_rings_scan(const char *root, const char *run_id, as_run_rings_fn fn, void *ctx);

#endif
