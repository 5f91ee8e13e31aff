/* test_dynnamed.c - unit tests of as_dyn_named (preload/hook/got.c), which start-up uses
 * instead of visiting every dynamic symbol of an object: on the C library loaded in this
 * process, the indexes it returns are exactly those a scan of the whole table finds, for
 * names with several versions, one version, none, and with a short output array. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <link.h>

#include "hook/got.h"

static const ElfW(Dyn) * libc_dyn;
static uintptr_t libc_base;

static int find_libc(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    if (!strstr(info->dlpi_name, "/libc.so"))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            libc_dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    libc_base = info->dlpi_addr;
    return 1;
}

/* The number of dynamic symbols, from the GNU hash table's last chain. */
static size_t nsyms(const as_dyninfo *di) {
    const uint32_t *h = di->gnu_hash;
    uint32_t nbuckets = h[0], symoffset = h[1], bloom_size = h[2];
    const ElfW(Addr) *bloom = (const ElfW(Addr) *)&h[4];
    const uint32_t *buckets = (const uint32_t *)&bloom[bloom_size];
    const uint32_t *chain = &buckets[nbuckets];
    uint32_t last = symoffset;
    for (uint32_t i = 0; i < nbuckets; i++)
        if (buckets[i] > last)
            last = buckets[i];
    while (!(chain[last - symoffset] & 1))
        last++;
    return (size_t)last + 1;
}

static void libc_info(as_dyninfo *di) {
    dl_iterate_phdr(find_libc, NULL);
    assert_non_null(libc_dyn);
    assert_int_equal(as_dyn_read(libc_dyn, libc_base, di), 0);
    assert_non_null(di->gnu_hash);
}

/* Every index a full scan finds for name, in increasing order, against as_dyn_named. */
static void check_name(const as_dyninfo *di, const char *name, long expect_at_least) {
    size_t n = nsyms(di);
    uint32_t want[64];
    long nwant = 0;
    for (size_t i = 1; i < n && nwant < 64; i++)
        if (strcmp(di->strtab + di->symtab[i].st_name, name) == 0)
            want[nwant++] = (uint32_t)i;
    assert_true(nwant >= expect_at_least);
    uint32_t got[64];
    long ngot = as_dyn_named(di, name, got, 64);
    assert_int_equal(ngot, nwant);
    for (long k = 0; k < nwant; k++)
        assert_int_equal(got[k], want[k]);
}

static void test_matches_full_scan(void **state) {
    (void)state;
    as_dyninfo di;
    libc_info(&di);
    check_name(&di, "memcpy", 2);   /* memcpy@GLIBC_2.2.5 and memcpy@@GLIBC_2.14 */
    check_name(&di, "realpath", 2); /* two versions as well */
    check_name(&di, "mkfifo", 1);
    check_name(&di, "as_no_such_function_anywhere", 0);
}

static void test_short_output(void **state) {
    (void)state;
    as_dyninfo di;
    libc_info(&di);
    uint32_t one[1] = {0};
    long n = as_dyn_named(&di, "memcpy", one, 1);
    assert_true(n >= 2); /* the full count, only the first written */
    assert_int_not_equal(one[0], 0);
    assert_true(as_dyn_named(&di, "memcpy", NULL, 0) == n);
}

static void test_no_gnu_hash(void **state) {
    (void)state;
    as_dyninfo di;
    libc_info(&di);
    di.gnu_hash = NULL;
    uint32_t out[4];
    assert_int_equal(as_dyn_named(&di, "memcpy", out, 4), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_full_scan),
        cmocka_unit_test(test_short_output),
        cmocka_unit_test(test_no_gnu_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
