/* test_otlp_enc.c - the OTLP encoder's protobuf wire primitives and the OTEL_* variable
 * parser: lengths that need several varint bytes, nested messages, the same span in both
 * encodings, percent-decoding, and headers that could split a request refused; and the
 * GenAI client span an LLM action becomes (llm_facts.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/llm_facts.h"
#include "core/otel_env.h"
#include "core/otlp_enc.h"

/* Reads one varint at *p (bounded by end). */
static uint64_t rd_varint(const unsigned char **p, const unsigned char *end) {
    uint64_t v = 0;
    for (int s = 0; *p < end && s < 70; s += 7) {
        unsigned char c = *(*p)++;
        v |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80))
            return v;
    }
    fail_msg("bad varint");
    return 0;
}

/* Proves varints are minimal little-endian base-128 groups (1, 2 and 10 bytes). */
static void test_varint(void **state) {
    (void)state;
    as_buf b;
    as_buf_init(&b);
    as_pb_varint(&b, 1);
    as_pb_varint(&b, 300);
    as_pb_varint(&b, UINT64_MAX);
    assert_int_equal(b.len, 1 + 2 + 10);
    assert_memory_equal(b.data, "\x01\xac\x02", 3);
    const unsigned char *p = (const unsigned char *)b.data + 3;
    assert_true(rd_varint(&p, p + 10) == UINT64_MAX);
    as_buf_free(&b);
}

/* Proves a nested message whose body is longer than 127 bytes gets a two-byte length in
 * front of it, and the body is kept byte for byte behind it. */
static void test_nested_length(void **state) {
    (void)state;
    char big[300];
    memset(big, 'x', sizeof big);
    as_buf b;
    as_buf_init(&b);
    size_t outer = as_pb_open(&b, 1);
    size_t inner = as_pb_open(&b, 2);
    as_pb_bytes(&b, 5, big, sizeof big);
    as_pb_close(&b, inner);
    as_pb_close(&b, outer);
    const unsigned char *p = (const unsigned char *)b.data, *end = p + b.len;
    assert_int_equal(rd_varint(&p, end), (1 << 3) | 2);
    uint64_t n1 = rd_varint(&p, end);
    assert_int_equal(n1, (uint64_t)(end - p));
    assert_int_equal(rd_varint(&p, end), (2 << 3) | 2);
    uint64_t n2 = rd_varint(&p, end);
    assert_int_equal(n2, (uint64_t)(end - p));
    assert_int_equal(rd_varint(&p, end), (5 << 3) | 2);
    assert_int_equal(rd_varint(&p, end), sizeof big);
    assert_memory_equal(p, big, sizeof big);
    as_buf_free(&b);
}

/* Proves one span gives a protobuf request holding its ids, name and fixed64 times, and a
 * JSON request with hex ids, a parent and decimal-string times. */
static void test_span_both_encodings(void **state) {
    (void)state;
    as_otlp_span sp = {.name = "execute_tool f",
                       .kind = AS_OTLP_INTERNAL,
                       .start_ns = 1700000000123456789LL,
                       .end_ns = 1700000000223456789LL};
    memset(sp.trace_id, 0xab, 16);
    memset(sp.span_id, 0xcd, 8);
    sp.parent_id[7] = 1;
    as_otlp_attr_str(&sp, "gen_ai.tool.name", "f");
    as_otlp_attr_int(&sp, "n", -2);
    as_otlp_attr res[1] = {{.key = "service.name", .s = "svc"}};
    for (int pb = 0; pb < 2; pb++) {
        as_buf b;
        as_buf_init(&b);
        as_otlp_enc e;
        as_otlp_begin(&e, &b, pb, res, 1, "agentsight", "1");
        as_otlp_add(&e, &sp);
        as_otlp_end(&e);
        assert_false(b.oom);
        if (pb) {
            unsigned char t[8];
            for (int i = 0; i < 8; i++)
                t[i] = (unsigned char)((uint64_t)sp.start_ns >> (8 * i));
            assert_non_null(memmem(b.data, b.len, "\x39", 1)); /* field 7, fixed64 */
            assert_non_null(memmem(b.data, b.len, t, 8));
            assert_non_null(memmem(b.data, b.len, "\x0a\x10\xab\xab", 4)); /* trace_id */
            assert_non_null(memmem(b.data, b.len, "\x22\x08\x00\x00", 4)); /* parent */
            /* int -2: a ten-byte two's complement varint */
            assert_non_null(
                memmem(b.data, b.len, "\x18\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11));
        } else {
            const char *s = as_buf_cstr(&b);
            assert_non_null(strstr(s, "\"traceId\":\"abababababababababababababababab\""));
            assert_non_null(strstr(s, "\"parentSpanId\":\"0000000000000001\""));
            assert_non_null(strstr(s, "\"startTimeUnixNano\":\"1700000000123456789\""));
            assert_non_null(strstr(s, "{\"key\":\"n\",\"value\":{\"intValue\":\"-2\"}}"));
        }
        as_buf_free(&b);
    }
}

/* Encodes sp alone as OTLP/JSON and returns its first span (owned by *root). */
static const cJSON *json_span(const as_otlp_span *sp, cJSON **root) {
    as_buf b;
    as_buf_init(&b);
    as_otlp_enc e;
    as_otlp_begin(&e, &b, 0, NULL, 0, "agentsight", "1");
    as_otlp_add(&e, sp);
    as_otlp_end(&e);
    *root = cJSON_Parse(as_buf_cstr(&b));
    as_buf_free(&b);
    assert_non_null(*root);
    const cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(*root, "resourceSpans"), 0);
    const cJSON *ss = cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0);
    return cJSON_GetArrayItem(cJSON_GetObjectItem(ss, "spans"), 0);
}

/* The value of attribute key of a JSON span as text ("" when absent): the string, or the
 * decimal text of an intValue. */
static const char *attr(const cJSON *span, const char *key) {
    const cJSON *kv;
    cJSON_ArrayForEach(kv, cJSON_GetObjectItem(span, "attributes")) {
        if (strcmp(cJSON_GetObjectItem(kv, "key")->valuestring, key) != 0)
            continue;
        const cJSON *v = cJSON_GetObjectItem(kv, "value");
        const cJSON *x = cJSON_GetObjectItem(v, "stringValue");
        if (!x)
            x = cJSON_GetObjectItem(v, "intValue"); /* OTLP/JSON: int64 as a string */
        return cJSON_IsString(x) ? x->valuestring : "?";
    }
    return "";
}

/* Proves an LLM action becomes a CLIENT span named as the action with the GenAI client
 * attributes: Anthropic's input count plus both cache counts as gen_ai.usage.input_tokens
 * (the conventions count cached tokens as input), the cache counts under their own names,
 * the server split into address and port; OpenAI's input count kept as reported, its
 * reasoning count named; a 404 with error.type "404", status 2 and the message; and that
 * an action without metadata.source "llm" is not read as one. */
static void test_llm_client_span(void **state) {
    (void)state;
    as_action a = {
        .action_name = "chat claude-x",
        .tools_used = "{\"provider\":\"anthropic\",\"request_model\":\"claude-x\","
                      "\"response_model\":\"claude-x-1\",\"stream\":true,\"http_status\":200,"
                      "\"server_address\":\"api.anthropic.example:8443\",\"usage\":{"
                      "\"input_tokens\":10,\"output_tokens\":4,\"cache_read_input_tokens\":7,"
                      "\"cache_creation_input_tokens\":9}}",
        .metadata = "{\"agentsight_otel_parent\":\"00000000000000aa\", \"source\" : \"llm\"}",
    };
    as_llm_facts f;
    assert_int_equal(as_llm_facts_of(&a, &f), 0);
    as_otlp_span sp = {.start_ns = 1, .end_ns = 2};
    sp.trace_id[0] = sp.span_id[0] = 1;
    char st[8];
    as_llm_otlp_span(&sp, &a, &f, st);
    assert_int_equal(sp.kind, AS_OTLP_CLIENT);
    assert_int_equal(sp.status_code, 0);
    cJSON *root;
    const cJSON *js = json_span(&sp, &root);
    assert_string_equal(cJSON_GetObjectItem(js, "name")->valuestring, "chat claude-x");
    assert_int_equal(cJSON_GetObjectItem(js, "kind")->valueint, 3);
    assert_string_equal(attr(js, "gen_ai.operation.name"), "chat");
    assert_string_equal(attr(js, "gen_ai.provider.name"), "anthropic");
    assert_string_equal(attr(js, "gen_ai.request.model"), "claude-x");
    assert_string_equal(attr(js, "gen_ai.response.model"), "claude-x-1");
    assert_string_equal(attr(js, "gen_ai.usage.input_tokens"), "26");
    assert_string_equal(attr(js, "gen_ai.usage.output_tokens"), "4");
    assert_string_equal(attr(js, "gen_ai.usage.cache_read.input_tokens"), "7");
    assert_string_equal(attr(js, "gen_ai.usage.cache_creation.input_tokens"), "9");
    assert_string_equal(attr(js, "gen_ai.usage.reasoning.output_tokens"), "");
    assert_string_equal(attr(js, "server.address"), "api.anthropic.example");
    assert_string_equal(attr(js, "server.port"), "8443");
    assert_string_equal(attr(js, "http.response.status_code"), "200");
    assert_string_equal(attr(js, "error.type"), "");
    cJSON_Delete(root);

    a.action_name = "chat gpt-x";
    a.tools_used = "{\"provider\":\"openai\",\"request_model\":\"gpt-x\",\"http_status\":404,"
                   "\"server_address\":\"gw.example\",\"usage\":{\"input_tokens\":50,"
                   "\"output_tokens\":8,\"cache_read_input_tokens\":20,\"reasoning_tokens\":3}}";
    a.error_msg = "HTTP 404: no such model";
    assert_int_equal(as_llm_facts_of(&a, &f), 0);
    as_otlp_span sp2 = {.start_ns = 1, .end_ns = 2};
    sp2.trace_id[0] = sp2.span_id[0] = 1;
    as_llm_otlp_span(&sp2, &a, &f, st);
    assert_int_equal(sp2.status_code, 2);
    assert_string_equal(sp2.status_msg, "HTTP 404: no such model");
    js = json_span(&sp2, &root);
    assert_string_equal(attr(js, "gen_ai.usage.input_tokens"), "50");
    assert_string_equal(attr(js, "gen_ai.usage.reasoning.output_tokens"), "3");
    assert_string_equal(attr(js, "gen_ai.response.model"), "");
    assert_string_equal(attr(js, "server.address"), "gw.example");
    assert_string_equal(attr(js, "server.port"), "");
    assert_string_equal(attr(js, "error.type"), "404");
    const cJSON *status = cJSON_GetObjectItem(js, "status");
    assert_int_equal(cJSON_GetObjectItem(status, "code")->valueint, 2);
    cJSON_Delete(root);

    a.metadata = "{\"source\":\"config\",\"note\":\"llm\"}";
    assert_int_equal(as_llm_is_action(&a), 0);
    assert_int_equal(as_llm_facts_of(&a, &f), -1);
}

static void collect(void *ctx, const char *k, const char *v) {
    char *out = ctx;
    strcat(out, k);
    strcat(out, "|");
    strcat(out, v);
    strcat(out, ";");
}

/* Proves protobuf strings are always UTF-8 (proto3 requires it: a collector refuses the
 * whole request otherwise): a span name, an attribute and a JSON attribute string holding
 * bytes that are not UTF-8 are sent with U+FFFD in their place, their lengths right. */
static void test_protobuf_strings_utf8(void **state) {
    as_otlp_span sp;
    memset(&sp, 0, sizeof sp);
    sp.trace_id[0] = sp.span_id[0] = 1;
    sp.name = "n\xff";
    sp.kind = AS_OTLP_INTERNAL;
    as_otlp_attr_str(&sp, "k", "a\xc3(");
    as_otlp_attr_json(&sp, "j", "{\"x\":\"\xed\xa0\x80\"}");
    as_buf b;
    as_buf_init(&b);
    as_otlp_enc e;
    as_otlp_begin(&e, &b, 1, NULL, 0, "s", "1");
    as_otlp_add(&e, &sp);
    as_otlp_end(&e);
    assert_false(b.oom);
    assert_non_null(memmem(b.data, b.len, "\x2a\x04n\xef\xbf\xbd", 6)); /* name */
    assert_non_null(memmem(b.data, b.len,
                           "\x0a\x05"
                           "a\xef\xbf\xbd(",
                           7)); /* string */
    assert_non_null(memmem(b.data, b.len, "\x0a\x09\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 11));
    assert_null(memmem(b.data, b.len, "\xff", 1));
    as_buf_free(&b);
}

/* Proves the key=value list parser trims blanks, percent-decodes and skips items without
 * '=' (counted). */
static void test_parse_list(void **state) {
    (void)state;
    char out[256] = "";
    int bad = as_otel_parse_list(" a = b%2Cc , bogus,x=Bearer%20t%ZZ,", collect, out);
    assert_int_equal(bad, 1);
    assert_string_equal(out, "a|b,c;x|Bearer t%ZZ;");
}

/* Proves header values with CR/LF (one variable must never become two headers) and bad
 * names are refused, the traces variable wins, and the endpoint gets /v1/traces. */
static void test_env(void **state) {
    (void)state;
    setenv("OTEL_EXPORTER_OTLP_HEADERS", "ignored=1", 1);
    setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=1,b=x%0d%0aEvil: 1,c d=2,k=v%20w", 1);
    setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9/base/", 1);
    setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json", 1);
    setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "250", 1);
    as_otel_env e;
    assert_int_equal(as_otel_env_load(&e, 0), 0);
    assert_string_equal(e.url, "http://127.0.0.1:9/base/v1/traces");
    assert_string_equal(e.headers[0], "a: 1");
    assert_string_equal(e.headers[1], "k: v w");
    assert_null(e.headers[2]);
    assert_int_equal(e.protobuf, 0);
    assert_int_equal(e.timeout_ms, 250);
    assert_int_equal(e.disabled, 0);
    as_otel_env_free(&e);
}

int main(void) {
    setenv("AGENTSIGHT_LOG_LEVEL", "error", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint),
        cmocka_unit_test(test_nested_length),
        cmocka_unit_test(test_span_both_encodings),
        cmocka_unit_test(test_llm_client_span),
        cmocka_unit_test(test_protobuf_strings_utf8),
        cmocka_unit_test(test_parse_list),
        cmocka_unit_test(test_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
