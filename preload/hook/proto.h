/* proto.h - a C function prototype as the interposer understands it: from a config
 * entry (`int f(int a, const char *b)`) or from DWARF. Shared by the config parser, the
 * DWARF reader and typed capture. */
#ifndef AS_PROTO_H
#define AS_PROTO_H

#include <stdint.h>

#define AS_PROTO_MAX_PARAMS 16
#define AS_PROTO_NAME_LEN 32
#define AS_PROTO_TYPE_LEN 48

enum as_type_kind {
    AS_K_VOID = 0,
    AS_K_SINT, /* signed integers, char, enums */
    AS_K_UINT, /* unsigned integers, size_t */
    AS_K_BOOL,
    AS_K_FLOAT, /* float (size 4), double (size 8); long double (16) is reported only */
    AS_K_STR,   /* char * / const char *: captured as text */
    AS_K_PTR,   /* any other pointer: 0x... */
    AS_K_AGG,   /* struct/union by value */
};

enum as_agg_class { AS_AGG_NONE = 0, AS_AGG_INTEGER, AS_AGG_SSE, AS_AGG_MEMORY };

typedef struct as_type {
    uint8_t kind;   /* enum as_type_kind */
    uint8_t size;   /* bytes; AS_K_AGG: 0 when unknown (then it is skipped with a note) */
    uint8_t cls[2]; /* AS_K_AGG <= 16 bytes: SysV class of each eightbyte */
    char spelling[AS_PROTO_TYPE_LEN]; /* as written, normalised: "const char *" */
} as_type;

typedef struct as_proto {
    as_type ret;
    int nparams;
    int variadic;
    as_type params[AS_PROTO_MAX_PARAMS];
    char names[AS_PROTO_MAX_PARAMS][AS_PROTO_NAME_LEN]; /* "arg1".. when unnamed */
} as_proto;

#endif
