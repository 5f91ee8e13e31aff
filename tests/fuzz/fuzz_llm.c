/* fuzz_llm.c - libFuzzer target for the LLM call decoding (llm_http.c, llm_detect.c): the
 * bytes a model server sends are hostile. The input is a conversation of segments, each
 * fed in pieces whose sizes the input chooses, in either direction; every action the
 * decoder makes must be accepted by action validation and format to one valid JSON line
 * (UTF-8, escapes), and its tools_used and metadata must be JSON objects.
 *
 * Input: byte 0 options (bits 0-1 capture: none, response, prompts; bits 2-3 max_string
 * 4096, 16, 1, 200), byte 1 the seed of the piece sizes (0: each segment in one piece),
 * then segments separated by 0x1e: a segment starting with '>' is written by the program
 * (request bytes), with '<' read from the server (response bytes), with '!' ends the
 * connection (the next segment starts a new one). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agentsight.h"
#include "core/action.h"
#include "core/jsonw.h"
#include "core/llm_detect.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int emitted;

/* Every action the decoder makes: validated as the ring would, then formatted. */
static void on_action(const agentsight_action *a) {
    emitted++;
    fuzz_json_ok_c("tools_used", a->tools_used);
    fuzz_json_ok_c("metadata", a->metadata);
    if (a->tools_used && a->tools_used[0] != '{')
        abort();
    as_buf b;
    fuzz_llm_action_line(a, &b);
    if (b.oom || b.len == 0 || b.data[b.len - 1] != '\n' || memchr(b.data, '\n', b.len - 1))
        abort();
    fuzz_json_ok("action line", b.data, b.len);
    as_buf_free(&b);
}

/* xorshift: the piece sizes, reproducible from the seed byte. */
static uint32_t next_rand(uint32_t *s) {
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static void feed(as_llm_conn *c, int dir, const uint8_t *p, size_t n, uint32_t *seed) {
    while (n > 0) {
        size_t k = n;
        if (*seed) {
            uint32_t r = next_rand(seed);
            k = (r & 3) == 0 ? (r >> 8) % 4 + 1 : (r >> 8) % 97 + 1;
            if (k > n)
                k = n;
        }
        if (dir == '>')
            as_llm_conn_wrote(c, p, k);
        else
            as_llm_conn_read(c, p, k);
        p += k;
        n -= k;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int maxs[4] = {4096, 16, 1, 200};
    if (size < 2)
        return 0;
    as_llm_set_emit(on_action);
    as_llm.enable = 1;
    as_llm.capture = data[0] & 3;
    if (as_llm.capture > AS_LLM_CAPTURE_PROMPTS)
        as_llm.capture = AS_LLM_CAPTURE_RESPONSE;
    as_llm.max_string = maxs[(data[0] >> 2) & 3];
    uint32_t seed = data[1] ? data[1] * 2654435761u : 0;
    const uint8_t *p = data + 2, *end = data + size;
    as_llm_conn *c = as_llm_conn_new();
    if (!c)
        return 0;
    while (p < end) {
        const uint8_t *sep = memchr(p, 0x1e, (size_t)(end - p));
        size_t n = sep ? (size_t)(sep - p) : (size_t)(end - p);
        if (n > 0 && (p[0] == '>' || p[0] == '<'))
            feed(c, p[0], p + 1, n - 1, &seed);
        else if (n > 0 && p[0] == '!') {
            as_llm_conn_free(c);
            c = as_llm_conn_new();
            if (!c)
                return 0;
        }
        p += n + (sep ? 1 : 0);
    }
    as_llm_conn_free(c);
    return 0;
}
