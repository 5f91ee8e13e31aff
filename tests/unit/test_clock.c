/* test_clock.c - unit tests of preload/core/clock.c: ISO-8601 format/parse round trips and
 * refusals, and raw-timestamp conversion (monotone, close to CLOCK_REALTIME). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>

#include "core/clock.h"

#define NS 1000000000LL

/* Proves the formatter writes UTC with microseconds and 'Z' for a known instant. */
static void test_format_known(void **state) {
    char buf[AS_ISO_LEN];
    int n = as_iso_format(1705314600LL * NS + 50 * 1000000LL, buf);
    assert_string_equal(buf, "2024-01-15T10:30:00.050000Z");
    assert_int_equal(n, 27);
    as_iso_format(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
}

/* Proves times before 1970 (negative ns) format with floor division, not truncation. */
static void test_format_negative(void **state) {
    char buf[AS_ISO_LEN];
    as_iso_format(-1000, buf); /* 1 us before the epoch */
    assert_string_equal(buf, "1969-12-31T23:59:59.999999Z");
}

/* Proves every documented accepted form parses to the right instant. */
static void test_parse_forms(void **state) {
    int64_t base = 1705314600LL * NS, t = 0;
    assert_int_equal(as_iso_parse("2024-01-15T10:30:00Z", &t), 0);
    assert_int_equal(t, base);
    assert_int_equal(as_iso_parse("2024-01-15T10:30:00", &t), 0); /* no zone: UTC */
    assert_int_equal(t, base);
    assert_int_equal(as_iso_parse("2024-01-15 10:30:00Z", &t), 0);
    assert_int_equal(t, base);
    assert_int_equal(as_iso_parse("2024-01-15T10:30:00.050Z", &t), 0);
    assert_int_equal(t, base + 50000000);
    assert_int_equal(as_iso_parse("2024-01-15T10:30:00.123456789Z", &t), 0);
    assert_int_equal(t, base + 123456789);
    assert_int_equal(as_iso_parse("2024-01-15T10:30:00.5Z", &t), 0);
    assert_int_equal(t, base + 500000000);
    assert_int_equal(as_iso_parse("2024-01-15T11:30:00+01:00", &t), 0);
    assert_int_equal(t, base);
    assert_int_equal(as_iso_parse("2024-01-15T11:30:00+0100", &t), 0);
    assert_int_equal(t, base);
    assert_int_equal(as_iso_parse("2024-01-15T05:00:00-05:30", &t), 0);
    assert_int_equal(t, base);
}

/* Proves Feb 29 is accepted exactly in leap years (2024, 2000) and refused otherwise. */
static void test_parse_leap_days(void **state) {
    int64_t t;
    assert_int_equal(as_iso_parse("2024-02-29T00:00:00Z", &t), 0);
    assert_int_equal(as_iso_parse("2000-02-29T00:00:00Z", &t), 0);
    assert_int_equal(as_iso_parse("2023-02-29T00:00:00Z", &t), -1);
    assert_int_equal(as_iso_parse("1900-02-29T00:00:00Z", &t), -1);
    assert_int_equal(as_iso_parse("2023-04-31T00:00:00Z", &t), -1);
    assert_int_equal(as_iso_parse("2023-12-31T23:59:60Z", &t), 0); /* leap second */
}

/* Proves malformed or out-of-range timestamps are refused and the output is untouched. */
static void test_parse_refusals(void **state) {
    static const char *bad[] = {
        "",
        "2024",
        "2024-01-15",
        "2024-1-15T10:30:00Z",
        "2024-01-15X10:30:00Z",
        "2024-13-01T00:00:00Z",
        "2024-00-01T00:00:00Z",
        "2024-01-00T00:00:00Z",
        "2024-01-32T00:00:00Z",
        "2024-01-15T24:00:00Z",
        "2024-01-15T10:60:00Z",
        "2024-01-15T10:30:61Z",
        "2024-01-15T10:30:00.Z",
        "2024-01-15T10:30:00.1234567890Z",
        "2024-01-15T10:30:00+1",
        "2024-01-15T10:30:00+24:00",
        "2024-01-15T10:30:00+01:60",
        "2024-01-15T10:30:00Zjunk",
        "2024-01-15T10:30:00 ",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z", /* beyond what int64 ns holds */
        "not a date at all",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t t = 42;
        if (as_iso_parse(bad[i], &t) != -1)
            fail_msg("accepted '%s'", bad[i]);
        assert_int_equal(t, 42);
    }
    int64_t t;
    assert_int_equal(as_iso_parse(NULL, &t), -1);
}

/* Proves format then parse gives back the instant (to the microsecond) across years. */
static void test_round_trip(void **state) {
    int64_t samples[] = {0, 951782400LL * NS + 123456000, /* 2000-02-29 */
                         -2208988800LL * NS,              /* 1900-01-01 */
                         4102444799LL * NS + 999999000,   /* 2099-12-31 23:59:59.999999 */
                         1705314600LL * NS + 1000};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        char buf[AS_ISO_LEN];
        int64_t back = 0;
        as_iso_format(samples[i], buf);
        assert_int_equal(as_iso_parse(buf, &back), 0);
        assert_int_equal(back, samples[i]);
    }
    /* Every day of a leap year and a common year survives the round trip. */
    for (int64_t d = 0; d < 366 * 2; d++) {
        int64_t ns = (1704067200LL + d * 86400 + 3723) * NS; /* from 2024-01-01 01:02:03 */
        char buf[AS_ISO_LEN];
        int64_t back = 0;
        as_iso_format(ns, buf);
        assert_int_equal(as_iso_parse(buf, &back), 0);
        assert_int_equal(back, ns);
    }
}

/* Proves converted raw timestamps are close to CLOCK_REALTIME and never go backwards,
 * including across calibration refinements. */
static void test_raw_conversion(void **state) {
    as_clock_init();
    int64_t real = as_clock_unix_ns();
    int64_t conv = as_clock_raw_to_unix_ns(as_clock_raw());
    int64_t diff = conv > real ? conv - real : real - conv;
    assert_true(diff < NS); /* within 1 s: catches a wrong offset, not a timing check */
    int64_t prev = INT64_MIN;
    uint64_t prev_raw = 0;
    for (int i = 0; i < 20000; i++) {
        uint64_t raw = as_clock_raw();
        assert_true(raw >= prev_raw);
        int64_t u = as_clock_raw_to_unix_ns(raw);
        assert_true(u >= prev);
        prev = u;
        prev_raw = raw;
    }
    /* A fixed old raw value converts the same before and after refinements, within 1 ms. */
    uint64_t old = as_clock_raw();
    int64_t first = as_clock_raw_to_unix_ns(old);
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
    as_clock_raw_to_unix_ns(as_clock_raw());
    int64_t again = as_clock_raw_to_unix_ns(old);
    diff = again > first ? again - first : first - again;
    assert_true(diff < 1000000);
}

/* Proves raw deltas have the right sign and magnitude (a 10 ms sleep is >= ~10 ms). */
static void test_raw_delta(void **state) {
    uint64_t a = as_clock_raw();
    struct timespec ts = {0, 10 * 1000000};
    nanosleep(&ts, NULL);
    uint64_t b = as_clock_raw();
    int64_t d = as_clock_raw_delta_ns(a, b);
    assert_true(d >= 9 * 1000000LL);
    assert_int_equal(as_clock_raw_delta_ns(b, a), -d);
    assert_int_equal(as_clock_raw_delta_ns(a, a), 0);
}

/* Each thread converts its own rising raw values while the others trigger refinements;
 * returns the number of times a later value converted to an earlier time. */
static void *convert_many(void *arg) {
    (void)arg;
    int64_t prev = INT64_MIN;
    uintptr_t backwards = 0;
    for (int i = 0; i < 50000; i++) {
        int64_t u = as_clock_raw_to_unix_ns(as_clock_raw());
        if (u < prev)
            backwards++;
        prev = u;
    }
    return (void *)backwards;
}

/* Proves conversion is thread-safe and stays monotone per thread under concurrency. */
static void test_threads(void **state) {
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, convert_many, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        assert_int_equal((uintptr_t)r, 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_known),   cmocka_unit_test(test_format_negative),
        cmocka_unit_test(test_parse_forms),    cmocka_unit_test(test_parse_leap_days),
        cmocka_unit_test(test_parse_refusals), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_raw_conversion), cmocka_unit_test(test_raw_delta),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
