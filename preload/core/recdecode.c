/* recdecode.c - decoding of the hook layer's ring records into actions, shared by the
 * live exporter and by recovery (recdecode.h). */
#include "recdecode.h"

#include <string.h>

int as_rec_summary(const as_sum *s, const as_rec_names *nm, int pid, const char *conversation_id,
                   as_rec_clock_fn clock, void *clock_ctx, int recovered, as_action *out,
                   as_buf *sb) {
    if (!s || !nm || !nm->action_name || s->calls == 0 || s->errors > s->calls ||
        s->t_last < s->t_first || s->min_ns > s->max_ns)
        return -1;
    int64_t start, end;
    if (clock(s->t_first, &start, clock_ctx) != 0 || clock(s->t_last, &end, clock_ctx) != 0 ||
        end < start)
        return -1;
    memset(out, 0, sizeof *out);
    out->action_name = nm->action_name;
    out->started_ns = start;
    out->ended_ns = end;
    uint64_t total = s->total_ns;
    out->duration_ms = (int64_t)(total / 1000000 + (total % 1000000 >= 500000));
    out->timestamp_ns = end;
    out->conversation_id = conversation_id;

    size_t o_tools = sb->len;
    as_buf_puts(sb, "{\"function\":");
    as_json_cstr(sb, nm->symbol ? nm->symbol : nm->action_name);
    as_buf_puts(sb, ",\"library\":");
    as_json_cstr(sb, nm->library);
    as_buf_puts(sb, "}");
    as_buf_putc(sb, '\0');

    size_t o_meta = sb->len;
    as_buf_printf(sb,
                  "{\"summary\":true,\"calls\":%llu,\"errors\":%llu,\"pid\":%d,\"tid\":%d,"
                  "\"duration_ns\":{\"total\":%llu,\"min\":%llu,\"max\":%llu},"
                  "\"histogram_log2_ns\":{",
                  (unsigned long long)s->calls, (unsigned long long)s->errors, pid, (int)s->tid,
                  (unsigned long long)s->total_ns, (unsigned long long)s->min_ns,
                  (unsigned long long)s->max_ns);
    int first = 1;
    for (int k = 0; k < AS_SUM_BUCKETS; k++) {
        if (!s->hist[k])
            continue;
        as_buf_printf(sb, "%s\"%d\":%u", first ? "" : ",", k, (unsigned)s->hist[k]);
        first = 0;
    }
    as_buf_putc(sb, '}');
    if (nm->display) {
        as_buf_puts(sb, ",\"display_name\":");
        as_json_cstr(sb, nm->display);
    }
    if (recovered)
        as_buf_puts(sb, ",\"agentsight_recovered\":true");
    as_buf_putc(sb, '}');
    as_buf_putc(sb, '\0');

    size_t o_err = sb->len;
    if (s->errors)
        as_buf_printf(sb, "%llu of %llu calls failed", (unsigned long long)s->errors,
                      (unsigned long long)s->calls);
    as_buf_putc(sb, '\0');
    if (sb->oom)
        return -1;
    out->tools_used = sb->data + o_tools;
    out->metadata = sb->data + o_meta;
    out->error_msg = s->errors ? sb->data + o_err : NULL;
    return 0;
}
