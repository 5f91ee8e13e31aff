/* cproto.c - a small C declaration parser for the prototypes written in config entries,
 * so "const char *weather_lookup(const char *location, const char *units)" tells the
 * capture code the kind, size and name of every parameter and of the result. */
#include <stdio.h>
#include <string.h>

#include "hook/cproto.h"

enum tok_kind {
    T_END,
    T_IDENT,
    T_NUM,
    T_STAR,
    T_LP,
    T_RP,
    T_LB,
    T_RB,
    T_COMMA,
    T_ELLIPSIS,
    T_SEMI,
    T_BAD
};

typedef struct tok {
    int kind;
    size_t off, len;
} tok;

typedef struct lexer {
    const char *s;
    size_t len, pos;
    size_t prev_end; /* end of the token before cur */
    tok cur;
    as_cproto_err *err;
} lexer;

/* The base type named by the specifiers of one declaration. */
typedef struct tspec {
    int nsigned, nunsigned, nshort, nlong, nint, nchar, nvoid, nbool, nfloat, ndouble;
    int any;                   /* base specifiers seen */
    int is_const;              /* 'const' among the specifiers (kept in pointer spellings) */
    int tag;                   /* 0, TAG_STRUCT, TAG_UNION, TAG_ENUM */
    int typedef_ix;            /* index into typedefs[], or -1 */
    size_t name_off, name_len; /* tag name or unknown type name */
    int unknown;               /* an identifier that is no known type: only valid behind a '*' */
    size_t unknown_off;
} tspec;

enum { TAG_STRUCT = 1, TAG_UNION, TAG_ENUM };

/* Names stored in place, not as pointers: a table of pointers needs a relocation per entry
 * and lives in RELRO, whose pages every process writes at load time. */
static const struct {
    char name[10];
    uint8_t kind, size;
} typedefs[] = {
    {"int8_t", AS_K_SINT, 1},   {"int16_t", AS_K_SINT, 2},   {"int32_t", AS_K_SINT, 4},
    {"int64_t", AS_K_SINT, 8},  {"uint8_t", AS_K_UINT, 1},   {"uint16_t", AS_K_UINT, 2},
    {"uint32_t", AS_K_UINT, 4}, {"uint64_t", AS_K_UINT, 8},  {"size_t", AS_K_UINT, 8},
    {"ssize_t", AS_K_SINT, 8},  {"intptr_t", AS_K_SINT, 8},  {"uintptr_t", AS_K_UINT, 8},
    {"off_t", AS_K_SINT, 8},    {"ptrdiff_t", AS_K_SINT, 8}, {"pid_t", AS_K_SINT, 4},
    {"uid_t", AS_K_UINT, 4},    {"gid_t", AS_K_UINT, 4},     {"mode_t", AS_K_UINT, 4},
    {"time_t", AS_K_SINT, 8},   {"socklen_t", AS_K_UINT, 4}, {"wchar_t", AS_K_SINT, 4},
};
#define NTYPEDEFS (sizeof typedefs / sizeof typedefs[0])

/* Qualifiers and storage classes accepted and ignored (const is remembered). */
static const char ignored_words[][13] = {"volatile",     "restrict",     "__restrict",
                                         "__restrict__", "__volatile__", "extern",
                                         "static",       "inline",       "register"};

static int is_ident_start(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_ident_char(int c) {
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

/* Reads the next token into lx->cur. This function can't fail (bad bytes are T_BAD). */
static void next(lexer *lx) {
    lx->prev_end = lx->cur.off + lx->cur.len;
    while (lx->pos < lx->len && (lx->s[lx->pos] == ' ' || lx->s[lx->pos] == '\t'))
        lx->pos++;
    tok t = {T_END, lx->pos, 0};
    if (lx->pos >= lx->len) {
        lx->cur = t;
        return;
    }
    const char *p = lx->s + lx->pos;
    size_t left = lx->len - lx->pos;
    unsigned char c = (unsigned char)p[0];
    t.len = 1;
    if (is_ident_start(c)) {
        t.kind = T_IDENT;
        while (t.len < left && is_ident_char((unsigned char)p[t.len]))
            t.len++;
    } else if (c >= '0' && c <= '9') {
        t.kind = T_NUM;
        while (t.len < left && is_ident_char((unsigned char)p[t.len]))
            t.len++;
    } else if (c == '.' && left >= 3 && p[1] == '.' && p[2] == '.') {
        t.kind = T_ELLIPSIS;
        t.len = 3;
    } else {
        switch (c) {
        case '*':
            t.kind = T_STAR;
            break;
        case '(':
            t.kind = T_LP;
            break;
        case ')':
            t.kind = T_RP;
            break;
        case '[':
            t.kind = T_LB;
            break;
        case ']':
            t.kind = T_RB;
            break;
        case ',':
            t.kind = T_COMMA;
            break;
        case ';':
            t.kind = T_SEMI;
            break;
        default:
            t.kind = T_BAD;
            break;
        }
    }
    lx->pos += t.len;
    lx->cur = t;
}

static int tok_is(const lexer *lx, const char *word) {
    size_t n = strlen(word);
    return lx->cur.kind == T_IDENT && lx->cur.len == n && memcmp(lx->s + lx->cur.off, word, n) == 0;
}

/* Writes a message about the current token. Returns -1 (for `return fail(...)`). */
static int fail_at(lexer *lx, size_t off, const char *fmt, const char *arg, size_t arglen) {
    lx->err->off = off;
    if (arg) {
        int n = (int)(arglen > 40 ? 40 : arglen);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "%.*s%s", n, arg, arglen > 40 ? "..." : "");
        snprintf(lx->err->msg, sizeof lx->err->msg, fmt, quoted);
    } else {
        snprintf(lx->err->msg, sizeof lx->err->msg, "%s", fmt);
    }
    return -1;
}

/* "expected X" at the current token, naming what was found. Returns -1. */
static int expected(lexer *lx, const char *what) {
    char fmt[96];
    if (lx->cur.kind == T_END) {
        snprintf(fmt, sizeof fmt, "expected %s at end of line", what);
        return fail_at(lx, lx->cur.off, fmt, NULL, 0);
    }
    if (lx->cur.kind == T_BAD) {
        unsigned char c = (unsigned char)lx->s[lx->cur.off];
        if (c < 0x20 || c >= 0x7f) {
            snprintf(fmt, sizeof fmt, "expected %s, found byte 0x%02x", what, c);
            return fail_at(lx, lx->cur.off, fmt, NULL, 0);
        }
    }
    snprintf(fmt, sizeof fmt, "expected %s, found '%%s'", what);
    return fail_at(lx, lx->cur.off, fmt, lx->s + lx->cur.off, lx->cur.len);
}

/* 1 when the base specifiers seen so far form a legal C type. */
static int combo_ok(const tspec *t) {
    if (t->nsigned + t->nunsigned > 1 || t->nint > 1 || t->nchar > 1 || t->nshort > 1 ||
        t->nlong > 2 || t->nvoid > 1 || t->nbool > 1 || t->nfloat > 1 || t->ndouble > 1)
        return 0;
    if (t->tag || t->typedef_ix >= 0 || t->unknown || t->nvoid || t->nbool || t->nfloat)
        return t->any == 1;
    if (t->ndouble)
        return t->any == 1 || (t->any == 2 && t->nlong == 1);
    if (t->nchar)
        return t->nshort + t->nlong + t->nint == 0;
    if (t->nshort)
        return t->nlong == 0;
    return 1;
}

/* Parses declaration specifiers (qualifiers, base type words, struct/enum tags, typedef
 * names). Returns 0 with *t filled and the first token after them current; -1 on error. */
static int parse_specifiers(lexer *lx, tspec *t) {
    memset(t, 0, sizeof *t);
    t->typedef_ix = -1;
    while (lx->cur.kind == T_IDENT) {
        size_t off = lx->cur.off;
        int *counter = NULL;
        int ignored = 0;
        for (size_t i = 0; i < sizeof ignored_words / sizeof ignored_words[0]; i++)
            ignored |= tok_is(lx, ignored_words[i]);
        if (tok_is(lx, "const") || tok_is(lx, "__const")) {
            t->is_const = 1;
            next(lx);
            continue;
        }
        if (ignored) {
            next(lx);
            continue;
        }
        if (tok_is(lx, "signed") || tok_is(lx, "__signed__"))
            counter = &t->nsigned;
        else if (tok_is(lx, "unsigned"))
            counter = &t->nunsigned;
        else if (tok_is(lx, "short"))
            counter = &t->nshort;
        else if (tok_is(lx, "long"))
            counter = &t->nlong;
        else if (tok_is(lx, "int"))
            counter = &t->nint;
        else if (tok_is(lx, "char"))
            counter = &t->nchar;
        else if (tok_is(lx, "void"))
            counter = &t->nvoid;
        else if (tok_is(lx, "bool") || tok_is(lx, "_Bool"))
            counter = &t->nbool;
        else if (tok_is(lx, "float"))
            counter = &t->nfloat;
        else if (tok_is(lx, "double"))
            counter = &t->ndouble;
        if (counter) {
            (*counter)++;
            t->any++;
        } else if (tok_is(lx, "struct") || tok_is(lx, "union") || tok_is(lx, "enum")) {
            if (t->any)
                return fail_at(lx, off, "invalid combination of type specifiers at '%s'",
                               lx->s + off, lx->cur.len);
            t->tag = tok_is(lx, "struct") ? TAG_STRUCT : tok_is(lx, "union") ? TAG_UNION : TAG_ENUM;
            const char *kw = t->tag == TAG_STRUCT  ? "struct"
                             : t->tag == TAG_UNION ? "union"
                                                   : "enum";
            next(lx);
            if (lx->cur.kind != T_IDENT) {
                char what[40];
                snprintf(what, sizeof what, "a name after '%s'", kw);
                return expected(lx, what);
            }
            t->name_off = lx->cur.off;
            t->name_len = lx->cur.len;
            t->any++;
        } else if (t->any) {
            break; /* the declarator's name */
        } else {
            for (size_t i = 0; i < NTYPEDEFS; i++) {
                if (tok_is(lx, typedefs[i].name))
                    t->typedef_ix = (int)i;
            }
            if (t->typedef_ix < 0) {
                t->unknown = 1;
                t->unknown_off = off;
                t->name_off = off;
                t->name_len = lx->cur.len;
            }
            t->any++;
        }
        if (!combo_ok(t))
            return fail_at(lx, off, "invalid combination of type specifiers at '%s'", lx->s + off,
                           lx->cur.len);
        next(lx);
    }
    if (!t->any)
        return expected(lx, "a type");
    return 0;
}

/* Writes the canonical spelling of the base type ("unsigned long", "struct x"). */
static void base_spelling(const lexer *lx, const tspec *t, char *buf, size_t cap) {
    const char *sign = t->nunsigned ? "unsigned " : "";
    if (t->tag || t->unknown) {
        const char *kw = t->tag == TAG_STRUCT  ? "struct "
                         : t->tag == TAG_UNION ? "union "
                         : t->tag == TAG_ENUM  ? "enum "
                                               : "";
        snprintf(buf, cap, "%s%.*s", kw, (int)t->name_len, lx->s + t->name_off);
    } else if (t->typedef_ix >= 0) {
        snprintf(buf, cap, "%s", typedefs[t->typedef_ix].name);
    } else if (t->nvoid) {
        snprintf(buf, cap, "void");
    } else if (t->nbool) {
        snprintf(buf, cap, "bool");
    } else if (t->nfloat) {
        snprintf(buf, cap, "float");
    } else if (t->ndouble) {
        snprintf(buf, cap, "%sdouble", t->nlong ? "long " : "");
    } else if (t->nchar) {
        snprintf(buf, cap, "%schar", t->nunsigned ? "unsigned " : t->nsigned ? "signed " : "");
    } else if (t->nshort) {
        snprintf(buf, cap, "%sshort", sign);
    } else if (t->nlong) {
        snprintf(buf, cap, "%s%s", sign, t->nlong == 2 ? "long long" : "long");
    } else {
        snprintf(buf, cap, "%sint", sign);
    }
}

/* Kind and size of a base type used by value. Returns 0, or -1 (unknown type). */
static int base_kind(const tspec *t, as_type *out) {
    int is_unsigned = t->nunsigned > 0;
    if (t->unknown)
        return -1;
    if (t->tag == TAG_ENUM) {
        out->kind = AS_K_SINT, out->size = 4;
    } else if (t->tag) {
        out->kind = AS_K_AGG, out->size = 0;
    } else if (t->typedef_ix >= 0) {
        out->kind = typedefs[t->typedef_ix].kind, out->size = typedefs[t->typedef_ix].size;
    } else if (t->nvoid) {
        out->kind = AS_K_VOID, out->size = 0;
    } else if (t->nbool) {
        out->kind = AS_K_BOOL, out->size = 1;
    } else if (t->nfloat) {
        out->kind = AS_K_FLOAT, out->size = 4;
    } else if (t->ndouble) {
        out->kind = AS_K_FLOAT, out->size = t->nlong ? 16 : 8;
    } else {
        out->kind = is_unsigned ? AS_K_UINT : AS_K_SINT;
        out->size = t->nchar ? 1 : t->nshort ? 2 : t->nlong ? 8 : 4;
    }
    return 0;
}

/* Copies text into t->spelling, truncated to fit. This function can't fail. */
static void set_spelling(as_type *t, const char *text) {
    size_t n = strlen(text);
    if (n >= sizeof t->spelling)
        n = sizeof t->spelling - 1;
    memcpy(t->spelling, text, n);
    t->spelling[n] = '\0';
}

/* Turns specifiers + declarator shape into *out. Returns 0, or -1 with the error set. */
static int make_type(lexer *lx, const tspec *t, int level, int narrays, int funcptr, as_type *out) {
    char base[AS_PROTO_TYPE_LEN], text[2 * AS_PROTO_TYPE_LEN + 16];
    base_spelling(lx, t, base, sizeof base);
    memset(out, 0, sizeof *out);
    if (funcptr) {
        out->kind = AS_K_PTR, out->size = 8;
        snprintf(text, sizeof text, "%s (*)()", base);
        set_spelling(out, text);
        return 0;
    }
    if (level > 0) {
        int plain_char = t->nchar && !t->nsigned && !t->nunsigned;
        out->kind = (plain_char && level == 1 && narrays <= 1) ? AS_K_STR : AS_K_PTR;
        out->size = 8;
        char stars[AS_PROTO_TYPE_LEN];
        int n = level < (int)sizeof stars - 1 ? level : (int)sizeof stars - 1;
        memset(stars, '*', (size_t)n);
        stars[n] = '\0';
        snprintf(text, sizeof text, "%s%s %s", t->is_const ? "const " : "", base, stars);
        set_spelling(out, text);
        return 0;
    }
    if (base_kind(t, out) < 0)
        return fail_at(lx, t->unknown_off, "unknown type '%s'", lx->s + t->name_off, t->name_len);
    set_spelling(out, base);
    return 0;
}

/* Skips a balanced (...) group; the current token is its '('. Returns 0 with the token
 * after the closing ')' current, or -1 when the line ends first. */
static int skip_group(lexer *lx) {
    size_t open = lx->cur.off;
    int depth = 0;
    for (;;) {
        if (lx->cur.kind == T_LP)
            depth++;
        else if (lx->cur.kind == T_RP)
            depth--;
        else if (lx->cur.kind == T_END)
            return fail_at(lx, open, "expected ')' to close this '('", NULL, 0);
        next(lx);
        if (depth == 0)
            return 0;
    }
}

/* Skips pointer qualifiers after a '*'. */
static void skip_qualifiers(lexer *lx) {
    while (tok_is(lx, "const") || tok_is(lx, "volatile") || tok_is(lx, "restrict") ||
           tok_is(lx, "__restrict") || tok_is(lx, "__restrict__") || tok_is(lx, "__const"))
        next(lx);
}

/* Parses one parameter (index i) into p->params[i] and p->names[i]. Returns 0 or -1. */
static int parse_param(lexer *lx, as_proto *p, int i) {
    size_t start = lx->cur.off;
    tspec t;
    if (parse_specifiers(lx, &t) < 0)
        return -1;
    int level = 0, narrays = 0, funcptr = 0;
    size_t name_off = 0, name_len = 0;
    while (lx->cur.kind == T_STAR) {
        level++;
        next(lx);
        skip_qualifiers(lx);
    }
    if (lx->cur.kind == T_LP) { /* function pointer: (*name)(params) */
        next(lx);
        if (lx->cur.kind != T_STAR)
            return expected(lx, "'*' in a function pointer");
        next(lx);
        skip_qualifiers(lx);
        if (lx->cur.kind == T_IDENT) {
            name_off = lx->cur.off, name_len = lx->cur.len;
            next(lx);
        }
        if (lx->cur.kind != T_RP)
            return expected(lx, "')'");
        next(lx);
        if (lx->cur.kind != T_LP)
            return expected(lx, "'(' of the function pointer's parameters");
        if (skip_group(lx) < 0)
            return -1;
        funcptr = 1;
    } else if (lx->cur.kind == T_IDENT) {
        name_off = lx->cur.off, name_len = lx->cur.len;
        next(lx);
    }
    while (lx->cur.kind == T_LB) { /* arrays decay to pointers */
        size_t open = lx->cur.off;
        next(lx);
        while (lx->cur.kind == T_NUM || lx->cur.kind == T_IDENT || lx->cur.kind == T_STAR)
            next(lx);
        if (lx->cur.kind != T_RB) {
            if (lx->cur.kind == T_END)
                return fail_at(lx, open, "expected ']' to close this '['", NULL, 0);
            return expected(lx, "']'");
        }
        next(lx);
        narrays++;
    }
    if (narrays)
        level++;
    if (!level && !funcptr && t.nvoid)
        return fail_at(lx, start, "'void' must be the only parameter", NULL, 0);
    if (make_type(lx, &t, level, narrays, funcptr, &p->params[i]) < 0)
        return -1;
    if (name_len >= AS_PROTO_NAME_LEN)
        return fail_at(lx, name_off, "parameter name '%s' is longer than 31 bytes",
                       lx->s + name_off, name_len);
    if (name_len) {
        memcpy(p->names[i], lx->s + name_off, name_len);
        p->names[i][name_len] = '\0';
        for (int j = 0; j < i; j++) {
            if (strcmp(p->names[j], p->names[i]) == 0)
                return fail_at(lx, name_off, "duplicate parameter name '%s'", lx->s + name_off,
                               name_len);
        }
    } else {
        snprintf(p->names[i], sizeof p->names[i], "arg%d", i + 1);
    }
    return 0;
}

/* Parses the parameter list; the current token is the '(' after the name. Returns 0 with
 * the token after ')' current, or -1. */
static int parse_params(lexer *lx, as_proto *p) {
    next(lx);
    if (lx->cur.kind == T_RP) {
        next(lx);
        return 0;
    }
    if (tok_is(lx, "void")) { /* (void): peek without consuming */
        lexer peek = *lx;
        next(&peek);
        if (peek.cur.kind == T_RP) {
            *lx = peek;
            next(lx);
            return 0;
        }
    }
    for (;;) {
        if (lx->cur.kind == T_ELLIPSIS) {
            p->variadic = 1;
            next(lx);
            if (lx->cur.kind != T_RP)
                return expected(lx, "')' after '...'");
            next(lx);
            return 0;
        }
        if (p->nparams == AS_PROTO_MAX_PARAMS)
            return fail_at(lx, lx->cur.off, "more than 16 parameters", NULL, 0);
        if (parse_param(lx, p, p->nparams) < 0)
            return -1;
        p->nparams++;
        if (lx->cur.kind == T_RP) {
            next(lx);
            return 0;
        }
        if (lx->cur.kind != T_COMMA)
            return expected(lx, "',' or ')'");
        next(lx);
    }
}

int as_cproto_parse(const char *s, size_t len, as_proto *out, size_t *name_off, size_t *name_len,
                    size_t *consumed, as_cproto_err *err) {
    lexer lx = {.s = s, .len = len, .pos = 0, .err = err};
    err->off = 0;
    err->msg[0] = '\0';
    memset(out, 0, sizeof *out);
    next(&lx);
    tspec t;
    if (parse_specifiers(&lx, &t) < 0)
        return -1;
    int level = 0;
    while (lx.cur.kind == T_STAR) {
        level++;
        next(&lx);
        skip_qualifiers(&lx);
    }
    if (lx.cur.kind == T_LP && t.unknown && t.any == 1 && level == 0)
        return fail_at(&lx, t.unknown_off, "missing result type before '%s'", s + t.name_off,
                       t.name_len);
    if (lx.cur.kind == T_LP) {
        lexer peek = lx;
        next(&peek);
        if (peek.cur.kind == T_STAR)
            return fail_at(&lx, lx.cur.off,
                           "functions returning function pointers are not supported; "
                           "declare the result as 'void *'",
                           NULL, 0);
    }
    if (lx.cur.kind != T_IDENT)
        return expected(&lx, "a function name");
    *name_off = lx.cur.off;
    *name_len = lx.cur.len;
    /* A glob name ("tool_*", "db_[a-c]?"): glob characters written right after the first
     * identifier characters, without a blank. "int tool_ *(int)" stays a C error. */
    size_t g = lx.cur.off + lx.cur.len;
    while (g < lx.len && (is_ident_char((unsigned char)s[g]) || strchr("*?[]!^-", s[g])))
        g++;
    if (g > lx.cur.off + lx.cur.len) {
        *name_len = g - lx.cur.off;
        lx.pos = g;
    }
    next(&lx);
    if (lx.cur.kind != T_LP)
        return expected(&lx, "'('");
    if (make_type(&lx, &t, level, 0, 0, &out->ret) < 0)
        return -1;
    if (parse_params(&lx, out) < 0)
        return -1;
    size_t end = lx.prev_end;
    if (lx.cur.kind == T_SEMI)
        end = lx.cur.off + 1;
    *consumed = end;
    return 0;
}
