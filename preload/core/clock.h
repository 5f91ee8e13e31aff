/* clock.h - cheap raw timestamps for the hot path and their conversion to Unix time.
 *
 * The hot path stores as_clock_raw() (the TSC when it is invariant, else CLOCK_MONOTONIC
 * nanoseconds); the exporter converts raw values to Unix nanoseconds with
 * as_clock_raw_to_unix_ns(), using a calibration against CLOCK_REALTIME taken at
 * as_clock_init() and refined as time passes. */
#ifndef AS_CLOCK_H
#define AS_CLOCK_H

#include <stdint.h>
#include <time.h>

extern int as_clock_use_tsc; /* set by as_clock_init() */

static inline uint64_t as_clock_raw(void) {
    if (__builtin_expect(as_clock_use_tsc, 1)) {
        uint32_t lo, hi;
        __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
        return ((uint64_t)hi << 32) | lo;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Decides TSC or clock_gettime and takes the first calibration point. Idempotent;
 * async-signal-unsafe; call from a constructor or the first API call. */
void as_clock_init(void);

/* Only decides TSC or clock_gettime (as_clock_use_tsc), reading no clock: enough before
 * raw timestamps are taken; as_clock_init() takes the calibration point later (the
 * interposer: when its pipeline starts, at the first record), and the conversion extends
 * the first segment back to the raw values taken before it. Idempotent. */
void as_clock_select(void);

/* Raw value -> Unix time in ns. Not for the hot path (may read the clock to refine the
 * calibration). Thread-safe. */
int64_t as_clock_raw_to_unix_ns(uint64_t raw);

/* Raw difference -> ns. Thread-safe. */
int64_t as_clock_raw_delta_ns(uint64_t raw_from, uint64_t raw_to);

/* CLOCK_REALTIME in ns. */
int64_t as_clock_unix_ns(void);

/* CLOCK_MONOTONIC in ns and in ms: timeouts, deadlines and back-off (never the hot path,
 * which reads as_clock_raw()). This function can't fail. */
static inline int64_t as_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t as_mono_ms(void) {
    return as_mono_ns() / 1000000;
}

/* Formats Unix ns as "2024-01-15T10:30:00.050000Z" (UTC, microseconds) into buf (at least
 * AS_ISO_LEN bytes). Returns the length written. This function can't fail for years
 * 0001-9999; outside that range it clamps. */
#define AS_ISO_LEN 32
int as_iso_format(int64_t unix_ns, char *buf);

/* Parses an ISO-8601 timestamp: YYYY-MM-DDTHH:MM:SS[.fraction][Z|+HH:MM|-HH:MM|+HHMM]
 * ('T' or ' ' between date and time; no zone means UTC). Validates ranges (month, day of
 * that month, hour < 24, minute < 60, second <= 60). Returns 0 and stores Unix ns, or -1
 * when s is not such a timestamp. */
int as_iso_parse(const char *s, int64_t *unix_ns);

#endif
