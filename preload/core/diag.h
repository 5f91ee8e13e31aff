/* diag.h - where the interposer's messages go, so that a process tree reports each
 * diagnostic once per run and the program's stderr stays its own.
 *
 * Two classes of messages (log.h formats both):
 *  - diagnostics (as_log: the config, the environment, entries that matched nothing):
 *    the same in every process of a tree, so reported once per run;
 *  - alerts (as_alert: actions lost, a sink or the spool failing, the exporter stuck):
 *    facts of one process, always shown, by the process that saw them.
 *
 * Routing, in this order:
 *  1. AGENTSIGHT_LOG=FILE: every message of every process is appended to FILE, one line
 *     "agentsight[PID]: LEVEL: MESSAGE"; nothing goes to stderr.
 *  2. AGENTSIGHT_DIAG_FILE=FILE (set by `agentsight run`): diagnostics are appended to
 *     FILE as records (below) and `run` prints each distinct one once at the end; alerts
 *     go to stderr at once.
 *  3. Otherwise diagnostics go to stderr only in the first instrumented process of a
 *     tree. Silent are: a process whose parent maps this same object (/proc/PPID/maps,
 *     read only when there is something to print: the environment is never changed, so
 *     the program sees exactly what it would see without us); a fork child that did not
 *     exec (its parent speaks); a process whose parent changed since it started (an
 *     orphan or a daemon). Alerts go to stderr.
 * A file that cannot be opened falls back to the next rule.
 *
 * The AGENTSIGHT_DIAG_FILE records: one line each, fields separated by one tab, appended
 * with one write(2) on an O_APPEND descriptor (atomic between processes on a local file
 * system), never longer than AS_DIAG_RECORD_MAX bytes:
 *   M <id> <level> <message>             a diagnostic (level: error|warning|info|debug)
 *   U <id> <file> <line> <entry> <kind>  an entry that matched nothing by the process's
 *                                        end (kind: "function" or "exported function")
 *   E <id>                               the process ended (exit or return from main)
 * <id> names one process image: "PID.TIME" (when the image started: the CPU's time-stamp
 * counter, or CLOCK_MONOTONIC ns where there is none), so a reused pid or an exec'd image
 * counts apart. Tabs and newlines inside fields are
 * written as spaces.
 */
#ifndef AS_DIAG_H
#define AS_DIAG_H

#include <stddef.h>

#define AS_DIAG_RECORD_MAX 2048

/* Sends every later message of this process to stderr as it comes, whatever the
 * environment says: for the `agentsight` command, whose messages answer its user. */
void as_diag_direct(void);

/* 1 in the `agentsight` command (as_diag_direct was called), 0 in an instrumented
 * program. This function can't fail. */
int as_diag_is_direct(void);

/* Routes one formatted diagnostic (msg without prefix or newline) of level (log.h).
 * Preserves errno; never allocates; thread-safe. */
void as_diag_emit(int level, const char *msg);

/* Routes one formatted alert: stderr, or AGENTSIGHT_LOG when set. level < 0 prints no
 * level word ("agentsight: MESSAGE"). Preserves errno; never allocates; thread-safe. */
void as_diag_alert(int level, const char *msg);

/* Reports that config entry `entry` (file:line) matched no function (exported only when
 * exported_only) in this process by its end: a U record under `run`, else a warning.
 * Preserves errno. */
void as_diag_unmatched(const char *file, int line, const char *entry, int exported_only);

/* Writes the E record of this process under `run`; nothing otherwise. Call once, at the
 * process's end. Preserves errno. */
void as_diag_end(void);

/* Appends s to buf (holding len bytes, cap in all) as one record field: tabs and
 * newlines become spaces, the field is cut to fit cap - 1 bytes, buf stays
 * NUL-terminated. Returns the new length. This function can't fail. */
size_t as_diag_put_field(char *buf, size_t len, size_t cap, const char *s);

#endif
