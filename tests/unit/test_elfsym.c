/* test_elfsym.c - unit tests of preload/hook/elfsym.c on real files: this test binary, libc
 * (symbol versions, IFUNCs, its separate debug file), the dwarf_tools agent compiled here,
 * a stripped copy of it and a copy whose .symtab lives in a .gnu_debuglink file, a missing
 * file, non-ELF and truncated files; glob matching; the objects a program loads. */
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
#include <elf.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hook/elfsym.h"
#include "test_util.h"

static char tmp_dir[64];
static char tools[256];         /* dwarf_tools built -g -O0 -rdynamic */
static char stripped[PATH_MAX]; /* strip --strip-all copy */
static char linked[PATH_MAX];   /* stripped copy + .gnu_debuglink to tools.debug */

/* A local function with a name no library has, to be found in .symtab. */
__attribute__((noinline, used)) static int elfsym_local_marker(int x) {
    return x * 3;
}

/* Builds dwarf_tools the way tests/agents/dwarf.mk does, plus a stripped copy and a copy
 * whose symbols and DWARF are only in a separate file named by .gnu_debuglink. */
static int setup(void **state) {
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/as-elfsym-XXXXXX");
    return as_test_build_dwarf_tools(tmp_dir, tools, sizeof(tools), stripped, sizeof(stripped),
                                     linked, sizeof(linked));
}

static int teardown(void **state) {
    if (tmp_dir[0])
        as_test_sh("rm -rf %s", tmp_dir);
    return 0;
}

/* Asserts the table is sorted by name and has no entry twice (same name, version, value). */
static void assert_sorted_unique(const as_symtab *t) {
    for (size_t i = 1; i < t->n; i++) {
        const as_sym *a = &t->syms[i - 1], *b = &t->syms[i];
        int c = strcmp(a->name, b->name);
        if (c > 0)
            fail_msg("not sorted: %s before %s", a->name, b->name);
        if (c == 0 && a->value == b->value &&
            ((!a->version && !b->version) ||
             (a->version && b->version && strcmp(a->version, b->version) == 0)))
            fail_msg("duplicate: %s@%s", a->name, a->version ? a->version : "");
    }
}

static const as_sym *find_version(const as_symtab *t, const char *name, const char *ver) {
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->syms[i].name, name) == 0 && t->syms[i].version &&
            strcmp(t->syms[i].version, ver) == 0)
            return &t->syms[i];
    }
    return NULL;
}

/* Proves local functions of a PIE come from .symtab (not exported), with value and size,
 * and that the table is sorted and free of duplicates. */
static void test_self_exe(void **state) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    assert_true(n > 0);
    self[n] = '\0';
    as_symtab t;
    char err[256];
    assert_int_equal(as_symtab_load(self, &t, err, sizeof(err)), 0);
    assert_string_equal(t.path, self);
    const as_sym *s = as_symtab_find(&t, "elfsym_local_marker");
    assert_non_null(s);
    assert_false(s->exported);
    assert_int_equal(s->bind, STB_LOCAL);
    assert_null(s->version);
    assert_true(s->value != 0 && s->size > 0);
    assert_non_null(as_symtab_find(&t, "main"));
    assert_non_null(as_symtab_find(&t, "as_symtab_load")); /* hidden, linked in statically */
    assert_false(as_symtab_find(&t, "as_symtab_load")->exported);
    assert_null(as_symtab_find(&t, "memcpy")); /* undefined here: never listed */
    assert_true(t.has_debug);
    assert_sorted_unique(&t);
    assert_int_equal(elfsym_local_marker(1), 3);
    as_symtab_free(&t);
    assert_null(t.syms);
}

/* Proves .dynsym versions are read: memcpy has a default GLIBC_2.14 IFUNC and a hidden
 * GLIBC_2.2.5 one; find prefers the default; printf is versioned GLIBC_2.2.5. */
static void test_libc_versions(void **state) {
    Dl_info info;
    assert_true(dladdr((void *)&gnu_get_libc_version, &info) != 0);
    as_symtab t;
    char err[256];
    assert_int_equal(as_symtab_load(info.dli_fname, &t, err, sizeof(err)), 0);
    assert_true(t.is_dyn);
    size_t exported = 0;
    for (size_t i = 0; i < t.n; i++)
        exported += t.syms[i].exported;
    assert_true(exported > 2000);
    const as_sym *m = as_symtab_find(&t, "memcpy");
    assert_non_null(m);
    assert_string_equal(m->version, "GLIBC_2.14");
    assert_true(m->version_default && m->exported && m->is_ifunc);
    const as_sym *old = find_version(&t, "memcpy", "GLIBC_2.2.5");
    assert_non_null(old);
    assert_false(old->version_default);
    assert_true(old->exported);
    const as_sym *p = as_symtab_find(&t, "printf");
    assert_non_null(p);
    assert_string_equal(p->version, "GLIBC_2.2.5");
    assert_int_equal(p->bind, STB_GLOBAL);
    assert_false(p->is_ifunc);
    if (t.has_debug) { /* libc6-dbg installed: local functions from the build-id file */
        assert_non_null(t.debug_path);
        assert_string_not_equal(t.debug_path, t.path);
        size_t local = 0;
        for (size_t i = 0; i < t.n; i++)
            local += !t.syms[i].exported;
        assert_true(local > 0);
    } else {
        assert_null(t.debug_path);
    }
    assert_sorted_unique(&t);
    as_symtab_free(&t);
}

/* Proves the -g agent has its static function, its exported ones and DWARF, and that a
 * stripped copy keeps only what .dynsym exports. */
static void test_stripped_copy(void **state) {
    as_symtab full, bare;
    char err[256];
    assert_int_equal(as_symtab_load(tools, &full, err, sizeof(err)), 0);
    assert_non_null(as_symtab_find(&full, "dt_local_helper"));
    assert_false(as_symtab_find(&full, "dt_local_helper")->exported);
    assert_true(as_symtab_find(&full, "calculator_multiply")->exported);
    assert_true(full.has_debug);
    assert_string_equal(full.debug_path, tools);

    assert_int_equal(as_symtab_load(stripped, &bare, err, sizeof(err)), 0);
    assert_null(as_symtab_find(&bare, "dt_local_helper"));
    const as_sym *s = as_symtab_find(&bare, "calculator_multiply");
    assert_non_null(s);
    assert_true(s->exported);
    assert_int_equal(s->value, as_symtab_find(&full, "calculator_multiply")->value);
    assert_false(bare.has_debug);
    assert_null(bare.debug_path);
    assert_true(bare.n < full.n);
    as_symtab_free(&full);
    as_symtab_free(&bare);
}

/* Proves a .gnu_debuglink file in the same directory supplies the local functions and the
 * DWARF of a stripped object. */
static void test_debuglink(void **state) {
    as_symtab t;
    char err[256], want[PATH_MAX];
    assert_int_equal(as_symtab_load(linked, &t, err, sizeof(err)), 0);
    assert_non_null(as_symtab_find(&t, "dt_local_helper"));
    assert_true(as_symtab_find(&t, "calculator_multiply")->exported);
    assert_true(t.has_debug);
    snprintf(want, sizeof(want), "%s.debug", tools);
    assert_non_null(t.debug_path);
    assert_string_equal(t.debug_path, want);
    assert_sorted_unique(&t);
    as_symtab_free(&t);
}

/* Proves a missing file is an error with a reason and a zeroed table. */
static void test_missing_file(void **state) {
    as_symtab t;
    char err[256] = "";
    memset(&t, 0x5a, sizeof(t));
    assert_int_equal(as_symtab_load("/nonexistent/libnothing.so", &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no such file"));
    assert_null(t.syms);
    assert_int_equal(t.n, 0);
    assert_int_equal(as_symtab_load("", &t, err, sizeof(err)), -1);
    assert_int_equal(as_symtab_load(NULL, &t, NULL, 0), -1);
}

/* Proves text, empty, directory and truncated-ELF inputs are refused or read without
 * crashing. */
static void test_non_elf(void **state) {
    char path[PATH_MAX], err[256];
    as_symtab t;
    snprintf(path, sizeof(path), "%s/text", tmp_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\necho not an elf\n", f);
    fclose(f);
    assert_int_equal(as_symtab_load(path, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not an ELF file"));
    snprintf(path, sizeof(path), "%s/empty", tmp_dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(as_symtab_load(path, &t, err, sizeof(err)), -1);
    assert_int_equal(as_symtab_load(tmp_dir, &t, err, sizeof(err)), -1);
    /* The first 200 bytes of a real ELF: a header pointing past the end of the file. */
    snprintf(path, sizeof(path), "%s/truncated", tmp_dir);
    assert_int_equal(as_test_sh("head -c 200 %s > %s", tools, path), 0);
    int rc = as_symtab_load(path, &t, err, sizeof(err));
    assert_true(rc == 0 || rc == -1);
    if (rc == 0) {
        assert_int_equal(t.n, 0);
        as_symtab_free(&t);
    }
}

/* Proves as_symtab_find on absent names and empty tables returns NULL. */
static void test_find_absent(void **state) {
    as_symtab t;
    char err[256];
    assert_int_equal(as_symtab_load(tools, &t, err, sizeof(err)), 0);
    assert_null(as_symtab_find(&t, "no_such_function"));
    assert_null(as_symtab_find(&t, ""));
    assert_null(as_symtab_find(&t, NULL));
    assert_null(as_symtab_find(NULL, "main"));
    as_symtab_free(&t);
    as_symtab_free(NULL);
}

/* Proves glob matching: *, ?, classes, negation, literal '[' and versions. */
static void test_glob(void **state) {
    assert_true(as_glob_match("tool_*", "tool_weather"));
    assert_true(as_glob_match("tool_*", "tool_"));
    assert_false(as_glob_match("tool_*", "tools"));
    assert_true(as_glob_match("*", "anything"));
    assert_true(as_glob_match("*_lookup", "weather_lookup"));
    assert_true(as_glob_match("sqlite3_*_v2", "sqlite3_prepare_v2"));
    assert_false(as_glob_match("sqlite3_*_v2", "sqlite3_prepare_v3"));
    assert_true(as_glob_match("f?o", "foo"));
    assert_false(as_glob_match("f?o", "fo"));
    assert_true(as_glob_match("[a-c]x", "bx"));
    assert_false(as_glob_match("[a-c]x", "dx"));
    assert_true(as_glob_match("[!a-c]x", "dx"));
    assert_false(as_glob_match("[!a-c]x", "ax"));
    assert_true(as_glob_match("[]]", "]"));
    assert_true(as_glob_match("a[b", "a[b")); /* unclosed bracket: literal */
    assert_true(as_glob_match("*a*b*c*", "xxaxxbxxcxx"));
    assert_false(as_glob_match("*a*b*c*", "xxaxxcxxbxx"));
    /* exact names and versions */
    assert_true(as_glob_match("memcpy", "memcpy"));
    assert_true(as_glob_match("memcpy", "memcpy@GLIBC_2.14"));
    assert_false(as_glob_match("memcpy", "memcpy_chk"));
    assert_true(as_glob_match("memcpy@GLIBC_2.14", "memcpy@GLIBC_2.14"));
    assert_true(as_glob_match("memcpy@@GLIBC_2.14", "memcpy@GLIBC_2.14"));
    assert_false(as_glob_match("memcpy@GLIBC_2.14", "memcpy@GLIBC_2.2.5"));
    assert_false(as_glob_match("memcpy@GLIBC_2.14", "memcpy"));
    assert_true(as_glob_match("mem*@GLIBC_2.*", "memmove@GLIBC_2.2.5"));
    assert_false(as_glob_match("mem*@GLIBC_2.3*", "memmove@GLIBC_2.2.5"));
    assert_true(as_glob_match("*@GLIBC_2.14", "memcpy@GLIBC_2.14"));
    assert_false(as_glob_match(NULL, "x"));
    assert_false(as_glob_match("x", NULL));
    assert_true(as_glob_match("", ""));
    assert_false(as_glob_match("", "x"));
    assert_true(as_is_glob("a*"));
    assert_true(as_is_glob("a?"));
    assert_true(as_is_glob("[ab]"));
    assert_false(as_is_glob("memcpy@GLIBC_2.14"));
    assert_false(as_is_glob(NULL));
}

static int has_path(char **paths, int n, const char *part) {
    for (int i = 0; i < n; i++)
        if (strstr(paths[i], part))
            return 1;
    return 0;
}

/* Proves the loaded objects of sqlite3 are listed program first with absolute paths, the
 * vdso skipped, and LD_PRELOAD scrubbed from the traced run. */
static void test_program_objects(void **state) {
    char **paths = NULL, err[256];
    setenv("LD_PRELOAD", "/lib/x86_64-linux-gnu/libz.so.1", 1);
    int n = as_program_objects("sqlite3", &paths, err, sizeof(err));
    unsetenv("LD_PRELOAD");
    assert_true(n >= 3);
    assert_true(paths[0][0] == '/');
    assert_non_null(strstr(paths[0], "/sqlite3"));
    assert_true(has_path(paths, n, "libsqlite3.so"));
    assert_true(has_path(paths, n, "libc.so.6"));
    assert_false(has_path(paths, n, "vdso"));
    for (int i = 0; i < n; i++)
        assert_true(paths[i][0] == '/');
    as_paths_free(paths, n);

    /* A preloaded library not scrubbed would appear in the list of /bin/true. */
    setenv("LD_PRELOAD", "/lib/x86_64-linux-gnu/libsqlite3.so.0", 1);
    n = as_program_objects("/bin/true", &paths, err, sizeof(err));
    unsetenv("LD_PRELOAD");
    assert_true(n >= 2);
    assert_string_equal(paths[0], "/bin/true");
    assert_false(has_path(paths, n, "libsqlite3"));
    as_paths_free(paths, n);
}

/* Proves a static binary, a non-ELF file and a library yield just themselves, and a
 * missing program is an error. */
static void test_program_objects_edges(void **state) {
    char **paths = NULL, err[256], path[PATH_MAX], src[PATH_MAX];
    snprintf(src, sizeof(src), "%s/static.c", tmp_dir);
    snprintf(path, sizeof(path), "%s/static", tmp_dir);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fputs("#include <stdio.h>\nint main(void) { puts(\"ran\"); return 3; }\n", f);
    fclose(f);
    assert_int_equal(as_test_sh("cc -static -o %s %s", path, src), 0);
    int n = as_program_objects(path, &paths, err, sizeof(err));
    assert_int_equal(n, 1);
    assert_string_equal(paths[0], path);
    as_paths_free(paths, n);

    snprintf(path, sizeof(path), "%s/text", tmp_dir);
    n = as_program_objects(path, &paths, err, sizeof(err));
    assert_int_equal(n, 1);
    as_paths_free(paths, n);

    n = as_program_objects("/lib/x86_64-linux-gnu/libsqlite3.so.0", &paths, err, sizeof(err));
    assert_int_equal(n, 1);
    as_paths_free(paths, n);

    paths = (char **)1;
    assert_int_equal(as_program_objects("/nonexistent/prog", &paths, err, sizeof(err)), -1);
    assert_null(paths);
    assert_non_null(strstr(err, "no such file"));
    assert_int_equal(as_program_objects("no-such-program-xyz", &paths, err, sizeof(err)), -1);
    assert_int_equal(as_program_objects(NULL, &paths, err, sizeof(err)), -1);
}

/* as_sym_keep_fn for test_load_some: keeps the names listed in ctx (NULL-terminated),
 * spelled with or without a version; counts its calls in calls. */
static int keep_calls;
static int keep_listed(const char *name, void *ctx) {
    keep_calls++;
    for (const char *const *p = ctx; *p; p++) {
        size_t n = strlen(*p);
        if (strncmp(name, *p, n) == 0 && (name[n] == '\0' || name[n] == '@'))
            return 1;
    }
    return 0;
}

static int keep_nothing(const char *name, void *ctx) {
    (void)name;
    (void)ctx;
    return 0;
}

/* Proves the filtered load keeps exactly the asked-for functions of the full load (same
 * values, sizes, versions, exported flags: a local one from .symtab, an exported one from
 * .dynsym), asks keep about every function symbol, and with a filter keeping nothing still
 * says whether the file carries DWARF and where. */
static void test_load_some(void **state) {
    (void)state;
    as_symtab all, some, none;
    char err[256];
    assert_int_equal(as_symtab_load(tools, &all, err, sizeof(err)), 0);
    const char *want[] = {"elfsym_absent_name", "main", NULL};
    const as_sym *local = NULL;
    for (size_t i = 0; i < all.n && !local; i++)
        if (!all.syms[i].exported && strcmp(all.syms[i].name, "main") != 0)
            local = &all.syms[i];
    assert_non_null(local);
    want[0] = local->name;
    keep_calls = 0;
    assert_int_equal(as_symtab_load_some(tools, &some, err, sizeof(err), keep_listed, want), 0);
    assert_true(keep_calls >= (int)all.n);
    assert_int_equal(some.n, 2);
    for (size_t i = 0; i < some.n; i++) {
        const as_sym *a = as_symtab_find(&all, some.syms[i].name);
        assert_non_null(a);
        assert_int_equal(a->value, some.syms[i].value);
        assert_int_equal(a->size, some.syms[i].size);
        assert_int_equal(a->exported, some.syms[i].exported);
    }
    assert_non_null(as_symtab_find(&some, local->name));
    assert_int_equal(as_symtab_load_some(tools, &none, err, sizeof(err), keep_nothing, NULL), 0);
    assert_int_equal(none.n, 0);
    assert_int_equal(none.has_debug, all.has_debug);
    assert_true(none.has_debug);
    assert_string_equal(none.debug_path, all.debug_path);
    as_symtab_free(&all);
    as_symtab_free(&some);
    as_symtab_free(&none);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_some),
        cmocka_unit_test(test_self_exe),
        cmocka_unit_test(test_libc_versions),
        cmocka_unit_test(test_stripped_copy),
        cmocka_unit_test(test_debuglink),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_non_elf),
        cmocka_unit_test(test_find_absent),
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_program_objects),
        cmocka_unit_test(test_program_objects_edges),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
