/* test_http_sinks.c - the HTTP client, the agentsight and otlp sinks against the local
 * emulator (scripts/agentsight_emulator.py, started on 127.0.0.1 with a free port). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/action.h"
#include "core/http.h"
#include "core/jsonw.h"
#include "core/settings.h"
#include "core/sink.h"
#include "core/spool.h"

extern const as_sink_ops as_sink_agentsight_ops; /* sink_agentsight.c */
extern const as_sink_ops as_sink_otlp_ops;       /* sink_otlp.c */

#define KEY "ags_0123456789abcdef0123456789abcdef_a1b2c3"

static pid_t emu_pid;
static int emu_port;
static char spool_root[256];
static char endpoint[128];

static int start_emulator(void) {
    const char *script = "scripts/agentsight_emulator.py";
    if (access(script, R_OK) != 0)
        script = "../scripts/agentsight_emulator.py";
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    emu_pid = fork();
    if (emu_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execlp("python3", "python3", script, "--port", "0", "--key", KEY, "--max-seconds", "120",
               "--legacy", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    if (!f || fscanf(f, "%d", &emu_port) != 1)
        return -1;
    fclose(f);
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", emu_port);
    return 0;
}

static size_t collect(char *p, size_t s, size_t n, void *ud) {
    as_buf_put(ud, p, s * n);
    return s * n;
}

/* GET or POST (body non-NULL) a control endpoint; returns the parsed answer. */
static cJSON *emu(const char *path, const char *body) {
    char url[256];
    snprintf(url, sizeof url, "%s%s", endpoint, path);
    as_buf b;
    as_buf_init(&b);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_perform(c);
    curl_easy_cleanup(c);
    cJSON *o = cJSON_Parse(as_buf_cstr(&b));
    as_buf_free(&b);
    return o;
}

static int num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static int group_setup(void **state) {
    snprintf(spool_root, sizeof spool_root, "/tmp/as-http-test-XXXXXX");
    if (!mkdtemp(spool_root))
        return -1;
    setenv("AGENTSIGHT_SPOOL_DIR", spool_root, 1);
    setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", 1); /* the emulator reads OTLP/JSON */
    setenv("AGENTSIGHT_API_KEY", KEY, 1);
    setenv("AGENTSIGHT_LOG_LEVEL", "error", 1);
    as_http_global_init();
    return start_emulator();
}

static int group_teardown(void **state) {
    if (emu_pid > 0) {
        kill(emu_pid, SIGTERM);
        waitpid(emu_pid, NULL, 0);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", spool_root);
    return system(cmd) == 0 ? 0 : -1;
}

static as_action act(const char *name, const char *conv, int i) {
    as_action a = {.action_name = name, .conversation_id = conv};
    a.started_ns = 1700000000000000000ll + i * 1000000ll;
    a.ended_ns = a.started_ns + 5000000;
    a.duration_ms = 5;
    a.timestamp_ns = a.ended_ns;
    a.tools_used = "{\"function\":\"f\"}";
    a.response = "ok";
    return a;
}

/* Proves backoff grows, stays capped and jittered within [d/2, d]. */
static void test_backoff(void **state) {
    as_http_opts o = {.backoff_base_ms = 100, .backoff_max_ms = 1000};
    assert_int_equal(as_http_backoff_ms(&o, 2, 0), 50);
    assert_int_equal(as_http_backoff_ms(&o, 2, 50), 100);
    assert_int_equal(as_http_backoff_ms(&o, 3, 0), 100);
    for (uint64_t r = 0; r < 2000; r += 37) {
        int d = as_http_backoff_ms(&o, 20, r);
        assert_true(d >= 500 && d <= 1000);
    }
}

/* Proves Retry-After is read as seconds or an HTTP date, garbage refused. */
static void test_retry_after(void **state) {
    assert_int_equal(as_http_parse_retry_after(" 3", 0), 3000);
    assert_int_equal(as_http_parse_retry_after("0\r\n", 0), 0);
    assert_int_equal(as_http_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111767), 10000);
    assert_int_equal(as_http_parse_retry_after("soon", 0), -1);
    assert_int_equal(as_http_parse_retry_after("5x", 0), -1);
    assert_true(as_http_retryable(0) && as_http_retryable(429) && as_http_retryable(503));
    assert_false(as_http_retryable(500) || as_http_retryable(400) || as_http_retryable(200));
}

/* Proves a key not shaped ags_<32 hex>_<6 hex> is refused at open. */
static void test_bad_key_refused(void **state) {
    as_sink s = {.ops = &as_sink_agentsight_ops};
    setenv("AGENTSIGHT_API_KEY", "ags_123_abc", 1);
    assert_int_equal(as_sink_agentsight_ops.open(&s, endpoint), -1);
    setenv("AGENTSIGHT_API_KEY", KEY, 1);
}

/* Proves every action arrives once, conversations are created once and referenced by
 * their integer id, and the display name is set on the server. */
static void test_agentsight_delivers(void **state) {
    as_sink s = {.ops = &as_sink_agentsight_ops};
    assert_int_equal(as_sink_agentsight_ops.open(&s, endpoint), 0);
    as_action batch[100];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 100; i++)
            batch[i] = act("weather_lookup", i % 2 ? "conv_a" : "conv_b", i);
        batch[0].metadata = "{\"display_name\":\"Weather\"}";
        assert_int_equal(s.ops->send(&s, batch, 100), 0);
    }
    assert_int_equal(s.ops->flush(&s, 20000), 0);
    s.ops->close(&s);
    cJSON *r = emu("/_received", NULL);
    assert_non_null(r);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(r, "action_logs")), 300);
    assert_int_equal(num(r, "unique"), 300);
    assert_int_equal(num(r, "duplicates"), 0);
    const cJSON *convs = cJSON_GetObjectItem(r, "conversations");
    assert_int_equal(cJSON_GetArraySize(convs), 2);
    const cJSON *al;
    cJSON_ArrayForEach(al, cJSON_GetObjectItem(r, "action_logs")) {
        const char *cid = cJSON_GetObjectItem(al, "conversation_id")->valuestring;
        assert_int_equal(cJSON_GetObjectItem(al, "conversation")->valueint,
                         cJSON_GetObjectItem(convs, cid)->valueint);
        assert_string_equal(cJSON_GetObjectItem(al, "response")->valuestring, "ok");
    }
    const cJSON *acts = cJSON_GetObjectItem(r, "actions");
    assert_int_equal(cJSON_GetArraySize(acts), 1);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetArrayItem(acts, 0), "display_name")->valuestring, "Weather");
    cJSON_Delete(r);
}

/* Proves 429 answers with Retry-After are retried until delivered. */
static void test_retry_on_429(void **state) {
    cJSON_Delete(emu("/_control", "{\"fail_mode\":\"429\",\"fail_count\":3,\"retry_after\":0}"));
    cJSON *before = emu("/_stats", NULL);
    as_sink s = {.ops = &as_sink_agentsight_ops};
    assert_int_equal(as_sink_agentsight_ops.open(&s, endpoint), 0);
    as_action a[5];
    for (int i = 0; i < 5; i++)
        a[i] = act("retry_me", "conv_r", i);
    s.ops->send(&s, a, 5);
    assert_int_equal(s.ops->flush(&s, 20000), 0);
    s.ops->close(&s);
    cJSON *after = emu("/_stats", NULL);
    assert_int_equal(num(after, "action_logs") - num(before, "action_logs"), 5);
    assert_int_equal(num(after, "failed") - num(before, "failed"), 3);
    cJSON_Delete(before);
    cJSON_Delete(after);
}

static int file_contains(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[65536];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* Proves a 400 answer is not retried and the action lands in the dead-letter file with
 * the server's answer, while the rest of the batch is delivered. */
static void test_dead_letter_on_400(void **state) {
    cJSON *before = emu("/_stats", NULL);
    as_sink s = {.ops = &as_sink_agentsight_ops};
    assert_int_equal(as_sink_agentsight_ops.open(&s, endpoint), 0);
    as_action a[3] = {act("fine", "conv_d", 0), act("emulator_refuse", "conv_d", 1),
                      act("fine", "conv_d", 2)};
    s.ops->send(&s, a, 3);
    assert_int_equal(s.ops->flush(&s, 20000), 0);
    s.ops->close(&s);
    cJSON *after = emu("/_stats", NULL);
    assert_int_equal(num(after, "action_logs") - num(before, "action_logs"), 2);
    assert_int_equal(num(after, "rejected") - num(before, "rejected"), 1);
    char path[400];
    snprintf(path, sizeof path, "%s/dead-letter.jsonl", spool_root);
    assert_true(file_contains(path, "\"status\":400"));
    assert_true(file_contains(path, "refused by the emulator"));
    assert_true(file_contains(path, "\"action_name\":\"emulator_refuse\""));
    cJSON_Delete(before);
    cJSON_Delete(after);
}

/* Proves dropped connections end in the spool, and a later sink replays the spool once
 * the server answers: every action arrives. */
static void test_spool_then_replay(void **state) {
    setenv("AGENTSIGHT_HTTP_TIMEOUT_MS", "1000", 1);
    cJSON_Delete(emu("/_control", "{\"fail_mode\":\"drop\",\"fail_count\":0}"));
    cJSON *before = emu("/_stats", NULL);
    as_sink s = {.ops = &as_sink_agentsight_ops};
    assert_int_equal(as_sink_agentsight_ops.open(&s, endpoint), 0);
    as_action a[40];
    for (int i = 0; i < 40; i++)
        a[i] = act("spooled", "conv_s", i);
    s.ops->send(&s, a, 40);
    s.ops->flush(&s, 4000);
    s.ops->close(&s);
    char uri[300];
    snprintf(uri, sizeof uri, "agentsight:%s", endpoint);
    as_spool *sp = as_spool_open(spool_root, uri, 0);
    assert_non_null(sp);
    assert_true(as_spool_pending(sp, NULL) > 0);
    cJSON_Delete(emu("/_control", "{\"fail_mode\":\"none\"}"));
    as_sink s2 = {.ops = &as_sink_agentsight_ops};
    assert_int_equal(as_sink_agentsight_ops.open(&s2, endpoint), 0);
    for (int i = 0; i < 20 && as_spool_pending(sp, NULL) > 0; i++)
        s2.ops->flush(&s2, 2000);
    s2.ops->close(&s2);
    assert_int_equal(as_spool_pending(sp, NULL), 0);
    as_spool_close(sp);
    cJSON *after = emu("/_stats", NULL);
    assert_true(num(after, "action_logs") - num(before, "action_logs") >= 40);
    assert_int_equal(num(after, "unique") - num(before, "unique"), 40);
    unsetenv("AGENTSIGHT_HTTP_TIMEOUT_MS");
    cJSON_Delete(before);
    cJSON_Delete(after);
}

static const cJSON *attr(const cJSON *attrs, const char *key) {
    const cJSON *a;
    cJSON_ArrayForEach(a, attrs) {
        if (strcmp(cJSON_GetObjectItem(a, "key")->valuestring, key) == 0)
            return cJSON_GetObjectItem(a, "value");
    }
    return NULL;
}

/* Proves the OTLP/JSON export shape field by field: two execute_tool spans, then the
 * process span sent at close (their parent). */
static void test_otlp_fields(void **state) {
    as_sink s = {.ops = &as_sink_otlp_ops};
    assert_int_equal(as_sink_otlp_ops.open(&s, endpoint), 0);
    as_action a[2] = {act("db_search", "conv_o", 0), act("db_search", "conv_o", 1)};
    a[1].error_msg = "no rows";
    s.ops->send(&s, a, 2);
    assert_int_equal(s.ops->flush(&s, 10000), 0);
    s.ops->close(&s);
    cJSON *r = emu("/_received", NULL);
    const cJSON *spans = cJSON_GetObjectItem(r, "spans");
    assert_int_equal(cJSON_GetArraySize(spans), 3);
    const cJSON *root = cJSON_GetObjectItem(cJSON_GetArrayItem(spans, 2), "span");
    assert_string_equal(cJSON_GetObjectItem(root, "name")->valuestring, "process test_http_sinks");
    assert_null(cJSON_GetObjectItem(root, "parentSpanId"));
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetArrayItem(spans, i);
        const cJSON *sp = cJSON_GetObjectItem(e, "span");
        const cJSON *res = cJSON_GetObjectItem(cJSON_GetObjectItem(e, "resource"), "attributes");
        assert_non_null(cJSON_GetObjectItem(attr(res, "service.name"), "stringValue"));
        char pid[32];
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        assert_string_equal(cJSON_GetObjectItem(attr(res, "process.pid"), "intValue")->valuestring,
                            pid);
        const char *tid = cJSON_GetObjectItem(sp, "traceId")->valuestring;
        const char *sid = cJSON_GetObjectItem(sp, "spanId")->valuestring;
        assert_int_equal(strlen(tid), 32);
        assert_int_equal(strspn(tid, "0123456789abcdef"), 32);
        assert_int_equal(strlen(sid), 16);
        assert_int_equal(strspn(sid, "0123456789abcdef"), 16);
        assert_string_equal(cJSON_GetObjectItem(sp, "name")->valuestring, "execute_tool db_search");
        assert_string_equal(cJSON_GetObjectItem(sp, "parentSpanId")->valuestring,
                            cJSON_GetObjectItem(root, "spanId")->valuestring);
        assert_int_equal(cJSON_GetObjectItem(sp, "kind")->valueint, 1);
        char ns[32];
        snprintf(ns, sizeof ns, "%lld", (long long)a[i].started_ns);
        assert_string_equal(cJSON_GetObjectItem(sp, "startTimeUnixNano")->valuestring, ns);
        snprintf(ns, sizeof ns, "%lld", (long long)a[i].ended_ns);
        assert_string_equal(cJSON_GetObjectItem(sp, "endTimeUnixNano")->valuestring, ns);
        const cJSON *at = cJSON_GetObjectItem(sp, "attributes");
        assert_string_equal(
            cJSON_GetObjectItem(attr(at, "gen_ai.operation.name"), "stringValue")->valuestring,
            "execute_tool");
        assert_string_equal(
            cJSON_GetObjectItem(attr(at, "gen_ai.tool.name"), "stringValue")->valuestring,
            "db_search");
        assert_string_equal(
            cJSON_GetObjectItem(attr(at, "gen_ai.conversation.id"), "stringValue")->valuestring,
            "conv_o");
        const cJSON *st = cJSON_GetObjectItem(sp, "status");
        if (i == 1) {
            assert_non_null(attr(at, "error.type"));
            assert_int_equal(cJSON_GetObjectItem(st, "code")->valueint, 2);
            assert_string_equal(cJSON_GetObjectItem(st, "message")->valuestring, "no rows");
        } else {
            assert_null(attr(at, "error.type"));
            assert_null(st);
        }
    }
    cJSON_Delete(r);
}

static int tree_contains(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    int found = 0;
    while (!found && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[1024];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (stat(p, &st) != 0)
            continue;
        found = S_ISDIR(st.st_mode) ? tree_contains(p, needle) : file_contains(p, needle);
    }
    closedir(d);
    return found;
}

/* Proves the key was sent in the Api-Key header (the emulator keeps only a fingerprint:
 * scheme and the first 8 characters) and is in no spool or dead-letter file. */
static void test_key_never_written(void **state) {
    cJSON *r = emu("/_received", NULL);
    assert_non_null(r);
    const cJSON *h;
    int seen = 0;
    cJSON_ArrayForEach(h, cJSON_GetObjectItem(r, "auth_headers")) {
        seen |= strcmp(h->valuestring, "Api-Key ags_0123...") == 0; /* fingerprint kept */
    }
    assert_true(seen);
    assert_false(tree_contains(spool_root, KEY));
    assert_false(tree_contains(spool_root, "0123456789abcdef0123456789abcdef"));
    cJSON_Delete(r);
}

typedef struct ids {
    char id[64][40];
    int n, lines, dups;
} ids;

static int collect_id(const char *line, size_t len, void *ctx) {
    ids *v = ctx;
    as_spool_rec rec;
    v->lines++;
    if (as_spool_parse_line(line, len, &rec) != 0)
        return 0;
    const char *m = rec.a.metadata ? strstr(rec.a.metadata, "\"agentsight_event_id\":\"") : NULL;
    char id[40] = "";
    if (m)
        snprintf(id, sizeof id, "%.32s", m + 23);
    for (int i = 0; i < v->n; i++)
        v->dups += strcmp(v->id[i], id) == 0;
    if (v->n < 64)
        snprintf(v->id[v->n++], sizeof v->id[0], "%s", id);
    as_spool_rec_free(&rec);
    return 0;
}

/* Regression (double free at exit under load): close() drove one last flush, which
 * could start replaying a spooled batch whose conversation was known and put its action
 * logs on the wire; running out of time it put the rest back on the wire, then freed
 * the replay while those requests were outstanding, and cancelling them wrote into the
 * freed replay. Here the sink knows conv_late (one action of it timed out into the
 * spool, so the sink knows the spool holds something) and a batch of 50 more waits in
 * the spool when close() runs. Proves close loses and duplicates nothing: the 51
 * actions are in the spool once each, no batch is left claimed (the old code aborts or,
 * under make test-san, reports the use-after-free). */
static void test_close_with_spool_pending_keeps_all(void **state) {
    char uri[300];
    snprintf(uri, sizeof uri, "agentsight:%s", endpoint);
    as_spool *sp = as_spool_open(spool_root, uri, 0);
    assert_non_null(sp);
    assert_int_equal(as_spool_pending(sp, NULL), 0);
    cJSON_Delete(emu("/_control", "{\"fail_mode\":\"slow\",\"slow_seconds\":3,"
                                  "\"fail_path\":\"/api/action_logs/\"}"));
    as_sink s = {.ops = &as_sink_agentsight_ops};
    assert_int_equal(as_sink_agentsight_ops.open(&s, endpoint), 0);
    as_action first = act("replayed", "conv_late", 100);
    assert_int_equal(s.ops->send(&s, &first, 1), 0);
    assert_int_equal(s.ops->flush(&s, 500), -1); /* conversation made, the log too slow */
    for (int i = 0; i < 50; i++) {
        as_action a = act("replayed", "conv_late", i);
        as_buf meta, line;
        as_buf_init(&meta);
        as_buf_init(&line);
        char id[33];
        as_spool_tag_metadata(NULL, &meta, id);
        a.metadata = as_buf_cstr(&meta);
        as_action_to_jsonl(&a, &line);
        assert_int_equal(as_spool_stage(sp, 1, line.data, line.len), 0);
        as_buf_free(&meta);
        as_buf_free(&line);
    }
    assert_int_equal(as_spool_commit(sp), 50);
    s.ops->close(&s);
    cJSON_Delete(emu("/_control", "{\"fail_mode\":\"none\"}"));
    ids v = {.n = 0};
    DIR *d = opendir(as_spool_dir(sp));
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l > 6 && strcmp(de->d_name + l - 6, ".jsonl") == 0) {
            char path[1200];
            snprintf(path, sizeof path, "%s/%s", as_spool_dir(sp), de->d_name);
            assert_int_equal(as_spool_read(path, NULL, 0, collect_id, &v), 0);
            unlink(path);
        } else if (strstr(de->d_name, ".claim-")) {
            fail_msg("a claimed batch was left behind: %s", de->d_name);
        }
    }
    closedir(d);
    as_spool_close(sp);
    assert_int_equal(v.lines, 51);
    assert_int_equal(v.n, 51);
    assert_int_equal(v.dups, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_bad_key_refused),
        cmocka_unit_test(test_agentsight_delivers),
        cmocka_unit_test(test_retry_on_429),
        cmocka_unit_test(test_dead_letter_on_400),
        cmocka_unit_test(test_spool_then_replay),
        cmocka_unit_test(test_otlp_fields),
        cmocka_unit_test(test_key_never_written),
        cmocka_unit_test(test_close_with_spool_pending_keeps_all),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
