/* callrec.c - turns the interposer's raw call records (AS_MSG_CALL) into actions on the
 * exporter thread: names from the target table, times from the raw clock, the response
 * from the return registers or the captured return value, the parameters from the
 * capture items behind the record (capture.h), and the pid/tid/duration/hook metadata. */
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/pipeline.h"
#include "core/recdecode.h"
#include "core/settings.h"
#include "hook/callrec.h"
#include "hook/capture.h"
#include "hook/config.h"
#include "hook/target.h"
#include "hook/thunk.h"

#define NOT_RETURNED_MSG "did not return (left by longjmp or an exception)"
#define EXCEPTION_MSG "did not return (left by an exception)"
#define ENDED_MSG "did not return (the process exited or called exec inside it)"
#define SKIPPED_MSG "<skipped: struct of unknown size>"

/* Appends a string literal without measuring it at run time. */
#define PUT_LIT(b, lit) as_buf_put((b), "" lit, sizeof(lit) - 1)

static const char hex_digits[] = "0123456789abcdef";

static pid_t cached_pid; /* 0 = not yet; reset in a fork child */

static void child_after_fork(void) {
    cached_pid = 0;
}

__attribute__((constructor)) static void callrec_init(void) {
    pthread_atfork(NULL, NULL, child_after_fork);
    as_callrec_register();
}

static int decode_summary(const void *payload, size_t len, as_action *out, as_buf *sb);

void as_callrec_register(void) {
    as_pipe_register(AS_MSG_CALL, as_callrec_decode);
    as_pipe_register(AS_MSG_SUMMARY, decode_summary);
}

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

/* Returns the pid, fetched once per process (again in a fork child). Can't fail. */
static pid_t process_id(void) {
    pid_t p = __atomic_load_n(&cached_pid, __ATOMIC_RELAXED);
    if (!p) {
        p = getpid();
        __atomic_store_n(&cached_pid, p, __ATOMIC_RELAXED);
    }
    return p;
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
    const as_cap_item *param[AS_PROTO_MAX_PARAMS];
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
        else if (h.index < AS_PROTO_MAX_PARAMS)
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
static int put_value(as_buf *b, const as_type *ty, const as_cap_item *h, int json) {
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
    switch (ty->kind) {
    case AS_K_SINT:
        as_json_i64(b, sext(v, ty->size));
        return 0;
    case AS_K_UINT:
        as_json_u64(b, zext(v, ty->size));
        return 0;
    case AS_K_BOOL:
        if (v & 0xff)
            PUT_LIT(b, "true");
        else
            PUT_LIT(b, "false");
        return 0;
    case AS_K_FLOAT:
        put_float(b, h, ty->size, json);
        return 0;
    case AS_K_AGG: { /* the bytes in memory order, as hex */
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

/* Appends ,"parameters":{...} for the captured parameters of p (none when nothing was
 * captured). */
static void put_parameters(as_buf *b, const as_proto *p, const items *it) {
    if (!p || !it->any || p->nparams == 0)
        return;
    PUT_LIT(b, ",\"parameters\":{");
    int first = 1;
    int np = p->nparams < AS_PROTO_MAX_PARAMS ? p->nparams : AS_PROTO_MAX_PARAMS;
    for (int i = 0; i < np; i++) {
        if (!it->param[i])
            continue;
        if (!first)
            as_buf_putc(b, ',');
        first = 0;
        size_t nl = strnlen(p->names[i], AS_PROTO_NAME_LEN);
        if (nl) {
            as_json_str(b, p->names[i], nl);
        } else { /* "argN": plain ASCII, no escaping needed */
            PUT_LIT(b, "\"arg");
            as_json_i64(b, i + 1);
            as_buf_putc(b, '"');
        }
        as_buf_putc(b, ':');
        put_value(b, &p->params[i], it->param[i], 1);
    }
    as_buf_putc(b, '}');
}

/* Appends the response text of r (no quotes) to b. Returns 0, or -1 when the response
 * is null (void, a type whose value is not in the saved registers). */
static int format_response(const as_callrec *r, const as_proto *p, const items *it, as_buf *b) {
    if (!p) {
        as_json_i64(b, as_untyped_int(r->rax));
        return 0;
    }
    const as_type *ty = &p->ret;
    if (it->ret && (ty->kind == AS_K_STR || ty->kind == AS_K_AGG))
        return put_value(b, ty, it->ret, 0);
    switch (ty->kind) {
    case AS_K_SINT:
        as_json_i64(b, sext(r->rax, ty->size));
        return 0;
    case AS_K_UINT:
        as_json_u64(b, zext(r->rax, ty->size));
        return 0;
    case AS_K_BOOL:
        if (r->rax & 0xff)
            PUT_LIT(b, "true");
        else
            PUT_LIT(b, "false");
        return 0;
    case AS_K_FLOAT: {
        char tmp[40];
        if (ty->size == 4) {
            float f;
            uint32_t lo = (uint32_t)r->xmm0;
            memcpy(&f, &lo, sizeof f);
            as_fmt_double(tmp, sizeof tmp, (double)f);
        } else if (ty->size == 8) {
            double d;
            memcpy(&d, &r->xmm0, sizeof d);
            as_fmt_double(tmp, sizeof tmp, d);
        } else {
            return -1; /* long double lives in st0, which the record does not carry */
        }
        as_buf_puts(b, tmp);
        return 0;
    }
    case AS_K_STR: /* text not captured (capture off, no arena): the address */
    case AS_K_PTR:
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
    } names[] = {{AS_VIA_GOT, "got", 3}, {AS_VIA_DLSYM, "dlsym", 5}, {AS_VIA_ENTRY, "entry", 5}};
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

/* Returns 1 when the entry's error_if rule says the returned call r failed. */
static int call_failed(const as_callrec *r, const as_proto *p, int rule) {
    int64_t sv = (int64_t)r->rax;
    int is_unsigned = 0;
    double d = 0;
    int is_float = 0;
    if (!p) {
        sv = as_untyped_int(r->rax);
    } else if (p->ret.kind == AS_K_SINT) {
        sv = sext(r->rax, p->ret.size);
    } else if (p->ret.kind == AS_K_UINT) {
        sv = (int64_t)zext(r->rax, p->ret.size);
        is_unsigned = 1;
    } else if (p->ret.kind == AS_K_BOOL) {
        sv = r->rax & 0xff;
    } else if (p->ret.kind == AS_K_FLOAT && p->ret.size == 8) {
        memcpy(&d, &r->xmm0, sizeof d);
        is_float = 1;
    } else if (p->ret.kind == AS_K_FLOAT && p->ret.size == 4) {
        float f;
        uint32_t lo = (uint32_t)r->xmm0;
        memcpy(&f, &lo, sizeof f);
        d = f;
        is_float = 1;
    } else if (p->ret.kind == AS_K_PTR || p->ret.kind == AS_K_STR) {
        is_unsigned = 1;
    } else if (rule != AS_ERRIF_ERRNO) {
        return 0; /* void, aggregates, long double: no value to judge */
    }
    int zero = is_float ? d == 0 : (is_unsigned ? r->rax == 0 || sv == 0 : sv == 0);
    switch (rule) {
    case AS_ERRIF_NULL:
    case AS_ERRIF_ZERO:
    case AS_ERRIF_FALSE:
        return zero;
    case AS_ERRIF_NONZERO:
        return !zero;
    case AS_ERRIF_NEGATIVE:
        return is_float ? d < 0 : (!is_unsigned && sv < 0);
    case AS_ERRIF_ERRNO: /* errno is 0 at entry: non-zero at the return means the call set it */
        return r->errno_out != 0;
    default:
        return 0;
    }
}

/* Appends "returned VALUE[: strerror(errno)]" (errno part when the call set errno: it
 * starts at 0, see thunk.c) and a NUL to b. */
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

int as_callrec_decode(const void *payload, size_t len, as_action *out, as_buf *sb) {
    as_callrec r;
    if (!payload || len < sizeof r)
        return -1;
    memcpy(&r, payload, sizeof r);
    if (r.id >= __atomic_load_n(&as_ntargets, __ATOMIC_ACQUIRE))
        return -1;
    if (r.ext > len - sizeof r)
        return -1;
    const as_target *t = &as_targets[r.id];
    const as_proto *proto = t->proto;
    const as_entry *e = t->entry;
    int returned = (r.flags & AS_CALL_RETURNED) != 0;
    int entry_only = !returned && (r.flags & AS_CALL_ENTRY_ONLY);
    int hidden = as_capture_off || (e && e->capture_none);
    items it;
    if (parse_items((const unsigned char *)payload + sizeof r, r.ext, &it) != 0)
        return -1;
    if (hidden)
        memset(&it, 0, sizeof it);

    int64_t dns = as_clock_raw_delta_ns(r.t0, r.t1);
    if (dns < 0)
        dns = 0;
    memset(out, 0, sizeof *out);
    out->action_name = t->action_name;
    out->started_ns = as_clock_raw_to_unix_ns(r.t0);
    out->ended_ns = out->started_ns + dns;
    out->duration_ms = (dns + 500000) / 1000000;
    out->timestamp_ns = out->ended_ns;
    out->conversation_id =
        as_cfg.conversation_id[0] ? as_cfg.conversation_id : as_settings_conversation_id();
    if (!returned && !entry_only)
        out->error_msg = (r.flags & AS_CALL_EXCEPTION) ? EXCEPTION_MSG
                         : (r.flags & AS_CALL_ENDED)   ? ENDED_MSG
                                                       : NOT_RETURNED_MSG;

    /* Strings go into scratch one after another (NUL-separated); pointers are taken at
     * the end because the buffer may move while it grows. */
    /* One reserve covers a typical record (names, metadata, response); longer values
     * grow the buffer as before. */
    as_buf_reserve(sb, 512);
    size_t o_tools = sb->len;
    PUT_LIT(sb, "{\"function\":");
    as_json_cstr(sb, t->symbol);
    PUT_LIT(sb, ",\"library\":");
    as_json_cstr(sb, t->library);
    put_parameters(sb, proto, &it);
    as_buf_putc(sb, '}');
    as_buf_putc(sb, '\0');

    size_t o_meta = sb->len;
    PUT_LIT(sb, "{\"pid\":");
    as_json_i64(sb, (int)process_id());
    PUT_LIT(sb, ",\"tid\":");
    as_json_i64(sb, (int)r.tid);
    PUT_LIT(sb, ",\"duration_ns\":");
    as_json_i64(sb, dns);
    uint32_t via = __atomic_load_n(&t->via, __ATOMIC_RELAXED);
    if (entry_only) {
        PUT_LIT(sb, ",\"hook\":\"entry-only\"");
    } else if (via) {
        PUT_LIT(sb, ",\"hook\":");
        put_via(sb, via);
    }
    if (e && e->display) {
        PUT_LIT(sb, ",\"display_name\":");
        as_json_cstr(sb, e->display);
    }
    as_buf_putc(sb, '}');
    as_buf_putc(sb, '\0');

    /* The response text is formatted even when capture is off: the error message may
     * need the value; it is left out of the action then. */
    size_t o_resp = sb->len;
    int has_resp = returned && format_response(&r, proto, &it, sb) == 0;
    as_buf_putc(sb, '\0');

    size_t o_err = 0;
    int failed =
        returned && e && e->error_if != AS_ERRIF_NONE && call_failed(&r, proto, e->error_if);
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
    out->response = has_resp && !hidden ? sb->data + o_resp : NULL;
    if (failed)
        out->error_msg = sb->data + o_err;
    return 0;
}

int as_callrec_failed(uint32_t id, uint64_t rax, uint64_t xmm0, int errno_in, int errno_out) {
    if (id >= __atomic_load_n(&as_ntargets, __ATOMIC_ACQUIRE))
        return 0;
    const as_target *t = &as_targets[id];
    const as_entry *e = t->entry;
    if (!e || e->error_if == AS_ERRIF_NONE)
        return 0;
    as_callrec r = {.id = id,
                    .flags = AS_CALL_RETURNED,
                    .errno_in = errno_in,
                    .errno_out = errno_out,
                    .rax = rax,
                    .xmm0 = xmm0};
    return call_failed(&r, t->proto, e->error_if);
}

/* The live clock (as_rec_clock_fn). */
static int live_clock(uint64_t raw, int64_t *unix_ns, void *ctx) {
    (void)ctx;
    *unix_ns = as_clock_raw_to_unix_ns(raw);
    return 0;
}

/* Decoder registered for AS_MSG_SUMMARY: names from the target table. */
static int decode_summary(const void *payload, size_t len, as_action *out, as_buf *sb) {
    as_sum s;
    if (!payload || len < sizeof s)
        return -1;
    memcpy(&s, payload, sizeof s);
    if (s.id == 0 || s.id - 1 >= __atomic_load_n(&as_ntargets, __ATOMIC_ACQUIRE))
        return -1;
    const as_target *t = &as_targets[s.id - 1];
    as_rec_names nm = {t->action_name, t->symbol, t->library, t->entry ? t->entry->display : NULL};
    const char *conv =
        as_cfg.conversation_id[0] ? as_cfg.conversation_id : as_settings_conversation_id();
    return as_rec_summary(&s, &nm, (int)process_id(), conv, live_clock, NULL, 0, out, sb);
}
