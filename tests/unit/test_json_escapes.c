/* test_json_escapes.c - unit tests of the \u escape check (preload/core/jsonw.c) and of its
 * use by action validation: user JSON with a bad escape is refused with a clear message. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "agentsight.h"
#include "core/action.h"
#include "core/jsonw.h"

static int check(const char *s) {
    size_t at = 0;
    const char *why = NULL;
    int rc = as_json_escapes_check(s, strlen(s), &at, &why);
    if (rc != 0)
        assert_non_null(why);
    return rc;
}

/* Proves well-formed escapes pass: BMP, a surrogate pair, other escapes, \u outside strings
 * never happens in JSON but a backslash-quote does not end a string. */
static void test_good(void **state) {
    assert_int_equal(check("{\"a\":\"\\u00e9\\u20AC\"}"), 0);
    assert_int_equal(check("{\"a\":\"\\ud83d\\ude00\"}"), 0);
    assert_int_equal(check("{\"a\":\"\\\\u00zz\"}"), 0); /* an escaped backslash, then text */
    assert_int_equal(check("{\"a\\\"\\u0041\":\"\\n\\t\\/\"}"), 0);
    assert_int_equal(check("{}"), 0);
}

/* Proves bad hex digits, truncated escapes and unpaired surrogates are found, with the
 * offset of the escape. */
static void test_bad(void **state) {
    size_t at = 0;
    const char *why = NULL;
    const char *s = "{\"a\":\"\\u00zz\"}";
    assert_int_equal(as_json_escapes_check(s, strlen(s), &at, &why), -1);
    assert_int_equal(at, 6);
    assert_int_equal(check("{\"a\":\"\\u12\"}"), -1);
    assert_int_equal(check("{\"a\":\"\\u"), -1);
    assert_int_equal(check("{\"a\":\"\\udc00\"}"), -1);
    assert_int_equal(check("{\"a\":\"\\ud800\"}"), -1);
    assert_int_equal(check("{\"a\":\"\\ud800\\u0041\"}"), -1);
    assert_int_equal(check("{\"a\":\"\\ud800x\\udc00\"}"), -1);
}

/* Proves tools_used and metadata with a bad escape are refused, naming the field and the
 * escape, while a good one is accepted and written as it was given. */
static void test_action_refuses(void **state) {
    as_action out;
    char msg[256];
    agentsight_action a = {.action_name = "x", .tools_used = "{\"a\":\"\\u00zz\"}"};
    assert_int_equal(as_action_validate(&a, 1, "conv_000000000000", &out, msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "tools_used"));
    assert_non_null(strstr(msg, "\\u00zz"));
    agentsight_action m = {.action_name = "x", .metadata = "{\"k\":\"\\udc00\"}"};
    assert_int_equal(as_action_validate(&m, 1, "conv_000000000000", &out, msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "metadata"));
    agentsight_action ok = {.action_name = "x", .tools_used = "{\"a\":\"\\ud83d\\ude00\"}"};
    assert_int_equal(as_action_validate(&ok, 1, "conv_000000000000", &out, msg, sizeof msg), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_action_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
