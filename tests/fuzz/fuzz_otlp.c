/* fuzz_otlp.c - libFuzzer target for the OTLP encoders (otlp_enc.c): spans with hostile
 * names, status messages and attributes (strings of any bytes, JSON attribute text that
 * may not parse) encoded both ways. The JSON request must be valid UTF-8 JSON; the
 * protobuf request must be well-formed against the opentelemetry-proto schema the encoder
 * writes (checked by the small decoder below: every field known with its wire type,
 * lengths inside their message, strings valid UTF-8 as proto3 requires, ids of their
 * size), with as many spans and attributes as the JSON form.
 *
 * Input: NUL-separated fields: span name, status message ("" for none), scope name, then
 * key/value pairs of attributes; a key's first byte picks the value's type (mod 5: string,
 * int, bool, double, JSON). The first two attributes are also the resource's. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/jsonw.h"
#include "core/otlp_enc.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- a schema-driven protobuf reader ---- */
enum { M_REQ, M_RSPANS, M_RES, M_SSPANS, M_SCOPE, M_SPAN, M_STATUS, M_KV, M_ANY, M_LIST, M_NONE };
enum { K_MSG, K_STR, K_BYTES, K_VARINT, K_FIXED64 };

typedef struct field {
    int msg;
    unsigned num;
    int kind;
    int sub;       /* K_MSG: the message type */
    size_t nbytes; /* K_BYTES: the exact size, 0 any */
} field;

static const field schema[] = {
    {M_REQ, 1, K_MSG, M_RSPANS, 0},    {M_RSPANS, 1, K_MSG, M_RES, 0},
    {M_RSPANS, 2, K_MSG, M_SSPANS, 0}, {M_RES, 1, K_MSG, M_KV, 0},
    {M_SSPANS, 1, K_MSG, M_SCOPE, 0},  {M_SSPANS, 2, K_MSG, M_SPAN, 0},
    {M_SCOPE, 1, K_STR, 0, 0},         {M_SCOPE, 2, K_STR, 0, 0},
    {M_SPAN, 1, K_BYTES, 0, 16},       {M_SPAN, 2, K_BYTES, 0, 8},
    {M_SPAN, 4, K_BYTES, 0, 8},        {M_SPAN, 5, K_STR, 0, 0},
    {M_SPAN, 6, K_VARINT, 0, 0},       {M_SPAN, 7, K_FIXED64, 0, 0},
    {M_SPAN, 8, K_FIXED64, 0, 0},      {M_SPAN, 9, K_MSG, M_KV, 0},
    {M_SPAN, 15, K_MSG, M_STATUS, 0},  {M_STATUS, 2, K_STR, 0, 0},
    {M_STATUS, 3, K_VARINT, 0, 0},     {M_KV, 1, K_STR, 0, 0},
    {M_KV, 2, K_MSG, M_ANY, 0},        {M_ANY, 1, K_STR, 0, 0},
    {M_ANY, 2, K_VARINT, 0, 0},        {M_ANY, 3, K_VARINT, 0, 0},
    {M_ANY, 4, K_FIXED64, 0, 0},       {M_ANY, 5, K_MSG, M_LIST, 0},
    {M_ANY, 6, K_MSG, M_LIST, 0},      {M_LIST, 1, K_MSG, M_NONE, 0},
};

typedef struct pb_count {
    int spans, span_attrs;
} pb_count;

static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*p >= end)
            return -1;
        uint8_t c = *(*p)++;
        if (shift == 63 && c > 1)
            return -1;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Aborts unless [p, end) is a well-formed message of type msg. An ArrayValue and a
 * KeyValueList share field 1 but hold AnyValue or KeyValue: parent says which. */
static void pb_check(int msg, const uint8_t *p, const uint8_t *end, int parent, int depth,
                     pb_count *cnt) {
    if (depth > 80)
        abort();
    while (p < end) {
        uint64_t tag, v;
        if (varint(&p, end, &tag) != 0)
            abort();
        unsigned num = (unsigned)(tag >> 3), wt = (unsigned)(tag & 7);
        const field *f = NULL;
        for (size_t i = 0; i < sizeof schema / sizeof schema[0]; i++)
            if (schema[i].msg == msg && schema[i].num == num)
                f = &schema[i];
        if (!f) {
            fprintf(stderr, "protobuf: unknown field %u of message %d\n", num, msg);
            abort();
        }
        if (f->kind == K_VARINT) {
            if (wt != 0 || varint(&p, end, &v) != 0)
                abort();
        } else if (f->kind == K_FIXED64) {
            if (wt != 1 || end - p < 8)
                abort();
            p += 8;
        } else {
            if (wt != 2 || varint(&p, end, &v) != 0 || v > (uint64_t)(end - p))
                abort();
            const uint8_t *q = p;
            p += v;
            if (f->kind == K_STR && !as_utf8_valid((const char *)q, (size_t)v)) {
                fprintf(stderr, "protobuf: field %u of message %d is not UTF-8\n", num, msg);
                abort();
            }
            if (f->kind == K_BYTES && f->nbytes && v != f->nbytes)
                abort();
            if (f->kind == K_MSG) {
                int sub = f->sub;
                if (msg == M_LIST)
                    sub = parent == 6 ? M_KV : M_ANY;
                if (msg == M_SPAN && num == 9)
                    cnt->span_attrs++;
                if (msg == M_SSPANS && num == 2)
                    cnt->spans++;
                pb_check(sub, q, p, msg == M_ANY ? (int)num : 0, depth + 1, cnt);
            }
        }
    }
}

/* ---- the input ---- */
static const char *field_at(const char **f, int nf, int i) {
    return i < nf ? f[i] : "";
}

static void fill(as_otlp_span *sp, const char **f, int nf, uint8_t salt) {
    memset(sp, 0, sizeof *sp);
    for (int i = 0; i < 16; i++)
        sp->trace_id[i] = (uint8_t)(i + salt);
    for (int i = 0; i < 8; i++)
        sp->span_id[i] = (uint8_t)(i * 3 + salt);
    if (salt)
        sp->parent_id[0] = salt;
    sp->name = field_at(f, nf, 0);
    sp->kind = salt ? AS_OTLP_CLIENT : AS_OTLP_INTERNAL;
    sp->start_ns = (int64_t)1700000000000000000 + salt;
    sp->end_ns = sp->start_ns + 1000;
    const char *st = field_at(f, nf, 1);
    sp->status_msg = *st ? st : NULL;
    sp->status_code = *st ? 2 : salt & 1;
    for (int i = 3; i + 1 < nf; i += 2) {
        const char *k = f[i], *v = f[i + 1];
        int64_t iv = 0;
        double dv = 0;
        memcpy(&iv, v, strlen(v) < 8 ? strlen(v) : 8);
        memcpy(&dv, &iv, 8);
        switch ((unsigned char)k[0] % 5) {
        case 0:
            as_otlp_attr_str(sp, k, v);
            break;
        case 1:
            as_otlp_attr_int(sp, k, iv);
            break;
        case 2:
            if (sp->nattrs < AS_OTLP_MAX_ATTRS)
                sp->attrs[sp->nattrs++] =
                    (as_otlp_attr){.key = k, .type = AS_OTLP_BOOL, .i = iv & 1};
            break;
        case 3:
            if (sp->nattrs < AS_OTLP_MAX_ATTRS)
                sp->attrs[sp->nattrs++] = (as_otlp_attr){.key = k, .type = AS_OTLP_DOUBLE, .d = dv};
            break;
        default:
            as_otlp_attr_json(sp, k, v);
            break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *f[2 + 1 + 2 * AS_OTLP_MAX_ATTRS + 2];
    int nf = 0;
    f[nf++] = copy;
    for (size_t i = 0; i < size && nf < (int)(sizeof f / sizeof f[0]); i++)
        if (copy[i] == '\0')
            f[nf++] = copy + i + 1;

    as_otlp_span sp[2];
    fill(&sp[0], f, nf, 0);
    fill(&sp[1], f, nf, 7);
    int nres = sp[0].nattrs < 2 ? sp[0].nattrs : 2;
    int expect_attrs = sp[0].nattrs + sp[1].nattrs;

    for (int protobuf = 0; protobuf <= 1; protobuf++) {
        as_buf b;
        as_buf_init(&b);
        as_otlp_enc e;
        as_otlp_begin(&e, &b, protobuf, sp[0].attrs, nres, field_at(f, nf, 2), "1.0");
        as_otlp_add(&e, &sp[0]);
        as_otlp_add(&e, &sp[1]);
        as_otlp_end(&e);
        if (!b.oom) {
            if (protobuf) {
                pb_count cnt = {0, 0};
                pb_check(M_REQ, (const uint8_t *)b.data, (const uint8_t *)b.data + b.len, 0, 0,
                         &cnt);
                if (cnt.spans != 2 || cnt.span_attrs != expect_attrs)
                    abort();
            } else {
                fuzz_json_ok("otlp json", b.data, b.len);
            }
        }
        as_buf_free(&b);
    }
    free(copy);
    return 0;
}
