/* test_report.c - unit tests of the `agentsight report` statistics: nearest-rank
 * percentiles, the histogram's accuracy, sorting, bad lines and both output formats. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"
#include "cli/report.h"

/* Returns the row named name in rows (fails the test when absent). */
static const as_report_row *find_row(const as_report_row *rows, long n, const char *name) {
    for (long i = 0; i < n; i++)
        if (strcmp(rows[i].action_name, name) == 0)
            return &rows[i];
    fail_msg("no row %s", name);
    return NULL;
}

/* Feeds text to r as a stream labelled "t.jsonl". */
static void feed(as_report *r, const char *text) {
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    assert_int_equal(as_report_stream(r, f, "t.jsonl"), 0);
    fclose(f);
}

/* Proves the documented nearest-rank definition: 1..100 gives p50 50, p95 95, p99 99,
 * and small n rounds the rank up (n=1: every percentile is the value). */
static void test_pct_nearest_rank(void **state) {
    double v[100];
    for (int i = 0; i < 100; i++)
        v[i] = i + 1;
    assert_true(as_pct_exact(v, 100, 50) == 50);
    assert_true(as_pct_exact(v, 100, 95) == 95);
    assert_true(as_pct_exact(v, 100, 99) == 99);
    assert_true(as_pct_exact(v, 100, 100) == 100);
    assert_true(as_pct_exact(v, 1, 50) == 1);
    assert_true(as_pct_exact(v, 10, 95) == 10); /* rank ceil(9.5) = 10 */
    assert_true(as_pct_exact(v, 10, 50) == 5);
    assert_true(as_pct_exact(v, 0, 50) == 0);
}

/* Proves the rows of 1..100 ms added in shuffled order give exact count, total, mean,
 * percentiles and max, and that the row says its percentiles are exact. */
static void test_rows_exact(void **state) {
    as_report *r = as_report_new(0);
    assert_non_null(r);
    for (int i = 0; i < 100; i++) {
        int v = (i * 37) % 100 + 1; /* a permutation of 1..100 */
        assert_int_equal(as_report_add(r, "tool", NULL, v * 1e6, v % 10 == 0), 0);
    }
    as_report_row *rows;
    assert_int_equal(as_report_rows(r, AS_SORT_TOTAL, &rows), 1);
    assert_string_equal(rows[0].action_name, "tool");
    assert_int_equal(rows[0].calls, 100);
    assert_int_equal(rows[0].errors, 10);
    assert_true(fabs(rows[0].total_ms - 5050) < 1e-6);
    assert_true(fabs(rows[0].mean_ms - 50.5) < 1e-9);
    assert_true(rows[0].p50_ms == 50 && rows[0].p95_ms == 95 && rows[0].p99_ms == 99);
    assert_true(rows[0].max_ms == 100);
    assert_true(rows[0].exact);
    free(rows);
    as_report_free(r);
}

/* Proves every bucket's representative value is within 1% of any value in the bucket,
 * from 1 ns to hours, and that sub-ns durations land in bucket 0. */
static void test_hist_bucket_error(void **state) {
    for (double v = 1.0; v < 1e13; v *= 1.0007) {
        double rep = as_hist_value(as_hist_index(v));
        assert_true(fabs(rep - v) / v <= 0.01);
    }
    assert_int_equal(as_hist_index(0.0), 0);
    assert_int_equal(as_hist_index(0.5), 0);
    assert_int_equal(as_hist_index(NAN), 0);
    assert_int_equal(as_hist_index(1e300), AS_HIST_BUCKETS - 1);
}

static uint64_t lcg_state = 88172645463325252ull;
static double next_uniform(void) {
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg_state >> 11) / 9007199254740992.0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Proves that past the exact cap the histogram's p50/p95/p99 stay within 1% of the exact
 * nearest-rank values of 50000 log-spread durations, while count, total and max stay exact. */
static void test_hist_mode_accuracy(void **state) {
    enum { N = 50000 };
    double *v = malloc(N * sizeof(*v));
    assert_non_null(v);
    as_report *r = as_report_new(64);
    assert_non_null(r);
    double total = 0;
    for (int i = 0; i < N; i++) {
        v[i] = floor(exp(next_uniform() * 20.0)) + 100; /* 100 ns .. ~0.5 s */
        total += v[i];
        assert_int_equal(as_report_add(r, "spread", NULL, v[i], 0), 0);
    }
    qsort(v, N, sizeof(*v), cmp_d);
    as_report_row *rows;
    assert_int_equal(as_report_rows(r, AS_SORT_TOTAL, &rows), 1);
    assert_false(rows[0].exact);
    assert_int_equal(rows[0].calls, N);
    assert_true(fabs(rows[0].total_ms - total / 1e6) / (total / 1e6) < 1e-12);
    assert_true(rows[0].max_ms == v[N - 1] / 1e6);
    double want[3] = {as_pct_exact(v, N, 50), as_pct_exact(v, N, 95), as_pct_exact(v, N, 99)};
    double got[3] = {rows[0].p50_ms * 1e6, rows[0].p95_ms * 1e6, rows[0].p99_ms * 1e6};
    for (int k = 0; k < 3; k++)
        assert_true(fabs(got[k] - want[k]) / want[k] <= 0.01);
    free(rows);
    free(v);
    as_report_free(r);
}

/* Proves each --sort key orders rows as documented (descending, ties and "name" by name
 * ascending) and that unknown keys are refused. */
static void test_sorting(void **state) {
    as_report *r = as_report_new(0);
    assert_non_null(r);
    /* a: 1 call of 100 ms; b: 3 calls of 10 ms, 2 errors; c: 2 calls 20+200 ms */
    as_report_add(r, "a", NULL, 100e6, 0);
    for (int i = 0; i < 3; i++)
        as_report_add(r, "b", NULL, 10e6, i < 2);
    as_report_add(r, "c", NULL, 20e6, 0);
    as_report_add(r, "c", NULL, 200e6, 0);
    struct {
        const char *key;
        const char *order;
    } cases[] = {{"total", "cab"}, {"calls", "bca"},  {"mean", "cab"},
                 {"p99", "cab"},   {"errors", "bac"}, {"name", "abc"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int key = as_report_sort_parse(cases[i].key);
        assert_true(key >= 0);
        as_report_row *rows;
        assert_int_equal(as_report_rows(r, key, &rows), 3);
        char order[4] = {rows[0].action_name[0], rows[1].action_name[0], rows[2].action_name[0], 0};
        assert_string_equal(order, cases[i].order);
        free(rows);
    }
    assert_int_equal(as_report_sort_parse("bogus"), -1);
    assert_int_equal(as_report_sort_parse(""), -1);
    as_report_free(r);
}

/* Proves bad lines (not JSON, trailing garbage, not an object, no action_name, a negative
 * duration, an embedded NUL) are counted, not added, and reported with the first line
 * number and reason, while blank lines are ignored and good lines still count. */
static void test_bad_lines(void **state) {
    static const char text[] = "{\"action_name\":\"ok\",\"duration_ms\":5}\n"
                               "\n"
                               "this is not json\n"
                               "{\"action_name\":\"ok\",\"duration_ms\":7} trailing\n"
                               "[1,2]\n"
                               "{\"duration_ms\":3}\n"
                               "{\"action_name\":\"ok\",\"duration_ms\":-1}\n"
                               "{\"action_name\":\"ok\"\0,\"duration_ms\":9}\n"
                               "   \r\n"
                               "{\"action_name\":\"ok\",\"duration_ms\":6}";
    as_report *r = as_report_new(0);
    assert_non_null(r);
    FILE *f = fmemopen((void *)text, sizeof(text) - 1, "r");
    assert_non_null(f);
    assert_int_equal(as_report_stream(r, f, "t.jsonl"), 0);
    fclose(f);
    assert_int_equal(as_report_bad_lines(r), 6);
    as_report_row *rows;
    assert_int_equal(as_report_rows(r, AS_SORT_TOTAL, &rows), 1);
    assert_int_equal(rows[0].calls, 2);
    assert_true(rows[0].total_ms == 11);
    free(rows);

    char *msg = NULL;
    size_t msglen = 0;
    FILE *m = open_memstream(&msg, &msglen);
    as_report_print_bad(r, m, 0);
    as_report_print_bad(r, m, 1);
    fclose(m);
    assert_string_equal(msg, "report: 6 bad lines skipped (first at line 3: not JSON)\n"
                             "report: 6 bad lines skipped (first at line 3 of t.jsonl: not "
                             "JSON)\n");
    free(msg);
    as_report_free(r);
}

/* Proves the per-line reasons given for each kind of bad line. */
static void test_bad_line_reasons(void **state) {
    as_report *r = as_report_new(0);
    assert_non_null(r);
    struct {
        const char *line;
        int rc;
        const char *why;
    } cases[] = {
        {"{", -1, "not JSON"},
        {"\"x\"", -1, "not an object"},
        {"{\"action_name\":\"\"}", -1, "no action_name"},
        {"{\"action_name\":5}", -1, "no action_name"},
        {"{\"action_name\":\"a\",\"duration_ms\":\"5\"}", -1, "bad duration"},
        {"{\"action_name\":\"a\",\"metadata\":{\"duration_ns\":-4}}", -1, "bad duration"},
        {"  ", 1, NULL},
        {"{\"action_name\":\"a\",\"duration_ms\":null}", 0, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *why = NULL;
        assert_int_equal(as_report_line(r, cases[i].line, strlen(cases[i].line), &why),
                         cases[i].rc);
        if (cases[i].why)
            assert_string_equal(why, cases[i].why);
    }
    as_report_row *rows;
    assert_int_equal(as_report_rows(r, AS_SORT_TOTAL, &rows), 1);
    assert_int_equal(rows[0].calls, 1);
    assert_int_equal(rows[0].timed, 0); /* a null duration counts the call, not a time */
    free(rows);
    as_report_free(r);
}

/* Proves a duration whose value in ns would be infinite (1e308 ms) or absurd (more than
 * 1e15 ms) is a bad line, not an inf/NaN in the totals, while 1e15 ms itself is kept and
 * the JSON output stays finite. */
static void test_huge_duration(void **state) {
    as_report *r = as_report_new(0);
    assert_non_null(r);
    const char *bad[] = {
        "{\"action_name\":\"h\",\"duration_ms\":1e308}",
        "{\"action_name\":\"h\",\"duration_ms\":1.0000001e15}",
        "{\"action_name\":\"h\",\"metadata\":{\"duration_ns\":1e300}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        assert_int_equal(as_report_line(r, bad[i], strlen(bad[i]), &why), -1);
        assert_string_equal(why, "bad duration");
    }
    const char *ok = "{\"action_name\":\"h\",\"duration_ms\":1e15}";
    assert_int_equal(as_report_line(r, ok, strlen(ok), NULL), 0);
    assert_int_equal(as_report_line(r, ok, strlen(ok), NULL), 0);
    as_report_row *rows;
    assert_int_equal(as_report_rows(r, AS_SORT_TOTAL, &rows), 1);
    assert_int_equal(rows[0].calls, 2);
    assert_true(isfinite(rows[0].total_ms));
    assert_true(fabs(rows[0].total_ms - 2e15) < 1e3);
    assert_true(isfinite(rows[0].max_ms));
    free(rows);
    as_report_free(r);
}

/* Proves metadata.duration_ns wins over duration_ms, metadata.display_name is kept, and
 * error_msg counts as an error only when it is not null. */
static void test_fields(void **state) {
    as_report *r = as_report_new(0);
    assert_non_null(r);
    feed(r, "{\"action_name\":\"f\",\"duration_ms\":1,\"metadata\":{\"duration_ns\":1500,"
            "\"display_name\":\"Eff\"},\"error_msg\":null}\n"
            "{\"action_name\":\"f\",\"duration_ms\":2,\"error_msg\":\"boom\"}\n");
    as_report_row *rows;
    assert_int_equal(as_report_rows(r, AS_SORT_TOTAL, &rows), 1);
    assert_string_equal(rows[0].display_name, "Eff");
    assert_int_equal(rows[0].errors, 1);
    assert_true(fabs(rows[0].total_ms - 2.0015) < 1e-9);
    assert_true(fabs(rows[0].max_ms - 2.0) < 1e-12);
    free(rows);
    as_report_free(r);
}

/* Proves a line longer than the limit is one bad line ("line too long") and the reader
 * resynchronises on the next line. */
static void test_long_line(void **state) {
    as_report *r = as_report_new(0);
    assert_non_null(r);
    as_report_set_max_line(r, 100);
    size_t big = 200000;
    char *text = malloc(big + 200);
    assert_non_null(text);
    int n = sprintf(text, "{\"action_name\":\"long\",\"response\":\"");
    memset(text + n, 'x', big);
    strcpy(text + n + big, "\"}\n{\"action_name\":\"short\",\"duration_ms\":1}\n");
    feed(r, text);
    free(text);
    assert_int_equal(as_report_bad_lines(r), 1);
    as_report_row *rows;
    assert_int_equal(as_report_rows(r, AS_SORT_TOTAL, &rows), 1);
    assert_string_equal(rows[0].action_name, "short");
    free(rows);
    as_report_free(r);
}

/* Proves a line far longer than the read block (no fixed-size buffer) parses whole. */
static void test_very_long_valid_line(void **state) {
    as_report *r = as_report_new(0);
    assert_non_null(r);
    size_t big = 1 << 20;
    char *text = malloc(big + 200);
    assert_non_null(text);
    int n = sprintf(text, "{\"action_name\":\"long\",\"response\":\"");
    memset(text + n, 'y', big);
    strcpy(text + n + big, "\",\"duration_ms\":4}\n");
    feed(r, text);
    free(text);
    assert_int_equal(as_report_bad_lines(r), 0);
    as_report_row *rows;
    assert_int_equal(as_report_rows(r, AS_SORT_TOTAL, &rows), 1);
    assert_true(rows[0].total_ms == 4);
    free(rows);
    as_report_free(r);
}

/* Proves the number of rows is bounded: names past AS_REPORT_MAX_NAMES share one row. */
static void test_name_cap(void **state) {
    as_report *r = as_report_new(0);
    assert_non_null(r);
    char name[32];
    for (int i = 0; i < AS_REPORT_MAX_NAMES + 10; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        assert_int_equal(as_report_add(r, name, NULL, 1e6, 0), 0);
    }
    assert_int_equal(as_report_add(r, "n0", NULL, 1e6, 0), 0); /* existing names still count */
    as_report_row *rows;
    long n = as_report_rows(r, AS_SORT_NAME, &rows);
    assert_int_equal(n, AS_REPORT_MAX_NAMES + 1);
    assert_int_equal(find_row(rows, n, AS_REPORT_OTHER)->calls, 10);
    assert_int_equal(find_row(rows, n, "n0")->calls, 2);
    free(rows);
    as_report_free(r);
}

/* Proves --json output is a JSON array whose objects carry the computed values. */
static void test_json_output(void **state) {
    as_report *r = as_report_new(0);
    assert_non_null(r);
    feed(r, "{\"action_name\":\"w\",\"duration_ms\":800,\"metadata\":{\"display_name\":\"W\"}}\n"
            "{\"action_name\":\"w\",\"duration_ms\":200,\"error_msg\":\"e\"}\n"
            "{\"action_name\":\"q\",\"duration_ms\":50}\n");
    as_report_row *rows;
    long n = as_report_rows(r, AS_SORT_TOTAL, &rows);
    assert_int_equal(n, 2);
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    assert_int_equal(as_report_print_json(rows, (size_t)n, m), 0);
    fclose(m);
    cJSON *arr = cJSON_Parse(out);
    assert_true(cJSON_IsArray(arr));
    assert_int_equal(cJSON_GetArraySize(arr), 2);
    cJSON *w = cJSON_GetArrayItem(arr, 0);
    assert_string_equal(cJSON_GetObjectItem(w, "action_name")->valuestring, "w");
    assert_string_equal(cJSON_GetObjectItem(w, "display_name")->valuestring, "W");
    assert_true(cJSON_GetObjectItem(w, "calls")->valuedouble == 2);
    assert_true(cJSON_GetObjectItem(w, "errors")->valuedouble == 1);
    assert_true(cJSON_GetObjectItem(w, "total_ms")->valuedouble == 1000);
    assert_true(cJSON_GetObjectItem(w, "mean_ms")->valuedouble == 500);
    assert_true(cJSON_GetObjectItem(w, "p50_ms")->valuedouble == 200);
    assert_true(cJSON_GetObjectItem(w, "p99_ms")->valuedouble == 800);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(w, "exact")));
    cJSON *q = cJSON_GetArrayItem(arr, 1);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(q, "display_name")));
    cJSON_Delete(arr);
    free(out);
    free(rows);
    as_report_free(r);
}

/* Prints rows as a table into a malloc'd string. */
static char *table_of(as_report *r) {
    as_report_row *rows;
    long n = as_report_rows(r, AS_SORT_TOTAL, &rows);
    assert_true(n >= 0);
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    assert_int_equal(as_report_print_table(rows, (size_t)n, m), 0);
    fclose(m);
    free(rows);
    return out;
}

/* Proves the table is aligned (every line equally wide), shows values with 3 decimals,
 * and has a display_name column only when some action has one. */
static void test_table_output(void **state) {
    as_report *r = as_report_new(0);
    assert_non_null(r);
    as_report_add(r, "short", NULL, 1.5e6, 0);
    as_report_add(r, "a_much_longer_name", NULL, 12345.678e6, 1);
    char *t = table_of(r);
    assert_null(strstr(t, "display_name"));
    assert_non_null(strstr(t, "12345.678"));
    assert_non_null(strstr(t, "1.500"));
    size_t w = strcspn(t, "\n");
    int lines = 0;
    for (char *p = t; *p; p += strcspn(p, "\n") + 1, lines++)
        assert_int_equal(strcspn(p, "\n"), w);
    assert_int_equal(lines, 3);
    free(t);
    as_report_add(r, "named", "Nice Name", 1e6, 0);
    t = table_of(r);
    assert_non_null(strstr(t, "display_name"));
    assert_non_null(strstr(t, "Nice Name"));
    free(t);
    as_report_free(r);
}

/* Proves the command's exit statuses: 2 for usage errors, 1 when no file could be read. */
static void test_cmd_exit_status(void **state) {
    char a0[] = "report", missing[] = "/nonexistent/agentsight.jsonl", bad[] = "--sort",
         key[] = "bogus", opt[] = "--frobnicate";
    char *none[] = {a0, NULL};
    assert_int_equal(as_cmd_report(1, none), 2);
    char *unread[] = {a0, missing, NULL};
    assert_int_equal(as_cmd_report(2, unread), 1);
    char *badsort[] = {a0, bad, key, missing, NULL};
    assert_int_equal(as_cmd_report(4, badsort), 2);
    char *badopt[] = {a0, opt, missing, NULL};
    assert_int_equal(as_cmd_report(3, badopt), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pct_nearest_rank),  cmocka_unit_test(test_rows_exact),
        cmocka_unit_test(test_hist_bucket_error), cmocka_unit_test(test_hist_mode_accuracy),
        cmocka_unit_test(test_sorting),           cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_bad_line_reasons),  cmocka_unit_test(test_fields),
        cmocka_unit_test(test_long_line),         cmocka_unit_test(test_very_long_valid_line),
        cmocka_unit_test(test_name_cap),          cmocka_unit_test(test_json_output),
        cmocka_unit_test(test_table_output),      cmocka_unit_test(test_cmd_exit_status),
        cmocka_unit_test(test_huge_duration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
