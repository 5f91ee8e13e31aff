/* recdecode.h - turns the records the hook layer writes into a ring (summaries of calls
 * that found the ring full; see ring.h) into actions, the same way for the live exporter
 * and for the recovery of a dead process's ring file: the record carries what the action
 * needs, the caller supplies the names and the clock. */
#ifndef AS_RECDECODE_H
#define AS_RECDECODE_H

#include <stddef.h>
#include <stdint.h>

#include "action.h"
#include "jsonw.h"
#include "ring.h"

/* What a record's target id stands for. action_name is required; the rest may be NULL. */
typedef struct as_rec_names {
    const char *action_name, *symbol, *library, *display;
} as_rec_names;

/* Raw clock -> Unix ns, for the process that wrote the record. Returns 0, or -1 when the
 * value cannot be converted (overflow). */
typedef int (*as_rec_clock_fn)(uint64_t raw, int64_t *unix_ns, void *ctx);

/* Fills *out from summary record s: action_name and tools_used (function, library) from
 * nm, started_at/ended_at from the first entry and the last return, duration_ms the
 * total of the calls, error_msg "E of N calls failed" when E > 0, response null, and
 * metadata {"summary":true,"calls":N,"errors":E,"pid":P,"tid":T,
 * "duration_ns":{"total":..,"min":..,"max":..},"histogram_log2_ns":{"K":n,...}
 * [,"display_name":..][,"agentsight_recovered":true]}. Strings go into sb. Returns 0,
 * or -1 for a record that is not plausible (no calls, times reversed, no memory). */
int as_rec_summary(const as_sum *s, const as_rec_names *nm, int pid, const char *conversation_id,
                   as_rec_clock_fn clock, void *clock_ctx, int recovered, as_action *out,
                   as_buf *sb);

#endif
