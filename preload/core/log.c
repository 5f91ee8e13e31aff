/* log.c - diagnostics on stderr: one prefixed line per message, written with one write(2)
 * so lines of concurrent threads and processes never interleave. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"

#define LOG_LINE_MAX 1024

/* -1 until the environment was read. */
static _Atomic int log_level = -1;

/* Maps a level name to its number. Returns the level, or -1 for an unknown name. */
static int level_from_name(const char *s) {
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0)
            return i;
    }
    if (strcasecmp(s, "warning") == 0)
        return AS_LOG_WARN;
    return -1;
}

/* Returns the threshold, reading AGENTSIGHT_LOG_LEVEL the first time. This function
 * can't fail: an unknown value keeps the default (warn). */
int as_log_level(void) {
    int lv = atomic_load_explicit(&log_level, memory_order_relaxed);
    if (lv >= 0)
        return lv;
    lv = AS_LOG_WARN;
    const char *env = secure_getenv("AGENTSIGHT_LOG_LEVEL");
    if (env && *env) {
        int parsed = level_from_name(env);
        if (parsed >= 0)
            lv = parsed;
    }
    int expected = -1;
    atomic_compare_exchange_strong(&log_level, &expected, lv);
    return atomic_load_explicit(&log_level, memory_order_relaxed);
}

/* Sets the threshold (clamped to error..debug). This function can't fail. */
void as_log_set_level(int level) {
    if (level < AS_LOG_ERROR)
        level = AS_LOG_ERROR;
    if (level > AS_LOG_DEBUG)
        level = AS_LOG_DEBUG;
    atomic_store(&log_level, level);
}

/* Formats into a stack buffer (truncated to LOG_LINE_MAX with "...") and writes it to fd 2
 * with one write(2). Preserves errno; never allocates. */
void as_log(int level, const char *fmt, ...) {
    static const char *const names[] = {"error", "warning", "info", "debug"};
    int saved = errno;
    if (level > as_log_level())
        goto out;
    if (level < AS_LOG_ERROR)
        level = AS_LOG_ERROR;
    if (level > AS_LOG_DEBUG)
        level = AS_LOG_DEBUG;

    char line[LOG_LINE_MAX + 8];
    int n = snprintf(line, LOG_LINE_MAX, "agentsight: %s: ", names[level]);
    if (n < 0)
        goto out;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, (size_t)(LOG_LINE_MAX - n), fmt, ap);
    va_end(ap);
    size_t len = (size_t)n;
    if (m > 0) {
        if ((size_t)m >= (size_t)(LOG_LINE_MAX - n)) {
            len = LOG_LINE_MAX - 1; /* vsnprintf truncated: mark it */
            memcpy(line + len - 3, "...", 3);
        } else {
            len += (size_t)m;
        }
    }
    /* Drop a trailing newline the caller gave, then add exactly one. */
    while (len > 0 && line[len - 1] == '\n')
        len--;
    line[len++] = '\n';
    const char *p = line;
    while (len > 0) {
        ssize_t w = write(2, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        len -= (size_t)w;
    }
out:
    errno = saved;
}
