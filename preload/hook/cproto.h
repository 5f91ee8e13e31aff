/* cproto.h - parses a C function prototype written in a config entry
 * ("int calculator_multiply(int a, int b)") into an as_proto (hook/proto.h). */
#ifndef AS_CPROTO_H
#define AS_CPROTO_H

#include <stddef.h>

#include "hook/proto.h"

/* Where and why a prototype was refused. */
typedef struct as_cproto_err {
    size_t off;    /* byte offset of the offending token in the parsed text */
    char msg[160]; /* "unknown type 'strng'", "expected ')'" */
} as_cproto_err;

/*
 * as_cproto_parse - parses "RET NAME(PARAMS)" from the first len bytes of s (s need not be
 * NUL-terminated). Parsing stops after the ')' closing the parameter list (and one ';'
 * right after it), so the caller may read options that follow.
 *
 * On success returns 0, fills *out, and stores the function name's offset and length in
 * *name_off / *name_len and the number of bytes consumed in *consumed. The name may be
 * a glob ("tool_*", "db_[a-c]?"): an identifier start followed, without a blank, by
 * identifier and glob characters (* ? [ ] ! ^ -); the caller matches it.
 * On failure returns -1 with err filled; *out may be partly written (never read it then).
 * This function never allocates.
 */
int as_cproto_parse(const char *s, size_t len, as_proto *out, size_t *name_off, size_t *name_len,
                    size_t *consumed, as_cproto_err *err);

#endif
