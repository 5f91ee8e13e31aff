/* callrec.h - the interposer's side of its call records (AS_MSG_CALL, AS_MSG_SUMMARY):
 * the record format and its decoding live in core/record.h; this layer describes each
 * target to that decoder (as_rec_desc) and registers it with the pipeline. */
#ifndef AS_CALLREC_H
#define AS_CALLREC_H

#include <stddef.h>
#include <stdint.h>

#include "core/action.h"
#include "core/jsonw.h"
#include "core/record.h"

/* 1 when the error_if rule of target id says a call that returned rax/xmm0, with
 * errno_out set by the call (0: none), failed. Any thread; no allocation. */
int as_callrec_failed(uint32_t id, uint64_t rax, uint64_t xmm0, int errno_in, int errno_out);

/* Fills *d from target id as it stands now (names, display, error rule, capture, how it
 * is hooked, prototype). Returns 0, or -1 for an unknown id. Any thread. */
int as_callrec_describe(uint32_t id, as_rec_desc *d);

/* Decoder registered for AS_MSG_CALL: fills *out from a record, holding its strings in
 * scratch. Returns 0, or -1 for a short payload, an unknown target id or no memory (out
 * is then unspecified). Exporter thread only. */
int as_callrec_decode(const void *payload, size_t len, as_action *out, as_buf *scratch);

/* Registers the decoders with the pipeline. Idempotent; also run by a constructor. */
void as_callrec_register(void);

#endif
