/* test_redact.c - unit tests of preload/core/redact.c: sink URIs shown in messages, the
 * run summary and the stats file carry no password and no query value. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/redact.h"

static void expect(const char *in, const char *want) {
    char out[512];
    as_redact_uris(in, out, sizeof out);
    assert_string_equal(out, want);
}

/* Proves user:password becomes user:*** and a lone user (maybe a token) becomes ***. */
static void test_userinfo(void **state) {
    expect("otlp:http://alice:S3cretPW@127.0.0.1:4318/", "otlp:http://alice:***@127.0.0.1:4318/");
    expect("http://tok3n@host", "http://***@host");
    expect("http://a:b:c@host/p", "http://a:***@host/p");
    /* an '@' in the path is not user information */
    expect("http://host/a@b", "http://host/a@b");
}

/* Proves every query value is replaced, keys and the fragment kept. */
static void test_query(void **state) {
    expect("otlp:http://alice:S3cretPW@127.0.0.1:9/?token=abc",
           "otlp:http://alice:***@127.0.0.1:9/?token=***");
    expect("http://h/x?a=1&b=2&flag#frag", "http://h/x?a=***&b=***&***#frag");
    expect("http://h?k=v", "http://h?k=***");
}

/* Proves lists are redacted item by item and non-URLs are copied as they are. */
static void test_list_and_plain(void **state) {
    expect("file:/tmp/a?b=c,stderr,otlp:http://u:p@h/?t=s",
           "file:/tmp/a?b=c,stderr,otlp:http://u:***@h/?t=***");
    expect("", "");
    char out[8];
    as_redact_uris(NULL, out, sizeof out);
    assert_string_equal(out, "");
}

/* Proves a result too long for the buffer is cut with "..." and never holds a secret. */
static void test_cut(void **state) {
    char out[24];
    as_redact_uris("http://alice:S3cretPW@averyveryverylonghostname/", out, sizeof out);
    assert_null(strstr(out, "S3cret"));
    assert_true(strlen(out) < sizeof out);
    assert_non_null(strstr(out, "..."));
    for (size_t cap = 1; cap < 40; cap++) {
        char small[40];
        as_redact_uris("http://u:PW@h/?t=SECRET", small, cap);
        assert_true(strlen(small) < cap);
        assert_null(strstr(small, "PW@"));
        assert_null(strstr(small, "SECRET"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_userinfo),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_list_and_plain),
        cmocka_unit_test(test_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
