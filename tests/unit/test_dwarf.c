/* test_dwarf.c - unit tests of preload/hook/dwarf.c against the dwarf_tools agent compiled
 * here with -g -O0: every parameter kind (ints of each size and sign, bool, char, floats,
 * strings, pointers, enums, structs and a union with their SysV classes), names, unnamed
 * parameters, varargs, more than six and more than sixteen parameters; files without DWARF,
 * a separate debug file, and as_proto_format. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <limits.h>
#include <unistd.h>

#include "hook/dwarf.h"
#include "hook/dwarf_cache.h"
#include "hook/elfsym.h"
#include "test_util.h"

static char tmp_dir[64];
static char tools[256];    /* dwarf_tools built -g -O0 -rdynamic */
static char stripped[256]; /* no DWARF, no .symtab */
static char linked[256];   /* DWARF only in the .gnu_debuglink file */

static int setup(void **state) {
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/as-dwarf-XXXXXX");
    setenv("AGENTSIGHT_CACHE_DIR", "off", 1); /* every lookup reads DWARF (test_dwarf_disk) */
    return as_test_build_dwarf_tools(tmp_dir, tools, sizeof(tools), stripped, sizeof(stripped),
                                     linked, sizeof(linked));
}

static int teardown(void **state) {
    as_dwarf_cache_clear();
    if (tmp_dir[0])
        as_test_sh("rm -rf %s", tmp_dir);
    return 0;
}

static as_proto get(const char *func) {
    as_proto p;
    memset(&p, 0, sizeof(p));
    if (as_dwarf_proto(tools, func, &p) != 0)
        fail_msg("no prototype for %s", func);
    return p;
}

static void assert_type(const as_type *t, int kind, int size, const char *spelling) {
    assert_int_equal(t->kind, kind);
    assert_int_equal(t->size, size);
    assert_string_equal(t->spelling, spelling);
}

static void assert_formatted(const as_proto *p, const char *func, const char *want) {
    char buf[512];
    int n = as_proto_format(p, func, buf, sizeof(buf));
    assert_string_equal(buf, want);
    assert_int_equal(n, (int)strlen(want));
}

/* Proves the basic case: names, int kinds and the C text. */
static void test_multiply(void **state) {
    as_proto p = get("calculator_multiply");
    assert_int_equal(p.nparams, 2);
    assert_false(p.variadic);
    assert_type(&p.ret, AS_K_SINT, 4, "int");
    assert_type(&p.params[0], AS_K_SINT, 4, "int");
    assert_string_equal(p.names[0], "a");
    assert_string_equal(p.names[1], "b");
    assert_formatted(&p, "calculator_multiply", "int calculator_multiply(int a, int b)");
}

/* Proves every signed and unsigned integer size and its C spelling. */
static void test_integers(void **state) {
    as_proto s = get("dt_signed");
    assert_int_equal(s.nparams, 5);
    assert_type(&s.ret, AS_K_SINT, 8, "long");
    assert_type(&s.params[0], AS_K_SINT, 1, "signed char");
    assert_type(&s.params[1], AS_K_SINT, 2, "short");
    assert_type(&s.params[2], AS_K_SINT, 4, "int");
    assert_type(&s.params[3], AS_K_SINT, 8, "long");
    assert_type(&s.params[4], AS_K_SINT, 8, "long long");
    as_proto u = get("dt_unsigned");
    assert_type(&u.ret, AS_K_UINT, 8, "unsigned long");
    assert_type(&u.params[0], AS_K_UINT, 1, "unsigned char");
    assert_type(&u.params[1], AS_K_UINT, 2, "unsigned short");
    assert_type(&u.params[2], AS_K_UINT, 4, "unsigned int");
    assert_type(&u.params[3], AS_K_UINT, 8, "unsigned long");
    assert_type(&u.params[4], AS_K_UINT, 8, "unsigned long long");
}

/* Proves more than six parameters (two on the stack) and typedef spellings are kept. */
static void test_many_params(void **state) {
    as_proto p = get("dt_many");
    assert_int_equal(p.nparams, 8);
    assert_type(&p.ret, AS_K_SINT, 8, "int64_t");
    assert_type(&p.params[0], AS_K_SINT, 1, "int8_t");
    assert_type(&p.params[1], AS_K_SINT, 2, "int16_t");
    assert_type(&p.params[6], AS_K_UINT, 4, "uint32_t");
    assert_type(&p.params[7], AS_K_UINT, 8, "uint64_t");
    assert_string_equal(p.names[7], "h");
}

/* Proves more than AS_PROTO_MAX_PARAMS parameters is refused and out left untouched. */
static void test_too_many_params(void **state) {
    as_proto p;
    memset(&p, 0x77, sizeof(p));
    assert_int_equal(as_dwarf_proto(tools, "dt_seventeen", &p), -1);
    assert_int_equal(p.nparams, 0x77777777);
}

/* Proves bool, char, float, double and long double. */
static void test_bool_char_float(void **state) {
    as_proto b = get("dt_bool");
    assert_type(&b.ret, AS_K_BOOL, 1, "bool");
    assert_type(&b.params[0], AS_K_BOOL, 1, "bool");
    assert_type(&b.params[1], AS_K_SINT, 1, "char");
    as_proto f = get("dt_float");
    assert_type(&f.ret, AS_K_FLOAT, 8, "double");
    assert_type(&f.params[0], AS_K_FLOAT, 4, "float");
    assert_type(&f.params[1], AS_K_FLOAT, 8, "double");
    as_proto l = get("dt_long_double");
    assert_type(&l.ret, AS_K_FLOAT, 16, "long double");
    assert_type(&l.params[0], AS_K_FLOAT, 16, "long double");
}

/* Proves strings (char *, const char *) apart from other pointers (unsigned char *,
 * void *, int *, function pointers). */
static void test_pointers(void **state) {
    as_proto s = get("dt_strlen");
    assert_type(&s.ret, AS_K_UINT, 8, "size_t");
    assert_type(&s.params[0], AS_K_STR, 8, "const char *");
    as_proto p = get("dt_pointers");
    assert_type(&p.ret, AS_K_STR, 8, "char *");
    assert_type(&p.params[0], AS_K_STR, 8, "char *");
    assert_type(&p.params[1], AS_K_PTR, 8, "const unsigned char *");
    assert_type(&p.params[2], AS_K_PTR, 8, "void *");
    assert_type(&p.params[3], AS_K_PTR, 8, "int *");
    assert_formatted(&p, "dt_pointers",
                     "char *dt_pointers(char *buf, const unsigned char *bytes, void *opaque, "
                     "int *count)");
    as_proto a = get("dt_apply");
    assert_int_equal(a.params[0].kind, AS_K_PTR);
    assert_formatted(&a, "dt_apply", "int dt_apply(int (*fn)(), int value)");
}

/* Proves enums: unsigned when all values are >= 0, signed with a negative enumerator. */
static void test_enums(void **state) {
    as_proto p = get("dt_enum");
    assert_type(&p.ret, AS_K_UINT, 4, "enum color");
    assert_type(&p.params[0], AS_K_UINT, 4, "enum color");
    assert_type(&p.params[1], AS_K_SINT, 4, "enum sign");
}

/* Proves structs by value <= 16 bytes get the SysV class of each eightbyte. */
static void test_struct_classes(void **state) {
    as_proto p = get("dt_structs");
    assert_int_equal(p.nparams, 5);
    const as_type *t = p.params;
    assert_type(&t[0], AS_K_AGG, 8, "struct point");
    assert_int_equal(t[0].cls[0], AS_AGG_INTEGER);
    assert_int_equal(t[0].cls[1], AS_AGG_NONE);
    assert_type(&t[1], AS_K_AGG, 16, "struct vec2");
    assert_int_equal(t[1].cls[0], AS_AGG_SSE);
    assert_int_equal(t[1].cls[1], AS_AGG_SSE);
    assert_type(&t[2], AS_K_AGG, 16, "struct mixed");
    assert_int_equal(t[2].cls[0], AS_AGG_SSE);
    assert_int_equal(t[2].cls[1], AS_AGG_INTEGER);
    assert_type(&t[3], AS_K_AGG, 8, "struct floats");
    assert_int_equal(t[3].cls[0], AS_AGG_SSE);
    assert_type(&t[4], AS_K_AGG, 8, "struct float_int");
    assert_int_equal(t[4].cls[0], AS_AGG_INTEGER);
    as_proto r = get("dt_make_point");
    assert_type(&r.ret, AS_K_AGG, 8, "point_t");
    assert_int_equal(r.ret.cls[0], AS_AGG_INTEGER);
}

/* Proves > 16 bytes and packed (unaligned) structs are MEMORY, and a union is classified
 * over all its members. */
static void test_memory_and_union(void **state) {
    as_proto p = get("dt_memory");
    assert_type(&p.params[0], AS_K_AGG, 24, "struct big");
    assert_int_equal(p.params[0].cls[0], AS_AGG_MEMORY);
    assert_type(&p.params[1], AS_K_AGG, 5, "struct packed");
    assert_int_equal(p.params[1].cls[0], AS_AGG_MEMORY);
    assert_type(&p.params[2], AS_K_AGG, 8, "union number");
    assert_int_equal(p.params[2].cls[0], AS_AGG_INTEGER);
}

/* Proves varargs, unnamed parameters (arg1..) and void functions. */
static void test_varargs_unnamed_void(void **state) {
    as_proto v = get("dt_printf");
    assert_true(v.variadic);
    assert_int_equal(v.nparams, 1);
    assert_formatted(&v, "dt_printf", "int dt_printf(const char *fmt, ...)");
    as_proto u = get("dt_unnamed");
    assert_int_equal(u.nparams, 2);
    assert_string_equal(u.names[0], "arg1");
    assert_string_equal(u.names[1], "label");
    as_proto z = get("dt_void");
    assert_int_equal(z.ret.kind, AS_K_VOID);
    assert_int_equal(z.nparams, 0);
    assert_formatted(&z, "dt_void", "void dt_void(void)");
    as_proto l = get("dt_local_helper"); /* static functions are described too */
    assert_formatted(&l, "dt_local_helper", "int dt_local_helper(int x)");
}

/* Proves missing files, non-ELF files, files without DWARF and unknown names fail without
 * touching out, and that alternating files through the cache gives the same answers. */
static void test_failures_and_cache(void **state) {
    as_proto p;
    memset(&p, 0x33, sizeof(p));
    assert_int_equal(as_dwarf_proto("/nonexistent/file", "main", &p), -1);
    assert_int_equal(as_dwarf_proto(stripped, "calculator_multiply", &p), -1);
    assert_int_equal(as_dwarf_proto(tools, "no_such_function", &p), -1);
    assert_int_equal(as_dwarf_proto("/etc/hostname", "main", &p), -1);
    assert_int_equal(as_dwarf_proto(NULL, "main", &p), -1);
    assert_int_equal(as_dwarf_proto(tools, NULL, &p), -1);
    assert_int_equal(p.nparams, 0x33333333);
    /* stripped, then tools, then stripped again: each answer independent of the cache */
    assert_int_equal(as_dwarf_proto(tools, "calculator_multiply", &p), 0);
    assert_int_equal(as_dwarf_proto(stripped, "calculator_multiply", &p), -1);
    as_dwarf_cache_clear();
    assert_int_equal(as_dwarf_proto(tools, "dt_many", &p), 0);
    assert_int_equal(p.nparams, 8);
}

/* Proves DWARF is found through .gnu_debuglink when the object itself has none. */
static void test_debuglink(void **state) {
    as_proto p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(as_dwarf_proto(linked, "calculator_multiply", &p), 0);
    assert_formatted(&p, "calculator_multiply", "int calculator_multiply(int a, int b)");
}

/* Proves libc's prototypes come from its build-id debug file when one is installed, and
 * that the lookup fails cleanly when none is. */
static void test_libc(void **state) {
    Dl_info info;
    assert_true(dladdr((void *)&gnu_get_libc_version, &info) != 0);
    as_symtab t;
    assert_int_equal(as_symtab_load(info.dli_fname, &t, NULL, 0), 0);
    as_proto p;
    int rc = as_dwarf_proto(info.dli_fname, "getaddrinfo", &p);
    if (t.has_debug) {
        assert_int_equal(rc, 0);
        assert_int_equal(p.nparams, 4);
        assert_type(&p.params[0], AS_K_STR, 8, "const char *");
        assert_type(&p.ret, AS_K_SINT, 4, "int");
    } else {
        assert_int_equal(rc, -1);
    }
    as_symtab_free(&t);
}

/* Proves as_proto_format: hand-built prototypes, "(...)" with no fixed parameter, and a
 * small buffer truncated and NUL-terminated. */
static void test_format(void **state) {
    as_proto p;
    memset(&p, 0, sizeof(p));
    snprintf(p.ret.spelling, sizeof(p.ret.spelling), "int");
    p.variadic = 1;
    assert_formatted(&p, "f", "int f(...)");
    memset(&p, 0, sizeof(p)); /* empty spelling: void */
    assert_formatted(&p, "g", "void g(void)");
    p.nparams = 1;
    snprintf(p.params[0].spelling, sizeof(p.params[0].spelling), "const char *");
    snprintf(p.names[0], sizeof(p.names[0]), "s");
    char small[8];
    memset(small, 'x', sizeof(small));
    int n = as_proto_format(&p, "function", small, sizeof(small));
    assert_int_equal(n, 7);
    assert_int_equal(small[7], '\0');
    assert_int_equal(as_proto_format(&p, "f", small, 0), 0);
    assert_int_equal(as_proto_format(NULL, "f", small, sizeof(small)), 0);
    assert_string_equal(small, "");
    p.nparams = 99; /* out of range: capped, no overrun */
    char big[4096];
    assert_true(as_proto_format(&p, "h", big, sizeof(big)) > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multiply),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_many_params),
        cmocka_unit_test(test_too_many_params),
        cmocka_unit_test(test_bool_char_float),
        cmocka_unit_test(test_pointers),
        cmocka_unit_test(test_enums),
        cmocka_unit_test(test_struct_classes),
        cmocka_unit_test(test_memory_and_union),
        cmocka_unit_test(test_varargs_unnamed_void),
        cmocka_unit_test(test_failures_and_cache),
        cmocka_unit_test(test_debuglink),
        cmocka_unit_test(test_libc),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
