/* test_config.c - unit tests of the config file parser (preload/hook/config.c): every
 * [output] key, every entry option, every error with its LINE:COL, and hostile input.
 * as_log is replaced (-Wl,--wrap=as_log) so the printed messages can be checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <cmocka.h>

#include "agentsight.h"
#include "cli/cmds.h"
#include "hook/config.h"
#include "test_util.h"

/* Captures what config.c would print on stderr. */
AS_TEST_CAPTURE_LOG(64, 600)

static int reset(void **state) {
    (void)state;
    nmsgs = 0;
    return 0;
}

/* Parses a NUL-terminated text as file "t.conf". */
static int parse(const char *text, as_config *cfg) {
    nmsgs = 0;
    return as_config_parse(text, strlen(text), "t.conf", cfg);
}

/* Proves the reference example parses to exactly the documented entries and keys. */
static void test_example(void **state) {
    const char *text =
        "# comments start with # or ;\n"
        "[output]\n"
        "sink = file:agentsight-actions.jsonl      ; sink URIs, comma-separated\n"
        "conversation_id = support-chat-42\n"
        "capture = on\n"
        "max_string = 256\n"
        "service = my-agent\n"
        "flush_timeout_ms = 2000\n"
        "queue = drop\n"
        "[actions]\n"
        "calculator_add                            ; a bare symbol\n"
        "tool_*                                    ; a glob\n"
        "plugin_search  lib=libplugin.so  name=search_plugin\n"
        "int calculator_multiply(int a, int b)\n"
        "const char *weather_lookup(const char *location, const char *units)  error_if=null\n"
        "double calculator_divide(double a, double b)\n"
        "int database_search(const char *table, int user_id)  error_if=negative\n"
        "void reset_cache(void)\n"
        "sqlite3_step  display=\"Database step\"\n";
    as_config c;
    assert_int_equal(parse(text, &c), 0);
    assert_int_equal(nmsgs, 0);
    assert_string_equal(c.path, "t.conf");
    assert_string_equal(c.sink, "file:agentsight-actions.jsonl");
    assert_string_equal(c.conversation_id, "support-chat-42");
    assert_int_equal(c.capture_off, 0);
    assert_int_equal(c.max_string, 256);
    assert_string_equal(c.service, "my-agent");
    assert_int_equal(c.flush_timeout_ms, 2000);
    assert_int_equal(c.queue_policy, AGENTSIGHT_QUEUE_DROP);
    assert_int_equal(c.nentries, 9);
    as_entry *e = c.entries;
    assert_string_equal(e[0].pattern, "calculator_add");
    assert_int_equal(e[0].is_glob, 0);
    assert_int_equal(e[0].has_proto, 0);
    assert_int_equal(e[0].line, 11);
    assert_string_equal(e[1].pattern, "tool_*");
    assert_int_equal(e[1].is_glob, 1);
    assert_string_equal(e[2].pattern, "plugin_search");
    assert_string_equal(e[2].lib, "libplugin.so");
    assert_string_equal(e[2].name, "search_plugin");
    assert_int_equal(e[3].has_proto, 1);
    assert_string_equal(e[3].pattern, "calculator_multiply");
    assert_int_equal(e[3].proto.nparams, 2);
    assert_string_equal(e[3].proto.names[1], "b");
    assert_string_equal(e[4].pattern, "weather_lookup");
    assert_int_equal(e[4].error_if, AS_ERRIF_NULL);
    assert_int_equal(e[4].proto.ret.kind, AS_K_STR);
    assert_int_equal(e[5].proto.ret.kind, AS_K_FLOAT);
    assert_int_equal(e[6].error_if, AS_ERRIF_NEGATIVE);
    assert_int_equal(e[6].proto.params[1].kind, AS_K_SINT);
    assert_int_equal(e[7].proto.ret.kind, AS_K_VOID);
    assert_int_equal(e[7].proto.nparams, 0);
    assert_string_equal(e[8].pattern, "sqlite3_step");
    assert_string_equal(e[8].display, "Database step");
    for (int i = 0; i < c.nentries; i++) {
        assert_int_equal(e[i].max_string, 256);
        assert_int_equal(e[i].hook, AS_HOOK_AUTO);
        assert_int_equal(e[i].capture_none, 0);
        if (i != 4 && i != 6)
            assert_int_equal(e[i].error_if, AS_ERRIF_NONE);
    }
    as_config_free(&c);
    assert_null(c.entries);
}

/* Proves [llm] values may be quoted like any other value, and (under test-san's leak
 * checker) that a quoted value's copy is freed: each such line leaked it before. */
static void test_llm_quoted_values(void **state) {
    as_config c;
    assert_int_equal(
        parse("[llm]\nenable = \"on\"\ncapture = \"prompts\"\nmax_string = \"12\"\n", &c), 0);
    assert_int_equal(c.llm_enable, 1);
    assert_int_equal(c.llm_capture, 2);
    assert_int_equal(c.llm_max_string, 12);
    as_config_free(&c);
}

/* Proves the defaults of an empty file and of a file without [output]. */
static void test_defaults(void **state) {
    as_config c;
    assert_int_equal(as_config_parse("", 0, "e.conf", &c), 0);
    assert_null(c.sink);
    assert_null(c.conversation_id);
    assert_null(c.service);
    assert_int_equal(c.capture_off, 0);
    assert_int_equal(c.max_string, AS_MAX_STRING_DEFAULT);
    assert_int_equal(c.flush_timeout_ms, -1);
    assert_int_equal(c.queue_policy, AGENTSIGHT_QUEUE_DEFAULT);
    assert_int_equal(c.nentries, 0);
    as_config_free(&c);
    as_config_free(&c); /* twice is harmless */
}

/* Proves every [output] key and value form: quoted values, several sinks, capture = off
 * reaching every entry, the global max_string inherited by entries without their own. */
static void test_output_keys(void **state) {
    const char *text =
        "[actions]\n"
        "a\n"
        "b max_string=9 capture=full\n"
        "[output]\n"
        "sink=stderr, file:/tmp/x.jsonl,otlp:http://127.0.0.1:4318,agentsight,null,otlp\n"
        "conversation_id = \"chat with spaces \\\"q\\\" \\\\\"\n"
        "capture=off\n"
        "max_string=65536\n"
        "service = svc # comment\n"
        "flush_timeout_ms = 1\n"
        "queue = wait\n";
    as_config c;
    assert_int_equal(parse(text, &c), 0);
    assert_string_equal(
        c.sink, "stderr, file:/tmp/x.jsonl,otlp:http://127.0.0.1:4318,agentsight,null,otlp");
    assert_string_equal(c.conversation_id, "chat with spaces \"q\" \\");
    assert_int_equal(c.capture_off, 1);
    assert_int_equal(c.max_string, 65536);
    assert_string_equal(c.service, "svc");
    assert_int_equal(c.flush_timeout_ms, 1);
    assert_int_equal(c.queue_policy, AGENTSIGHT_QUEUE_WAIT);
    assert_int_equal(c.nentries, 2);
    assert_int_equal(c.entries[0].max_string, 65536);
    assert_int_equal(c.entries[1].max_string, 9);
    assert_int_equal(c.entries[0].capture_none, 1);
    assert_int_equal(c.entries[1].capture_none, 1);
    as_config_free(&c);
}

/* Proves every entry option and value, name@VERSION, globs and comment rules. */
static void test_entry_options(void **state) {
    const char *text = "[actions]\n"
                       "f1 error_if=null\n"
                       "f2 error_if=negative hook=got\n"
                       "f3 error_if=zero hook=entry\n"
                       "f4 error_if=nonzero hook=auto\n"
                       "f5 error_if=false capture=none\n"
                       "f6 error_if=errno capture=full max_string=1\n"
                       "f7 name=action_seven lib=libc.so.* display=\"Say \\\"hi\\\" \\\\ ok\"\n"
                       "memcpy@GLIBC_2.14\n"
                       "open@@GLIBC_2.2.5 lib = libc.so.6\n"
                       "tool_?[a-z]* name = tools\n"
                       "x lib=a#b;c.so   # comment\n"
                       "y display=\"a ; b # c\"  ; comment\n"
                       "_ZN3foo3barEv.cold\n";
    as_config c;
    assert_int_equal(parse(text, &c), 0);
    assert_int_equal(c.nentries, 13);
    as_entry *e = c.entries;
    static const int errif[] = {AS_ERRIF_NULL,    AS_ERRIF_NEGATIVE, AS_ERRIF_ZERO,
                                AS_ERRIF_NONZERO, AS_ERRIF_FALSE,    AS_ERRIF_ERRNO};
    for (int i = 0; i < 6; i++)
        assert_int_equal(e[i].error_if, errif[i]);
    assert_int_equal(e[1].hook, AS_HOOK_GOT);
    assert_int_equal(e[2].hook, AS_HOOK_ENTRY);
    assert_int_equal(e[3].hook, AS_HOOK_AUTO);
    assert_int_equal(e[4].capture_none, 1);
    assert_int_equal(e[5].capture_none, 0);
    assert_int_equal(e[5].max_string, 1);
    assert_string_equal(e[6].name, "action_seven");
    assert_string_equal(e[6].lib, "libc.so.*");
    assert_string_equal(e[6].display, "Say \"hi\" \\ ok");
    assert_string_equal(e[7].pattern, "memcpy");
    assert_string_equal(e[7].version, "GLIBC_2.14");
    assert_int_equal(e[7].is_glob, 0);
    assert_string_equal(e[8].pattern, "open");
    assert_string_equal(e[8].version, "GLIBC_2.2.5");
    assert_string_equal(e[8].lib, "libc.so.6");
    assert_string_equal(e[9].pattern, "tool_?[a-z]*");
    assert_int_equal(e[9].is_glob, 1);
    assert_string_equal(e[9].name, "tools");
    assert_string_equal(e[10].lib, "a#b;c.so");
    assert_string_equal(e[11].display, "a ; b # c");
    assert_string_equal(e[12].pattern, "_ZN3foo3barEv.cold");
    assert_string_equal(as_errif_name(AS_ERRIF_NEGATIVE), "negative");
    assert_string_equal(as_errif_name(99), "none");
    as_config_free(&c);
}

static const struct {
    const char *line; /* one line placed after "[actions]\n" (line 2), or a whole file */
    const char *want; /* "t.conf:LINE:COL: message" */
} errors[] = {
    {"int f(strng s)", "t.conf:2:7: unknown type 'strng'"},
    {"int f(int a", "t.conf:2:12: expected ',' or ')' at end of line"},
    {"foo bar", "t.conf:2:5: unexpected 'bar': options are written key=value"},
    {"foo name=x*", "t.conf:2:10: name= must not contain a glob: 'x*'"},
    {"foo error_if=maybe", "t.conf:2:14: bad value 'maybe' for error_if: expected null, "
                           "negative, zero, nonzero, false or errno"},
    {"foo lib=a lib=b", "t.conf:2:11: duplicate option 'lib'"},
    {"foo display=\"open", "t.conf:2:13: unterminated quoted string"},
    {"foo display=\"a\\q\"", "t.conf:2:15: unknown escape '\\q' in a quoted string (only \\\" "
                             "and \\\\)"},
    {"foo display=\"a\"b", "t.conf:2:16: expected a blank after the closing quote"},
    {"foo colour=red", "t.conf:2:5: unknown option 'colour': expected name, lib, display, "
                       "error_if, capture, max_string or hook"},
    {"foo capture=some", "t.conf:2:13: bad value 'some' for capture: expected none or full"},
    {"foo max_string=0", "t.conf:2:16: bad value '0' for max_string: expected a number from 1 "
                         "to 65536"},
    {"foo max_string=65537", "t.conf:2:16: bad value '65537' for max_string: expected a number "
                             "from 1 to 65536"},
    {"foo max_string=-1", "t.conf:2:16: bad value '-1' for max_string: expected a number from 1 "
                          "to 65536"},
    {"foo hook=plt", "t.conf:2:10: bad value 'plt' for hook: expected auto, got or entry"},
    {"foo lib=/usr/lib/x.so", "t.conf:2:9: lib= matches a file name, not a path: "
                              "'/usr/lib/x.so'"},
    {"foo name=", "t.conf:2:10: empty value for 'name'"},
    {"foo display=\"\xff\"", "t.conf:2:13: display= must be 1..256 bytes of UTF-8"},
    {"fo-o", "t.conf:2:3: unexpected character '-' in a symbol name"},
    {"f\xc3\xa9", "t.conf:2:2: unexpected byte 0xc3 in a symbol name"},
    {"name=foo", "t.conf:2:1: expected a symbol name or a prototype before the options"},
    {"foo@", "t.conf:2:4: expected a version after '@'"},
    {"@V1", "t.conf:2:1: expected a symbol name before '@'"},
    {"foo[a", "t.conf:2:1: unclosed '[' in a glob"},
    {"int f(int a)x=1", "t.conf:2:13: expected a blank before the options"},
    {"int f(int a) error_if=null", "t.conf:2:5: error_if=null needs a pointer result, but the "
                                   "prototype returns int"},
    {"void f(int a) error_if=zero", "t.conf:2:6: error_if=zero needs a result, but the "
                                    "prototype returns void"},
    {"[bogus]\nx", "t.conf:2:1: unknown section '[bogus]': expected [output], [actions] or [llm]"},
    {"[llm]\ncapture = all", "t.conf:3:11: bad value 'all' for capture: expected none, "
                             "response or prompts"},
    {"[llm]\nkey = 1", "t.conf:3:1: unknown key 'key' in [llm]: expected enable, capture, "
                       "max_string or plain_http"},
    {"[llm]\nplain_http = 127.0.0.1:99999", "t.conf:3:14: bad value for plain_http: '99999' is "
                                            "not a port from 1 to 65535 (expected off, loopback "
                                            "or ADDRESS[:PORT] entries separated by commas)"},
    {"[llm]\nplain_http = loopback, ollama.local", "t.conf:3:14: bad value for plain_http: "
                                                   "'ollama.local' is not a numeric IPv4 address "
                                                   "or [IPv6] address (expected off, loopback or "
                                                   "ADDRESS[:PORT] entries separated by commas)"},
    {"[output", "t.conf:2:8: expected ']'"},
    {"[output] x", "t.conf:2:10: unexpected text after the section header"},
    {"[output]\nsinks = stderr", "t.conf:3:1: unknown key 'sinks' in [output]: expected sink, "
                                 "conversation_id, capture, max_string, service, "
                                 "flush_timeout_ms or queue"},
    {"[output]\nsink stderr", "t.conf:3:6: expected 'key = value'"},
    {"[output]\n= stderr", "t.conf:3:1: expected 'key = value'"},
    {"[output]\nsink = ftp://x", "t.conf:3:8: unknown sink URI 'ftp://x': expected file:PATH, "
                                 "stderr, null, agentsight, otlp or otlp:URL"},
    {"[output]\nsink = stderr,, file:x", "t.conf:3:15: unknown sink URI '': expected "
                                         "file:PATH, stderr, null, agentsight, otlp or "
                                         "otlp:URL"},
    {"[output]\nsink = file:", "t.conf:3:8: unknown sink URI 'file:': expected file:PATH, "
                               "stderr, null, agentsight, otlp or otlp:URL"},
    {"[output]\nsink = stderr\nsink = null", "t.conf:4:1: duplicate key 'sink' (first set on "
                                             "line 3)"},
    {"[output]\ncapture = yes", "t.conf:3:11: bad value 'yes' for capture: expected on or off"},
    {"[output]\nqueue = block", "t.conf:3:9: bad value 'block' for queue: expected drop or wait"},
    {"[output]\nmax_string = 1k", "t.conf:3:14: bad value '1k' for max_string: expected a number "
                                  "from 1 to 65536"},
    {"[output]\nflush_timeout_ms = 99999999999", "t.conf:3:20: bad value '99999999999' for "
                                                 "flush_timeout_ms: expected a number from 1 to "
                                                 "3600000"},
    {"[output]\nservice =", "t.conf:3:10: empty value for 'service'"},
    {"[output]\nconversation_id = \"\xc3\x28\"", "t.conf:3:19: conversation_id must be 1..256 "
                                                 "bytes of UTF-8"},
    {"a\0b", "t.conf:2:2: NUL byte in the line; line ignored"},
};

/* Proves every error message, with its LINE:COL, and that the bad entry or key is skipped
 * while a good entry after it is still parsed. */
static void test_errors(void **state) {
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        char text[512];
        size_t n = 0;
        int whole = errors[i].line[0] == '[';
        n += (size_t)snprintf(text, sizeof text, "%s", whole ? "\n" : "[actions]\n");
        size_t ln = strlen(errors[i].line);
        if (strcmp(errors[i].line, "a") == 0)
            ln = 3; /* "a\0b": the table entry holds a NUL */
        memcpy(text + n, errors[i].line, ln);
        n += ln;
        n += (size_t)snprintf(text + n, sizeof text - n, "\n[actions]\ngood_one\n");
        as_config c;
        nmsgs = 0;
        int rc = as_config_parse(text, n, "t.conf", &c);
        if (rc != 1 || nmsgs != 1 || strcmp(msgs[0], errors[i].want) != 0)
            fail_msg("case %zu: rc %d, %d messages, first '%s', want '%s'", i, rc, nmsgs,
                     nmsgs ? msgs[0] : "", errors[i].want);
        assert_int_equal(c.errors, 1);
        assert_true(c.nentries >= 1);
        assert_string_equal(c.entries[c.nentries - 1].pattern, "good_one");
        for (int k = 0; k < c.nentries - 1; k++)
            assert_string_not_equal(c.entries[k].pattern, "foo");
        as_config_free(&c);
    }
}

/* Proves lines outside any section are refused and later lines still parse; several
 * errors in one file are all counted. */
static void test_several_errors(void **state) {
    as_config c;
    assert_int_equal(parse("orphan\n[actions]\nint f(bad x)\nok1\nfoo hook=x\nok2\n", &c), 3);
    assert_string_equal(msgs[0], "t.conf:1:1: expected a section header ([output] or "
                                 "[actions]) first");
    assert_string_equal(msgs[1], "t.conf:3:7: unknown type 'bad'");
    assert_string_equal(msgs[2], "t.conf:5:10: bad value 'x' for hook: expected auto, got or "
                                 "entry");
    assert_int_equal(c.nentries, 2);
    assert_string_equal(c.entries[1].pattern, "ok2");
    assert_int_equal(c.entries[1].line, 6);
    as_config_free(&c);
}

/* Proves CRLF line ends, a UTF-8 BOM, a missing final newline, blank lines, comment-only
 * lines and leading blanks are accepted, with columns counted after the BOM. */
static void test_line_forms(void **state) {
    const char *text = "\xef\xbb\xbf[actions]\r\n\r\n  ; c\r\n\t# c\r\n  alpha  \r\nint f(x y)\r\n"
                       "beta";
    as_config c;
    assert_int_equal(parse(text, &c), 1);
    assert_string_equal(msgs[0], "t.conf:6:7: unknown type 'x'");
    assert_int_equal(c.nentries, 2);
    assert_string_equal(c.entries[0].pattern, "alpha");
    assert_int_equal(c.entries[0].line, 5);
    assert_string_equal(c.entries[1].pattern, "beta");
    as_config_free(&c);
}

/* Proves hostile input never crashes: a 1 MiB line, a 1 MiB display value, random bytes,
 * invalid UTF-8 in comments, unterminated quotes at the end of the file. */
static void test_hostile(void **state) {
    size_t big = 1 << 20;
    char *text = malloc(big + 64);
    assert_non_null(text);
    int n = sprintf(text, "[actions]\n");
    memset(text + n, 'a', big);
    memcpy(text + n + big, "\nz\n", 4);
    as_config c;
    assert_int_equal(parse(text, &c), 0);
    assert_int_equal(c.nentries, 2);
    assert_int_equal(strlen(c.entries[0].pattern), big);
    as_config_free(&c);

    n = sprintf(text, "[actions]\nf display=\"");
    memset(text + n, 'd', big);
    memcpy(text + n + big, "\"\n", 3);
    assert_int_equal(parse(text, &c), 1);
    assert_string_equal(msgs[0], "t.conf:2:11: display= must be 1..256 bytes of UTF-8");
    as_config_free(&c);

    srand(7);
    for (size_t i = 0; i < big; i++)
        text[i] = (char)(rand() & 0xff);
    nmsgs = 0;
    as_config_parse(text, big, "r.conf", &c);
    as_config_free(&c);

    assert_int_equal(parse("[actions] # \xff\xfe\nok # \xc3\n", &c), 0);
    assert_int_equal(c.nentries, 1);
    as_config_free(&c);

    assert_int_equal(parse("[actions]\nf display=\"", &c), 1);
    assert_string_equal(msgs[0], "t.conf:2:11: unterminated quoted string");
    as_config_free(&c);
    assert_int_equal(parse("[output]\nservice = \"abc", &c), 1);
    assert_null(c.service);
    as_config_free(&c);
    free(text);
}

/* Proves as_config_load reads a real file, and that an unreadable path prints one
 * "cannot read" message and leaves an empty config. */
static void test_load(void **state) {
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[output]\nsink = stderr\n[actions]\nint f(int a)\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    as_config c;
    nmsgs = 0;
    assert_int_equal(as_config_load(path, &c), 0);
    assert_int_equal(c.errors, 0);
    assert_string_equal(c.path, path);
    assert_string_equal(c.sink, "stderr");
    assert_int_equal(c.nentries, 1);
    as_config_free(&c);
    unlink(path);

    nmsgs = 0;
    assert_int_equal(as_config_load("/nonexistent/agent.conf", &c), -1);
    assert_int_equal(nmsgs, 1);
    assert_string_equal(msgs[0], "/nonexistent/agent.conf: cannot read: No such file or "
                                 "directory");
    assert_int_equal(c.nentries, 0);
    assert_int_equal(c.errors, 1);
    assert_int_equal(c.max_string, AS_MAX_STRING_DEFAULT);
    as_config_free(&c);

    nmsgs = 0;
    assert_int_equal(as_config_load("/tmp", &c), -1);
    assert_string_equal(
        msgs[0], "/tmp: cannot read: not a regular file (a directory): the config is ignored");
    as_config_free(&c);
}

/* Runs `agentsight check conf [program]` with stdout captured into out. Returns its
 * exit status. */
static int run_check(const char *conf, const char *program, char *out, size_t cap) {
    char outpath[] = "/tmp/test_config_out_XXXXXX";
    int fd = mkstemp(outpath);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    char *argv[] = {"check", (char *)conf, (char *)program, NULL};
    nmsgs = 0;
    int rc = as_cmd_check(program ? 3 : 2, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    ssize_t n = pread(fd, out, cap - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(outpath);
    return rc;
}

/* Writes text to a new temporary file whose name is stored in path. */
static void write_temp(char *path, const char *text) {
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* Proves `agentsight check` against this test binary: a static function is found and
 * flagged local, libc's malloc exported and versioned, an unmatched entry gives the documented
 * warning and exit status 1; a clean config exits 0; errors and usage mistakes exit 1 and 2. */
static void test_check_command(void **state) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = '\0';
    static char out[1 << 16];

    char conf[] = "/tmp/test_config_check_XXXXXX";
    write_temp(conf, "[actions]\ntest_example\nmalloc lib=libc.so*\nnope_fn_xyz\n");
    assert_int_equal(run_check(conf, self, out, sizeof out), 1);
    assert_non_null(strstr(out, "3 entries, 0 errors"));
    assert_non_null(strstr(out, "    test_example  "));
    assert_non_null(strstr(out, "  local"));
    assert_non_null(strstr(out, "    malloc@GLIBC_"));
    assert_non_null(strstr(out, "libc.so.6  exported"));
    assert_non_null(strstr(out, "(no match)"));
    char want[512];
    snprintf(want, sizeof want, "entry 'nope_fn_xyz' (%s:4) matches no function", conf);
    int found = 0;
    for (int i = 0; i < nmsgs; i++)
        found |= strcmp(msgs[i], want) == 0;
    assert_true(found);
    unlink(conf);

    char good[] = "/tmp/test_config_check_XXXXXX";
    write_temp(good, "[actions]\ntest_ex*\n");
    assert_int_equal(run_check(good, self, out, sizeof out), 0);
    assert_non_null(strstr(out, "test_example"));
    assert_int_equal(run_check(good, NULL, out, sizeof out), 0);
    assert_non_null(strstr(out, "1 entry, 0 errors"));
    assert_int_equal(run_check(good, "/nonexistent/program", out, sizeof out), 1);
    unlink(good);

    char bad[] = "/tmp/test_config_check_XXXXXX";
    write_temp(bad, "[actions]\nint f(strng s)\n");
    assert_int_equal(run_check(bad, NULL, out, sizeof out), 1);
    assert_non_null(strstr(out, "0 entries, 1 error"));
    unlink(bad);
    assert_int_equal(run_check("/nonexistent/agent.conf", NULL, out, sizeof out), 1);

    char *argv[] = {"check", NULL};
    assert_int_equal(as_cmd_check(1, argv), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_example, reset),
        cmocka_unit_test_setup(test_defaults, reset),
        cmocka_unit_test_setup(test_output_keys, reset),
        cmocka_unit_test_setup(test_entry_options, reset),
        cmocka_unit_test_setup(test_errors, reset),
        cmocka_unit_test_setup(test_several_errors, reset),
        cmocka_unit_test_setup(test_line_forms, reset),
        cmocka_unit_test_setup(test_hostile, reset),
        cmocka_unit_test_setup(test_load, reset),
        cmocka_unit_test_setup(test_check_command, reset),
        cmocka_unit_test_setup(test_llm_quoted_values, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
