/* config.c - reads the interposer's INI-like config file into an as_config: [output] keys
 * and [actions] entries (bare symbols, globs, name@VERSION, C prototypes, options). Every
 * refused line is reported as FILE:LINE:COL and skipped; the rest is still used. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentsight.h"
#include "core/log.h"
#include "hook/config.h"
#include "hook/llm_addr.h"
#include "hook/cproto.h"

#define CONFIG_MAX_BYTES (64u << 20) /* larger files are refused as unreadable */
#define MAX_NAME_BYTES AGENTSIGHT_MAX_NAME
#define MAX_SERVICE_BYTES 127
#define MAX_FLUSH_MS 3600000

enum { SEC_NONE, SEC_OUTPUT, SEC_ACTIONS, SEC_LLM, SEC_UNKNOWN };

enum { KEY_SINK, KEY_CONV, KEY_CAPTURE, KEY_MAX_STRING, KEY_SERVICE, KEY_FLUSH, KEY_QUEUE, NKEYS };
static const char *const output_keys[NKEYS] = {
    "sink", "conversation_id", "capture", "max_string", "service", "flush_timeout_ms", "queue"};

enum { OPT_NAME, OPT_LIB, OPT_DISPLAY, OPT_ERROR_IF, OPT_CAPTURE, OPT_MAX_STRING, OPT_HOOK, NOPTS };
static const char *const option_names[NOPTS] = {"name",    "lib",        "display", "error_if",
                                                "capture", "max_string", "hook"};

static const char *const errif_names[] = {"none",    "null",  "negative", "zero",
                                          "nonzero", "false", "errno"};

typedef struct parser {
    const char *name; /* file name for messages */
    as_config *cfg;
    int line;
    const char *l; /* the current line (comment removed) */
    size_t len;
    int section;
    int key_line[NKEYS]; /* line where each [output] key was set, 0 when unset */
    int cap;             /* allocated entries */
    int oom;
    int shown; /* messages about this config so far (printed up to AS_CONFIG_MSG_CAP) */
} parser;

/* Prints "NAME:LINE:COL: message" (COL = off + 1) and counts it. This function can't
 * fail. */
static void perr(parser *p, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void perr(parser *p, size_t off, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->shown++ < AS_CONFIG_MSG_CAP)
        as_error("%s:%d:%zu: %s", p->name, p->line, off + 1, msg);
    p->cfg->errors++;
}

/* Copies up to 40 bytes of s for quoting in a message, with "..." when cut. */
static const char *quote(const char *s, size_t n, char buf[64]) {
    snprintf(buf, 64, "%.*s%s", (int)(n > 40 ? 40 : n), s, n > 40 ? "..." : "");
    return buf;
}

static int is_space(char c) {
    return c == ' ' || c == '\t';
}

static int is_word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static int has_glob(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '*' || s[i] == '?' || s[i] == '[')
            return 1;
    }
    return 0;
}

/* 1 when n bytes of s are valid UTF-8 (no overlongs, surrogates or values > U+10FFFF). */
static int utf8_ok(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        size_t extra;
        unsigned min, cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            extra = 1, min = 0x80, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2, min = 0x800, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= extra)
            return 0;
        for (size_t k = 1; k <= extra; k++) {
            if ((u[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (u[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += extra + 1;
    }
    return 1;
}

/* Parses a decimal in [lo, hi]. Returns 0 and *out, or -1. */
static int parse_int(const char *s, size_t n, long lo, long hi, int *out) {
    long v = 0;
    if (n == 0 || n > 10)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* Index of the n-byte word s in names[count], or -1. */
static int lookup(const char *const *names, int count, const char *s, size_t n) {
    for (int i = 0; i < count; i++) {
        if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0)
            return i;
    }
    return -1;
}

/* strndup that records an out-of-memory condition. Returns the copy or NULL. */
static char *copy_str(parser *p, const char *s, size_t n) {
    char *c = strndup(s, n);
    if (!c)
        p->oom = 1;
    return c;
}

/* A value read from the line: its bytes (unescaped into buf when it was quoted). */
typedef struct value {
    const char *s;
    size_t n;
    size_t off; /* where it starts in the line */
    char *buf;  /* malloc'ed unescaped copy of a quoted value, else NULL */
} value;

/* Reads a value at *pos: "quoted" (\" and \\ escapes) or up to the next blank (or to the
 * end of the line when to_end). Returns 0 with *v filled and *pos after it, or -1 after
 * printing an error. */
static int read_value(parser *p, size_t *pos, int to_end, value *v) {
    size_t i = *pos;
    memset(v, 0, sizeof *v);
    v->off = i;
    if (i < p->len && p->l[i] == '"') {
        char *buf = malloc(p->len - i);
        size_t n = 0;
        if (!buf) {
            p->oom = 1;
            perr(p, i, "out of memory");
            return -1;
        }
        for (i++; i < p->len && p->l[i] != '"'; i++) {
            if (p->l[i] == '\\') {
                if (i + 1 >= p->len)
                    break;
                if (p->l[i + 1] != '"' && p->l[i + 1] != '\\') {
                    perr(p, i, "unknown escape '\\%c' in a quoted string (only \\\" and \\\\)",
                         p->l[i + 1]);
                    free(buf);
                    return -1;
                }
                i++;
            }
            buf[n++] = p->l[i];
        }
        if (i >= p->len) {
            perr(p, v->off, "unterminated quoted string");
            free(buf);
            return -1;
        }
        i++;
        if (i < p->len && !is_space(p->l[i])) {
            perr(p, i, "expected a blank after the closing quote");
            free(buf);
            return -1;
        }
        v->buf = buf, v->s = buf, v->n = n;
        *pos = i;
        return 0;
    }
    size_t end = i;
    while (end < p->len && (to_end || !is_space(p->l[end])))
        end++;
    v->s = p->l + i, v->n = end - i;
    *pos = end;
    return 0;
}

/* Checks a comma-separated sink URI list. Returns 0, or -1 after printing an error. */
static int check_sinks(parser *p, const value *v) {
    size_t i = 0;
    while (i <= v->n) {
        size_t end = i;
        while (end < v->n && v->s[end] != ',')
            end++;
        size_t a = i, b = end;
        while (a < b && is_space(v->s[a]))
            a++;
        while (b > a && is_space(v->s[b - 1]))
            b--;
        const char *u = v->s + a;
        size_t n = b - a;
        int ok = (n == 6 && memcmp(u, "stderr", 6) == 0) || (n == 4 && memcmp(u, "null", 4) == 0) ||
                 (n == 10 && memcmp(u, "agentsight", 10) == 0) ||
                 (n == 4 && memcmp(u, "otlp", 4) == 0) || (n > 5 && memcmp(u, "file:", 5) == 0) ||
                 (n > 12 && memcmp(u, "otlp:http://", 12) == 0) ||
                 (n > 13 && memcmp(u, "otlp:https://", 13) == 0);
        if (!ok) {
            char q[64];
            perr(p, v->buf ? v->off : v->off + a,
                 "unknown sink URI '%s': expected file:PATH, stderr, null, agentsight, otlp or "
                 "otlp:URL",
                 quote(u, n, q));
            return -1;
        }
        i = end + 1;
    }
    return 0;
}

/* Applies one "key = value" line of [output]. Errors are printed; nothing returned. */
/* Splits a "key = value" line at start: returns the index of the key in keys (with *at
 * past the '=' and the blanks after it), or -1 with the error printed ("unknown key",
 * naming the section and what it expects). */
static int key_of_line(parser *p, size_t start, const char *const *keys, int nkeys,
                       const char *section, const char *expected, size_t *at) {
    char q[64];
    size_t i = start;
    while (i < p->len && is_word_char(p->l[i]))
        i++;
    size_t key_end = i;
    while (i < p->len && is_space(p->l[i]))
        i++;
    if (key_end == start || i >= p->len || p->l[i] != '=') {
        perr(p, key_end == start ? start : i, "expected 'key = value'");
        return -1;
    }
    int key = lookup(keys, nkeys, p->l + start, key_end - start);
    if (key < 0) {
        perr(p, start, "unknown key '%s' in [%s]: expected %s",
             quote(p->l + start, key_end - start, q), section, expected);
        return -1;
    }
    i++;
    while (i < p->len && is_space(p->l[i]))
        i++;
    *at = i;
    return key;
}

static void output_line(parser *p, size_t start) {
    as_config *cfg = p->cfg;
    char q[64];
    size_t i;
    int key = key_of_line(p, start, output_keys, NKEYS, "output",
                          "sink, conversation_id, capture, max_string, service, "
                          "flush_timeout_ms or queue",
                          &i);
    if (key < 0)
        return;
    if (p->key_line[key]) {
        perr(p, start, "duplicate key '%s' (first set on line %d)", output_keys[key],
             p->key_line[key]);
        return;
    }
    value v;
    if (read_value(p, &i, 1, &v) < 0)
        return;
    if (v.n == 0) {
        perr(p, v.off, "empty value for '%s'", output_keys[key]);
        goto done;
    }
    int num = 0;
    switch (key) {
    case KEY_SINK:
        if (check_sinks(p, &v) < 0)
            goto done;
        cfg->sink = copy_str(p, v.s, v.n);
        break;
    case KEY_CONV:
        if (v.n > MAX_NAME_BYTES || !utf8_ok(v.s, v.n)) {
            perr(p, v.off, "conversation_id must be 1..%d bytes of UTF-8", MAX_NAME_BYTES);
            goto done;
        }
        cfg->conversation_id = copy_str(p, v.s, v.n);
        break;
    case KEY_SERVICE:
        if (v.n > MAX_SERVICE_BYTES || !utf8_ok(v.s, v.n)) {
            perr(p, v.off, "service must be 1..%d bytes of UTF-8", MAX_SERVICE_BYTES);
            goto done;
        }
        cfg->service = copy_str(p, v.s, v.n);
        break;
    case KEY_CAPTURE:
        if ((num = lookup((const char *const[]){"on", "off"}, 2, v.s, v.n)) < 0) {
            perr(p, v.off, "bad value '%s' for capture: expected on or off", quote(v.s, v.n, q));
            goto done;
        }
        cfg->capture_off = num;
        break;
    case KEY_MAX_STRING:
        if (parse_int(v.s, v.n, 1, AS_MAX_STRING_LIMIT, &num) < 0) {
            perr(p, v.off, "bad value '%s' for max_string: expected a number from 1 to %d",
                 quote(v.s, v.n, q), AS_MAX_STRING_LIMIT);
            goto done;
        }
        cfg->max_string = num;
        break;
    case KEY_FLUSH:
        if (parse_int(v.s, v.n, 1, MAX_FLUSH_MS, &num) < 0) {
            perr(p, v.off, "bad value '%s' for flush_timeout_ms: expected a number from 1 to %d",
                 quote(v.s, v.n, q), MAX_FLUSH_MS);
            goto done;
        }
        cfg->flush_timeout_ms = num;
        break;
    case KEY_QUEUE:
        if ((num = lookup((const char *const[]){"wait", "drop"}, 2, v.s, v.n)) < 0) {
            perr(p, v.off, "bad value '%s' for queue: expected drop or wait", quote(v.s, v.n, q));
            goto done;
        }
        cfg->queue_policy = num == 0 ? AGENTSIGHT_QUEUE_WAIT : AGENTSIGHT_QUEUE_DROP;
        break;
    }
    p->key_line[key] = p->line;
done:
    free(v.buf);
}

/* Validates a bare symbol token "name", "glob*", "name@VERSION". Returns 0, or -1 after
 * printing an error. */
static int check_symbol(parser *p, size_t start, size_t end) {
    size_t at = end, depth = 0;
    for (size_t i = start; i < end; i++) {
        char c = p->l[i];
        if (c == '@' && at == end) {
            at = i;
            if (i + 1 < end && p->l[i + 1] == '@')
                i++;
            if (i + 1 >= end) {
                perr(p, i, "expected a version after '@'");
                return -1;
            }
            continue;
        }
        if (c == '[')
            depth = 1;
        else if (c == ']')
            depth = 0;
        if (is_word_char(c) || c == '.' || c == '$' || c == '*' || c == '?' || c == '[' ||
            c == ']' || (depth && (c == '!' || c == '^' || c == '-')))
            continue;
        if (c == '=') {
            perr(p, start, "expected a symbol name or a prototype before the options");
            return -1;
        }
        if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
            perr(p, i, "unexpected byte 0x%02x in a symbol name", (unsigned char)c);
        else
            perr(p, i, "unexpected character '%c' in a symbol name", c);
        return -1;
    }
    if (at == start) {
        perr(p, start, "expected a symbol name before '@'");
        return -1;
    }
    if (depth) {
        perr(p, start, "unclosed '[' in a glob");
        return -1;
    }
    return 0;
}

/* Parses the options after an entry's symbol or prototype into e. Returns 0, or -1 after
 * printing an error (e's strings are freed by the caller). */
static int entry_options(parser *p, size_t i, as_entry *e) {
    int seen[NOPTS] = {0};
    char q[64];
    for (;;) {
        while (i < p->len && is_space(p->l[i]))
            i++;
        if (i >= p->len)
            return 0;
        size_t key = i;
        while (i < p->len && is_word_char(p->l[i]))
            i++;
        size_t key_end = i;
        while (i < p->len && is_space(p->l[i]))
            i++;
        if (key_end == key || i >= p->len || p->l[i] != '=') {
            size_t n = key_end > key ? key_end - key : 1;
            perr(p, key, "unexpected '%s': options are written key=value", quote(p->l + key, n, q));
            return -1;
        }
        int opt = lookup(option_names, NOPTS, p->l + key, key_end - key);
        if (opt < 0) {
            perr(p, key,
                 "unknown option '%s': expected name, lib, display, error_if, capture, "
                 "max_string or hook",
                 quote(p->l + key, key_end - key, q));
            return -1;
        }
        if (seen[opt]) {
            perr(p, key, "duplicate option '%s'", option_names[opt]);
            return -1;
        }
        seen[opt] = 1;
        i++;
        while (i < p->len && is_space(p->l[i]))
            i++;
        value v;
        if (read_value(p, &i, 0, &v) < 0)
            return -1;
        int rc = -1, num = 0;
        if (v.n == 0) {
            perr(p, v.off, "empty value for '%s'", option_names[opt]);
            goto next;
        }
        switch (opt) {
        case OPT_NAME:
            if (has_glob(v.s, v.n)) {
                perr(p, v.off, "name= must not contain a glob: '%s'", quote(v.s, v.n, q));
                goto next;
            }
            if (v.n > MAX_NAME_BYTES || !utf8_ok(v.s, v.n)) {
                perr(p, v.off, "name= must be 1..%d bytes of UTF-8", MAX_NAME_BYTES);
                goto next;
            }
            e->name = copy_str(p, v.s, v.n);
            break;
        case OPT_LIB:
            if (memchr(v.s, '/', v.n)) {
                perr(p, v.off, "lib= matches a file name, not a path: '%s'", quote(v.s, v.n, q));
                goto next;
            }
            e->lib = copy_str(p, v.s, v.n);
            break;
        case OPT_DISPLAY:
            if (v.n > MAX_NAME_BYTES || !utf8_ok(v.s, v.n)) {
                perr(p, v.off, "display= must be 1..%d bytes of UTF-8", MAX_NAME_BYTES);
                goto next;
            }
            e->display = copy_str(p, v.s, v.n);
            break;
        case OPT_ERROR_IF:
            if ((num = lookup(errif_names + 1, 6, v.s, v.n)) < 0) {
                perr(p, v.off,
                     "bad value '%s' for error_if: expected null, negative, zero, nonzero, "
                     "false or errno",
                     quote(v.s, v.n, q));
                goto next;
            }
            e->error_if = num + 1;
            break;
        case OPT_CAPTURE:
            if ((num = lookup((const char *const[]){"full", "none"}, 2, v.s, v.n)) < 0) {
                perr(p, v.off, "bad value '%s' for capture: expected none or full",
                     quote(v.s, v.n, q));
                goto next;
            }
            e->capture_none = num;
            break;
        case OPT_MAX_STRING:
            if (parse_int(v.s, v.n, 1, AS_MAX_STRING_LIMIT, &num) < 0) {
                perr(p, v.off, "bad value '%s' for max_string: expected a number from 1 to %d",
                     quote(v.s, v.n, q), AS_MAX_STRING_LIMIT);
                goto next;
            }
            e->max_string = num;
            break;
        case OPT_HOOK:
            if ((num = lookup((const char *const[]){"auto", "got", "entry"}, 3, v.s, v.n)) < 0) {
                perr(p, v.off, "bad value '%s' for hook: expected auto, got or entry",
                     quote(v.s, v.n, q));
                goto next;
            }
            e->hook = num;
            break;
        }
        rc = 0;
    next:
        free(v.buf);
        if (rc < 0)
            return -1;
    }
}

/* Frees the strings of one entry. This function can't fail. */
static void entry_free(as_entry *e) {
    free(e->pattern);
    free(e->version);
    free(e->name);
    free(e->lib);
    free(e->display);
    memset(e, 0, sizeof *e);
}

/* Refuses error_if rules a known result type can never satisfy. Returns 0 or -1. */
static int check_errif(parser *p, size_t off, const as_entry *e) {
    if (!e->has_proto || e->error_if == AS_ERRIF_NONE || e->error_if == AS_ERRIF_ERRNO)
        return 0;
    int k = e->proto.ret.kind;
    if (k == AS_K_VOID) {
        perr(p, off, "error_if=%s needs a result, but the prototype returns void",
             errif_names[e->error_if]);
        return -1;
    }
    if (e->error_if == AS_ERRIF_NULL && k != AS_K_PTR && k != AS_K_STR) {
        perr(p, off, "error_if=null needs a pointer result, but the prototype returns %s",
             e->proto.ret.spelling);
        return -1;
    }
    return 0;
}

/* Parses one [actions] line starting at start and appends the entry. Errors printed. */
static void actions_line(parser *p, size_t start) {
    as_entry e;
    memset(&e, 0, sizeof e);
    e.line = p->line;
    size_t sym = start, sym_end, opts;
    const char *lp = memchr(p->l + start, '(', p->len - start);
    size_t paren = lp ? (size_t)(lp - p->l) : p->len;
    int is_proto = lp != NULL;
    for (size_t i = start; i < paren; i++) {
        if (p->l[i] == '=' || p->l[i] == '"')
            is_proto = 0;
    }
    if (is_proto) {
        as_cproto_err err;
        size_t name_off, name_len, used;
        if (as_cproto_parse(p->l + start, p->len - start, &e.proto, &name_off, &name_len, &used,
                            &err) < 0) {
            perr(p, start + err.off, "%s", err.msg);
            return;
        }
        e.has_proto = 1;
        sym = start + name_off;
        sym_end = sym + name_len;
        opts = start + used;
        if (opts < p->len && !is_space(p->l[opts])) {
            perr(p, opts, "expected a blank before the options");
            return;
        }
    } else {
        sym_end = start;
        while (sym_end < p->len && !is_space(p->l[sym_end]))
            sym_end++;
        if (check_symbol(p, sym, sym_end) < 0)
            return;
        opts = sym_end;
    }
    const char *at = memchr(p->l + sym, '@', sym_end - sym);
    size_t pat_end = at ? (size_t)(at - p->l) : sym_end;
    e.pattern = copy_str(p, p->l + sym, pat_end - sym);
    e.is_glob = has_glob(p->l + sym, pat_end - sym);
    if (at) {
        size_t v = pat_end + 1;
        if (v < sym_end && p->l[v] == '@')
            v++;
        e.version = copy_str(p, p->l + v, sym_end - v);
    }
    if (entry_options(p, opts, &e) < 0 || check_errif(p, sym, &e) < 0)
        goto fail;
    if (p->oom)
        goto fail;
    if (p->cfg->nentries == p->cap) {
        /* An entry is 1.5 KB: a small first array keeps the usual one- or two-entry config
         * on one heap page instead of spreading later allocations over 24 KB. */
        int cap = p->cap ? p->cap * 2 : 2;
        as_entry *grown = realloc(p->cfg->entries, (size_t)cap * sizeof *grown);
        if (!grown) {
            p->oom = 1;
            goto fail;
        }
        p->cfg->entries = grown;
        p->cap = cap;
    }
    p->cfg->entries[p->cfg->nentries++] = e;
    return;
fail:
    entry_free(&e);
}

/* Handles a "key = value" line of [llm]: enable = on|off, capture = none|response|prompts,
 * max_string = 1..AS_MAX_STRING_LIMIT, plain_http = off|loopback|ADDR[:PORT],... Errors
 * printed. */
static void llm_line(parser *p, size_t start) {
    static const char *const keys[] = {"enable", "capture", "max_string", "plain_http"};
    char q[64];
    size_t i;
    int key =
        key_of_line(p, start, keys, 4, "llm", "enable, capture, max_string or plain_http", &i);
    if (key < 0)
        return;
    value v;
    if (read_value(p, &i, 1, &v) < 0)
        return;
    int num = -1;
    if (key == 3) {
        char spec[sizeof p->cfg->llm_plain_http], why[160];
        as_llm_watchset ws;
        if (v.n >= sizeof spec) {
            perr(p, v.off, "plain_http is longer than %zu bytes", sizeof spec - 1);
        } else {
            memcpy(spec, v.s, v.n);
            spec[v.n] = '\0';
            if (as_llm_addr_parse(spec, &ws, why, sizeof why) != 0)
                perr(p, v.off,
                     "bad value for plain_http: %s (expected off, loopback or "
                     "ADDRESS[:PORT] entries separated by commas)",
                     why);
            else
                memcpy(p->cfg->llm_plain_http, spec, v.n + 1);
        }
    } else if (key == 0) {
        num = lookup((const char *const[]){"off", "on"}, 2, v.s, v.n);
        if (num < 0)
            perr(p, v.off, "bad value '%s' for enable: expected on or off", quote(v.s, v.n, q));
        else
            p->cfg->llm_enable = num;
    } else if (key == 1) {
        num = lookup((const char *const[]){"none", "response", "prompts", "off"}, 4, v.s, v.n);
        if (num < 0)
            perr(p, v.off, "bad value '%s' for capture: expected none, response or prompts",
                 quote(v.s, v.n, q));
        else
            p->cfg->llm_capture = num == 3 ? 0 : num;
    } else if (parse_int(v.s, v.n, 1, AS_MAX_STRING_LIMIT, &num) < 0) {
        perr(p, v.off, "bad value '%s' for max_string: expected a number from 1 to %d",
             quote(v.s, v.n, q), AS_MAX_STRING_LIMIT);
    } else {
        p->cfg->llm_max_string = num;
    }
    free(v.buf); /* a quoted value's copy */
}

/* Handles a "[name]" line. Errors printed; p->section updated. */
static void section_line(parser *p, size_t start) {
    char q[64];
    const char *close = memchr(p->l + start, ']', p->len - start);
    if (!close) {
        perr(p, p->len, "expected ']'");
        p->section = SEC_UNKNOWN;
        return;
    }
    size_t end = (size_t)(close - p->l);
    for (size_t i = end + 1; i < p->len; i++) {
        if (!is_space(p->l[i])) {
            perr(p, i, "unexpected text after the section header");
            p->section = SEC_UNKNOWN;
            return;
        }
    }
    size_t a = start + 1, b = end;
    while (a < b && is_space(p->l[a]))
        a++;
    while (b > a && is_space(p->l[b - 1]))
        b--;
    int sec = lookup((const char *const[]){"output", "actions", "llm"}, 3, p->l + a, b - a);
    if (sec < 0) {
        perr(p, start, "unknown section '[%s]': expected [output], [actions] or [llm]",
             quote(p->l + a, b - a, q));
        p->section = SEC_UNKNOWN;
        return;
    }
    p->section = sec == 0 ? SEC_OUTPUT : sec == 1 ? SEC_ACTIONS : SEC_LLM;
}

/* Length of the line without its comment: '#' or ';' outside quotes, at the start or
 * after a blank. */
static size_t strip_comment(const char *l, size_t n) {
    int quoted = 0;
    for (size_t i = 0; i < n; i++) {
        char c = l[i];
        if (quoted) {
            if (c == '\\' && i + 1 < n)
                i++;
            else if (c == '"')
                quoted = 0;
        } else if (c == '"') {
            quoted = 1;
        } else if ((c == '#' || c == ';') && (i == 0 || is_space(l[i - 1]))) {
            return i;
        }
    }
    return n;
}

/* Parses one physical line (without its newline). Errors printed. */
static void parse_line(parser *p, const char *l, size_t n) {
    const char *nul = memchr(l, '\0', n);
    if (nul) {
        p->l = l, p->len = n;
        perr(p, (size_t)(nul - l), "NUL byte in the line; line ignored");
        return;
    }
    n = strip_comment(l, n);
    while (n > 0 && is_space(l[n - 1]))
        n--;
    size_t start = 0;
    while (start < n && is_space(l[start]))
        start++;
    if (start == n)
        return;
    p->l = l, p->len = n;
    if (l[start] == '[') {
        section_line(p, start);
        return;
    }
    switch (p->section) {
    case SEC_NONE:
        perr(p, start, "expected a section header ([output] or [actions]) first");
        break;
    case SEC_OUTPUT:
        output_line(p, start);
        break;
    case SEC_ACTIONS:
        actions_line(p, start);
        break;
    case SEC_LLM:
        llm_line(p, start);
        break;
    default: /* lines of an unknown section: already reported at its header */
        break;
    }
}

/* Sets the defaults of an empty config. Returns 0, or -1 when name could not be copied. */
static int config_init(as_config *cfg, const char *name) {
    memset(cfg, 0, sizeof *cfg);
    cfg->max_string = AS_MAX_STRING_DEFAULT;
    cfg->flush_timeout_ms = -1;
    cfg->llm_enable = cfg->llm_capture = -1;
    cfg->path = strdup(name ? name : "(config)");
    return cfg->path ? 0 : -1;
}

/* ---- the lookup index (config.h: as_config_match) ---- */

uint64_t as_config_name_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static int same_opt(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

static void index_free(struct as_cfg_index *x) {
    if (!x)
        return;
    free(x->slot);
    free(x->hash);
    free(x->next);
    free(x->tail);
    free(x->globs);
    free(x);
}

/* Builds cfg->index (again, when entries were added) and marks entries that repeat an
 * earlier one (same pattern, version and lib=: they could never match anything), with one
 * warning each for those from entry warn_from on. Out of memory leaves cfg->index NULL
 * (lookups then scan the entries). */
static void index_build(parser *p, int warn_from) {
    as_config *cfg = p->cfg;
    index_free(cfg->index);
    cfg->index = NULL;
    struct as_cfg_index *x = calloc(1, sizeof *x);
    size_t n = (size_t)(cfg->nentries > 0 ? cfg->nentries : 1);
    size_t nslot = 16;
    while (nslot < n * 2)
        nslot <<= 1;
    if (x) {
        x->nslot = nslot;
        x->slot = calloc(nslot, sizeof *x->slot);
        x->hash = malloc(nslot * sizeof *x->hash);
        x->next = malloc(n * sizeof *x->next);
        x->tail = malloc(n * sizeof *x->tail);
        x->globs = malloc(n * sizeof *x->globs);
    }
    if (!x || !x->slot || !x->hash || !x->next || !x->tail || !x->globs) {
        index_free(x);
        return;
    }
    for (int i = 0; i < cfg->nentries; i++) {
        as_entry *e = &cfg->entries[i];
        x->next[i] = -1;
        if (!e->pattern)
            continue;
        uint64_t h = as_config_name_hash(e->pattern);
        size_t k = (size_t)h & (nslot - 1);
        while (x->slot[k] &&
               (x->hash[k] != h || strcmp(cfg->entries[x->slot[k] - 1].pattern, e->pattern) != 0))
            k = (k + 1) & (nslot - 1);
        if (!x->slot[k]) {
            x->slot[k] = i + 1;
            x->hash[k] = h;
            x->tail[i] = i;
        } else {
            int head = x->slot[k] - 1, steps = 0;
            /* Identical: same version, lib= and hook= (other options cannot make a later
             * line match anything). The walk is bounded: many same-named entries that
             * differ are not checked against each other beyond 64. */
            for (int j = head; j >= 0 && steps < 64; j = x->next[j], steps++) {
                const as_entry *o = &cfg->entries[j];
                if (same_opt(o->version, e->version) && same_opt(o->lib, e->lib) &&
                    o->hook == e->hook) {
                    e->dup_line = o->dup_line ? o->dup_line : o->line;
                    break;
                }
            }
            x->next[x->tail[head]] = i;
            x->tail[head] = i;
        }
        if (e->is_glob && !e->dup_line)
            x->globs[x->nglobs++] = i;
        if (e->dup_line && i >= warn_from && p->shown++ < AS_CONFIG_MSG_CAP)
            as_warn("%s:%d:1: '%s' duplicates line %d: this line is ignored", p->name, e->line,
                    e->pattern, e->dup_line);
    }
    cfg->index = x;
}

int as_config_parse(const char *text, size_t len, const char *name, as_config *cfg) {
    parser p;
    memset(&p, 0, sizeof p);
    p.cfg = cfg;
    if (config_init(cfg, name) < 0)
        p.oom = 1;
    p.name = cfg->path ? cfg->path : "(config)";
    size_t pos = 0;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        pos = 3;
    while (pos < len && !p.oom) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t n = end - pos;
        if (n > 0 && text[pos + n - 1] == '\r')
            n--;
        p.line++;
        parse_line(&p, text + pos, n);
        pos = end + 1;
    }
    if (p.oom) {
        as_error("%s: out of memory while reading the config", p.name);
        cfg->errors++;
    }
    for (int i = 0; i < cfg->nentries; i++) {
        as_entry *e = &cfg->entries[i];
        if (!e->max_string)
            e->max_string = cfg->max_string;
        if (cfg->capture_off)
            e->capture_none = 1;
    }
    if (!p.oom)
        index_build(&p, 0);
    if (p.shown > AS_CONFIG_MSG_CAP)
        as_warn("%s: and %d more messages about this config not shown", p.name,
                p.shown - AS_CONFIG_MSG_CAP);
    return cfg->errors;
}

int as_config_load(const char *path, as_config *cfg) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    /* O_NONBLOCK: opening a FIFO with no writer would wait forever, before main. Only a
     * regular file is read (a FIFO, a device or a directory is refused at once). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        goto unreadable;
    struct stat st;
    if (fstat(fd, &st) != 0)
        goto unreadable;
    if (!S_ISREG(st.st_mode)) {
        as_error("%s: cannot read: not a regular file (%s): the config is ignored", path,
                 S_ISDIR(st.st_mode)    ? "a directory"
                 : S_ISFIFO(st.st_mode) ? "a FIFO"
                 : S_ISCHR(st.st_mode)  ? "a character device"
                 : S_ISBLK(st.st_mode)  ? "a block device"
                 : S_ISSOCK(st.st_mode) ? "a socket"
                                        : "not a file");
        close(fd);
        config_init(cfg, path);
        cfg->errors = 1;
        return -1;
    }
    /* Sized from fstat, the file comes in one read: a short read that brings exactly the
     * size fstat gave is the end of a regular file (no second read to see 0). */
    size_t want =
        st.st_size > 0 && (uintmax_t)st.st_size < CONFIG_MAX_BYTES ? (size_t)st.st_size + 1 : 0;
    for (;;) {
        if (len == cap) {
            if (cap >= CONFIG_MAX_BYTES) {
                errno = EFBIG;
                goto unreadable;
            }
            /* want: the exact size keeps the heap compact (later allocations share its page) */
            size_t ncap = cap ? cap * 2 : want ? want : 4096;
            char *grown = realloc(buf, ncap);
            if (!grown)
                goto unreadable;
            buf = grown, cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto unreadable;
        if (r == 0)
            break;
        size_t asked = cap - len;
        len += (size_t)r;
        if ((size_t)r < asked && len == (size_t)st.st_size)
            break;
    }
    close(fd);
    as_config_parse(buf ? buf : "", len, path, cfg);
    free(buf);
    return 0;
unreadable:
    as_error("%s: cannot read: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(buf);
    config_init(cfg, path);
    cfg->errors = 1;
    return -1;
}

int as_config_add_entries(as_config *cfg, const char *text, size_t len, const char *src) {
    parser p;
    memset(&p, 0, sizeof p);
    p.cfg = cfg;
    if (!cfg->path && config_init(cfg, src) < 0)
        p.oom = 1;
    p.name = src;
    p.section = SEC_ACTIONS;
    p.cap = cfg->nentries; /* the array is exactly full as far as the parser knows */
    int errors = cfg->errors, first = cfg->nentries;
    size_t pos = 0;
    while (pos < len && !p.oom) {
        const char *l = text + pos;
        const char *nl = memchr(l, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - l) : len - pos, start = 0;
        pos += n + 1;
        p.line++;
        while (n > 0 && is_space(l[n - 1]))
            n--;
        while (start < n && is_space(l[start]))
            start++;
        if (start == n)
            continue;
        p.l = l, p.len = n;
        actions_line(&p, start);
    }
    if (p.oom) {
        as_error("%s: out of memory while reading the entries", src);
        cfg->errors++;
    }
    for (int i = first; i < cfg->nentries; i++) {
        as_entry *e = &cfg->entries[i];
        e->src = src;
        if (!e->max_string)
            e->max_string = cfg->max_string;
        if (cfg->capture_off)
            e->capture_none = 1;
    }
    if (cfg->nentries > first)
        index_build(&p, first); /* the added names are found by the index too */
    return cfg->errors - errors;
}

void as_config_free(as_config *cfg) {
    if (!cfg)
        return;
    for (int i = 0; i < cfg->nentries; i++)
        entry_free(&cfg->entries[i]);
    free(cfg->entries);
    index_free(cfg->index);
    free(cfg->path);
    free(cfg->sink);
    free(cfg->conversation_id);
    free(cfg->service);
    memset(cfg, 0, sizeof *cfg);
}

const char *as_errif_name(int error_if) {
    if (error_if < 0 || error_if > AS_ERRIF_ERRNO)
        return "none";
    return errif_names[error_if];
}
