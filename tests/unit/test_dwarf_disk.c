/* test_dwarf_disk.c - unit tests of preload/hook/dwarf_disk.c through dwarf.c: a prototype
 * read from DWARF comes back from the on-disk cache identical, field by field, for every
 * parameter kind; "no prototype" is remembered; a damaged or hostile cache file is never
 * believed (the DWARF is read again and gives the right answer); a changed object starts
 * afresh. The cache lives in a private directory (AGENTSIGHT_CACHE_DIR). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hook/dwarf.h"
#include "hook/dwarf_cache.h"
#include "test_util.h"

static char tmp_dir[64];
static char tools[256];    /* dwarf_tools built -g -O0 -rdynamic */
static char stripped[256]; /* no DWARF, no .symtab */
static char linked[256];   /* DWARF only in the .gnu_debuglink file */
static char cache_dir[PATH_MAX];

/* Every function of dwarf_tools with a prototype, covering every parameter kind. */
static const char *const FUNCS[] = {
    "calculator_multiply", "dt_signed", "dt_unsigned", "dt_many",    "dt_bool", "dt_float",
    "dt_long_double",      "dt_strlen", "dt_pointers", "dt_apply",   "dt_enum", "dt_structs",
    "dt_make_point",       "dt_memory", "dt_printf",   "dt_unnamed", "dt_void", "dt_local_helper",
};
#define NFUNCS (sizeof FUNCS / sizeof FUNCS[0])

static int setup(void **state) {
    (void)state;
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/as-dwdisk-XXXXXX");
    if (as_test_build_dwarf_tools(tmp_dir, tools, sizeof(tools), stripped, sizeof(stripped), linked,
                                  sizeof(linked)) != 0)
        return -1;
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", tmp_dir);
    return setenv("AGENTSIGHT_CACHE_DIR", cache_dir, 1); /* read at the first lookup */
}

static int teardown(void **state) {
    (void)state;
    as_dwarf_cache_clear();
    if (tmp_dir[0])
        as_test_sh("rm -rf %s", tmp_dir);
    return 0;
}

static void assert_same_type(const as_type *a, const as_type *b) {
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->size, b->size);
    assert_int_equal(a->cls[0], b->cls[0]);
    assert_int_equal(a->cls[1], b->cls[1]);
    assert_string_equal(a->spelling, b->spelling);
}

static void assert_same_proto(const as_proto *a, const as_proto *b) {
    assert_int_equal(a->nparams, b->nparams);
    assert_int_equal(a->variadic, b->variadic);
    assert_same_type(&a->ret, &b->ret);
    for (int i = 0; i < a->nparams; i++) {
        assert_same_type(&a->params[i], &b->params[i]);
        assert_string_equal(a->names[i], b->names[i]);
    }
}

/* The one cache file written for an object (the newest in the directory). */
static void newest_file(char *out, size_t cap) {
    char dir[PATH_MAX + 8];
    snprintf(dir, sizeof dir, "%s/dwarf", cache_dir);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    struct timespec best = {0, 0};
    out[0] = '\0';
    while ((e = readdir(d)) != NULL) {
        char p[PATH_MAX * 2];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || stat(p, &st) != 0)
            continue;
        if (!out[0] || st.st_mtim.tv_sec > best.tv_sec ||
            (st.st_mtim.tv_sec == best.tv_sec && st.st_mtim.tv_nsec > best.tv_nsec)) {
            best = st.st_mtim;
            snprintf(out, cap, "%s", p);
        }
    }
    closedir(d);
    assert_true(out[0] != '\0');
}

/* Copies the tools into tmp_dir/name (a new object for the cache), asks for func there
 * once and flushes the cache, so its file exists. */
static void cached_copy(const char *name, const char *func, char *copy, size_t cap) {
    snprintf(copy, cap, "%s/%s", tmp_dir, name);
    assert_int_equal(as_test_sh("cp %s %s", tools, copy), 0);
    as_proto p;
    assert_int_equal(as_dwarf_proto(copy, func, &p), 0);
    as_dwarf_cache_clear();
}

/* Proves: before any read nothing is cached; after one process-like pass (read, then the
 * cache flushed) every prototype comes back without DWARF, identical field by field, and
 * a function DWARF does not have is remembered as having none. The file is private. */
static void test_roundtrip_every_kind(void **state) {
    (void)state;
    as_proto fresh[NFUNCS], p;
    for (size_t i = 0; i < NFUNCS; i++) {
        assert_int_equal(as_dwarf_proto_cached(tools, FUNCS[i], &p), -1);
        memset(&fresh[i], 0, sizeof fresh[i]);
        assert_int_equal(as_dwarf_proto(tools, FUNCS[i], &fresh[i]), 0);
    }
    assert_int_equal(as_dwarf_proto(tools, "no_such_function", &p), -1);
    as_dwarf_cache_clear(); /* writes the file and forgets everything in memory */
    for (size_t i = 0; i < NFUNCS; i++) {
        memset(&p, 0x5a, sizeof p);
        assert_int_equal(as_dwarf_proto_cached(tools, FUNCS[i], &p), 1);
        assert_same_proto(&p, &fresh[i]);
    }
    assert_int_equal(as_dwarf_proto_cached(tools, "no_such_function", &p), 0);
    assert_int_equal(as_dwarf_proto(tools, "no_such_function", &p), -1);
    assert_int_equal(as_dwarf_proto_cached(tools, "never_asked", &p), -1);
    char file[PATH_MAX * 2];
    newest_file(file, sizeof file);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char dir[PATH_MAX + 8];
    snprintf(dir, sizeof dir, "%s/dwarf", cache_dir);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

/* Proves: lines that do not parse, describe impossible types, claim more parameters than
 * they give, overflow a field, or are torn are never believed: the cached lookup says
 * "unknown" and the DWARF lookup still returns the right prototype. */
static void test_hostile_file_is_not_believed(void **state) {
    (void)state;
    char copy[PATH_MAX];
    cached_copy("tools-copy", "dt_void", copy, sizeof copy);
    char file[PATH_MAX * 2];
    newest_file(file, sizeof file);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("F\tdt_signed\t0\t1\t99,4,0,0,int\tx\t1,4,0,0,int\n", f);    /* kind 99 */
    fputs("F\tdt_many\t0\t17\t1,4,0,0,int\n", f);                      /* 17 params */
    fputs("F\tdt_enum\t0\t1\t1,4,0,0,int\n", f);                       /* 1 said, 0 given */
    fputs("F\tdt_bool\t2\t0\t1,4,0,0,int\n", f);                       /* variadic 2 */
    fputs("F\tdt_float\t0\t0\t1,4,9,0,int\n", f);                      /* class 9 */
    fputs("F\tdt_strlen\t0\t0\t1,4,0,0,int\textra\t1,4,0,0,int\n", f); /* fields over */
    fputs("F\tdt_pointers\t0\t0\t1,4,0,0,", f);
    for (int i = 0; i < 80; i++)
        fputc('x', f); /* spelling longer than a type can hold */
    fputs("\n\xff\xfe garbage\nN\t\nF\n", f);
    fputs("F\tdt_apply\t0\t0\t1,4,0,0,int", f); /* torn: no newline */
    fclose(f);
    const char *names[] = {"dt_signed", "dt_many",   "dt_enum",     "dt_bool",
                           "dt_float",  "dt_strlen", "dt_pointers", "dt_apply"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        as_proto want, got;
        memset(&got, 0, sizeof got);
        assert_int_equal(as_dwarf_proto_cached(copy, names[i], &got), -1);
        assert_int_equal(as_dwarf_proto(tools, names[i], &want), 0);
        assert_int_equal(as_dwarf_proto(copy, names[i], &got), 0);
        assert_same_proto(&got, &want);
    }
    as_dwarf_cache_clear();
}

/* Proves: an object changed on disk (a new modification time) gets a new cache file, so
 * answers about the old file are not applied to it; files without DWARF cache nothing. */
static void test_changed_object_starts_afresh(void **state) {
    (void)state;
    char copy[PATH_MAX];
    as_proto p;
    cached_copy("tools-touched", "calculator_multiply", copy, sizeof copy);
    assert_int_equal(as_dwarf_proto_cached(copy, "calculator_multiply", &p), 1);
    as_dwarf_cache_clear();
    assert_int_equal(as_test_sh("touch -d '2001-01-01' %s", copy), 0);
    assert_int_equal(as_dwarf_proto_cached(copy, "calculator_multiply", &p), -1);
    assert_int_equal(as_dwarf_proto(stripped, "calculator_multiply", &p), -1);
    as_dwarf_cache_clear();
    assert_int_equal(as_dwarf_proto_cached(stripped, "calculator_multiply", &p), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_kind),
        cmocka_unit_test(test_hostile_file_is_not_believed),
        cmocka_unit_test(test_changed_object_starts_afresh),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
