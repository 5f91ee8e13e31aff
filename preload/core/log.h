/* log.h - diagnostics on stderr with one prefix, filtered by AGENTSIGHT_LOG_LEVEL. */
#ifndef AS_LOG_H
#define AS_LOG_H

enum as_log_level { AS_LOG_ERROR = 0, AS_LOG_WARN = 1, AS_LOG_INFO = 2, AS_LOG_DEBUG = 3 };

/* Current threshold; read once from AGENTSIGHT_LOG_LEVEL (error|warn|info|debug, default
 * warn). Messages above it are not printed. */
int as_log_level(void);
void as_log_set_level(int level);

/* Prints "agentsight: <level>: <message>\n" on stderr with one write(2), so lines of
 * concurrent threads and processes never interleave. Preserves errno. Never allocates. */
void as_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define as_error(...) as_log(AS_LOG_ERROR, __VA_ARGS__)
#define as_warn(...) as_log(AS_LOG_WARN, __VA_ARGS__)
#define as_info(...) as_log(AS_LOG_INFO, __VA_ARGS__)
#define as_debug(...) as_log(AS_LOG_DEBUG, __VA_ARGS__)

#endif
