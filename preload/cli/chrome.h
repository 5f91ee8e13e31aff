/* chrome.h - `agentsight report --format chrome`: JSONL actions turned into Chrome trace
 * event JSON (the {"traceEvents": [...]} form read by Perfetto and chrome://tracing).
 * Internal to the CLI; declared here so the unit tests reach it.
 *
 * Each action becomes one complete event: {"name": action_name, "cat": "action",
 * "ph": "X", "ts": start in us since the Unix epoch, "dur": duration in us, "pid", "tid",
 * "args": {"function", "library", "arguments", "response", "error", "conversation_id"}}
 * (args members only when the action has them). pid and tid come from the action's
 * metadata (the interposer writes them); actions without them share pid 0 / tid 0. Each
 * pid and (pid, tid) seen gets one "process_name" / "thread_name" metadata event ("M"). */
#ifndef AS_CHROME_H
#define AS_CHROME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct as_chrome as_chrome;

/* Starts a trace written to out (the opening of the JSON object is written now). Returns
 * the writer, or NULL when out of memory or on a write error. out is borrowed. */
as_chrome *as_chrome_new(FILE *out);

/* Converts one JSONL line (len bytes, need not be NUL-terminated) into one event.
 * Returns 0 when written, 1 when the line is blank, -1 when it is bad: *why (when why is
 * not NULL) then says why ("not JSON", "not an object", "no action_name", "no time",
 * "bad duration", "out of memory", "write error") and nothing was written. */
int as_chrome_line(as_chrome *c, const char *line, size_t len, const char **why);

/* Converts a whole stream line by line; bad lines are counted, the first one remembered
 * with label. Returns 0, or -1 on a read error (what was read stays converted). */
int as_chrome_stream(as_chrome *c, FILE *f, const char *label);

/* Writes the metadata events and closes the JSON object. Returns 0, or -1 on a write
 * error or when out of memory. */
int as_chrome_finish(as_chrome *c);

/* Events written, bad lines seen. */
uint64_t as_chrome_events(const as_chrome *c);
uint64_t as_chrome_bad_lines(const as_chrome *c);

/* Writes "report: N bad lines skipped (first at line L[ of FILE]: why)" to f; nothing when
 * there were none. */
void as_chrome_print_bad(const as_chrome *c, FILE *f, int several_files);

void as_chrome_free(as_chrome *c); /* NULL is fine; does not close out */

/* Parses "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (UTC) into microseconds since the epoch.
 * Returns 0, or -1 when s is not such a time. */
int as_chrome_parse_iso(const char *s, double *us);

#endif
