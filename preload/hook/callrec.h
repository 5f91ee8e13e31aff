/* callrec.h - the raw record the thunk writes for each tracked call (AS_MSG_CALL), and
 * its decoding into an action on the exporter thread. */
#ifndef AS_CALLREC_H
#define AS_CALLREC_H

#include <stddef.h>
#include <stdint.h>

#include "core/action.h"
#include "core/jsonw.h"

enum as_call_flags {
    AS_CALL_RETURNED = 1,     /* t1 is the return; rax/rdx/xmm0 hold the result */
    AS_CALL_NOT_RETURNED = 2, /* the frame was dropped (longjmp, exception) at t1 */
    AS_CALL_ENTRY_ONLY = 4,   /* only the entry was seen (entry.c under a CET shadow stack) */
    AS_CALL_EXCEPTION = 8,    /* with NOT_RETURNED: left by an exception or forced unwind */
    AS_CALL_ENDED = 16,       /* with NOT_RETURNED: still running when the process exited
                                 or replaced its image (exec) */
};

/* 64 bytes, no pointers into the caller: everything the exporter needs later. A typed
 * call carries ext more bytes right behind it: the capture items of capture.h. */
typedef struct as_callrec {
    uint32_t id;    /* target id (target.h) */
    uint32_t flags; /* enum as_call_flags */
    int32_t tid;
    int32_t errno_in;  /* the caller's errno (errno is 0 while the call runs) */
    int32_t errno_out; /* errno the call set at its return; 0: it set none */
    uint32_t ext;      /* bytes of capture items after the record (0: none) */
    uint64_t t0, t1;   /* as_clock_raw() at entry and at return (or at the drop) */
    uint64_t rax, rdx; /* integer return registers */
    uint64_t xmm0;     /* low 64 bits of xmm0 (double / float return) */
} as_callrec;

/* The untyped integer rule (config/README.md): rax as a signed 64-bit integer, except
 * when its upper 32 bits are all zero: then the lower 32 bits read as a signed 32-bit int
 * (compilers zero-extend a 32-bit result, so an int -1 reads -1). */
int64_t as_untyped_int(uint64_t rax);

/* 1 when the error_if rule of target id says a call that returned rax/xmm0 with errno
 * errno_in before and errno_out after failed. Any thread; no allocation. */
int as_callrec_failed(uint32_t id, uint64_t rax, uint64_t xmm0, int errno_in, int errno_out);

/* Decoder registered for AS_MSG_CALL: fills *out from a record, holding its strings in
 * scratch. Returns 0, or -1 for a short payload, an unknown target id or no memory (out
 * is then unspecified). Exporter thread only. */
int as_callrec_decode(const void *payload, size_t len, as_action *out, as_buf *scratch);

/* Registers the decoder with the pipeline. Idempotent; also run by a constructor. */
void as_callrec_register(void);

#endif
