/* log.c - formats the interposer's messages, filtered by AGENTSIGHT_LOG_LEVEL, and hands
 * them to diag.c, which decides where they go (one line, one write(2) each). */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/diag.h"
#include "core/keptenv.h"
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
    const char *env = as_keptenv_get("AGENTSIGHT_LOG_LEVEL");
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

/* Formats fmt into line (LOG_LINE_MAX bytes; a cut message ends with "..."), without a
 * trailing newline. */
static void format_msg(char *line, const char *fmt, va_list ap) {
    int m = vsnprintf(line, LOG_LINE_MAX, fmt, ap);
    if (m < 0) {
        line[0] = '\0';
        return;
    }
    size_t len = (size_t)m;
    if (len >= LOG_LINE_MAX) {
        len = LOG_LINE_MAX - 1; /* vsnprintf truncated: mark it */
        memcpy(line + len - 3, "...", 3);
    }
    while (len > 0 && line[len - 1] == '\n')
        len--;
    line[len] = '\0';
}

/* Formats into a stack buffer and hands the message to send (diag.c), which sends it where
 * diagnostics go. Preserves errno; never allocates. */
static void log_to(void (*send)(int level, const char *msg), int level, const char *fmt,
                   va_list ap) {
    int saved = errno;
    if (level <= as_log_level()) {
        char line[LOG_LINE_MAX];
        format_msg(line, fmt, ap);
        send(level, line);
    }
    errno = saved;
}

void as_log(int level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_to(as_diag_emit, level, fmt, ap);
    va_end(ap);
}

/* Like as_log, for alerts (diag.c: always shown, by the process that saw them). */
void as_alert(int level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_to(as_diag_alert, level, fmt, ap);
    va_end(ap);
}
