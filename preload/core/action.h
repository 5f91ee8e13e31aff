/* action.h - the internal action: what every producer hands the exporter and every sink
 * receives, plus validation of public agentsight_action values into it. */
#ifndef AS_ACTION_H
#define AS_ACTION_H

#include <stddef.h>
#include <stdint.h>

#include "agentsight.h"
#include "jsonw.h"

/* A normalised action. Strings are borrowed (valid for the duration of the call they are
 * passed to); JSON members hold object text. Times are Unix ns. */
typedef struct as_action {
    const char *action_name;
    int64_t started_ns;
    int64_t ended_ns;
    int64_t duration_ms;
    const char *tools_used;      /* JSON object text or NULL */
    const char *response;        /* text or NULL */
    const char *error_msg;       /* text or NULL */
    const char *conversation_id; /* never NULL once normalised */
    const char *metadata;        /* JSON object text or NULL */
    int64_t timestamp_ns;        /* when it was tracked */
    const char *event_id;        /* stable identity (32 hex), or NULL: sinks then make one */
} as_action;

/* Validates a public action and fills its defaults (DESIGN/agentsight.h rules).
 * now_ns is the tracking time; default_conv is used when action->conversation_id is NULL.
 * On success returns 0 and *out borrows the strings of action (times normalised).
 * On failure returns -1 and writes "field: what is wrong" into msg (cap bytes). */
int as_action_validate(const agentsight_action *action, int64_t now_ns, const char *default_conv,
                       as_action *out, char *msg, size_t cap);

/* Appends one JSONL line (with the trailing '\n') for a: keys action_name, started_at,
 * ended_at, duration_ms, tools_used, response, error_msg, conversation_id, metadata,
 * timestamp, in that order, then event_id when the action has one; absent optional
 * members are written as null; tools_used and metadata are embedded as JSON objects
 * (their text is trusted to be valid JSON). */
void as_action_to_jsonl(const as_action *a, as_buf *b);

/* Serialises a (strings copied) into a flat blob the pipeline can carry, and back.
 * as_action_pack_size() gives the blob size; as_action_unpack() makes *out borrow the
 * blob. The blob carries a checksum (CRC-32C): as_action_unpack() returns
 * AS_ACTION_DAMAGED for one that does not match (a record damaged in its ring: counted
 * and skipped, never shipped), -1 for a blob that is short or not well formed. */
#define AS_ACTION_DAMAGED (-2) /* = AS_REC_DAMAGED (record.h) */
/* Writes the checksum of the len bytes at blob into it (as_action_pack does; tests and
 * fuzzers seal blobs they made up, so that what follows the checksum check is reached).
 * A blob shorter than its header is left alone. */
void as_action_blob_seal(void *blob, size_t len);
size_t as_action_pack_size(const as_action *a);
void as_action_pack(const as_action *a, void *blob);
int as_action_unpack(const void *blob, size_t len, as_action *out);

#endif
