/* test_llm_http.c - unit tests of the LLM call decoding: the HTTP/1.1 stream parser
 * (preload/core/llm_http.c) fed keep-alive, chunked and Content-Length messages split at
 * every byte boundary, and the exchange decoder (preload/core/llm_detect.c) turning OpenAI
 * and Anthropic answers (JSON, gzip, brotli, Server-Sent Events) into actions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include "agentsight.h"
#include "core/action.h"
#include "core/dynlib.h"
#include "core/jsonw.h"
#include "core/llm_detect.h"
#include "core/llm_http.h"

/* ---- what the parser reported ---- */
typedef struct seen {
    as_buf log; /* "S<line>|H<name>=<value>|B<bytes>|D|" in order, bodies merged */
    int last_was_body;
    int nobody_status; /* headers_done answers 1 for this status */
} seen;

static void s_start(void *ctx, const char *l, size_t n) {
    seen *s = ctx;
    as_buf_putc(&s->log, 'S');
    as_buf_put(&s->log, l, n);
    as_buf_putc(&s->log, '|');
    s->last_was_body = 0;
}
static void s_header(void *ctx, const char *nm, size_t nl, const char *v, size_t vl) {
    seen *s = ctx;
    as_buf_putc(&s->log, 'H');
    as_buf_put(&s->log, nm, nl);
    as_buf_putc(&s->log, '=');
    as_buf_put(&s->log, v, vl);
    as_buf_putc(&s->log, '|');
}
static int s_headers_done(void *ctx) {
    (void)ctx;
    return 0;
}
static void s_body(void *ctx, const char *d, size_t n) {
    seen *s = ctx;
    if (!s->last_was_body)
        as_buf_putc(&s->log, 'B');
    else
        s->log.len--; /* drop the '|' and go on with the same body */
    as_buf_put(&s->log, d, n);
    as_buf_putc(&s->log, '|');
    s->last_was_body = 1;
}
static void s_done(void *ctx) {
    seen *s = ctx;
    as_buf_puts(&s->log, "D|");
    s->last_was_body = 0;
}
static const as_http_cb cbs = {s_start, s_header, s_headers_done, s_body, s_done};

/* Two responses on one connection: chunked (with an extension and a trailer), then
 * Content-Length, then an empty-body 200. */
static const char RESP[] = "HTTP/1.1 200 OK\r\n"
                           "Content-Type: text/event-stream\r\n"
                           "Transfer-Encoding: chunked\r\n"
                           "\r\n"
                           "5;ext=1\r\nhello\r\n"
                           "7\r\n, world\r\n"
                           "0\r\n"
                           "X-Trailer: t\r\n"
                           "\r\n"
                           "HTTP/1.1 404 Not Found\r\n"
                           "Content-Length:   11  \r\n"
                           "\r\n"
                           "{\"e\":\"no\"}\n"
                           "HTTP/1.1 200 OK\r\n"
                           "Content-Length: 0\r\n"
                           "\r\n";
static const char RESP_LOG[] =
    "SHTTP/1.1 200 OK|HContent-Type=text/event-stream|HTransfer-Encoding=chunked|"
    "Bhello, world|D|SHTTP/1.1 404 Not Found|HContent-Length=11|B{\"e\":\"no\"}\n|D|"
    "SHTTP/1.1 200 OK|HContent-Length=0|D|";

static void feed_split(int is_response, const char *msg, size_t n, size_t cut, as_buf *out) {
    seen s;
    memset(&s, 0, sizeof s);
    as_buf_init(&s.log);
    static as_http p; /* 8 KiB line buffer: off the stack */
    as_http_init(&p, is_response, &cbs, &s);
    as_http_feed(&p, msg, cut);
    as_http_feed(&p, msg + cut, n - cut);
    as_http_release(&p);
    as_buf_reset(out);
    as_buf_put(out, s.log.data, s.log.len);
    as_buf_free(&s.log);
}

/* Proves the response parser reports the same messages, headers and body bytes wherever
 * the stream is cut in two (every byte boundary), and byte by byte. */
static void test_response_every_split(void **state) {
    as_buf out;
    as_buf_init(&out);
    size_t n = sizeof RESP - 1;
    for (size_t cut = 0; cut <= n; cut++) {
        feed_split(1, RESP, n, cut, &out);
        assert_string_equal(as_buf_cstr(&out), RESP_LOG);
    }
    seen s;
    memset(&s, 0, sizeof s);
    as_buf_init(&s.log);
    static as_http p;
    as_http_init(&p, 1, &cbs, &s);
    for (size_t i = 0; i < n; i++)
        as_http_feed(&p, RESP + i, 1);
    assert_string_equal(as_buf_cstr(&s.log), RESP_LOG);
    as_buf_free(&s.log);
    as_buf_free(&out);
}

/* Proves requests on one keep-alive connection are split by Content-Length, a request
 * without length has no body, and a stream that is not HTTP is given up for good. */
static void test_requests_and_garbage(void **state) {
    static const char REQ[] = "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
                              "Content-Length: 2\r\n\r\n{}"
                              "GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    as_buf out;
    as_buf_init(&out);
    for (size_t cut = 0; cut < sizeof REQ; cut++) {
        feed_split(0, REQ, sizeof REQ - 1, cut, &out);
        assert_string_equal(as_buf_cstr(&out),
                            "SPOST /v1/chat/completions HTTP/1.1|HHost=a|"
                            "HContent-Length=2|B{}|D|SGET /x HTTP/1.1|HHost=a|D|");
    }
    static as_http p;
    seen s;
    memset(&s, 0, sizeof s);
    as_buf_init(&s.log);
    as_http_init(&p, 0, &cbs, &s);
    as_http_feed(&p, "\x16\x03\x01 binary\r\nGET / HTTP/1.1\r\n\r\n", 33);
    assert_int_equal(p.state, AS_HTTP_BROKEN);
    assert_int_equal(s.log.len, 0);
    as_buf_free(&s.log);
    as_buf_free(&out);
}

/* ---- the exchange decoder ---- */
static char *g_name, *g_tools, *g_resp, *g_err, *g_meta;
static int g_actions;

static char *dup_or_null(const char *s) {
    return s ? strdup(s) : NULL;
}
static void clear_action(void) {
    free(g_name), free(g_tools), free(g_resp), free(g_err), free(g_meta);
    g_name = g_tools = g_resp = g_err = g_meta = NULL;
}
static void on_action(const agentsight_action *a) {
    clear_action();
    g_actions++;
    g_name = dup_or_null(a->action_name);
    g_tools = dup_or_null(a->tools_used);
    g_resp = dup_or_null(a->response);
    g_err = dup_or_null(a->error_msg);
    g_meta = dup_or_null(a->metadata);
}

/* Runs one exchange (request, then response) through a fresh connection, the response
 * cut at `cut`. */
static void exchange(const char *req, const char *resp, size_t resp_len, size_t cut) {
    as_llm_conn *c = as_llm_conn_new();
    assert_non_null(c);
    as_llm_conn_wrote(c, req, strlen(req));
    as_llm_conn_read(c, resp, cut);
    as_llm_conn_read(c, resp + cut, resp_len - cut);
    as_llm_conn_free(c);
}

static int64_t usage_of(const char *tools, const char *k) {
    cJSON *j = cJSON_Parse(tools);
    assert_non_null(j);
    cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), k);
    int64_t r = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
    cJSON_Delete(j);
    return r;
}

static const char CHAT_REQ[] = "POST /v1/chat/completions HTTP/1.1\r\nHost: api.example:443\r\n"
                               "Authorization: Bearer sk-SECRET\r\nContent-Length: 44\r\n\r\n"
                               "{\"model\":\"gpt-4o-mini\",\"stream\":true,\"x\":1}";

/* Proves an OpenAI SSE stream in chunked framing, cut at every byte, gives one action
 * with the reassembled text and the usage of the last chunk, and never the API key. */
static void test_openai_sse_every_split(void **state) {
    const char *evs[] = {
        "data: {\"model\":\"gpt-4o-mini-2024\",\"choices\":[{\"delta\":{\"role\":\"assistant\","
        "\"content\":\"\"}}]}\n\n",
        "data: "
        "{\"model\":\"gpt-4o-mini-2024\",\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        "data: {\"model\":\"gpt-4o-mini-2024\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
        "data: {\"model\":\"gpt-4o-mini-2024\",\"choices\":[],\"usage\":{\"prompt_tokens\":11,"
        "\"completion_tokens\":2,\"completion_tokens_details\":{\"reasoning_tokens\":1}}}\n\n",
        "data: [DONE]\n\n"};
    as_buf r;
    as_buf_init(&r);
    as_buf_puts(&r, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n");
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        as_buf_printf(&r, "%zx\r\n%s\r\n", strlen(evs[i]), evs[i]);
    as_buf_puts(&r, "0\r\n\r\n");
    as_llm_set_emit(on_action);
    for (size_t cut = 0; cut <= r.len; cut++) {
        g_actions = 0;
        exchange(CHAT_REQ, r.data, r.len, cut);
        assert_int_equal(g_actions, 1);
        assert_string_equal(g_name, "chat gpt-4o-mini");
        assert_string_equal(g_resp, "Hello");
        assert_null(g_err);
        assert_null(strstr(g_tools, "SECRET"));
        assert_non_null(strstr(g_tools, "\"response_model\":\"gpt-4o-mini-2024\""));
        assert_non_null(strstr(g_tools, "\"stream\":true"));
        assert_non_null(strstr(g_tools, "\"server_address\":\"api.example:443\""));
        assert_int_equal(usage_of(g_tools, "input_tokens"), 11);
        assert_int_equal(usage_of(g_tools, "output_tokens"), 2);
        assert_int_equal(usage_of(g_tools, "reasoning_tokens"), 1);
        assert_non_null(strstr(g_meta, "time_to_first_token_ms"));
    }
    as_buf_free(&r);
    clear_action();
}

/* Proves an Anthropic stream (message_start, content_block_delta, message_delta) read
 * until the connection closes (no length, no chunks), after a 100 Continue, gives its
 * model, usage and text. */
static void test_anthropic_sse_until_close(void **state) {
    static const char req[] = "POST /v1/messages HTTP/1.1\r\nHost: h\r\nx-api-key: SECRET\r\n"
                              "Content-Length: 30\r\n\r\n{\"model\":\"claude-x\",\"max\":1}  ";
    static const char resp[] =
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
        "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"model\":"
        "\"claude-x-1\",\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":3,"
        "\"output_tokens\":1}}}\r\n\r\n"
        "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"delta\":"
        "{\"type\":\"text_delta\",\"text\":\"\xc3\xa9t\xc3\xa9\"}}\r\n\r\n"
        "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":"
        "{\"output_tokens\":9}}\r\n\r\n";
    as_llm_set_emit(on_action);
    for (size_t cut = 0; cut < sizeof resp; cut++) {
        g_actions = 0;
        exchange(req, resp, sizeof resp - 1, cut);
        assert_int_equal(g_actions, 1);
        assert_string_equal(g_name, "chat claude-x");
        assert_string_equal(g_resp, "\xc3\xa9t\xc3\xa9");
        assert_non_null(strstr(g_tools, "\"provider\":\"anthropic\""));
        assert_int_equal(usage_of(g_tools, "input_tokens"), 25);
        assert_int_equal(usage_of(g_tools, "output_tokens"), 9);
        assert_int_equal(usage_of(g_tools, "cache_read_input_tokens"), 3);
        assert_null(strstr(g_tools, "SECRET"));
    }
    clear_action();
}

/* Proves a compressed error answer is inflated and becomes "HTTP 404: <message>", and a
 * response text longer than max_string is cut on a character boundary. */
static void test_gzip_error_and_bound(void **state) {
    static const char body[] = "{\"error\":{\"message\":\"model `m` not found\",\"type\":\"x\"}}";
    unsigned char z[256];
    uLongf zn = sizeof z;
    assert_int_equal(compress2(z, &zn, (const Bytef *)body, sizeof body - 1, 9), Z_OK);
    as_buf r;
    as_buf_init(&r);
    as_buf_printf(&r,
                  "HTTP/1.1 404 Not Found\r\nContent-Encoding: deflate\r\n"
                  "Content-Length: %lu\r\n\r\n",
                  (unsigned long)zn);
    as_buf_put(&r, z, zn);
    static const char req[] = "POST /v1/embeddings HTTP/1.1\r\nHost: h\r\nContent-Length: 13\r\n"
                              "\r\n{\"model\":\"m\"}";
    as_llm_set_emit(on_action);
    for (size_t cut = 0; cut <= r.len; cut++) {
        g_actions = 0;
        exchange(req, r.data, r.len, cut);
        assert_int_equal(g_actions, 1);
        assert_string_equal(g_name, "embeddings m");
        assert_string_equal(g_err, "HTTP 404: model `m` not found");
        assert_non_null(strstr(g_tools, "\"http_status\":404"));
    }
    int saved = as_llm.max_string;
    as_llm.max_string = 4;
    static const char r2[] = "HTTP/1.1 200 OK\r\nContent-Length: 46\r\n\r\n"
                             "{\"choices\":[{\"message\":{\"content\":\"ab\xc3\xa9\xc3\xa9\"}}]}";
    static const char q2[] = "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    g_actions = 0;
    exchange(q2, r2, sizeof r2 - 1, 0);
    assert_int_equal(g_actions, 1);
    assert_string_equal(g_resp, "ab\xc3\xa9");
    assert_string_equal(g_name, "chat");
    as_llm.max_string = saved;
    as_buf_free(&r);
    clear_action();
}

/* Proves bytes that are not UTF-8 (in the request's model, the answer's text and its
 * error) and a model name longer than an action name can be give an action validation
 * accepts: bad bytes become U+FFFD, the name is cut at a character. Before, the action was
 * refused ("not valid UTF-8", "longer than 256 bytes") and the call never recorded. */
static void test_bad_bytes_still_recorded(void **state) {
    char model[400];
    memset(model, 'm', sizeof model);
    memcpy(model + 150, "\xff\xfe\xc3", 3);
    model[sizeof model - 1] = '\0';
    char body[600];
    int bl = snprintf(body, sizeof body, "{\"model\":\"%s\"}", model);
    char req[800];
    snprintf(req, sizeof req, "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s",
             bl, body);
    static const char ans[] = "{\"choices\":[{\"message\":{\"content\":\"ok \xff\xc0\x80!\"}}],"
                              "\"error\":{\"message\":\"bad \xed\xa0\x80\"}}";
    char resp[400];
    snprintf(resp, sizeof resp, "HTTP/1.1 500 Oops\r\nContent-Length: %zu\r\n\r\n%s",
             sizeof ans - 1, ans);
    as_llm_set_emit(on_action);
    g_actions = 0;
    exchange(req, resp, strlen(resp), 7);
    assert_int_equal(g_actions, 1);
    assert_string_equal(g_resp, "ok \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!");
    assert_string_equal(g_err, "HTTP 500: bad \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_true(strlen(g_name) <= AGENTSIGHT_MAX_NAME);
    assert_int_equal(strncmp(g_name, "chat mmm", 8), 0);
    agentsight_action a = {.action_name = g_name,
                           .tools_used = g_tools,
                           .metadata = g_meta,
                           .response = g_resp,
                           .error_msg = g_err};
    as_action out;
    char msg[256] = "";
    assert_int_equal(
        as_action_validate(&a, 1705314600LL * 1000000000LL, "conv_1", &out, msg, sizeof msg), 0);
    clear_action();
}

/* Proves the OpenAI Responses shape (output[].content[].output_text, usage with cached
 * and reasoning details) and a request sent in pieces with its model late in the body. */
static void test_responses_shape(void **state) {
    static const char body[] = "{\"model\":\"o3\",\"status\":\"completed\",\"output\":[{\"type\":"
                               "\"reasoning\"},{\"type\":\"message\",\"content\":[{\"type\":"
                               "\"output_text\",\"text\":\"42\"}]}],\"usage\":{\"input_tokens\":"
                               "100,\"input_tokens_details\":{\"cached_tokens\":64},"
                               "\"output_tokens\":30,\"output_tokens_details\":"
                               "{\"reasoning_tokens\":28}}}";
    char resp[1024];
    snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", sizeof body - 1,
             body);
    static const char req[] =
        "POST /openai/v1/responses?api-version=1 HTTP/1.1\r\nHost: gw\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
        "9\r\n{\"input\":\r\n7\r\n\"q\",\"mo\r\nE\r\ndel\":\"o3-pro\"}\r\n0\r\n\r\n";
    as_llm_set_emit(on_action);
    g_actions = 0;
    exchange(req, resp, strlen(resp), 10);
    assert_int_equal(g_actions, 1);
    assert_string_equal(g_name, "chat o3-pro");
    assert_string_equal(g_resp, "42");
    assert_non_null(strstr(g_tools, "\"endpoint\":\"/openai/v1/responses\""));
    assert_non_null(strstr(g_tools, "\"response_model\":\"o3\""));
    assert_int_equal(usage_of(g_tools, "input_tokens"), 100);
    assert_int_equal(usage_of(g_tools, "cache_read_input_tokens"), 64);
    assert_int_equal(usage_of(g_tools, "output_tokens"), 30);
    assert_int_equal(usage_of(g_tools, "reasoning_tokens"), 28);
    clear_action();
}

/* Proves a brotli body (Content-Encoding: br), cut at every byte, is decoded for the
 * action. */
static void test_brotli_every_split(void **state) {
    static const char body[] = "{\"model\":\"gpt-x-1\",\"choices\":[{\"message\":{\"content\":"
                               "\"brotli works\"}}],\"usage\":{\"prompt_tokens\":5,"
                               "\"completion_tokens\":2}}";
    uint8_t z[512];
    size_t zn = sizeof z;
    assert_true(BrotliEncoderCompress(5, 22, BROTLI_MODE_TEXT, sizeof body - 1,
                                      (const uint8_t *)body, &zn, z));
    as_buf r;
    as_buf_init(&r);
    as_buf_printf(&r, "HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: %zu\r\n\r\n", zn);
    as_buf_put(&r, z, zn);
    static const char req[] = "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 15\r\n"
                              "\r\n{\"model\":\"gpt\"}";
    as_llm_set_emit(on_action);
    for (size_t cut = 0; cut <= r.len; cut++) {
        g_actions = 0;
        exchange(req, r.data, r.len, cut);
        assert_int_equal(g_actions, 1);
        assert_string_equal(g_resp, "brotli works");
        assert_int_equal(usage_of(g_tools, "input_tokens"), 5);
        assert_int_equal(usage_of(g_tools, "output_tokens"), 2);
    }
    as_buf_free(&r);
    clear_action();
}

/* Proves a connection state reused for a new connection (its end unseen) ends the answer
 * that ran until close when the next request starts: both exchanges give an action. */
static void test_reused_state_after_unseen_close(void **state) {
    static const char req[] = "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 13\r\n\r\n"
                              "{\"model\":\"a\"}";
    static const char resp[] =
        "HTTP/1.1 200 OK\r\n\r\n{\"model\":\"a-1\",\"usage\":{\"prompt_tokens\":1}}";
    as_llm_set_emit(on_action);
    g_actions = 0;
    as_llm_conn *c = as_llm_conn_new();
    assert_non_null(c);
    as_llm_conn_wrote(c, req, strlen(req));
    as_llm_conn_read(c, resp, strlen(resp));
    assert_int_equal(g_actions, 0); /* the answer runs until close */
    as_llm_conn_wrote(c, req, strlen(req));
    assert_int_equal(g_actions, 1);
    assert_int_equal(usage_of(g_tools, "input_tokens"), 1);
    as_llm_conn_read(c, resp, strlen(resp));
    as_llm_conn_free(c);
    assert_int_equal(g_actions, 2);
    clear_action();
}

/* Proves a Responses stream (output_text deltas, usage in response.completed) and an
 * Anthropic stream that ends in an error event (its message becomes error_msg). */
static void test_responses_stream_and_stream_error(void **state) {
    static const char req[] = "POST /v1/responses HTTP/1.1\r\nContent-Length: 28\r\n\r\n"
                              "{\"model\":\"o4\",\"stream\":true}";
    static const char resp[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 228\r\n\r\n"
        "event: response.output_text.delta\n"
        "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n"
        "event: response.completed\n"
        "data: {\"type\":\"response.completed\",\"response\":{\"model\":\"o4-x\",\"usage\":"
        "{\"input_tokens\":3,\"output_tokens\":4}}}\n\n";
    assert_int_equal(strstr(resp, "\r\n\r\n") ? strlen(strstr(resp, "\r\n\r\n") + 4) : 0, 228);
    as_llm_set_emit(on_action);
    for (size_t cut = 0; cut < sizeof resp; cut += 7) {
        g_actions = 0;
        exchange(req, resp, sizeof resp - 1, cut);
        assert_int_equal(g_actions, 1);
        assert_string_equal(g_name, "chat o4");
        assert_string_equal(g_resp, "Hi");
        assert_non_null(strstr(g_tools, "\"response_model\":\"o4-x\""));
        assert_int_equal(usage_of(g_tools, "output_tokens"), 4);
    }
    static const char req2[] = "POST /v1/messages HTTP/1.1\r\nContent-Length: 13\r\n\r\n"
                               "{\"model\":\"c\"}";
    static const char resp2[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                                "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
                                "\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    g_actions = 0;
    exchange(req2, resp2, sizeof resp2 - 1, 0);
    assert_int_equal(g_actions, 1);
    assert_string_equal(g_err, "HTTP 200: Overloaded");
    clear_action();
}

/* Proves a header line longer than the kept buffer is read whole (up to AS_HTTP_LINE_MAX),
 * one longer than that is dropped without harm, and the line buffer goes back to at most
 * AS_HTTP_LINE_KEEP bytes once the message ended: an idle connection keeps little. */
static void test_line_buffer_bounded(void **state) {
    static char msg[3 * AS_HTTP_LINE_MAX];
    size_t n = 0;
    n += (size_t)sprintf(msg + n, "HTTP/1.1 200 OK\r\nX-Long: ");
    memset(msg + n, 'a', 3000), n += 3000;
    n += (size_t)sprintf(msg + n, "\r\nX-Huge: ");
    memset(msg + n, 'b', AS_HTTP_LINE_MAX + 10), n += AS_HTTP_LINE_MAX + 10;
    n += (size_t)sprintf(msg + n, "\r\nContent-Length: 2\r\n\r\nok");
    seen s;
    memset(&s, 0, sizeof s);
    as_buf_init(&s.log);
    as_http p;
    as_http_init(&p, 1, &cbs, &s);
    assert_int_equal(p.line_cap, 0);
    as_http_feed(&p, msg, n);
    assert_non_null(strstr(as_buf_cstr(&s.log), "HX-Long=aaa"));
    assert_null(strstr(as_buf_cstr(&s.log), "HX-Huge"));
    assert_non_null(strstr(as_buf_cstr(&s.log), "HContent-Length=2|Bok|D|"));
    assert_true(p.line_cap <= AS_HTTP_LINE_KEEP);
    as_http_release(&p);
    as_buf_free(&s.log);
}

/* Proves the pass-through rule: a connection whose first exchange is a download (no model
 * API path, no JSON answer, not small) is given up at the answer's headers, while one
 * whose first exchange is a health check (small, plain text) or a JSON GET (a model list)
 * stays watched and its later chat call is an action. */
static void test_passthrough_after_download(void **state) {
    as_llm_set_emit(on_action);
    g_actions = 0;
    as_llm_conn *c = as_llm_conn_new();
    static const char get[] = "GET /file.bin HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char hdr[] = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                              "Content-Length: 1000000\r\n\r\n";
    as_llm_conn_wrote(c, get, strlen(get));
    assert_int_equal(as_llm_conn_ignored(c), 0);
    as_llm_conn_read(c, hdr, strlen(hdr));
    assert_int_equal(as_llm_conn_ignored(c), 1);
    as_llm_conn_free(c);

    /* a small answer that is no JSON (a health check) leaves the connection watched */
    c = as_llm_conn_new();
    static const char health[] = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 2\r\n\r\nok";
    as_llm_conn_wrote(c, health, strlen(health));
    as_llm_conn_read(c, ok, strlen(ok));
    assert_int_equal(as_llm_conn_ignored(c), 0);
    as_llm_conn_free(c);

    c = as_llm_conn_new();
    static const char models[] = "GET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char list[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "Content-Length: 11\r\n\r\n{\"data\":[]}";
    static const char chat[] = "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
                               "Content-Length: 15\r\n\r\n{\"model\":\"m-1\"}";
    static const char ans[] =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        "Content-Length: 65\r\n\r\n"
        "{\"model\":\"m-1\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}";
    as_llm_conn_wrote(c, models, strlen(models));
    as_llm_conn_read(c, list, strlen(list));
    assert_int_equal(as_llm_conn_ignored(c), 0);
    as_llm_conn_wrote(c, chat, strlen(chat));
    as_llm_conn_read(c, ans, strlen(ans));
    assert_int_equal(g_actions, 1);
    assert_string_equal(g_name, "chat m-1");
    assert_int_equal(usage_of(g_tools, "output_tokens"), 4);
    as_llm_conn_free(c);
    clear_action();
}

/* ---- HTTP/2 (preload/core/llm_h2.c) ---- */
static void h2_frame(as_buf *b, uint8_t type, uint8_t flags, uint32_t sid, const void *pl,
                     size_t n) {
    uint8_t h[9] = {
        (uint8_t)(n >> 16),   (uint8_t)(n >> 8),    (uint8_t)n,          type,        flags,
        (uint8_t)(sid >> 24), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8), (uint8_t)sid};
    as_buf_put(b, h, 9);
    as_buf_put(b, pl, n);
}

/* An HPACK literal field with a new name (RFC 7541 6.2): 0x40 adds it to the dynamic
 * table, 0x00 does not; no Huffman coding, lengths under 127. */
static void hp_lit(as_buf *b, uint8_t kind, const char *name, const char *value) {
    as_buf_putc(b, (char)kind);
    as_buf_putc(b, (char)strlen(name));
    as_buf_puts(b, name);
    as_buf_putc(b, (char)strlen(value));
    as_buf_puts(b, value);
}

static const char H2_BODY1[] = "{\"model\":\"gpt-4o\",\"messages\":[]}";
static const char H2_ANS1[] =
    "{\"model\":\"gpt-4o-2024\",\"choices\":[{\"message\":{\"content\":"
    "\"one\"}}],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":12}}";
static const char H2_ANS3[] =
    "{\"type\":\"message\",\"model\":\"claude-x-1\",\"content\":[{\"type\":"
    "\"text\",\"text\":\"three\"}],\"usage\":{\"input_tokens\":31,"
    "\"output_tokens\":32}}";

/* What a client writes: preface, SETTINGS, stream 1 (its header block split over HEADERS
 * and CONTINUATION, a body in two DATA frames) and stream 3 (an Anthropic call). */
static void h2_client(as_buf *w) {
    as_buf_puts(w, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    static const uint8_t st[] = {0, 1, 0, 0, 0x10, 0}; /* HEADER_TABLE_SIZE 4096 */
    h2_frame(w, 4, 0, 0, st, sizeof st);
    as_buf hb;
    as_buf_init(&hb);
    as_buf_putc(&hb, (char)0x83); /* :method POST (static index 3) */
    hp_lit(&hb, 0x40, ":path", "/v1/chat/completions");
    hp_lit(&hb, 0x00, ":authority", "api.example");
    hp_lit(&hb, 0x00, "authorization", "Bearer sk-SECRET");
    h2_frame(w, 1, 0, 1, hb.data, 20);                            /* HEADERS, no END_HEADERS */
    h2_frame(w, 9, 0x4, 1, hb.data + 20, hb.len - 20);            /* CONTINUATION, END_HEADERS */
    h2_frame(w, 0, 0, 1, H2_BODY1, 10);                           /* DATA */
    h2_frame(w, 0, 0x1, 1, H2_BODY1 + 10, strlen(H2_BODY1) - 10); /* DATA, END_STREAM */
    as_buf_reset(&hb);
    as_buf_putc(&hb, (char)0x83);
    hp_lit(&hb, 0x00, ":path", "/v1/messages");
    hp_lit(&hb, 0x00, ":authority", "api.example");
    static const char body3[] = "{\"model\":\"claude-x\"}";
    h2_frame(w, 1, 0x4, 3, hb.data, hb.len);
    h2_frame(w, 0, 0x1, 3, body3, strlen(body3));
    as_buf_free(&hb);
}

/* What the server answers: SETTINGS, then stream 3 before stream 1; stream 1's DATA is
 * padded and its content-type comes from the dynamic table filled by stream 3's block. */
static void h2_server(as_buf *r) {
    h2_frame(r, 4, 0, 0, "", 0);
    h2_frame(r, 4, 0x1, 0, "", 0); /* ACK */
    as_buf hb;
    as_buf_init(&hb);
    as_buf_putc(&hb, (char)0x88); /* :status 200 */
    hp_lit(&hb, 0x40, "content-type", "application/json");
    h2_frame(r, 1, 0x4, 3, hb.data, hb.len);
    h2_frame(r, 0, 0x1, 3, H2_ANS3, strlen(H2_ANS3));
    static const uint8_t ping[8] = {1};
    h2_frame(r, 6, 0, 0, ping, 8);
    as_buf_reset(&hb);
    as_buf_putc(&hb, (char)0x88);
    as_buf_putc(&hb, (char)0xbe); /* dynamic index 62: content-type application/json */
    h2_frame(r, 1, 0x4, 1, hb.data, hb.len);
    as_buf_reset(&hb);
    /* the first half of the body in a padded DATA frame: its pad length or padding read
     * as body would spoil the JSON */
    as_buf_putc(&hb, '[');
    as_buf_put(&hb, H2_ANS1, 20);
    for (int i = 0; i < '['; i++)
        as_buf_putc(&hb, 'x');
    h2_frame(r, 0, 0x8, 1, hb.data, hb.len);
    h2_frame(r, 0, 0x1, 1, H2_ANS1 + 20, strlen(H2_ANS1) - 20);
    as_buf_free(&hb);
}

static int g_h2_names;

static void on_h2_action(const agentsight_action *a) {
    on_action(a);
    assert_null(strstr(a->tools_used, "sk-SECRET"));
    if (strcmp(a->action_name, "chat gpt-4o") == 0) {
        assert_int_equal(usage_of(a->tools_used, "input_tokens"), 11);
        assert_int_equal(usage_of(a->tools_used, "output_tokens"), 12);
        assert_string_equal(a->response, "one");
        assert_non_null(strstr(a->tools_used, "\"response_model\":\"gpt-4o-2024\""));
        assert_non_null(strstr(a->tools_used, "\"server_address\":\"api.example\""));
        g_h2_names |= 1;
    } else {
        assert_string_equal(a->action_name, "chat claude-x");
        assert_non_null(strstr(a->tools_used, "\"provider\":\"anthropic\""));
        assert_int_equal(usage_of(a->tools_used, "output_tokens"), 32);
        assert_string_equal(a->response, "three");
        g_h2_names |= 2;
    }
}

/* Proves HTTP/2 is decoded: two streams on one connection (a header block continued in
 * CONTINUATION, answers out of order, padded DATA, a field taken from HPACK's dynamic
 * table) give one action each with their own model, tokens and text, whatever the cut
 * of the bytes the program read (every byte boundary, and byte by byte), and never the
 * authorization header. */
static void test_h2_two_streams_every_split(void **state) {
    as_buf w, r;
    as_buf_init(&w);
    as_buf_init(&r);
    h2_client(&w);
    h2_server(&r);
    as_llm_set_emit(on_h2_action);
    for (size_t cut = 0; cut <= r.len + 1; cut++) {
        g_actions = 0;
        g_h2_names = 0;
        as_llm_conn *c = as_llm_conn_new();
        as_llm_conn_wrote(c, w.data, w.len);
        if (cut <= r.len) {
            as_llm_conn_read(c, r.data, cut);
            as_llm_conn_read(c, r.data + cut, r.len - cut);
        } else {
            for (size_t i = 0; i < r.len; i++)
                as_llm_conn_read(c, r.data + i, 1);
        }
        assert_int_equal(as_llm_conn_ignored(c), 0);
        as_llm_conn_free(c);
        assert_int_equal(g_actions, 2);
        assert_int_equal(g_h2_names, 3);
    }
    clear_action();
    as_buf_free(&w);
    as_buf_free(&r);
}

/* Proves bytes that are not HTTP/2 after the preface (and a stream of random frames) give
 * up the connection without a crash or an action, and a RST_STREAM ends an exchange
 * without one. */
static void test_h2_garbage_and_reset(void **state) {
    as_llm_set_emit(on_action);
    g_actions = 0;
    uint32_t x = 12345;
    for (int round = 0; round < 300; round++) {
        as_llm_conn *c = as_llm_conn_new();
        as_llm_conn_wrote(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
        uint8_t junk[512];
        for (size_t i = 0; i < sizeof junk; i++) {
            x = x * 1103515245u + 12345u;
            junk[i] = (uint8_t)(x >> 16);
        }
        if (round % 2 == 0)
            junk[0] = junk[1] = 0; /* short frames: more of them get read */
        as_llm_conn_read(c, junk, sizeof junk);
        as_llm_conn_wrote(c, junk + 100, 300);
        as_llm_conn_free(c);
    }
    assert_int_equal(g_actions, 0);
    as_llm_conn *c = as_llm_conn_new();
    as_llm_conn_wrote(c, "PRI * HTTP/2.0\r\n\r\nSMX\r\n\r\n", 25);
    assert_int_equal(as_llm_conn_ignored(c), 1);
    as_llm_conn_free(c);

    as_buf w, r;
    as_buf_init(&w);
    as_buf_init(&r);
    h2_client(&w);
    h2_server(&r);
    static const uint8_t code[4] = {0, 0, 0, 8};
    as_buf rst;
    as_buf_init(&rst);
    h2_frame(&rst, 3, 0, 1, code, 4);
    c = as_llm_conn_new();
    as_llm_conn_wrote(c, w.data, w.len);
    as_llm_conn_wrote(c, rst.data, rst.len); /* stream 1 cancelled by the client */
    as_llm_conn_read(c, r.data, r.len);
    as_llm_conn_free(c);
    assert_int_equal(g_actions, 1);
    assert_string_equal(g_name, "chat claude-x");
    clear_action();
    as_buf_free(&w);
    as_buf_free(&r);
    as_buf_free(&rst);
}

/* ---- libnghttp2 missing (dynlib and log wrapped by the link: test_llm_http.ldflags) ---- */
static int g_no_nghttp2, g_h2_said;
int __real_as_dynlib_load(as_dynlib *lib);
int __wrap_as_dynlib_load(as_dynlib *lib) {
    if (g_no_nghttp2 && strcmp(lib->soname, "libnghttp2.so.14") == 0)
        return -1;
    return __real_as_dynlib_load(lib);
}
void __wrap_as_log(int level, const char *fmt, ...) {
    (void)level;
    if (strstr(fmt, "HTTP/2 connection was seen"))
        g_h2_said++;
}

/* Proves that without libnghttp2 an HTTP/2 connection is given up (no action, nothing
 * parsed) and said once however many there are. */
static void test_h2_without_nghttp2_said_once(void **state) {
    as_buf w, r;
    as_buf_init(&w);
    as_buf_init(&r);
    h2_client(&w);
    h2_server(&r);
    as_llm_set_emit(on_action);
    g_actions = 0;
    g_no_nghttp2 = 1;
    for (int i = 0; i < 3; i++) {
        as_llm_conn *c = as_llm_conn_new();
        as_llm_conn_wrote(c, w.data, w.len);
        assert_int_equal(as_llm_conn_ignored(c), 1);
        as_llm_conn_read(c, r.data, r.len);
        as_llm_conn_free(c);
    }
    g_no_nghttp2 = 0;
    assert_int_equal(g_actions, 0);
    assert_int_equal(g_h2_said, 1);
    as_buf_free(&w);
    as_buf_free(&r);
}

/* Proves a zstd body (Content-Encoding: zstd, what curl --compressed may be answered) is
 * decoded whatever the cut, including one that inflates to more than the decoder's
 * 16 KiB output buffer at once: the usage after 40,000 bytes of text is read. */
static void test_zstd_every_split(void **state) {
    as_buf body;
    as_buf_init(&body);
    as_buf_puts(&body, "{\"model\":\"gpt-z-1\",\"choices\":[{\"message\":{\"content\":\"");
    for (int i = 0; i < 40000; i++)
        as_buf_putc(&body, 'z');
    as_buf_puts(&body, "\"}}],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":9}}");
    size_t cap = ZSTD_compressBound(body.len);
    char *z = malloc(cap);
    size_t zn = ZSTD_compress(z, cap, body.data, body.len, 3);
    assert_false(ZSTD_isError(zn));
    as_buf r;
    as_buf_init(&r);
    as_buf_printf(&r, "HTTP/1.1 200 OK\r\nContent-Encoding: zstd\r\nContent-Length: %zu\r\n\r\n",
                  zn);
    as_buf_put(&r, z, zn);
    static const char req[] = "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 15\r\n"
                              "\r\n{\"model\":\"gpt\"}";
    as_llm_set_emit(on_action);
    for (size_t cut = 0; cut <= r.len; cut++) {
        g_actions = 0;
        exchange(req, r.data, r.len, cut);
        assert_int_equal(g_actions, 1);
        assert_int_equal(strlen(g_resp), 4096); /* max_string */
        assert_int_equal(usage_of(g_tools, "input_tokens"), 8);
        assert_int_equal(usage_of(g_tools, "output_tokens"), 9);
    }
    as_buf_free(&r);
    as_buf_free(&body);
    free(z);
    clear_action();
}

/* Proves bodies larger than what is kept still give their action: a 600 KB request whose
 * model comes after its messages (found in the kept tail) and a 3 MB embeddings answer,
 * fed in 1,000-byte pieces, whose model is at its start and usage at its end. */
static void test_big_bodies_head_and_tail(void **state) {
    as_buf q, r, body;
    as_buf_init(&q);
    as_buf_init(&r);
    as_buf_init(&body);
    as_buf_puts(&body, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < 600000; i++)
        as_buf_putc(&body, "ab\"model\" "[i % 4]); /* no key: quotes are escaped below */
    as_buf_puts(&body, "\"}],\"model\":\"text-embedding-big\",\"stream\":false}");
    /* escape the quotes inside the content the way JSON does */
    as_buf esc;
    as_buf_init(&esc);
    for (size_t i = 0; i < body.len; i++) {
        if (body.data[i] == '"' && i > 40 && i < body.len - 60)
            as_buf_putc(&esc, '\\');
        as_buf_putc(&esc, body.data[i]);
    }
    as_buf_printf(&q, "POST /v1/embeddings HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", esc.len);
    as_buf_put(&q, esc.data, esc.len);
    as_buf_reset(&body);
    as_buf_puts(&body, "{\"object\":\"list\",\"model\":\"text-embedding-big-2\",\"data\":[");
    for (int i = 0; i < 100000; i++)
        as_buf_printf(&body, "%s{\"embedding\":[0.123456,0.654321]}", i ? "," : "");
    as_buf_puts(&body, "],\"usage\":{\"prompt_tokens\":77,\"total_tokens\":77}}");
    assert_true(body.len > (3u << 20));
    as_buf_printf(&r,
                  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  "Content-Length: %zu\r\n\r\n",
                  body.len);
    as_buf_put(&r, body.data, body.len);
    as_llm_set_emit(on_action);
    g_actions = 0;
    as_llm_conn *c = as_llm_conn_new();
    for (size_t i = 0; i < q.len; i += 1000)
        as_llm_conn_wrote(c, q.data + i, q.len - i < 1000 ? q.len - i : 1000);
    for (size_t i = 0; i < r.len; i += 1000)
        as_llm_conn_read(c, r.data + i, r.len - i < 1000 ? r.len - i : 1000);
    as_llm_conn_free(c);
    assert_int_equal(g_actions, 1);
    assert_string_equal(g_name, "embeddings text-embedding-big");
    assert_non_null(strstr(g_tools, "\"response_model\":\"text-embedding-big-2\""));
    assert_non_null(strstr(g_tools, "\"stream\":false"));
    assert_int_equal(usage_of(g_tools, "input_tokens"), 77);
    clear_action();
    as_buf_free(&q);
    as_buf_free(&r);
    as_buf_free(&body);
    as_buf_free(&esc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_response_every_split),
        cmocka_unit_test(test_requests_and_garbage),
        cmocka_unit_test(test_openai_sse_every_split),
        cmocka_unit_test(test_anthropic_sse_until_close),
        cmocka_unit_test(test_gzip_error_and_bound),
        cmocka_unit_test(test_responses_shape),
        cmocka_unit_test(test_bad_bytes_still_recorded),
        cmocka_unit_test(test_brotli_every_split),
        cmocka_unit_test(test_zstd_every_split),
        cmocka_unit_test(test_big_bodies_head_and_tail),
        cmocka_unit_test(test_reused_state_after_unseen_close),
        cmocka_unit_test(test_responses_stream_and_stream_error),
        cmocka_unit_test(test_line_buffer_bounded),
        cmocka_unit_test(test_passthrough_after_download),
        cmocka_unit_test(test_h2_two_streams_every_split),
        cmocka_unit_test(test_h2_garbage_and_reset),
        cmocka_unit_test(test_h2_without_nghttp2_said_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
