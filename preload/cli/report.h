/* report.h - the statistics behind `agentsight report`: per action_name call counts,
 * errors and duration percentiles from JSONL in one streaming pass with bounded memory.
 * Internal to the CLI; declared here so the unit tests reach it.
 *
 * Accuracy: the first AS_REPORT_EXACT_CAP durations of a name are kept exactly and its
 * percentiles are exact (nearest rank: the p-th percentile of N sorted values is the value
 * at 1-based rank ceil(p/100 * N)). Past the cap the name switches to a log-bucketed
 * histogram (bucket i >= 1 holds [g^(i-1), g^i) ns, g = AS_HIST_GAMMA = 1.02) whose
 * representative value has a relative error of at most (g-1)/(g+1) < 1% for durations of
 * 1 ns and more; durations under 1 ns share bucket 0 (reported as 0). Counts, errors,
 * totals, means and maxima are always exact. */
#ifndef AS_REPORT_H
#define AS_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define AS_REPORT_EXACT_CAP 1000 /* exact samples kept per name (8 KB) */
#define AS_REPORT_MAX_NAMES 4096 /* more distinct names are merged into one row */
#define AS_REPORT_OTHER "(other names)"
#define AS_REPORT_MAX_LINE (64u << 20) /* longer lines are skipped as bad */
#define AS_HIST_GAMMA 1.02
#define AS_HIST_BUCKETS 2200 /* covers 1 ns .. ~8e18 ns; larger values share the last */

enum as_report_sort {
    AS_SORT_TOTAL = 0,
    AS_SORT_CALLS,
    AS_SORT_MEAN,
    AS_SORT_P99,
    AS_SORT_ERRORS,
    AS_SORT_NAME,
};

/* One output row; strings are owned by the as_report it came from. Durations in ms. */
typedef struct as_report_row {
    const char *action_name;
    const char *display_name; /* metadata.display_name first seen, or NULL */
    uint64_t calls;
    uint64_t errors;
    uint64_t timed; /* calls that carried a duration */
    double total_ms, mean_ms, p50_ms, p95_ms, p99_ms, max_ms;
    int exact; /* 1 when the percentiles are exact (never switched to the histogram) */
} as_report_row;

typedef struct as_report as_report;

/* Returns a new, empty report, or NULL when out of memory. exact_cap is the number of
 * exact samples kept per name before switching to the histogram (0: AS_REPORT_EXACT_CAP). */
as_report *as_report_new(size_t exact_cap);
void as_report_free(as_report *r); /* NULL is fine */

/* Adds one call. dur_ns < 0 means "no duration" (counted in calls, not timed).
 * Returns 0, or -1 when out of memory (the call is then not counted). */
int as_report_add(as_report *r, const char *name, const char *display_name, double dur_ns,
                  int is_error);

/* Parses one JSONL line (len bytes, need not be NUL-terminated) and adds it. Returns 0
 * when added, 1 when the line is blank (ignored), -1 when it is bad: *why (if why is not
 * NULL) then says why ("not JSON", "not an object", "no action_name", "bad duration",
 * "out of memory") and nothing is counted. */
int as_report_line(as_report *r, const char *line, size_t len, const char **why);

/* Reads a whole stream line by line (lines of any length up to the line limit; longer
 * ones are bad lines), recording bad lines with label (a file name) for the summary.
 * Returns 0, or -1 on a read error (what was read stays counted). */
int as_report_stream(as_report *r, FILE *f, const char *label);

/* Changes the longest accepted line (default AS_REPORT_MAX_LINE bytes). */
void as_report_set_max_line(as_report *r, size_t max_line);

/* Bad-line bookkeeping filled by as_report_stream(). */
uint64_t as_report_bad_lines(const as_report *r);
/* Writes "report: 3 bad lines skipped (first at line 17: not JSON)" (with " of FILE"
 * after the line number when several files were read) to f; nothing when there were none. */
void as_report_print_bad(const as_report *r, FILE *f, int several_files);

/* Bad lines seen while reading JSONL, shared by the table and the chrome forms of report:
 * how many, and where the first one was (label, a file name, is copied). Zeroed = none. */
typedef struct as_bad_lines {
    uint64_t n;
    uint64_t first_line;
    const char *first_why; /* a static string */
    char *first_label;     /* owned; NULL when no label or out of memory */
} as_bad_lines;

/* Counts one bad line; the first one's place is remembered. Cannot fail (an unsaved label
 * only drops " of FILE" from the summary). */
void as_bad_lines_note(as_bad_lines *b, uint64_t lineno, const char *why, const char *label);
/* Writes the "report: N bad lines skipped (...)" summary to f; nothing when n is 0. */
void as_bad_lines_print(const as_bad_lines *b, FILE *f, int several_files);
void as_bad_lines_free(as_bad_lines *b); /* frees the label; b itself is the caller's */

/* 1 when the n bytes at s are only spaces, tabs, CR and LF (or n is 0), else 0. */
int as_jsonl_blank(const char *s, size_t n);

/* The first look at a JSONL line of len bytes: 1 when it is blank (to be ignored), -1 when
 * it holds a NUL byte (*why = "not JSON"; cJSON would skip one as if it were a space), 0
 * when it is to be parsed. why may be NULL. */
int as_jsonl_precheck(const char *line, size_t len, const char **why);

/* Parses len bytes as exactly one JSON value followed by blanks at most. Returns the value
 * (the caller frees it with cJSON_Delete), or NULL when the bytes are not that. */
struct cJSON *as_jsonl_parse(const char *line, size_t len);

/* as_jsonl_parse for a line read from a file: bytes that are not UTF-8 become U+FFFD
 * first (what report writes is valid UTF-8 whatever it read), and a \u escape cJSON
 * would misread ("\u00zz", a lone surrogate) makes the line bad. Returns the value, or
 * NULL with *why set ("not JSON", "not JSON (bad \u escape)", "out of memory"). */
struct cJSON *as_jsonl_parse_text(const char *line, size_t len, const char **why);

/* One JSONL line as report and chrome read it: as_jsonl_precheck, then
 * as_jsonl_parse_text into *root. Returns 0 with *root set, 1 for a blank line, -1 with
 * *why set (why may be NULL). */
int as_jsonl_read_line(const char *line, size_t len, const char **why, struct cJSON **root);

/* Reads a JSON duration member: 1 and *out set to its value times scale for a number >= 0
 * whose scaled value is finite and at most max, 0 when the member is absent or null, -1
 * when it is anything else (*out untouched). */
int as_jsonl_duration(const struct cJSON *item, double scale, double max, double *out);

/* Parses a --sort key ("total", "calls", "mean", "p99", "errors", "name"). Returns the
 * enum value, or -1 when unknown. */
int as_report_sort_parse(const char *s);

/* Computes the rows sorted by key (numeric keys descending, name ascending; ties by name).
 * Returns the number of rows and sets *out to a malloc'd array the caller frees (NULL when
 * there are no rows). Returns -1 when out of memory (*out left NULL). */
long as_report_rows(as_report *r, int sort, as_report_row **out);

/* Prints rows as an aligned table (display_name column only when a row has one), or as a
 * JSON array of objects. Returns 0, or -1 when out of memory or on a write error. */
int as_report_print_table(const as_report_row *rows, size_t n, FILE *f);
int as_report_print_json(const as_report_row *rows, size_t n, FILE *f);

/* The nearest-rank p-th percentile (0 < p <= 100) of n ascending values; 0 when n is 0. */
double as_pct_exact(const double *sorted, size_t n, double p);

/* Histogram bucket of a duration in ns, and the representative value of a bucket. */
int as_hist_index(double ns);
double as_hist_value(int idx);

#endif
