/* fuzz_gzip.c - libFuzzer target for the compression wrappers: as_gzip (gzip.c, bodies the
 * HTTP sinks send) must give a gzip member zlib inflates back to the input, and hostile
 * compressed bytes from a server (gzip, deflate or brotli, the decoders llm_detect.c runs
 * on a model API's answer) must decode without a crash into an action that validates and
 * formats to valid JSON. Byte 0 picks the encoding (mod 3) and whether the body is sent
 * chunked; the rest is the compressed body as the server sent it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "agentsight.h"
#include "core/action.h"
#include "core/gzip.h"
#include "core/jsonw.h"
#include "core/llm_detect.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_action(const agentsight_action *a) {
    as_buf b;
    fuzz_llm_action_line(a, &b);
    if (!b.oom)
        fuzz_json_ok("action line", b.data, b.len);
    as_buf_free(&b);
}

/* as_gzip's output inflates (gzip header detected) to exactly the input. */
static void round_trip(const uint8_t *data, size_t size) {
    char *gz = NULL;
    size_t gn = 0;
    if (as_gzip(data, size, &gz, &gn) != 0)
        abort(); /* zlib is there and memory is not short: it must work */
    if (gn < 18 || (uint8_t)gz[0] != 0x1f || (uint8_t)gz[1] != 0x8b)
        abort();
    unsigned char *back = malloc(size + 1);
    z_stream z = {0};
    if (!back || inflateInit2(&z, 16 + 15) != Z_OK)
        abort();
    z.next_in = (Bytef *)gz;
    z.avail_in = (uInt)gn;
    z.next_out = back;
    z.avail_out = (uInt)size + 1;
    if (inflate(&z, Z_FINISH) != Z_STREAM_END || z.total_out != size || z.avail_in != 0 ||
        memcmp(back, data, size) != 0)
        abort();
    inflateEnd(&z);
    free(back);
    free(gz);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    round_trip(data, size);
    if (size < 1)
        return 0;
    static const char *const enc[3] = {"gzip", "deflate", "br"};
    const char *e = enc[data[0] % 3];
    int chunked = data[0] & 0x80;
    const uint8_t *body = data + 1;
    size_t n = size - 1;
    as_llm_set_emit(on_action);
    as_llm.enable = 1;
    as_llm.capture = AS_LLM_CAPTURE_RESPONSE;
    as_llm.max_string = (data[0] & 0x40) ? 7 : 4096;
    as_llm_conn *c = as_llm_conn_new();
    if (!c)
        return 0;
    static const char req[] = "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\n"
                              "Content-Length: 17\r\n\r\n{\"model\":\"gpt-x\"}";
    as_llm_conn_wrote(c, req, sizeof req - 1);
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Encoding: %s\r\n",
                      (data[0] & 0x20) ? "text/event-stream" : "application/json", e);
    as_llm_conn_read(c, head, (size_t)hn);
    if (chunked) {
        as_llm_conn_read(c, "Transfer-Encoding: chunked\r\n\r\n", 30);
        for (size_t off = 0; off < n;) {
            size_t k = n - off < 61 ? n - off : 61;
            char sz[16];
            int sn = snprintf(sz, sizeof sz, "%zx\r\n", k);
            as_llm_conn_read(c, sz, (size_t)sn);
            as_llm_conn_read(c, body + off, k);
            as_llm_conn_read(c, "\r\n", 2);
            off += k;
        }
        as_llm_conn_read(c, "0\r\n\r\n", 5);
    } else {
        char cl[64];
        int cn = snprintf(cl, sizeof cl, "Content-Length: %zu\r\n\r\n", n);
        as_llm_conn_read(c, cl, (size_t)cn);
        as_llm_conn_read(c, body, n);
    }
    as_llm_conn_free(c);
    return 0;
}
