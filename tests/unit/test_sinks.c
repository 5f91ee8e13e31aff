/* test_sinks.c - unit tests of the sink registry (URI parsing, checks) and of the file,
 * stderr and null sinks, driven directly through their ops. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/sink.h"

#define NS 1000000000LL
/* 2024-01-15T10:30:00Z */
#define T0 (1705314600LL * NS)

static as_action make_action(const char *name, int64_t dur_ms) {
    as_action a;
    memset(&a, 0, sizeof(a));
    a.action_name = name;
    a.started_ns = T0;
    a.ended_ns = T0 + dur_ms * 1000000;
    a.duration_ms = dur_ms;
    a.conversation_id = "conv_test";
    a.response = "60";
    a.tools_used = "{\"function\":\"multiply\"}";
    a.timestamp_ns = T0;
    return a;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

/* Proves the registry knows the built-in schemes and nothing else. */
static void test_find(void **state) {
    assert_ptr_equal(as_sink_find("file"), &as_sink_file_ops);
    assert_ptr_equal(as_sink_find("stderr"), &as_sink_stderr_ops);
    assert_ptr_equal(as_sink_find("null"), &as_sink_null_ops);
    assert_null(as_sink_find("ftp"));
    assert_null(as_sink_find(""));
    assert_null(as_sink_find(NULL));
}

/* Proves URI lists are checked entry by entry and the message names the bad URI. */
static void test_check(void **state) {
    char msg[256];
    assert_int_equal(as_sinks_check("file:/tmp/x.jsonl", msg, sizeof(msg)), 0);
    assert_int_equal(as_sinks_check("stderr, null ,file:a.jsonl", msg, sizeof(msg)), 0);
    assert_int_equal(as_sinks_check("stderr,ftp://x", msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "unknown sink URI 'ftp://x'"));
    assert_non_null(strstr(msg, "file:PATH"));
    assert_int_equal(as_sinks_check("file:", msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "file needs a path"));
    assert_int_equal(as_sinks_check("", msg, sizeof(msg)), -1);
    assert_int_equal(as_sinks_check(" , ", msg, sizeof(msg)), -1);
    assert_int_equal(as_sinks_check(NULL, msg, sizeof(msg)), -1);
}

/* Proves as_sinks_open skips bad URIs, opens the good ones and resolves a relative file
 * path against the working directory. */
static void test_open_list(void **state) {
    char dir[] = "/tmp/as-sinks-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    as_sink s[4];
    int n = as_sinks_open("bogus,file:rel.jsonl,null,null:delay_ms=x", s, 4);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(n, 2);
    char want[4200];
    snprintf(want, sizeof(want), "file:%s/rel.jsonl", dir);
    assert_string_equal(s[0].uri, want);
    assert_string_equal(s[1].uri, "null");
    as_action a = make_action("x", 1);
    assert_int_equal(s[0].ops->send(&s[0], &a, 1), 0);
    for (int i = 0; i < n; i++)
        s[i].ops->close(&s[i]);
    char path[4200];
    snprintf(path, sizeof(path), "%s/rel.jsonl", dir);
    assert_int_equal(count_lines(read_file(path)), 1);
    unlink(path);
    rmdir(dir);
}

/* Proves the file sink writes one valid JSON object per action, appending. */
static void test_file_jsonl(void **state) {
    char path[] = "/tmp/as-file-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    as_sink s;
    memset(&s, 0, sizeof(s));
    s.ops = &as_sink_file_ops;
    assert_int_equal(s.ops->open(&s, path), 0);
    as_action b[3] = {make_action("calculator_multiply", 50), make_action("b\"q", 2),
                      make_action("c", 3)};
    b[2].metadata = "{\"k\":[1,2]}";
    b[2].error_msg = "line1\nline2";
    assert_int_equal(s.ops->send(&s, b, 3), 0);
    assert_int_equal(s.ops->send(&s, b, 1), 0);
    assert_int_equal(s.ops->flush(&s, 100), 0);
    s.ops->close(&s);
    char *text = read_file(path);
    assert_int_equal(count_lines(text), 4);
    char *save = NULL;
    const char *names[] = {"calculator_multiply", "b\"q", "c", "calculator_multiply"};
    int i = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        assert_string_equal(cJSON_GetObjectItem(j, "action_name")->valuestring, names[i]);
        assert_true(cJSON_IsObject(cJSON_GetObjectItem(j, "tools_used")));
        if (i == 2) {
            assert_string_equal(cJSON_GetObjectItem(j, "error_msg")->valuestring, "line1\nline2");
            assert_true(
                cJSON_IsArray(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metadata"), "k")));
        }
        cJSON_Delete(j);
        i++;
    }
    assert_int_equal(i, 4);
    unlink(path);
}

/* Proves a file sink that cannot open its file fails cleanly. */
static void test_file_bad_path(void **state) {
    as_sink s;
    memset(&s, 0, sizeof(s));
    s.ops = &as_sink_file_ops;
    assert_int_equal(s.ops->open(&s, "/nonexistent-dir-xyz/a.jsonl"), -1);
    assert_null(s.impl);
}

/* Proves two processes appending batches to one file never interleave lines. */
static void test_file_two_processes(void **state) {
    char path[] = "/tmp/as-file2-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    enum { BATCHES = 200, PER = 50 };
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            as_sink s;
            memset(&s, 0, sizeof(s));
            s.ops = &as_sink_file_ops;
            if (s.ops->open(&s, path) != 0)
                _exit(1);
            static char big[3000];
            memset(big, k ? 'b' : 'a', sizeof(big) - 1);
            as_action b[PER];
            for (int i = 0; i < PER; i++) {
                b[i] = make_action(k ? "kid1" : "kid0", 1);
                b[i].response = big;
            }
            for (int i = 0; i < BATCHES; i++)
                if (s.ops->send(&s, b, PER) != 0)
                    _exit(2);
            s.ops->close(&s);
            _exit(0);
        }
    }
    for (int k = 0; k < 2; k++) {
        int st = 0;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char line[8192];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        cJSON_Delete(j);
        n++;
    }
    fclose(f);
    assert_int_equal(n, 2 * BATCHES * PER);
    unlink(path);
}

/* Proves the stderr sink prints the documented readable line. */
static void test_stderr_line(void **state) {
    char path[] = "/tmp/as-stderr-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(2);
    dup2(fd, 2);
    as_sink s;
    memset(&s, 0, sizeof(s));
    s.ops = &as_sink_stderr_ops;
    assert_int_equal(s.ops->open(&s, ""), 0);
    as_action b[2] = {make_action("calculator_multiply", 50), make_action("fetch", 7)};
    b[1].response = NULL;
    b[1].error_msg = "timeout\nafter 7 ms";
    int rc = s.ops->send(&s, b, 2);
    s.ops->close(&s);
    dup2(saved, 2);
    close(saved);
    close(fd);
    assert_int_equal(rc, 0);
    assert_string_equal(read_file(path),
                        "[agentsight] 10:30:00.050 calculator_multiply 50 ms -> 60\n"
                        "[agentsight] 10:30:00.007 fetch 7 ms ERROR: timeout after 7 ms\n");
    unlink(path);
}

/* Proves the null sink accepts "" and delay_ms=N and refuses anything else. */
static void test_null(void **state) {
    as_sink s;
    memset(&s, 0, sizeof(s));
    s.ops = &as_sink_null_ops;
    assert_int_equal(s.ops->open(&s, ""), 0);
    as_action a = make_action("x", 1);
    assert_int_equal(s.ops->send(&s, &a, 1), 0);
    s.ops->close(&s);
    assert_int_equal(s.ops->open(&s, "delay_ms=1"), 0);
    assert_int_equal(s.ops->send(&s, &a, 1), 0);
    s.ops->close(&s);
    assert_int_equal(s.ops->open(&s, "delay_ms="), -1);
    assert_int_equal(s.ops->open(&s, "delay_ms=-4"), -1);
    assert_int_equal(s.ops->open(&s, "fast"), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),          cmocka_unit_test(test_check),
        cmocka_unit_test(test_open_list),     cmocka_unit_test(test_file_jsonl),
        cmocka_unit_test(test_file_bad_path), cmocka_unit_test(test_file_two_processes),
        cmocka_unit_test(test_stderr_line),   cmocka_unit_test(test_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
