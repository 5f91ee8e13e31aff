/* test_record.c - the record decoder of the core (core/record.h), which the live exporter
 * and recovery share: typed values, parameters, error rules and errno messages from call
 * records and a description; the text form of a description read back unchanged; the
 * .targets checksum; and the summary accounting of calls that find a ring full
 * (ring.h: as_ring_sum_add / _flush / _take) turned into one summary action. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <string.h>

#include "core/pipeline.h"
#include "core/crc32c.h"
#include "core/record.h"
#include "core/ring.h"

/* A clock of 1 raw unit = 1 ns from the Unix epoch + 1e18 (as_rec_clock_fn). */
static int test_clock(uint64_t raw, int64_t *ns, void *ctx) {
    (void)ctx;
    *ns = (int64_t)1000000000000000000LL + (int64_t)raw;
    return 0;
}

static const as_rec_ctx CTX = {4242, "conv-1", test_clock, NULL, 0};

/* A call record of target 3 and its items, built in buf. Returns its length. */
typedef struct recbuf {
    _Alignas(8) unsigned char b[512];
    size_t len;
} recbuf;

static void rec_init(recbuf *rb, uint32_t flags, uint64_t rax, int errno_out) {
    memset(rb, 0, sizeof *rb);
    as_callrec r = {.id = 3,
                    .flags = flags,
                    .tid = 77,
                    .errno_in = 5,
                    .errno_out = errno_out,
                    .t0 = 1000,
                    .t1 = 3500000,
                    .rax = rax};
    memcpy(rb->b, &r, sizeof r);
    rb->len = sizeof r;
    as_rec_call_seal((as_callrec *)rb->b);
}

/* Appends an item (tag, index, bytes) behind the record and counts it in ext. */
static void rec_item(recbuf *rb, uint8_t tag, uint8_t index, const void *p, uint32_t n) {
    as_cap_item h = {.len = n, .tag = tag, .index = index};
    memcpy(rb->b + rb->len, &h, sizeof h);
    memcpy(rb->b + rb->len + sizeof h, p, n);
    rb->len += sizeof h + ((n + 7) & ~7u);
    ((as_callrec *)rb->b)->ext = (uint32_t)(rb->len - sizeof(as_callrec));
    as_rec_call_seal((as_callrec *)rb->b);
}

static as_rec_desc typed_desc(void) {
    as_rec_desc d;
    memset(&d, 0, sizeof d);
    d.action_name = "db_search";
    d.symbol = "database_search";
    d.library = "libdb.so";
    d.display = "Database";
    d.via = 1;
    d.typed = 1;
    d.ret = (as_rec_type){AS_RK_SINT, 4};
    d.nparams = 2;
    d.params[0] = (as_rec_type){AS_RK_STR, 8};
    d.params[1] = (as_rec_type){AS_RK_FLOAT, 8};
    strcpy(d.names[0], "user");
    strcpy(d.names[1], "");
    return d;
}

/* Proves a typed record decodes into its action: names, times, parameters (a string and
 * an unnamed double), the response as its type, display name and hook in metadata. */
static void test_typed_call(void **state) {
    (void)state;
    as_rec_desc d = typed_desc();
    recbuf rb;
    rec_init(&rb, AS_CALL_RETURNED, 0xffffffffull, 0); /* int -1 */
    rec_item(&rb, AS_CAP_STR, 0, "u-7", 3);
    double v = 2.5;
    rec_item(&rb, AS_CAP_VAL, 1, &v, 8);
    as_buf sb;
    as_buf_init(&sb);
    as_action a;
    assert_int_equal(as_rec_call(rb.b, rb.len, &d, &CTX, &a, &sb), 0);
    assert_string_equal(a.action_name, "db_search");
    assert_int_equal(a.started_ns, 1000000000000001000LL);
    assert_int_equal(a.ended_ns, 1000000000003500000LL);
    assert_int_equal(a.duration_ms, 3);
    assert_string_equal(a.response, "-1");
    assert_null(a.error_msg);
    assert_string_equal(a.conversation_id, "conv-1");
    assert_string_equal(a.tools_used, "{\"function\":\"database_search\",\"library\":\"libdb.so\","
                                      "\"parameters\":{\"user\":\"u-7\",\"arg2\":2.5}}");
    assert_string_equal(a.metadata, "{\"pid\":4242,\"tid\":77,\"duration_ns\":3499000,"
                                    "\"hook\":\"got\",\"display_name\":\"Database\"}");
    as_buf_free(&sb);
}

/* Proves the error rules: negative on a typed int, errno with the strerror of what the
 * call set (errno_out), nothing appended when the call set none, and a frame left by
 * longjmp reported as not returned. */
static void test_error_rules(void **state) {
    (void)state;
    as_rec_desc d = typed_desc();
    d.nparams = 0;
    d.error_if = AS_REC_ERRIF_NEGATIVE;
    recbuf rb;
    as_buf sb;
    as_buf_init(&sb);
    as_action a;
    rec_init(&rb, AS_CALL_RETURNED, 0xffffffffull, 0);
    assert_int_equal(as_rec_call(rb.b, rb.len, &d, &CTX, &a, &sb), 0);
    assert_string_equal(a.error_msg, "returned -1");
    d.error_if = AS_REC_ERRIF_ERRNO;
    as_buf_reset(&sb);
    rec_init(&rb, AS_CALL_RETURNED, 0xffffffffull, ENOENT);
    assert_int_equal(as_rec_call(rb.b, rb.len, &d, &CTX, &a, &sb), 0);
    assert_string_equal(a.error_msg, "returned -1: No such file or directory");
    as_buf_reset(&sb);
    rec_init(&rb, AS_CALL_RETURNED, 7, 0);
    assert_int_equal(as_rec_call(rb.b, rb.len, &d, &CTX, &a, &sb), 0);
    assert_null(a.error_msg);
    as_buf_reset(&sb);
    rec_init(&rb, AS_CALL_NOT_RETURNED, 0, 0);
    assert_int_equal(as_rec_call(rb.b, rb.len, &d, &CTX, &a, &sb), 0);
    assert_string_equal(a.error_msg, "did not return (left by longjmp or an exception)");
    assert_null(a.response);
    /* typed double result, and a float one */
    d.error_if = AS_REC_ERRIF_NONE;
    d.ret = (as_rec_type){AS_RK_FLOAT, 8};
    as_buf_reset(&sb);
    rec_init(&rb, AS_CALL_RETURNED, 0, 0);
    double v = 4203.5;
    memcpy(rb.b + offsetof(as_callrec, xmm0), &v, sizeof v);
    as_rec_call_seal((as_callrec *)rb.b);
    assert_int_equal(as_rec_call(rb.b, rb.len, &d, &CTX, &a, &sb), 0);
    assert_string_equal(a.response, "4203.5");
    as_buf_free(&sb);
}

/* Proves a malformed record is refused: short (its items past the payload: taken for
 * damage), items running past the end, reversed times (sealed: the checksum matches, the
 * decoder refuses them for what they say). */
static void test_malformed(void **state) {
    (void)state;
    as_rec_desc d = typed_desc();
    recbuf rb;
    as_buf sb;
    as_buf_init(&sb);
    as_action a;
    rec_init(&rb, AS_CALL_RETURNED, 1, 0);
    assert_int_equal(as_rec_call(rb.b, rb.len - 1, &d, &CTX, &a, &sb), -1);
    rec_item(&rb, AS_CAP_STR, 0, "abc", 3);
    assert_int_equal(as_rec_call(rb.b, rb.len - 8, &d, &CTX, &a, &sb), AS_REC_DAMAGED);
    ((as_cap_item *)(rb.b + sizeof(as_callrec)))->len = 200;
    as_rec_call_seal((as_callrec *)rb.b);
    assert_int_equal(as_rec_call(rb.b, rb.len, &d, &CTX, &a, &sb), -1);
    rec_init(&rb, AS_CALL_RETURNED, 1, 0);
    ((as_callrec *)rb.b)->t1 = 10;
    as_rec_call_seal((as_callrec *)rb.b);
    assert_int_equal(as_rec_call(rb.b, rb.len, &d, &CTX, &a, &sb), -1);
    as_buf_free(&sb);
}

/* Proves the text form of a description reads back as it was written (rule, capture,
 * hooks, types, names), that damaged text is refused, and the checksum of a line. */
static void test_desc_round_trip(void **state) {
    (void)state;
    as_rec_desc d = typed_desc();
    d.error_if = AS_REC_ERRIF_ERRNO;
    d.hidden = 1;
    d.via = 5;
    as_buf b;
    as_buf_init(&b);
    as_rec_desc_format(&d, &b);
    const char *text = as_buf_cstr(&b);
    assert_null(strchr(text, '\t'));
    as_rec_desc e;
    memset(&e, 0, sizeof e);
    assert_int_equal(as_rec_desc_parse(text, &e), 0);
    assert_int_equal(e.error_if, AS_REC_ERRIF_ERRNO);
    assert_int_equal(e.hidden, 1);
    assert_int_equal(e.via, 5);
    assert_int_equal(e.typed, 1);
    assert_int_equal(e.ret.kind, AS_RK_SINT);
    assert_int_equal(e.ret.size, 4);
    assert_int_equal(e.nparams, 2);
    assert_int_equal(e.params[1].kind, AS_RK_FLOAT);
    assert_string_equal(e.names[0], "user");
    assert_string_equal(e.names[1], "");
    assert_int_equal(as_rec_desc_parse("v1;e=9;h=0;w=0;t=0", &e), -1);
    assert_int_equal(as_rec_desc_parse("v1;e=1;h=0;w=0;t=1;r=1.4;p=1.4", &e), -1);
    assert_int_equal(as_rec_desc_parse("v2;e=0;h=0;w=0;t=0", &e), -1);
    assert_int_equal(e.typed, 0);
    assert_int_equal(as_rec_checksum("a", 1), 0xe40c292cu); /* FNV-1a 32 of "a" */
    as_buf_free(&b);
}

/* Proves the summary accounting: calls that find the ring full are counted per function
 * (calls, errors, total/min/max, log2 histogram), a ninth function is refused (the caller
 * counts it as a drop), the table moves into the ring as AS_MSG_SUMMARY records once
 * there is room, sealed with a checksum (every flipped bit seen), and a summary decodes
 * into one action with metadata.summary. */
static void test_summary_accounting(void **state) {
    (void)state;
    as_ring *r = as_ring_create(AS_RING_MIN);
    assert_non_null(r);
    assert_int_equal(as_ring_sum_add(r, 3, 77, 100, 200, 100, 0), 1);
    assert_int_equal(as_ring_sum_add(r, 3, 77, 300, 1324, 1024, 1), 1);
    assert_int_equal(as_ring_sum_add(r, 3, 77, 2000, 2003, 3, 0), 1);
    for (uint32_t id = 10; id < 10 + AS_SUM_SLOTS - 1; id++)
        assert_int_equal(as_ring_sum_add(r, id, 77, 1, 2, 1, 0), 1);
    assert_int_equal(as_ring_sum_add(r, 99, 77, 1, 2, 1, 0), 0); /* table full */
    assert_int_equal(r->summarized, 3 + AS_SUM_SLOTS - 1);
    assert_int_equal(r->limit, 0); /* the next write goes through the flush */
    assert_int_equal(as_ring_sum_flush(r), 1);
    assert_int_equal(r->sum_n, 0);
    uint64_t cur = as_ring_tail(r), head = as_ring_head(r);
    unsigned kind;
    size_t len;
    const void *p;
    const as_sum *s3 = NULL;
    int n = 0;
    while ((p = as_ring_read(r, &cur, head, &kind, &len))) {
        assert_int_equal(kind, AS_MSG_SUMMARY);
        assert_int_equal(len, AS_SUM_REC_LEN);
        assert_true(as_sum_rec_intact(p, len));
        if (((const as_sum *)p)->id == 3 + 1)
            s3 = p;
        n++;
    }
    assert_int_equal(n, AS_SUM_SLOTS);
    assert_non_null(s3);
    /* every flipped bit of a summary record, its checksum included, is seen */
    _Alignas(8) unsigned char rec[AS_SUM_REC_LEN];
    memcpy(rec, s3, sizeof rec);
    assert_true(as_sum_rec_intact(rec, sizeof rec));
    assert_false(as_sum_rec_intact(rec, sizeof rec - 8));
    for (size_t i = 0; i < (sizeof rec - 4) * 8; i++) {
        rec[i / 8] ^= (unsigned char)(1u << (i % 8));
        assert_false(as_sum_rec_intact(rec, sizeof rec));
        rec[i / 8] ^= (unsigned char)(1u << (i % 8));
    }
    assert_int_equal(s3->calls, 3);
    assert_int_equal(s3->errors, 1);
    assert_int_equal(s3->total_ns, 1127);
    assert_int_equal(s3->min_ns, 3);
    assert_int_equal(s3->max_ns, 1024);
    assert_int_equal(s3->hist[1], 1);  /* 3 ns */
    assert_int_equal(s3->hist[6], 1);  /* 100 ns */
    assert_int_equal(s3->hist[10], 1); /* 1024 ns */
    as_rec_desc d = typed_desc();
    as_buf sb;
    as_buf_init(&sb);
    as_action a;
    assert_int_equal(as_rec_summary(s3, &d, &CTX, &a, &sb), 0);
    assert_string_equal(a.error_msg, "1 of 3 calls failed");
    cJSON *m = cJSON_Parse(a.metadata);
    assert_non_null(m);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(m, "summary")));
    assert_int_equal(cJSON_GetObjectItem(m, "calls")->valuedouble, 3);
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(m, "histogram_log2_ns"), "10")->valuedouble, 1);
    cJSON_Delete(m);
    assert_int_equal(a.started_ns, 1000000000000000100LL);
    assert_int_equal(a.ended_ns, 1000000000000002003LL);
    /* a table no one writes any more is taken whole */
    assert_int_equal(as_ring_sum_add(r, 4, 77, 1, 2, 1, 0), 1);
    as_sum out[AS_SUM_SLOTS];
    assert_int_equal(as_ring_sum_take(r, out), 1);
    assert_int_equal(out[0].id, 5);
    assert_int_equal(r->sum_n, 0);
    as_buf_free(&sb);
    as_ring_destroy(r);
}

/* CRC-32C bit by bit, as the checksum is defined (record.h): initial 0xffffffff, no final
 * inversion; for a record (record = 1) bytes 4..7 (the sum field) read as 0 and bytes
 * 32..39 (t1) moved to the end. Independent of the instruction and of the table the
 * library uses. */
static uint32_t ref_sum(const unsigned char *p, size_t n, int record) {
    uint32_t c = 0xffffffffu;
    for (size_t j = 0; j < n; j++) {
        size_t i = !record ? j : j < 32 ? j : j < n - 8 ? j + 8 : 32 + (j - (n - 8));
        c ^= (record && i >= 4 && i < 8) ? 0 : p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
    }
    return c;
}

/* Proves the call record's checksum: it is CRC-32C as documented (the standard check
 * value of "123456789", and a record compared with a bitwise reference); every single
 * flipped bit of a record and of its items, and every pair of flipped bits, makes the
 * decoder return AS_REC_DAMAGED (nothing decoded), and the record decodes again once the
 * bits are back. */
static void test_checksum_flips(void **state) {
    (void)state;
    /* the reference is CRC-32C: its check value (with the final inversion it omits) */
    assert_int_equal(ref_sum((const unsigned char *)"123456789", 9, 0) ^ 0xffffffffu, 0xE3069283u);
    as_rec_desc d = typed_desc();
    recbuf rb;
    rec_init(&rb, AS_CALL_RETURNED, 0xfffffffeull, 0);
    rec_item(&rb, AS_CAP_STR, 0, "u-7 with a longer name", 22);
    double v = -1.25;
    rec_item(&rb, AS_CAP_VAL, 1, &v, 8);
    const as_callrec *r = (const as_callrec *)rb.b;
    assert_int_equal(r->sum, ref_sum(rb.b, rb.len, 1));
    assert_int_equal(as_rec_call_sum(rb.b, rb.len), r->sum);
    /* the code of CPUs without crc32 gives the same values, at any length */
    for (size_t n = 0; n <= rb.len; n++)
        assert_int_equal(as_crc32c_soft(0xffffffffu, rb.b, n), as_crc32c(0xffffffffu, rb.b, n));
    as_buf sb;
    as_buf_init(&sb);
    as_action a;
    assert_int_equal(as_rec_call(rb.b, rb.len, &d, &CTX, &a, &sb), 0);
    size_t bits = rb.len * 8;
    for (size_t i = 0; i < bits; i++) {
        rb.b[i / 8] ^= (unsigned char)(1u << (i % 8));
        assert_false(as_rec_call_intact(rb.b, rb.len));
        as_buf_reset(&sb);
        assert_int_equal(as_rec_call(rb.b, rb.len, &d, &CTX, &a, &sb), AS_REC_DAMAGED);
        for (size_t j = i + 1; j < bits; j++) {
            rb.b[j / 8] ^= (unsigned char)(1u << (j % 8));
            if (as_rec_call_intact(rb.b, rb.len))
                fail_msg("bits %zu and %zu flipped: not detected", i, j);
            rb.b[j / 8] ^= (unsigned char)(1u << (j % 8));
        }
        rb.b[i / 8] ^= (unsigned char)(1u << (i % 8));
    }
    as_buf_reset(&sb);
    assert_int_equal(as_rec_call(rb.b, rb.len, &d, &CTX, &a, &sb), 0);
    assert_string_equal(a.response, "-2");
    as_buf_free(&sb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typed_call),         cmocka_unit_test(test_error_rules),
        cmocka_unit_test(test_malformed),          cmocka_unit_test(test_desc_round_trip),
        cmocka_unit_test(test_summary_accounting), cmocka_unit_test(test_checksum_flips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
