/* fuzz_jsonw.c - libFuzzer target for the JSON writer and action validation: any input,
 * escaped or split into action fields, must give output cJSON parses and valid UTF-8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "core/action.h"
#include "core/clock.h"
#include "core/jsonw.h"

/* Aborts unless s (n bytes) is valid UTF-8, has only well-formed \u escapes (cJSON alone
 * reads "\u00zz" as U+0000) and parses with cJSON as exactly one value. */
static void must_parse(const char *s, size_t n) {
    size_t at;
    const char *why;
    if (!as_utf8_valid(s, n) || as_json_escapes_check(s, n, &at, &why) != 0)
        abort();
    cJSON *j = cJSON_ParseWithLengthOpts(s, n, NULL, 0);
    if (!j)
        abort();
    cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    as_buf b;
    as_buf_init(&b);

    /* 1. The raw input as one string literal: round trip must parse, and when the input
     *    was valid UTF-8 without NUL the decoded value must equal it. */
    as_json_str(&b, (const char *)data, size);
    as_buf_cstr(&b);
    must_parse(b.data, b.len);
    if (memchr(data, 0, size) == NULL && as_utf8_valid((const char *)data, size)) {
        cJSON *j = cJSON_ParseWithLengthOpts(b.data, b.len, NULL, 0);
        if (!cJSON_IsString(j) || strlen(j->valuestring) != size ||
            memcmp(j->valuestring, data, size) != 0)
            abort();
        cJSON_Delete(j);
    }

    /* 2. Split on 0x01 into NUL-terminated fields of a public action. */
    char *copy = malloc(size + 1);
    if (!copy)
        goto out;
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *f[8] = {0};
    int nf = 0;
    char *p = copy;
    f[nf++] = p;
    for (size_t i = 0; i < size && nf < 8; i++) {
        if (copy[i] == '\x01') {
            copy[i] = '\0';
            f[nf++] = copy + i + 1;
        }
    }
    int64_t dur = size > 0 ? (int64_t)(int8_t)data[0] * 7 : 0;
    agentsight_action a = {.action_name = f[0],
                           .started_at = f[1],
                           .ended_at = f[2],
                           .duration_ms = dur,
                           .tools_used = f[3],
                           .response = f[4],
                           .error_msg = f[5],
                           .conversation_id = f[6],
                           .metadata = f[7]};
    as_action act;
    char msg[256];
    if (as_action_validate(&a, 1705314600LL * 1000000000LL, "conv_000000000000", &act, msg,
                           sizeof msg) == 0) {
        /* An accepted action must format to one valid line, and survive pack/unpack. */
        as_buf_reset(&b);
        as_action_to_jsonl(&act, &b);
        as_buf_cstr(&b);
        if (b.len == 0 || b.data[b.len - 1] != '\n' || memchr(b.data, '\n', b.len - 1))
            abort();
        must_parse(b.data, b.len);
        size_t n = as_action_pack_size(&act);
        uint64_t *blob = malloc(n);
        if (blob) {
            as_action_pack(&act, blob);
            as_action back;
            if (as_action_unpack(blob, n, &back) != 0 ||
                strcmp(back.action_name, act.action_name) != 0)
                abort();
            free(blob);
        }
    } else if (!strchr(msg, ':')) {
        abort(); /* every refusal names its field */
    }
    /* 3. Arbitrary bytes as a blob must never crash unpack: as they are (refused by the
     * checksum), and sealed (so the checks of its structure are reached). */
    as_action junk;
    (void)as_action_unpack(data, size, &junk);
    uint64_t *sealed = malloc(size + 1);
    if (sealed) {
        memcpy(sealed, data, size);
        as_action_blob_seal(sealed, size);
        (void)as_action_unpack(sealed, size, &junk);
        free(sealed);
    }
    free(copy);
out:
    as_buf_free(&b);
    return 0;
}
