/* test_diag.c - unit tests of the once-per-run diagnostics: the records processes append
 * (core/diag.c) and their aggregation by `agentsight run` (cli/diag_agg.c): dedup per
 * message and process, counts, unmatched entries, bad records, the log file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/diag_agg.h"
#include "core/diag.h"
#include "core/log.h"

/* Adds each line of text (newline-separated records) to agg. */
static void feed(as_diag_agg *agg, const char *text) {
    while (*text) {
        const char *nl = strchr(text, '\n');
        size_t n = nl ? (size_t)(nl - text) + 1 : strlen(text);
        assert_int_equal(as_diag_agg_line(agg, text, n), 0);
        text += n;
    }
}

/* What as_diag_agg_print prints for agg (cwd as given); the caller frees it. */
static char *printed(const as_diag_agg *agg, const char *cwd) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    as_diag_agg_print(agg, f, cwd);
    fclose(f);
    return buf;
}

/* Asserts that agg prints exactly want (cwd as given). */
static void assert_printed(const as_diag_agg *agg, const char *cwd, const char *want) {
    char *out = printed(agg, cwd);
    assert_string_equal(out, want);
    free(out);
}

/* Proves a message written by every process is printed once without a count, one
 * written by some processes says in how many, and a process repeating a message counts
 * once. */
static void test_dedup_and_counts(void **state) {
    as_diag_agg *agg = as_diag_agg_new();
    assert_non_null(agg);
    feed(agg, "M\t10.1\terror\t/c/a.conf:2:1: bad line\n"
              "M\t11.1\terror\t/c/a.conf:2:1: bad line\n"
              "M\t11.1\terror\t/c/a.conf:2:1: bad line\n"
              "M\t12.1\terror\t/c/a.conf:2:1: bad line\n"
              "M\t11.1\twarning\tspool: no room\n"
              "M\t12.1\twarning\tspool: no room\n"
              "M\t12.1\twarning\tspool: no room\n"
              "E\t10.1\nE\t11.1\nE\t12.1\n");
    assert_int_equal(as_diag_agg_processes(agg), 3);
    assert_int_equal(as_diag_agg_ended(agg), 3);
    assert_printed(agg, NULL,
                   "agentsight: error: /c/a.conf:2:1: bad line\n"
                   "agentsight: warning: spool: no room (in 2 of 3 processes)\n");
    as_diag_agg_free(agg);
}

/* Proves an entry is named only when every process that ended reported it unmatched
 * (one that matched it anywhere is silent), with the count of those processes, and a
 * config path under cwd is shown relative to it. */
static void test_unmatched_only_when_nowhere(void **state) {
    as_diag_agg *agg = as_diag_agg_new();
    feed(agg, "U\t1.5\t/w/agent.conf\t3\tx\tfunction\n"
              "U\t1.5\t/w/agent.conf\t4\ty\tfunction\n"
              "E\t1.5\n"
              "U\t2.5\t/w/agent.conf\t3\tx\tfunction\n"
              "U\t2.5\t/w/agent.conf\t5\tz@V1\texported function\n"
              "E\t2.5\n"
              "U\t3.5\t/w/agent.conf\t3\tx\tfunction\n"
              "U\t3.5\t/w/agent.conf\t4\ty\tfunction\n"
              "U\t3.5\t/w/agent.conf\t5\tz@V1\texported function\n"
              "E\t3.5\n");
    assert_printed(agg, "/w",
                   "agentsight: entry 'x' (agent.conf:3) matched nothing in any "
                   "of 3 processes\n");
    feed(agg, "U\t4.5\t/w/agent.conf\t5\tz@V1\texported function\nE\t4.5\n");
    /* x: 3 of 4 now; z: only in 3 of 4 too; nothing is named. */
    assert_printed(agg, "/elsewhere", "");
    as_diag_agg_free(agg);
}

/* Proves a process that only ended (E alone: a child forked without exec, which inherits
 * the config errors its parent's image reported at start) is not counted among the
 * processes a message is shown against: an error both reporting processes wrote reads
 * without "(in N of M processes)". */
static void test_forked_children_not_counted(void **state) {
    as_diag_agg *agg = as_diag_agg_new();
    feed(agg, "M\t20.7\terror\ta.conf:3:1: unknown type\n"
              "M\t21.8\terror\ta.conf:3:1: unknown type\n"
              "E\t22.7\nE\t23.7\nE\t20.7\nE\t21.8\n");
    assert_int_equal(as_diag_agg_processes(agg), 2);
    assert_int_equal(as_diag_agg_ended(agg), 4);
    assert_printed(agg, NULL, "agentsight: error: a.conf:3:1: unknown type\n");
    as_diag_agg_free(agg);
}

/* Proves one process's unmatched entry reads "any of 1 process", and a process that
 * never ended (killed) does not count among the processes an entry is checked against. */
static void test_unmatched_singular_and_killed(void **state) {
    as_diag_agg *agg = as_diag_agg_new();
    feed(agg, "M\t7.1\terror\tboom\nU\t8.1\t/a.conf\t2\tf\tfunction\nE\t8.1\n");
    assert_printed(agg, NULL,
                   "agentsight: error: boom (in 1 of 2 processes)\n"
                   "agentsight: entry 'f' (/a.conf:2) matched nothing in any of "
                   "1 process\n");
    as_diag_agg_free(agg);
}

/* Proves malformed records (unknown kind, wrong field count, no id, line 0, empty) are
 * skipped and print nothing. */
static void test_bad_records_skipped(void **state) {
    as_diag_agg *agg = as_diag_agg_new();
    feed(agg, "X\t1.1\tfoo\n"
              "M\t1.1\twarning\n"
              "M\t\twarning\tno id\n"
              "U\t1.1\t/a.conf\t0\tf\tfunction\n"
              "U\t1.1\t/a.conf\t2\tf\n"
              "E\n"
              "\n"
              "MM\t1.1\twarning\tx\n");
    assert_int_equal(as_diag_agg_skipped(agg), 8);
    assert_int_equal(as_diag_agg_processes(agg), 0);
    assert_printed(agg, NULL, "");
    as_diag_agg_free(agg);
}

/* Proves many processes and many distinct messages stay bounded: 20000 processes are
 * all counted, and messages beyond the table's 1000 are summarised in one line. */
static void test_many(void **state) {
    as_diag_agg *agg = as_diag_agg_new();
    char line[128];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(line, sizeof line, "M\t%d.9\tinfo\tmsg %d\n", i, i % 1002);
        assert_int_equal(as_diag_agg_line(agg, line, (size_t)n), 0);
    }
    assert_int_equal(as_diag_agg_processes(agg), 20000);
    char *out = printed(agg, NULL);
    int lines = 0;
    for (const char *p = out; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 1001);
    /* msg 1000 and msg 1001 came 19 and 19 times (i % 1002 over 20000): 38 records. */
    assert_non_null(strstr(out, "agentsight: 38 more records of other messages not shown\n"));
    assert_non_null(strstr(out, "agentsight: info: msg 0 (in 20 of 20000 processes)\n"));
    free(out);
    as_diag_agg_free(agg);
}

/* Proves the records of real processes round-trip: 5 fork children each report the
 * same warning (with a tab and a newline, written as spaces) and the same unmatched
 * entry, then end; the aggregate says each once, with 5 processes. */
static void test_records_of_processes(void **state) {
    char path[] = "/tmp/agentsight-test-diag-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unsetenv("AGENTSIGHT_LOG");
    setenv("AGENTSIGHT_DIAG_FILE", path, 1);
    as_log_set_level(AS_LOG_WARN);
    for (int i = 0; i < 5; i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            as_warn("same\tthing\nhere");
            as_warn("same\tthing\nhere");
            as_info("below the level: never recorded");
            as_diag_unmatched("/w/a.conf", 3, "tool_x", 0);
            as_diag_end();
            _exit(0);
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
    }
    unsetenv("AGENTSIGHT_DIAG_FILE");
    as_diag_agg *agg = as_diag_agg_new();
    assert_int_equal(as_diag_agg_read(agg, path), 0);
    assert_int_equal(as_diag_agg_processes(agg), 5);
    assert_int_equal(as_diag_agg_ended(agg), 5);
    assert_int_equal(as_diag_agg_skipped(agg), 0);
    assert_printed(agg, "/w",
                   "agentsight: warning: same thing here\n"
                   "agentsight: entry 'tool_x' (a.conf:3) matched nothing in any "
                   "of 5 processes\n");
    as_diag_agg_free(agg);
    unlink(path);
}

/* Proves AGENTSIGHT_LOG takes every message, diagnostics and alerts alike, one line each
 * with the pid, and an unmatched entry becomes a warning line there. */
static void test_log_file(void **state) {
    char path[] = "/tmp/agentsight-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    setenv("AGENTSIGHT_LOG", path, 1);
    setenv("AGENTSIGHT_DIAG_FILE", "/nonexistent/never-written", 1);
    as_warn("a diagnostic %d", 1);
    as_alert_error("an alert");
    as_alert(AS_LOG_ALWAYS, "3 actions dropped (queue full)");
    as_diag_unmatched("/w/a.conf", 7, "f", 1);
    as_diag_end();
    unsetenv("AGENTSIGHT_LOG");
    unsetenv("AGENTSIGHT_DIAG_FILE");
    char want[1024];
    long pid = (long)getpid();
    snprintf(want, sizeof want,
             "agentsight[%ld]: warning: a diagnostic 1\n"
             "agentsight[%ld]: error: an alert\n"
             "agentsight[%ld]: 3 actions dropped (queue full)\n"
             "agentsight[%ld]: warning: /w/a.conf:7:1: 'f' matched no exported function of the "
             "objects this process loaded\n",
             pid, pid, pid, pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char got[1024];
    size_t n = fread(got, 1, sizeof got - 1, f);
    got[n] = '\0';
    fclose(f);
    assert_string_equal(got, want);
    unlink(path);
}

/* Proves a record field has tabs and newlines replaced and is cut to fit, NUL-terminated. */
static void test_put_field(void **state) {
    char buf[8];
    size_t n = as_diag_put_field(buf, 0, sizeof buf, "a\tb\nc\rdefgh");
    assert_int_equal(n, 7);
    assert_string_equal(buf, "a b c d");
    n = as_diag_put_field(buf, 2, 4, "xyz");
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "a x", 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedup_and_counts),
        cmocka_unit_test(test_unmatched_only_when_nowhere),
        cmocka_unit_test(test_unmatched_singular_and_killed),
        cmocka_unit_test(test_forked_children_not_counted),
        cmocka_unit_test(test_bad_records_skipped),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_records_of_processes),
        cmocka_unit_test(test_log_file),
        cmocka_unit_test(test_put_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
