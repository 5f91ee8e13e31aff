/* fuzz_config.c - libFuzzer target for the config parser and the C prototype parser: any
 * byte string must parse without a crash, leak or out-of-bounds read, and what is accepted
 * must respect the documented limits. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hook/config.h"
#include "hook/cproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checks what the parser accepted against the limits config/README.md documents. */
static void check_config(const as_config *c) {
    for (int i = 0; i < c->nentries; i++) {
        const as_entry *e = &c->entries[i];
        if (!e->pattern || e->line < 1 || e->max_string < 1 ||
            e->max_string > AS_MAX_STRING_LIMIT || e->error_if < AS_ERRIF_NONE ||
            e->error_if > AS_ERRIF_ERRNO || e->hook < AS_HOOK_AUTO || e->hook > AS_HOOK_ENTRY)
            abort();
        if (e->name && (strlen(e->name) > 256 || strpbrk(e->name, "*?[")))
            abort();
        if (e->has_proto && (e->proto.nparams < 0 || e->proto.nparams > AS_PROTO_MAX_PARAMS))
            abort();
        for (int k = 0; e->has_proto && k < e->proto.nparams; k++) {
            if (!memchr(e->proto.names[k], '\0', AS_PROTO_NAME_LEN) || !e->proto.names[k][0])
                abort();
        }
    }
    if (c->max_string < 1 || c->max_string > AS_MAX_STRING_LIMIT)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A copy without a terminating NUL, so reading past size is caught. */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    as_config c;
    as_config_parse(text, size, "fuzz.conf", &c);
    check_config(&c);
    as_config_free(&c);

    as_proto p;
    size_t off, n, used;
    as_cproto_err err;
    if (as_cproto_parse(text, size, &p, &off, &n, &used, &err) == 0) {
        if (used > size || off + n > size || p.nparams > AS_PROTO_MAX_PARAMS)
            abort();
    } else if (err.off > size || !memchr(err.msg, '\0', sizeof err.msg)) {
        abort();
    }
    free(text);
    return 0;
}
