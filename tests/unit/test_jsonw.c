/* test_jsonw.c - unit tests of preload/core/jsonw.c: the buffer, string escaping of hostile
 * input (checked by parsing the output back with cJSON), numbers and the UTF-8 validator. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "core/jsonw.h"

/* Writes s (n bytes) as a JSON string, parses it back and returns the decoded value
 * (caller frees), failing the test when the output is not valid JSON or not UTF-8. */
static char *round_trip(const char *s, size_t n, as_buf *b) {
    as_buf_reset(b);
    as_json_str(b, s, n);
    const char *out = as_buf_cstr(b);
    assert_true(as_utf8_valid(out, b->len));
    assert_null(memchr(out, '\n', b->len)); /* one line */
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_true(cJSON_IsString(j));
    char *v = strdup(j->valuestring);
    cJSON_Delete(j);
    return v;
}

/* Proves the buffer grows, keeps bytes, NUL-terminates and resets without freeing. */
static void test_buf_basics(void **state) {
    as_buf b;
    as_buf_init(&b);
    assert_string_equal(as_buf_cstr(&b), "");
    for (int i = 0; i < 1000; i++)
        as_buf_putc(&b, (char)('a' + i % 26));
    assert_int_equal(b.len, 1000);
    assert_int_equal(as_buf_cstr(&b)[26], 'a');
    as_buf_printf(&b, "%d-%s", 42, "x");
    assert_int_equal(b.len, 1004);
    assert_string_equal(as_buf_cstr(&b) + 1000, "42-x");
    char big[600];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    as_buf_printf(&b, "%s", big); /* longer than the printf fast path */
    assert_int_equal(b.len, 1004 + 599);
    size_t cap = b.cap;
    as_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    as_buf_puts(&b, "hi");
    as_buf_put(&b, "!", 1);
    assert_string_equal(as_buf_cstr(&b), "hi!");
    assert_false(b.oom);
    as_buf_free(&b);
    assert_null(b.data);
}

/* Proves plain text, quotes, backslashes and the short escapes survive a round trip and
 * are written in their short form. */
static void test_str_escapes(void **state) {
    as_buf b;
    as_buf_init(&b);
    const char *s = "say \"hi\" \\ path\n\t\r\b\f end";
    char *v = round_trip(s, strlen(s), &b);
    assert_string_equal(v, s);
    free(v);
    assert_string_equal(as_buf_cstr(&b), "\"say \\\"hi\\\" \\\\ path\\n\\t\\r\\b\\f end\"");
    as_buf_free(&b);
}

/* Proves every control byte (including NUL inside the length) is escaped as \u00XX. */
static void test_str_controls(void **state) {
    as_buf b;
    as_buf_init(&b);
    char s[32];
    for (int i = 0; i < 32; i++)
        s[i] = (char)i;
    as_json_str(&b, s, 32);
    const char *out = as_buf_cstr(&b);
    for (size_t i = 0; i < b.len; i++)
        assert_true((unsigned char)out[i] >= 0x20);
    assert_non_null(strstr(out, "\\u0000"));
    assert_non_null(strstr(out, "\\u001f"));
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    cJSON_Delete(j);
    as_buf_free(&b);
}

/* Proves invalid UTF-8 bytes become U+FFFD and valid multi-byte text is kept as is. */
static void test_str_invalid_utf8(void **state) {
    as_buf b;
    as_buf_init(&b);
    char *v = round_trip("a\xff"
                         "b\xc3",
                         4, &b); /* stray byte, truncated sequence */
    assert_string_equal(v, "a\xef\xbf\xbd"
                           "b\xef\xbf\xbd");
    free(v);
    v = round_trip("\xed\xa0\x80", 3, &b); /* surrogate: 3 bad bytes */
    assert_string_equal(v, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    free(v);
    v = round_trip("18\xc2\xb0"
                   "C \xf0\x9f\x98\x80",
                   10, &b); /* degree sign, emoji */
    assert_string_equal(v, "18\xc2\xb0"
                           "C \xf0\x9f\x98\x80");
    free(v);
    as_buf_free(&b);
}

/* Proves U+2028 and U+2029 are escaped (they end lines in JavaScript) and decode back. */
static void test_str_line_separators(void **state) {
    as_buf b;
    as_buf_init(&b);
    char *v = round_trip("a\xe2\x80\xa8"
                         "b\xe2\x80\xa9",
                         8, &b);
    assert_string_equal(as_buf_cstr(&b), "\"a\\u2028b\\u2029\"");
    assert_string_equal(v, "a\xe2\x80\xa8"
                           "b\xe2\x80\xa9");
    free(v);
    as_buf_free(&b);
}

/* Proves n bounds the read (no NUL needed) and NULL writes null. */
static void test_str_length_and_null(void **state) {
    as_buf b;
    as_buf_init(&b);
    as_json_str(&b, "abcdef", 3);
    assert_string_equal(as_buf_cstr(&b), "\"abc\"");
    as_buf_reset(&b);
    as_json_cstr(&b, NULL);
    assert_string_equal(as_buf_cstr(&b), "null");
    as_buf_reset(&b);
    as_json_cstr(&b, "");
    assert_string_equal(as_buf_cstr(&b), "\"\"");
    as_buf_free(&b);
}

/* Proves integer extremes are written exactly. */
static void test_integers(void **state) {
    as_buf b;
    as_buf_init(&b);
    as_json_i64(&b, INT64_MIN);
    as_buf_putc(&b, ' ');
    as_json_i64(&b, INT64_MAX);
    as_buf_putc(&b, ' ');
    as_json_i64(&b, 0);
    as_buf_putc(&b, ' ');
    as_json_u64(&b, UINT64_MAX);
    assert_string_equal(as_buf_cstr(&b),
                        "-9223372036854775808 9223372036854775807 0 18446744073709551615");
    as_buf_free(&b);
}

/* Proves doubles use the shortest text that reads back exactly, and JSON has no NaN. */
static void test_doubles(void **state) {
    char buf[64];
    as_fmt_double(buf, sizeof buf, 2.5);
    assert_string_equal(buf, "2.5");
    as_fmt_double(buf, sizeof buf, 0.1);
    assert_string_equal(buf, "0.1");
    as_fmt_double(buf, sizeof buf, 1e300);
    assert_string_equal(buf, "1e+300");
    as_fmt_double(buf, sizeof buf, 0.1 + 0.2); /* needs 17 digits */
    assert_string_equal(buf, "0.30000000000000004");
    as_fmt_double(buf, sizeof buf, 0.0 / 0.0);
    assert_string_equal(buf, "nan");
    as_fmt_double(buf, sizeof buf, -1.0 / 0.0);
    assert_string_equal(buf, "-inf");
    double samples[] = {1.0 / 3, 123456789.123, -5e-324, 1.7976931348623157e308, 100};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        as_fmt_double(buf, sizeof buf, samples[i]);
        assert_true(strtod(buf, NULL) == samples[i]);
    }
    as_buf b;
    as_buf_init(&b);
    as_json_double(&b, 1.0 / 0.0);
    as_buf_putc(&b, ',');
    as_json_double(&b, 0.0 / 0.0);
    as_buf_putc(&b, ',');
    as_json_double(&b, -0.25);
    assert_string_equal(as_buf_cstr(&b), "null,null,-0.25");
    as_buf_free(&b);
}

/* Proves the validator accepts the edges of each sequence length and refuses overlongs,
 * surrogates, values above U+10FFFF, truncated sequences and stray continuations. */
static void test_utf8_validator(void **state) {
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"plain ascii", 1},
        {"\xc2\x80", 1},         /* U+0080 */
        {"\xdf\xbf", 1},         /* U+07FF */
        {"\xe0\xa0\x80", 1},     /* U+0800 */
        {"\xef\xbf\xbf", 1},     /* U+FFFF */
        {"\xf0\x90\x80\x80", 1}, /* U+10000 */
        {"\xf4\x8f\xbf\xbf", 1}, /* U+10FFFF */
        {"\xed\x9f\xbf", 1},     /* U+D7FF, just below the surrogates */
        {"\xc0\x80", 0},         /* overlong NUL */
        {"\xc1\xbf", 0},         /* overlong */
        {"\xe0\x9f\xbf", 0},     /* overlong 3-byte */
        {"\xf0\x8f\xbf\xbf", 0}, /* overlong 4-byte */
        {"\xed\xa0\x80", 0},     /* U+D800 surrogate */
        {"\xed\xbf\xbf", 0},     /* U+DFFF surrogate */
        {"\xf4\x90\x80\x80", 0}, /* U+110000 */
        {"\xf5\x80\x80\x80", 0}, /* lead byte past U+10FFFF */
        {"\xe2\x82", 0},         /* truncated */
        {"\xf0\x9f\x98", 0},     /* truncated */
        {"\x80", 0},             /* stray continuation */
        {"a\xc3(", 0},           /* bad continuation */
        {"\xff", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (as_utf8_valid(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
            fail_msg("case %zu: expected %d", i, cases[i].ok);
    }
    assert_true(as_utf8_valid("\xe2\x82\xac", 3));
    assert_false(as_utf8_valid("\xe2\x82\xac", 2)); /* the length bounds the read */
}

/* Proves as_buf_hex writes the same digits as %llx at 0, nibble edges and UINT64_MAX. */
static void test_buf_hex(void **state) {
    (void)state;
    const uint64_t v[] = {0, 9, 10, 15, 16, 255, 0xffffffffull, UINT64_MAX};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        as_buf b;
        char ref[32];
        as_buf_init(&b);
        as_buf_hex(&b, v[i]);
        snprintf(ref, sizeof ref, "%llx", (unsigned long long)v[i]);
        assert_string_equal(as_buf_cstr(&b), ref);
        as_buf_free(&b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_hex),
        cmocka_unit_test(test_buf_basics),
        cmocka_unit_test(test_str_escapes),
        cmocka_unit_test(test_str_controls),
        cmocka_unit_test(test_str_invalid_utf8),
        cmocka_unit_test(test_str_line_separators),
        cmocka_unit_test(test_str_length_and_null),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_doubles),
        cmocka_unit_test(test_utf8_validator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
