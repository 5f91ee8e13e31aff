/* http.h - one small asynchronous HTTP client over a libcurl multi handle, shared by the
 * HTTP sinks: kept-alive connections, several requests in flight, retries with
 * exponential backoff and jitter, Retry-After honoured.
 *
 * Threads: an as_http belongs to one thread (the exporter); nothing here is thread-safe.
 * Blocking: only as_http_run() waits, and never longer than its timeout.
 * Global init: as_http_global_init() calls curl_global_init(), which is not thread-safe.
 * It runs from a sink's open() on the exporter thread; a program that itself uses libcurl
 * from other threads at that very moment without having called curl_global_init() first
 * races with it (libcurl's own documented caveat; libcurl >= 7.84 makes it thread-safe on
 * this platform). */
#ifndef AS_HTTP_H
#define AS_HTTP_H

#include <stddef.h>
#include <stdint.h>

typedef struct as_http as_http;

/* What a finished request reports to its callback. Pointers are valid only during the
 * callback. */
typedef struct as_http_resp {
    long status;      /* HTTP status; 0 when no answer (connection failure, timeout) */
    const char *body; /* the server's answer, NUL-terminated (may be "") */
    size_t body_len;
    const char *error; /* libcurl's error text when status == 0, else "" */
    int attempts;      /* how many times the request was sent */
    int cancelled;     /* 1 when as_http_cancel_all()/as_http_free() ended it */
} as_http_resp;

/* Called once per submitted request, from as_http_run(), as_http_cancel_all() or
 * as_http_free(). It may submit new requests (they are started by a later run). */
typedef void (*as_http_done_fn)(void *ctx, const as_http_resp *r);

typedef struct as_http_opts {
    int max_inflight;       /* requests on the wire at once; default 8 */
    int timeout_ms;         /* per attempt; default AGENTSIGHT_HTTP_TIMEOUT_MS, else 10000 */
    int connect_timeout_ms; /* default 2000 */
    int max_attempts;       /* default 5 (1 = never retry) */
    int backoff_base_ms;    /* default 100: attempt n waits base*2^(n-1), with jitter */
    int backoff_max_ms;     /* default 5000 */
    int retry_after_max_ms; /* cap on a server's Retry-After; default 30000 */
    const char *ca_bundle;  /* CA file; NULL: AGENTSIGHT_CA_BUNDLE, else the system's */
} as_http_opts;

/* curl_global_init once per process. Returns 0, or -1 when libcurl cannot start. */
int as_http_global_init(void);

/* New client. opts may be NULL (all defaults); zero members take defaults. headers is a
 * NULL-terminated list of "Name: value" lines sent with every request (copied).
 * Returns the client, or NULL (nothing allocated) when memory or libcurl fails. */
as_http *as_http_new(const as_http_opts *opts, const char *const *headers);

/* Cancels every request (callbacks run with cancelled = 1), then frees the client.
 * NULL is accepted. */
void as_http_free(as_http *h);

/* Queues a request. method "GET", "POST" or "PATCH"; url is copied; body (may be NULL)
 * is taken over and later freed with free(). Returns 0; -1 when out of memory (then body
 * is freed and fn is not called). */
int as_http_submit(as_http *h, const char *method, const char *url, char *body, size_t body_len,
                   as_http_done_fn fn, void *ctx);

/* Drives transfers for up to timeout_ms (0: one non-blocking pass), returning early when
 * nothing is outstanding. Returns the number of requests still outstanding. */
size_t as_http_run(as_http *h, int timeout_ms);

/* Requests submitted and not yet reported (queued, on the wire or waiting to retry). */
size_t as_http_outstanding(const as_http *h);

/* 1 while the server answers: the last attempt that finished got an answer that is not
 * worth retrying (any 2xx or 4xx but 429), and before any attempt finished; 0 after no
 * answer, 429 or 502-504. This function can't fail. */
int as_http_answering(const as_http *h);

/* on = 1 for the final flush (the process exits or replaces its image): from then on an
 * attempt that cannot connect (refused, host unknown) is not retried, and the retries
 * waiting after such an attempt end now: callbacks run with status 0 (not cancelled), so
 * the sink spools at once instead of sleeping through the backoff. Other failures keep
 * their retries. on = 0 restores the retries (an exec that failed). Can't fail. */
void as_http_set_final(as_http *h, int on);

/* Ends every outstanding request now: callbacks run with cancelled = 1, status 0. */
void as_http_cancel_all(as_http *h);

/* 1 for answers worth retrying: 0 (no answer), 429, 502, 503, 504. */
int as_http_retryable(long status);

/* Wait before attempt number `attempt` (2 = first retry): base*2^(attempt-2), capped,
 * with "equal jitter" (half fixed, half from rnd). This function can't fail. */
int as_http_backoff_ms(const as_http_opts *o, int attempt, uint64_t rnd);

/* Parses a Retry-After value (delta seconds or an HTTP date, now_s the current Unix
 * time). Returns milliseconds (>= 0), or -1 when the value is not understood. */
long as_http_parse_retry_after(const char *value, int64_t now_s);

/* A random 64-bit value (getrandom, else time and counter mixing). Can't fail. */
uint64_t as_http_random64(void);

#endif
