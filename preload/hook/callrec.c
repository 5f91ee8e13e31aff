/* callrec.c - hands the interposer's raw records (AS_MSG_CALL, AS_MSG_SUMMARY) to the
 * record decoder of the core (core/record.h) on the exporter thread, with a description
 * of the record's target (names, display name, error rule, capture, prototype types). */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/pipeline.h"
#include "core/record.h"
#include "core/settings.h"
#include "hook/callrec.h"
#include "hook/capture.h"
#include "hook/config.h"
#include "hook/target.h"
#include "hook/thunk.h"

/* The record decoder knows types and rules by the same numbers. */
_Static_assert((int)AS_RK_VOID == (int)AS_K_VOID && (int)AS_RK_SINT == (int)AS_K_SINT &&
                   (int)AS_RK_UINT == (int)AS_K_UINT && (int)AS_RK_BOOL == (int)AS_K_BOOL &&
                   (int)AS_RK_FLOAT == (int)AS_K_FLOAT && (int)AS_RK_STR == (int)AS_K_STR &&
                   (int)AS_RK_PTR == (int)AS_K_PTR && (int)AS_RK_AGG == (int)AS_K_AGG,
               "type kinds");
_Static_assert((int)AS_REC_ERRIF_NONE == (int)AS_ERRIF_NONE &&
                   (int)AS_REC_ERRIF_NULL == (int)AS_ERRIF_NULL &&
                   (int)AS_REC_ERRIF_NEGATIVE == (int)AS_ERRIF_NEGATIVE &&
                   (int)AS_REC_ERRIF_ZERO == (int)AS_ERRIF_ZERO &&
                   (int)AS_REC_ERRIF_NONZERO == (int)AS_ERRIF_NONZERO &&
                   (int)AS_REC_ERRIF_FALSE == (int)AS_ERRIF_FALSE &&
                   (int)AS_REC_ERRIF_ERRNO == (int)AS_ERRIF_ERRNO,
               "error rules");
_Static_assert((int)AS_REC_MAX_PARAMS == (int)AS_PROTO_MAX_PARAMS &&
                   (int)AS_REC_NAME_LEN == (int)AS_PROTO_NAME_LEN,
               "prototype bounds");
_Static_assert(AS_VIA_GOT == 1 && AS_VIA_DLSYM == 2 && AS_VIA_ENTRY == 4, "hook bits");

static pid_t cached_pid; /* 0 = not yet; reset in a fork child */

static void child_after_fork(void) {
    cached_pid = 0;
}

static int decode_summary(const void *payload, size_t len, as_action *out, as_buf *sb);

AS_OWN_ATFORK(own_fork, as_fork_nothing, as_fork_nothing, child_after_fork)

__attribute__((constructor)) static void callrec_init(void) {
    pthread_atfork(own_fork_prepare, own_fork_parent, own_fork_child);
    as_callrec_register();
}

void as_callrec_register(void) {
    as_pipe_register(AS_MSG_CALL, as_callrec_decode);
    as_pipe_register(AS_MSG_SUMMARY, decode_summary);
}

/* Returns the pid, fetched once per process (again in a fork child). Can't fail. */
static pid_t process_id(void) {
    pid_t p = __atomic_load_n(&cached_pid, __ATOMIC_RELAXED);
    if (!p) {
        p = getpid();
        __atomic_store_n(&cached_pid, p, __ATOMIC_RELAXED);
    }
    return p;
}

int as_callrec_describe(uint32_t id, as_rec_desc *d) {
    if (id >= __atomic_load_n(&as_ntargets, __ATOMIC_ACQUIRE))
        return -1;
    const as_target *t = &as_targets[id];
    const as_entry *e = t->entry;
    const as_proto *p = t->proto;
    /* Not the whole struct: the names of absent parameters are never read. */
    memset(d, 0, offsetof(as_rec_desc, names));
    d->action_name = t->action_name;
    d->symbol = t->symbol;
    d->library = t->library;
    d->display = e ? e->display : NULL;
    d->error_if = e ? e->error_if : AS_ERRIF_NONE;
    d->hidden = as_capture_off || (e && e->capture_none);
    d->via = __atomic_load_n(&t->via, __ATOMIC_RELAXED);
    if (p) {
        d->typed = 1;
        d->ret.kind = p->ret.kind;
        d->ret.size = p->ret.size;
        d->nparams = p->nparams < AS_REC_MAX_PARAMS ? p->nparams : AS_REC_MAX_PARAMS;
        for (int i = 0; i < d->nparams; i++) {
            d->params[i].kind = p->params[i].kind;
            d->params[i].size = p->params[i].size;
            memcpy(d->names[i], p->names[i], AS_REC_NAME_LEN);
            d->names[i][AS_REC_NAME_LEN - 1] = '\0';
        }
    }
    return 0;
}

int as_callrec_failed(uint32_t id, uint64_t rax, uint64_t xmm0, int errno_in, int errno_out) {
    (void)errno_in;
    if (id >= __atomic_load_n(&as_ntargets, __ATOMIC_ACQUIRE))
        return 0;
    const as_target *t = &as_targets[id];
    const as_entry *e = t->entry;
    if (!e || e->error_if == AS_ERRIF_NONE)
        return 0;
    const as_proto *p = t->proto;
    as_rec_type ret = {p ? p->ret.kind : 0, p ? p->ret.size : 0};
    return as_rec_failed(e->error_if, p != NULL, ret, rax, xmm0, errno_out);
}

/* The live clock (as_rec_clock_fn). */
static int live_clock(uint64_t raw, int64_t *unix_ns, void *ctx) {
    (void)ctx;
    *unix_ns = as_clock_raw_to_unix_ns(raw);
    return 0;
}

/* This process as the writer of the records. */
static as_rec_ctx live_ctx(void) {
    as_rec_ctx c = {(int)process_id(),
                    as_cfg.conversation_id[0] ? as_cfg.conversation_id
                                              : as_settings_conversation_id(),
                    live_clock, NULL, 0};
    return c;
}

int as_callrec_decode(const void *payload, size_t len, as_action *out, as_buf *sb) {
    uint16_t id;
    if (!payload || len < sizeof(as_callrec))
        return -1;
    if (!as_rec_call_intact(payload, len))
        return AS_REC_DAMAGED; /* before its id is trusted */
    memcpy(&id, payload, sizeof id);
    /* Described afresh for each record (a few stores per parameter): a target's
     * prototype and hooks may change while the process runs. */
    as_rec_desc d;
    if (as_callrec_describe(id, &d) != 0)
        return -1;
    as_rec_ctx c = live_ctx();
    return as_rec_call(payload, len, &d, &c, out, sb);
}

/* Decoder registered for AS_MSG_SUMMARY. */
static int decode_summary(const void *payload, size_t len, as_action *out, as_buf *sb) {
    as_sum s;
    if (!as_sum_rec_intact(payload, len))
        return AS_REC_DAMAGED;
    memcpy(&s, payload, sizeof s);
    as_rec_desc d;
    if (s.id == 0 || as_callrec_describe(s.id - 1, &d) != 0)
        return -1;
    as_rec_ctx c = live_ctx();
    return as_rec_summary(&s, &d, &c, out, sb);
}
