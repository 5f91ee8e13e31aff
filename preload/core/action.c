/* action.c - turns a public agentsight_action into the normalised internal action
 * (validation and defaults of track_action), writes it as one JSONL line, and packs it
 * into a flat blob the pipeline can carry between threads. */
#include "core/dl_cjson.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/action.h"
#include "core/clock.h"
#include "core/crc32c.h"

/* The one definition of the cJSON table (core/dl_cjson.h), for every reader of JSON. */
AS_DYNLIB_DEFINE(as_cjson, AS_CJSON_FNS, "libcjson.so.1",
                 "JSON reading (spool replay, server answers, user JSON fields)");

#define NS_PER_MS 1000000LL

/* Writes "field: what" into msg and returns -1 (the validation failure value). */
static int refuse(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(char *msg, size_t cap, const char *fmt, ...) {
    if (msg && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Checks an optional text field is valid UTF-8. Returns 0, or -1 with msg set. */
static int check_text(const char *field, const char *s, char *msg, size_t cap) {
    if (s && !as_utf8_valid(s, strlen(s)))
        return refuse(msg, cap, "%s: not valid UTF-8", field);
    return 0;
}

/* cJSON reads numbers with strtod, so it lets through "+1", ".5", "01" and "1." which
 * strict JSON readers refuse; the text is embedded as is, so those are refused here.
 * Returns 1 when every number outside strings follows the JSON grammar. */
static int strict_numbers(const char *s) {
    int in_str = 0;
    for (const char *p = s; *p;) {
        char c = *p;
        if (in_str) {
            if (c == '\\' && p[1])
                p++;
            else if (c == '"')
                in_str = 0;
            p++;
            continue;
        }
        if (c == '"') {
            in_str = 1;
            p++;
            continue;
        }
        if (!(c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9'))) {
            p++;
            continue;
        }
        /* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
        if (*p == '-')
            p++;
        if (*p == '0')
            p++;
        else if (*p >= '1' && *p <= '9')
            while (*p >= '0' && *p <= '9')
                p++;
        else
            return 0;
        if (*p == '.') {
            p++;
            if (!(*p >= '0' && *p <= '9'))
                return 0;
            while (*p >= '0' && *p <= '9')
                p++;
        }
        if (*p == 'e' || *p == 'E') {
            p++;
            if (*p == '+' || *p == '-')
                p++;
            if (!(*p >= '0' && *p <= '9'))
                return 0;
            while (*p >= '0' && *p <= '9')
                p++;
        }
        if ((*p >= '0' && *p <= '9') || *p == '.' || *p == '+' || *p == '-')
            return 0; /* "01", "1.2.3" */
    }
    return 1;
}

/* Checks an optional JSON object text. Returns 0, or -1 with msg set. */
static int check_object(const char *field, const char *s, char *msg, size_t cap) {
    if (!s)
        return 0;
    size_t n = strlen(s);
    if (!as_utf8_valid(s, n))
        return refuse(msg, cap, "%s: not valid UTF-8", field);
    if (as_dynlib_load(&as_cjson_lib) != 0)
        return refuse(msg, cap, "%s: cannot be checked (libcjson.so.1 is missing)", field);
    /* The length includes the NUL: with require_null_terminated cJSON wants to see it. */
    cJSON *j = as_cjson.cJSON_ParseWithLengthOpts(s, n + 1, NULL, 1);
    int ok = j && as_cjson.cJSON_IsObject(j);
    as_cjson.cJSON_Delete(j);
    if (!ok)
        return refuse(msg, cap, "%s: not a JSON object", field);
    size_t at = 0;
    const char *why = "";
    if (as_json_escapes_check(s, n, &at, &why) != 0)
        return refuse(msg, cap, "%s: not valid JSON: bad escape '%.6s' at byte %zu (%s)", field,
                      s + at, at, why);
    if (!strict_numbers(s))
        return refuse(msg, cap, "%s: not a JSON object (a number is not valid JSON)", field);
    return 0;
}

/* Parses an optional timestamp. Returns 0 (*given says whether it was), or -1 with msg. */
static int check_time(const char *field, const char *s, int64_t *ns, int *given, char *msg,
                      size_t cap) {
    *given = 0;
    if (!s)
        return 0;
    if (as_iso_parse(s, ns) != 0)
        return refuse(msg, cap, "%s: not an ISO-8601 timestamp", field);
    *given = 1;
    return 0;
}

/* Validates and normalises (see action.h). Returns 0 with *out filled, or -1 with msg set
 * and *out unspecified. */
int as_action_validate(const agentsight_action *action, int64_t now_ns, const char *default_conv,
                       as_action *out, char *msg, size_t cap) {
    if (!action || !action->action_name)
        return refuse(msg, cap, "action_name: missing");
    const agentsight_action *a = action;
    size_t name_len = strnlen(a->action_name, AGENTSIGHT_MAX_NAME + 1);
    if (name_len == 0)
        return refuse(msg, cap, "action_name: empty");
    if (name_len > AGENTSIGHT_MAX_NAME)
        return refuse(msg, cap, "action_name: longer than %d bytes", AGENTSIGHT_MAX_NAME);
    if (!as_utf8_valid(a->action_name, name_len))
        return refuse(msg, cap, "action_name: not valid UTF-8");

    int64_t start = 0, end = 0;
    int has_start, has_end;
    if (check_time("started_at", a->started_at, &start, &has_start, msg, cap) ||
        check_time("ended_at", a->ended_at, &end, &has_end, msg, cap))
        return -1;
    if (a->duration_ms < 0)
        return refuse(msg, cap, "duration_ms: negative");
    int64_t dur_ns = 0;
    if (__builtin_mul_overflow(a->duration_ms, NS_PER_MS, &dur_ns))
        return refuse(msg, cap, "duration_ms: too large");
    int has_dur = a->duration_ms > 0;
    if (has_start && has_end && end < start)
        return refuse(msg, cap, "ended_at: before started_at");
    if (has_start && has_end && has_dur) {
        int64_t diff;
        if (__builtin_sub_overflow(end, start, &diff) ||
            __builtin_sub_overflow(diff, dur_ns, &diff) || diff > NS_PER_MS || diff < -NS_PER_MS)
            return refuse(msg, cap,
                          "duration_ms: %lld disagrees with started_at and ended_at by more "
                          "than 1 ms",
                          (long long)a->duration_ms);
    }

    if (check_object("tools_used", a->tools_used, msg, cap) ||
        check_text("response", a->response, msg, cap) ||
        check_text("error_msg", a->error_msg, msg, cap))
        return -1;
    const char *conv = a->conversation_id;
    if (conv && *conv) {
        if (strnlen(conv, AGENTSIGHT_MAX_NAME + 1) > AGENTSIGHT_MAX_NAME)
            return refuse(msg, cap, "conversation_id: longer than %d bytes", AGENTSIGHT_MAX_NAME);
        if (check_text("conversation_id", conv, msg, cap))
            return -1;
    } else {
        conv = default_conv; /* NULL or "" means not given, as in the Python SDK */
    }
    if (!conv)
        conv = "";
    if (check_object("metadata", a->metadata, msg, cap))
        return -1;

    /* Defaults (agentsight.h). */
    if (has_start && has_end) {
        /* duration_ms as given (it agrees) or computed */
    } else if (has_start && has_dur) {
        if (__builtin_add_overflow(start, dur_ns, &end))
            return refuse(msg, cap, "duration_ms: too large");
    } else if (has_end && has_dur) {
        if (__builtin_sub_overflow(end, dur_ns, &start))
            return refuse(msg, cap, "duration_ms: too large");
    } else if (has_start) {
        end = now_ns > start ? now_ns : start; /* a start in the future ends at once */
    } else if (has_end) {
        start = end;
    } else {
        end = now_ns;
        if (__builtin_sub_overflow(end, dur_ns, &start))
            return refuse(msg, cap, "duration_ms: too large");
    }

    memset(out, 0, sizeof *out);
    out->action_name = a->action_name;
    out->started_ns = start;
    out->ended_ns = end;
    out->duration_ms = has_dur ? a->duration_ms : (int64_t)(((__int128)end - start) / NS_PER_MS);
    out->tools_used = a->tools_used;
    out->response = a->response;
    out->error_msg = a->error_msg;
    out->conversation_id = conv;
    out->metadata = a->metadata;
    out->timestamp_ns = now_ns;
    return 0;
}

/* Embeds trusted JSON object text on one line: outside strings CR/LF/TAB become spaces,
 * inside strings raw control bytes (which lenient parsers let through) are escaped. */
static void put_raw_json(as_buf *b, const char *s) {
    if (!s || !*s) {
        as_buf_put(b, "null", 4);
        return;
    }
    size_t n = strlen(s);
    if (as_buf_reserve(b, n * 6) != 0)
        return;
    char *o = b->data + b->len;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20) {
            *o++ = (char)c;
            if (c == '"')
                in_str = !in_str;
            else if (c == '\\' && in_str && i + 1 < n && (unsigned char)s[i + 1] >= 0x20)
                *o++ = s[++i]; /* the escaped byte cannot end the string */
            continue;
        }
        if (!in_str) {
            *o++ = ' ';
            continue;
        }
        static const char hex[] = "0123456789abcdef";
        memcpy(o, "\\u00", 4);
        o[4] = hex[c >> 4];
        o[5] = hex[c & 15];
        o += 6;
    }
    b->len = (size_t)(o - b->data);
}

static void put_key(as_buf *b, const char *k, size_t n) {
    as_buf_put(b, k, n);
}
#define KEY(b, lit) put_key((b), lit, sizeof(lit) - 1)

static void put_time(as_buf *b, int64_t ns) {
    char iso[AS_ISO_LEN];
    int n = as_iso_format(ns, iso);
    as_buf_putc(b, '"');
    as_buf_put(b, iso, (size_t)n);
    as_buf_putc(b, '"');
}

/* Appends one line. On OOM the buffer's oom flag is set and the line is incomplete. */
void as_action_to_jsonl(const as_action *a, as_buf *b) {
    KEY(b, "{\"action_name\":");
    as_json_cstr(b, a->action_name);
    KEY(b, ",\"started_at\":");
    put_time(b, a->started_ns);
    KEY(b, ",\"ended_at\":");
    put_time(b, a->ended_ns);
    KEY(b, ",\"duration_ms\":");
    as_json_i64(b, a->duration_ms);
    KEY(b, ",\"tools_used\":");
    put_raw_json(b, a->tools_used);
    KEY(b, ",\"response\":");
    as_json_cstr(b, a->response);
    KEY(b, ",\"error_msg\":");
    as_json_cstr(b, a->error_msg);
    KEY(b, ",\"conversation_id\":");
    as_json_cstr(b, a->conversation_id);
    KEY(b, ",\"metadata\":");
    put_raw_json(b, a->metadata);
    KEY(b, ",\"timestamp\":");
    put_time(b, a->timestamp_ns);
    if (a->event_id) {
        KEY(b, ",\"event_id\":");
        as_json_cstr(b, a->event_id);
    }
    KEY(b, "}\n");
}

/* ---- flat blob ----
 * Layout (native endianness, the blob never leaves the process):
 *   u32 magic "ASA1" | u32 total size
 *   i64 started_ns, ended_ns, duration_ms, timestamp_ns
 *   7 x { u32 offset, u32 length }   (offset 0 = NULL) in field order: action_name,
 *                                    tools_used, response, error_msg, conversation_id,
 *                                    metadata, then {0, checksum}: CRC-32C
 *                                    (crc32c.h, from 0xffffffff) of the whole blob
 *                                    with this checksum field read as 0
 *   string bytes, each followed by a NUL
 */
#define BLOB_MAGIC 0x31415341u /* "ASA1" */
#define BLOB_NSTR 7

typedef struct blob_head {
    uint32_t magic, size;
    int64_t started_ns, ended_ns, duration_ms, timestamp_ns;
    struct {
        uint32_t off, len;
    } str[BLOB_NSTR];
} blob_head;

#define SUM_OFF offsetof(blob_head, str[BLOB_NSTR - 1].len) /* the checksum field */

static void fields(const as_action *a, const char *f[BLOB_NSTR]) {
    f[0] = a->action_name;
    f[1] = a->tools_used;
    f[2] = a->response;
    f[3] = a->error_msg;
    f[4] = a->conversation_id;
    f[5] = a->metadata;
    f[6] = NULL;
}

/* Returns the blob size; this function can't fail (strings over 4 GiB are not carried). */
size_t as_action_pack_size(const as_action *a) {
    const char *f[BLOB_NSTR];
    fields(a, f);
    size_t n = sizeof(blob_head);
    for (int i = 0; i < BLOB_NSTR; i++)
        if (f[i])
            n += strlen(f[i]) + 1;
    return n;
}

/* Writes the blob (as_action_pack_size(a) bytes). This function can't fail. */
void as_action_pack(const as_action *a, void *blob) {
    const char *f[BLOB_NSTR];
    fields(a, f);
    blob_head h;
    memset(&h, 0, sizeof h);
    h.magic = BLOB_MAGIC;
    h.started_ns = a->started_ns;
    h.ended_ns = a->ended_ns;
    h.duration_ms = a->duration_ms;
    h.timestamp_ns = a->timestamp_ns;
    char *base = blob;
    size_t off = sizeof h;
    for (int i = 0; i < BLOB_NSTR; i++) {
        if (!f[i])
            continue;
        size_t len = strlen(f[i]);
        h.str[i].off = (uint32_t)off;
        h.str[i].len = (uint32_t)len;
        memcpy(base + off, f[i], len + 1);
        off += len + 1;
    }
    h.size = (uint32_t)off;
    memcpy(base, &h, sizeof h);
    as_action_blob_seal(base, off);
}

/* The checksum of a blob of len bytes (at least a header), its checksum field read as 0. */
static uint32_t blob_sum(const char *base, size_t len) {
    static const unsigned char zero[4];
    uint32_t c = as_crc32c(0xffffffffu, base, SUM_OFF);
    c = as_crc32c(c, zero, sizeof zero);
    return as_crc32c(c, base + SUM_OFF + 4, len - SUM_OFF - 4);
}

void as_action_blob_seal(void *blob, size_t len) {
    if (!blob || len < sizeof(blob_head))
        return;
    uint32_t crc = blob_sum(blob, len);
    memcpy((char *)blob + SUM_OFF, &crc, sizeof crc);
}

/* Makes *out borrow the blob. Returns 0, or -1 (and *out untouched) when the blob is
 * short, has a bad magic or size, a string outside it or not NUL-terminated where its
 * length says, or no action_name. */
int as_action_unpack(const void *blob, size_t len, as_action *out) {
    blob_head h;
    if (!blob || len < sizeof h)
        return -1;
    memcpy(&h, blob, sizeof h);
    if (blob_sum(blob, len) != h.str[BLOB_NSTR - 1].len)
        return AS_ACTION_DAMAGED; /* any byte of it, magic and size included */
    if (h.magic != BLOB_MAGIC || h.size != len)
        return -1;
    const char *base = blob;
    const char *f[BLOB_NSTR];
    for (int i = 0; i < BLOB_NSTR; i++) {
        f[i] = NULL;
        if (h.str[i].off == 0)
            continue;
        uint64_t off = h.str[i].off, n = h.str[i].len;
        if (off < sizeof h || off + n + 1 > len || base[off + n] != '\0' ||
            memchr(base + off, '\0', n) != NULL)
            return -1;
        f[i] = base + off;
    }
    if (!f[0] || f[6])
        return -1;
    memset(out, 0, sizeof *out);
    out->action_name = f[0];
    out->tools_used = f[1];
    out->response = f[2];
    out->error_msg = f[3];
    out->conversation_id = f[4];
    out->metadata = f[5];
    out->started_ns = h.started_ns;
    out->ended_ns = h.ended_ns;
    out->duration_ms = h.duration_ms;
    out->timestamp_ns = h.timestamp_ns;
    return 0;
}
