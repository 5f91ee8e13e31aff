/* http.c - the asynchronous libcurl multi client behind the HTTP sinks (see http.h). */
#include "core/dl_curl.h" /* first: it sets how <curl/curl.h> is read */

#include "core/clock.h"
#include "core/keptenv.h"
#include "core/fdio.h"
#include "core/http.h"
#include "core/pipeline.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/jsonw.h"
#include "core/log.h"
#include "core/netfd.h"

typedef struct req {
    struct req *next;
    CURL *easy;
    char method[8];
    char *url;
    char *body;
    size_t body_len;
    as_buf answer;
    long retry_after_ms; /* from the last answer, -1 when none */
    int attempts;
    int64_t not_before_ms; /* earliest start of the next attempt */
    int unreachable;       /* the last attempt could not connect (refused, no such host) */
    as_http_done_fn fn;
    void *ctx;
    char errbuf[CURL_ERROR_SIZE];
} req;

struct as_http {
    as_http_opts o;
    char *ca_bundle;
    CURLM *multi;
    struct curl_slist *headers;
    req *queue_head, *queue_tail; /* new requests, FIFO */
    req *waiting;                 /* retries waiting for not_before_ms */
    size_t inflight;
    size_t outstanding;
    req *wire[64];   /* requests on the wire; inflight entries used */
    CURL *spare[16]; /* finished easy handles kept for reuse */
    int nspare;
    int answering;         /* see as_http_answering() */
    as_netfd_id wakeup[4]; /* descriptors curl_multi_init opened (its wakeup pair) */
    int nwakeup;
    int wakeup_hi[2]; /* the pair kept at high numbers (park_wakeup), or -1 */
    int final;        /* as_http_set_final(): an attempt that cannot connect is not retried */
};

AS_DYNLIB_DEFINE(as_curl, AS_CURL_FNS, "libcurl.so.4", "the HTTP sinks (agentsight, otlp)");

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_rc = -1;

/* Loads libcurl (the first HTTP sink of the process) and starts it. */
static void global_init_once(void) {
    if (as_dynlib_load(&as_curl_lib) != 0)
        return;
    global_rc = as_curl.curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
    /* The TLS library registered its exit cleanup just now: the final flush, which may
     * still deliver over https, must run before it. */
    as_pipe_exit_before_tls();
}

int as_http_global_init(void) {
    pthread_once(&global_once, global_init_once);
    return global_rc;
}

uint64_t as_http_random64(void) {
    static __thread uint64_t state;
    uint64_t v;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v)
        return v;
    /* splitmix64 over time and a counter: good enough for jitter and ids. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    state += 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
    v = state;
    v = (v ^ (v >> 30)) * 0xbf58476d1ce4e5b9ull;
    v = (v ^ (v >> 27)) * 0x94d049bb133111ebull;
    return v ^ (v >> 31);
}

int as_http_retryable(long status) {
    return status == 0 || status == 429 || status == 502 || status == 503 || status == 504;
}

int as_http_backoff_ms(const as_http_opts *o, int attempt, uint64_t rnd) {
    int base = o && o->backoff_base_ms > 0 ? o->backoff_base_ms : 100;
    int cap = o && o->backoff_max_ms > 0 ? o->backoff_max_ms : 5000;
    int64_t d = base;
    for (int i = 2; i < attempt && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    int64_t half = d / 2;
    return (int)(d - half + (half > 0 ? (int64_t)(rnd % (uint64_t)(half + 1)) : 0));
}

long as_http_parse_retry_after(const char *value, int64_t now_s) {
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (isdigit((unsigned char)*value)) {
        char *end;
        errno = 0;
        long long s = strtoll(value, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        if (errno || *end)
            return -1;
        if (s > 86400)
            s = 86400;
        return (long)(s * 1000);
    }
    if (as_dynlib_load(&as_curl_lib) != 0)
        return -1;
    time_t t = as_curl.curl_getdate(value, NULL);
    if (t == (time_t)-1)
        return -1;
    return t <= now_s ? 0 : (long)((t - now_s) * 1000);
}

static void opts_defaults(as_http_opts *o) {
    if (o->max_inflight <= 0)
        o->max_inflight = 8;
    if (o->max_inflight > 64)
        o->max_inflight = 64;
    if (o->timeout_ms <= 0) {
        const char *e = as_keptenv_get("AGENTSIGHT_HTTP_TIMEOUT_MS");
        o->timeout_ms = e && atoi(e) > 0 ? atoi(e) : 10000;
    }
    if (o->connect_timeout_ms <= 0)
        o->connect_timeout_ms = 2000;
    if (o->connect_timeout_ms > o->timeout_ms)
        o->connect_timeout_ms = o->timeout_ms;
    if (o->max_attempts <= 0)
        o->max_attempts = 5;
    if (o->backoff_base_ms <= 0)
        o->backoff_base_ms = 100;
    if (o->backoff_max_ms <= 0)
        o->backoff_max_ms = 5000;
    if (o->retry_after_max_ms <= 0)
        o->retry_after_max_ms = 30000;
}

/* Whether a and b are the two ends of one stream socket pair: a byte sent on one is read
 * on the other (neither end is then left holding it). */
static int is_pair(int a, int b) {
    char c = 'w';
    if (send(b, &c, 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1)
        return 0;
    return recv(a, &c, 1, MSG_DONTWAIT) == 1;
}

/* curl_multi_init opens a wakeup socket pair at the program's lowest free numbers (a
 * program that closed fd 0 would not get 0 back from its next open: tar aborts). libcurl
 * uses the pair only in curl_multi_poll and curl_multi_wakeup, which we never call, and
 * closes it in curl_multi_cleanup. So the pair moves to high numbers (fdio.h) at once, and
 * its low numbers are the program's again; unpark_wakeup puts them back for the cleanup.
 * Only a verified pair is moved (two new sockets, connected to each other): a socket a
 * program thread opened meanwhile is never touched. Can't fail (nothing moved then). */
static void park_wakeup(as_http *h) {
    h->wakeup_hi[0] = h->wakeup_hi[1] = -1;
    if (h->nwakeup != 2 || !is_pair(h->wakeup[0].fd, h->wakeup[1].fd))
        return;
    int base = as_fd_high_base();
    if (base <= h->wakeup[0].fd || base <= h->wakeup[1].fd)
        return;
    int hi[2];
    for (int i = 0; i < 2; i++) {
        hi[i] = fcntl(h->wakeup[i].fd, F_DUPFD_CLOEXEC, base);
        if (hi[i] < 0) {
            if (i)
                close(hi[0]);
            return;
        }
    }
    for (int i = 0; i < 2; i++) {
        close(h->wakeup[i].fd);
        h->wakeup_hi[i] = hi[i];
    }
}

/* Gives the parked pair its low numbers back for curl_multi_cleanup. Returns 1 when the
 * multi handle may be cleaned up (its descriptors are its own again, or were never
 * moved), 0 when a number is the program's now (then nothing of the program's is
 * touched, and the handle is left as it is). The high copies are closed either way. */
static int unpark_wakeup(as_http *h) {
    if (h->wakeup_hi[0] < 0)
        return as_netfd_intact(h->wakeup, h->nwakeup);
    int ok = 1, got[2] = {-1, -1};
    for (int i = 0; i < 2 && ok; i++) {
        /* The lowest free number from the old one: the old one itself when free. Never
         * replaces a descriptor, unlike dup2. */
        got[i] = fcntl(h->wakeup_hi[i], F_DUPFD_CLOEXEC, h->wakeup[i].fd);
        ok = got[i] == h->wakeup[i].fd;
    }
    for (int i = 0; i < 2; i++) {
        if (!ok && got[i] >= 0)
            close(got[i]);
        close(h->wakeup_hi[i]);
        h->wakeup_hi[i] = -1;
    }
    return ok;
}

as_http *as_http_new(const as_http_opts *opts, const char *const *headers) {
    if (as_http_global_init() != 0)
        return NULL;
    as_http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    if (opts)
        h->o = *opts;
    opts_defaults(&h->o);
    const char *ca = h->o.ca_bundle ? h->o.ca_bundle : as_keptenv_get("AGENTSIGHT_CA_BUNDLE");
    if (ca && *ca && !(h->ca_bundle = strdup(ca)))
        goto error;
    h->o.ca_bundle = h->ca_bundle;
    h->answering = 1;
    for (size_t i = 0; headers && headers[i]; i++) {
        struct curl_slist *n = as_curl.curl_slist_append(h->headers, headers[i]);
        if (!n)
            goto error;
        h->headers = n;
    }
    /* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
    struct curl_slist *n = as_curl.curl_slist_append(h->headers, "Expect:");
    if (!n)
        goto error;
    h->headers = n;
    unsigned char before[AS_NETFD_SCAN];
    as_netfd_mark(before);
    h->multi = as_curl.curl_multi_init();
    if (!h->multi)
        goto error;
    h->nwakeup = as_netfd_new(before, h->wakeup, 4);
    park_wakeup(h);
    as_curl.curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)h->o.max_inflight);
    as_curl.curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)h->o.max_inflight);
    return h;
error:
    as_curl.curl_slist_free_all(h->headers);
    free(h->ca_bundle);
    free(h);
    return NULL;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    req *r = ud;
    size_t len = size * n;
    if (r->answer.len < 64 * 1024) /* answers are small; keep memory bounded */
        as_buf_put(&r->answer, p, len);
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    req *r = ud;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
        char v[128];
        size_t vl = len - (sizeof name - 1);
        if (vl >= sizeof v)
            vl = sizeof v - 1;
        memcpy(v, p + sizeof name - 1, vl);
        v[vl] = 0;
        r->retry_after_ms = as_http_parse_retry_after(v, (int64_t)time(NULL));
    }
    return len;
}

static void req_free(req *r) {
    free(r->url);
    free(r->body);
    as_buf_free(&r->answer);
    free(r);
}

static void finish(as_http *h, req *r, long status, int cancelled) {
    as_http_resp resp = {
        .status = status,
        .body = as_buf_cstr(&r->answer),
        .body_len = r->answer.len,
        .error = status == 0 ? (r->errbuf[0] ? r->errbuf : "no answer") : "",
        .attempts = r->attempts,
        .cancelled = cancelled,
    };
    if (cancelled && !r->errbuf[0])
        resp.error = "cancelled";
    h->outstanding--;
    if (r->fn)
        r->fn(r->ctx, &resp);
    req_free(r);
}

int as_http_submit(as_http *h, const char *method, const char *url, char *body, size_t body_len,
                   as_http_done_fn fn, void *ctx) {
    req *r = calloc(1, sizeof *r);
    if (!r || !(r->url = strdup(url))) {
        free(r);
        free(body);
        return -1;
    }
    snprintf(r->method, sizeof r->method, "%s", method);
    r->body = body;
    r->body_len = body_len;
    r->fn = fn;
    r->ctx = ctx;
    r->retry_after_ms = -1;
    as_buf_init(&r->answer);
    if (h->queue_tail)
        h->queue_tail->next = r;
    else
        h->queue_head = r;
    h->queue_tail = r;
    h->outstanding++;
    return 0;
}

/* Returns 0 when r went on the wire; -1 when libcurl refused it (r is untouched). */
static int start(as_http *h, req *r) {
    CURL *e = h->nspare > 0 ? h->spare[--h->nspare] : as_curl.curl_easy_init();
    if (!e)
        return -1;
    as_curl.curl_easy_reset(e);
    r->easy = e;
    r->errbuf[0] = 0;
    r->retry_after_ms = -1;
    as_buf_reset(&r->answer);
    as_curl.curl_easy_setopt(e, CURLOPT_URL, r->url);
    as_curl.curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    as_curl.curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    as_curl.curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    as_curl.curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    as_curl.curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    as_curl.curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)h->o.timeout_ms);
    as_curl.curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)h->o.connect_timeout_ms);
    as_curl.curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    as_curl.curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    as_curl.curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (h->ca_bundle)
        as_curl.curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_bundle);
    as_curl.curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers);
    as_curl.curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    as_curl.curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    as_curl.curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    as_curl.curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    as_curl.curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    as_curl.curl_easy_setopt(e, CURLOPT_USERAGENT, "agentsight-preload/0.1");
    as_curl.curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, as_netfd_open);
    as_curl.curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, as_netfd_close);
    if (strcmp(r->method, "GET") != 0) {
        as_curl.curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        as_curl.curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        if (strcmp(r->method, "POST") != 0)
            as_curl.curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    }
    if (as_curl.curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        as_curl.curl_easy_cleanup(e);
        r->easy = NULL;
        return -1;
    }
    r->attempts++;
    h->wire[h->inflight++] = r;
    return 0;
}

static void release_easy(as_http *h, req *r) {
    if (!r->easy)
        return;
    as_curl.curl_multi_remove_handle(h->multi, r->easy);
    if (h->nspare < (int)(sizeof h->spare / sizeof h->spare[0]))
        h->spare[h->nspare++] = r->easy;
    else
        as_curl.curl_easy_cleanup(r->easy);
    r->easy = NULL;
    for (size_t i = 0; i < h->inflight; i++) {
        if (h->wire[i] == r) {
            h->wire[i] = h->wire[--h->inflight];
            break;
        }
    }
}

/* Starts queued requests while there is room: ready retries first, then new ones. */
static void start_more(as_http *h, int64_t now) {
    req **pp = &h->waiting;
    while (*pp && h->inflight < (size_t)h->o.max_inflight) {
        req *r = *pp;
        if (r->not_before_ms > now) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        r->next = NULL;
        if (start(h, r) != 0) {
            finish(h, r, 0, 0);
            continue;
        }
    }
    while (h->queue_head && h->inflight < (size_t)h->o.max_inflight) {
        req *r = h->queue_head;
        h->queue_head = r->next;
        if (!h->queue_head)
            h->queue_tail = NULL;
        r->next = NULL;
        if (start(h, r) != 0)
            finish(h, r, 0, 0);
    }
}

static void on_done(as_http *h, req *r, CURLcode rc) {
    long status = 0;
    if (rc == CURLE_OK)
        as_curl.curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    else if (!r->errbuf[0])
        snprintf(r->errbuf, sizeof r->errbuf, "%s", as_curl.curl_easy_strerror(rc));
    release_easy(h, r);
    h->answering = !as_http_retryable(status);
    r->unreachable = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                     rc == CURLE_COULDNT_RESOLVE_PROXY;
    if (as_http_retryable(status) && r->attempts < h->o.max_attempts &&
        !(h->final && r->unreachable)) {
        long wait = as_http_backoff_ms(&h->o, r->attempts + 1, as_http_random64());
        if (r->retry_after_ms >= 0)
            wait = r->retry_after_ms < h->o.retry_after_max_ms ? r->retry_after_ms
                                                               : h->o.retry_after_max_ms;
        r->not_before_ms = as_mono_ms() + wait;
        r->next = h->waiting;
        h->waiting = r;
        return;
    }
    finish(h, r, status, 0);
}

static int64_t next_retry_ms(const as_http *h) {
    int64_t best = -1;
    for (const req *r = h->waiting; r; r = r->next)
        if (best < 0 || r->not_before_ms < best)
            best = r->not_before_ms;
    return best;
}

size_t as_http_run(as_http *h, int timeout_ms) {
    if (!h)
        return 0;
    int64_t deadline = as_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        start_more(h, as_mono_ms());
        int running = 0;
        as_curl.curl_multi_perform(h->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = as_curl.curl_multi_info_read(h->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            req *r = NULL;
            as_curl.curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            if (r)
                on_done(h, r, m->data.result);
        }
        if (h->outstanding == 0)
            return 0;
        int64_t now = as_mono_ms();
        if (now >= deadline)
            break;
        /* Something may have become startable by a completion: start it before sleeping. */
        if (h->inflight < (size_t)h->o.max_inflight && h->queue_head)
            continue;
        int64_t wait = deadline - now;
        int64_t nr = next_retry_ms(h);
        if (nr >= 0 && h->inflight < (size_t)h->o.max_inflight)
            wait = nr - now < wait ? (nr - now > 0 ? nr - now : 0) : wait;
        if (wait > 100)
            wait = 100;
        if (h->inflight == 0) {
            if (wait > 0) {
                struct timespec ts = {wait / 1000, (wait % 1000) * 1000000};
                nanosleep(&ts, NULL);
            }
        } else {
            /* curl_multi_wait, not _poll: _poll also watches (and drains) the multi
             * handle's wakeup pair, whose numbers may be a daemon's files by now. It may
             * return at once when nothing is waited on: then sleep (bounded). */
            int64_t t0 = as_mono_ms();
            int nfds = 0;
            long timer = -1;
            as_curl.curl_multi_wait(h->multi, NULL, 0, (int)wait, &nfds);
            as_curl.curl_multi_timeout(h->multi, &timer);
            if (nfds == 0 && timer < 0 && as_mono_ms() - t0 < 1 && wait > 0) {
                int64_t nap = wait < 10 ? wait : 10;
                struct timespec ts = {0, nap * 1000000};
                nanosleep(&ts, NULL);
            }
        }
    }
    return h->outstanding;
}

void as_http_set_final(as_http *h, int on) {
    if (!h || h->final == !!on)
        return;
    h->final = !!on;
    if (!on)
        return;
    /* Detach the waiting list first: a callback may submit (or requeue) requests. */
    req *list = h->waiting, *keep = NULL, *give_up = NULL;
    h->waiting = NULL;
    while (list) {
        req *r = list;
        list = r->next;
        req **to = r->unreachable ? &give_up : &keep;
        r->next = *to;
        *to = r;
    }
    while (keep) {
        req *r = keep;
        keep = r->next;
        r->next = h->waiting;
        h->waiting = r;
    }
    for (int i = 0; give_up && i < 100000; i++) {
        req *r = give_up;
        give_up = r->next;
        r->next = NULL;
        finish(h, r, 0, 0);
    }
}

int as_http_answering(const as_http *h) {
    return h ? h->answering : 0;
}

size_t as_http_outstanding(const as_http *h) {
    return h ? h->outstanding : 0;
}

void as_http_cancel_all(as_http *h) {
    if (!h)
        return;
    /* Collect everything first: callbacks may submit again (those are cancelled too). */
    while (h->outstanding > 0) {
        req *list = NULL;
        while (h->inflight > 0) {
            req *r = h->wire[h->inflight - 1];
            release_easy(h, r);
            r->next = list;
            list = r;
        }
        while (h->waiting) {
            req *r = h->waiting;
            h->waiting = r->next;
            r->next = list;
            list = r;
        }
        while (h->queue_head) {
            req *r = h->queue_head;
            h->queue_head = r->next;
            r->next = list;
            list = r;
        }
        h->queue_tail = NULL;
        if (!list)
            break;
        while (list) {
            req *r = list;
            list = r->next;
            finish(h, r, 0, 1);
        }
    }
}

void as_http_free(as_http *h) {
    if (!h)
        return;
    as_http_cancel_all(h);
    for (int i = 0; i < h->nspare; i++)
        as_curl.curl_easy_cleanup(h->spare[i]);
    /* The multi handle closes its wakeup pair: not when the program closed it and the
     * numbers are its files now (the handle is then left as it is). */
    if (unpark_wakeup(h))
        as_curl.curl_multi_cleanup(h->multi);
    else
        as_debug("http: the program closed the client's descriptors; the client is left open");
    as_curl.curl_slist_free_all(h->headers);
    free(h->ca_bundle);
    free(h);
}
