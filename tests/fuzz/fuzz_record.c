/* fuzz_record.c - libFuzzer target for the record decoder (record.c) and the ring walker
 * (ring.c) over damaged bytes: a ring file on disk outlives its process and is read back
 * by recovery, so its records and its .targets descriptors may hold anything. Every record
 * that decodes must give an action whose JSONL line is valid JSON (UTF-8, escapes); a
 * descriptor that parses must format back to text that parses again the same way.
 *
 * Input: a descriptor text up to the first '\n' (as_rec_desc_parse), a name line up to the
 * second '\n' (action_name\tsymbol\tlibrary\tdisplay), then the bytes of a ring's record
 * space (head at their end, 8-aligned). The same bytes are also decoded as one call record
 * and as one summary. Packed API actions are checked after the validation recovery applies
 * to them (they are trusted only in the process that packed them). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agentsight.h"
#include "core/action.h"
#include "core/jsonw.h"
#include "core/pipeline.h"
#include "core/record.h"
#include "core/ring.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RING_BYTES 16384

/* Raw clock -> ns as a dead process's header says: 1 raw unit = 1 ns from a base. */
static int test_clock(uint64_t raw, int64_t *unix_ns, void *ctx) {
    (void)ctx;
    if (raw > (uint64_t)INT64_MAX - 1700000000000000000ull)
        return -1;
    *unix_ns = 1700000000000000000ll + (int64_t)raw;
    return 0;
}

typedef struct walk {
    const as_rec_desc *d;
    as_rec_ctx ctx;
    as_buf sb, line;
    int records;
} walk;

/* An action decoded from damaged bytes must still be one valid JSON line. */
static void check_action(walk *w, const as_action *a) {
    as_buf_reset(&w->line);
    as_action_to_jsonl(a, &w->line);
    if (w->line.oom)
        return;
    if (w->line.len == 0 || w->line.data[w->line.len - 1] != '\n' ||
        memchr(w->line.data, '\n', w->line.len - 1))
        abort();
    fuzz_json_ok("record action", w->line.data, w->line.len);
}

static void decode(walk *w, unsigned kind, const void *payload, size_t len) {
    as_action a;
    as_buf_reset(&w->sb);
    if (kind == AS_MSG_CALL) {
        if (as_rec_call(payload, len, w->d, &w->ctx, &a, &w->sb) == 0)
            check_action(w, &a);
    } else if (kind == AS_MSG_SUMMARY && len >= sizeof(as_sum)) {
        as_sum s;
        memcpy(&s, payload, sizeof s);
        if (as_rec_summary(&s, w->d, &w->ctx, &a, &w->sb) == 0)
            check_action(w, &a);
    } else if (kind == AS_MSG_ACTION) {
        /* A packed action carries its texts as they were validated when it was tracked:
         * recovery validates them again (check_recovered), so only those are checked. */
        if (as_action_unpack(payload, len, &a) == 0 && a.action_name) {
            agentsight_action pub = {.action_name = a.action_name,
                                     .tools_used = a.tools_used,
                                     .response = a.response,
                                     .error_msg = a.error_msg,
                                     .conversation_id = a.conversation_id,
                                     .metadata = a.metadata};
            as_action norm;
            char msg[128];
            if (as_action_validate(&pub, a.timestamp_ns, "conv_fuzz", &norm, msg, sizeof msg) == 0)
                check_action(w, &a);
        }
    }
}

/* The bytes decoded as they are (most fail the checksum: counted as damaged) and again
 * sealed with a right checksum, so that the decoding behind the check sees any bytes. */
static void decode_both(walk *w, unsigned kind, const void *payload, size_t len) {
    decode(w, kind, payload, len);
    static _Alignas(16) unsigned char buf[1 << 17];
    if (len > sizeof buf)
        return;
    memcpy(buf, payload, len);
    if (kind == AS_MSG_CALL && len >= sizeof(as_callrec)) {
        as_callrec *r = (as_callrec *)buf;
        if (r->ext > len - sizeof *r)
            r->ext = (uint32_t)(len - sizeof *r);
        as_rec_call_seal(r);
        decode(w, kind, buf, len);
    } else if (kind == AS_MSG_SUMMARY && len >= sizeof(as_sum)) {
        as_sum s;
        memcpy(&s, payload, sizeof s);
        as_sum_rec_fill(buf, &s);
        decode(w, kind, buf, AS_SUM_REC_LEN);
    } else if (kind == AS_MSG_ACTION) {
        as_action_blob_seal(buf, len);
        decode(w, kind, buf, len);
    }
}

static int on_rec(unsigned kind, const void *payload, size_t len, uint64_t pos, void *ctx) {
    (void)pos;
    walk *w = ctx;
    w->records++;
    decode_both(w, kind, payload, len);
    return 0;
}

static const char *next_field(char **p) {
    char *s = *p;
    if (!s)
        return NULL;
    char *t = strchr(s, '\t');
    if (t) {
        *t = '\0';
        *p = t + 1;
    } else {
        *p = NULL;
    }
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static as_ring *ring;
    if (!ring && !(ring = as_ring_create(RING_BYTES)))
        abort();
    const uint8_t *nl1 = memchr(data, '\n', size);
    if (!nl1)
        return 0;
    const uint8_t *nl2 = memchr(nl1 + 1, '\n', size - (size_t)(nl1 + 1 - data));
    if (!nl2)
        return 0;
    char *text = strndup((const char *)data, (size_t)(nl1 - data));
    char *names = strndup((const char *)nl1 + 1, (size_t)(nl2 - nl1 - 1));
    const uint8_t *rec = nl2 + 1;
    size_t rlen = size - (size_t)(rec - data);

    as_rec_desc d;
    memset(&d, 0, sizeof d);
    char *np = names;
    d.action_name = next_field(&np);
    d.symbol = next_field(&np);
    d.library = next_field(&np);
    d.display = next_field(&np);
    if (!d.action_name || !*d.action_name)
        d.action_name = "f";
    if (as_rec_desc_parse(text, &d) == 0) {
        /* What parsed formats to text that parses to the same description. */
        as_buf t;
        as_buf_init(&t);
        as_rec_desc_format(&d, &t);
        as_rec_desc e = d;
        memset(e.params, 0, sizeof e.params);
        if (t.oom || as_rec_desc_parse(as_buf_cstr(&t), &e) != 0 || e.typed != d.typed ||
            e.error_if != d.error_if || e.nparams != d.nparams ||
            memcmp(e.params, d.params, sizeof d.params) != 0 || memchr(t.data, '\t', t.len) ||
            memchr(t.data, '\n', t.len))
            abort();
        as_buf_free(&t);
    }

    walk w = {.d = &d};
    w.ctx = (as_rec_ctx){1234, "conv_fuzz", test_clock, NULL, 1};
    as_buf_init(&w.sb);
    as_buf_init(&w.line);

    /* The bytes as one record of each kind. */
    decode_both(&w, AS_MSG_CALL, rec, rlen);
    decode_both(&w, AS_MSG_SUMMARY, rec, rlen);
    decode_both(&w, AS_MSG_ACTION, rec, rlen);

    /* The bytes as a ring's record space, walked as recovery walks it. */
    size_t n = rlen > ring->size ? ring->size : rlen;
    memset(as_ring_data(ring), 0, ring->size);
    memcpy(as_ring_data(ring), rec, n);
    atomic_store(&ring->tail, 0);
    atomic_store(&ring->head, (n + 7) & ~(uint64_t)7);
    uint64_t pos = 0, skipped = 0;
    as_ring_walk(ring, &pos, on_rec, &w, &skipped);
    if (pos != atomic_load(&ring->head) || skipped > pos)
        abort();

    as_buf_free(&w.sb);
    as_buf_free(&w.line);
    free(text);
    free(names);
    return 0;
}
