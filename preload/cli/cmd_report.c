/* cmd_report.c - `agentsight report`: per-action statistics (calls, errors, duration
 * percentiles) from JSONL action files, in one streaming pass with bounded memory. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentsight.h"
#include "cli/chrome.h"
#include "cli/cmds.h"
#include "cli/report.h"
#include "core/jsonw.h"

#define TABLE_SLOTS 16384 /* > 2 * (AS_REPORT_MAX_NAMES + 1): open addressing stays short */
#define READ_BLOCK 65536

/* Statistics of one action_name. samples holds exact durations (ns) until the name switches
 * to the histogram (hist != NULL), after which samples is freed. */
typedef struct rstat {
    char *name;
    char *display;
    uint64_t calls, errors, timed;
    double total_ns, min_ns, max_ns;
    double *samples;
    size_t nsamples, scap;
    uint64_t *hist;
} rstat;

struct as_report {
    rstat *stats;
    size_t n, cap;
    uint32_t table[TABLE_SLOTS]; /* index + 1 into stats; 0 = empty */
    long other;                  /* index of the AS_REPORT_OTHER row, or -1 */
    size_t exact_cap;
    size_t max_line;
    as_bad_lines bad;
    /* the line being read, reused */
    char *line;
    size_t line_cap;
};

as_report *as_report_new(size_t exact_cap) {
    as_report *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->other = -1;
    r->exact_cap = exact_cap ? exact_cap : AS_REPORT_EXACT_CAP;
    r->max_line = AS_REPORT_MAX_LINE;
    return r;
}

void as_report_free(as_report *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->stats[i].name);
        free(r->stats[i].display);
        free(r->stats[i].samples);
        free(r->stats[i].hist);
    }
    free(r->stats);
    as_bad_lines_free(&r->bad);
    free(r->line);
    free(r);
}

void as_report_set_max_line(as_report *r, size_t max_line) {
    r->max_line = max_line;
}

/* ---- histogram ---------------------------------------------------------------------- */

/* Bucket 0: durations under 1 ns (and NaN). Bucket i >= 1: [g^(i-1), g^i) ns. */
int as_hist_index(double ns) {
    if (!(ns >= 1.0))
        return 0;
    double i = 1.0 + floor(log(ns) / log(AS_HIST_GAMMA));
    if (i >= AS_HIST_BUCKETS - 1)
        return AS_HIST_BUCKETS - 1;
    return (int)i;
}

/* The value with the smallest worst-case relative error over [g^(i-1), g^i):
 * 2 g^i / (1 + g), off by at most (g-1)/(g+1) from any value of the bucket. */
double as_hist_value(int idx) {
    if (idx <= 0)
        return 0.0;
    return 2.0 * pow(AS_HIST_GAMMA, idx) / (1.0 + AS_HIST_GAMMA);
}

/* ---- percentiles -------------------------------------------------------------------- */

/* Nearest rank: the value at 1-based rank ceil(p/100 * n), clamped to 1..n. */
static uint64_t nearest_rank(uint64_t n, double p) {
    double r = ceil(p * (double)n / 100.0); /* p * n first: exact for whole p */
    if (r < 1.0)
        return 1;
    if (r > (double)n)
        return n;
    return (uint64_t)r;
}

double as_pct_exact(const double *sorted, size_t n, double p) {
    if (n == 0)
        return 0.0;
    return sorted[nearest_rank(n, p) - 1];
}

static double pct_hist(const rstat *s, double p) {
    uint64_t rank = nearest_rank(s->timed, p);
    uint64_t cum = 0;
    int idx = AS_HIST_BUCKETS - 1;
    for (int i = 0; i < AS_HIST_BUCKETS; i++) {
        cum += s->hist[i];
        if (cum >= rank) {
            idx = i;
            break;
        }
    }
    double v = as_hist_value(idx);
    if (v < s->min_ns)
        v = s->min_ns;
    if (v > s->max_ns)
        v = s->max_ns;
    return v;
}

/* ---- adding calls ------------------------------------------------------------------- */

static uint32_t hash_name(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Appends a zeroed row named name. Returns its index, or -1 when out of memory (nothing
 * changed). */
static long new_row(as_report *r, const char *name) {
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 16;
        rstat *ns = realloc(r->stats, ncap * sizeof(*ns));
        if (!ns)
            return -1;
        r->stats = ns;
        r->cap = ncap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -1;
    memset(&r->stats[r->n], 0, sizeof(rstat));
    r->stats[r->n].name = copy;
    return (long)r->n++;
}

/* Finds or creates the row of name; past AS_REPORT_MAX_NAMES names the shared
 * AS_REPORT_OTHER row is used. Returns the row, or NULL when out of memory. */
static rstat *row_for(as_report *r, const char *name) {
    uint32_t slot = hash_name(name) & (TABLE_SLOTS - 1);
    while (r->table[slot]) {
        rstat *s = &r->stats[r->table[slot] - 1];
        if (strcmp(s->name, name) == 0)
            return s;
        slot = (slot + 1) & (TABLE_SLOTS - 1);
    }
    size_t named = r->n - (r->other >= 0 ? 1 : 0);
    if (named >= AS_REPORT_MAX_NAMES) {
        if (r->other < 0) {
            r->other = new_row(r, AS_REPORT_OTHER);
            if (r->other < 0)
                return NULL;
        }
        return &r->stats[r->other];
    }
    long idx = new_row(r, name);
    if (idx < 0)
        return NULL;
    r->table[slot] = (uint32_t)idx + 1;
    return &r->stats[idx];
}

/* Moves the exact samples of s into a new histogram. Returns 0, or -1 when out of memory
 * (s unchanged). */
static int to_histogram(rstat *s) {
    uint64_t *h = calloc(AS_HIST_BUCKETS, sizeof(*h));
    if (!h)
        return -1;
    for (size_t i = 0; i < s->nsamples; i++)
        h[as_hist_index(s->samples[i])]++;
    free(s->samples);
    s->samples = NULL;
    s->nsamples = s->scap = 0;
    s->hist = h;
    return 0;
}

/* Stores one duration in s (exactly, or in the histogram). Returns 0 or -1 when out of
 * memory (nothing stored). */
static int add_sample(as_report *r, rstat *s, double ns) {
    if (s->hist) {
        s->hist[as_hist_index(ns)]++;
        return 0;
    }
    if (s->nsamples >= r->exact_cap) {
        if (to_histogram(s) < 0)
            return -1;
        s->hist[as_hist_index(ns)]++;
        return 0;
    }
    if (s->nsamples == s->scap) {
        size_t ncap = s->scap ? s->scap * 2 : 16;
        if (ncap > r->exact_cap)
            ncap = r->exact_cap;
        double *n = realloc(s->samples, ncap * sizeof(*n));
        if (!n)
            return -1;
        s->samples = n;
        s->scap = ncap;
    }
    s->samples[s->nsamples++] = ns;
    return 0;
}

int as_report_add(as_report *r, const char *name, const char *display_name, double dur_ns,
                  int is_error) {
    rstat *s = row_for(r, name);
    if (!s)
        return -1;
    if (dur_ns >= 0) {
        if (add_sample(r, s, dur_ns) < 0)
            return -1;
        if (s->timed == 0 || dur_ns < s->min_ns)
            s->min_ns = dur_ns;
        if (s->timed == 0 || dur_ns > s->max_ns)
            s->max_ns = dur_ns;
        s->timed++;
        s->total_ns += dur_ns;
    }
    s->calls++;
    if (is_error)
        s->errors++;
    if (display_name && !s->display && (size_t)(s - r->stats) != (size_t)r->other)
        s->display = strdup(display_name); /* a failed copy only loses the label */
    return 0;
}

/* ---- parsing lines ------------------------------------------------------------------ */

int as_jsonl_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

int as_jsonl_precheck(const char *line, size_t len, const char **why) {
    if (as_jsonl_blank(line, len))
        return 1;
    if (memchr(line, '\0', len)) {
        if (why)
            *why = "not JSON"; /* cJSON would skip a NUL byte as if it were a space */
        return -1;
    }
    return 0;
}

cJSON *as_jsonl_parse(const char *line, size_t len) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (root && end && !as_jsonl_blank(end, len - (size_t)(end - line))) {
        cJSON_Delete(root); /* trailing bytes after the value: not one JSON value */
        root = NULL;
    }
    return root;
}

cJSON *as_jsonl_parse_text(const char *line, size_t len, const char **why) {
    /* Output must be valid UTF-8 whatever the input: bad bytes become U+FFFD (the line
     * still counts), and a \u escape cJSON would misread makes the line a bad one. */
    as_buf fixed;
    as_buf_init(&fixed);
    if (as_utf8_fix(&fixed, &line, &len) != 0) {
        *why = "out of memory";
        return NULL;
    }
    size_t bad_at;
    const char *bad_why;
    if (as_json_escapes_check(line, len, &bad_at, &bad_why) != 0) {
        as_buf_free(&fixed);
        *why = "not JSON (bad \\u escape)";
        return NULL;
    }
    cJSON *root = as_jsonl_parse(line, len);
    as_buf_free(&fixed); /* cJSON copied what it keeps */
    if (!root)
        *why = "not JSON";
    return root;
}

/* The longest duration taken as real, in ns (1e15 ms, about 31,700 years): a bigger
 * value (up to 1e308, which times scale would become inf) is a bad duration, and sums of
 * many accepted ones stay finite. */
#define MAX_DURATION_NS 1e21

int as_jsonl_duration(const cJSON *item, double scale, double max, double *out) {
    if (!item || cJSON_IsNull(item))
        return 0;
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble < 0)
        return -1;
    double v = item->valuedouble * scale;
    if (!isfinite(v) || v > max)
        return -1;
    *out = v;
    return 1;
}

int as_jsonl_read_line(const char *line, size_t len, const char **why, cJSON **root) {
    const char *dummy;
    if (!why)
        why = &dummy;
    int pre = as_jsonl_precheck(line, len, why);
    if (pre != 0)
        return pre;
    *root = as_jsonl_parse_text(line, len, why);
    return *root ? 0 : -1;
}

int as_report_line(as_report *r, const char *line, size_t len, const char **why) {
    cJSON *root = NULL;
    int pre = as_jsonl_read_line(line, len, why, &root);
    if (pre != 0)
        return pre;
    const char *dummy;
    if (!why)
        why = &dummy;
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        *why = "not an object";
        goto done;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "action_name");
    if (!cJSON_IsString(name) || !name->valuestring[0]) {
        *why = "no action_name";
        goto done;
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    const char *display = NULL;
    double dur = -1.0;
    int got = 0;
    if (cJSON_IsObject(meta)) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(meta, "display_name");
        if (cJSON_IsString(d) && d->valuestring[0])
            display = d->valuestring;
        got = as_jsonl_duration(cJSON_GetObjectItemCaseSensitive(meta, "duration_ns"), 1.0,
                                MAX_DURATION_NS, &dur);
    }
    if (got == 0)
        got = as_jsonl_duration(cJSON_GetObjectItemCaseSensitive(root, "duration_ms"), 1e6,
                                MAX_DURATION_NS, &dur);
    if (got < 0) {
        *why = "bad duration";
        goto done;
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error_msg");
    int is_error = err && !cJSON_IsNull(err);
    if (as_report_add(r, name->valuestring, display, got ? dur : -1.0, is_error) < 0) {
        *why = "out of memory";
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

/* ---- reading streams ---------------------------------------------------------------- */

typedef struct reader {
    FILE *f;
    size_t pos, end;
    int eof;
    char blk[READ_BLOCK];
} reader;

/* Appends n bytes to the report's line buffer. Returns 0, or -1 when out of memory. */
static int line_put(as_report *r, size_t *len, const char *p, size_t n) {
    if (*len + n + 1 > r->line_cap) {
        size_t ncap = r->line_cap ? r->line_cap : 4096;
        while (ncap < *len + n + 1)
            ncap *= 2;
        char *nl = realloc(r->line, ncap);
        if (!nl)
            return -1;
        r->line = nl;
        r->line_cap = ncap;
    }
    memcpy(r->line + *len, p, n);
    *len += n;
    return 0;
}

/* Reads the next line (without its '\n') into r->line. Returns 1 with *len set, 0 at the
 * end, -1 on a read error. *skip says why the line's bytes were dropped: NULL when kept,
 * "line too long" or "out of memory". Embedded NUL bytes are kept. */
static int read_line(as_report *r, reader *rd, size_t *len, const char **skip) {
    int any = 0;
    *len = 0;
    *skip = NULL;
    for (;;) {
        if (rd->pos == rd->end) {
            if (rd->eof)
                return any;
            size_t got = fread(rd->blk, 1, sizeof(rd->blk), rd->f);
            rd->pos = 0;
            rd->end = got;
            if (got == 0) {
                rd->eof = 1;
                if (ferror(rd->f))
                    return -1;
                return any;
            }
        }
        any = 1;
        const char *start = rd->blk + rd->pos;
        const char *nl = memchr(start, '\n', rd->end - rd->pos);
        size_t chunk = nl ? (size_t)(nl - start) : rd->end - rd->pos;
        if (!*skip) {
            if (*len + chunk > r->max_line)
                *skip = "line too long";
            else if (line_put(r, len, start, chunk) < 0)
                *skip = "out of memory";
        }
        rd->pos += chunk + (nl ? 1 : 0);
        if (r->line)
            r->line[*len] = '\0'; /* room kept by line_put; cJSON never needs it */
        if (nl)
            return 1;
    }
}

void as_bad_lines_note(as_bad_lines *b, uint64_t lineno, const char *why, const char *label) {
    if (b->n++ > 0)
        return;
    b->first_line = lineno;
    b->first_why = why;
    b->first_label = label ? strdup(label) : NULL;
}

void as_bad_lines_free(as_bad_lines *b) {
    free(b->first_label);
    b->first_label = NULL;
}

void as_bad_lines_print(const as_bad_lines *b, FILE *f, int several_files) {
    if (b->n == 0)
        return;
    unsigned long long n = (unsigned long long)b->n;
    unsigned long long at = (unsigned long long)b->first_line;
    if (several_files && b->first_label)
        fprintf(f, "report: %llu bad line%s skipped (first at line %llu of %s: %s)\n", n,
                n == 1 ? "" : "s", at, b->first_label, b->first_why);
    else
        fprintf(f, "report: %llu bad line%s skipped (first at line %llu: %s)\n", n,
                n == 1 ? "" : "s", at, b->first_why);
}

int as_report_stream(as_report *r, FILE *f, const char *label) {
    reader *rd = malloc(sizeof(*rd));
    if (!rd)
        return -1;
    rd->f = f;
    rd->pos = rd->end = 0;
    rd->eof = 0;
    uint64_t lineno = 0;
    int rc;
    size_t len;
    const char *skip;
    while ((rc = read_line(r, rd, &len, &skip)) == 1) {
        lineno++;
        if (skip) {
            as_bad_lines_note(&r->bad, lineno, skip, label);
            continue;
        }
        const char *why = NULL;
        if (as_report_line(r, r->line, len, &why) < 0)
            as_bad_lines_note(&r->bad, lineno, why, label);
    }
    free(rd);
    return rc < 0 ? -1 : 0;
}

uint64_t as_report_bad_lines(const as_report *r) {
    return r->bad.n;
}

void as_report_print_bad(const as_report *r, FILE *f, int several_files) {
    as_bad_lines_print(&r->bad, f, several_files);
}

/* ---- rows and sorting --------------------------------------------------------------- */

static const char *const sort_names[] = {"total", "calls", "mean", "p99", "errors", "name"};

int as_report_sort_parse(const char *s) {
    for (size_t i = 0; i < sizeof(sort_names) / sizeof(sort_names[0]); i++)
        if (strcmp(s, sort_names[i]) == 0)
            return (int)i;
    return -1;
}

static int sort_key; /* qsort has no context argument; rows are sorted on one thread */

static int cmp_desc(double a, double b) {
    return a > b ? -1 : a < b ? 1 : 0;
}

static int cmp_rows(const void *pa, const void *pb) {
    const as_report_row *a = pa, *b = pb;
    int c = 0;
    switch (sort_key) {
    case AS_SORT_TOTAL:
        c = cmp_desc(a->total_ms, b->total_ms);
        break;
    case AS_SORT_CALLS:
        c = cmp_desc((double)a->calls, (double)b->calls);
        break;
    case AS_SORT_MEAN:
        c = cmp_desc(a->mean_ms, b->mean_ms);
        break;
    case AS_SORT_P99:
        c = cmp_desc(a->p99_ms, b->p99_ms);
        break;
    case AS_SORT_ERRORS:
        c = cmp_desc((double)a->errors, (double)b->errors);
        break;
    default:
        break;
    }
    return c ? c : strcmp(a->action_name, b->action_name);
}

static int cmp_double(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return a < b ? -1 : a > b ? 1 : 0;
}

long as_report_rows(as_report *r, int sort, as_report_row **out) {
    *out = NULL;
    if (r->n == 0)
        return 0;
    as_report_row *rows = calloc(r->n, sizeof(*rows));
    if (!rows)
        return -1;
    for (size_t i = 0; i < r->n; i++) {
        rstat *s = &r->stats[i];
        as_report_row *w = &rows[i];
        w->action_name = s->name;
        w->display_name = s->display;
        w->calls = s->calls;
        w->errors = s->errors;
        w->timed = s->timed;
        w->exact = s->hist == NULL;
        if (s->timed == 0)
            continue;
        w->total_ms = s->total_ns / 1e6;
        w->mean_ms = s->total_ns / (double)s->timed / 1e6;
        w->max_ms = s->max_ns / 1e6;
        if (s->hist) {
            w->p50_ms = pct_hist(s, 50) / 1e6;
            w->p95_ms = pct_hist(s, 95) / 1e6;
            w->p99_ms = pct_hist(s, 99) / 1e6;
            continue;
        }
        qsort(s->samples, s->nsamples, sizeof(double), cmp_double);
        w->p50_ms = as_pct_exact(s->samples, s->nsamples, 50) / 1e6;
        w->p95_ms = as_pct_exact(s->samples, s->nsamples, 95) / 1e6;
        w->p99_ms = as_pct_exact(s->samples, s->nsamples, 99) / 1e6;
    }
    sort_key = sort;
    qsort(rows, r->n, sizeof(*rows), cmp_rows);
    *out = rows;
    return (long)r->n;
}

/* ---- output ------------------------------------------------------------------------- */

#define NCOLS 10
#define CELL 40

/* Display width of s in columns: UTF-8 code points (continuation bytes not counted). */
static size_t width_of(const char *s) {
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

/* Prints s with control characters shown as '?', padded to width (left-aligned). */
static void put_name(FILE *f, const char *s, size_t width, int last) {
    size_t w = width_of(s);
    for (; *s; s++)
        fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
    if (last)
        return;
    for (; w < width; w++)
        fputc(' ', f);
}

int as_report_print_table(const as_report_row *rows, size_t n, FILE *f) {
    static const char *const heads[NCOLS] = {"action_name", "display_name", "calls",  "errors",
                                             "total_ms",    "mean_ms",      "p50_ms", "p95_ms",
                                             "p99_ms",      "max_ms"};
    int show_display = 0;
    size_t width[NCOLS];
    for (int c = 0; c < NCOLS; c++)
        width[c] = strlen(heads[c]);
    char(*cells)[NCOLS - 2][CELL] = n ? malloc(n * sizeof(*cells)) : NULL;
    if (n && !cells)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const as_report_row *w = &rows[i];
        double v[] = {w->total_ms, w->mean_ms, w->p50_ms, w->p95_ms, w->p99_ms, w->max_ms};
        snprintf(cells[i][0], CELL, "%llu", (unsigned long long)w->calls);
        snprintf(cells[i][1], CELL, "%llu", (unsigned long long)w->errors);
        for (int k = 0; k < 6; k++)
            snprintf(cells[i][2 + k], CELL, "%.3f", v[k]);
        if (width_of(w->action_name) > width[0])
            width[0] = width_of(w->action_name);
        if (w->display_name) {
            show_display = 1;
            if (width_of(w->display_name) > width[1])
                width[1] = width_of(w->display_name);
        }
        for (int k = 0; k < NCOLS - 2; k++)
            if (strlen(cells[i][k]) > width[2 + k])
                width[2 + k] = strlen(cells[i][k]);
    }
    put_name(f, heads[0], width[0], 0);
    if (show_display) {
        fputs("  ", f);
        put_name(f, heads[1], width[1], 0);
    }
    for (int c = 2; c < NCOLS; c++)
        fprintf(f, "  %*s", (int)width[c], heads[c]);
    fputc('\n', f);
    for (size_t i = 0; i < n; i++) {
        put_name(f, rows[i].action_name, width[0], 0);
        if (show_display) {
            fputs("  ", f);
            put_name(f, rows[i].display_name ? rows[i].display_name : "-", width[1], 0);
        }
        for (int c = 2; c < NCOLS; c++)
            fprintf(f, "  %*s", (int)width[c], cells[i][c - 2]);
        fputc('\n', f);
    }
    free(cells);
    return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}

/* Milliseconds rounded to whole nanoseconds, so the JSON carries no float noise. */
static double ms_round(double ms) {
    return round(ms * 1e6) / 1e6;
}

int as_report_print_json(const as_report_row *rows, size_t n, FILE *f) {
    int rc = -1;
    char *text = NULL;
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const as_report_row *w = &rows[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            goto cleanup;
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "action_name", w->action_name);
        if (w->display_name)
            cJSON_AddStringToObject(o, "display_name", w->display_name);
        else
            cJSON_AddNullToObject(o, "display_name");
        cJSON_AddNumberToObject(o, "calls", (double)w->calls);
        cJSON_AddNumberToObject(o, "errors", (double)w->errors);
        cJSON_AddNumberToObject(o, "timed", (double)w->timed);
        cJSON_AddNumberToObject(o, "total_ms", ms_round(w->total_ms));
        cJSON_AddNumberToObject(o, "mean_ms", ms_round(w->mean_ms));
        cJSON_AddNumberToObject(o, "p50_ms", ms_round(w->p50_ms));
        cJSON_AddNumberToObject(o, "p95_ms", ms_round(w->p95_ms));
        cJSON_AddNumberToObject(o, "p99_ms", ms_round(w->p99_ms));
        if (!cJSON_AddNumberToObject(o, "max_ms", ms_round(w->max_ms)) ||
            !cJSON_AddBoolToObject(o, "exact", w->exact))
            goto cleanup;
    }
    text = cJSON_PrintUnformatted(arr);
    if (!text)
        goto cleanup;
    if (fputs(text, f) < 0 || fputc('\n', f) == EOF || fflush(f) != 0)
        goto cleanup;
    rc = 0;
cleanup:
    cJSON_free(text);
    cJSON_Delete(arr);
    return rc;
}

/* ---- the command -------------------------------------------------------------------- */

static const char usage[] =
    "usage: agentsight report [--format table|json|chrome] [--sort KEY] FILE.jsonl [FILE...]\n"
    "Per-action statistics from JSONL action files ('-' reads stdin): calls, errors,\n"
    "total/mean/p50/p95/p99/max duration in ms, sorted by total time by default; or the\n"
    "actions as a Chrome trace event timeline (Perfetto, chrome://tracing).\n"
    "  --format FMT   table (default), json (an array of objects) or chrome (one trace\n"
    "                 event per action, pid/tid lanes)\n"
    "  --json         the same as --format json\n"
    "  --sort KEY     total (default), calls, mean, p99, errors (descending) or name\n"
    "  -V, --version  print the version\n"
    "  -h, --help     show this help\n";

enum { FMT_TABLE, FMT_JSON, FMT_CHROME };

/* Converts every file to one Chrome trace on stdout. Returns the exit status: 0, or 1
 * when no file could be read or the output could not be written. */
static int chrome_files(char **files, int nfiles) {
    as_chrome *c = as_chrome_new(stdout);
    if (!c) {
        fprintf(stderr, "report: cannot write the output\n");
        return 1;
    }
    int nread = 0;
    for (int i = 0; i < nfiles; i++) {
        const char *path = files[i];
        int is_stdin = strcmp(path, "-") == 0;
        FILE *f = is_stdin ? stdin : fopen(path, "rb");
        if (!f) {
            fprintf(stderr, "report: %s: %s\n", path, strerror(errno));
            continue;
        }
        if (as_chrome_stream(c, f, is_stdin ? "stdin" : path) == 0)
            nread++;
        else
            fprintf(stderr, "report: %s: %s\n", path, strerror(errno ? errno : EIO));
        if (!is_stdin)
            fclose(f);
    }
    as_chrome_print_bad(c, stderr, nfiles > 1);
    int rc = 0;
    if (as_chrome_finish(c) < 0) {
        fprintf(stderr, "report: cannot write the output\n");
        rc = 1;
    } else if (nread == 0) {
        rc = 1;
    }
    as_chrome_free(c);
    return rc;
}

/* Reads one file (or stdin for "-") into r. Returns 0, or -1 when it could not be read
 * (a message is printed). */
static int report_file(as_report *r, const char *path) {
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "report: %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = as_report_stream(r, f, is_stdin ? "stdin" : path);
    int saved = errno;
    if (!is_stdin)
        fclose(f);
    if (rc < 0)
        fprintf(stderr, "report: %s: %s\n", path, strerror(saved ? saved : EIO));
    return rc;
}

int as_cmd_report(int argc, char **argv) {
    int format = FMT_TABLE, sort = AS_SORT_TOTAL, nfiles = 0, nread = 0, opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (opts_done || a[0] != '-' || strcmp(a, "-") == 0) {
            argv[1 + nfiles++] = argv[i]; /* compact the file names in place */
            continue;
        }
        if (strcmp(a, "--") == 0) {
            opts_done = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("agentsight %s\n", AGENTSIGHT_VERSION);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            format = FMT_JSON;
        } else if (strcmp(a, "--format") == 0 || strncmp(a, "--format=", 9) == 0) {
            const char *v = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : "");
            if (strcmp(v, "table") == 0)
                format = FMT_TABLE;
            else if (strcmp(v, "json") == 0)
                format = FMT_JSON;
            else if (strcmp(v, "chrome") == 0)
                format = FMT_CHROME;
            else {
                fprintf(stderr, "report: --format expects table, json or chrome\n%s", usage);
                return 2;
            }
        } else if (strcmp(a, "--sort") == 0 || strncmp(a, "--sort=", 7) == 0) {
            const char *key = a[6] == '=' ? a + 7 : (i + 1 < argc ? argv[++i] : NULL);
            sort = key ? as_report_sort_parse(key) : -1;
            if (sort < 0) {
                fprintf(stderr,
                        "report: --sort expects total, calls, mean, p99, errors or "
                        "name\n%s",
                        usage);
                return 2;
            }
        } else {
            fprintf(stderr, "report: unknown option '%s'\n%s", a, usage);
            return 2;
        }
    }
    if (nfiles == 0) {
        fprintf(stderr, "report: no input file (use '-' for stdin)\n%s", usage);
        return 2;
    }
    if (format == FMT_CHROME)
        return chrome_files(argv + 1, nfiles);
    int json = format == FMT_JSON;
    as_report *r = as_report_new(0);
    if (!r) {
        fprintf(stderr, "report: out of memory\n");
        return 1;
    }
    for (int i = 0; i < nfiles; i++)
        if (report_file(r, argv[1 + i]) == 0)
            nread++;
    as_report_print_bad(r, stderr, nfiles > 1);
    if (nread == 0) {
        as_report_free(r);
        return 1;
    }
    as_report_row *rows = NULL;
    long n = as_report_rows(r, sort, &rows);
    int rc = 0;
    if (n < 0) {
        fprintf(stderr, "report: out of memory\n");
        rc = 1;
    } else {
        int approx = 0;
        for (long i = 0; i < n; i++)
            approx += !rows[i].exact;
        int w = json ? as_report_print_json(rows, (size_t)n, stdout)
                     : as_report_print_table(rows, (size_t)n, stdout);
        if (w < 0) {
            fprintf(stderr, "report: cannot write the output\n");
            rc = 1;
        } else if (approx && !json) {
            fprintf(stderr,
                    "report: percentiles of %d name%s estimated from a histogram "
                    "(relative error < 1%%)\n",
                    approx, approx == 1 ? "" : "s");
        }
    }
    free(rows);
    as_report_free(r);
    return rc;
}
