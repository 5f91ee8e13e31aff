/* test_dynlib.c - unit tests of preload/core/dynlib.c: a missing library or function turns
 * its feature off with one message and never again asks; a real table (cJSON) is filled
 * and callable; the loader handed over with as_dynlib_set_loader is the one used; objects
 * a load brings are recognised as the interposer's own, others are not. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <link.h>

#include "core/dl_cjson.h"
#include "core/dynlib.h"
#include "test_util.h"

/* as_log replaced (test_dynlib.ldflags): messages are kept for the assertions. */
AS_TEST_CAPTURE_LOG(8, 512)

static int reset(void **state) {
    (void)state;
    nmsgs = 0;
    as_dynlib_set_loader(NULL, NULL);
    return 0;
}

/* A table of one function, for the tests' own libraries. */
#define ONE_FN(X) X(as_test_dyn_fn)
int as_test_dyn_fn(int x);
struct one_fns {
    ONE_FN(AS_DL_FIELD)
};
static struct one_fns one;
static int one_resolve(void *handle, as_dl_sym_fn sym, const char **missing) {
    struct one_fns *t = &one;
    ONE_FN(AS_DL_SET)
    return 0;
}

/* Proves a library that is not installed fails its load with one message naming it and
 * the feature, and a second load fails at once without a second message. */
static void test_missing_library(void **state) {
    (void)state;
    as_dynlib lib = {"libagentsight-no-such-library.so.9", "the test feature", one_resolve, 0,
                     NULL};
    assert_int_equal(as_dynlib_load(&lib), -1);
    assert_int_equal(nmsgs, 1);
    assert_non_null(strstr(msgs[0], "libagentsight-no-such-library.so.9"));
    assert_non_null(strstr(msgs[0], "the test feature are off"));
    assert_int_equal(as_dynlib_load(&lib), -1);
    assert_int_equal(nmsgs, 1);
}

/* Proves a library lacking one function of its table fails with the function named. */
static void test_missing_function(void **state) {
    (void)state;
    as_dynlib lib = {"libcjson.so.1", "the test feature", one_resolve, 0, NULL};
    assert_int_equal(as_dynlib_load(&lib), -1);
    assert_int_equal(nmsgs, 1);
    assert_non_null(strstr(msgs[0], "lacks as_test_dyn_fn"));
}

/* Proves the cJSON table of the library loads and its functions work through it. */
static void test_real_table(void **state) {
    (void)state;
    assert_int_equal(as_dynlib_load(&as_cjson_lib), 0);
    cJSON *o = as_cjson.cJSON_Parse("{\"a\":1}");
    assert_non_null(o);
    assert_true(as_cjson.cJSON_IsObject(o));
    assert_true(as_cjson.cJSON_IsNumber(as_cjson.cJSON_GetObjectItemCaseSensitive(o, "a")));
    as_cjson.cJSON_Delete(o);
    assert_int_equal(nmsgs, 0);
}

static int opens;
static void *counting_open(const char *file, int mode) {
    opens++;
    return dlopen(file, mode);
}

typedef struct {
    const char *want;
    uintptr_t base;
    char name[512];
} find_ctx;

static int find_cb(struct dl_phdr_info *info, size_t size, void *p) {
    (void)size;
    find_ctx *c = p;
    if (info->dlpi_name && strstr(info->dlpi_name, c->want)) {
        c->base = info->dlpi_addr;
        snprintf(c->name, sizeof c->name, "%s", info->dlpi_name);
        return 1;
    }
    return 0;
}

/* Proves the loader given to as_dynlib_set_loader is the one called, and that the object
 * a load brings (a library built here, loaded by path) is owned while libc is not. */
static void test_loader_and_ownership(void **state) {
    (void)state;
    char dir[] = "/tmp/as-dynlib-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char src[600], so[600];
    snprintf(src, sizeof src, "%s/one.c", dir);
    snprintf(so, sizeof so, "%s/libasdynone.so", dir);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fputs("int as_test_dyn_fn(int x) { return x * 7; }\n", f);
    fclose(f);
    assert_int_equal(as_test_sh("cc -shared -fPIC -o %s %s", so, src), 0);
    as_dynlib_set_loader(counting_open, dlsym);
    as_dynlib lib = {so, "the test feature", one_resolve, 0, NULL};
    opens = 0;
    assert_int_equal(as_dynlib_load(&lib), 0);
    assert_int_equal(opens, 1);
    assert_int_equal(one.as_test_dyn_fn(6), 42);
    assert_int_equal(as_dynlib_load(&lib), 0); /* loaded once */
    assert_int_equal(opens, 1);
    find_ctx mine = {"libasdynone.so", 0, ""}, libc = {"libc.so.6", 0, ""};
    dl_iterate_phdr(find_cb, &mine);
    dl_iterate_phdr(find_cb, &libc);
    assert_true(mine.name[0] && libc.name[0]);
    assert_int_equal(as_dynlib_owns(mine.base, mine.name), 1);
    assert_int_equal(as_dynlib_owns(libc.base, libc.name), 0);
    assert_int_equal(as_dynlib_owns(mine.base + 4096, mine.name), 0);
    as_test_sh("rm -rf %s", dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_missing_library, reset),
        cmocka_unit_test_setup(test_missing_function, reset),
        cmocka_unit_test_setup(test_real_table, reset),
        cmocka_unit_test_setup(test_loader_and_ownership, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
