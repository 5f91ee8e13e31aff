/* fuzz_ingest.c - libFuzzer target for the ingest JSON writer (ingest.c) fed actions the
 * two ways they reach it: fields a program passed (accepted by action validation) and a
 * JSONL line replayed from a spool or dead-letter file (as_spool_parse_line, which takes
 * whatever cJSON reads: bytes that are not UTF-8, odd escapes, any numbers). The body of
 * a request holding those spans, both kinds, must be valid UTF-8 JSON.
 *
 * Input: the whole input is one JSONL line for the replay path; split on 0x01 it gives
 * the fields action_name, started_at, ended_at, tools_used, response, error_msg,
 * conversation_id, metadata, environment for the validated path. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agentsight.h"
#include "core/action.h"
#include "core/dl_cjson.h"
#include "core/dynlib.h"
#include "core/ingest.h"
#include "core/jsonw.h"
#include "core/spool.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One request body of a's spans (tool and llm) in one conversation block. */
static void body_of(const as_action *a, const char *env) {
    as_buf b;
    as_buf_init(&b);
    as_ingest_begin(&b);
    as_ingest_block_open(&b, a->conversation_id ? a->conversation_id : "", env, 1);
    as_ingest_span(&b, a, AS_SPAN_TOOL);
    as_buf_putc(&b, ',');
    as_ingest_span(&b, a, AS_SPAN_LLM);
    as_ingest_block_close(&b);
    as_ingest_block_open(&b, "conv_2", NULL, 0);
    as_ingest_block_close(&b);
    as_ingest_end(&b);
    if (!b.oom)
        fuzz_json_ok("ingest body", b.data, b.len);
    char sid[17], tid[33];
    as_ingest_ids(a, sid, tid);
    if (strlen(sid) != 16 || strlen(tid) != 32 || strspn(sid, "0123456789abcdef") != 16 ||
        strspn(tid, "0123456789abcdef") != 32 || strcmp(sid, "0000000000000000") == 0)
        abort();
    as_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (as_dynlib_load(&as_cjson_lib) != 0)
        abort();
    /* 1. A replayed line. */
    as_spool_rec rec;
    if (as_spool_parse_line((const char *)data, size, &rec) == 0) {
        body_of(&rec.a, NULL);
        as_spool_rec_free(&rec);
    }
    /* 2. Fields of a tracked action. */
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *f[9] = {0};
    int nf = 0;
    f[nf++] = copy;
    for (size_t i = 0; i < size && nf < 9; i++) {
        if (copy[i] == '\x01') {
            copy[i] = '\0';
            f[nf++] = copy + i + 1;
        }
    }
    agentsight_action pub = {.action_name = f[0],
                             .started_at = f[1],
                             .ended_at = f[2],
                             .duration_ms = size,
                             .tools_used = f[3],
                             .response = f[4],
                             .error_msg = f[5],
                             .conversation_id = f[6],
                             .metadata = f[7]};
    as_action a;
    char msg[256];
    if (as_action_validate(&pub, 1705314600LL * 1000000000LL, "conv_000000000000", &a, msg,
                           sizeof msg) == 0)
        body_of(&a, f[8]);
    free(copy);
    return 0;
}
