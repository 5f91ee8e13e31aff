/* cmd_send.c - `agentsight send`: ship what the spool holds (including batches left by
 * processes that died) each to the sink it was meant for, or upload recorded JSONL files
 * to a sink ("record offline, upload later").
 *
 * NAME
 *   agentsight send - deliver spooled batches or recorded action files
 * SYNOPSIS
 *   agentsight send [--spool DIR] [--timeout MS]
 *   agentsight send -o SINK [--spool DIR] [--timeout MS] FILE.jsonl...
 * DESCRIPTION
 *   Without files, first the ring files left by processes that died (<spool>/rings) are
 *   recovered, each action to the sinks recorded in its file's header (file:PATH,
 *   agentsight:URL, otlp:URL, ...; what such a sink cannot deliver goes to its spool);
 *   then every batch pending in the spool directory (default
 *   $XDG_STATE_HOME/agentsight/spool, else ~/.local/state/agentsight/spool, or
 *   AGENTSIGHT_SPOOL_DIR) is replayed, oldest first, to the sink named in its header;
 *   the API key comes from AGENTSIGHT_API_KEY. Ring files of running processes are
 *   never touched. With files, each action line is sent to
 *   SINK (default AGENTSIGHT_OUTPUT, else `agentsight` when a key is set). What cannot be
 *   delivered within --timeout (default 60000 ms) stays in (or goes to) the spool.
 *   A progress line is printed on stderr every two seconds for long uploads.
 *   A damaged batch (empty, cut short, garbage) is set aside as <name>.bad with a message,
 *   its readable actions replayed; it never blocks the batches behind it.
 * EXIT STATUS
 *   0 when everything was delivered; 1 when some actions remain spooled (to try again:
 *   the server did not answer, refused the key, or a dead process's ring file names no
 *   sink that can be opened) or were refused for good (dead letters); 2 on bad usage;
 *   3 when everything readable was delivered but damaged input was set aside (batches
 *   renamed .bad, unreadable lines in FILE). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agentsight.h"
#include "core/redact.h"
#include "cli/cmds.h"
#include "core/clock.h"
#include "core/action.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/pipeline.h"
#include "core/settings.h"
#include "core/sink.h"
#include "core/spool.h"

#define MAX_SINKS 16

#define BATCH 256

typedef struct upload {
    as_sink *sinks;
    int nsinks;
    as_spool_rec recs[BATCH];
    size_t n;
    unsigned long long total, bad;
    time_t last_progress;
    const char *file;
} upload;

static void usage(FILE *f) {
    fprintf(f,
            "usage: agentsight send [--spool DIR] [--timeout MS]\n"
            "       agentsight send -o SINK [--spool DIR] [--timeout MS] FILE.jsonl...\n"
            "Delivers what the spool holds, each batch to the sink it was meant for, or\n"
            "uploads recorded JSONL action files to SINK (agentsight, agentsight:URL, otlp:URL,\n"
            "file:PATH).\n"
            "  -V, --version  print the version;  -h, --help  this text\n"
            "Exit status: 0 all delivered, 1 some actions remain spooled or were refused,\n"
            "2 bad usage, 3 all readable delivered but damaged input set aside.\n");
}

static void upload_flush(upload *u) {
    as_action acts[BATCH];
    for (size_t i = 0; i < u->n; i++)
        acts[i] = u->recs[i].a;
    for (int s = 0; s < u->nsinks && u->n; s++) {
        if (u->sinks[s].ops->send(&u->sinks[s], acts, u->n) != 0 &&
            u->sinks[s].ops == &as_sink_file_ops)
            u->sinks[s].failed += u->n; /* a file sink keeps nothing: counted here */
    }
    for (size_t i = 0; i < u->n; i++)
        as_spool_rec_free(&u->recs[i]);
    u->total += u->n;
    u->n = 0;
    time_t now = time(NULL);
    if (now - u->last_progress >= 2) {
        u->last_progress = now;
        fprintf(stderr, "agentsight send: %llu actions read from %s\n", u->total, u->file);
    }
}

static int upload_line(const char *line, size_t len, void *ctx) {
    upload *u = ctx;
    if (as_spool_parse_line(line, len, &u->recs[u->n]) != 0) {
        u->bad++;
        return 0;
    }
    if (++u->n == BATCH)
        upload_flush(u);
    return 0;
}

/* Opens one sink by URI into s. Returns 0 or -1 (message logged). */
static int open_uri(as_sink *s, const char *uri) {
    memset(s, 0, sizeof *s);
    char scheme[32];
    size_t sl = strcspn(uri, ":");
    snprintf(scheme, sizeof scheme, "%.*s", (int)(sl < 31 ? sl : 31), uri);
    const as_sink_ops *ops = as_sink_find(scheme);
    if (!ops) {
        as_error("send: unknown sink '%s'", scheme);
        return -1;
    }
    s->ops = ops;
    snprintf(s->uri, sizeof s->uri, "%s", uri);
    return ops->open(s, uri[sl] == ':' ? uri + sl + 1 : "");
}

static size_t pending_for(const char *uri) {
    as_spool *sp = as_spool_open(as_cfg.spool_dir, uri, 0);
    size_t n = sp ? as_spool_pending(sp, NULL) : 0;
    as_spool_close(sp);
    return n;
}

typedef struct spooled {
    char uris[MAX_SINKS][512];
    int n;
} spooled;

static void collect(const char *uri, const char *dir, void *ctx) {
    (void)dir;
    spooled *sp = ctx;
    if (sp->n < MAX_SINKS)
        snprintf(sp->uris[sp->n++], sizeof sp->uris[0], "%s", uri);
}

/* Replays the spool of one sink until it is empty, stops shrinking, or time runs out.
 * Returns the batches still pending. */
static size_t ship_spool(const char *uri, int64_t deadline) {
    as_sink s;
    if (open_uri(&s, uri) != 0)
        return pending_for(uri);
    size_t before = (size_t)-1, now;
    int stalled = 0;
    while ((now = pending_for(uri)) > 0 && as_mono_ms() < deadline) {
        int64_t left = deadline - as_mono_ms();
        s.ops->flush(&s, (int)(left > 0 ? left : 0));
        stalled = now >= before ? stalled + 1 : 0;
        if (stalled >= 3)
            break;
        before = now;
        char shown[512];
        as_redact_uris(uri, shown, sizeof shown);
        fprintf(stderr, "agentsight send: %s: %zu batches pending\n", shown, now);
    }
    s.ops->close(&s);
    return pending_for(uri);
}

/* ---- what dead processes left in their ring files ----------------------------------- */

#define MAX_GROUPS 16

/* The dead processes that wrote to one sink list, and those sinks opened here. */
typedef struct group {
    char sinks[1024];
    as_sink s[MAX_SINKS];
    int ns; /* sinks opened; -1 when none could be */
    as_action acts[BATCH];
    as_buf bufs[BATCH];
    char ids[BATCH][33];
    size_t n;
} group;

typedef struct rescue {
    group g[MAX_GROUPS];
    int ng;
    unsigned long long actions;
    int left_files;       /* files left because their sinks cannot be named or opened */
    char last_left[1024]; /* the file counted last (a file stops at its first action) */
} rescue;

/* Sends what the group holds (file sinks last). Returns 0, or -1 when a sink could not
 * take it (the recoverer then leaves those actions in their ring file for later). */
static int group_send(group *g) {
    unsigned failed = g->n && g->ns > 0 ? as_sinks_send(g->s, g->ns, g->acts, g->n, ~0u) : 0;
    g->n = 0;
    return failed ? -1 : 0;
}

/* The group of sinks, opened on first use. Returns it, or NULL when there is no room
 * for another list. */
static group *group_of(rescue *r, const char *sinks) {
    for (int i = 0; i < r->ng; i++)
        if (strcmp(r->g[i].sinks, sinks) == 0)
            return &r->g[i];
    if (r->ng == MAX_GROUPS)
        return NULL;
    group *g = &r->g[r->ng++];
    snprintf(g->sinks, sizeof g->sinks, "%s", sinks);
    for (int i = 0; i < BATCH; i++)
        as_buf_init(&g->bufs[i]);
    g->ns = as_sinks_open(sinks, g->s, MAX_SINKS);
    if (g->ns <= 0) {
        char shown[512];
        as_redact_uris(sinks, shown, sizeof shown);
        as_error("send: the sinks '%s' of a process that died cannot be opened; its ring "
                 "file is left in place",
                 shown);
        g->ns = -1;
    }
    return g;
}

/* Copies the strings of a (borrowed for one call) into b; out borrows b. Returns 0, or
 * -1 when out of memory. */
static int copy_action(const as_action *a, as_action *out, as_buf *b) {
    const char *src[6] = {a->action_name, a->tools_used,      a->response,
                          a->error_msg,   a->conversation_id, a->metadata};
    const char **dst[6] = {&out->action_name, &out->tools_used,      &out->response,
                           &out->error_msg,   &out->conversation_id, &out->metadata};
    size_t off[6];
    as_buf_reset(b);
    *out = *a;
    for (int k = 0; k < 6; k++) {
        off[k] = b->len;
        if (src[k]) {
            as_buf_puts(b, src[k]);
            as_buf_putc(b, '\0');
        }
    }
    if (b->oom)
        return -1;
    for (int k = 0; k < 6; k++)
        *dst[k] = src[k] ? b->data + off[k] : NULL;
    out->event_id = NULL;
    return 0;
}

static as_cli_rescue_seen_fn seen_fn;
static void *seen_ctx;

void as_cli_rescue_observe(as_cli_rescue_seen_fn fn, void *ctx) {
    seen_fn = fn;
    seen_ctx = ctx;
}

/* as_recover_fn: one action of a dead process joins the batch of its sinks. */
static int rescued(const as_action *a, const as_recover_origin *o, void *ctx) {
    rescue *r = ctx;
    group *g = o->sinks && o->sinks[0] ? group_of(r, o->sinks) : NULL;
    if (!g || g->ns < 0 || g->n == BATCH || copy_action(a, &g->acts[g->n], &g->bufs[g->n]) != 0) {
        if (strcmp(r->last_left, o->file) != 0) {
            snprintf(r->last_left, sizeof r->last_left, "%s", o->file);
            r->left_files++;
        }
        return 1; /* the file stays for a later run */
    }
    if (a->event_id) {
        snprintf(g->ids[g->n], sizeof g->ids[0], "%s", a->event_id);
        g->acts[g->n].event_id = g->ids[g->n];
    }
    r->actions++;
    if (seen_fn) /* a wrapped call's tools_used starts with its function (core/record.h) */
        seen_fn(o->sinks,
                a->tools_used && strncmp(a->tools_used, "{\"function\":", 12) == 0 ? a->action_name
                                                                                   : NULL,
                seen_ctx);
    g->n++; /* the recoverer flushes every BATCH actions (rescue_flush) */
    return 0;
}

/* as_recover_flush_fn: the actions taken from o's file go to their sinks, the file's
 * sink_mark stored first (where the last file sink's next write starts at the earliest). */
static int rescue_flush(const as_recover_origin *o, void *ctx) {
    rescue *r = ctx;
    group *g = o->sinks && o->sinks[0] ? group_of(r, o->sinks) : NULL;
    if (!g || g->ns < 0)
        return 0;
    unsigned long long mark = as_sinks_file_mark(g->s, g->ns);
    if (mark != ~0ull && o->ring)
        atomic_store_explicit(&o->ring->sink_mark, mark, memory_order_relaxed);
    return group_send(g);
}

int as_cli_rescue_rings(const char *root, const char *run_id, long long deadline,
                        unsigned long long *actions, unsigned long long *unreported,
                        unsigned long long *damaged) {
    static rescue r;
    static int used;
    if (used) /* static storage starts zeroed: clearing its megabytes again on the first call
               * would touch every page of it at the end of each `agentsight run` */
        memset(&r, 0, sizeof r);
    used = 1;
    uint64_t unrep = 0, dmg = 0;
    as_recover_opts opts = {.fn = rescued,
                            .flush = rescue_flush,
                            .ctx = &r,
                            .run_id = run_id,
                            .unreported = &unrep,
                            .damaged = &dmg};
    long n = as_pipe_recover_opts(root, &opts);
    if (n < 0)
        as_error("send: cannot read %s/rings", root);
    for (int i = 0; i < r.ng; i++) {
        group *g = &r.g[i];
        group_send(g);
        for (int k = 0; k < g->ns; k++) {
            int64_t left = deadline - as_mono_ms();
            g->s[k].ops->flush(&g->s[k], (int)(left > 0 ? left : 0));
            g->s[k].ops->close(&g->s[k]);
        }
        for (int k = 0; k < BATCH; k++)
            as_buf_free(&g->bufs[k]);
    }
    if (actions)
        *actions = r.actions;
    if (unreported)
        *unreported = unrep;
    if (damaged)
        *damaged = dmg;
    r.ng = 0;
    return r.left_files + (n < 0);
}

/* `send`: every dead process's ring files. Returns the number of files left behind. */
static int rescue_rings(const char *root, int64_t deadline) {
    unsigned long long n = 0, dmg = 0;
    int left = as_cli_rescue_rings(root, NULL, deadline, &n, NULL, &dmg);
    if (n)
        fprintf(stderr, "agentsight send: %llu actions recovered from processes that died\n", n);
    if (dmg)
        fprintf(stderr,
                "agentsight send: %llu damaged records skipped (checksum mismatch: never "
                "shipped)\n",
                dmg);
    return left;
}

int as_cmd_send(int argc, char **argv) {
    const char *out = NULL, *spool = NULL;
    int timeout_ms = 60000;
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
            printf("agentsight %s\n", AGENTSIGHT_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--spool") && i + 1 < argc) {
            spool = argv[++i];
        } else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (end == argv[i] || *end || v <= 0 || v > 86400000) {
                fprintf(stderr, "agentsight send: --timeout expects milliseconds (1..86400000)\n");
                usage(stderr);
                return 2;
            }
            timeout_ms = (int)v;
        } else if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "agentsight send: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            break;
        }
    }
    as_settings_load(AGENTSIGHT_QUEUE_WAIT);
    if (spool)
        snprintf(as_cfg.spool_dir, sizeof as_cfg.spool_dir, "%s", spool);
    int64_t deadline = as_mono_ms() + (timeout_ms > 0 ? timeout_ms : 60000);

    if (i >= argc) { /* ship the spool */
        if (out) {
            fprintf(stderr, "agentsight send: -o needs FILE.jsonl arguments\n");
            return 2;
        }
        spooled sp = {.n = 0};
        char root[512];
        if (as_spool_root(as_cfg.spool_dir, root, sizeof root) != 0)
            return 1;
        int rings_left = rescue_rings(root, deadline);
        as_spool_foreach_sink(root, collect, &sp);
        size_t left = (size_t)rings_left;
        for (int k = 0; k < sp.n; k++)
            left += ship_spool(sp.uris[k], deadline);
        unsigned long bad = as_spool_set_aside();
        fprintf(stderr, "agentsight send: %d sinks, %zu batches still pending", sp.n, left);
        if (bad)
            fprintf(stderr, ", %lu damaged batches set aside (*.bad)", bad);
        fputc('\n', stderr);
        return left ? 1 : bad ? 3 : 0;
    }

    if (!out)
        out = as_cfg.output_explicit || as_cfg.api_key[0] ? as_cfg.output : NULL;
    if (!out) {
        fprintf(stderr, "agentsight send: name a sink with -o (agentsight, agentsight:URL, "
                        "otlp:URL, file:PATH)\n");
        return 2;
    }
    static as_sink sinks[MAX_SINKS];
    int ns = as_sinks_open(out, sinks, MAX_SINKS);
    if (ns <= 0) {
        char shown[1024];
        as_redact_uris(out, shown, sizeof shown);
        fprintf(stderr, "agentsight send: no sink could be opened from '%s'\n", shown);
        return 1;
    }
    static upload u;
    memset(&u, 0, sizeof u);
    u.sinks = sinks;
    u.nsinks = ns;
    int rc = 0;
    for (; i < argc; i++) {
        u.file = argv[i];
        if (as_spool_read(argv[i], NULL, 0, upload_line, &u) < 0) {
            fprintf(stderr, "agentsight send: cannot read %s\n", argv[i]);
            rc = 1;
        }
        upload_flush(&u);
    }
    for (int s = 0; s < ns; s++) {
        int64_t left = deadline - as_mono_ms();
        if (sinks[s].ops->flush(&sinks[s], (int)(left > 0 ? left : 0)) != 0)
            rc = 1;
    }
    unsigned long long failed = 0;
    for (int s = 0; s < ns; s++) {
        sinks[s].ops->close(&sinks[s]);
        failed += sinks[s].failed;
    }
    fprintf(stderr,
            "agentsight send: %llu actions sent, %llu not delivered (spooled or "
            "dead letters), %llu unreadable lines\n",
            u.total - failed, failed, u.bad);
    return rc || failed ? 1 : u.bad || as_spool_set_aside() ? 3 : 0;
}
