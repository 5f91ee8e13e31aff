/* api.c - the public C API (include/agentsight.h): lazy thread-safe start from the
 * environment, validation into the pipeline, the result dictionary, and the decoder of
 * AS_MSG_ACTION messages (a packed as_action) on the exporter side. */
#include "core/redact.h"
#include "core/keptenv.h"
#include "agentsight.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "action.h"
#include "clock.h"
#include "log.h"
#include "pipeline.h"
#include "settings.h"

#define RETRY_START_NS 5000000000LL /* a failed start is tried again after 5 s */

static pthread_mutex_t api_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int api_ready;
static int settings_loaded;              /* api_lock: as_cfg is loaded once per process */
static _Atomic int64_t start_failed_ns;  /* monotonic time of the last failed start, 0 none */
static _Atomic int start_failure_logged; /* the failure was told once */
/* Set while this thread is inside agentsight_track_action(): a call from a signal
 * handler that interrupted it would write at the same open reservation of the ring. */
static __thread volatile sig_atomic_t t_tracking;

/* Exporter side: the payload is as_action_pack's blob; the action borrows it. Returns 0,
 * or -1 for a malformed blob. */
static int decode_action(const void *payload, size_t len, as_action *out, as_buf *scratch) {
    (void)scratch;
    return as_action_unpack(payload, len, out);
}

/* Loads settings (environment, then opts), registers the decoder and starts the pipeline.
 * Caller holds api_lock. Returns 0, or -1 (logged) with the library left unstarted. */
static int start_locked(const agentsight_options *opts) {
    as_clock_init();
    /* Settings are loaded once: other threads read as_cfg while the library restarts
     * after a shutdown, so it is never rewritten under them. When the interposer runs,
     * it loaded them (its config file) before us. */
    if (!settings_loaded && !as_pipe_running())
        as_settings_load(AGENTSIGHT_QUEUE_WAIT);
    settings_loaded = 1;
    if (opts && as_settings_apply(opts) != 0)
        return -1;
    as_pipe_register(AS_MSG_ACTION, decode_action);
    if (as_pipe_start() != 0) {
        if (!atomic_exchange(&start_failure_logged, 1)) {
            char shown[512];
            as_redact_uris(as_cfg.output, shown, sizeof shown);
            as_alert_error("no sink could be opened for output '%s' (actions are refused; tried "
                           "again every few seconds)",
                           shown);
        }
        int64_t now = as_mono_ns();
        atomic_store(&start_failed_ns, now ? now : 1);
        return -1;
    }
    if (atomic_exchange(&start_failure_logged, 0))
        as_info("started: output '%s' opened", as_cfg.output);
    atomic_store(&start_failed_ns, 0);
    atomic_store_explicit(&api_ready, 1, memory_order_release);
    return 0;
}

/* Returns 0 when the library is started (now or before), -1 when it cannot start: a
 * failed start is not tried again (no I/O, no message) for RETRY_START_NS. */
static int ensure_started(void) {
    if (atomic_load_explicit(&api_ready, memory_order_acquire))
        return 0;
    int64_t failed = atomic_load(&start_failed_ns);
    if (failed && as_mono_ns() - failed < RETRY_START_NS)
        return -1;
    pthread_mutex_lock(&api_lock);
    int rc = atomic_load(&api_ready) ? 0 : start_locked(NULL);
    pthread_mutex_unlock(&api_lock);
    return rc;
}

int agentsight_init(const agentsight_options *opts) {
    int saved = as_in_agentsight;
    as_in_agentsight = 1;
    pthread_mutex_lock(&api_lock);
    atomic_store(&start_failed_ns, 0); /* an explicit init always tries */
    int rc = atomic_load(&api_ready) ? -1 : start_locked(opts);
    pthread_mutex_unlock(&api_lock);
    as_in_agentsight = saved;
    return rc;
}

static void copy_str(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "");
}

/* Fills the result dictionary (result may be NULL). */
static void fill_result(agentsight_result *r, int ok, const char *conv, int64_t now_ns,
                        const char *name, const char *message) {
    if (!r)
        return;
    copy_str(r->status, sizeof(r->status), ok ? "success" : "error");
    copy_str(r->conversation_id, sizeof(r->conversation_id), conv);
    as_iso_format(now_ns, r->timestamp);
    /* A name refused as too long is cut on a UTF-8 character boundary. */
    size_t n = name ? strnlen(name, AGENTSIGHT_MAX_NAME) : 0;
    if (name && name[n] != '\0')
        while (n > 0 && ((unsigned char)name[n] & 0xc0) == 0x80)
            n--;
    memcpy(r->action_name, name ? name : "", n);
    r->action_name[n] = '\0';
    copy_str(r->message, sizeof(r->message), message);
}

/* 1 when AGENTSIGHT_DISABLE=1 (the kill switch): nothing is queued or started. Read from
 * the environment on the first call only: the process's setting, as the interposer reads
 * it at load (no environ scan per call, no race with a program's setenv). */
static int disabled(void) {
    static int cached = -1; /* atomic: -1 not read yet, else the answer */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (__builtin_expect(v < 0, 0)) {
        const char *e = as_keptenv_get("AGENTSIGHT_DISABLE");
        v = e && strcmp(e, "1") == 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}

/* The largest packed action a ring of the configured size takes (half the ring). */
static size_t max_action_bytes(void) {
    uint64_t ring = as_ring_create_size(as_cfg.queue_bytes ? as_cfg.queue_bytes : (1u << 20));
    return (size_t)(ring / 2 - AS_RING_HDR);
}

/* The body of agentsight_track_action() once the kill switch and re-entrancy are
 * checked. Returns 0 (queued) or -1 (refused or dropped, result says why). */
static int track(const agentsight_action *action, agentsight_result *result);

int agentsight_track_action(const agentsight_action *action, agentsight_result *result) {
    if (t_tracking) {
        /* A signal handler interrupted a call on this thread: its reservation is open,
         * so this one cannot be written. Dropped and counted; no lock is taken. */
        as_pipe_count_drop();
        if (result) {
            result->status[0] = '\0';
            memcpy(result->status, "error", 6);
            result->conversation_id[0] = result->timestamp[0] = result->action_name[0] = '\0';
            static const char m[] = "nested call (signal handler): action dropped";
            memcpy(result->message, m, sizeof m);
        }
        return -1;
    }
    t_tracking = 1;
    atomic_signal_fence(memory_order_seq_cst);
    int rc = track(action, result);
    atomic_signal_fence(memory_order_seq_cst);
    t_tracking = 0;
    return rc;
}

static int track(const agentsight_action *action, agentsight_result *result) {
    if (disabled()) {
        const char *given = action ? action->conversation_id : NULL;
        const char *env = as_keptenv_get("AGENTSIGHT_CONVERSATION_ID");
        fill_result(result, 1, given && given[0] ? given : (env ? env : ""), as_clock_unix_ns(),
                    action ? action->action_name : NULL,
                    "AgentSight disabled (AGENTSIGHT_DISABLE=1)");
        return 0;
    }
    int saved = as_in_agentsight;
    as_in_agentsight = 1;
    int rc = -1;
    int64_t now = as_clock_unix_ns();
    const char *name = action ? action->action_name : NULL;
    char msg[256];
    if (ensure_started() != 0) {
        fill_result(result, 0, "", now, name, "agentsight could not start (see stderr)");
        goto out;
    }
    const char *conv = as_settings_conversation_id();
    as_action a;
    if (!action) {
        fill_result(result, 0, conv, now, NULL, "action: missing (NULL)");
        goto out;
    }
    if (as_action_validate(action, now, conv, &a, msg, sizeof(msg)) != 0) {
        const char *c =
            action->conversation_id && action->conversation_id[0] ? action->conversation_id : conv;
        fill_result(result, 0, c, now, name, msg);
        goto out;
    }
    size_t size = as_action_pack_size(&a);
    if (size > max_action_bytes()) {
        /* Never fits in a ring: a refusal of this action, not a full queue. */
        snprintf(msg, sizeof msg, "action: larger than %zu bytes (half of AGENTSIGHT_QUEUE_BYTES)",
                 max_action_bytes());
        fill_result(result, 0, a.conversation_id, now, name, msg);
        goto out;
    }
    void *p = as_pipe_reserve(AS_MSG_ACTION, size, 1);
    if (!p) {
        fill_result(result, 0, a.conversation_id, now, name,
                    "queue full: action dropped (see agentsight_dropped())");
        goto out;
    }
    as_action_pack(&a, p);
    as_pipe_commit(p);
    as_pipe_nudge_if_busy();
    fill_result(result, 1, a.conversation_id, now, name, "Action tracked successfully");
    rc = 0;
out:
    as_in_agentsight = saved;
    return rc;
}

int agentsight_flush(int timeout_ms) {
    if (!atomic_load(&api_ready) && !as_pipe_running())
        return 0;
    return as_pipe_flush(timeout_ms);
}

void agentsight_shutdown(void) {
    int saved = as_in_agentsight;
    as_in_agentsight = 1;
    pthread_mutex_lock(&api_lock);
    as_pipe_shutdown();
    atomic_store(&api_ready, 0);
    pthread_mutex_unlock(&api_lock);
    as_in_agentsight = saved;
}

uint64_t agentsight_dropped(void) {
    return as_pipe_dropped();
}
