/* jsonw.h - a small growable buffer and JSON writer used to format actions fast.
 *
 * cJSON parses and validates user JSON; this writer produces output lines without
 * building trees (see DESIGN.md, the exporter's throughput budget). */
#ifndef AS_JSONW_H
#define AS_JSONW_H

#include <stddef.h>
#include <stdint.h>

typedef struct as_buf {
    char *data;
    size_t len;
    size_t cap;
    int oom; /* set when a growth failed; later appends are ignored */
} as_buf;

void as_buf_init(as_buf *b);
void as_buf_free(as_buf *b);
void as_buf_reset(as_buf *b);                /* len = 0, keeps the memory */
int as_buf_reserve(as_buf *b, size_t extra); /* 0, or -1 (and oom set) */
void as_buf_put(as_buf *b, const void *p, size_t n);
void as_buf_puts(as_buf *b, const char *s);
void as_buf_putc(as_buf *b, char c);
void as_buf_printf(as_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *as_buf_cstr(as_buf *b); /* NUL-terminates (not counted in len) */

/* JSON string literal with quotes. Escapes ", \, control characters (\n \t \r \b \f and
 * \u00XX); bytes that are not valid UTF-8 become \ufffd, so the output is always valid
 * JSON and valid UTF-8. n bytes of s are read (s need not be NUL-terminated). */
void as_json_str(as_buf *b, const char *s, size_t n);
void as_json_cstr(as_buf *b, const char *s); /* NULL -> null */
void as_json_i64(as_buf *b, int64_t v);
void as_json_u64(as_buf *b, uint64_t v);
/* Lowercase hex digits of v without leading zeros ("0" for 0), as printf's %llx. */
void as_buf_hex(as_buf *b, uint64_t v);
/* Shortest text that reads back to the same double ("2.5", "0.1", "1e+300");
 * NaN and infinities become null (JSON has none). */
void as_json_double(as_buf *b, double v);
/* Same shortest round-trip rule without JSON's null substitution: "nan", "inf". */
int as_fmt_double(char *buf, size_t cap, double v);

/* 1 when n bytes of s are valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int as_utf8_valid(const char *s, size_t n);

/* Appends s (n bytes) to b with every byte that does not start a valid UTF-8 sequence
 * replaced by U+FFFD (EF BF BD). On OOM the buffer's oom flag is set. */
void as_utf8_repair(as_buf *b, const char *s, size_t n);

/* Makes *s (*n bytes) valid UTF-8 before a parse: left as it is when it already is, else
 * pointed at a repaired copy (as_utf8_repair) held in fixed, which the caller initialised
 * and frees. Returns 0, or -1 out of memory (fixed then freed). */
int as_utf8_fix(as_buf *fixed, const char **s, size_t *n);

/* Checks every \u escape inside the strings of JSON text s (n bytes): four hex digits, a
 * high surrogate (\ud800-\udbff) followed at once by a low one, no low one alone. Lenient
 * parsers (cJSON) read "\u00zz" as U+0000 and let lone surrogates through, so text that
 * is embedded as is must pass here first. Returns 0, or -1 with the byte offset of the
 * bad escape in *at and a short reason in *why (static strings). */
int as_json_escapes_check(const char *s, size_t n, size_t *at, const char **why);

#endif
