/* test_settings.c - unit tests of preload/core/settings.c: the defaults table, every
 * AGENTSIGHT_* variable (set with setenv), warnings for bad values, agentsight_init()
 * options, and the conversation id across fork. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/settings.h"

static const char *const vars[] = {
    "AGENTSIGHT_OUTPUT",        "AGENTSIGHT_CONVERSATION_ID",  "AGENTSIGHT_API_KEY",
    "AGENTSIGHT_API_ENDPOINT",  "AGENTSIGHT_FLUSH_TIMEOUT_MS", "AGENTSIGHT_QUEUE_POLICY",
    "AGENTSIGHT_QUEUE_WAIT_MS", "AGENTSIGHT_QUEUE_BYTES",      "AGENTSIGHT_SPOOL_DIR",
    "AGENTSIGHT_SERVICE_NAME",  "AGENTSIGHT_LOG_LEVEL",
};

static int clear_env(void **state) {
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    setenv("HOME", "/home/tester", 1);
    unsetenv("XDG_STATE_HOME");
    return 0;
}

/* Loads settings with fd 2 captured; returns what was printed (static buffer). */
static const char *load_capture(int policy) {
    static char text[4096];
    char path[] = "/tmp/test_settings_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    as_settings_load(policy);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    close(fd);
    return text;
}

static int is_conv_id(const char *s) {
    if (strlen(s) != 17 || strncmp(s, "conv_", 5) != 0)
        return 0;
    for (int i = 5; i < 17; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

/* Proves the defaults table with no AGENTSIGHT_* variable set: the default file sink is
 * resolved once, against the working directory when the settings are made (a program
 * that changes directory later still writes there); with AGENTSIGHT_RUN_DIR (set by
 * `agentsight run`) against that directory instead. */
static void test_defaults(void **state) {
    const char *err = load_capture(AGENTSIGHT_QUEUE_WAIT);
    assert_string_equal(err, "");
    char cwd[4096], want[4200];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(want, sizeof want, "file:%s/agentsight-actions.jsonl", cwd);
    assert_string_equal(as_cfg.output, want);
    assert_false(as_cfg.output_explicit);
    setenv("AGENTSIGHT_RUN_DIR", "/run-dir", 1);
    setenv("AGENTSIGHT_OUTPUT", "stderr,file:rel/x.jsonl", 1);
    err = load_capture(AGENTSIGHT_QUEUE_WAIT);
    assert_string_equal(err, "");
    assert_string_equal(as_cfg.output, "stderr,file:/run-dir/rel/x.jsonl");
    unsetenv("AGENTSIGHT_OUTPUT");
    err = load_capture(AGENTSIGHT_QUEUE_WAIT);
    assert_string_equal(as_cfg.output, "file:/run-dir/agentsight-actions.jsonl");
    setenv("AGENTSIGHT_RUN_DIR", "not-absolute", 1); /* ignored */
    err = load_capture(AGENTSIGHT_QUEUE_WAIT);
    assert_string_equal(as_cfg.output, want);
    unsetenv("AGENTSIGHT_RUN_DIR");
    err = load_capture(AGENTSIGHT_QUEUE_WAIT);
    assert_string_equal(as_cfg.api_endpoint, "https://api.agentsight.io");
    assert_string_equal(as_cfg.api_key, "");
    assert_int_equal(as_cfg.flush_timeout_ms, 2000);
    assert_int_equal(as_cfg.queue_policy, AGENTSIGHT_QUEUE_WAIT);
    assert_int_equal(as_cfg.queue_wait_ms, 1000);
    assert_int_equal(as_cfg.queue_bytes, 1 << 20);
    assert_string_equal(as_cfg.spool_dir, "/home/tester/.local/state/agentsight/spool");
    assert_string_equal(as_cfg.service_name, "test_settings");
    assert_true(is_conv_id(as_cfg.conversation_id));
    assert_string_equal(as_settings_conversation_id(), as_cfg.conversation_id);
    /* the interposer's default policy */
    load_capture(AGENTSIGHT_QUEUE_DROP);
    assert_int_equal(as_cfg.queue_policy, AGENTSIGHT_QUEUE_DROP);
}

/* Proves every variable is read. */
static void test_env_values(void **state) {
    setenv("AGENTSIGHT_OUTPUT", "stderr,file:/tmp/x.jsonl", 1);
    setenv("AGENTSIGHT_CONVERSATION_ID", "math_help_123", 1);
    setenv("AGENTSIGHT_API_KEY", "ags_0123", 1);
    setenv("AGENTSIGHT_API_ENDPOINT", "http://127.0.0.1:9", 1);
    setenv("AGENTSIGHT_FLUSH_TIMEOUT_MS", "150", 1);
    setenv("AGENTSIGHT_QUEUE_POLICY", "drop", 1);
    setenv("AGENTSIGHT_QUEUE_WAIT_MS", "0", 1);
    setenv("AGENTSIGHT_QUEUE_BYTES", "2M", 1);
    setenv("AGENTSIGHT_SPOOL_DIR", "/var/tmp/spool", 1);
    setenv("AGENTSIGHT_SERVICE_NAME", "weather-agent", 1);
    assert_string_equal(load_capture(AGENTSIGHT_QUEUE_WAIT), "");
    assert_string_equal(as_cfg.output, "stderr,file:/tmp/x.jsonl");
    assert_true(as_cfg.output_explicit);
    assert_string_equal(as_cfg.conversation_id, "math_help_123");
    assert_string_equal(as_settings_conversation_id(), "math_help_123");
    assert_string_equal(as_cfg.api_key, "ags_0123");
    assert_string_equal(as_cfg.api_endpoint, "http://127.0.0.1:9");
    assert_int_equal(as_cfg.flush_timeout_ms, 150);
    assert_int_equal(as_cfg.queue_policy, AGENTSIGHT_QUEUE_DROP);
    assert_int_equal(as_cfg.queue_wait_ms, 0);
    assert_int_equal(as_cfg.queue_bytes, 2 << 20);
    assert_string_equal(as_cfg.spool_dir, "/var/tmp/spool");
    assert_string_equal(as_cfg.service_name, "weather-agent");
}

/* Proves an API key without a named output selects the "agentsight" sink. */
static void test_api_key_default_output(void **state) {
    setenv("AGENTSIGHT_API_KEY", "ags_0123", 1);
    load_capture(AGENTSIGHT_QUEUE_WAIT);
    assert_string_equal(as_cfg.output, "agentsight");
    assert_false(as_cfg.output_explicit);
}

/* Proves bad numbers warn naming the variable and keep the defaults. */
static void test_bad_numbers_warn(void **state) {
    setenv("AGENTSIGHT_FLUSH_TIMEOUT_MS", "soon", 1);
    setenv("AGENTSIGHT_QUEUE_WAIT_MS", "-5", 1);
    setenv("AGENTSIGHT_QUEUE_BYTES", "12X", 1);
    setenv("AGENTSIGHT_QUEUE_POLICY", "sometimes", 1);
    const char *err = load_capture(AGENTSIGHT_QUEUE_WAIT);
    /* one prefixed line per warning (log.c's format) */
    assert_int_equal(strncmp(err, "agentsight: warning: AGENTSIGHT_", 32), 0);
    assert_non_null(strstr(err, "AGENTSIGHT_FLUSH_TIMEOUT_MS"));
    assert_non_null(strstr(err, "AGENTSIGHT_QUEUE_WAIT_MS"));
    assert_non_null(strstr(err, "AGENTSIGHT_QUEUE_BYTES"));
    assert_non_null(strstr(err, "AGENTSIGHT_QUEUE_POLICY"));
    assert_int_equal(as_cfg.flush_timeout_ms, 2000);
    assert_int_equal(as_cfg.queue_wait_ms, 1000);
    assert_int_equal(as_cfg.queue_bytes, 1 << 20);
    assert_int_equal(as_cfg.queue_policy, AGENTSIGHT_QUEUE_WAIT);
}

/* Proves that without XDG_STATE_HOME and HOME no predictable shared place (the old
 * /tmp/agentsight-<uid>) is used: a private XDG_RUNTIME_DIR holds the spool, one that
 * others may write to does not, and with none there is no spool at all, with a single
 * warning however often the settings are loaded. */
static void test_spool_without_home(void **state) {
    unsetenv("HOME");
    unsetenv("XDG_RUNTIME_DIR");
    const char *err = load_capture(AGENTSIGHT_QUEUE_WAIT);
    assert_string_equal(as_cfg.spool_dir, "");
    assert_non_null(strstr(err, "running without a spool"));
    err = load_capture(AGENTSIGHT_QUEUE_WAIT);
    assert_string_equal(as_cfg.spool_dir, "");
    assert_null(strstr(err, "spool")); /* warned once per process */

    char run[] = "/tmp/test_settings_run_XXXXXX";
    assert_non_null(mkdtemp(run));
    setenv("XDG_RUNTIME_DIR", run, 1);
    load_capture(AGENTSIGHT_QUEUE_WAIT);
    char want[256];
    snprintf(want, sizeof want, "%s/agentsight/spool", run);
    assert_string_equal(as_cfg.spool_dir, want);

    assert_int_equal(chmod(run, 0777), 0); /* anyone could plant files there */
    load_capture(AGENTSIGHT_QUEUE_WAIT);
    assert_string_equal(as_cfg.spool_dir, "");
    assert_null(strstr(as_cfg.spool_dir, "/tmp/agentsight-"));

    setenv("AGENTSIGHT_SPOOL_DIR", "/var/tmp/given", 1); /* given explicitly: used */
    load_capture(AGENTSIGHT_QUEUE_WAIT);
    assert_string_equal(as_cfg.spool_dir, "/var/tmp/given");
    unsetenv("XDG_RUNTIME_DIR");
    rmdir(run);
}

/* Proves an AGENTSIGHT_OUTPUT longer than the settings hold is an error naming it and
 * leaves no output at all (explicit and empty), instead of the default file; and an
 * over-long AGENTSIGHT_SPOOL_DIR means no spool, not the default one. */
static void test_output_too_long(void **state) {
    char big[1400];
    memset(big, 0, sizeof big);
    strcpy(big, "file:/tmp/");
    memset(big + 10, 'o', sizeof big - 11);
    setenv("AGENTSIGHT_OUTPUT", big, 1);
    setenv("AGENTSIGHT_SPOOL_DIR", big + 5, 1);
    const char *err = load_capture(AGENTSIGHT_QUEUE_WAIT);
    assert_non_null(strstr(err, "AGENTSIGHT_OUTPUT: value of 1399 bytes is longer than 1023"));
    assert_non_null(strstr(err, "no sink is opened"));
    assert_non_null(strstr(err, "AGENTSIGHT_SPOOL_DIR: value longer than 511 bytes"));
    assert_string_equal(as_cfg.output, "");
    assert_int_equal(as_cfg.output_explicit, 1);
    assert_string_equal(as_cfg.spool_dir, "");
}

/* Proves queue sizes are rounded up to a power of two within [64 KiB, 256 MiB]. */
static void test_queue_bytes_rounding(void **state) {
    static const struct {
        const char *in;
        size_t want;
    } cases[] = {{"100000", 131072},
                 {"1", 65536},
                 {"65536", 65536},
                 {"65537", 131072},
                 {"1G", 256u << 20},
                 {"3MiB", 4u << 20},
                 {"99999999999999", 256u << 20}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("AGENTSIGHT_QUEUE_BYTES", cases[i].in, 1);
        load_capture(AGENTSIGHT_QUEUE_WAIT);
        if (as_cfg.queue_bytes != cases[i].want)
            fail_msg("%s -> %zu, want %zu", cases[i].in, as_cfg.queue_bytes, cases[i].want);
    }
}

/* Proves XDG_STATE_HOME (when absolute) places the spool directory. */
static void test_spool_xdg(void **state) {
    setenv("XDG_STATE_HOME", "/xdg/state", 1);
    load_capture(AGENTSIGHT_QUEUE_WAIT);
    assert_string_equal(as_cfg.spool_dir, "/xdg/state/agentsight/spool");
}

/* Proves agentsight_init() options override the environment, and an invalid one is
 * refused leaving the settings unchanged. */
static void test_apply_options(void **state) {
    setenv("AGENTSIGHT_FLUSH_TIMEOUT_MS", "150", 1);
    load_capture(AGENTSIGHT_QUEUE_WAIT);
    agentsight_options o = {.conversation_id = "given",
                            .api_key = "ags_k",
                            .flush_timeout_ms = 700,
                            .queue_policy = AGENTSIGHT_QUEUE_DROP,
                            .queue_bytes = 70000};
    assert_int_equal(as_settings_apply(&o), 0);
    assert_string_equal(as_cfg.conversation_id, "given");
    assert_string_equal(as_settings_conversation_id(), "given");
    assert_string_equal(as_cfg.output, "agentsight"); /* the key selects the API sink */
    assert_int_equal(as_cfg.flush_timeout_ms, 700);
    assert_int_equal(as_cfg.queue_wait_ms, 1000); /* zero member: kept */
    assert_int_equal(as_cfg.queue_policy, AGENTSIGHT_QUEUE_DROP);
    assert_int_equal(as_cfg.queue_bytes, 131072);

    as_settings before = as_cfg;
    agentsight_options bad = {.flush_timeout_ms = 5, .queue_policy = (agentsight_queue_policy)9};
    fflush(stderr);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    int rc = as_settings_apply(&bad);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    assert_int_equal(rc, -1);
    assert_memory_equal(&before, &as_cfg, sizeof before);
    assert_int_equal(as_settings_apply(NULL), 0);
}

/* Runs as_settings_conversation_id() in a forked child; returns the child's id. */
static void child_id(char *out, size_t cap) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *id = as_settings_conversation_id();
        ssize_t w = write(p[1], id, strlen(id));
        _exit(w > 0 ? 0 : 1);
    }
    close(p[1]);
    ssize_t n = read(p[0], out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Proves a forked child gets a new id when it was generated, and keeps a given one. */
static void test_fork_conversation_id(void **state) {
    load_capture(AGENTSIGHT_QUEUE_WAIT);
    char parent[64], child[64];
    snprintf(parent, sizeof parent, "%s", as_settings_conversation_id());
    child_id(child, sizeof child);
    assert_true(is_conv_id(child));
    assert_string_not_equal(child, parent);
    assert_string_equal(as_settings_conversation_id(), parent); /* parent unchanged */

    setenv("AGENTSIGHT_CONVERSATION_ID", "fixed_conv", 1);
    load_capture(AGENTSIGHT_QUEUE_WAIT);
    child_id(child, sizeof child);
    assert_string_equal(child, "fixed_conv");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_env_values, clear_env),
        cmocka_unit_test_setup(test_api_key_default_output, clear_env),
        cmocka_unit_test_setup(test_bad_numbers_warn, clear_env),
        cmocka_unit_test_setup(test_queue_bytes_rounding, clear_env),
        cmocka_unit_test_setup(test_spool_xdg, clear_env),
        cmocka_unit_test_setup(test_apply_options, clear_env),
        cmocka_unit_test_setup(test_fork_conversation_id, clear_env),
        cmocka_unit_test_setup(test_spool_without_home, clear_env),
        cmocka_unit_test_setup(test_output_too_long, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
