/* agentsight.h - the public C API of agentsight: track AI-agent actions by hand.
 *
 * The same library is loaded by the LD_PRELOAD interposer (libagentsight-preload.so),
 * which calls into the same pipeline for every wrapped function; programs that link
 * libagentsight directly use the functions below.
 *
 * Threads: every function may be called from any thread, concurrently.
 * Blocking: agentsight_track_action() never performs I/O; it copies the action into a
 * per-thread queue drained by one background exporter thread. It waits only when that
 * queue is full and the queue policy is AGENTSIGHT_QUEUE_WAIT (bounded, see below).
 * Strings passed in are always copied; the caller keeps ownership and may free or reuse
 * them as soon as the call returns.
 */
#ifndef AGENTSIGHT_H
#define AGENTSIGHT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define AGENTSIGHT_API __attribute__((visibility("default")))
#else
#define AGENTSIGHT_API
#endif

#define AGENTSIGHT_VERSION "0.1.0"

/* Longest accepted action_name, in bytes (not counting the terminating NUL). */
#define AGENTSIGHT_MAX_NAME 256

/*
 * One action, with exactly the fields of AgentSight's track_action().
 *
 * "Not given" is said with NULL for every string field and with 0 for duration_ms, so a
 * zero-initialised struct with only action_name set is a valid action:
 *
 *   agentsight_action a = {.action_name = "weather_lookup", .response = "Sunny"};
 *
 * action_name      required; 1..256 bytes of UTF-8.
 * started_at       ISO-8601 timestamp ("2024-01-15T10:30:00Z", "2024-01-15T10:30:00.050Z",
 * ended_at         "2024-01-15T11:30:00+01:00"); a time without a zone is read as UTC.
 * duration_ms      >= 0; 0 means not given. Must agree with started_at/ended_at within 1 ms
 *                  when all three are given.
 * tools_used       JSON object text, e.g. "{\"function\":\"multiply\"}", or NULL.
 * response         free text (UTF-8) or NULL.
 * error_msg        free text (UTF-8) or NULL; set when the action failed.
 * conversation_id  free text or NULL: then AGENTSIGHT_CONVERSATION_ID, else an id
 *                  generated once per process ("conv_" + 12 hex digits).
 * metadata         JSON object text or NULL.
 *
 * Defaults filled in when fields are missing:
 *   both timestamps given           duration_ms computed from them
 *   started_at and duration_ms      ended_at = started_at + duration_ms
 *   ended_at and duration_ms        started_at = ended_at - duration_ms
 *   only started_at                 ended_at = time of tracking
 *   only duration_ms, or nothing    ended_at = time of tracking, started_at = ended_at -
 *                                   duration_ms
 */
typedef struct agentsight_action {
    const char *action_name;
    const char *started_at;
    const char *ended_at;
    int64_t duration_ms;
    const char *tools_used;
    const char *response;
    const char *error_msg;
    const char *conversation_id;
    const char *metadata;
} agentsight_action;

/*
 * The return dictionary of track_action(), filled by agentsight_track_action().
 * All members are NUL-terminated strings owned by the struct (no pointers to free).
 *   status           "success" or "error"
 *   conversation_id  the given or generated conversation id
 *   timestamp        ISO-8601 UTC time of tracking, with microseconds
 *   action_name      the action's name (truncated copy when the name was refused as too long)
 *   message          "Action tracked successfully", or why the action was refused, naming
 *                    the field ("started_at: not an ISO-8601 timestamp")
 */
typedef struct agentsight_result {
    char status[8];
    char conversation_id[AGENTSIGHT_MAX_NAME + 1];
    char timestamp[40];
    char action_name[AGENTSIGHT_MAX_NAME + 1];
    char message[256];
} agentsight_result;

/* What a producer does when its queue is full. */
typedef enum agentsight_queue_policy {
    AGENTSIGHT_QUEUE_DEFAULT = 0, /* WAIT for the API, DROP for the interposer */
    AGENTSIGHT_QUEUE_WAIT = 1,    /* wait up to queue_wait_ms, then drop and count */
    AGENTSIGHT_QUEUE_DROP = 2,    /* drop at once and count */
} agentsight_queue_policy;

/*
 * Options for agentsight_init(). Zero or NULL in any member means "use the environment,
 * else the default" (given below with the environment variable that sets it).
 */
typedef struct agentsight_options {
    const char *output;                   /* AGENTSIGHT_OUTPUT; "file:agentsight-actions.jsonl" */
    const char *conversation_id;          /* AGENTSIGHT_CONVERSATION_ID; generated per process */
    const char *api_key;                  /* AGENTSIGHT_API_KEY */
    const char *api_endpoint;             /* AGENTSIGHT_API_ENDPOINT; "https://api.agentsight.io" */
    int flush_timeout_ms;                 /* AGENTSIGHT_FLUSH_TIMEOUT_MS; 2000: bound at exit */
    agentsight_queue_policy queue_policy; /* AGENTSIGHT_QUEUE_POLICY=wait|drop */
    int queue_wait_ms;                    /* AGENTSIGHT_QUEUE_WAIT_MS; 1000 */
    size_t queue_bytes;                   /* AGENTSIGHT_QUEUE_BYTES; 1 MiB per thread */
} agentsight_options;

/*
 * agentsight_init - configure the library before the first action.
 *
 * Optional: the first agentsight_track_action() initialises from the environment.
 * opts may be NULL. The strings in opts are copied.
 * Returns 0; -1 when already initialised (the call changes nothing) or when an option
 * is invalid (an unknown sink URI: a message is printed on stderr).
 */
AGENTSIGHT_API int agentsight_init(const agentsight_options *opts);

/*
 * agentsight_track_action - validate an action, fill its defaults and queue it.
 *
 * result may be NULL. Returns 0 when the action was queued (result->status "success"),
 * -1 when it was refused (status "error", message names the field) or dropped because
 * the queue stayed full. Never performs I/O; see the queue policy for when it waits.
 *
 * Size limit: an action takes at most half of one thread's queue (queue_bytes, 1 MiB by
 * default: about 512 KiB of action_name, tools_used, response, error_msg, metadata and
 * ids together); a larger one is refused ("action: larger than N bytes") and
 * is not counted as dropped.
 *
 * Not async-signal-safe: a call from a signal handler that interrupted another call on
 * the same thread is dropped (counted in agentsight_dropped(), returns -1, message
 * "nested call (signal handler): action dropped"); a start that fails is tried again
 * at most every few seconds and is logged once.
 */
AGENTSIGHT_API int agentsight_track_action(const agentsight_action *action,
                                           agentsight_result *result);

/*
 * agentsight_flush - deliver every action queued before the call to the sinks.
 *
 * Blocks up to timeout_ms (a negative value waits for the default flush timeout).
 * Returns 0 when everything was delivered, -1 on timeout.
 */
AGENTSIGHT_API int agentsight_flush(int timeout_ms);

/*
 * agentsight_shutdown - flush (bounded by the flush timeout), stop the exporter, close
 * the sinks. Called automatically at exit; calling it twice is harmless. A later
 * agentsight_track_action() starts the library again.
 */
AGENTSIGHT_API void agentsight_shutdown(void);

/*
 * agentsight_dropped - count the actions dropped because a queue was full.
 *
 * Returns how many actions were dropped since the process started. This function can't
 * fail.
 */
AGENTSIGHT_API uint64_t agentsight_dropped(void);

#ifdef __cplusplus
}
#endif

#endif /* AGENTSIGHT_H */
