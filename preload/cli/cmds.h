/* cmds.h - the agentsight subcommands; each takes the arguments after its own name
 * (argv[0] is the subcommand name) and returns the process exit status. */
#ifndef AS_CMDS_H
#define AS_CMDS_H

int as_cmd_run(int argc, char **argv);     /* cmd_run.c */
int as_cmd_report(int argc, char **argv);  /* cmd_report.c */
int as_cmd_symbols(int argc, char **argv); /* cmd_symbols.c */
int as_cmd_check(int argc, char **argv);   /* cmd_check.c */
int as_cmd_send(int argc, char **argv);    /* cmd_send.c */

/* Recovers the ring files that dead processes left under the spool root, each action to
 * the sinks its file names, and flushes and closes those sinks (until deadline_ms on the
 * monotonic clock). run_id NULL: every dead process's files; else only those written
 * under that `agentsight run`. *actions receives the number of actions recovered,
 * *unreported (may be NULL) those the dead processes delivered themselves but never
 * reported in a stats line (pipeline.h), *damaged (may be NULL) the records skipped
 * because their checksum did not match.
 * Returns the number of files left behind (their sinks cannot be opened). cmd_send.c */
int as_cli_rescue_rings(const char *root, const char *run_id, long long deadline_ms,
                        unsigned long long *actions, unsigned long long *unreported,
                        unsigned long long *damaged);

/* Called by as_cli_rescue_rings for each action it recovered: the sink URIs of the dead
 * process (no secrets; "" when unknown) and, for an action of a wrapped function call,
 * its action name (NULL for an action tracked through the API). fn NULL: no calls.
 * cmd_send.c */
typedef void (*as_cli_rescue_seen_fn)(const char *sinks, const char *function, void *ctx);
void as_cli_rescue_observe(as_cli_rescue_seen_fn fn, void *ctx);

#endif
