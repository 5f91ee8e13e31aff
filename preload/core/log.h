/* log.h - the interposer's messages, filtered by AGENTSIGHT_LOG_LEVEL: diagnostics
 * (reported once per run) and alerts (actions lost: always shown); diag.h says where
 * each goes. */
#ifndef AS_LOG_H
#define AS_LOG_H

enum as_log_level { AS_LOG_ERROR = 0, AS_LOG_WARN = 1, AS_LOG_INFO = 2, AS_LOG_DEBUG = 3 };

/* Current threshold; read once from AGENTSIGHT_LOG_LEVEL (error|warn|info|debug, default
 * warn). Messages above it are not printed. */
int as_log_level(void);
void as_log_set_level(int level);

/* A diagnostic: about the config or the environment, the same in every process of a
 * tree. Printed as "agentsight: <level>: <message>" with one write(2), on stderr of the
 * first process of a tree only, or recorded for `agentsight run`, or appended to
 * AGENTSIGHT_LOG (diag.h). Preserves errno. Never allocates. */
void as_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* An alert: actions were or will be lost (a sink or the spool failing, the exporter
 * stuck). Always printed by the process that saw it: stderr, or AGENTSIGHT_LOG when
 * set; level AS_LOG_ALWAYS prints no level word and is never filtered. Preserves errno.
 * Never allocates. */
void as_alert(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define AS_LOG_ALWAYS (-1)

#define as_error(...) as_log(AS_LOG_ERROR, __VA_ARGS__)
#define as_warn(...) as_log(AS_LOG_WARN, __VA_ARGS__)
#define as_info(...) as_log(AS_LOG_INFO, __VA_ARGS__)
#define as_debug(...) as_log(AS_LOG_DEBUG, __VA_ARGS__)
#define as_alert_error(...) as_alert(AS_LOG_ERROR, __VA_ARGS__)
#define as_alert_warn(...) as_alert(AS_LOG_WARN, __VA_ARGS__)

#endif
