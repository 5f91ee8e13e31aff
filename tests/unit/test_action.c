/* test_action.c - unit tests of preload/core/action.c: each track_action validation rule
 * (one test per rule, checking the message names the field), the defaults table, the JSONL
 * line read back with cJSON field by field, and the pack/unpack blob. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "core/action.h"
#include "core/clock.h"

#define MS 1000000LL
#define T0 (1705314600LL * 1000 * MS) /* 2024-01-15T10:30:00Z */
#define NOW (T0 + 3600LL * 1000 * MS) /* an hour later */

static as_action out;
static char msg[256];

/* Runs validation; returns its result with msg/out filled. */
static int check(agentsight_action a) {
    memset(msg, 0, sizeof msg);
    return as_action_validate(&a, NOW, "conv_0123456789ab", &out, msg, sizeof msg);
}

/* Asserts the action is refused with a message starting with "field: ". */
static void refused(agentsight_action a, const char *prefix) {
    assert_int_equal(check(a), -1);
    if (strncmp(msg, prefix, strlen(prefix)) != 0)
        fail_msg("message '%s' does not start with '%s'", msg, prefix);
}

/* Proves a missing action_name (and a NULL action) is refused naming the field. */
static void test_name_missing(void **state) {
    refused((agentsight_action){0}, "action_name: missing");
    assert_int_equal(as_action_validate(NULL, NOW, "c", &out, msg, sizeof msg), -1);
    assert_string_equal(msg, "action_name: missing");
}

/* Proves an empty action_name is refused. */
static void test_name_empty(void **state) {
    refused((agentsight_action){.action_name = ""}, "action_name: empty");
}

/* Proves 256 bytes are accepted and 257 refused. */
static void test_name_too_long(void **state) {
    char name[258];
    memset(name, 'n', 256);
    name[256] = '\0';
    assert_int_equal(check((agentsight_action){.action_name = name}), 0);
    name[256] = 'n';
    name[257] = '\0';
    refused((agentsight_action){.action_name = name}, "action_name: longer than 256 bytes");
}

/* Proves an action_name that is not UTF-8 is refused. */
static void test_name_not_utf8(void **state) {
    refused((agentsight_action){.action_name = "bad\xff"}, "action_name: not valid UTF-8");
}

/* Proves a malformed started_at is refused naming started_at. */
static void test_started_not_iso(void **state) {
    refused((agentsight_action){.action_name = "a", .started_at = "yesterday"},
            "started_at: not an ISO-8601 timestamp");
}

/* Proves a malformed ended_at is refused naming ended_at. */
static void test_ended_not_iso(void **state) {
    refused((agentsight_action){.action_name = "a", .ended_at = "2024-02-30T00:00:00Z"},
            "ended_at: not an ISO-8601 timestamp");
}

/* Proves ended_at before started_at is refused. */
static void test_ended_before_started(void **state) {
    refused((agentsight_action){.action_name = "a",
                                .started_at = "2024-01-15T10:30:01Z",
                                .ended_at = "2024-01-15T10:30:00Z"},
            "ended_at: before started_at");
}

/* Proves a negative duration_ms is refused. */
static void test_duration_negative(void **state) {
    refused((agentsight_action){.action_name = "a", .duration_ms = -5}, "duration_ms: negative");
}

/* Proves a duration disagreeing with the timestamps by more than 1 ms is refused, and one
 * within 1 ms is accepted. */
static void test_duration_disagrees(void **state) {
    agentsight_action a = {.action_name = "a",
                           .started_at = "2024-01-15T10:30:00Z",
                           .ended_at = "2024-01-15T10:30:00.050Z",
                           .duration_ms = 52};
    refused(a, "duration_ms: ");
    assert_non_null(strstr(msg, "disagrees"));
    a.duration_ms = 51;
    assert_int_equal(check(a), 0);
    assert_int_equal(out.duration_ms, 51);
    a.duration_ms = 49;
    assert_int_equal(check(a), 0);
}

/* Proves a huge duration that would overflow ns arithmetic is refused, not wrapped. */
static void test_duration_too_large(void **state) {
    refused((agentsight_action){.action_name = "a", .duration_ms = INT64_MAX},
            "duration_ms: too large");
}

/* Proves tools_used must be a JSON object: arrays, scalars, bad JSON and trailing text are
 * refused. */
static void test_tools_not_object(void **state) {
    const char *bad[] = {"[1,2]", "\"s\"", "42", "{", "{\"a\":1} x", "", "{'a':1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refused((agentsight_action){.action_name = "a", .tools_used = bad[i]},
                "tools_used: not a JSON object");
    assert_int_equal(
        check((agentsight_action){.action_name = "a", .tools_used = " {\"function\":\"m\"}\n"}), 0);
}

/* Proves numbers cJSON accepts but strict JSON does not ("+1", ".5", "01", "1.") are
 * refused, while valid ones (and number-like text inside strings) pass. */
static void test_tools_lenient_numbers(void **state) {
    const char *bad[] = {"{\"a\":+1}", "{\"a\":.5}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":[1,-01]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        agentsight_action a = {.action_name = "a", .tools_used = bad[i]};
        if (check(a) != -1)
            fail_msg("accepted %s", bad[i]);
        assert_int_equal(strncmp(msg, "tools_used: not a JSON object", 29), 0);
    }
    const char *good[] = {"{\"a\":-0.5e+10,\"b\":0,\"c\":[10,2E3],\"d\":\"+01.\"}",
                          "{\"k\":\"\\\"+1\"}"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        agentsight_action a = {.action_name = "a", .tools_used = good[i]};
        if (check(a) != 0)
            fail_msg("refused %s: %s", good[i], msg);
    }
}

/* Proves metadata must be a JSON object. */
static void test_metadata_not_object(void **state) {
    refused((agentsight_action){.action_name = "a", .metadata = "null"},
            "metadata: not a JSON object");
}

/* Proves tools_used text that is not UTF-8 is refused naming the field. */
static void test_tools_not_utf8(void **state) {
    refused((agentsight_action){.action_name = "a", .tools_used = "{\"a\":\"\xc0\x80\"}"},
            "tools_used: not valid UTF-8");
}

/* Proves response that is not UTF-8 is refused with the exact message. */
static void test_response_not_utf8(void **state) {
    refused((agentsight_action){.action_name = "a", .response = "ok\xed\xa0\x80"},
            "response: not valid UTF-8");
    assert_string_equal(msg, "response: not valid UTF-8");
}

/* Proves error_msg that is not UTF-8 is refused. */
static void test_error_msg_not_utf8(void **state) {
    refused((agentsight_action){.action_name = "a", .error_msg = "\x80"},
            "error_msg: not valid UTF-8");
}

/* Proves conversation_id that is not UTF-8 or too long is refused. */
static void test_conversation_id_bad(void **state) {
    refused((agentsight_action){.action_name = "a", .conversation_id = "c\xfe"},
            "conversation_id: not valid UTF-8");
    char id[300];
    memset(id, 'c', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    refused((agentsight_action){.action_name = "a", .conversation_id = id},
            "conversation_id: longer than 256 bytes");
}

/* Proves the defaults table of agentsight.h, row by row. */
static void test_defaults(void **state) {
    /* both timestamps: duration computed */
    assert_int_equal(check((agentsight_action){.action_name = "a",
                                               .started_at = "2024-01-15T10:30:00Z",
                                               .ended_at = "2024-01-15T10:30:00.200Z"}),
                     0);
    assert_int_equal(out.started_ns, T0);
    assert_int_equal(out.ended_ns, T0 + 200 * MS);
    assert_int_equal(out.duration_ms, 200);
    /* started_at + duration: ended = started + duration */
    assert_int_equal(check((agentsight_action){.action_name = "a",
                                               .started_at = "2024-01-15T10:30:00Z",
                                               .duration_ms = 50}),
                     0);
    assert_int_equal(out.ended_ns, T0 + 50 * MS);
    assert_int_equal(out.duration_ms, 50);
    /* ended_at + duration: started = ended - duration */
    assert_int_equal(check((agentsight_action){.action_name = "a",
                                               .ended_at = "2024-01-15T10:30:00Z",
                                               .duration_ms = 800}),
                     0);
    assert_int_equal(out.started_ns, T0 - 800 * MS);
    assert_int_equal(out.ended_ns, T0);
    /* only started_at: ended = now */
    assert_int_equal(
        check((agentsight_action){.action_name = "a", .started_at = "2024-01-15T10:30:00Z"}), 0);
    assert_int_equal(out.ended_ns, NOW);
    assert_int_equal(out.duration_ms, 3600 * 1000);
    /* only duration: ended = now, started = now - duration */
    assert_int_equal(check((agentsight_action){.action_name = "a", .duration_ms = 800}), 0);
    assert_int_equal(out.ended_ns, NOW);
    assert_int_equal(out.started_ns, NOW - 800 * MS);
    /* nothing: both now, duration 0, default conversation id, tracking time */
    assert_int_equal(check((agentsight_action){.action_name = "a"}), 0);
    assert_int_equal(out.started_ns, NOW);
    assert_int_equal(out.ended_ns, NOW);
    assert_int_equal(out.duration_ms, 0);
    assert_string_equal(out.conversation_id, "conv_0123456789ab");
    assert_int_equal(out.timestamp_ns, NOW);
    assert_null(out.tools_used);
    /* a given conversation id wins over the default */
    assert_int_equal(check((agentsight_action){.action_name = "a", .conversation_id = "math_1"}),
                     0);
    assert_string_equal(out.conversation_id, "math_1");
}

/* Parses one line written by as_action_to_jsonl and checks it is exactly one line. */
static cJSON *parse_line(const as_action *a, as_buf *b) {
    as_buf_reset(b);
    as_action_to_jsonl(a, b);
    const char *s = as_buf_cstr(b);
    assert_true(b->len > 0);
    assert_int_equal(s[b->len - 1], '\n');
    assert_ptr_equal(memchr(s, '\n', b->len), s + b->len - 1);
    assert_true(as_utf8_valid(s, b->len));
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    return j;
}

/* Proves the JSONL line has every key in the documented order with the right values. */
static void test_jsonl_fields(void **state) {
    agentsight_action pub = {.action_name = "calculator_multiply",
                             .started_at = "2024-01-15T10:30:00Z",
                             .ended_at = "2024-01-15T10:30:00.050Z",
                             .tools_used = "{\"function\": \"multiply\",\n \"parameters\": "
                                           "{\"a\": 12, \"b\": 5}}",
                             .response = "60",
                             .conversation_id = "math_help_123"};
    assert_int_equal(check(pub), 0);
    as_buf b;
    as_buf_init(&b);
    cJSON *j = parse_line(&out, &b);
    static const char *keys[] = {"action_name", "started_at", "ended_at",  "duration_ms",
                                 "tools_used",  "response",   "error_msg", "conversation_id",
                                 "metadata",    "timestamp"};
    cJSON *it = j->child;
    for (size_t i = 0; i < 10; i++, it = it->next) {
        assert_non_null(it);
        assert_string_equal(it->string, keys[i]);
    }
    assert_null(it);
    assert_string_equal(cJSON_GetObjectItem(j, "action_name")->valuestring, "calculator_multiply");
    assert_string_equal(cJSON_GetObjectItem(j, "started_at")->valuestring,
                        "2024-01-15T10:30:00.000000Z");
    assert_string_equal(cJSON_GetObjectItem(j, "ended_at")->valuestring,
                        "2024-01-15T10:30:00.050000Z");
    assert_int_equal(cJSON_GetObjectItem(j, "duration_ms")->valueint, 50);
    assert_non_null(strstr(as_buf_cstr(&b), "\"duration_ms\":50,")); /* an integer */
    cJSON *tools = cJSON_GetObjectItem(j, "tools_used");
    assert_true(cJSON_IsObject(tools));
    assert_string_equal(cJSON_GetObjectItem(tools, "function")->valuestring, "multiply");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(tools, "parameters"), "b")->valueint,
                     5);
    assert_string_equal(cJSON_GetObjectItem(j, "response")->valuestring, "60");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "error_msg")));
    assert_string_equal(cJSON_GetObjectItem(j, "conversation_id")->valuestring, "math_help_123");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "metadata")));
    assert_string_equal(cJSON_GetObjectItem(j, "timestamp")->valuestring,
                        "2024-01-15T11:30:00.000000Z");
    cJSON_Delete(j);
    as_buf_free(&b);
}

/* Proves hostile text (quotes, backslashes, controls, U+2028, invalid UTF-8 reaching the
 * writer from a blob) still gives one parseable line with the text preserved. */
static void test_jsonl_hostile(void **state) {
    as_action a = {.action_name = "q\"uote\\back",
                   .response = "line1\nline2\r\x01\x1f\xe2\x80\xa8 end",
                   .error_msg = "bad \xff byte",
                   .conversation_id = "c",
                   /* raw control bytes inside strings, which cJSON lets through */
                   .metadata = "{\"k\":\"tab\there\",\r\n\"n\":[1,\"\\\"\"]}",
                   .started_ns = T0,
                   .ended_ns = T0,
                   .timestamp_ns = T0};
    as_buf b;
    as_buf_init(&b);
    cJSON *j = parse_line(&a, &b);
    assert_string_equal(cJSON_GetObjectItem(j, "action_name")->valuestring, "q\"uote\\back");
    assert_string_equal(cJSON_GetObjectItem(j, "response")->valuestring,
                        "line1\nline2\r\x01\x1f\xe2\x80\xa8 end");
    assert_string_equal(cJSON_GetObjectItem(j, "error_msg")->valuestring, "bad \xef\xbf\xbd byte");
    cJSON *meta = cJSON_GetObjectItem(j, "metadata");
    assert_string_equal(cJSON_GetObjectItem(meta, "k")->valuestring, "tab\there");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(meta, "n"), 1)->valuestring, "\"");
    /* Strictly valid JSON: no raw control byte anywhere in the line but the final LF. */
    const char *s = as_buf_cstr(&b);
    for (size_t i = 0; i + 1 < b.len; i++)
        assert_true((unsigned char)s[i] >= 0x20);
    cJSON_Delete(j);
    as_buf_free(&b);
}

/* Proves pack then unpack gives back every field, NULLs included. */
static void test_pack_round_trip(void **state) {
    as_action a = {.action_name = "weather_lookup",
                   .started_ns = T0,
                   .ended_ns = T0 + 800 * MS,
                   .duration_ms = 800,
                   .tools_used = "{\"api\":\"x\"}",
                   .response = "Sunny",
                   .error_msg = NULL,
                   .conversation_id = "conv_1",
                   .metadata = "{}",
                   .timestamp_ns = NOW};
    size_t n = as_action_pack_size(&a);
    uint64_t *blob = malloc(n + 8);
    as_action_pack(&a, blob);
    as_action b;
    assert_int_equal(as_action_unpack(blob, n, &b), 0);
    assert_string_equal(b.action_name, "weather_lookup");
    assert_int_equal(b.started_ns, T0);
    assert_int_equal(b.ended_ns, T0 + 800 * MS);
    assert_int_equal(b.duration_ms, 800);
    assert_string_equal(b.tools_used, "{\"api\":\"x\"}");
    assert_string_equal(b.response, "Sunny");
    assert_null(b.error_msg);
    assert_string_equal(b.conversation_id, "conv_1");
    assert_string_equal(b.metadata, "{}");
    assert_int_equal(b.timestamp_ns, NOW);
    assert_true(b.action_name >= (const char *)blob &&
                b.action_name < (const char *)blob + n); /* borrows the blob */
    free(blob);
}

/* Proves corrupt blobs are refused: short (-1); one byte shorter, a wrong magic, a lost
 * NUL, and every single flipped bit anywhere in the blob (header, offsets, strings)
 * AS_ACTION_DAMAGED (its checksum), never decoded into an action; a lost NUL or a wrong
 * magic with the checksum made right again still -1; the intact blob still decodes. */
static void test_unpack_corrupt(void **state) {
    as_action a = {.action_name = "n", .response = "resp", .conversation_id = "c"};
    size_t n = as_action_pack_size(&a);
    unsigned char *blob = malloc(n);
    as_action_pack(&a, blob);
    as_action o;
    assert_int_equal(as_action_unpack(blob, n - 1, &o), AS_ACTION_DAMAGED);
    assert_int_equal(as_action_unpack(blob, 8, &o), -1);
    assert_int_equal(as_action_unpack(NULL, n, &o), -1);
    unsigned char *copy = malloc(n);
    memcpy(copy, blob, n);
    copy[0] ^= 1; /* magic */
    assert_int_equal(as_action_unpack(copy, n, &o), AS_ACTION_DAMAGED);
    memcpy(copy, blob, n);
    copy[n - 1] = 'x'; /* last string loses its NUL */
    assert_int_equal(as_action_unpack(copy, n, &o), AS_ACTION_DAMAGED);
    as_action_blob_seal(copy, n); /* its checksum right: refused for what it says */
    assert_int_equal(as_action_unpack(copy, n, &o), -1);
    memcpy(copy, blob, n);
    copy[0] ^= 1;
    as_action_blob_seal(copy, n);
    assert_int_equal(as_action_unpack(copy, n, &o), -1); /* the magic */
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, blob, n);
            copy[i] ^= (unsigned char)(1u << bit);
            if (as_action_unpack(copy, n, &o) != AS_ACTION_DAMAGED)
                fail_msg("byte %zu bit %d flipped: not detected", i, bit);
        }
    }
    assert_int_equal(as_action_unpack(blob, n, &o), 0);
    assert_string_equal(o.response, "resp");
    free(copy);
    free(blob);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_missing),         cmocka_unit_test(test_name_empty),
        cmocka_unit_test(test_name_too_long),        cmocka_unit_test(test_name_not_utf8),
        cmocka_unit_test(test_started_not_iso),      cmocka_unit_test(test_ended_not_iso),
        cmocka_unit_test(test_ended_before_started), cmocka_unit_test(test_duration_negative),
        cmocka_unit_test(test_duration_disagrees),   cmocka_unit_test(test_duration_too_large),
        cmocka_unit_test(test_tools_not_object),     cmocka_unit_test(test_tools_lenient_numbers),
        cmocka_unit_test(test_metadata_not_object),  cmocka_unit_test(test_tools_not_utf8),
        cmocka_unit_test(test_response_not_utf8),    cmocka_unit_test(test_error_msg_not_utf8),
        cmocka_unit_test(test_conversation_id_bad),  cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_jsonl_fields),         cmocka_unit_test(test_jsonl_hostile),
        cmocka_unit_test(test_pack_round_trip),      cmocka_unit_test(test_unpack_corrupt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
