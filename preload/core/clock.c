/* clock.c - raw timestamps (invariant TSC or CLOCK_MONOTONIC) and their conversion to Unix
 * time, plus ISO-8601 formatting and parsing without libc time zones, locale or malloc.
 *
 * Calibration: as_clock_init() takes one point (tsc, monotonic ns) and the realtime -
 * monotonic offset. The first conversion takes a second point at least 1 ms later
 * (spinning at most ~2 ms once when asked sooner); later conversions refine the frequency
 * from a longer baseline each time the elapsed time doubles (then every 10 s). Each
 * refinement starts a new linear segment anchored where the old one was at that moment,
 * so the mapping stays continuous and increasing: a larger raw value never converts to an
 * earlier time. Readers use a seqlock; one refiner at a time (try-lock). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/platform/x86.h>
#include <time.h>

#include "core/pipeline.h"
#include "core/keptenv.h"
#include "core/clock.h"

int as_clock_use_tsc = 0;

#define NS_PER_SEC 1000000000LL
#define CAL_MIN_NS 1000000LL          /* first frequency point after 1 ms */
#define CAL_SPIN_MAX_NS 2000000LL     /* spin at most ~2 ms for it */
#define CAL_MAX_STEP_NS 10000000000LL /* refine at least every 10 s once settled */

/* Segment: for raw >= anchor_tsc, mono = anchor_mono + (raw - anchor_tsc) * mult >> 32;
 * below the anchor the previous slope (prev_mult) is used, so both sides meet at the
 * anchor. mult is ns per tick in 32.32 fixed point. */
static struct {
    _Atomic unsigned seq;
    _Atomic uint64_t anchor_tsc, anchor_mono, mult, prev_mult;
    _Atomic uint64_t next_refine_tsc; /* raw value past which a refinement is due */
    _Atomic int calibrated;
} cal;

static uint64_t base_tsc, base_mono, last_refine_mono; /* written under refine_lock */
static int64_t real_minus_mono;                        /* fixed at init */
static pthread_mutex_t refine_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_once_t select_once = PTHREAD_ONCE_INIT;
static int want_tsc; /* decided once by do_select */

static uint64_t rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* Returns 1 when the CPU says its TSC runs at a constant rate in every power state. */
static int tsc_invariant(void) {
    /* What the C library read with cpuid at start-up: cpuid traps to the hypervisor on a
     * virtual machine, a cost every process would pay again. */
    if (CPU_FEATURE_PRESENT(INVARIANT_TSC))
        return 1;
    /* Hypervisors often hide the cpuid leaf but the kernel still reports the flags. */
    FILE *f = fopen("/proc/cpuinfo", "re");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        found = strstr(line, " constant_tsc") && strstr(line, " nonstop_tsc");
        break;
    }
    fclose(f);
    return found;
}

/* Takes a (tsc, mono) pair with the smallest bracket of three tries. */
static void take_point(uint64_t *tsc, uint64_t *mono) {
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 3; i++) {
        uint64_t t1 = rdtsc();
        uint64_t m = (uint64_t)as_mono_ns();
        uint64_t t2 = rdtsc();
        if (t2 - t1 < best) {
            best = t2 - t1;
            *tsc = t1 + (t2 - t1) / 2;
            *mono = m;
        }
    }
}

/* Measures CLOCK_REALTIME - CLOCK_MONOTONIC with the tightest of three brackets. */
static int64_t measure_offset(void) {
    int64_t best_gap = INT64_MAX, off = 0;
    for (int i = 0; i < 3; i++) {
        uint64_t m1 = (uint64_t)as_mono_ns();
        int64_t r = as_clock_unix_ns();
        uint64_t m2 = (uint64_t)as_mono_ns();
        if ((int64_t)(m2 - m1) < best_gap) {
            best_gap = (int64_t)(m2 - m1);
            off = r - (int64_t)(m1 + (m2 - m1) / 2);
        }
    }
    return off;
}

static void do_select(void) {
    const char *force = as_keptenv_get("AGENTSIGHT_CLOCK");
    want_tsc = !(force && strcmp(force, "monotonic") == 0) && tsc_invariant();
    as_clock_use_tsc = want_tsc;
}

void as_clock_select(void) {
    pthread_once(&select_once, do_select);
}

static void do_init(void) {
    as_clock_select();
    real_minus_mono = measure_offset();
    if (want_tsc) {
        take_point(&base_tsc, &base_mono);
        last_refine_mono = base_mono;
        atomic_store(&cal.next_refine_tsc, 0);
        as_clock_use_tsc = 1;
    }
}

/* A fork child has one thread: a refinement another thread of the parent was making at
 * fork() never ends there. Without this, the child's first conversion waited forever for
 * refine_lock (the parent's exporter calibrating its first 1-2 ms while the program
 * forked): the child's exporter never stopped and its actions stayed in its ring. */
static void clock_fork_child(void) {
    pthread_mutex_init(&refine_lock, NULL);
    unsigned s = atomic_load(&cal.seq);
    if (s & 1) { /* a segment half written: dropped, calibrated again */
        atomic_store(&cal.seq, s + 1);
        atomic_store(&cal.calibrated, 0);
    }
}

AS_OWN_ATFORK(own_fork, as_fork_nothing, as_fork_nothing, clock_fork_child)

static void init_and_atfork(void) {
    do_init();
    pthread_atfork(own_fork_prepare, own_fork_parent, own_fork_child);
}

void as_clock_init(void) {
    pthread_once(&init_once, init_and_atfork);
}

/* Converts with the current segment. Caller holds a consistent snapshot. */
static uint64_t seg_eval(uint64_t raw, uint64_t atsc, uint64_t amono, uint64_t mult,
                         uint64_t pmult) {
    if (raw >= atsc)
        return amono + (uint64_t)(((unsigned __int128)(raw - atsc) * mult) >> 32);
    uint64_t back = (uint64_t)(((unsigned __int128)(atsc - raw) * pmult) >> 32);
    return back > amono ? 0 : amono - back;
}

static void snapshot(uint64_t *atsc, uint64_t *amono, uint64_t *mult, uint64_t *pmult) {
    for (;;) {
        unsigned s1 = atomic_load_explicit(&cal.seq, memory_order_acquire);
        if (s1 & 1)
            continue;
        *atsc = atomic_load_explicit(&cal.anchor_tsc, memory_order_relaxed);
        *amono = atomic_load_explicit(&cal.anchor_mono, memory_order_relaxed);
        *mult = atomic_load_explicit(&cal.mult, memory_order_relaxed);
        *pmult = atomic_load_explicit(&cal.prev_mult, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&cal.seq, memory_order_relaxed) == s1)
            return;
    }
}

/* Takes a new point and installs a new segment (first call: waits for 1 ms of baseline,
 * spinning at most ~2 ms). Only one thread refines; the others keep the old segment. */
static void refine(int must) {
    if (must)
        pthread_mutex_lock(&refine_lock);
    else if (pthread_mutex_trylock(&refine_lock) != 0)
        return;
    int first = !atomic_load(&cal.calibrated);
    if (!first && must)
        goto out; /* someone calibrated while we waited */
    uint64_t tsc, mono;
    take_point(&tsc, &mono);
    if (first && mono - base_mono < (uint64_t)CAL_MIN_NS) {
        uint64_t deadline = mono + CAL_SPIN_MAX_NS;
        while (mono - base_mono < (uint64_t)CAL_MIN_NS && mono < deadline)
            take_point(&tsc, &mono);
    }
    if (tsc <= base_tsc || mono <= base_mono)
        goto out; /* clock went backwards or did not move: keep what we have */
    uint64_t mult = (uint64_t)((((unsigned __int128)(mono - base_mono)) << 32) / (tsc - base_tsc));
    if (mult == 0)
        goto out;
    uint64_t atsc = tsc, amono = mono;
    uint64_t pmult = mult;
    if (!first) {
        uint64_t o_tsc, o_mono, o_mult, o_pmult;
        snapshot(&o_tsc, &o_mono, &o_mult, &o_pmult);
        amono = seg_eval(tsc, o_tsc, o_mono, o_mult, o_pmult); /* continuity */
        pmult = o_mult;
    } else {
        atsc = base_tsc;
        amono = base_mono;
    }
    uint64_t elapsed = mono - base_mono;
    uint64_t step = elapsed < (uint64_t)CAL_MAX_STEP_NS ? elapsed : (uint64_t)CAL_MAX_STEP_NS;
    uint64_t step_ticks = (uint64_t)((((unsigned __int128)step) << 32) / mult);
    last_refine_mono = mono;

    atomic_fetch_add_explicit(&cal.seq, 1, memory_order_acq_rel);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&cal.anchor_tsc, atsc, memory_order_relaxed);
    atomic_store_explicit(&cal.anchor_mono, amono, memory_order_relaxed);
    atomic_store_explicit(&cal.mult, mult, memory_order_relaxed);
    atomic_store_explicit(&cal.prev_mult, pmult, memory_order_relaxed);
    atomic_fetch_add_explicit(&cal.seq, 1, memory_order_release);
    atomic_store(&cal.next_refine_tsc, tsc + step_ticks);
    atomic_store(&cal.calibrated, 1);
out:
    pthread_mutex_unlock(&refine_lock);
}

/* Raw TSC -> CLOCK_MONOTONIC ns, calibrating or refining first when due. */
static uint64_t tsc_to_mono(uint64_t raw) {
    if (!atomic_load_explicit(&cal.calibrated, memory_order_acquire))
        refine(1);
    if (raw > atomic_load_explicit(&cal.next_refine_tsc, memory_order_relaxed))
        refine(0);
    if (!atomic_load_explicit(&cal.calibrated, memory_order_acquire))
        return (uint64_t)as_mono_ns(); /* the TSC did not advance: best effort, never 0 */
    uint64_t atsc, amono, mult, pmult;
    snapshot(&atsc, &amono, &mult, &pmult);
    return seg_eval(raw, atsc, amono, mult, pmult);
}

/* Returns Unix ns for a raw value. This function can't fail. */
int64_t as_clock_raw_to_unix_ns(uint64_t raw) {
    as_clock_init();
    if (!as_clock_use_tsc)
        return (int64_t)raw + real_minus_mono;
    return (int64_t)tsc_to_mono(raw) + real_minus_mono;
}

/* Returns raw_to - raw_from in ns (negative when raw_to is earlier). Can't fail. */
int64_t as_clock_raw_delta_ns(uint64_t raw_from, uint64_t raw_to) {
    as_clock_init();
    if (!as_clock_use_tsc)
        return (int64_t)(raw_to - raw_from);
    if (raw_to < raw_from)
        return -as_clock_raw_delta_ns(raw_to, raw_from);
    return (int64_t)tsc_to_mono(raw_to) - (int64_t)tsc_to_mono(raw_from);
}

/* Returns CLOCK_REALTIME in ns. Can't fail. */
int64_t as_clock_unix_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* ---- civil dates (H. Hinnant's days_from_civil / civil_from_days) ---- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m) {
    static const unsigned char dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dm[m - 1];
}

static char *put2(char *p, unsigned v) {
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

/* Writes "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" + NUL; returns 27. Can't fail (clamps years). */
int as_iso_format(int64_t unix_ns, char *buf) {
    int64_t secs = unix_ns / NS_PER_SEC, rem = unix_ns % NS_PER_SEC;
    if (rem < 0) {
        rem += NS_PER_SEC;
        secs--;
    }
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 1) {
        y = 1, m = 1, d = 1, sod = 0, rem = 0;
    } else if (y > 9999) {
        y = 9999, m = 12, d = 31, sod = 86399, rem = 999999999;
    }
    unsigned us = (unsigned)(rem / 1000);
    char *p = buf;
    p = put2(p, (unsigned)(y / 100));
    p = put2(p, (unsigned)(y % 100));
    *p++ = '-';
    p = put2(p, m);
    *p++ = '-';
    p = put2(p, d);
    *p++ = 'T';
    p = put2(p, (unsigned)(sod / 3600));
    *p++ = ':';
    p = put2(p, (unsigned)(sod / 60 % 60));
    *p++ = ':';
    p = put2(p, (unsigned)(sod % 60));
    *p++ = '.';
    p = put2(p, us / 10000);
    p = put2(p, us / 100 % 100);
    p = put2(p, us % 100);
    *p++ = 'Z';
    *p = '\0';
    return (int)(p - buf);
}

/* Reads exactly n digits. Returns 0, or -1 when one is not a digit. */
static int digits(const char *s, int n, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Parses the timestamp; returns 0 with *unix_ns set, or -1 (*unix_ns untouched). */
int as_iso_parse(const char *s, int64_t *unix_ns) {
    if (!s || !unix_ns)
        return -1;
    unsigned Y, M, D, h, mi, sec;
    if (digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) || s[7] != '-' ||
        digits(s + 8, 2, &D))
        return -1;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
        return -1;
    if (digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &sec))
        return -1;
    if (Y < 1 || M < 1 || M > 12 || D < 1 || D > days_in_month(Y, M) || h > 23 || mi > 59 ||
        sec > 60)
        return -1;
    const char *p = s + 19;
    int64_t frac = 0;
    if (*p == '.' || *p == ',') {
        p++;
        int n = 0;
        while (*p >= '0' && *p <= '9') {
            if (n == 9)
                return -1; /* more precision than ns */
            frac = frac * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0)
            return -1;
        for (; n < 9; n++)
            frac *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        unsigned oh, om;
        p++;
        if (digits(p, 2, &oh))
            return -1;
        p += 2;
        if (*p == ':')
            p++;
        if (digits(p, 2, &om))
            return -1;
        p += 2;
        if (oh > 23 || om > 59)
            return -1;
        off = sign * (int64_t)(oh * 3600 + om * 60);
    }
    if (*p != '\0')
        return -1;
    int64_t secs = days_from_civil(Y, M, D) * 86400 + h * 3600 + mi * 60 + sec - off;
    int64_t ns;
    if (__builtin_mul_overflow(secs, NS_PER_SEC, &ns) || __builtin_add_overflow(ns, frac, &ns))
        return -1; /* outside the years int64 ns can hold (1677-2262) */
    *unix_ns = ns;
    return 0;
}
