/* test_cfgmatch.c - unit tests of the config lookup (preload/hook/cfgmatch.c and the index
 * config.c builds): the same answers as a scan of every entry, duplicates named once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hook/config.h"

static as_config parse(const char *text) {
    as_config c;
    as_config_parse(text, strlen(text), "t.conf", &c);
    return c;
}

static int match(const as_config *c, const char *name, const char *ver, const char *file) {
    int idx = -2;
    const as_entry *e = as_config_match(c, name, ver, file, &idx);
    assert_true(e ? e == &c->entries[idx] : idx == -1);
    return idx;
}

/* Proves an exact name wins over an earlier glob, the first glob wins among globs, and a
 * name nothing names gets -1. */
static void test_exact_over_glob(void **state) {
    as_config c = parse("[actions]\ntool_*\ntool_?\ntool_x\nother\n");
    assert_non_null(c.index);
    assert_int_equal(match(&c, "tool_x", NULL, "a.so"), 2);
    assert_int_equal(match(&c, "tool_y", NULL, "a.so"), 0);
    assert_int_equal(match(&c, "other", NULL, "a.so"), 3);
    assert_int_equal(match(&c, "none", NULL, "a.so"), -1);
    as_config_free(&c);
}

/* Proves version and lib= filters pick, in file order, the first entry that fits. */
static void test_filters(void **state) {
    as_config c = parse("[actions]\nf@V2\nf lib=liba.so\nf\n");
    assert_int_equal(match(&c, "f", "V2", "libb.so"), 0);
    assert_int_equal(match(&c, "f", "V1", "liba.so"), 1);
    assert_int_equal(match(&c, "f", NULL, "libb.so"), 2);
    as_config_free(&c);
}

/* Proves a repeated entry is marked as a duplicate of its first line and never chosen,
 * while entries with the same name and other filters are not duplicates. */
static void test_duplicates(void **state) {
    as_config c = parse("[actions]\nf\ng*\nf lib=x.so\nf\ng*\n");
    assert_int_equal(c.entries[0].dup_line, 0);
    assert_int_equal(c.entries[2].dup_line, 0);
    assert_int_equal(c.entries[3].dup_line, 2);
    assert_int_equal(c.entries[4].dup_line, 3);
    assert_int_equal(match(&c, "f", NULL, "y.so"), 0);
    assert_int_equal(match(&c, "gg", NULL, "y.so"), 1);
    as_config_free(&c);
}

/* Proves 100,000 exact entries are all found at their own index. */
static void test_many(void **state) {
    size_t cap = 100000 * 16 + 16;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t o = (size_t)snprintf(text, cap, "[actions]\n");
    for (int i = 0; i < 100000; i++)
        o += (size_t)snprintf(text + o, cap - o, "fn_%d\n", i);
    as_config c = parse(text);
    free(text);
    assert_int_equal(c.nentries, 100000);
    char name[32];
    for (int i = 0; i < 100000; i += 997) {
        snprintf(name, sizeof name, "fn_%d", i);
        assert_int_equal(match(&c, name, NULL, "a.so"), i);
    }
    assert_int_equal(match(&c, "fn_100000", NULL, "a.so"), -1);
    as_config_free(&c);
}

/* Proves the symbol filter used before a .symtab is read keeps exactly the names an entry
 * that may patch entries could select: exact names with or without "@VERSION", globs,
 * lib= fitting; hook=got entries and other files' entries keep nothing. With 100,000
 * exact entries the filter answers through the index (one lookup per symbol: the scan it
 * replaced took minutes for a libc-sized .symtab). */
static void test_may_entry_patch(void **state) {
    as_config c = parse("[actions]\nf\ntool_*\ng hook=got\nh lib=liba.so\n");
    assert_true(as_config_may_entry_patch(&c, "f", "x.so"));
    assert_true(as_config_may_entry_patch(&c, "f@@GLIBC_2.2.5", "x.so"));
    assert_true(as_config_may_entry_patch(&c, "tool_run@V1", "x.so"));
    assert_false(as_config_may_entry_patch(&c, "g", "x.so"));
    assert_true(as_config_may_entry_patch(&c, "h", "liba.so"));
    assert_false(as_config_may_entry_patch(&c, "h", "libb.so"));
    assert_false(as_config_may_entry_patch(&c, "fx", "x.so"));
    as_config_free(&c);
    size_t cap = 100000 * 16 + 16, n = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    n += (size_t)snprintf(text, cap, "[actions]\n");
    for (int i = 0; i < 100000; i++)
        n += (size_t)snprintf(text + n, cap - n, "name_%d\n", i);
    c = parse(text);
    free(text);
    assert_non_null(c.index);
    assert_true(as_config_may_entry_patch(&c, "name_99999", "libc.so.6"));
    assert_false(as_config_may_entry_patch(&c, "name_100000", "libc.so.6"));
    for (int i = 0; i < 200000; i++)
        assert_false(as_config_may_entry_patch(&c, "printf_unlocked_x", "libc.so.6"));
    as_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_over_glob), cmocka_unit_test(test_filters),
        cmocka_unit_test(test_duplicates),      cmocka_unit_test(test_many),
        cmocka_unit_test(test_may_entry_patch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
