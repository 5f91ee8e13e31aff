/* fuzz_check.h - the validity checks every fuzz target applies to what a writer produced:
 * valid UTF-8, well-formed \u escapes and exactly one JSON value. A failed check aborts,
 * so libFuzzer reports the input that made a writer emit bad JSON. Header-only: each
 * target is one translation unit plus the sources it names. */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cjson/cJSON.h>

#include "agentsight.h"
#include "core/action.h"
#include "core/jsonw.h"

/* 1 when JSON text s has a control character (below 0x20) inside a string or anywhere
 * outside the four blanks: cJSON accepts raw ones in strings, strict parsers do not. */
static inline int fuzz_json_raw_control(const char *s, size_t n) {
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && (in_str || (c != ' ' && c != '\t' && c != '\n' && c != '\r')))
            return 1;
        if (in_str && c == '\\')
            i++;
        else if (c == '"')
            in_str = !in_str;
    }
    return 0;
}

/* Aborts (naming what) unless s (n bytes) is valid UTF-8 with well-formed \u escapes that
 * cJSON reads as exactly one value. */
static inline void fuzz_json_ok(const char *what, const char *s, size_t n) {
    size_t at = 0;
    const char *why = "";
    if (!as_utf8_valid(s, n)) {
        fprintf(stderr, "%s: not valid UTF-8: %.*s\n", what, (int)(n > 400 ? 400 : n), s);
        abort();
    }
    if (fuzz_json_raw_control(s, n)) {
        fprintf(stderr, "%s: raw control character: %.*s\n", what, (int)(n > 400 ? 400 : n), s);
        abort();
    }
    if (as_json_escapes_check(s, n, &at, &why) != 0) {
        fprintf(stderr, "%s: bad escape at %zu (%s): %.*s\n", what, at, why,
                (int)(n > 400 ? 400 : n), s);
        abort();
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    while (j && end < s + n && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t'))
        end++;
    if (!j || end != s + n) {
        fprintf(stderr, "%s: not JSON: %.*s\n", what, (int)(n > 400 ? 400 : n), s);
        abort();
    }
    cJSON_Delete(j);
}

/* The same for a NUL-terminated string; NULL passes. */
static inline void fuzz_json_ok_c(const char *what, const char *s) {
    size_t n = 0;
    if (!s)
        return;
    while (s[n])
        n++;
    fuzz_json_ok(what, s, n);
}

/* Aborts unless an optional text field is valid UTF-8. */
static inline void fuzz_utf8_ok(const char *what, const char *s, size_t n) {
    if (s && !as_utf8_valid(s, n)) {
        fprintf(stderr, "%s: not valid UTF-8\n", what);
        abort();
    }
}

/* Validates an action from the LLM decoder as the pipeline does (aborting when it is
 * refused) and formats its JSONL line into b, which this initialises and the caller frees. */
static inline void fuzz_llm_action_line(const agentsight_action *a, as_buf *b) {
    as_action act;
    char msg[256];
    if (as_action_validate(a, 1705314600LL * 1000000000LL, "conv_000000000000", &act, msg,
                           sizeof msg) != 0) {
        fprintf(stderr, "llm action refused: %s\n", msg);
        abort();
    }
    as_buf_init(b);
    as_action_to_jsonl(&act, b);
}

#endif
