/* test_cproto.c - unit tests of the config's C prototype parser (preload/hook/cproto.c):
 * every supported type spelling, parameter naming, varargs, limits and error positions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hook/cproto.h"

/* Parses text and asserts success. */
static void parse_ok(const char *text, as_proto *p) {
    size_t off, n, used;
    as_cproto_err err;
    int rc = as_cproto_parse(text, strlen(text), p, &off, &n, &used, &err);
    if (rc != 0)
        fail_msg("'%s' refused at %zu: %s", text, err.off, err.msg);
}

/* Parses len bytes of text, asserts failure, and returns the error. */
static as_cproto_err parse_bad_n(const char *text, size_t len) {
    as_proto p;
    size_t off, n, used;
    as_cproto_err err;
    if (as_cproto_parse(text, len, &p, &off, &n, &used, &err) == 0)
        fail_msg("'%.*s' was accepted", (int)(len > 80 ? 80 : len), text);
    return err;
}

static as_cproto_err parse_bad(const char *text) {
    return parse_bad_n(text, strlen(text));
}

static const struct {
    const char *type;
    uint8_t kind, size;
    const char *spelling;
} types[] = {
    {"bool", AS_K_BOOL, 1, "bool"},
    {"_Bool", AS_K_BOOL, 1, "bool"},
    {"char", AS_K_SINT, 1, "char"},
    {"signed char", AS_K_SINT, 1, "signed char"},
    {"unsigned char", AS_K_UINT, 1, "unsigned char"},
    {"char unsigned", AS_K_UINT, 1, "unsigned char"},
    {"short", AS_K_SINT, 2, "short"},
    {"short int", AS_K_SINT, 2, "short"},
    {"signed short int", AS_K_SINT, 2, "short"},
    {"unsigned short", AS_K_UINT, 2, "unsigned short"},
    {"int", AS_K_SINT, 4, "int"},
    {"signed", AS_K_SINT, 4, "int"},
    {"signed int", AS_K_SINT, 4, "int"},
    {"unsigned", AS_K_UINT, 4, "unsigned int"},
    {"unsigned int", AS_K_UINT, 4, "unsigned int"},
    {"long", AS_K_SINT, 8, "long"},
    {"long int", AS_K_SINT, 8, "long"},
    {"long unsigned int", AS_K_UINT, 8, "unsigned long"},
    {"unsigned long", AS_K_UINT, 8, "unsigned long"},
    {"long long", AS_K_SINT, 8, "long long"},
    {"long long int", AS_K_SINT, 8, "long long"},
    {"unsigned long long", AS_K_UINT, 8, "unsigned long long"},
    {"long unsigned long int", AS_K_UINT, 8, "unsigned long long"},
    {"int8_t", AS_K_SINT, 1, "int8_t"},
    {"int16_t", AS_K_SINT, 2, "int16_t"},
    {"int32_t", AS_K_SINT, 4, "int32_t"},
    {"int64_t", AS_K_SINT, 8, "int64_t"},
    {"uint8_t", AS_K_UINT, 1, "uint8_t"},
    {"uint16_t", AS_K_UINT, 2, "uint16_t"},
    {"uint32_t", AS_K_UINT, 4, "uint32_t"},
    {"uint64_t", AS_K_UINT, 8, "uint64_t"},
    {"size_t", AS_K_UINT, 8, "size_t"},
    {"ssize_t", AS_K_SINT, 8, "ssize_t"},
    {"intptr_t", AS_K_SINT, 8, "intptr_t"},
    {"uintptr_t", AS_K_UINT, 8, "uintptr_t"},
    {"off_t", AS_K_SINT, 8, "off_t"},
    {"float", AS_K_FLOAT, 4, "float"},
    {"double", AS_K_FLOAT, 8, "double"},
    {"long double", AS_K_FLOAT, 16, "long double"},
    {"char *", AS_K_STR, 8, "char *"},
    {"const char *", AS_K_STR, 8, "const char *"},
    {"char const *", AS_K_STR, 8, "const char *"},
    {"const char *const", AS_K_STR, 8, "const char *"},
    {"const char *restrict", AS_K_STR, 8, "const char *"},
    {"unsigned char *", AS_K_PTR, 8, "unsigned char *"},
    {"signed char *", AS_K_PTR, 8, "signed char *"},
    {"char **", AS_K_PTR, 8, "char **"},
    {"void *", AS_K_PTR, 8, "void *"},
    {"const void *", AS_K_PTR, 8, "const void *"},
    {"int *", AS_K_PTR, 8, "int *"},
    {"struct sqlite3 *", AS_K_PTR, 8, "struct sqlite3 *"},
    {"sqlite3_stmt *", AS_K_PTR, 8, "sqlite3_stmt *"},
    {"FILE *", AS_K_PTR, 8, "FILE *"},
    {"enum color", AS_K_SINT, 4, "enum color"},
    {"struct point", AS_K_AGG, 0, "struct point"},
    {"union value", AS_K_AGG, 0, "union value"},
    {"volatile int", AS_K_SINT, 4, "int"},
    {"const int", AS_K_SINT, 4, "int"},
};

/* Proves every documented type spelling maps to the right kind, size and spelling, both
 * as a named parameter and as the result. */
static void test_type_spellings(void **state) {
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char text[128];
        as_proto p;
        snprintf(text, sizeof text, "void f(%s x)", types[i].type);
        parse_ok(text, &p);
        assert_int_equal(p.nparams, 1);
        if (p.params[0].kind != types[i].kind || p.params[0].size != types[i].size)
            fail_msg("'%s': kind %d size %d", types[i].type, p.params[0].kind, p.params[0].size);
        assert_string_equal(p.params[0].spelling, types[i].spelling);
        assert_string_equal(p.names[0], "x");
        snprintf(text, sizeof text, "%s f(void)", types[i].type);
        parse_ok(text, &p);
        assert_int_equal(p.ret.kind, types[i].kind);
        assert_int_equal(p.ret.size, types[i].size);
        assert_string_equal(p.ret.spelling, types[i].spelling);
    }
}

/* Proves the example prototypes of the reference parse to the documented shape, the name
 * span is reported, and consumption stops after ')' so options can follow. */
static void test_example_and_consumed(void **state) {
    const char *text = "const char *weather_lookup(const char *location, const char *units)  "
                       "error_if=null";
    as_proto p;
    size_t off, n, used;
    as_cproto_err err;
    assert_int_equal(as_cproto_parse(text, strlen(text), &p, &off, &n, &used, &err), 0);
    assert_int_equal(off, 12);
    assert_int_equal(n, strlen("weather_lookup"));
    assert_int_equal(used, strlen("const char *weather_lookup(const char *location, "
                                  "const char *units)"));
    assert_int_equal(p.ret.kind, AS_K_STR);
    assert_int_equal(p.nparams, 2);
    assert_string_equal(p.names[0], "location");
    assert_string_equal(p.names[1], "units");
    assert_int_equal(p.variadic, 0);

    const char *semi = "int f(int a); rest";
    assert_int_equal(as_cproto_parse(semi, strlen(semi), &p, &off, &n, &used, &err), 0);
    assert_int_equal(used, strlen("int f(int a);"));
}

/* Proves (void) and () mean no parameters, unnamed parameters are named by position,
 * `...` sets variadic, arrays decay and function pointers become PTR. */
static void test_params_shapes(void **state) {
    as_proto p;
    parse_ok("void reset_cache(void)", &p);
    assert_int_equal(p.nparams, 0);
    assert_int_equal(p.ret.kind, AS_K_VOID);
    parse_ok("int now()", &p);
    assert_int_equal(p.nparams, 0);
    parse_ok("int f(int, double, const char *)", &p);
    assert_int_equal(p.nparams, 3);
    assert_string_equal(p.names[0], "arg1");
    assert_string_equal(p.names[1], "arg2");
    assert_string_equal(p.names[2], "arg3");
    parse_ok("int printf(const char *fmt, ...)", &p);
    assert_int_equal(p.nparams, 1);
    assert_int_equal(p.variadic, 1);
    parse_ok("int g(char buf[64], char s[], int m[3][4], char *argv[])", &p);
    assert_int_equal(p.params[0].kind, AS_K_STR);
    assert_int_equal(p.params[1].kind, AS_K_STR);
    assert_int_equal(p.params[2].kind, AS_K_PTR);
    assert_int_equal(p.params[3].kind, AS_K_PTR);
    assert_string_equal(p.params[3].spelling, "char **");
    parse_ok("void on(int sig, void (*cb)(int, char *), int (*)(void))", &p);
    assert_int_equal(p.nparams, 3);
    assert_int_equal(p.params[1].kind, AS_K_PTR);
    assert_string_equal(p.names[1], "cb");
    assert_int_equal(p.params[2].kind, AS_K_PTR);
    assert_string_equal(p.names[2], "arg3");
    parse_ok("  extern   static inline unsigned   *  \tf ( int  a )  ", &p);
    assert_int_equal(p.ret.kind, AS_K_PTR);
}

/* Proves 16 parameters are accepted and a 17th is refused at its own position. */
static void test_param_limit(void **state) {
    char text[512] = "int f(";
    for (int i = 0; i < 16; i++)
        strcat(text, i ? ", int" : "int");
    strcat(text, ")");
    as_proto p;
    parse_ok(text, &p);
    assert_int_equal(p.nparams, 16);
    text[strlen(text) - 1] = '\0';
    size_t where = strlen(text) + 2;
    strcat(text, ", long)");
    as_cproto_err err = parse_bad(text);
    assert_string_equal(err.msg, "more than 16 parameters");
    assert_int_equal(err.off, where);
}

static const struct {
    const char *text;
    size_t off;
    const char *msg;
} errors[] = {
    {"int f(strng s)", 6, "unknown type 'strng'"},
    {"strng f(int a)", 0, "unknown type 'strng'"},
    {"int f(int a", 11, "expected ',' or ')' at end of line"},
    {"int f(int a b)", 12, "expected ',' or ')', found 'b'"},
    {"int f", 5, "expected '(' at end of line"},
    {"int (int a)", 4, "expected a function name, found '('"},
    {"void (*f(int))(int)", 5,
     "functions returning function pointers are not supported; declare the result as 'void *'"},
    {"int *(int a)", 5, "expected a function name, found '('"},
    {"int", 3, "expected a function name at end of line"},
    {"f(int a)", 0, "missing result type before 'f'"},
    {"long char f(void)", 5, "invalid combination of type specifiers at 'char'"},
    {"int f(unsigned float x)", 15, "invalid combination of type specifiers at 'float'"},
    {"int f(long long long x)", 16, "invalid combination of type specifiers at 'long'"},
    {"int f(short long x)", 12, "invalid combination of type specifiers at 'long'"},
    {"int f(signed unsigned x)", 13, "invalid combination of type specifiers at 'unsigned'"},
    {"int f(int struct x)", 10, "invalid combination of type specifiers at 'struct'"},
    {"int f(struct *p)", 13, "expected a name after 'struct', found '*'"},
    {"int f(int a, void)", 13, "'void' must be the only parameter"},
    {"int f(void x)", 6, "'void' must be the only parameter"},
    {"int f(int a, int a)", 17, "duplicate parameter name 'a'"},
    {"int f(..., int a)", 9, "expected ')' after '...', found ','"},
    {"int f(char buf[4)", 16, "expected ']', found ')'"},
    {"int f(char buf[4", 14, "expected ']' to close this '['"},
    {"int f(void (*cb)(int)", 21, "expected ',' or ')' at end of line"},
    {"int f(void (cb)(int))", 12, "expected '*' in a function pointer, found 'cb'"},
    {"int f(int a%)", 11, "expected ',' or ')', found '%'"},
    {"int f(int \xc3\xa9)", 10, "expected ',' or ')', found byte 0xc3"},
    {"int f(int abcdefghijabcdefghijabcdefghijab)", 10,
     "parameter name 'abcdefghijabcdefghijabcdefghijab' is longer than 31 bytes"},
    {"", 0, "expected a type at end of line"},
};

/* Proves every parse error names the problem and points at the offending token. */
static void test_errors(void **state) {
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        as_cproto_err err = parse_bad(errors[i].text);
        if (strcmp(err.msg, errors[i].msg) != 0 || err.off != errors[i].off)
            fail_msg("'%s': got %zu '%s', want %zu '%s'", errors[i].text, err.off, err.msg,
                     errors[i].off, errors[i].msg);
    }
}

/* Proves text after the closing ')' is left to the caller (not an error here), and a
 * function pointer parameter followed by trailing blanks parses. */
static void test_accepts_trailing(void **state) {
    as_proto p;
    parse_ok("int f(int a) x", &p);
    parse_ok("int f(void (*cb)(int)) ", &p);
    assert_int_equal(p.nparams, 1);
}

/* Proves hostile input (long, binary, unbalanced) is refused or parsed without reading
 * past len: the text is not NUL-terminated at len. */
static void test_hostile(void **state) {
    static char big[1 << 16];
    memset(big, '*', sizeof big);
    memcpy(big, "int", 3);
    big[3] = ' ';
    parse_bad_n(big, sizeof big); /* stars but no name */
    memset(big, '(', sizeof big);
    parse_bad_n(big, sizeof big);
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 131 + 7);
    parse_bad_n(big, sizeof big);
    const char text[] = "int f(int a)XXXX";
    as_proto p;
    size_t off, n, used;
    as_cproto_err err;
    assert_int_equal(as_cproto_parse(text, 11, &p, &off, &n, &used, &err), -1);
    assert_string_equal(err.msg, "expected ',' or ')' at end of line");
    char longtype[200];
    memset(longtype, 'x', sizeof longtype);
    memcpy(longtype, "int f(", 6);
    memcpy(longtype + 190, " *p)", 5);
    parse_ok(longtype, &p);
    assert_int_equal(p.params[0].kind, AS_K_PTR);
    assert_true(strlen(p.params[0].spelling) < AS_PROTO_TYPE_LEN);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_spellings), cmocka_unit_test(test_example_and_consumed),
        cmocka_unit_test(test_params_shapes),  cmocka_unit_test(test_param_limit),
        cmocka_unit_test(test_errors),         cmocka_unit_test(test_accepts_trailing),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
