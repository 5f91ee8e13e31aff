/* test_ingest.c - unit tests of preload/core/ingest.c: span ids from event ids, the span
 * and body shapes (parsed back with cJSON), and gzip (inflated back with zlib). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <zlib.h>

#include "core/dl_cjson.h"
#include "core/gzip.h"
#include "core/ingest.h"

static const as_action tool = {
    .action_name = "weather_lookup",
    .started_ns = 1700000000123456789LL,
    .ended_ns = 1700000000125956789LL, /* 2.5 ms later */
    .duration_ms = 2,
    .tools_used = "{\"function\":\"weather_lookup\",\"parameters\":{\"location\":\"Oslo\"}}",
    .error_msg = "returned NULL",
    .conversation_id = "conv_1",
    .metadata = "{\"k\":1}",
    .event_id = "0123456789abcdef0000000000000007",
};

static const char *str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Proves ids are the event id (trace) and a hash of it (span): stable, distinct for event
 * ids sharing their first 16 digits, and never all zeros. */
static void test_ids(void **state) {
    char s1[17], t1[33], s2[17], t2[33];
    as_ingest_ids(&tool, s1, t1);
    assert_string_equal(t1, tool.event_id);
    as_ingest_ids(&tool, s2, t2);
    assert_string_equal(s1, s2);
    as_action other = tool;
    other.event_id = "0123456789abcdef0000000000000008";
    as_ingest_ids(&other, s2, t2);
    assert_string_not_equal(s1, s2);
    assert_int_equal(strlen(s1), 16);
    assert_int_equal(strspn(s1, "0123456789abcdef"), 16);
    other.event_id = "00000000000000000000000000000000";
    as_ingest_ids(&other, s2, t2);
    assert_true(strspn(t2, "0") < 32 && strspn(s2, "0") < 16);
    other.event_id = NULL; /* made from name and times: stable */
    as_ingest_ids(&other, s1, t1);
    as_ingest_ids(&other, s2, t2);
    assert_string_equal(t1, t2);
    assert_int_equal(strspn(t1, "0123456789abcdef"), 32);
}

/* Proves a failed tool call becomes a span with status error, the tool attributes (the
 * arguments being the parameters as JSON text), a float duration from the ns times. */
static void test_tool_span(void **state) {
    as_buf b;
    as_buf_init(&b);
    as_ingest_span(&b, &tool, AS_SPAN_TOOL);
    cJSON *o = cJSON_Parse(as_buf_cstr(&b));
    assert_non_null(o);
    assert_string_equal(str(o, "kind"), "tool");
    assert_string_equal(str(o, "name"), "weather_lookup");
    assert_string_equal(str(o, "status"), "error");
    assert_string_equal(str(o, "trace_id"), tool.event_id);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "parent_span_id")));
    assert_string_equal(str(o, "started_at"), "2023-11-14T22:13:20.123456Z");
    double d = cJSON_GetObjectItem(o, "duration_ms")->valuedouble;
    assert_true(d > 2.5 - 1e-9 && d < 2.5 + 1e-9);
    const cJSON *at = cJSON_GetObjectItem(o, "attributes");
    assert_string_equal(str(at, "agentsight.span.kind"), "tool");
    assert_string_equal(str(at, "agentsight.conversation.id"), "conv_1");
    assert_string_equal(str(at, "agentsight.tool.name"), "weather_lookup");
    assert_string_equal(str(at, "agentsight.tool.arguments"), "{\"location\":\"Oslo\"}");
    assert_string_equal(str(at, "agentsight.tool.error"), "returned NULL");
    assert_null(str(at, "agentsight.tool.response"));
    assert_string_equal(str(at, "agentsight.metadata"), "{\"k\":1}");
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(o, "events")));
    cJSON_Delete(o);
    /* An action that is not a model call, asked for as llm, is sent as what it is. */
    as_buf_reset(&b);
    as_action ok = tool;
    ok.error_msg = NULL;
    assert_int_equal(as_ingest_kind_of(&ok), AS_SPAN_TOOL);
    as_ingest_span(&b, &ok, AS_SPAN_LLM);
    o = cJSON_Parse(as_buf_cstr(&b));
    at = cJSON_GetObjectItem(o, "attributes");
    assert_string_equal(str(o, "kind"), "tool");
    assert_string_equal(str(o, "status"), "ok");
    assert_string_equal(str(at, "agentsight.tool.name"), "weather_lookup");
    cJSON_Delete(o);
    as_buf_free(&b);
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static const as_action llm = {
    .action_name = "chat gpt-4o",
    .started_ns = 1700000000000000000LL,
    .ended_ns = 1700000000500000000LL,
    .tools_used = "{\"provider\":\"openai\",\"request_model\":\"gpt-4o\",\"response_model\":"
                  "\"gpt-4o-2024-08-06\",\"endpoint\":\"/v1/chat/completions\",\"stream\":true,"
                  "\"http_status\":200,\"server_address\":\"api.example.com:8443\",\"usage\":"
                  "{\"input_tokens\":100,\"output_tokens\":20,\"cache_read_input_tokens\":30,"
                  "\"reasoning_tokens\":5}}",
    .response = "hello",
    .conversation_id = "conv_2",
    .metadata = "{\"source\":\"llm\",\"time_to_first_token_ms\":3}",
    .event_id = "0123456789abcdef0000000000000009",
};

/* Proves an LLM action becomes an llm span shaped as the SDK shapes its model calls:
 * named by the model that ran, gen_ai.request.model = that model with the requested one
 * beside it, OpenAI's cached tokens taken out of the input count, cache and reasoning
 * counts, streaming, the server split into address and port; and that Anthropic's input
 * stays as reported, an embedding call counts embedding tokens, and a failed call with
 * no usage has status error, agentsight.llm.error and usage_reported false. */
static void test_llm_span(void **state) {
    assert_int_equal(as_ingest_kind_of(&llm), AS_SPAN_LLM);
    as_buf b;
    as_buf_init(&b);
    as_ingest_span(&b, &llm, AS_SPAN_LLM);
    cJSON *o = cJSON_Parse(as_buf_cstr(&b));
    assert_non_null(o);
    const cJSON *at = cJSON_GetObjectItem(o, "attributes");
    assert_string_equal(str(o, "kind"), "llm");
    assert_string_equal(str(o, "name"), "gpt-4o-2024-08-06");
    assert_string_equal(str(o, "status"), "ok");
    assert_string_equal(str(at, "agentsight.span.kind"), "llm");
    assert_string_equal(str(at, "agentsight.entity.name"), "gpt-4o-2024-08-06");
    assert_string_equal(str(at, "gen_ai.system"), "openai");
    assert_string_equal(str(at, "gen_ai.provider.name"), "openai");
    assert_string_equal(str(at, "gen_ai.operation.name"), "chat");
    assert_string_equal(str(at, "gen_ai.request.model"), "gpt-4o-2024-08-06");
    assert_string_equal(str(at, "agentsight.llm.requested_model"), "gpt-4o");
    assert_string_equal(str(at, "gen_ai.response.model"), "gpt-4o-2024-08-06");
    assert_true(num(at, "gen_ai.usage.input_tokens") == 70);
    assert_true(num(at, "gen_ai.usage.output_tokens") == 20);
    assert_true(num(at, "agentsight.llm.cache_read_tokens") == 30);
    assert_true(num(at, "agentsight.llm.reasoning_tokens") == 5);
    assert_null(cJSON_GetObjectItem(at, "agentsight.llm.cache_write_tokens"));
    assert_null(cJSON_GetObjectItem(at, "agentsight.llm.usage_reported"));
    assert_null(cJSON_GetObjectItem(at, "agentsight.llm.error"));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(at, "agentsight.llm.streaming")));
    assert_string_equal(str(at, "server.address"), "api.example.com");
    assert_true(num(at, "server.port") == 8443);
    assert_true(num(at, "http.response.status_code") == 200);
    assert_null(cJSON_GetObjectItem(at, "agentsight.tool.name"));
    cJSON_Delete(o);

    as_action an = llm;
    an.action_name = "chat claude-x";
    an.tools_used = "{\"provider\":\"anthropic\",\"request_model\":\"claude-x\","
                    "\"response_model\":\"claude-x\",\"stream\":false,\"http_status\":200,"
                    "\"server_address\":\"[::1]\",\"usage\":{\"input_tokens\":10,"
                    "\"output_tokens\":4,\"cache_read_input_tokens\":7,"
                    "\"cache_creation_input_tokens\":9}}";
    as_buf_reset(&b);
    as_ingest_span(&b, &an, AS_SPAN_LLM);
    o = cJSON_Parse(as_buf_cstr(&b));
    at = cJSON_GetObjectItem(o, "attributes");
    assert_string_equal(str(at, "gen_ai.request.model"), "claude-x");
    assert_null(cJSON_GetObjectItem(at, "agentsight.llm.requested_model"));
    assert_true(num(at, "gen_ai.usage.input_tokens") == 10);
    assert_true(num(at, "agentsight.llm.cache_write_tokens") == 9);
    assert_null(cJSON_GetObjectItem(at, "agentsight.llm.streaming"));
    assert_string_equal(str(at, "server.address"), "::1");
    assert_null(cJSON_GetObjectItem(at, "server.port"));
    cJSON_Delete(o);

    as_action em = llm;
    em.action_name = "embeddings e-3";
    em.tools_used = "{\"provider\":\"openai\",\"request_model\":\"e-3\",\"usage\":"
                    "{\"input_tokens\":12}}";
    as_buf_reset(&b);
    as_ingest_span(&b, &em, AS_SPAN_LLM);
    o = cJSON_Parse(as_buf_cstr(&b));
    at = cJSON_GetObjectItem(o, "attributes");
    assert_string_equal(str(o, "name"), "e-3");
    assert_string_equal(str(at, "gen_ai.operation.name"), "embeddings");
    assert_true(num(at, "gen_ai.usage.input_tokens") == 0);
    assert_true(num(at, "gen_ai.usage.output_tokens") == 0);
    assert_true(num(at, "agentsight.llm.embedding_tokens") == 12);
    assert_null(cJSON_GetObjectItem(at, "gen_ai.response.model"));
    cJSON_Delete(o);

    as_action bad = llm;
    bad.action_name = "chat nope";
    bad.tools_used = "{\"provider\":\"openai\",\"request_model\":\"nope\",\"http_status\":404,"
                     "\"usage\":{}}";
    bad.error_msg = "HTTP 404: no such model";
    as_buf_reset(&b);
    as_ingest_span(&b, &bad, as_ingest_kind_of(&bad));
    o = cJSON_Parse(as_buf_cstr(&b));
    at = cJSON_GetObjectItem(o, "attributes");
    assert_string_equal(str(o, "kind"), "llm");
    assert_string_equal(str(o, "status"), "error");
    assert_string_equal(str(at, "agentsight.llm.error"), "HTTP 404: no such model");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(at, "agentsight.llm.usage_reported")));
    assert_true(num(at, "gen_ai.usage.input_tokens") == 0);
    cJSON_Delete(o);

    /* source "llm" without a provider (not made by the TLS hooks): a tool span. */
    bad.tools_used = "{\"x\":1}";
    as_buf_reset(&b);
    as_ingest_span(&b, &bad, as_ingest_kind_of(&bad));
    o = cJSON_Parse(as_buf_cstr(&b));
    assert_string_equal(str(o, "kind"), "tool");
    cJSON_Delete(o);
    as_buf_free(&b);
}

/* Proves the body frame: sdk, then blocks with the environment only when set. */
static void test_body(void **state) {
    as_buf b;
    as_buf_init(&b);
    as_ingest_begin(&b);
    as_ingest_block_open(&b, "c1", "prod", 1);
    as_ingest_span(&b, &tool, AS_SPAN_TOOL);
    as_ingest_block_close(&b);
    as_ingest_block_open(&b, "c2", "", 0);
    as_ingest_span(&b, &tool, AS_SPAN_TOOL);
    as_buf_putc(&b, ',');
    as_ingest_span(&b, &tool, AS_SPAN_TOOL);
    as_ingest_block_close(&b);
    as_ingest_end(&b);
    cJSON *o = cJSON_Parse(as_buf_cstr(&b));
    assert_non_null(o);
    assert_int_equal(cJSON_GetArraySize(o), 2);
    assert_non_null(str(cJSON_GetObjectItem(o, "sdk"), "name"));
    assert_non_null(str(cJSON_GetObjectItem(o, "sdk"), "version"));
    const cJSON *cs = cJSON_GetObjectItem(o, "conversations");
    assert_int_equal(cJSON_GetArraySize(cs), 2);
    assert_string_equal(str(cJSON_GetArrayItem(cs, 0), "environment"), "prod");
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(cs, 1), "environment"));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(cs, 1), "spans")),
                     2);
    cJSON_Delete(o);
    as_buf_free(&b);
}

/* Proves as_gzip output is a gzip stream that inflates back to the input. */
static void test_gzip(void **state) {
    char in[20000];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (char)('a' + (i * 7 % 13));
    size_t zl = 0;
    char *z = NULL;
    assert_int_equal(as_gzip(in, sizeof in, &z, &zl), 0);
    assert_non_null(z);
    assert_true(zl < sizeof in && zl > 18);
    assert_int_equal((unsigned char)z[0], 0x1f);
    assert_int_equal((unsigned char)z[1], 0x8b);
    char out[sizeof in + 16];
    z_stream s;
    memset(&s, 0, sizeof s);
    assert_int_equal(inflateInit2(&s, 15 + 16), Z_OK);
    s.next_in = (Bytef *)z;
    s.avail_in = (uInt)zl;
    s.next_out = (Bytef *)out;
    s.avail_out = sizeof out;
    assert_int_equal(inflate(&s, Z_FINISH), Z_STREAM_END);
    assert_int_equal(s.total_out, sizeof in);
    assert_memory_equal(out, in, sizeof in);
    inflateEnd(&s);
    free(z);
}

int main(void) {
    if (as_dynlib_load(&as_cjson_lib) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),      cmocka_unit_test(test_tool_span),
        cmocka_unit_test(test_llm_span), cmocka_unit_test(test_body),
        cmocka_unit_test(test_gzip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
