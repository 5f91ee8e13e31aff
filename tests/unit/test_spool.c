/* test_spool.c - the on-disk spool: layout and modes, ordering, the size bound, claims
 * (and their recovery from dead processes), dead letters, event ids, reading back, and
 * the write-ahead batches HTTP sinks make before they try the network. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/action.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "core/spool.h"

static char root[256];

static int setup(void **state) {
    snprintf(root, sizeof root, "/tmp/as-spool-test-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static int count_line(const char *line, size_t len, void *ctx) {
    (*(int *)ctx)++;
    assert_true(len > 0 && line[0] == '{');
    return 0;
}

/* Proves a committed batch is one 0600 file in a 0700 directory, with a header naming
 * the URI without its password, read back line for line. */
static void test_commit_layout(void **state) {
    as_spool *sp = as_spool_open(root, "otlp:http://user:secret@127.0.0.1:1/", 0);
    assert_non_null(sp);
    assert_int_equal(as_spool_stage(sp, 0, "{\"action_name\":\"a\"}\n", 20), 0);
    assert_int_equal(as_spool_stage(sp, 0, "{\"action_name\":\"b\"}", 19), 0);
    assert_int_equal(as_spool_commit(sp), 2);
    struct stat st;
    assert_int_equal(stat(as_spool_dir(sp), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    char path[1024];
    int64_t key = 0;
    assert_int_equal(as_spool_claim(sp, path, sizeof path, &key), 1);
    assert_true(key > 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char uri[256];
    int n = 0;
    assert_int_equal(as_spool_read(path, uri, sizeof uri, count_line, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(uri, "otlp:http://127.0.0.1:1/");
    assert_int_equal(as_spool_release(path), 0);
    assert_int_equal(as_spool_pending(sp, NULL), 0);
    as_spool_close(sp);
}

/* Proves batches are claimed oldest key first, whatever the writing order. */
static void test_order_by_key(void **state) {
    as_spool *sp = as_spool_open(root, "agentsight:http://order", 0);
    int64_t keys[3] = {300, 100, 200};
    for (int i = 0; i < 3; i++) {
        as_spool_stage(sp, keys[i], "{\"action_name\":\"x\"}", 19);
        assert_int_equal(as_spool_commit(sp), 1);
    }
    int64_t want[3] = {100, 200, 300};
    for (int i = 0; i < 3; i++) {
        char path[1024];
        int64_t k;
        assert_int_equal(as_spool_claim(sp, path, sizeof path, &k), 1);
        assert_int_equal(k, want[i]);
        as_spool_release(path);
    }
    char path[1024];
    assert_int_equal(as_spool_claim(sp, path, sizeof path, NULL), 0);
    as_spool_close(sp);
}

/* Proves the size bound drops the oldest batches and counts their actions. */
static void test_size_bound(void **state) {
    as_spool *sp = as_spool_open(root, "agentsight:http://bound", 1200);
    char line[100];
    memset(line, 'x', sizeof line);
    memcpy(line, "{\"action_name\":\"", 16);
    memcpy(line + 96, "\"}", 2);
    for (int b = 0; b < 6; b++) {
        for (int i = 0; i < 2; i++)
            as_spool_stage(sp, 1000 + b, line, 98);
        assert_int_equal(as_spool_commit(sp), 2);
    }
    uint64_t bytes;
    size_t n = as_spool_pending(sp, &bytes);
    assert_true(bytes <= 1200);
    assert_true(n >= 1 && n < 6);
    assert_int_equal(as_spool_dropped(sp), 2 * (6 - n));
    char path[1024];
    int64_t k;
    assert_int_equal(as_spool_claim(sp, path, sizeof path, &k), 1);
    assert_int_equal(k, 1000 + (int64_t)(6 - n)); /* the newest survived */
    as_spool_release(path);
    /* A line bigger than the whole bound is refused and counted. */
    uint64_t before = as_spool_dropped(sp);
    static char big[2000];
    memset(big, 'y', sizeof big);
    as_spool_stage(sp, 5, big, sizeof big);
    assert_int_equal(as_spool_staged(sp), 0); /* tried at once: a quarter of the bound */
    assert_int_equal(as_spool_dropped(sp), before + 1);
    as_spool_close(sp);
}

/* Proves the bound holds for several processes spooling for one sink (two spools on the
 * same directory here): once AS_SPOOL_RESCAN_MS has passed, a commit of one sees the
 * batches of the other and drops the oldest to stay within the bound. */
static void test_size_bound_shared(void **state) {
    as_spool *a = as_spool_open(root, "agentsight:http://shared", 1200);
    as_spool *b = as_spool_open(root, "agentsight:http://shared", 1200);
    assert_non_null(a);
    assert_non_null(b);
    char line[100];
    memset(line, 'x', sizeof line);
    memcpy(line, "{\"action_name\":\"", 16);
    memcpy(line + 96, "\"}", 2);
    for (int k = 0; k < 4; k++) { /* each spool: its own 4 batches fit within the bound */
        as_spool_stage(a, 1000 + k, line, 98);
        assert_int_equal(as_spool_commit(a), 1);
        as_spool_stage(b, 2000 + k, line, 98);
        assert_int_equal(as_spool_commit(b), 1);
    }
    uint64_t bytes;
    as_spool_pending(a, &bytes);
    assert_true(bytes > 1200); /* together they passed it: neither has rescanned yet */
    int64_t wait_ms = AS_SPOOL_RESCAN_MS + 50;
    struct timespec nap = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
    assert_int_equal(nanosleep(&nap, NULL), 0);
    as_spool_stage(b, 3000, line, 98);
    assert_int_equal(as_spool_commit(b), 1);
    as_spool_pending(a, &bytes);
    assert_true(bytes <= 1200);
    assert_true(as_spool_dropped(b) > 0);
    char path[1024];
    int64_t key;
    assert_int_equal(as_spool_claim(a, path, sizeof path, &key), 1);
    assert_true(key > 1000); /* the oldest (a's first batch) was dropped */
    as_spool_release(path);
    as_spool_close(a);
    as_spool_close(b);
}

/* Proves a batch claimed by a process that died is released at the next open, and
 * unclaim puts a batch back. */
static void test_claim_recovery(void **state) {
    as_spool *sp = as_spool_open(root, "agentsight:http://claims", 0);
    as_spool_stage(sp, 7, "{\"action_name\":\"x\"}", 19);
    as_spool_commit(sp);
    char path[1024];
    assert_int_equal(as_spool_claim(sp, path, sizeof path, NULL), 1);
    assert_int_equal(as_spool_pending(sp, NULL), 0);
    assert_int_equal(as_spool_unclaim(path), 0);
    assert_int_equal(as_spool_pending(sp, NULL), 1);
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    waitpid(child, NULL, 0);
    assert_int_equal(as_spool_claim(sp, path, sizeof path, NULL), 1);
    char dead[1100];
    snprintf(dead, sizeof dead, "%.*s%d", (int)(strstr(path, ".claim-") + 7 - path), path,
             (int)child);
    assert_int_equal(rename(path, dead), 0);
    as_spool_close(sp);
    sp = as_spool_open(root, "agentsight:http://claims", 0);
    assert_int_equal(as_spool_pending(sp, NULL), 1);
    as_spool_close(sp);
}

/* Proves dead letters are valid JSON carrying status, answer and the action itself. */
static void test_dead_letter(void **state) {
    as_spool *sp = as_spool_open(root, "agentsight:http://dead", 0);
    const char *line = "{\"action_name\":\"refused\"}\n";
    assert_int_equal(as_spool_dead_letter(sp, 400, "{\"detail\":\"bad\"}", line, strlen(line)), 0);
    as_spool_close(sp);
    char path[400], buf[1024];
    snprintf(path, sizeof path, "%s/dead-letter.jsonl", root);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    cJSON *o = cJSON_Parse(buf);
    assert_non_null(o);
    assert_int_equal(cJSON_GetObjectItem(o, "status")->valueint, 400);
    assert_string_equal(cJSON_GetObjectItem(o, "answer")->valuestring, "{\"detail\":\"bad\"}");
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(o, "action"), "action_name")->valuestring,
        "refused");
    assert_string_equal(cJSON_GetObjectItem(o, "sink")->valuestring, "agentsight:http://dead");
    cJSON_Delete(o);
}

/* Proves metadata gets a unique event id, stays valid JSON, and keeps an id it has. */
static void test_tag_metadata(void **state) {
    const char *inputs[] = {NULL, "{}", " { } ", "{\"a\":1}", "{\"a\":{\"b\":[1,2]}}"};
    char first[33] = "";
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        as_buf b;
        as_buf_init(&b);
        char id[33];
        as_spool_tag_metadata(inputs[i], &b, id);
        cJSON *o = cJSON_Parse(as_buf_cstr(&b));
        assert_non_null(o);
        assert_string_equal(cJSON_GetObjectItem(o, "agentsight_event_id")->valuestring, id);
        assert_int_equal(strlen(id), 32);
        assert_string_not_equal(id, first);
        snprintf(first, sizeof first, "%s", id);
        /* Tagging again keeps the same id. */
        as_buf again;
        as_buf_init(&again);
        char id2[33];
        as_spool_tag_metadata(as_buf_cstr(&b), &again, id2);
        assert_string_equal(id, id2);
        assert_string_equal(as_buf_cstr(&again), as_buf_cstr(&b));
        as_buf_free(&again);
        as_buf_free(&b);
        cJSON_Delete(o);
    }
}

/* Proves ids are 32 lowercase hex digits, and a forked child draws its own prefix (its
 * ids never repeat the parent's). */
static void test_tag_ids_after_fork(void **state) {
    as_buf b;
    as_buf_init(&b);
    char parent[33], child[33] = "";
    as_spool_tag_metadata("{}", &b, parent);
    assert_int_equal(strspn(parent, "0123456789abcdef"), 32);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char id[33];
        as_buf_reset(&b);
        as_spool_tag_metadata("{}", &b, id);
        _exit(write(fds[1], id, 33) == 33 ? 0 : 1);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(read(fds[0], child, 33), 33);
    close(fds[0]);
    close(fds[1]);
    assert_int_equal(strspn(child, "0123456789abcdef"), 32);
    assert_memory_not_equal(child, parent, 16); /* another prefix */
    as_buf_free(&b);
}

/* Proves staged lines wait for AS_SPOOL_LINGER_MS before as_spool_commit_due writes them
 * (one batch file instead of one per exporter pass), and AS_SPOOL_BATCH_BYTES of staged
 * lines are written at once. */
static void test_commit_due(void **state) {
    as_spool *sp = as_spool_open(root, "agentsight:http://linger", 0);
    assert_non_null(sp);
    int64_t t_before = as_clock_unix_ns();
    for (int i = 0; i < 3; i++)
        assert_int_equal(as_spool_stage(sp, 0, "{\"action_name\":\"x\"}", 20), 0);
    assert_int_equal(as_spool_commit_due(sp), 0); /* too young */
    assert_int_equal(as_spool_pending(sp, NULL), 0);
    assert_int_equal(as_spool_staged(sp), 3);
    struct timespec nap = {0, (AS_SPOOL_LINGER_MS + 20) * 1000000L};
    nanosleep(&nap, NULL);
    int64_t t_staged = as_clock_unix_ns();
    assert_int_equal(as_spool_commit_due(sp), 3);
    assert_int_equal(as_spool_pending(sp, NULL), 1);
    assert_int_equal(as_spool_staged(sp), 0);
    /* The batch is keyed by when its first line was staged, not by the later commit. */
    char claimed[1024];
    int64_t key = 0;
    assert_int_equal(as_spool_claim(sp, claimed, sizeof claimed, &key), 1);
    assert_true(key >= t_before && key <= t_staged - AS_SPOOL_LINGER_MS * 1000000LL);
    assert_int_equal(as_spool_unclaim(claimed), 0);
    /* A megabyte of lines makes its own batch at once. */
    static char line[4096];
    memset(line, 'a', sizeof line - 1);
    size_t n = AS_SPOOL_BATCH_BYTES / (sizeof line) + 1;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(as_spool_stage(sp, 0, line, sizeof line - 1), 0);
    assert_int_equal(as_spool_pending(sp, NULL), 2);
    as_spool_close(sp);
}

/* Proves a spool bounded below 4 MiB writes batches of at most a quarter of its bound, so
 * a burst is never refused whole for being bigger than the spool. */
static void test_small_bound_batches(void **state) {
    as_spool *sp = as_spool_open(root, "agentsight:http://small", 40000);
    assert_non_null(sp);
    static char line[1000];
    memset(line, 'b', sizeof line - 1);
    for (int i = 0; i < 30; i++) /* 30 kB: more than the bound allows in one batch */
        assert_int_equal(as_spool_stage(sp, 0, line, sizeof line - 1), 0);
    assert_true(as_spool_pending(sp, NULL) >= 2);
    assert_int_equal(as_spool_dropped(sp), 0);
    as_spool_close(sp);
}

/* Proves a file-sink line reads back into the same action; bad lines are refused. */
static void test_parse_round_trip(void **state) {
    as_action a = {.action_name = "weather_lookup",
                   .started_ns = 1705314600000000000ll,
                   .ended_ns = 1705314600050000000ll,
                   .duration_ms = 50,
                   .tools_used = "{\"function\":\"multiply\"}",
                   .response = "60",
                   .error_msg = "e\n\"q\"",
                   .conversation_id = "math_help_123",
                   .metadata = "{\"k\":\"v\"}",
                   .timestamp_ns = 1705314601000000000ll};
    as_buf b;
    as_buf_init(&b);
    as_action_to_jsonl(&a, &b);
    as_spool_rec r;
    assert_int_equal(as_spool_parse_line(b.data, b.len, &r), 0);
    assert_string_equal(r.a.action_name, a.action_name);
    assert_int_equal(r.a.started_ns, a.started_ns);
    assert_int_equal(r.a.ended_ns, a.ended_ns);
    assert_int_equal(r.a.duration_ms, 50);
    assert_string_equal(r.a.tools_used, a.tools_used);
    assert_string_equal(r.a.response, "60");
    assert_string_equal(r.a.error_msg, a.error_msg);
    assert_string_equal(r.a.conversation_id, a.conversation_id);
    assert_string_equal(r.a.metadata, a.metadata);
    assert_int_equal(r.a.timestamp_ns, a.timestamp_ns);
    as_spool_rec_free(&r);
    as_buf_free(&b);
    const char *bad[] = {"", "[]", "{\"action_name\":1}", "{\"action_name\":\"\"}", "{oops"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(as_spool_parse_line(bad[i], strlen(bad[i]), &r), -1);
}

static void visit(const char *uri, const char *dir, void *ctx) {
    if (strcmp(uri, "otlp:http://listed:1") == 0)
        (*(int *)ctx)++;
}

/* Proves `agentsight send` can find each sink's pending batches by URI. */
static void test_foreach_sink(void **state) {
    as_spool *sp = as_spool_open(root, "otlp:http://listed:1", 0);
    as_spool_stage(sp, 0, "{\"action_name\":\"x\"}", 19);
    as_spool_close(sp); /* commits what is staged */
    int found = 0;
    assert_true(as_spool_foreach_sink(root, visit, &found) >= 1);
    assert_int_equal(found, 1);
}

/* ---- write-ahead batches ---------------------------------------------------------------- */

static int collect_names(const char *line, size_t len, void *ctx) {
    as_spool_rec rec;
    if (as_spool_parse_line(line, len, &rec) != 0)
        return 0; /* not an action (a torn line): skipped */
    char *names = ctx;
    strcat(names, rec.a.action_name);
    as_spool_rec_free(&rec);
    return 0;
}

static const char wal_lines[] = "{\"action_name\":\"a\"}\n{\"action_name\":\"b\"}\n";

/* Proves a write-ahead batch is on disk at once, claimed by its writer (no replayer takes
 * it, it is not pending), holds the lines, and is removed when its replay ends. */
static void test_wal_claimed_then_removed(void **state) {
    as_spool *sp = as_spool_open(root, "otlp:http://wal", 0);
    as_spool_replay *rp = as_spool_wal(sp, wal_lines, strlen(wal_lines), 2);
    assert_non_null(rp);
    assert_int_equal(rp->remaining, 0);
    assert_true(rp->loaded && rp->key > 0);
    char want[64];
    snprintf(want, sizeof want, ".claim-%d", (int)getpid());
    assert_non_null(strstr(rp->path, want));
    assert_int_equal(access(rp->path, F_OK), 0);
    assert_int_equal(as_spool_pending(sp, NULL), 0);
    char path[1024];
    assert_int_equal(as_spool_claim(sp, path, sizeof path, NULL), 0);
    char names[16] = "", uri[128];
    assert_int_equal(as_spool_read(rp->path, uri, sizeof uri, collect_names, names), 0);
    assert_string_equal(names, "ab");
    assert_string_equal(uri, "otlp:http://wal");
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", rp->path);
    as_spool_replay_end(sp, rp);
    assert_int_not_equal(access(copy, F_OK), 0);
    as_spool_close(sp);
}

/* Proves the write-ahead batch of a process that died before its requests were answered
 * (killed in the middle of its last write, too) is released as pending at the next open
 * and replayed whole, the torn last line skipped. */
static void test_wal_of_dead_writer_is_replayed(void **state) {
    pid_t child = fork();
    if (child == 0) {
        as_spool *sp = as_spool_open(root, "agentsight:http://wal-dead", 0);
        as_spool_replay *rp = as_spool_wal(sp, wal_lines, strlen(wal_lines), 2);
        FILE *f = rp ? fopen(rp->path, "a") : NULL;
        if (f) /* what a kill inside a write leaves: a partial line */
            fputs("{\"action_name\":\"c", f);
        _exit(f && fclose(f) == 0 ? 0 : 1);
    }
    int status = 0;
    waitpid(child, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    as_spool *sp = as_spool_open(root, "agentsight:http://wal-dead", 0);
    assert_int_equal(as_spool_pending(sp, NULL), 1);
    int pending = 1;
    as_spool_replay *rp = as_spool_replay_start(sp, &pending);
    assert_non_null(rp);
    char names[16] = "";
    assert_int_equal(as_spool_read(rp->path, NULL, 0, collect_names, names), 0);
    assert_string_equal(names, "ab");
    as_spool_replay_end(sp, rp);
    assert_int_equal(as_spool_pending(sp, NULL), 0);
    as_spool_close(sp);
}

/* Proves a write-ahead batch that cannot fit the spool's bound is refused (NULL, nothing
 * left behind) rather than written past it. */
static void test_wal_over_bound(void **state) {
    as_spool *sp = as_spool_open(root, "otlp:http://wal-small", 64);
    assert_null(as_spool_wal(sp, wal_lines, strlen(wal_lines), 2));
    assert_int_equal(as_spool_pending(sp, NULL), 0);
    char path[1024];
    assert_int_equal(as_spool_claim(sp, path, sizeof path, NULL), 0);
    as_spool_close(sp);
}

/* Proves an action's own event id is what a line carries (the event_id member, last)
 * and what its metadata is tagged with, and that it is read back from a line, also from
 * a line spooled with only metadata.agentsight_event_id; a malformed one is dropped. */
static void test_event_id_round_trip(void **state) {
    const char *id = "0123456789abcdef00000000000000a8";
    as_buf meta, line;
    as_buf_init(&meta);
    as_buf_init(&line);
    char got[33];
    as_spool_tag_action("{\"k\":1}", id, &meta, got);
    assert_string_equal(got, id);
    as_action a = {
        .action_name = "x", .conversation_id = "c", .metadata = as_buf_cstr(&meta), .event_id = id};
    as_action_to_jsonl(&a, &line);
    const char *tail = "\"event_id\":\"0123456789abcdef00000000000000a8\"}\n";
    assert_string_equal(as_buf_cstr(&line) + line.len - strlen(tail), tail);
    as_spool_rec rec;
    assert_int_equal(as_spool_parse_line(line.data, line.len - 1, &rec), 0);
    assert_string_equal(rec.a.event_id, id);
    assert_non_null(strstr(rec.a.metadata, id));
    as_spool_rec_free(&rec);
    const char *old = "{\"action_name\":\"x\",\"metadata\":{\"agentsight_event_id\":"
                      "\"0123456789abcdef00000000000000a8\"}}";
    assert_int_equal(as_spool_parse_line(old, strlen(old), &rec), 0);
    assert_string_equal(rec.a.event_id, id);
    as_spool_rec_free(&rec);
    const char *bad = "{\"action_name\":\"x\",\"event_id\":\"not-hex\"}";
    assert_int_equal(as_spool_parse_line(bad, strlen(bad), &rec), 0);
    assert_null(rec.a.event_id);
    as_spool_rec_free(&rec);
    as_buf_free(&meta);
    as_buf_free(&line);
}

/* Proves a replayed line with bytes that are not UTF-8 (in its name, its tools_used, its
 * metadata) is read as an action whose JSONL line is valid UTF-8 (U+FFFD in their place),
 * and that metadata naming a malformed, a nested or another event id ends with exactly
 * one top-level agentsight_event_id, the one returned. Before, tools_used and metadata
 * were written back with the bad bytes, and "agentsight_event_id":"" gave the id "". */
static void test_replayed_bytes_and_odd_ids(void **state) {
    const char *line = "{\"action_name\":\"x\xff\",\"tools_used\":{\"k\":\"\xc0\x80\"},"
                       "\"metadata\":{\"m\":\"\xed\xa0\x80\"}}";
    as_spool_rec rec;
    assert_int_equal(as_spool_parse_line(line, strlen(line), &rec), 0);
    as_buf out;
    as_buf_init(&out);
    as_action_to_jsonl(&rec.a, &out);
    assert_true(as_utf8_valid(out.data, out.len));
    assert_non_null(strstr(as_buf_cstr(&out), "\"k\":\"\xef\xbf\xbd\xef\xbf\xbd\""));
    as_spool_rec_free(&rec);
    const char *metas[] = {"{\"agentsight_event_id\":\"\"}",
                           "{\"agentsight_event_id\":\"abc\",\"z\":1}",
                           "{\"a\":{\"agentsight_event_id\":\"0123456789abcdef0123456789abcdef\"}}",
                           "{\"agentsight_event_id\":\"0123456789abcdef0123456789abcdef\"}"};
    for (size_t i = 0; i < sizeof metas / sizeof metas[0]; i++) {
        for (int own = 0; own <= 1; own++) {
            char id[33];
            as_buf_reset(&out);
            as_spool_tag_action(metas[i], own ? "fedcba9876543210fedcba9876543210" : NULL, &out,
                                id);
            assert_int_equal(strspn(id, "0123456789abcdef"), 32);
            if (own)
                assert_string_equal(id, "fedcba9876543210fedcba9876543210");
            cJSON *o = cJSON_Parse(as_buf_cstr(&out));
            assert_non_null(o);
            int n = 0;
            for (cJSON *c = o->child; c; c = c->next)
                if (strcmp(c->string, "agentsight_event_id") == 0) {
                    assert_string_equal(c->valuestring, id);
                    n++;
                }
            assert_int_equal(n, 1);
            cJSON_Delete(o);
        }
    }
    as_buf_free(&out);
}

/* Writes text (n bytes) as the file name in the spool directory of sp. */
static void plant(as_spool *sp, const char *name, const char *text, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", as_spool_dir(sp), name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Whether name.bad exists in the spool directory of sp. */
static int set_aside_as(as_spool *sp, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.bad", as_spool_dir(sp), name);
    return access(path, F_OK) == 0;
}

/* Proves an empty batch (what a power loss leaves with fsync off) and a garbage batch at
 * the head of the spool are set aside as .bad and counted, and the sound batch behind
 * them is claimed. */
static void test_damaged_head_set_aside(void **state) {
    as_spool *sp = as_spool_open(root, "agentsight:http://damage", 0);
    assert_non_null(sp);
    assert_int_equal(as_spool_stage(sp, 5, "{\"action_name\":\"good\"}", 22), 0);
    assert_int_equal(as_spool_commit(sp), 1);
    plant(sp, "00000000000000000001-1-0.jsonl", "", 0);
    plant(sp, "00000000000000000002-1-0.jsonl", "\x00\xff\x13 noise\n\x7f", 10);
    unsigned long before = as_spool_set_aside();
    char path[1024], names[16] = "";
    int64_t key = 0;
    assert_int_equal(as_spool_claim(sp, path, sizeof path, &key), 1);
    assert_int_equal(key, 5);
    assert_int_equal(as_spool_read(path, NULL, 0, collect_names, names), 0);
    assert_string_equal(names, "good");
    assert_int_equal(as_spool_set_aside() - before, 2);
    assert_true(set_aside_as(sp, "00000000000000000001-1-0.jsonl"));
    assert_true(set_aside_as(sp, "00000000000000000002-1-0.jsonl"));
    assert_int_equal(as_spool_release(path), 0);
    assert_int_equal(as_spool_claim(sp, path, sizeof path, NULL), 0);
    as_spool_close(sp);
}

/* Proves a batch cut short (its header counts 3, two whole lines, a third cut) and one
 * with a garbage line between actions are set aside, and their whole action lines are
 * pending again under the same key: nothing readable is lost, nothing unreadable shipped. */
static void test_damaged_cut_and_garbage_lines(void **state) {
    as_spool *sp = as_spool_open(root, "agentsight:http://damage", 0);
    assert_non_null(sp);
    const char cut[] = "{\"agentsight_spool\":1,\"sink\":\"agentsight:http://damage\","
                       "\"count\":3,\"pid\":1}\n{\"action_name\":\"a\"}\n"
                       "{\"action_name\":\"b\"}\n{\"action_na";
    plant(sp, "00000000000000000007-1-0.jsonl", cut, sizeof cut - 1);
    const char mixed[] = "{\"agentsight_spool\":1,\"sink\":\"agentsight:http://damage\","
                         "\"count\":2,\"pid\":1}\n{\"action_name\":\"c\"}\n"
                         "{\"act\x01on_name\":\"x\"}\n{\"action_name\":\"d\"}\n";
    plant(sp, "00000000000000000009-1-0.jsonl", mixed, sizeof mixed - 1);
    unsigned long before = as_spool_set_aside();
    char path[1024], names[16] = "";
    int64_t key = 0;
    assert_int_equal(as_spool_claim(sp, path, sizeof path, &key), 1);
    assert_int_equal(key, 7);
    assert_int_equal(as_spool_read(path, NULL, 0, collect_names, names), 0);
    assert_string_equal(names, "ab");
    assert_int_equal(as_spool_release(path), 0);
    assert_int_equal(as_spool_claim(sp, path, sizeof path, &key), 1);
    assert_int_equal(key, 9);
    names[0] = 0;
    assert_int_equal(as_spool_read(path, NULL, 0, collect_names, names), 0);
    assert_string_equal(names, "cd");
    assert_int_equal(as_spool_release(path), 0);
    assert_int_equal(as_spool_set_aside() - before, 2);
    assert_true(set_aside_as(sp, "00000000000000000007-1-0.jsonl"));
    assert_true(set_aside_as(sp, "00000000000000000009-1-0.jsonl"));
    assert_int_equal(as_spool_pending(sp, NULL), 0);
    as_spool_close(sp);
}

/* as_spool_foreach_sink callback: copies the URI into ctx (256 bytes). */
static void visit_uri(const char *uri, const char *dir, void *ctx) {
    snprintf(ctx, 256, "%s", uri);
}

/* Proves a damaged batch at the head of a sink's spool does not hide the sink from
 * as_spool_foreach_sink (named by the next readable header), and is set aside there. */
static void test_foreach_sink_past_damaged_head(void **state) {
    as_spool *sp = as_spool_open(root, "otlp:http://behind-damage", 0);
    assert_non_null(sp);
    assert_int_equal(as_spool_stage(sp, 5, "{\"action_name\":\"a\"}", 19), 0);
    assert_int_equal(as_spool_commit(sp), 1);
    plant(sp, "00000000000000000001-1-0.jsonl", "", 0);
    char seen[256] = "";
    assert_int_equal(as_spool_foreach_sink(root, visit_uri, seen), 1);
    assert_string_equal(seen, "otlp:http://behind-damage");
    assert_true(set_aside_as(sp, "00000000000000000001-1-0.jsonl"));
    assert_int_equal(as_spool_pending(sp, NULL), 1);
    as_spool_close(sp);
}

/* Proves a refusal for authentication (401, 403) is not a dead letter: the action is
 * pending again, no replay starts in this process (it would be refused again), and a
 * later process (a fixed key) replays it. */
static void test_auth_refusal_stays_in_spool(void **state) {
    as_spool *sp = as_spool_open(root, "agentsight:http://auth", 0);
    assert_non_null(sp);
    const char *a = "{\"action_name\":\"a\"}", *b = "{\"action_name\":\"b\"}";
    assert_int_equal(as_spool_dead_letter(sp, 401, "bad key", a, strlen(a)), 0);
    assert_int_equal(as_spool_dead_letter(sp, 403, "forbidden", b, strlen(b)), 0);
    char dl[600];
    snprintf(dl, sizeof dl, "%s/dead-letter.jsonl", root);
    assert_int_equal(access(dl, F_OK), -1);
    int pending = 1;
    assert_null(as_spool_replay_start(sp, &pending));
    assert_int_equal(pending, 1);
    assert_int_equal(as_spool_pending(sp, NULL), 1);
    as_spool_close(sp);
    sp = as_spool_open(root, "agentsight:http://auth", 0);
    as_spool_replay *rp = as_spool_replay_start(sp, &pending);
    assert_non_null(rp);
    char names[16] = "";
    assert_int_equal(as_spool_read(rp->path, NULL, 0, collect_names, names), 0);
    assert_string_equal(names, "ab");
    as_spool_replay_end(sp, rp);
    as_spool_close(sp);
}

/* as_spool_read callback: appends the line to the file it reads (ctx: its path). */
static int append_back(const char *line, size_t len, void *ctx) {
    FILE *f = fopen(ctx, "a");
    assert_non_null(f);
    fwrite(line, 1, len, f);
    fputc('\n', f);
    fclose(f);
    return 0;
}

/* Proves a dead-letter record reads as its action (`send` can upload the dead-letter
 * file), and reading a file ends at the size it had when opened, also when each line is
 * appended to it again while it is read (as refusals are, to the dead-letter file). */
static void test_dead_letter_file_readable(void **state) {
    as_spool *sp = as_spool_open(root, "agentsight:http://dl", 0);
    assert_non_null(sp);
    const char *a = "{\"action_name\":\"refused\",\"response\":\"r\"}";
    assert_int_equal(as_spool_dead_letter(sp, 400, "no", a, strlen(a)), 0);
    char dl[600];
    snprintf(dl, sizeof dl, "%s/dead-letter.jsonl", root);
    int n = 0;
    assert_int_equal(as_spool_read(dl, NULL, 0, append_back, dl), 0);
    assert_int_equal(as_spool_read(dl, NULL, 0, count_line, &n), 0);
    assert_int_equal(n, 2); /* the record and its one copy */
    FILE *f = fopen(dl, "r");
    char line[512];
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    as_spool_rec rec;
    assert_int_equal(as_spool_parse_line(line, strlen(line), &rec), 0);
    assert_string_equal(rec.a.action_name, "refused");
    assert_string_equal(rec.a.response, "r");
    as_spool_rec_free(&rec);
    as_spool_close(sp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_by_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_bound_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_ids_after_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_bound_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreach_sink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_claimed_then_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_of_dead_writer_is_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_over_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_id_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_head_set_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_cut_and_garbage_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreach_sink_past_damaged_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_refusal_stays_in_spool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter_file_readable, setup, teardown),
        cmocka_unit_test(test_replayed_bytes_and_odd_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
