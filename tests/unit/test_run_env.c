/* test_run_env.c - unit tests of what `agentsight run -e` and `--no-follow` hand the
 * interposer: command-line entries appended to a config (hook/config.c), the entries
 * variable built by the CLI (cli/run_env.c), and the environment the traced process puts
 * back for its children (hook/nofollow.c). as_log is replaced (-Wl,--wrap=as_log) so the
 * printed messages can be checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/run_env.h"
#include "hook/config.h"
#include "hook/nofollow.h"
#include "test_util.h"

extern char **environ;

/* Captures what config.c and run_env.c would print on stderr. */
AS_TEST_CAPTURE_LOG(16, 600)

/* Makes *cfg from the -e entries in extra alone (no file). Returns the number of
 * refused lines, as as_config_add_entries does. */
static int add_alone(as_config *cfg, const char *extra) {
    memset(cfg, 0, sizeof *cfg);
    nmsgs = 0;
    return as_config_add_entries(cfg, extra, strlen(extra), "-e");
}

/* Proves entries from -e are appended after a file's, keep the file's [output] defaults,
 * and name "-e" and their position in messages; blank lines are skipped. */
static void test_add_after_file(void **state) {
    (void)state;
    as_config cfg;
    const char *file = "[output]\ncapture = off\nmax_string = 32\n[actions]\nalpha\n";
    nmsgs = 0;
    assert_int_equal(as_config_parse(file, strlen(file), "a.conf", &cfg), 0);
    const char *extra = "beta\n\n  int gamma(const char *s)  \ntool_*";
    assert_int_equal(as_config_add_entries(&cfg, extra, strlen(extra), "-e"), 0);
    assert_int_equal(cfg.nentries, 4);
    assert_string_equal(cfg.entries[0].pattern, "alpha");
    assert_null(cfg.entries[0].src);
    assert_string_equal(AS_ENTRY_SRC(&cfg, &cfg.entries[0]), "a.conf");
    assert_string_equal(cfg.entries[1].pattern, "beta");
    assert_string_equal(AS_ENTRY_SRC(&cfg, &cfg.entries[1]), "-e");
    assert_int_equal(cfg.entries[1].line, 1);
    assert_string_equal(cfg.entries[2].pattern, "gamma");
    assert_true(cfg.entries[2].has_proto);
    assert_int_equal(cfg.entries[2].line, 3);
    assert_int_equal(cfg.entries[2].max_string, 32);
    assert_true(cfg.entries[2].capture_none);
    assert_true(cfg.entries[3].is_glob);
    assert_string_equal(cfg.path, "a.conf");
    as_config_free(&cfg);
}

/* Proves entries alone (no file) make a config named "-e", and a refused line prints
 * "-e:LINE:COL: ..." and is counted while the others are kept. */
static void test_add_alone_with_error(void **state) {
    (void)state;
    as_config cfg;
    assert_int_equal(add_alone(&cfg, "one\nint two(\nthree name=x"), 1);
    assert_int_equal(cfg.errors, 1);
    assert_int_equal(cfg.nentries, 2);
    assert_string_equal(cfg.path, "-e");
    assert_string_equal(cfg.entries[1].name, "x");
    assert_int_equal(cfg.entries[1].line, 3);
    assert_int_equal(cfg.entries[1].max_string, AS_MAX_STRING_DEFAULT);
    assert_int_equal(nmsgs, 1);
    assert_non_null(strstr(msgs[0], "-e:2:"));
    as_config_free(&cfg);
}

/* Proves a prototype may name a glob (the example of the run reference), which is then
 * both a glob and a prototype entry, while a blank before the glob character stays an
 * error. */
static void test_glob_prototype(void **state) {
    (void)state;
    as_config cfg;
    assert_int_equal(
        add_alone(&cfg, "int tool_*(int)\nlong db_[a-c]?(const char *q, int n)\nint tool_ *(int)"),
        1);
    assert_int_equal(cfg.nentries, 2);
    assert_string_equal(cfg.entries[0].pattern, "tool_*");
    assert_true(cfg.entries[0].is_glob && cfg.entries[0].has_proto);
    assert_int_equal(cfg.entries[0].proto.nparams, 1);
    assert_string_equal(cfg.entries[1].pattern, "db_[a-c]?");
    assert_true(cfg.entries[1].is_glob && cfg.entries[1].has_proto);
    assert_int_equal(cfg.entries[1].proto.nparams, 2);
    assert_string_equal(cfg.entries[1].proto.names[0], "q");
    assert_non_null(strstr(msgs[0], "-e:3:"));
    as_config_free(&cfg);
}

/* Proves the CLI joins -e patterns one per line after entries already in the environment,
 * and refuses a pattern the parser refuses or one holding a newline (nothing set). */
static void test_cli_entries(void **state) {
    (void)state;
    unsetenv(AS_ENTRIES_ENV);
    char *p1[] = {"multiply", "int tool_*(int)"};
    assert_int_equal(as_run_env_entries(p1, 2), 0);
    assert_string_equal(getenv(AS_ENTRIES_ENV), "multiply\nint tool_*(int)");
    char *p2[] = {"sqlite3_exec"};
    assert_int_equal(as_run_env_entries(p2, 1), 0);
    assert_string_equal(getenv(AS_ENTRIES_ENV), "multiply\nint tool_*(int)\nsqlite3_exec");
    char *bad[] = {"ok", "int broken("};
    assert_int_equal(as_run_env_entries(bad, 2), -1);
    char *nl[] = {"a\nb"};
    assert_int_equal(as_run_env_entries(nl, 1), -1);
    assert_string_equal(getenv(AS_ENTRIES_ENV), "multiply\nint tool_*(int)\nsqlite3_exec");
    assert_int_equal(as_run_env_entries(NULL, 0), 0);
    unsetenv(AS_ENTRIES_ENV);
}

/* Returns the index of "NAME=..." in environ, or -1. */
static int env_index(const char *entry) {
    for (int i = 0; environ[i]; i++)
        if (strcmp(environ[i], entry) == 0)
            return i;
    return -1;
}

/* Proves the --no-follow round trip: what `run` changed after its snapshot is listed, and
 * the traced process's as_nofollow_apply() restores a changed variable in place (same
 * value, same position), removes the ones that were unset, and removes its own records. */
static void test_nofollow_round_trip(void **state) {
    (void)state;
    setenv("LD_PRELOAD", "/their/lib.so", 1);
    setenv("AGENTSIGHT_OUTPUT", "stderr", 1);
    unsetenv("AGENTSIGHT_CONFIG");
    unsetenv(AS_ENTRIES_ENV);
    as_run_env_snapshot();
    int pos = env_index("LD_PRELOAD=/their/lib.so");
    assert_true(pos >= 0);
    setenv("LD_PRELOAD", "/our/preload.so:/their/lib.so", 1);
    setenv("AGENTSIGHT_CONFIG", "/x/a.conf", 1);
    setenv(AS_ENTRIES_ENV, "multiply", 1);
    assert_int_equal(as_run_env_nofollow(), 0);
    assert_string_equal(getenv(AS_NOFOLLOW_ENV), "LD_PRELOAD,AGENTSIGHT_CONFIG," AS_ENTRIES_ENV);
    assert_string_equal(getenv(AS_SAVED_PREFIX "LD_PRELOAD"), "/their/lib.so");
    assert_null(getenv(AS_SAVED_PREFIX "AGENTSIGHT_CONFIG"));

    as_nofollow_apply();
    assert_string_equal(getenv("LD_PRELOAD"), "/their/lib.so");
    assert_int_equal(env_index("LD_PRELOAD=/their/lib.so"), pos);
    assert_string_equal(getenv("AGENTSIGHT_OUTPUT"), "stderr"); /* untouched: unchanged */
    assert_null(getenv("AGENTSIGHT_CONFIG"));
    assert_null(getenv(AS_ENTRIES_ENV));
    assert_null(getenv(AS_NOFOLLOW_ENV));
    assert_null(getenv(AS_SAVED_PREFIX "LD_PRELOAD"));
    as_nofollow_apply(); /* nothing to do a second time */
    assert_string_equal(getenv("LD_PRELOAD"), "/their/lib.so");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_after_file),      cmocka_unit_test(test_add_alone_with_error),
        cmocka_unit_test(test_glob_prototype),      cmocka_unit_test(test_cli_entries),
        cmocka_unit_test(test_nofollow_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
