/* record.c - decoding of the interposer's ring records into actions (record.h), one
 * module for the live exporter and for recovery, and the text form of a target's
 * description that recovery reads back. */
#include "record.h"

#include "crc32c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOT_RETURNED_MSG "did not return (left by longjmp or an exception)"
#define EXCEPTION_MSG "did not return (left by an exception)"
#define ENDED_MSG "did not return (the process exited or called exec inside it)"
#define SKIPPED_MSG "<skipped: struct of unknown size>"

/* Appends a string literal without measuring it at run time. */
#define PUT_LIT(b, lit) as_buf_put((b), "" lit, sizeof(lit) - 1)

_Static_assert(sizeof(as_callrec) == 64, "record size");
_Static_assert(sizeof(as_cap_item) == 8, "item header size");

static const char hex_digits[] = "0123456789abcdef";

/* The untyped rule. A function returning int leaves its result in eax; writing eax zeroes
 * the upper half of rax, so a 32-bit -1 arrives as 0x00000000ffffffff and must read -1,
 * not 4294967295. So: when the upper 32 bits of rax are all zero the lower 32 bits are
 * read as a signed 32-bit int; otherwise rax is read as a signed 64-bit integer (a long
 * -1, a pointer, a 64-bit value). Unsigned 32-bit results of 2^31 and more therefore read
 * negative: write a prototype for them. */
int64_t as_untyped_int(uint64_t rax) {
    if ((rax >> 32) == 0)
        return (int32_t)(uint32_t)rax;
    return (int64_t)rax;
}

/* Sign-extends the low size bytes of v. */
static int64_t sext(uint64_t v, unsigned size) {
    if (size == 0 || size >= 8)
        return (int64_t)v;
    unsigned shift = 64 - 8 * size;
    return (int64_t)(v << shift) >> shift;
}

static uint64_t zext(uint64_t v, unsigned size) {
    if (size == 0 || size >= 8)
        return v;
    return v & ((UINT64_C(1) << (8 * size)) - 1);
}

/* The capture items of one record, by parameter. */
typedef struct items {
    const as_cap_item *param[AS_REC_MAX_PARAMS];
    const as_cap_item *ret;
    int any;
} items;

/* Indexes the ext bytes of capture items at p. Returns 0, or -1 when they are malformed
 * (an item running past the end). */
static int parse_items(const unsigned char *p, size_t n, items *it) {
    memset(it, 0, sizeof *it);
    size_t o = 0;
    while (o + sizeof(as_cap_item) <= n) {
        as_cap_item h;
        memcpy(&h, p + o, sizeof h);
        size_t sz = sizeof h + (((size_t)h.len + 7) & ~(size_t)7);
        if (h.len > n || sz > n - o)
            return -1;
        const as_cap_item *hp = (const as_cap_item *)(p + o);
        if (h.index == AS_CAP_RET)
            it->ret = hp;
        else if (h.index < AS_REC_MAX_PARAMS)
            it->param[h.index] = hp;
        it->any = 1;
        o += sz;
    }
    return o == n ? 0 : -1;
}

static const unsigned char *item_data(const as_cap_item *h) {
    return (const unsigned char *)(h + 1);
}

/* The first 8 bytes of an item's value (zero-padded). */
static uint64_t item_u64(const as_cap_item *h) {
    uint64_t v = 0;
    memcpy(&v, item_data(h), h->len < 8 ? h->len : 8);
    return v;
}

/* Writes "0x" and the lowercase hex digits of v (as printf's 0x%llx) to o, which has room
 * for 18 bytes. Returns the length written. */
static size_t fmt_hex(char *o, uint64_t v) {
    char tmp[16];
    char *e = tmp + sizeof tmp, *p = e;
    do {
        *--p = hex_digits[v & 15];
        v >>= 4;
    } while (v);
    size_t n = (size_t)(e - p);
    o[0] = '0';
    o[1] = 'x';
    memcpy(o + 2, p, n);
    return n + 2;
}

/* Appends a JSON string (json) or raw text of s to b. */
static void put_text(as_buf *b, const char *s, size_t n, int json) {
    if (json)
        as_json_str(b, s, n);
    else
        as_buf_put(b, s, n);
}

/* Appends the floating value of h (float, double or x87 long double) to b. */
static void put_float(as_buf *b, const as_cap_item *h, unsigned size, int json) {
    double d;
    if (size == 4) {
        float f;
        uint32_t lo = (uint32_t)item_u64(h);
        memcpy(&f, &lo, sizeof f);
        d = f;
    } else if (size == 8 || h->len < 10) {
        uint64_t v = item_u64(h);
        memcpy(&d, &v, sizeof d);
    } else {
        long double ld = 0;
        memcpy(&ld, item_data(h), 10); /* the 80-bit format in the low 10 bytes */
        d = (double)ld;
    }
    if (json) {
        as_json_double(b, d);
        return;
    }
    char tmp[40];
    as_fmt_double(tmp, sizeof tmp, d);
    as_buf_puts(b, tmp);
}

/* Appends the value of capture item h of type ty: as a JSON value (json 1: numbers,
 * true/false, null, strings) or as response text (json 0; a NULL string then writes
 * nothing and returns -1). Returns 0. */
static int put_value(as_buf *b, as_rec_type ty, const as_cap_item *h, int json) {
    char tmp[64];
    size_t n;
    switch (h->tag) {
    case AS_CAP_NULL:
        if (!json)
            return -1;
        PUT_LIT(b, "null");
        return 0;
    case AS_CAP_BAD:
        memcpy(tmp, "<unreadable ", sizeof "<unreadable " - 1);
        n = sizeof "<unreadable " - 1;
        n += fmt_hex(tmp + n, item_u64(h));
        tmp[n++] = '>';
        put_text(b, tmp, n, json);
        return 0;
    case AS_CAP_STR:
        put_text(b, (const char *)item_data(h), h->len, json);
        return 0;
    case AS_CAP_VAL:
        break;
    default:
        put_text(b, SKIPPED_MSG, sizeof SKIPPED_MSG - 1, json);
        return 0;
    }
    uint64_t v = item_u64(h);
    switch (ty.kind) {
    case AS_RK_SINT:
        as_json_i64(b, sext(v, ty.size));
        return 0;
    case AS_RK_UINT:
        as_json_u64(b, zext(v, ty.size));
        return 0;
    case AS_RK_BOOL:
        if (v & 0xff)
            PUT_LIT(b, "true");
        else
            PUT_LIT(b, "false");
        return 0;
    case AS_RK_FLOAT:
        put_float(b, h, ty.size, json);
        return 0;
    case AS_RK_AGG: { /* the bytes in memory order, as hex */
        n = h->len < 255 ? h->len : 255;
        char hex[2 * 255];
        const unsigned char *d = item_data(h);
        for (size_t i = 0; i < n; i++) {
            hex[2 * i] = hex_digits[d[i] >> 4];
            hex[2 * i + 1] = hex_digits[d[i] & 15];
        }
        put_text(b, hex, 2 * n, json);
        return 0;
    }
    default: /* pointers (a string pointer whose text was not captured) */
        if (!v) {
            if (!json)
                return -1;
            PUT_LIT(b, "null");
            return 0;
        }
        put_text(b, tmp, fmt_hex(tmp, v), json);
        return 0;
    }
}

/* Appends ,"parameters":{...} for the captured parameters of d (none when nothing was
 * captured). */
static void put_parameters(as_buf *b, const as_rec_desc *d, const items *it) {
    if (!d->typed || !it->any || d->nparams == 0)
        return;
    PUT_LIT(b, ",\"parameters\":{");
    int first = 1;
    int np = d->nparams < AS_REC_MAX_PARAMS ? d->nparams : AS_REC_MAX_PARAMS;
    for (int i = 0; i < np; i++) {
        if (!it->param[i])
            continue;
        if (!first)
            as_buf_putc(b, ',');
        first = 0;
        size_t nl = strnlen(d->names[i], AS_REC_NAME_LEN);
        if (nl) {
            as_json_str(b, d->names[i], nl);
        } else { /* "argN": plain ASCII, no escaping needed */
            PUT_LIT(b, "\"arg");
            as_json_i64(b, i + 1);
            as_buf_putc(b, '"');
        }
        as_buf_putc(b, ':');
        put_value(b, d->params[i], it->param[i], 1);
    }
    as_buf_putc(b, '}');
}

/* Appends the response text of r (no quotes) to b. Returns 0, or -1 when the response
 * is null (void, a type whose value is not in the saved registers). */
static int format_response(const as_callrec *r, const as_rec_desc *d, const items *it, as_buf *b) {
    if (!d->typed) {
        as_json_i64(b, as_untyped_int(r->rax));
        return 0;
    }
    as_rec_type ty = d->ret;
    if (it->ret && (ty.kind == AS_RK_STR || ty.kind == AS_RK_AGG))
        return put_value(b, ty, it->ret, 0);
    switch (ty.kind) {
    case AS_RK_SINT:
        as_json_i64(b, sext(r->rax, ty.size));
        return 0;
    case AS_RK_UINT:
        as_json_u64(b, zext(r->rax, ty.size));
        return 0;
    case AS_RK_BOOL:
        if (r->rax & 0xff)
            PUT_LIT(b, "true");
        else
            PUT_LIT(b, "false");
        return 0;
    case AS_RK_FLOAT: {
        char tmp[40];
        if (ty.size == 4) {
            float f;
            uint32_t lo = (uint32_t)r->xmm0;
            memcpy(&f, &lo, sizeof f);
            as_fmt_double(tmp, sizeof tmp, (double)f);
        } else if (ty.size == 8) {
            double v;
            memcpy(&v, &r->xmm0, sizeof v);
            as_fmt_double(tmp, sizeof tmp, v);
        } else {
            return -1; /* long double lives in st0, which the record does not carry */
        }
        as_buf_puts(b, tmp);
        return 0;
    }
    case AS_RK_STR: /* text not captured (capture off, no arena): the address */
    case AS_RK_PTR:
        if (!r->rax)
            return -1;
        PUT_LIT(b, "0x");
        as_buf_hex(b, r->rax);
        return 0;
    default: /* void, aggregates */
        return -1;
    }
}

/* Appends the "hook" value for the via bits: "got", "dlsym", "entry" joined by '+'. */
static void put_via(as_buf *b, uint32_t via) {
    static const struct {
        uint32_t bit;
        const char *name;
        size_t len;
    } names[] = {{1, "got", 3}, {2, "dlsym", 5}, {4, "entry", 5}};
    int first = 1;
    as_buf_putc(b, '"');
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(via & names[i].bit))
            continue;
        if (!first)
            as_buf_putc(b, '+');
        as_buf_put(b, names[i].name, names[i].len);
        first = 0;
    }
    as_buf_putc(b, '"');
}

int as_rec_failed(int rule, int typed, as_rec_type ret, uint64_t rax, uint64_t xmm0,
                  int errno_out) {
    if (rule == AS_REC_ERRIF_NONE)
        return 0;
    int64_t sv = (int64_t)rax;
    int is_unsigned = 0;
    double d = 0;
    int is_float = 0;
    if (!typed) {
        sv = as_untyped_int(rax);
    } else if (ret.kind == AS_RK_SINT) {
        sv = sext(rax, ret.size);
    } else if (ret.kind == AS_RK_UINT) {
        sv = (int64_t)zext(rax, ret.size);
        is_unsigned = 1;
    } else if (ret.kind == AS_RK_BOOL) {
        sv = rax & 0xff;
    } else if (ret.kind == AS_RK_FLOAT && ret.size == 8) {
        memcpy(&d, &xmm0, sizeof d);
        is_float = 1;
    } else if (ret.kind == AS_RK_FLOAT && ret.size == 4) {
        float f;
        uint32_t lo = (uint32_t)xmm0;
        memcpy(&f, &lo, sizeof f);
        d = f;
        is_float = 1;
    } else if (ret.kind == AS_RK_PTR || ret.kind == AS_RK_STR) {
        is_unsigned = 1;
    } else if (rule != AS_REC_ERRIF_ERRNO) {
        return 0; /* void, aggregates, long double: no value to judge */
    }
    int zero = is_float ? d == 0 : (is_unsigned ? rax == 0 || sv == 0 : sv == 0);
    switch (rule) {
    case AS_REC_ERRIF_NULL:
    case AS_REC_ERRIF_ZERO:
    case AS_REC_ERRIF_FALSE:
        return zero;
    case AS_REC_ERRIF_NONZERO:
        return !zero;
    case AS_REC_ERRIF_NEGATIVE:
        return is_float ? d < 0 : (!is_unsigned && sv < 0);
    case AS_REC_ERRIF_ERRNO: /* errno is 0 at entry: non-zero at the return means the call set it */
        return errno_out != 0;
    default:
        return 0;
    }
}

/* Appends "returned VALUE[: strerror(errno)]" (errno part when the call set errno) and
 * a NUL to b. */
static void put_error_msg(as_buf *b, const as_callrec *r, const char *resp) {
    as_buf_puts(b, "returned ");
    as_buf_puts(b, resp ? resp : "NULL");
    if (r->errno_out != 0) {
        char tmp[128];
        const char *m = strerror_r(r->errno_out, tmp, sizeof tmp);
        as_buf_puts(b, ": ");
        as_buf_puts(b, m);
    }
    as_buf_putc(b, '\0');
}

int as_rec_call(const void *payload, size_t len, const as_rec_desc *d, const as_rec_ctx *c,
                as_action *out, as_buf *sb) {
    as_callrec r;
    if (!payload || !d || !d->action_name || len < sizeof r)
        return -1;
    if (!as_rec_call_intact(payload, len))
        return AS_REC_DAMAGED;
    memcpy(&r, payload, sizeof r);
    if (r.ext > len - sizeof r || r.t1 < r.t0)
        return -1;
    int returned = (r.flags & AS_CALL_RETURNED) != 0;
    int entry_only = !returned && (r.flags & AS_CALL_ENTRY_ONLY);
    if (!returned && !entry_only && !(r.flags & AS_CALL_NOT_RETURNED))
        return -1;
    items it;
    if (parse_items((const unsigned char *)payload + sizeof r, r.ext, &it) != 0)
        return -1;
    if (d->hidden)
        memset(&it, 0, sizeof it);

    int64_t start, end;
    if (c->clock(r.t0, &start, c->clock_ctx) != 0 || c->clock(r.t1, &end, c->clock_ctx) != 0)
        return -1;
    if (end < start)
        end = start;
    int64_t dns = end - start;
    memset(out, 0, sizeof *out);
    out->action_name = d->action_name;
    out->started_ns = start;
    out->ended_ns = end;
    out->duration_ms = (dns + 500000) / 1000000;
    out->timestamp_ns = end;
    out->conversation_id = c->conversation_id;
    if (!returned && !entry_only)
        out->error_msg = (r.flags & AS_CALL_EXCEPTION) ? EXCEPTION_MSG
                         : (r.flags & AS_CALL_ENDED)   ? ENDED_MSG
                                                       : NOT_RETURNED_MSG;

    /* Strings go into sb one after another (NUL-separated); pointers are taken at the
     * end because the buffer may move while it grows. One reserve covers a typical
     * record (names, metadata, response). */
    as_buf_reserve(sb, 512);
    size_t o_tools = sb->len;
    PUT_LIT(sb, "{\"function\":");
    as_json_cstr(sb, d->symbol ? d->symbol : d->action_name);
    PUT_LIT(sb, ",\"library\":");
    as_json_cstr(sb, d->library);
    put_parameters(sb, d, &it);
    as_buf_putc(sb, '}');
    as_buf_putc(sb, '\0');

    size_t o_meta = sb->len;
    PUT_LIT(sb, "{\"pid\":");
    as_json_i64(sb, c->pid);
    PUT_LIT(sb, ",\"tid\":");
    as_json_i64(sb, (int)r.tid);
    PUT_LIT(sb, ",\"duration_ns\":");
    as_json_i64(sb, dns);
    if (entry_only) {
        PUT_LIT(sb, ",\"hook\":\"entry-only\"");
    } else if (d->via) {
        PUT_LIT(sb, ",\"hook\":");
        put_via(sb, d->via);
    }
    if (d->display) {
        PUT_LIT(sb, ",\"display_name\":");
        as_json_cstr(sb, d->display);
    }
    if (c->recovered)
        PUT_LIT(sb, ",\"agentsight_recovered\":true");
    as_buf_putc(sb, '}');
    as_buf_putc(sb, '\0');

    /* The response text is formatted even when capture is off: the error message may
     * need the value; it is left out of the action then. */
    size_t o_resp = sb->len;
    int has_resp = returned && format_response(&r, d, &it, sb) == 0;
    as_buf_putc(sb, '\0');

    size_t o_err = 0;
    int failed =
        returned && as_rec_failed(d->error_if, d->typed, d->ret, r.rax, r.xmm0, r.errno_out);
    if (failed) {
        o_err = sb->len;
        /* The buffer may have moved: the response is re-read by offset inside. */
        char resp[64];
        snprintf(resp, sizeof resp, "%s", has_resp ? sb->data + o_resp : "NULL");
        put_error_msg(sb, &r, resp);
    }

    if (sb->oom)
        return -1;
    out->tools_used = sb->data + o_tools;
    out->metadata = sb->data + o_meta;
    out->response = has_resp && !d->hidden ? sb->data + o_resp : NULL;
    if (failed)
        out->error_msg = sb->data + o_err;
    return 0;
}

int as_rec_summary(const as_sum *s, const as_rec_desc *d, const as_rec_ctx *c, as_action *out,
                   as_buf *sb) {
    if (!s || !d || !d->action_name || s->calls == 0 || s->errors > s->calls ||
        s->t_last < s->t_first || s->min_ns > s->max_ns)
        return -1;
    int64_t start, end;
    if (c->clock(s->t_first, &start, c->clock_ctx) != 0 ||
        c->clock(s->t_last, &end, c->clock_ctx) != 0 || end < start)
        return -1;
    memset(out, 0, sizeof *out);
    out->action_name = d->action_name;
    out->started_ns = start;
    out->ended_ns = end;
    uint64_t total = s->total_ns;
    out->duration_ms = (int64_t)(total / 1000000 + (total % 1000000 >= 500000));
    out->timestamp_ns = end;
    out->conversation_id = c->conversation_id;

    size_t o_tools = sb->len;
    as_buf_puts(sb, "{\"function\":");
    as_json_cstr(sb, d->symbol ? d->symbol : d->action_name);
    as_buf_puts(sb, ",\"library\":");
    as_json_cstr(sb, d->library);
    as_buf_puts(sb, "}");
    as_buf_putc(sb, '\0');

    size_t o_meta = sb->len;
    as_buf_printf(sb,
                  "{\"summary\":true,\"calls\":%llu,\"errors\":%llu,\"pid\":%d,\"tid\":%d,"
                  "\"duration_ns\":{\"total\":%llu,\"min\":%llu,\"max\":%llu},"
                  "\"histogram_log2_ns\":{",
                  (unsigned long long)s->calls, (unsigned long long)s->errors, c->pid, (int)s->tid,
                  (unsigned long long)s->total_ns, (unsigned long long)s->min_ns,
                  (unsigned long long)s->max_ns);
    int first = 1;
    for (int k = 0; k < AS_SUM_BUCKETS; k++) {
        if (!s->hist[k])
            continue;
        as_buf_printf(sb, "%s\"%d\":%u", first ? "" : ",", k, (unsigned)s->hist[k]);
        first = 0;
    }
    as_buf_putc(sb, '}');
    if (d->via) {
        as_buf_puts(sb, ",\"hook\":");
        put_via(sb, d->via);
    }
    if (d->display) {
        as_buf_puts(sb, ",\"display_name\":");
        as_json_cstr(sb, d->display);
    }
    if (c->recovered)
        as_buf_puts(sb, ",\"agentsight_recovered\":true");
    as_buf_putc(sb, '}');
    as_buf_putc(sb, '\0');

    size_t o_err = sb->len;
    if (s->errors)
        as_buf_printf(sb, "%llu of %llu calls failed", (unsigned long long)s->errors,
                      (unsigned long long)s->calls);
    as_buf_putc(sb, '\0');
    if (sb->oom)
        return -1;
    out->tools_used = sb->data + o_tools;
    out->metadata = sb->data + o_meta;
    out->error_msg = s->errors ? sb->data + o_err : NULL;
    return 0;
}

/* ---- the text form of a description --------------------------------------------- */

void as_rec_desc_format(const as_rec_desc *d, as_buf *b) {
    as_buf_printf(b, "v1;e=%d;h=%d;w=%u;t=%d", d->error_if, d->hidden ? 1 : 0, (unsigned)d->via,
                  d->typed ? 1 : 0);
    if (!d->typed)
        return;
    as_buf_printf(b, ";r=%u.%u;p=", d->ret.kind, d->ret.size);
    int np = d->nparams < AS_REC_MAX_PARAMS ? d->nparams : AS_REC_MAX_PARAMS;
    for (int i = 0; i < np; i++) {
        as_buf_printf(b, "%s%u.%u:", i ? "," : "", d->params[i].kind, d->params[i].size);
        /* C identifiers: letters, digits and '_' only are kept */
        for (const char *c = d->names[i]; *c && c < d->names[i] + AS_REC_NAME_LEN; c++) {
            if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                *c == '_')
                as_buf_putc(b, *c);
        }
    }
}

/* Reads "K.S" at *p into t. Returns 0, or -1. */
static int parse_type(const char **p, as_rec_type *t) {
    char *e;
    unsigned long k = strtoul(*p, &e, 10);
    if (e == *p || *e != '.' || k > AS_RK_AGG)
        return -1;
    const char *q = e + 1;
    unsigned long s = strtoul(q, &e, 10);
    if (e == q || s > 255)
        return -1;
    t->kind = (uint8_t)k;
    t->size = (uint8_t)s;
    *p = e;
    return 0;
}

/* Reads the integer after "key=" at *p and the ';' or end after it. Returns 0, or -1. */
static int parse_num(const char **p, char key, long max, long *out) {
    if ((*p)[0] != key || (*p)[1] != '=')
        return -1;
    char *e;
    long v = strtol(*p + 2, &e, 10);
    if (e == *p + 2 || v < 0 || v > max || (*e != ';' && *e != '\0'))
        return -1;
    *out = v;
    *p = *e == ';' ? e + 1 : e;
    return 0;
}

int as_rec_desc_parse(const char *text, as_rec_desc *d) {
    d->error_if = AS_REC_ERRIF_NONE;
    d->hidden = 0;
    d->via = 0;
    d->typed = 0;
    d->nparams = 0;
    memset(&d->ret, 0, sizeof d->ret);
    const char *p = text;
    long e, h, w, t;
    if (strncmp(p, "v1;", 3) != 0)
        return -1;
    p += 3;
    if (parse_num(&p, 'e', AS_REC_ERRIF_ERRNO, &e) != 0 || parse_num(&p, 'h', 1, &h) != 0 ||
        parse_num(&p, 'w', 7, &w) != 0 || parse_num(&p, 't', 1, &t) != 0)
        return -1;
    as_rec_desc v = *d;
    v.error_if = (int)e;
    v.hidden = (int)h;
    v.via = (uint32_t)w;
    if (t) {
        if (strncmp(p, "r=", 2) != 0)
            return -1;
        p += 2;
        if (parse_type(&p, &v.ret) != 0 || strncmp(p, ";p=", 3) != 0)
            return -1;
        p += 3;
        while (*p) {
            if (v.nparams == AS_REC_MAX_PARAMS)
                return -1;
            as_rec_type ty;
            if (parse_type(&p, &ty) != 0 || *p != ':')
                return -1;
            p++;
            size_t n = strcspn(p, ",");
            if (n >= AS_REC_NAME_LEN)
                return -1;
            v.params[v.nparams] = ty;
            memcpy(v.names[v.nparams], p, n);
            v.names[v.nparams][n] = '\0';
            v.nparams++;
            p += n;
            if (*p == ',')
                p++;
        }
        v.typed = 1;
    }
    *d = v;
    return 0;
}

/* ---- the call record's checksum ---------------------------------------------------- */

uint32_t as_rec_call_sum(const void *rec, size_t n) {
    const unsigned char *p = rec;
    if (n < sizeof(as_callrec))
        return 0;
    uint64_t q0;
    memcpy(&q0, p, 8);
    q0 &= 0xffffffffu; /* id and flags; the sum field reads as 0 */
    uint32_t c = as_crc32c(0xffffffffu, &q0, 8);
    c = as_crc32c(c, p + 8, offsetof(as_callrec, t1) - 8);  /* tid .. t0 */
    c = as_crc32c(c, p + offsetof(as_callrec, rax), 3 * 8); /* rax, rdx, xmm0 */
    c = as_crc32c(c, p + sizeof(as_callrec), (n & ~(size_t)7) - sizeof(as_callrec)); /* items */
    return as_crc32c(c, p + offsetof(as_callrec, t1), 8);                            /* t1 last */
}

void as_rec_call_seal(as_callrec *rec) {
    rec->sum = as_rec_call_sum(rec, sizeof *rec + rec->ext);
}

int as_rec_call_intact(const void *payload, size_t len) {
    as_callrec r;
    if (!payload || len < sizeof r)
        return 0;
    memcpy(&r, payload, sizeof r);
    if (r.ext > len - sizeof r || (r.ext & 7))
        return 0;
    return as_rec_call_sum(payload, sizeof r + r.ext) == r.sum;
}

uint32_t as_rec_checksum(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}
