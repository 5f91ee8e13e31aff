/* record.h - the records the interposer writes into a thread's ring, and their decoding
 * into actions: one module, used by the live exporter and by the recovery of a dead
 * process's ring file, so a recovered action is the action that would have been
 * delivered. The hook layer writes records (x86_64/thunk.S, thunk.c); it describes each
 * target once (as_rec_desc: names, value types, error rule), which the exporter reads
 * from memory and recovery from the .targets file beside the rings (as_rec_desc_format
 * and as_rec_desc_parse: one line of text with a checksum).
 *
 * An AS_MSG_CALL record: struct as_callrec (64 bytes), then ext bytes of capture items,
 * each an as_cap_item header (length, type tag, parameter index) then its bytes padded
 * to 8. An AS_MSG_SUMMARY record: struct as_sum (ring.h). Every record lies in a ring
 * record whose header gives its length and kind and a tag of its position (ring.h). */
#ifndef AS_RECORD_H
#define AS_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "action.h"
#include "jsonw.h"
#include "ring.h"

enum as_call_flags {
    AS_CALL_RETURNED = 1,     /* t1 is the return; rax/rdx/xmm0 hold the result */
    AS_CALL_NOT_RETURNED = 2, /* the frame was dropped (longjmp, exception) at t1 */
    AS_CALL_ENTRY_ONLY = 4,   /* only the entry was seen (entry.c under a CET shadow stack) */
    AS_CALL_EXCEPTION = 8,    /* with NOT_RETURNED: left by an exception or forced unwind */
    AS_CALL_ENDED = 16,       /* with NOT_RETURNED: still running when the process exited
                                 or replaced its image (exec) */
};

/* 64 bytes, no pointers into the caller: everything the exporter needs later. A typed
 * call carries ext more bytes right behind it: its capture items. sum makes a record
 * damaged in memory or on disk (a flipped bit of a ring file) known to the decoder, which
 * counts and skips it: the CRC-32C of the record and its items (as_rec_call_sum). It took
 * the upper halves of id and flags, which no record used (ids are below AS_MAX_TARGETS,
 * 4096; five flags). */
typedef struct as_callrec {
    uint16_t id;    /* target id */
    uint16_t flags; /* enum as_call_flags */
    uint32_t sum;   /* as_rec_call_sum of the record and its items */
    int32_t tid;
    int32_t errno_in;  /* the caller's errno (errno is 0 while the call runs) */
    int32_t errno_out; /* errno the call set at its return; 0: it set none */
    uint32_t ext;      /* bytes of capture items after the record (0: none) */
    uint64_t t0, t1;   /* raw clock at entry and at return (or at the drop) */
    uint64_t rax, rdx; /* integer return registers */
    uint64_t xmm0;     /* low 64 bits of xmm0 (double / float return) */
} as_callrec;

enum as_cap_tag {
    AS_CAP_VAL = 1, /* raw bytes of a value: 8 (scalars; float in the low 4), 16 (long
                       double, register aggregates) or the aggregate's size */
    AS_CAP_STR,     /* a string's bytes, no NUL; flags AS_CAP_TRUNC when cut */
    AS_CAP_NULL,    /* a NULL string pointer (no bytes) */
    AS_CAP_BAD,     /* an unreadable pointer: its 8-byte address */
    AS_CAP_SKIP,    /* not captured: an aggregate of unknown size, or what follows it */
};

#define AS_CAP_TRUNC 1 /* item flag: the string was cut at max_string or at unreadable memory */
#define AS_CAP_RET 255 /* item index of the return value */

/* One item: this header, then len bytes, padded to 8. Items of parameters come in
 * parameter order (index = parameter number from 0), the return value's last. */
typedef struct as_cap_item {
    uint32_t len;
    uint8_t tag;   /* enum as_cap_tag */
    uint8_t index; /* parameter number, or AS_CAP_RET */
    uint8_t flags;
    uint8_t pad;
} as_cap_item;

/* Value types, as the prototype gives them (the hook's as_type kinds, same numbers). */
enum as_rec_kind {
    AS_RK_VOID = 0,
    AS_RK_SINT,
    AS_RK_UINT,
    AS_RK_BOOL,
    AS_RK_FLOAT,
    AS_RK_STR,
    AS_RK_PTR,
    AS_RK_AGG,
};

/* error_if rules (the config's, same numbers). */
enum as_rec_errif {
    AS_REC_ERRIF_NONE = 0,
    AS_REC_ERRIF_NULL,
    AS_REC_ERRIF_NEGATIVE,
    AS_REC_ERRIF_ZERO,
    AS_REC_ERRIF_NONZERO,
    AS_REC_ERRIF_FALSE,
    AS_REC_ERRIF_ERRNO,
};

#define AS_REC_MAX_PARAMS 16
#define AS_REC_NAME_LEN 32

typedef struct as_rec_type {
    uint8_t kind; /* enum as_rec_kind */
    uint8_t size; /* bytes */
} as_rec_type;

/* What a target id stands for: everything a call record needs to become its action. */
typedef struct as_rec_desc {
    const char *action_name, *symbol, *library; /* action_name required */
    const char *display;                        /* display=, or NULL */
    int error_if;                               /* enum as_rec_errif */
    int hidden;   /* capture off for it: no parameters, no response text */
    uint32_t via; /* how it is hooked: 1 got, 2 dlsym, 4 entry (bits); 0 unknown */
    int typed;    /* it has a prototype: ret, nparams, params and names are valid */
    as_rec_type ret;
    int nparams;
    as_rec_type params[AS_REC_MAX_PARAMS];
    char names[AS_REC_MAX_PARAMS][AS_REC_NAME_LEN]; /* "" when unnamed: "argN" */
} as_rec_desc;

/* Raw clock -> Unix ns, for the process that wrote the record. Returns 0, or -1 when the
 * value cannot be converted (overflow). */
typedef int (*as_rec_clock_fn)(uint64_t raw, int64_t *unix_ns, void *ctx);

/* The process that wrote a record. */
typedef struct as_rec_ctx {
    int pid;
    const char *conversation_id;
    as_rec_clock_fn clock;
    void *clock_ctx;
    int recovered; /* metadata gets "agentsight_recovered":true */
} as_rec_ctx;

/* The untyped integer rule (config/README.md): rax as a signed 64-bit integer, except
 * when its upper 32 bits are all zero: then the lower 32 bits read as a signed 32-bit int
 * (compilers zero-extend a 32-bit result, so an int -1 reads -1). */
int64_t as_untyped_int(uint64_t rax);

/* 1 when rule error_if of a target returning type ret (typed 0: untyped) says a call that
 * returned rax/xmm0 with errno_out (what the call set, 0 for none) failed. */
int as_rec_failed(int error_if, int typed, as_rec_type ret, uint64_t rax, uint64_t xmm0,
                  int errno_out);

/* What a decoder returns for a record whose checksum does not match: it is counted as a
 * damaged record and skipped, never shipped (the records after it are decoded as usual). */
#define AS_REC_DAMAGED (-2)

/* The checksum of a call record: CRC-32C (Castagnoli; initial value 0xffffffff, no final
 * inversion) of the n bytes at rec (sizeof(as_callrec) + its ext, a multiple of 8) taken
 * as little-endian 64-bit words: the record's words in order but t1 (its sum field read as
 * 0), then the items, then t1 (crc32c.h). thunk.S computes the same with the SSE 4.2 crc32
 * instruction; t1 comes last because it alone waits for the exit's timestamp. */
uint32_t as_rec_call_sum(const void *rec, size_t n);

/* Writers: sets rec->sum for the record and its rec->ext bytes of items (already
 * written). */
void as_rec_call_seal(as_callrec *rec);

/* 1 when the AS_MSG_CALL payload of len bytes is a whole record (len >= 64, ext within
 * len) whose sum matches; 0 when it is damaged. */
int as_rec_call_intact(const void *payload, size_t len);

/* Fills *out from the AS_MSG_CALL record at payload (len bytes): action_name, times,
 * tools_used {function, library, parameters}, response (typed: as its type; untyped: the
 * integer rule), error_msg (error rule, or how it did not return), metadata {pid, tid,
 * duration_ns, hook, display_name}. Strings go into sb (appended). Returns 0,
 * AS_REC_DAMAGED when its checksum does not match (as_rec_call_intact), or -1 for a short
 * or malformed record, times that do not convert, or no memory. */
int as_rec_call(const void *payload, size_t len, const as_rec_desc *d, const as_rec_ctx *c,
                as_action *out, as_buf *sb);

/* Fills *out from summary s (ring.h): action_name and tools_used (function, library),
 * started_at/ended_at from the first entry and the last return, duration_ms the total of
 * the calls, error_msg "E of N calls failed" when E > 0, response null, and metadata
 * {"summary":true,"calls":N,"errors":E,"pid":P,"tid":T,
 * "duration_ns":{"total":..,"min":..,"max":..},"histogram_log2_ns":{"K":n,...}
 * [,"display_name":..]}. Returns 0, or -1 for a summary that is not plausible. */
int as_rec_summary(const as_sum *s, const as_rec_desc *d, const as_rec_ctx *c, as_action *out,
                   as_buf *sb);

/* Appends the text form of d's rule, flags and types (no names: those are separate
 * fields of the .targets line) to b: "v1;e=E;h=H;w=VIA;t=T;r=KS;p=KS:name,KS:name" (K
 * kind digit, S size). Never contains a tab or a newline. */
void as_rec_desc_format(const as_rec_desc *d, as_buf *b);

/* Parses that text into d's rule, flags and types (names fields untouched). Returns 0,
 * or -1 when it is not a valid descriptor (d is then untyped, no rule). */
int as_rec_desc_parse(const char *text, as_rec_desc *d);

/* The checksum of a .targets line's text: FNV-1a 32-bit of n bytes. */
uint32_t as_rec_checksum(const char *s, size_t n);

#endif
