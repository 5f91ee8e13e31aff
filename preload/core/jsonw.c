/* jsonw.c - a growable byte buffer and an escaping JSON writer: the exporter formats every
 * action line with it, so it avoids trees, locale-dependent calls and per-byte branches on
 * plain text. */
#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/jsonw.h"

#define BUF_MIN 256

void as_buf_init(as_buf *b) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->oom = 0;
}

void as_buf_free(as_buf *b) {
    free(b->data);
    as_buf_init(b);
}

void as_buf_reset(as_buf *b) {
    b->len = 0;
}

/* Makes room for extra more bytes plus a NUL. Returns 0, or -1 with oom set and the buffer
 * unchanged. */
int as_buf_reserve(as_buf *b, size_t extra) {
    if (b->oom)
        return -1;
    if (extra < b->cap - b->len && b->data)
        return 0;
    size_t need = b->len + extra + 1;
    if (need < b->len) {
        b->oom = 1;
        return -1;
    }
    size_t cap = b->cap ? b->cap : BUF_MIN;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void as_buf_put(as_buf *b, const void *p, size_t n) {
    if (n == 0 || as_buf_reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void as_buf_puts(as_buf *b, const char *s) {
    if (s)
        as_buf_put(b, s, strlen(s));
}

void as_buf_putc(as_buf *b, char c) {
    if (as_buf_reserve(b, 1) != 0)
        return;
    b->data[b->len++] = c;
}

/* Appends printf output; on a format error or OOM nothing is appended. */
void as_buf_printf(as_buf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        as_buf_put(b, small, (size_t)n);
        return;
    }
    if (as_buf_reserve(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Returns the text NUL-terminated ("" for an empty or failed buffer). */
const char *as_buf_cstr(as_buf *b) {
    if (as_buf_reserve(b, 0) != 0)
        return b->data && b->cap > b->len ? (b->data[b->len] = '\0', b->data) : "";
    b->data[b->len] = '\0';
    return b->data;
}

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 when the bytes there
 * are not one (overlong, surrogate, above U+10FFFF, truncated, stray continuation). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0; /* continuation byte or overlong 2-byte lead */
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80)
            return 0;
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && s[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && s[1] >= 0xA0)
            return 0; /* UTF-16 surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xF4 && s[1] >= 0x90)
            return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

int as_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

void as_utf8_repair(as_buf *b, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        while (i < n && p[i] < 0x80)
            i++;
        size_t k = 0;
        while (i < n && p[i] >= 0x80 && (k = utf8_seq(p + i, n - i)) != 0)
            i += k;
        as_buf_put(b, s + start, i - start);
        if (i < n && p[i] >= 0x80) {
            as_buf_put(b, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
}

int as_utf8_fix(as_buf *fixed, const char **s, size_t *n) {
    if (as_utf8_valid(*s, *n))
        return 0;
    as_utf8_repair(fixed, *s, *n);
    if (fixed->oom) {
        as_buf_free(fixed);
        return -1;
    }
    *s = fixed->data;
    *n = fixed->len;
    return 0;
}

static int hex4(const char *s, size_t n, size_t i, unsigned *v) {
    if (n - i < 4)
        return -1;
    unsigned x = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[i + k];
        x <<= 4;
        if (c >= '0' && c <= '9')
            x |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            x |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            x |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *v = x;
    return 0;
}

int as_json_escapes_check(const char *s, size_t n, size_t *at, const char **why) {
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!in_str) {
            in_str = c == '"';
            continue;
        }
        if (c == '"') {
            in_str = 0;
            continue;
        }
        if (c != '\\' || i + 1 >= n)
            continue;
        if (s[i + 1] != 'u') {
            i++; /* the escaped byte cannot end the string */
            continue;
        }
        unsigned u, lo;
        *at = i;
        if (hex4(s, n, i + 2, &u) != 0) {
            *why = "\\u needs four hex digits";
            return -1;
        }
        if (u >= 0xDC00 && u <= 0xDFFF) {
            *why = "low surrogate without a high one before it";
            return -1;
        }
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (n - (i + 6) < 6 || s[i + 6] != '\\' || s[i + 7] != 'u' ||
                hex4(s, n, i + 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) {
                *why = "high surrogate not followed by a low one";
                return -1;
            }
            i += 6;
        }
        i += 5;
    }
    return 0;
}

/* ---- strings ---- */

/* 1 for bytes that end a plain run: controls, '"', '\\' and every non-ASCII byte. */
static const unsigned char needs_care[256] = {
    [0 ... 0x1F] = 1,
    ['"'] = 1,
    ['\\'] = 1,
    [0x80 ... 0xFF] = 1,
};

static const char hex[] = "0123456789abcdef";

/* Appends the escaped literal; worst case 6 output bytes per input byte plus quotes. */
void as_json_str(as_buf *b, const char *s, size_t n) {
    if (n > (SIZE_MAX - 2) / 6 || as_buf_reserve(b, n * 6 + 2) != 0)
        return;
    const unsigned char *p = (const unsigned char *)s;
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        while (i < n && !needs_care[p[i]])
            i++;
        memcpy(o, p + start, i - start);
        o += i - start;
        if (i >= n)
            break;
        unsigned c = p[i];
        if (c >= 0x80) {
            size_t k = utf8_seq(p + i, n - i);
            if (k == 0) {
                memcpy(o, "\\ufffd", 6);
                o += 6;
                i++;
                continue;
            }
            /* U+2028/U+2029 are valid JSON but end lines in JavaScript: escape them. */
            if (k == 3 && c == 0xE2 && p[i + 1] == 0x80 && (p[i + 2] & 0xFE) == 0xA8) {
                memcpy(o, p[i + 2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
                o += 6;
            } else {
                memcpy(o, p + i, k);
                o += k;
            }
            i += k;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        default:
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4];
            o[4] = hex[c & 15];
            o += 5;
            break;
        }
        i++;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
}

void as_json_cstr(as_buf *b, const char *s) {
    if (!s) {
        as_buf_put(b, "null", 4);
        return;
    }
    as_json_str(b, s, strlen(s));
}

/* ---- numbers ---- */

void as_json_u64(as_buf *b, uint64_t v) {
    char tmp[24];
    char *e = tmp + sizeof tmp, *p = e;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    as_buf_put(b, p, (size_t)(e - p));
}

/* Writes the sign and digits straight into the buffer: one reserve, no copy. */
void as_json_i64(as_buf *b, int64_t v) {
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char tmp[24];
    char *e = tmp + sizeof tmp, *p = e;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    as_buf_put(b, p, (size_t)(e - p));
}

void as_buf_hex(as_buf *b, uint64_t v) {
    char tmp[16];
    char *e = tmp + sizeof tmp, *p = e;
    do {
        *--p = hex[v & 15];
        v >>= 4;
    } while (v);
    as_buf_put(b, p, (size_t)(e - p));
}

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void) {
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* Reads a double written by us in the C locale (independent of the program's locale). */
static double read_back(const char *s) {
    pthread_once(&c_locale_once, make_c_locale);
    if (c_locale)
        return strtod_l(s, NULL, c_locale);
    return strtod(s, NULL);
}

/* Rewrites the program locale's decimal separator (when it is not '.') to '.'. Returns the
 * new length. */
static int fix_decimal_point(char *s, int n) {
    int w = 0;
    for (int r = 0; r < n; r++) {
        char c = s[r];
        int num = (c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e' || c == 'E' ||
                  c == 'n' || c == 'a' || c == 'i' || c == 'f' || c == '.';
        if (num) {
            s[w++] = c;
        } else if (w == 0 || s[w - 1] != '.') {
            s[w++] = '.'; /* a (possibly multi-byte) locale separator */
        }
    }
    s[w] = '\0';
    return w;
}

/* Writes the shortest of %.15g/%.16g/%.17g that reads back exactly. Returns the length
 * (as snprintf: may be >= cap when truncated), or -1 on a format error. */
int as_fmt_double(char *buf, size_t cap, double v) {
    char tmp[64];
    int n = -1;
    if (v != v) {
        n = snprintf(tmp, sizeof tmp, "nan");
    } else if (v == __builtin_inf() || v == -__builtin_inf()) {
        n = snprintf(tmp, sizeof tmp, v < 0 ? "-inf" : "inf");
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
            if (n < 0 || n >= (int)sizeof tmp)
                return -1;
            n = fix_decimal_point(tmp, n);
            if (read_back(tmp) == v)
                break;
        }
    }
    if (n < 0)
        return -1;
    if (cap > 0) {
        size_t c = (size_t)n < cap ? (size_t)n : cap - 1;
        memcpy(buf, tmp, c);
        buf[c] = '\0';
    }
    return n;
}

void as_json_double(as_buf *b, double v) {
    if (v != v || v == __builtin_inf() || v == -__builtin_inf()) {
        as_buf_put(b, "null", 4);
        return;
    }
    char tmp[64];
    int n = as_fmt_double(tmp, sizeof tmp, v);
    if (n <= 0 || n >= (int)sizeof tmp) {
        as_buf_put(b, "null", 4);
        return;
    }
    as_buf_put(b, tmp, (size_t)n);
}
