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
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fdio.h"
#include "core/log.h"
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

/* Creates a fresh file from the mkstemp template path and returns a file sink open on it. */
static as_sink temp_file_sink(char *path) {
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    as_sink s;
    memset(&s, 0, sizeof(s));
    s.ops = &as_sink_file_ops;
    assert_int_equal(s.ops->open(&s, path), 0);
    return s;
}

/* Proves the file sink writes one valid JSON object per action, appending. */
static void test_file_jsonl(void **state) {
    char path[] = "/tmp/as-file-XXXXXX";
    as_sink s = temp_file_sink(path);
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

/* Points fd 2 at a new temporary file (its name in path) and opens a stderr sink there;
 * *saved receives the old fd 2, *fd the file's. */
static void stderr_sink_into(char *path, int *fd, int *saved, as_sink *s) {
    *fd = mkstemp(path);
    assert_true(*fd >= 0);
    *saved = dup(2);
    dup2(*fd, 2);
    memset(s, 0, sizeof(*s));
    s->ops = &as_sink_stderr_ops;
    assert_int_equal(s->ops->open(s, ""), 0);
}

/* Proves the stderr sink prints the documented readable line. */
static void test_stderr_line(void **state) {
    char path[] = "/tmp/as-stderr-XXXXXX";
    int fd, saved;
    as_sink s;
    stderr_sink_into(path, &fd, &saved, &s);
    as_action b[2] = {make_action("calculator_multiply", 50), make_action("fetch", 7)};
    b[1].response = NULL;
    b[1].error_msg = "timeout\nafter 7 ms";
    int rc = s.ops->send(&s, b, 2);
    s.ops->close(&s);
    dup2(saved, 2);
    close(saved);
    close(fd);
    assert_int_equal(rc, 0);
    assert_string_equal(
        read_file(path),
        "[agentsight] 10:30:00.050 calculator_multiply = 60 <50.000 ms>\n"
        "[agentsight] 10:30:00.007 fetch = ? <7.000 ms> ERROR: timeout after 7 ms\n");
    unlink(path);
}

/* Proves the stderr sink writes to its own copy of fd 2 taken when it opens, at a high
 * number: the lines still reach that file after the program closed or redirected fd 2
 * (coreutils close it at exit); and that a write that fails counts the batch once,
 * returning 0 (it used to return -1, retried until the flush timeout and counted the
 * batch at every retry). */
static void test_stderr_own_copy(void **state) {
    char path[] = "/tmp/as-stderr-XXXXXX";
    int fd, saved;
    as_sink s;
    stderr_sink_into(path, &fd, &saved, &s);
    close(2); /* the program closes its stderr */
    as_action a = make_action("after_close", 1);
    int rc = s.ops->send(&s, &a, 1);
    int lowest = open("/dev/null", O_RDONLY); /* the program's next open gets 2 */
    s.ops->close(&s);
    assert_int_equal(rc, 0);
    assert_int_equal(lowest, 2);
    assert_int_equal(s.sent, 1);
    assert_non_null(strstr(read_file(path), "after_close = 60"));
    /* fd 2 open read-only: every write fails (EBADF). */
    assert_int_equal(s.ops->open(&s, ""), 0);
    rc = s.ops->send(&s, &a, 1);
    int rc2 = s.ops->send(&s, &a, 1);
    s.ops->close(&s);
    dup2(saved, 2); /* replaces lowest, which is 2 */
    close(saved);
    close(fd);
    assert_int_equal(rc, 0);
    assert_int_equal(rc2, 0);
    assert_int_equal(s.failed, 2);
    unlink(path);
}

/* Proves as_open_high and as_fd_move_high put a descriptor at as_fd_high_base() or
 * above, close-on-exec, leaving the lowest numbers free. */
static void test_fd_high(void **state) {
    int base = as_fd_high_base();
    assert_true(base >= 256);
    int fd = as_open_high("/dev/null", O_RDONLY | O_CLOEXEC, 0);
    assert_true(fd >= base);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    int low = open("/dev/null", O_RDONLY);
    assert_true(low >= 0 && low < base);
    int moved = as_fd_move_high(low);
    assert_true(moved >= base && moved != fd);
    assert_int_equal(fcntl(low, F_GETFD), -1); /* the original was closed */
    close(fd);
    close(moved);
    assert_int_equal(as_fd_move_high(-1), -1);
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

/* Sends stderr to a fresh temporary file until stderr_restore(); returns the saved fd. */
static int stderr_to(char *path) {
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    close(fd);
    return saved;
}

static void stderr_restore(int saved) {
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
}

/* Counts the occurrences of needle in s. */
static int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* Proves every line of text is a JSON object with an action_name, and returns how many. */
static int valid_lines(char *text) {
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "action_name")));
        cJSON_Delete(j);
        n++;
    }
    return n;
}

static off_t file_size(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* Proves a write that fails half-way (the file size limit here, as a full disk would)
 * returns -1 and leaves no torn line: the file is cut back to the last whole batch, and
 * the sink keeps nothing of the failed batches (the caller still holds them durably and
 * sends them again: no sink ever holds the only copy in memory), counts them neither sent
 * nor failed, and its mark stays at the end of the last whole write; the failure is logged
 * once for the streak and once when writing works again; closing then loses nothing. */
static void test_file_write_failure(void **state) {
    char path[] = "/tmp/as-full-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char logpath[] = "/tmp/as-full-log-XXXXXX";
    int saved_err = stderr_to(logpath);
    as_log_set_level(AS_LOG_WARN);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);

    as_sink s;
    memset(&s, 0, sizeof(s));
    s.ops = &as_sink_file_ops;
    assert_int_equal(s.ops->open(&s, path), 0);
    as_action b[4] = {make_action("a", 1), make_action("b", 2), make_action("c", 3),
                      make_action("d", 4)};
    assert_int_equal(s.ops->send(&s, b, 1), 0);
    off_t one = file_size(path);
    assert_int_equal(s.mark, (unsigned long long)one);
    struct rlimit lim = {(rlim_t)one + (rlim_t)one / 2, old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    for (int i = 0; i < 3; i++) /* each batch would cross the limit part-way */
        assert_int_equal(s.ops->send(&s, b, 4), -1);
    assert_int_equal(file_size(path), one);
    assert_int_equal(s.mark, (unsigned long long)one);
    assert_int_equal(s.sent, 1);
    assert_int_equal(s.failed, 0);
    assert_int_equal(s.ops->flush(&s, 0), 0); /* nothing held */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    as_action c[2] = {make_action("e", 5), make_action("f", 6)};
    assert_int_equal(s.ops->send(&s, c, 2), 0);
    assert_int_equal(s.sent, 3);
    s.ops->close(&s);

    signal(SIGXFSZ, old_sig);
    stderr_restore(saved_err);
    char *log = read_file(logpath);
    assert_int_equal(count_of(log, "write failed"), 1);
    assert_int_equal(count_of(log, "writing again after 3 failed batches"), 1);
    assert_int_equal(count_of(log, "lost"), 0);
    unlink(logpath);
    assert_int_equal(valid_lines(read_file(path)), 3);
    const char *want = "aef"; /* in the order written */
    const char *p = read_file(path);
    for (size_t i = 0; i < strlen(want); i++) {
        char key[32];
        snprintf(key, sizeof key, "\"action_name\":\"%c\"", want[i]);
        p = strstr(p, key);
        assert_non_null(p);
        p += strlen(key);
    }
    unlink(path);
}

/* Proves a batch written after a writer died inside its write leaves only whole lines:
 * a partial action line of ours at the end of the file is cut off (its action is still in
 * the dead writer's ring and comes again whole), while a partial line of something else
 * is kept and ended with '\n'; the sink's mark then names the end of its last write. */
static void test_file_after_torn_line(void **state) {
    const char *whole = "{\"action_name\":\"w\"}\n";
    const char *torn[2] = {"{\"action_name\":\"x\",\"resp", "not ours"};
    for (int k = 0; k < 2; k++) {
        char path[] = "/tmp/as-torn-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, whole, strlen(whole)), (ssize_t)strlen(whole));
        assert_int_equal(write(fd, torn[k], strlen(torn[k])), (ssize_t)strlen(torn[k]));
        close(fd);
        as_sink s;
        memset(&s, 0, sizeof(s));
        s.ops = &as_sink_file_ops;
        assert_int_equal(s.ops->open(&s, path), 0);
        as_action b[2] = {make_action("a", 1), make_action("b", 2)};
        assert_int_equal(s.ops->send(&s, b, 2), 0);
        assert_int_equal(s.ops->send(&s, b, 1), 0);
        assert_int_equal(s.mark, (unsigned long long)file_size(path));
        s.ops->close(&s);
        char *text = read_file(path);
        char *first_nl = strchr(text, '\n');
        assert_non_null(first_nl);
        assert_int_equal(first_nl - text + 1, strlen(whole));
        if (k == 0) {
            assert_int_equal(count_lines(text), 4);
            assert_int_equal(valid_lines(first_nl + 1), 3); /* the partial line is gone */
        } else {
            assert_int_equal(count_lines(text), 5);
            char *second_nl = strchr(first_nl + 1, '\n');
            assert_int_equal(second_nl - first_nl - 1, strlen(torn[k])); /* kept, ended */
            assert_int_equal(valid_lines(second_nl + 1), 3);
        }
        unlink(path);
    }
}

/* Proves too many sinks are a configuration error for the check and, at open, are named
 * in one error and not opened, while the first ones are. */
static void test_too_many_sinks(void **state) {
    char list[2048] = "", msg[256];
    for (int i = 0; i < AS_MAX_SINKS; i++)
        strcat(list, i ? ",null" : "null");
    assert_int_equal(as_sinks_check(list, msg, sizeof(msg)), 0);
    strcat(list, ",file:/tmp/as-dropped-sink.jsonl");
    assert_int_equal(as_sinks_check(list, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "at most 16"));

    char logpath[] = "/tmp/as-many-log-XXXXXX";
    int saved_err = stderr_to(logpath);
    as_sink s[3];
    int n =
        as_sinks_open("null,stderr,null,file:/tmp/as-dropped-a.jsonl,file:/tmp/as-b.jsonl", s, 3);
    stderr_restore(saved_err);
    assert_int_equal(n, 3);
    for (int i = 0; i < n; i++)
        s[i].ops->close(&s[i]);
    char *log = read_file(logpath);
    assert_non_null(strstr(log, "2 not opened"));
    assert_non_null(strstr(log, "'file:/tmp/as-dropped-a.jsonl', 'file:/tmp/as-b.jsonl'"));
    assert_int_equal(access("/tmp/as-dropped-a.jsonl", F_OK), -1);
    unlink(logpath);
}

/* Proves a URI longer than the limit is refused, never truncated into a shorter path
 * that would then be written to: the path runs through two existing directories of 200
 * characters each, so the limit falls inside its last name and the truncated path is one
 * a file could really be created at. */
static void test_long_uri(void **state) {
    char dir[] = "/tmp/as-long-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char d1[300], d2[600], uri[1200], cut[1200];
    char seg[201];
    memset(seg, 'a', 200);
    seg[200] = '\0';
    snprintf(d1, sizeof(d1), "%s/%s", dir, seg);
    assert_int_equal(mkdir(d1, 0700), 0);
    memset(seg, 'b', 200);
    snprintf(d2, sizeof(d2), "%s/%s", d1, seg);
    assert_int_equal(mkdir(d2, 0700), 0);
    memset(seg, 'c', 150);
    seg[150] = '\0';
    int n = snprintf(uri, sizeof(uri), "file:%s/%s", d2, seg);
    assert_true(n > AS_MAX_URI && (size_t)n < sizeof(uri));
    assert_true(AS_MAX_URI - 5 > (int)strlen(d2) + 1); /* the limit falls in the last name */
    char msg[256];
    assert_int_equal(as_sinks_check(uri, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "longer than 511 bytes"));
    char logpath[] = "/tmp/as-long-log-XXXXXX";
    int saved_err = stderr_to(logpath);
    as_sink s[2];
    assert_int_equal(as_sinks_open(uri, s, 2), 0);
    stderr_restore(saved_err);
    unlink(logpath);
    snprintf(cut, sizeof(cut), "%.*s", AS_MAX_URI - 5, uri + 5); /* the truncated path */
    assert_int_equal(access(cut, F_OK), -1);
    /* nothing at all was created on the way */
    assert_int_equal(rmdir(d2), 0);
    assert_int_equal(rmdir(d1), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_open_list),
        cmocka_unit_test(test_file_jsonl),
        cmocka_unit_test(test_file_bad_path),
        cmocka_unit_test(test_file_two_processes),
        cmocka_unit_test(test_stderr_line),
        cmocka_unit_test(test_stderr_own_copy),
        cmocka_unit_test(test_fd_high),
        cmocka_unit_test(test_null),
        cmocka_unit_test(test_file_write_failure),
        cmocka_unit_test(test_file_after_torn_line),
        cmocka_unit_test(test_too_many_sinks),
        cmocka_unit_test(test_long_uri),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
