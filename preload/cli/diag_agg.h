/* diag_agg.h - `agentsight run`'s side of the diagnostic records (core/diag.h): reads the
 * records every process of a run appended and prints each distinct message once. */
#ifndef AS_DIAG_AGG_H
#define AS_DIAG_AGG_H

#include <stddef.h>
#include <stdio.h>

typedef struct as_diag_agg as_diag_agg;

/* A new, empty aggregate. Returns NULL when out of memory. */
as_diag_agg *as_diag_agg_new(void);

/* Frees agg and everything it holds. agg may be NULL. */
void as_diag_agg_free(as_diag_agg *agg);

/* Adds one record line (with or without its newline; not NUL-terminated). A line that is
 * not a well-formed record is counted as skipped and otherwise ignored. Returns 0, or -1
 * when out of memory (the record is then lost; agg stays usable). */
int as_diag_agg_line(as_diag_agg *agg, const char *line, size_t len);

/* Adds every record line of the file at path. Returns 0, or -1 when it cannot be read. */
int as_diag_agg_read(as_diag_agg *agg, const char *path);

/* Prints, in the order first seen, one line per distinct diagnostic:
 *   agentsight: LEVEL: MESSAGE                  seen in every process that reported
 *                                               a message or an unmatched entry
 *   agentsight: LEVEL: MESSAGE (in 2 of 5 processes)
 * then one line per entry that matched nothing in every process that ended:
 *   agentsight: entry 'x' (agent.conf:3) matched nothing in any of 3 processes
 * (an entry that matched in one process is not named). A config path under cwd, and a
 * message starting with one, is shown relative to it (cwd may be NULL). Returns the number of lines
 * printed. */
int as_diag_agg_print(const as_diag_agg *agg, FILE *out, const char *cwd);

/* Counters, for tests: distinct processes that wrote a message or an unmatched entry
 * (the M of "(in N of M processes)"), processes that ended, records skipped. */
size_t as_diag_agg_processes(const as_diag_agg *agg);
size_t as_diag_agg_ended(const as_diag_agg *agg);
size_t as_diag_agg_skipped(const as_diag_agg *agg);

#endif
