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
 *   Without files, every batch pending in the spool directory (default
 *   $XDG_STATE_HOME/agentsight/spool, else ~/.local/state/agentsight/spool, or
 *   AGENTSIGHT_SPOOL_DIR) is replayed, oldest first, to the sink named in its header;
 *   the API key comes from AGENTSIGHT_API_KEY. With files, each action line is sent to
 *   SINK (default AGENTSIGHT_OUTPUT, else `agentsight` when a key is set). What cannot be
 *   delivered within --timeout (default 60000 ms) stays in (or goes to) the spool.
 *   A progress line is printed on stderr every two seconds for long uploads.
 * EXIT STATUS
 *   0 when everything was delivered, 1 when some actions remain spooled, 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cmds.h"
#include "core/action.h"
#include "core/log.h"
#include "core/settings.h"
#include "core/sink.h"
#include "core/spool.h"

#define MAX_SINKS 16

/* Named here so a static link of the CLI pulls the HTTP sinks in: sink.c finds them
 * only through weak references, which do not pull archive members. */
extern const as_sink_ops as_sink_agentsight_ops;
extern const as_sink_ops as_sink_otlp_ops;
static const as_sink_ops *const http_sinks[] = {&as_sink_agentsight_ops, &as_sink_otlp_ops};
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
    fprintf(f, "usage: agentsight send [--spool DIR] [--timeout MS]\n"
               "       agentsight send -o SINK [--spool DIR] [--timeout MS] FILE.jsonl...\n"
               "Delivers what the spool holds, each batch to the sink it was meant for, or\n"
               "uploads recorded JSONL action files to SINK (agentsight, otlp:URL, file:PATH).\n"
               "Exit status: 0 all delivered, 1 some actions remain spooled, 2 bad usage.\n");
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void upload_flush(upload *u) {
    as_action acts[BATCH];
    for (size_t i = 0; i < u->n; i++)
        acts[i] = u->recs[i].a;
    for (int s = 0; s < u->nsinks && u->n; s++)
        u->sinks[s].ops->send(&u->sinks[s], acts, u->n);
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
    for (size_t i = 0; !ops && i < sizeof http_sinks / sizeof http_sinks[0]; i++)
        if (strcmp(http_sinks[i]->scheme, scheme) == 0)
            ops = http_sinks[i];
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
    while ((now = pending_for(uri)) > 0 && mono_ms() < deadline) {
        int64_t left = deadline - mono_ms();
        s.ops->flush(&s, (int)(left > 0 ? left : 0));
        stalled = now >= before ? stalled + 1 : 0;
        if (stalled >= 3)
            break;
        before = now;
        fprintf(stderr, "agentsight send: %s: %zu batches pending\n", uri, now);
    }
    s.ops->close(&s);
    return pending_for(uri);
}

int as_cmd_send(int argc, char **argv) {
    const char *out = NULL, *spool = NULL;
    int timeout_ms = 60000;
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--spool") && i + 1 < argc) {
            spool = argv[++i];
        } else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            timeout_ms = atoi(argv[++i]);
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
    int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 60000);

    if (i >= argc) { /* ship the spool */
        if (out) {
            fprintf(stderr, "agentsight send: -o needs FILE.jsonl arguments\n");
            return 2;
        }
        spooled sp = {.n = 0};
        char root[512];
        if (as_spool_root(as_cfg.spool_dir, root, sizeof root) != 0)
            return 1;
        as_spool_foreach_sink(root, collect, &sp);
        size_t left = 0;
        for (int k = 0; k < sp.n; k++)
            left += ship_spool(sp.uris[k], deadline);
        fprintf(stderr, "agentsight send: %d sinks, %zu batches still pending\n", sp.n, left);
        return left ? 1 : 0;
    }

    if (!out)
        out = as_cfg.output_explicit || as_cfg.api_key[0] ? as_cfg.output : NULL;
    if (!out) {
        fprintf(stderr, "agentsight send: name a sink with -o (agentsight, otlp:URL)\n");
        return 2;
    }
    static as_sink sinks[MAX_SINKS];
    int ns = as_sinks_open(out, sinks, MAX_SINKS);
    if (ns <= 0) {
        fprintf(stderr, "agentsight send: no sink could be opened from '%s'\n", out);
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
        int64_t left = deadline - mono_ms();
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
    return rc || failed ? 1 : 0;
}
