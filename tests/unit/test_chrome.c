/* test_chrome.c - unit tests of the Chrome trace writer behind `agentsight report --format
 * chrome`: the output parses as one JSON object, each action gives one complete event with
 * the right times, lanes and args, lanes get their names, bad lines are refused. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/chrome.h"
#include "core/jsonw.h"

/* Converts text (JSONL) and returns the parsed output; *bad gets the bad-line count. */
static cJSON *convert(const char *text, uint64_t *bad) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    as_chrome *c = as_chrome_new(out);
    assert_non_null(c);
    FILE *in = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(in);
    assert_int_equal(as_chrome_stream(c, in, "t.jsonl"), 0);
    fclose(in);
    assert_int_equal(as_chrome_finish(c), 0);
    if (bad)
        *bad = as_chrome_bad_lines(c);
    as_chrome_free(c);
    fclose(out);
    cJSON *root = cJSON_Parse(buf);
    free(buf);
    assert_non_null(root);
    return root;
}

/* Returns the n-th event whose "ph" is ph (NULL when there is none). */
static const cJSON *nth(const cJSON *root, const char *ph, int n) {
    const cJSON *ev;
    cJSON_ArrayForEach(ev, cJSON_GetObjectItem(root, "traceEvents")) {
        if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(ev, "ph")), ph) == 0 && n-- == 0)
            return ev;
    }
    return NULL;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static const char *str(const cJSON *o, const char *key) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(o, key));
    assert_non_null(s);
    return s;
}

/* Proves an interposer action becomes one X event: ts from started_at in us, dur from
 * metadata.duration_ns, pid/tid from metadata, arguments/response/error in args. */
static void test_one_action(void **state) {
    (void)state;
    cJSON *root =
        convert("{\"action_name\":\"sqlite3_exec\",\"started_at\":\"2026-01-02T03:04:05.123456Z\","
                "\"ended_at\":\"2026-01-02T03:04:05.125456Z\",\"duration_ms\":2,"
                "\"tools_used\":{\"function\":\"sqlite3_exec\",\"library\":\"libsqlite3.so.0\","
                "\"parameters\":{\"sql\":\"select 1\",\"n\":3}},\"response\":\"1\","
                "\"error_msg\":\"no such table\",\"conversation_id\":\"c1\","
                "\"metadata\":{\"pid\":10,\"tid\":12,\"duration_ns\":2000500}}\n",
                NULL);
    const cJSON *ev = nth(root, "X", 0);
    assert_non_null(ev);
    assert_null(nth(root, "X", 1));
    assert_string_equal(str(ev, "name"), "sqlite3_exec");
    assert_true(num(ev, "ts") == 1767323045123456.0); /* date -d 2026-01-02T03:04:05Z +%s */
    assert_true(num(ev, "dur") == 2000.5);
    assert_true(num(ev, "pid") == 10 && num(ev, "tid") == 12);
    const cJSON *args = cJSON_GetObjectItem(ev, "args");
    assert_string_equal(str(cJSON_GetObjectItem(args, "arguments"), "sql"), "select 1");
    assert_true(num(cJSON_GetObjectItem(args, "arguments"), "n") == 3);
    assert_string_equal(str(args, "response"), "1");
    assert_string_equal(str(args, "error"), "no such table");
    assert_string_equal(str(args, "library"), "libsqlite3.so.0");
    cJSON_Delete(root);
}

/* Proves every pid gets one process_name and every (pid, tid) one thread_name event,
 * however many actions share them. */
static void test_lane_names(void **state) {
    (void)state;
    const char *fmt = "{\"action_name\":\"t\",\"started_at\":\"2026-01-02T03:04:05Z\","
                      "\"duration_ms\":1,\"metadata\":{\"pid\":%d,\"tid\":%d}}\n";
    char text[4096] = "";
    int lanes[][2] = {{1, 1}, {1, 2}, {1, 2}, {3, 3}, {1, 1}, {3, 4}};
    for (size_t i = 0; i < 6; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), fmt, lanes[i][0], lanes[i][1]);
    cJSON *root = convert(text, NULL);
    int procs = 0, threads = 0, xs = 0;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, cJSON_GetObjectItem(root, "traceEvents")) {
        const char *ph = str(ev, "ph");
        if (strcmp(ph, "X") == 0) {
            assert_true(num(ev, "dur") == 1000);
            xs++;
        } else {
            assert_string_equal(ph, "M");
            procs += strcmp(str(ev, "name"), "process_name") == 0;
            threads += strcmp(str(ev, "name"), "thread_name") == 0;
            assert_non_null(
                cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "args"), "name")));
        }
    }
    assert_int_equal(xs, 6);
    assert_int_equal(procs, 2);   /* pids 1 and 3 */
    assert_int_equal(threads, 4); /* 1/1, 1/2, 3/3, 3/4 */
    assert_true(num(cJSON_GetObjectItem(root, "otherData"), "events") == 6);
    cJSON_Delete(root);
}

/* Proves a hand-tracked action (no pid, only ended_at and duration_ms) lands on lane 0 and
 * starts duration before its end; its tools_used is kept whole. */
static void test_manual_action(void **state) {
    (void)state;
    cJSON *root = convert("{\"action_name\":\"m\",\"ended_at\":\"2026-01-02T03:04:05.500000Z\","
                          "\"duration_ms\":250,\"tools_used\":{\"k\":1}}\n",
                          NULL);
    const cJSON *ev = nth(root, "X", 0);
    assert_non_null(ev);
    assert_true(num(ev, "ts") == 1767323045250000.0);
    assert_true(num(ev, "dur") == 250000);
    assert_true(num(ev, "pid") == 0 && num(ev, "tid") == 0);
    assert_true(num(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "args"), "tools_used"), "k") == 1);
    cJSON_Delete(root);
}

/* Proves an LLM call (metadata.source "llm") gets the category "llm", its tools_used
 * (models, usage) kept whole in args, while other actions keep "action". */
static void test_llm_action(void **state) {
    (void)state;
    cJSON *root =
        convert("{\"action_name\":\"chat gpt-4o\",\"started_at\":\"2026-01-02T03:04:05Z\","
                "\"duration_ms\":3,\"metadata\":{\"source\":\"llm\",\"pid\":7,\"tid\":7},"
                "\"tools_used\":{\"provider\":\"openai\",\"usage\":{\"input_tokens\":5}}}\n"
                "{\"action_name\":\"f\",\"started_at\":\"2026-01-02T03:04:05Z\",\"duration_ms\":1,"
                "\"metadata\":{\"source\":\"config\"}}\n",
                NULL);
    const cJSON *ev = nth(root, "X", 0);
    assert_non_null(ev);
    assert_string_equal(str(ev, "cat"), "llm");
    const cJSON *t = cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "args"), "tools_used");
    assert_true(num(cJSON_GetObjectItem(t, "usage"), "input_tokens") == 5);
    assert_string_equal(str(nth(root, "X", 1), "cat"), "action");
    cJSON_Delete(root);
}

/* Proves bad lines (not JSON, no name, no time, a negative duration) are counted and
 * skipped while the good ones around them are converted; blank lines are neither. */
static void test_bad_lines(void **state) {
    (void)state;
    uint64_t bad = 0;
    cJSON *root = convert(
        "{\"action_name\":\"a\",\"started_at\":\"2026-01-02T03:04:05Z\"}\n"
        "not json\n"
        "\n"
        "{\"started_at\":\"2026-01-02T03:04:05Z\"}\n"
        "{\"action_name\":\"b\"}\n"
        "{\"action_name\":\"c\",\"started_at\":\"2026-01-02T03:04:05Z\",\"duration_ms\":-1}\n"
        "{\"action_name\":\"d\",\"started_at\":\"yesterday\"}\n"
        "[1]\n"
        "{\"action_name\":\"e\",\"started_at\":\"2026-01-02T03:04:06Z\"}\n",
        &bad);
    assert_int_equal(bad, 6);
    assert_string_equal(str(nth(root, "X", 0), "name"), "a");
    assert_true(num(nth(root, "X", 0), "dur") == 0);
    assert_string_equal(str(nth(root, "X", 1), "name"), "e");
    assert_null(nth(root, "X", 2));
    cJSON_Delete(root);
}

/* Proves the trace is valid UTF-8 whatever the input, as report --json is: bytes that are
 * not UTF-8 become U+FFFD (the line still converts), and a \u escape cJSON would misread
 * ("\u00zz") makes the line a bad one. Before, both were copied into the trace. */
static void test_bad_bytes(void **state) {
    (void)state;
    static const char text[] =
        "{\"action_name\":\"a\xff\",\"started_at\":\"2026-01-02T03:04:05Z\",\"response\":"
        "\"\xc0\x80\"}\n"
        "{\"action_name\":\"b\\u00zz\",\"started_at\":\"2026-01-02T03:04:05Z\"}\n";
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    as_chrome *c = as_chrome_new(out);
    FILE *in = fmemopen((void *)text, sizeof text - 1, "r");
    assert_int_equal(as_chrome_stream(c, in, "t.jsonl"), 0);
    fclose(in);
    assert_int_equal(as_chrome_finish(c), 0);
    assert_int_equal(as_chrome_bad_lines(c), 1);
    assert_int_equal(as_chrome_events(c), 1);
    as_chrome_free(c);
    fclose(out);
    assert_true(as_utf8_valid(buf, len));
    cJSON *root = cJSON_Parse(buf);
    assert_string_equal(str(nth(root, "X", 0), "name"), "a\xef\xbf\xbd");
    cJSON_Delete(root);
    free(buf);
}

/* Proves the ISO-8601 parser takes UTC times with and without a fraction and refuses
 * other shapes. */
static void test_iso(void **state) {
    (void)state;
    double us;
    assert_int_equal(as_chrome_parse_iso("1970-01-01T00:00:01Z", &us), 0);
    assert_true(us == 1e6);
    assert_int_equal(as_chrome_parse_iso("1970-01-01T00:00:00.000001Z", &us), 0);
    assert_true(us == 1);
    assert_int_equal(as_chrome_parse_iso("1970-01-01T00:00:00.5Z", &us), 0);
    assert_true(us == 5e5);
    assert_int_equal(as_chrome_parse_iso("1970-01-01T00:00:00", &us), -1);
    assert_int_equal(as_chrome_parse_iso("1970-01-01T00:00:00.Z", &us), -1);
    assert_int_equal(as_chrome_parse_iso("1970-13-01T00:00:00Z", &us), -1);
    assert_int_equal(as_chrome_parse_iso("1970-01-01 00:00:00Z", &us), -1);
    assert_int_equal(as_chrome_parse_iso(NULL, &us), -1);
}

/* Proves an empty input still gives a valid trace object with an empty event list. */
static void test_empty(void **state) {
    (void)state;
    cJSON *root = convert("", NULL);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "traceEvents")), 0);
    cJSON_Delete(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_action),    cmocka_unit_test(test_lane_names),
        cmocka_unit_test(test_manual_action), cmocka_unit_test(test_llm_action),
        cmocka_unit_test(test_bad_lines),     cmocka_unit_test(test_iso),
        cmocka_unit_test(test_empty),         cmocka_unit_test(test_bad_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
