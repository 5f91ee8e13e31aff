/* otlp_enc.c - OTLP trace requests in protobuf and JSON from one span description
 * (otlp_enc.h). Field numbers are those of opentelemetry-proto:
 *
 *   ExportTraceServiceRequest  1 resource_spans
 *   ResourceSpans              1 resource, 2 scope_spans
 *   Resource                   1 attributes (KeyValue)
 *   ScopeSpans                 1 scope, 2 spans
 *   InstrumentationScope       1 name, 2 version
 *   Span                       1 trace_id, 2 span_id, 4 parent_span_id, 5 name, 6 kind,
 *                              7 start_time_unix_nano (fixed64), 8 end_time_unix_nano
 *                              (fixed64), 9 attributes, 15 status
 *   Status                     2 message, 3 code
 *   KeyValue                   1 key, 2 value (AnyValue)
 *   AnyValue                   1 string, 2 bool, 3 int, 4 double (fixed64), 5 array,
 *                              6 kvlist
 *   ArrayValue / KeyValueList  1 values
 *
 * The JSON form is the OTLP/JSON mapping: lowerCamelCase names, ids as hex, 64-bit
 * integers as decimal strings, enums as numbers. */
#include "core/otlp_enc.h"

#include <string.h>

#include "core/dl_cjson.h"

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2 };

void as_pb_varint(as_buf *b, uint64_t v) {
    unsigned char t[10];
    size_t n = 0;
    do {
        t[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v)
            t[n] |= 0x80;
        n++;
    } while (v);
    as_buf_put(b, t, n);
}

void as_pb_tag(as_buf *b, unsigned field, unsigned wire) {
    as_pb_varint(b, ((uint64_t)field << 3) | wire);
}

void as_pb_bytes(as_buf *b, unsigned field, const void *p, size_t n) {
    as_pb_tag(b, field, WT_LEN);
    as_pb_varint(b, n);
    as_buf_put(b, p, n);
}

/* proto3 strings must be UTF-8 (collectors refuse the whole request otherwise): bytes
 * that are not (a replayed spool line, a JSON attribute) become U+FFFD. */
static void pb_str(as_buf *b, unsigned field, const char *s) {
    size_t n = strlen(s);
    if (as_utf8_valid(s, n)) {
        as_pb_bytes(b, field, s, n);
        return;
    }
    size_t body = as_pb_open(b, field);
    as_utf8_repair(b, s, n);
    as_pb_close(b, body);
}

static void pb_fixed64(as_buf *b, unsigned field, uint64_t v) {
    unsigned char t[8];
    for (int i = 0; i < 8; i++)
        t[i] = (unsigned char)(v >> (8 * i));
    as_pb_tag(b, field, WT_I64);
    as_buf_put(b, t, 8);
}

size_t as_pb_open(as_buf *b, unsigned field) {
    as_pb_tag(b, field, WT_LEN);
    return b->len;
}

void as_pb_close(as_buf *b, size_t body) {
    if (b->oom || body > b->len)
        return;
    size_t n = b->len - body;
    unsigned char t[10];
    size_t k = 0;
    uint64_t v = n;
    do {
        t[k] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v)
            t[k] |= 0x80;
        k++;
    } while (v);
    if (as_buf_reserve(b, k) != 0)
        return;
    memmove(b->data + body + k, b->data + body, n);
    memcpy(b->data + body, t, k);
    b->len += k;
}

static void add_attr(as_otlp_span *sp, as_otlp_attr a) {
    if (sp->nattrs < AS_OTLP_MAX_ATTRS)
        sp->attrs[sp->nattrs++] = a;
}

void as_otlp_attr_str(as_otlp_span *sp, const char *key, const char *s) {
    if (s)
        add_attr(sp, (as_otlp_attr){.key = key, .type = AS_OTLP_STR, .s = s});
}

void as_otlp_attr_int(as_otlp_span *sp, const char *key, int64_t v) {
    add_attr(sp, (as_otlp_attr){.key = key, .type = AS_OTLP_INT, .i = v});
}

void as_otlp_attr_json(as_otlp_span *sp, const char *key, const char *json) {
    if (json)
        add_attr(sp, (as_otlp_attr){.key = key, .type = AS_OTLP_JSON, .s = json});
}

/* ---- AnyValue from a cJSON node ---- */

static int as_int(const cJSON *n, int64_t *out) {
    double d = n->valuedouble;
    if (!(d >= -9.2e18 && d <= 9.2e18)) /* NaN and infinities too */
        return 0;
    int64_t i = (int64_t)d;
    if ((double)i != d)
        return 0;
    *out = i;
    return 1;
}

static void pb_any_json(as_buf *b, const cJSON *n, int depth);

static void pb_kv_json(as_buf *b, unsigned field, const char *key, const cJSON *v, int depth) {
    size_t kv = as_pb_open(b, field);
    pb_str(b, 1, key ? key : "");
    size_t val = as_pb_open(b, 2);
    pb_any_json(b, v, depth);
    as_pb_close(b, val);
    as_pb_close(b, kv);
}

static void pb_any_json(as_buf *b, const cJSON *n, int depth) {
    int64_t iv;
    switch (n->type & 0xff) {
    case cJSON_False:
    case cJSON_True:
        as_pb_tag(b, 2, WT_VARINT);
        as_pb_varint(b, (n->type & 0xff) == cJSON_True);
        break;
    case cJSON_Number:
        if (as_int(n, &iv)) {
            as_pb_tag(b, 3, WT_VARINT);
            as_pb_varint(b, (uint64_t)iv);
        } else {
            uint64_t bits;
            memcpy(&bits, &n->valuedouble, 8);
            pb_fixed64(b, 4, bits);
        }
        break;
    case cJSON_String:
        pb_str(b, 1, n->valuestring ? n->valuestring : "");
        break;
    case cJSON_Array:
    case cJSON_Object: {
        if (depth > 32)
            break;
        int obj = (n->type & 0xff) == cJSON_Object;
        size_t list = as_pb_open(b, obj ? 6 : 5);
        for (const cJSON *c = n->child; c; c = c->next) {
            if (obj) {
                pb_kv_json(b, 1, c->string, c, depth + 1);
            } else {
                size_t v = as_pb_open(b, 1);
                pb_any_json(b, c, depth + 1);
                as_pb_close(b, v);
            }
        }
        as_pb_close(b, list);
        break;
    }
    default: /* null: an empty AnyValue */
        break;
    }
}

static void js_any_json(as_buf *b, const cJSON *n, int depth) {
    int64_t iv;
    switch (n->type & 0xff) {
    case cJSON_False:
    case cJSON_True:
        as_buf_puts(b, (n->type & 0xff) == cJSON_True ? "{\"boolValue\":true}"
                                                      : "{\"boolValue\":false}");
        break;
    case cJSON_Number:
        if (as_int(n, &iv)) {
            as_buf_printf(b, "{\"intValue\":\"%lld\"}", (long long)iv);
        } else {
            as_buf_puts(b, "{\"doubleValue\":");
            as_json_double(b, n->valuedouble);
            as_buf_putc(b, '}');
        }
        break;
    case cJSON_String:
        as_buf_puts(b, "{\"stringValue\":");
        as_json_cstr(b, n->valuestring ? n->valuestring : "");
        as_buf_putc(b, '}');
        break;
    case cJSON_Array:
    case cJSON_Object: {
        if (depth > 32) {
            as_buf_puts(b, "{}");
            break;
        }
        int obj = (n->type & 0xff) == cJSON_Object;
        as_buf_puts(b, obj ? "{\"kvlistValue\":{\"values\":[" : "{\"arrayValue\":{\"values\":[");
        for (const cJSON *c = n->child; c; c = c->next) {
            if (c != n->child)
                as_buf_putc(b, ',');
            if (obj) {
                as_buf_puts(b, "{\"key\":");
                as_json_cstr(b, c->string ? c->string : "");
                as_buf_puts(b, ",\"value\":");
                js_any_json(b, c, depth + 1);
                as_buf_putc(b, '}');
            } else {
                js_any_json(b, c, depth + 1);
            }
        }
        as_buf_puts(b, "]}}");
        break;
    }
    default:
        as_buf_puts(b, "{}");
        break;
    }
}

/* ---- attributes ---- */

static void pb_attr(as_buf *b, unsigned field, const as_otlp_attr *a) {
    if (a->type == AS_OTLP_JSON) {
        cJSON *j = as_dynlib_load(&as_cjson_lib) == 0 ? as_cjson.cJSON_Parse(a->s) : NULL;
        if (j) {
            pb_kv_json(b, field, a->key, j, 0);
            as_cjson.cJSON_Delete(j);
            return;
        }
    }
    size_t kv = as_pb_open(b, field);
    pb_str(b, 1, a->key);
    size_t val = as_pb_open(b, 2);
    switch (a->type) {
    case AS_OTLP_INT:
        as_pb_tag(b, 3, WT_VARINT);
        as_pb_varint(b, (uint64_t)a->i);
        break;
    case AS_OTLP_BOOL:
        as_pb_tag(b, 2, WT_VARINT);
        as_pb_varint(b, a->i != 0);
        break;
    case AS_OTLP_DOUBLE: {
        uint64_t bits;
        memcpy(&bits, &a->d, 8);
        pb_fixed64(b, 4, bits);
        break;
    }
    default:
        pb_str(b, 1, a->s ? a->s : "");
        break;
    }
    as_pb_close(b, val);
    as_pb_close(b, kv);
}

static void js_attr(as_buf *b, const as_otlp_attr *a) {
    as_buf_puts(b, "{\"key\":");
    as_json_cstr(b, a->key);
    as_buf_puts(b, ",\"value\":");
    cJSON *j = NULL;
    if (a->type == AS_OTLP_JSON && as_dynlib_load(&as_cjson_lib) == 0)
        j = as_cjson.cJSON_Parse(a->s);
    if (j) {
        js_any_json(b, j, 0);
        as_cjson.cJSON_Delete(j);
    } else if (a->type == AS_OTLP_INT) {
        as_buf_printf(b, "{\"intValue\":\"%lld\"}", (long long)a->i);
    } else if (a->type == AS_OTLP_BOOL) {
        as_buf_puts(b, a->i ? "{\"boolValue\":true}" : "{\"boolValue\":false}");
    } else if (a->type == AS_OTLP_DOUBLE) {
        as_buf_puts(b, "{\"doubleValue\":");
        as_json_double(b, a->d);
        as_buf_putc(b, '}');
    } else {
        as_buf_puts(b, "{\"stringValue\":");
        as_json_cstr(b, a->s ? a->s : "");
        as_buf_putc(b, '}');
    }
    as_buf_putc(b, '}');
}

static void js_attrs(as_buf *b, const as_otlp_attr *a, int n) {
    as_buf_puts(b, "\"attributes\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            as_buf_putc(b, ',');
        js_attr(b, &a[i]);
    }
    as_buf_putc(b, ']');
}

static void hex(as_buf *b, const uint8_t *p, size_t n) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        as_buf_putc(b, d[p[i] >> 4]);
        as_buf_putc(b, d[p[i] & 15]);
    }
}

static int zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* ---- the request ---- */

void as_otlp_begin(as_otlp_enc *e, as_buf *out, int protobuf, const as_otlp_attr *res, int nres,
                   const char *scope, const char *scope_version) {
    memset(e, 0, sizeof *e);
    e->out = out;
    e->protobuf = protobuf;
    if (protobuf) {
        e->mark[0] = as_pb_open(out, 1); /* resource_spans */
        size_t r = as_pb_open(out, 1);   /* resource */
        for (int i = 0; i < nres; i++)
            pb_attr(out, 1, &res[i]);
        as_pb_close(out, r);
        e->mark[1] = as_pb_open(out, 2); /* scope_spans */
        size_t s = as_pb_open(out, 1);   /* scope */
        pb_str(out, 1, scope);
        pb_str(out, 2, scope_version);
        as_pb_close(out, s);
        return;
    }
    as_buf_puts(out, "{\"resourceSpans\":[{\"resource\":{");
    js_attrs(out, res, nres);
    as_buf_puts(out, "},\"scopeSpans\":[{\"scope\":{\"name\":");
    as_json_cstr(out, scope);
    as_buf_puts(out, ",\"version\":");
    as_json_cstr(out, scope_version);
    as_buf_puts(out, "},\"spans\":[");
}

void as_otlp_add(as_otlp_enc *e, const as_otlp_span *sp) {
    as_buf *b = e->out;
    int root = zero(sp->parent_id, 8);
    if (e->protobuf) {
        size_t s = as_pb_open(b, 2);
        as_pb_bytes(b, 1, sp->trace_id, 16);
        as_pb_bytes(b, 2, sp->span_id, 8);
        if (!root)
            as_pb_bytes(b, 4, sp->parent_id, 8);
        pb_str(b, 5, sp->name ? sp->name : "");
        as_pb_tag(b, 6, WT_VARINT);
        as_pb_varint(b, (uint64_t)sp->kind);
        pb_fixed64(b, 7, (uint64_t)sp->start_ns);
        pb_fixed64(b, 8, (uint64_t)sp->end_ns);
        for (int i = 0; i < sp->nattrs; i++)
            pb_attr(b, 9, &sp->attrs[i]);
        if (sp->status_code || sp->status_msg) {
            size_t st = as_pb_open(b, 15);
            if (sp->status_msg)
                pb_str(b, 2, sp->status_msg);
            if (sp->status_code) {
                as_pb_tag(b, 3, WT_VARINT);
                as_pb_varint(b, (uint64_t)sp->status_code);
            }
            as_pb_close(b, st);
        }
        as_pb_close(b, s);
        e->nspans++;
        return;
    }
    if (e->nspans++)
        as_buf_putc(b, ',');
    as_buf_puts(b, "{\"traceId\":\"");
    hex(b, sp->trace_id, 16);
    as_buf_puts(b, "\",\"spanId\":\"");
    hex(b, sp->span_id, 8);
    as_buf_putc(b, '"');
    if (!root) {
        as_buf_puts(b, ",\"parentSpanId\":\"");
        hex(b, sp->parent_id, 8);
        as_buf_putc(b, '"');
    }
    as_buf_puts(b, ",\"name\":");
    as_json_cstr(b, sp->name ? sp->name : "");
    as_buf_printf(b, ",\"kind\":%d,\"startTimeUnixNano\":\"%lld\",\"endTimeUnixNano\":\"%lld\",",
                  sp->kind, (long long)sp->start_ns, (long long)sp->end_ns);
    js_attrs(b, sp->attrs, sp->nattrs);
    if (sp->status_code || sp->status_msg) {
        as_buf_printf(b, ",\"status\":{\"code\":%d", sp->status_code);
        if (sp->status_msg) {
            as_buf_puts(b, ",\"message\":");
            as_json_cstr(b, sp->status_msg);
        }
        as_buf_putc(b, '}');
    }
    as_buf_putc(b, '}');
}

void as_otlp_end(as_otlp_enc *e) {
    if (e->protobuf) {
        as_pb_close(e->out, e->mark[1]);
        as_pb_close(e->out, e->mark[0]);
        return;
    }
    as_buf_puts(e->out, "]}]}]}");
}
