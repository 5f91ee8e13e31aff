/* cmds.h - the agentsight subcommands; each takes the arguments after its own name
 * (argv[0] is the subcommand name) and returns the process exit status. */
#ifndef AS_CMDS_H
#define AS_CMDS_H

int as_cmd_run(int argc, char **argv);     /* cmd_run.c */
int as_cmd_report(int argc, char **argv);  /* cmd_report.c */
int as_cmd_symbols(int argc, char **argv); /* cmd_symbols.c */
int as_cmd_check(int argc, char **argv);   /* cmd_check.c */
int as_cmd_send(int argc, char **argv);    /* cmd_send.c */

#endif
