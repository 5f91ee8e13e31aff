/* test_ringtrim.c - the giving back of consumed ring pages: it never erases a record not
 * yet consumed (also across the wrap), a ring given back whole is usable again, and a
 * reader of a ring file skips a page given back just before its writer died. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/ring.h"

/* Writes one record of len bytes filled from its sequence number. */
static void put(as_ring *r, uint64_t seq, size_t len) {
    unsigned char *p = as_ring_reserve(r, 2, len);
    assert_non_null(p);
    memcpy(p, &seq, sizeof seq);
    memset(p + sizeof seq, (int)(seq & 0xff), len - sizeof seq);
    as_ring_commit(r);
}

/* Reads every record up to head, checking each is the next sequence number, intact. */
static uint64_t take(as_ring *r, uint64_t *cursor, uint64_t next) {
    uint64_t head = as_ring_head(r);
    unsigned kind;
    size_t len;
    const unsigned char *p;
    while ((p = as_ring_read(r, cursor, head, &kind, &len)) != NULL) {
        uint64_t seq;
        memcpy(&seq, p, sizeof seq);
        assert_int_equal(seq, next);
        for (size_t k = sizeof seq; k < len; k++)
            assert_int_equal(p[k], (unsigned char)(seq & 0xff));
        next++;
    }
    assert_int_equal(*cursor, head);
    return next;
}

/* Proves release_trim gives back only consumed whole pages: many laps of a small ring,
 * records of uneven sizes left unconsumed across each release, all read back intact. */
static void test_trim_keeps_unconsumed(void **state) {
    (void)state;
    as_ring *r = as_ring_create(16384);
    assert_non_null(r);
    uint64_t seq = 0, next = 0, cursor = 0;
    for (int round = 0; round < 2000; round++) {
        size_t n = 1 + (size_t)(round * 7) % 40;
        for (size_t k = 0; k < n && as_ring_room(r, 16 + (seq * 13) % 300); k++, seq++)
            put(r, seq, 16 + (seq * 13) % 300);
        /* consume all but the last few records, then release (and trim) */
        uint64_t head = as_ring_head(r);
        unsigned kind;
        size_t len;
        const unsigned char *p;
        uint64_t c = cursor;
        while (next + 3 < seq && (p = as_ring_read(r, &c, head, &kind, &len)) != NULL) {
            uint64_t v;
            memcpy(&v, p, sizeof v);
            assert_int_equal(v, next);
            next++;
            cursor = c;
        }
        as_ring_release_trim(r, cursor);
    }
    next = take(r, &cursor, next);
    assert_int_equal(next, seq);
    assert_true(seq > 20000);
    as_ring_destroy(r);
}

/* Proves a ring given back whole reads as zeros and carries records again. */
static void test_give_back_then_reuse(void **state) {
    (void)state;
    as_ring *r = as_ring_create(1u << 16);
    assert_non_null(r);
    uint64_t cursor = 0;
    for (uint64_t s = 0; s < 100; s++)
        put(r, s, 200);
    assert_int_equal(take(r, &cursor, 0), 100);
    as_ring_release(r, cursor);
    as_ring_give_back(r);
    for (size_t k = 0; k < r->size; k++)
        assert_int_equal(as_ring_data(r)[k], 0);
    for (uint64_t s = 100; s < 400; s++)
        put(r, s, 200);
    assert_int_equal(take(r, &cursor, 100), 400);
    as_ring_destroy(r);
}

static int walk_rec(unsigned kind, const void *payload, size_t len, uint64_t pos, void *ctx) {
    (void)kind, (void)len, (void)pos;
    uint64_t *seen = ctx, seq;
    memcpy(&seq, payload, sizeof seq);
    seen[seen[0] + 1] = seq;
    seen[0]++;
    return 0;
}

/* Proves a page given back before the tail moved past it (a death in between) is passed
 * over without being counted as damage, and the records after it are still read. */
static void test_walk_passes_given_back_page(void **state) {
    (void)state;
    char path[64];
    snprintf(path, sizeof path, "/tmp/as-ringtrim-%d.ring", (int)getpid());
    as_ring_info info;
    memset(&info, 0, sizeof info);
    as_ring *r = as_ring_create_file(path, 1u << 16, &info);
    assert_non_null(r);
    for (uint64_t s = 0; s < 100; s++)
        put(r, s, 248); /* 256-byte records: 16 to a page */
    /* what release_trim does before storing a tail of 2 pages, without the store */
    madvise(as_ring_data(r), 2 * AS_RING_PAGE, MADV_REMOVE);
    as_ring_destroy(r);
    r = as_ring_file_map(path);
    assert_non_null(r);
    static uint64_t seen[128];
    uint64_t pos = 0, skipped = 0;
    assert_int_equal(as_ring_walk(r, &pos, walk_rec, seen, &skipped), 1);
    assert_int_equal(skipped, 0);
    assert_int_equal(seen[0], 100 - 32);
    for (uint64_t k = 0; k < seen[0]; k++)
        assert_int_equal(seen[k + 1], 32 + k);
    as_ring_destroy(r);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trim_keeps_unconsumed),
        cmocka_unit_test(test_give_back_then_reuse),
        cmocka_unit_test(test_walk_passes_given_back_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
