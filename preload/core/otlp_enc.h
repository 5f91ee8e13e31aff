/* otlp_enc.h - one OTLP trace export (ExportTraceServiceRequest) built span by span, encoded
 * as protobuf (http/protobuf) or JSON (http/json) from the same description, so every
 * producer of spans (tool calls, later model calls) fills one struct and never writes
 * wire formats itself.
 *
 * Threads: an as_otlp_enc is used by one thread at a time. Nothing here blocks. */
#ifndef AS_OTLP_ENC_H
#define AS_OTLP_ENC_H

#include <stddef.h>
#include <stdint.h>

#include "core/jsonw.h"

enum { AS_OTLP_STR, AS_OTLP_INT, AS_OTLP_BOOL, AS_OTLP_DOUBLE, AS_OTLP_JSON };

/* One attribute. s is borrowed. AS_OTLP_JSON: s is JSON text, sent as a structured
 * AnyValue (objects as kvlistValue, arrays as arrayValue, numbers as int or double);
 * text that does not parse is sent as a string. */
typedef struct as_otlp_attr {
    const char *key;
    int type;
    const char *s;
    int64_t i; /* INT and BOOL */
    double d;
} as_otlp_attr;

#define AS_OTLP_MAX_ATTRS 24

/* Span kinds as OTLP numbers them. */
enum { AS_OTLP_INTERNAL = 1, AS_OTLP_SERVER = 2, AS_OTLP_CLIENT = 3 };

typedef struct as_otlp_span {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_id[8]; /* all zero: a root span */
    const char *name;
    int kind;
    int64_t start_ns, end_ns; /* Unix ns */
    as_otlp_attr attrs[AS_OTLP_MAX_ATTRS];
    int nattrs;
    int status_code; /* 0 unset, 1 ok, 2 error */
    const char *status_msg;
} as_otlp_span;

/* Appends an attribute (ignored past AS_OTLP_MAX_ATTRS or when s is NULL for strings).
 * This function can't fail. */
void as_otlp_attr_str(as_otlp_span *sp, const char *key, const char *s);
void as_otlp_attr_int(as_otlp_span *sp, const char *key, int64_t v);
void as_otlp_attr_json(as_otlp_span *sp, const char *key, const char *json);

typedef struct as_otlp_enc {
    as_buf *out;
    int protobuf;
    int nspans;
    size_t mark[2]; /* protobuf: where the open ResourceSpans / ScopeSpans bodies begin */
} as_otlp_enc;

/* Starts a request in out (appended to) with one resource (attrs[0..n)) and one scope. */
void as_otlp_begin(as_otlp_enc *e, as_buf *out, int protobuf, const as_otlp_attr *res, int nres,
                   const char *scope, const char *scope_version);
void as_otlp_add(as_otlp_enc *e, const as_otlp_span *sp);
/* Closes the request. out->oom tells whether any growth failed. */
void as_otlp_end(as_otlp_enc *e);

/* The protobuf wire primitives (exposed for tests). */
void as_pb_varint(as_buf *b, uint64_t v);
void as_pb_tag(as_buf *b, unsigned field, unsigned wire);
void as_pb_bytes(as_buf *b, unsigned field, const void *p, size_t n);
/* Opens a length-delimited field: returns the offset its body starts at (to pass to
 * as_pb_close, which writes the length in front of the body). */
size_t as_pb_open(as_buf *b, unsigned field);
void as_pb_close(as_buf *b, size_t body);

#endif
