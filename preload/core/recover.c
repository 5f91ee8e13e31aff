/* recover.c - ships what dead processes left in their ring files: finds the files of
 * processes that no longer run, takes each one by renaming it, decodes its undelivered
 * records into actions (each with the event id the live exporter would have given it)
 * and hands them to a callback in batches, moving the file's tail past a batch only
 * after the flush callback made it durable (pipeline.h, as_pipe_recover_opts); records
 * already in the dead process's last file sink (looked up from the ring's sink_mark) are
 * skipped. A callback that stops leaves that file for later and recovery continues with
 * the next file (the pipeline takes only files written for its own sinks and run;
 * `agentsight run` those of its run; `agentsight send` all of them, each to the sinks
 * its header names).
 *
 * On-disk layout under the spool root:
 *   rings/<pid>-<start>-<image>-<slot>.ring                a live or dead thread's ring
 *   rings/<pid>-<start>-<image>-<slot>.ring.taking-<rp>-<rs>  taken by recoverer rp/rs
 *   rings/<pid>-<start>-<image>-<slot>.ring.bad            not a ring file (kept, skipped)
 *   rings/<pid>-<start>-<image>.targets                     one line per target:
 *       "id\tname\tsymbol\tlibrary\tdisplay\tdesc\tchecksum\n" (pipeline.h), decoded
 *       with core/record.h as the live exporter decodes; a line whose checksum does not
 *       match is ignored (the records of that target are then skipped)
 *
 * What is read back is shipped as this user's actions, so nothing is trusted: rings/ must
 * be a private directory of ours (as_secure_dir), ring and .targets files must be regular
 * files owned by geteuid() (others are skipped, with one warning per pass), and every
 * decoded action passes the checks a tracked one passes (as_action_validate) with its
 * times computed without overflow. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/diag.h"
#include "core/fdio.h"
#include "action.h"
#include "log.h"
#include "pipeline.h"
#include "record.h"
#include "ring.h"
#include "securedir.h"
#include "settings.h"
#include "sink.h"

#define MAX_TARGET_ID 65536
#define NAME_MAX_LEN 200

/* The target descriptions of one dead process image, from its .targets file. */
typedef struct names {
    char prefix[NAME_MAX_LEN]; /* "<pid>-<start>-<image>" they belong to */
    as_rec_desc **desc;        /* indexed by id; NULL where unknown */
    uint32_t n;                /* entries allocated */
    char *text;                /* the file's text, which the descriptions borrow */
} names;

typedef struct walk_ctx {
    as_recover_fn fn;
    void *ctx;
    const as_recover_opts *opts;
    as_recover_origin origin;
    as_ring *ring;
    char event_id[33]; /* of the record being decoded */
    uint64_t *done;    /* sorted positions already in the last file sink */
    size_t ndone;
    size_t chunk;  /* actions taken since the last flush */
    int failed;    /* a flush failed: stop */
    uint64_t dups; /* records skipped because the file sink has them */
    const as_ring_info *info;
    const names *nm;
    as_buf scratch;
    long taken;
    uint64_t bad;
    uint64_t damaged; /* records whose checksum did not match (skipped) */
    long foreign;     /* files skipped: not regular files owned by geteuid() */
} walk_ctx;

/* Writes a, b and c (c may be NULL) one after another into out. Returns 0, or -1 when
 * they do not fit (out is then empty). */
static int cat3(char *out, size_t cap, const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = strlen(b), lc = c ? strlen(c) : 0;
    if (la + lb + lc + 1 > cap) {
        out[0] = '\0';
        return -1;
    }
    memcpy(out, a, la);
    memcpy(out + la, b, lb);
    memcpy(out + la + lb, c ? c : "", lc);
    out[la + lb + lc] = '\0';
    return 0;
}

/* dir + "/" + name + suffix into out. Returns 0 or -1 (does not fit). */
static int path_of(char *out, size_t cap, const char *dir, const char *name, const char *suffix) {
    char tmp[1100];
    if (cat3(tmp, sizeof tmp, dir, "/", name) != 0)
        return -1;
    return cat3(out, cap, tmp, suffix ? suffix : "", NULL);
}

static void names_free(names *nm) {
    for (uint32_t i = 0; nm->desc && i < nm->n; i++)
        free(nm->desc[i]);
    free(nm->desc);
    free(nm->text);
    memset(nm, 0, sizeof *nm);
}

/* Whether st is a regular file owned by the effective user (what we may read back). */
static int ours(const struct stat *st) {
    return S_ISREG(st->st_mode) && st->st_uid == geteuid();
}

/* Reads the whole file path (a regular file of ours, not through a symlink) into a
 * NUL-terminated malloc'ed buffer. Returns it, or NULL (nothing left open). */
static char *slurp(const char *path) {
    int fd = as_open_high(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    struct stat st;
    FILE *f = fstat(fd, &st) == 0 && ours(&st) ? fdopen(fd, "r") : NULL;
    if (!f) {
        close(fd);
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
        if (cap - len - 1 == 0) {
            char *bigger = cap < ((size_t)64 << 20) ? realloc(buf, cap * 2) : NULL;
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* Loads <dir>/<prefix>.targets into nm (replacing what it held). A missing or unreadable
 * file leaves nm empty (call records of that process are then skipped). */
static void names_load(names *nm, const char *dir, const char *prefix) {
    if (nm->text && strcmp(nm->prefix, prefix) == 0)
        return;
    names_free(nm);
    cat3(nm->prefix, sizeof nm->prefix, prefix, "", NULL);
    char path[1024];
    if (path_of(path, sizeof path, dir, prefix, ".targets") != 0)
        return;
    nm->text = slurp(path);
    if (!nm->text)
        return;
    uint32_t max = 0;
    for (char *p = nm->text; *p;) {
        char *end = strchr(p, '\n');
        unsigned long id = strtoul(p, NULL, 10);
        if (id < MAX_TARGET_ID && id + 1 > max)
            max = (uint32_t)id + 1;
        if (!end)
            break;
        p = end + 1;
    }
    nm->desc = calloc(max ? max : 1, sizeof *nm->desc);
    if (!nm->desc) {
        names_free(nm);
        return;
    }
    nm->n = max;
    char *save = NULL;
    for (char *line = strtok_r(nm->text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t line_len = strlen(line);
        char *f[7];
        int k = 0;
        for (char *p = line; k < 7 && p; k++) {
            f[k] = p;
            p = strchr(p, '\t');
            if (p)
                *p++ = '\0';
        }
        if (k != 4 && k != 7)
            continue; /* a torn last line */
        if (k == 7) {
            /* The checksum covers the line up to the tab before it. */
            char *endc;
            unsigned long want = strtoul(f[6], &endc, 16);
            size_t covered = (size_t)(f[6] - 1 - line);
            char *copy = malloc(line_len + 1);
            if (!copy)
                continue;
            memcpy(copy, line, line_len + 1);
            for (size_t i = 0; i < covered; i++)
                if (copy[i] == '\0')
                    copy[i] = '\t';
            uint32_t got = as_rec_checksum(copy, covered);
            free(copy);
            if (*endc || strlen(f[6]) != 8 || got != (uint32_t)want)
                continue;
        }
        char *endp;
        unsigned long id = strtoul(f[0], &endp, 10);
        if (*endp || id >= nm->n || !f[1][0])
            continue;
        as_rec_desc *d = calloc(1, sizeof *d);
        if (!d)
            continue;
        d->action_name = f[1];
        d->symbol = f[2];
        d->library = f[3];
        if (k == 7) {
            d->display = f[4][0] ? f[4] : NULL;
            if (as_rec_desc_parse(f[5], d) != 0) {
                free(d);
                continue;
            }
        }
        free(nm->desc[id]); /* a later line for an id wins */
        nm->desc[id] = d;
    }
}

/* d as an int64 in *out. Returns 0, or -1 when d is NaN or outside the int64 range
 * (where the conversion would be undefined). */
static int dbl_to_i64(double d, int64_t *out) {
    if (!(d > -9.2e18 && d < 9.2e18))
        return -1;
    *out = (int64_t)d;
    return 0;
}

/* Raw clock value of the dead process -> Unix ns in *out, with its calibration. Returns 0,
 * or -1 when the (hostile or damaged) values overflow. */
static int raw_to_unix(const as_ring_info *in, uint64_t raw, int64_t *out) {
    int64_t d;
    if (dbl_to_i64((double)(int64_t)(raw - in->clock_raw0) * in->clock_ns_per_raw, &d) != 0)
        return -1;
    return __builtin_add_overflow(in->clock_unix0, d, out) ? -1 : 0;
}

/* Runs the strings of a decoded action through the checks of a tracked action
 * (as_action_validate: lengths, UTF-8, JSON objects with strict numbers) and checks its
 * times. Returns 0, or -1 when the action could not have been tracked as it is. */
static int check_recovered(const as_action *a) {
    agentsight_action pub;
    memset(&pub, 0, sizeof pub);
    pub.action_name = a->action_name;
    pub.tools_used = a->tools_used;
    pub.response = a->response;
    pub.error_msg = a->error_msg;
    pub.conversation_id = a->conversation_id;
    pub.metadata = a->metadata;
    as_action norm;
    char msg[128];
    if (!a->conversation_id || !a->conversation_id[0] ||
        as_action_validate(&pub, a->timestamp_ns, NULL, &norm, msg, sizeof msg) != 0)
        return -1;
    int64_t dur_ns, diff;
    if (a->ended_ns < a->started_ns || a->duration_ms < 0 ||
        __builtin_mul_overflow(a->duration_ms, (int64_t)1000000, &dur_ns) ||
        __builtin_sub_overflow(a->ended_ns, a->started_ns, &diff))
        return -1;
    return 0;
}

/* The dead process's clock (as_rec_clock_fn; ctx: its as_ring_info). */
static int dead_clock(uint64_t raw, int64_t *unix_ns, void *ctx) {
    const as_ring_info *in = ctx;
    if (!(in->clock_ns_per_raw > 0 && in->clock_ns_per_raw < 1e6))
        return -1;
    return raw_to_unix(in, raw, unix_ns);
}

/* The dead process as the writer of its records. */
static as_rec_ctx dead_ctx(const walk_ctx *w) {
    const as_ring_info *in = w->info;
    as_rec_ctx c = {(int)in->pid, in->conversation_id[0] ? in->conversation_id : "unknown",
                    dead_clock, (void *)in, 1};
    return c;
}

/* Decodes a call record of the dead process, with the description its .targets file
 * gives (core/record.h: the live exporter's decoder). Returns 0, or -1 when it cannot be
 * trusted (short, unknown target, impossible times). */
static int decode_call(walk_ctx *w, const void *payload, size_t len, as_action *a) {
    uint16_t id;
    if (len < sizeof(as_callrec))
        return -1;
    if (!as_rec_call_intact(payload, len))
        return AS_REC_DAMAGED; /* before its id is trusted */
    memcpy(&id, payload, sizeof id);
    const names *nm = w->nm;
    if (id >= nm->n || !nm->desc[id])
        return -1;
    as_rec_ctx c = dead_ctx(w);
    as_buf_reset(&w->scratch);
    if (as_rec_call(payload, len, nm->desc[id], &c, a, &w->scratch) != 0)
        return -1;
    return check_recovered(a);
}

/* Decodes a packed API action. Returns 0, or -1 when the blob is not intact or holds an
 * action that could not have been tracked (check_recovered). */
static int decode_packed(const void *payload, size_t len, as_action *a) {
    int rc = as_action_unpack(payload, len, a);
    if (rc != 0)
        return rc; /* AS_ACTION_DAMAGED (= AS_REC_DAMAGED) is counted as damaged */
    if (!a->action_name)
        return -1;
    return check_recovered(a);
}

/* Decodes a summary of the dead process (a record, or a slot of its ring header).
 * Returns 0, or -1 when it cannot be trusted. */
static int decode_summary(walk_ctx *w, const void *payload, size_t len, as_action *a) {
    as_sum s;
    if (!as_sum_rec_intact(payload, len))
        return AS_REC_DAMAGED;
    memcpy(&s, payload, sizeof s);
    const names *nm = w->nm;
    if (s.id == 0 || s.id - 1 >= nm->n || !nm->desc[s.id - 1])
        return -1;
    as_rec_ctx c = dead_ctx(w);
    as_buf_reset(&w->scratch);
    if (as_rec_summary(&s, nm->desc[s.id - 1], &c, a, &w->scratch) != 0)
        return -1;
    return check_recovered(a);
}

/* as_ring_msg_fn: one recovered message. Undecodable ones are counted and skipped. */
static int on_msg(unsigned kind, const void *payload, size_t len, void *arg) {
    walk_ctx *w = arg;
    as_action a;
    int rc = -1;
    if (kind == AS_MSG_ACTION)
        rc = decode_packed(payload, len, &a);
    else if (kind == AS_MSG_CALL)
        rc = decode_call(w, payload, len, &a);
    else if (kind == AS_MSG_SUMMARY)
        rc = decode_summary(w, payload, len, &a);
    if (rc != 0) {
        if (rc == AS_REC_DAMAGED)
            w->damaged++; /* never shipped; the records after it are read on */
        else
            w->bad++;
        return 0;
    }
    a.event_id = w->event_id;
    if (w->fn(&a, &w->origin, w->ctx) != 0)
        return 1;
    w->taken++;
    return 0;
}

/* Parses "<pid>-<start>-<image>-<slot>.ring..." into its parts; prefix receives
 * "<pid>-<start>-<image>". Returns 0, or -1 when the name is not of that form. */
static int parse_name(const char *name, int *pid, uint64_t *start, char *prefix, size_t cap) {
    int p;
    unsigned long long s, img;
    unsigned slot;
    int n = 0;
    if (sscanf(name, "%d-%llu-%llx-%u.ring%n", &p, &s, &img, &slot, &n) != 4 || n == 0)
        return -1;
    snprintf(prefix, cap, "%d-%llu-%llx", p, s, img);
    *pid = p;
    *start = s;
    return 0;
}

/* Collects into w->done the positions of this ring's records whose lines are complete in
 * the file sink path past offset from: what a writer put there before it died without
 * moving the ring's tail. Lines not ending in '\n' (torn) do not count: the file sink cuts
 * them off before its next write, and the record is written again whole. */
static void scan_done(walk_ctx *w, const char *path, uint64_t from, uint64_t prefix) {
    int fd = as_open_high(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return;
    }
    if ((uint64_t)st.st_size < from)
        from = 0; /* the file was cut or replaced since: look at all of it */
    size_t cap = 0;
    static const char key[] = "\"event_id\":\"";
    char buf[1 << 16];
    char line[8192];
    size_t ll = 0;
    int overlong = 0;
    off_t off = (off_t)from;
    ssize_t n;
    while ((n = pread(fd, buf, sizeof buf, off)) > 0) {
        off += n;
        for (ssize_t i = 0; i < n; i++) {
            char c = buf[i];
            if (c != '\n') {
                if (ll < sizeof line - 1)
                    line[ll++] = c;
                else
                    overlong = 1;
                continue;
            }
            line[ll] = '\0';
            /* event_id is the last member: look for it at the end of the line. */
            char *k = overlong ? NULL : strstr(line, key);
            uint64_t pfx, pos;
            if (k && as_ring_event_id_parse(k + sizeof key - 1, 32, &pfx, &pos) == 0 &&
                pfx == prefix) {
                if (w->ndone == cap) {
                    size_t nc = cap ? cap * 2 : 64;
                    uint64_t *bigger = realloc(w->done, nc * sizeof *bigger);
                    if (!bigger)
                        break;
                    w->done = bigger;
                    cap = nc;
                }
                w->done[w->ndone++] = pos;
            }
            ll = 0;
            overlong = 0;
        }
    }
    close(fd);
    for (size_t i = 1; i < w->ndone; i++) { /* nearly sorted already: insertion sort */
        uint64_t v = w->done[i];
        size_t j = i;
        for (; j > 0 && w->done[j - 1] > v; j--)
            w->done[j] = w->done[j - 1];
        w->done[j] = v;
    }
}

static int is_done(const walk_ctx *w, uint64_t pos) {
    size_t lo = 0, hi = w->ndone;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->done[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < w->ndone && w->done[lo] == pos;
}

#define RECOVER_BATCH 256

/* Makes what was taken durable, then moves the ring's tail to pos. Returns 0 or -1. */
static int checkpoint(walk_ctx *w, uint64_t pos) {
    if (w->chunk > 0 && w->opts->flush && w->opts->flush(&w->origin, w->ctx) != 0) {
        w->failed = 1;
        return -1;
    }
    w->chunk = 0;
    if (pos > as_ring_tail(w->ring))
        as_ring_release(w->ring, pos);
    return 0;
}

/* as_ring_rec_fn: one record of the taken file. */
static int on_rec(unsigned kind, const void *payload, size_t len, uint64_t pos, void *arg) {
    walk_ctx *w = arg;
    if (w->chunk >= RECOVER_BATCH && checkpoint(w, pos) != 0)
        return 1;
    if (w->ndone && is_done(w, pos)) {
        w->dups++;
        return 0;
    }
    as_ring_event_id(w->ring->info.id_prefix, pos, w->event_id);
    long before = w->taken;
    if (on_msg(kind, payload, len, w) != 0)
        return 1;
    if (w->taken > before)
        w->chunk++;
    return 0;
}

/* Recovers one taken file. Returns 1 done (removed), 0 stopped (given back), -1 bad. */
static int recover_file(walk_ctx *w, names *nm, const char *dir, const char *taken,
                        const char *orig_name) {
    int pid;
    uint64_t start;
    char prefix[NAME_MAX_LEN];
    char path[1024], back[1024];
    if (path_of(path, sizeof path, dir, taken, NULL) != 0 ||
        path_of(back, sizeof back, dir, orig_name, NULL) != 0)
        return -1;
    if (parse_name(orig_name, &pid, &start, prefix, sizeof prefix) != 0)
        return -1;
    as_ring *r = as_ring_file_map(path);
    if (!r) {
        char bad[1040];
        path_of(bad, sizeof bad, dir, orig_name, ".bad");
        as_alert_warn("%s: not a ring file; left as %s", back, bad);
        rename(path, bad);
        return -1;
    }
    const as_ring_info *info = &r->info;
    if (w->opts->run_id && strcmp(w->opts->run_id, info->run_id) != 0) {
        as_ring_destroy(r); /* another run's: delivered as that run's, never as ours */
        rename(path, back);
        return 0;
    }
    if (info->id_prefix == 0) /* written before ids were kept: derive one */
        r->info.id_prefix =
            as_ring_id_prefix(info->pid, info->start_time, info->image, info->slot, 0);
    names_load(nm, dir, prefix);
    w->nm = nm;
    w->info = info;
    w->ring = r;
    w->origin.pid = pid;
    w->origin.file = back;
    w->origin.sinks = info->sinks;
    w->origin.conversation_id = info->conversation_id;
    w->origin.run_id = info->run_id;
    w->origin.ring = r;
    w->ndone = 0;
    w->chunk = 0;
    w->failed = 0;
    uint64_t mark = atomic_load(&r->sink_mark);
    char fpath[1024];
    if (mark != AS_RING_NO_MARK && as_sinks_last_file(info->sinks, fpath, sizeof fpath))
        scan_done(w, fpath, mark, info->id_prefix);
    uint64_t skipped = 0, dups_before = w->dups;
    uint64_t bad_before = w->bad, damaged_before = w->damaged;
    uint64_t pos = as_ring_tail(r);
    int rc = as_ring_walk(r, &pos, on_rec, w, &skipped);
    if (!w->failed)
        checkpoint(w, pos);
    uint64_t damaged = w->damaged - damaged_before;
    if (skipped || w->bad > bad_before || damaged)
        as_alert_warn("%s: skipped %llu damaged bytes, %llu damaged records (checksum) and %llu "
                      "undecodable records",
                      back, (unsigned long long)skipped, (unsigned long long)damaged,
                      (unsigned long long)(w->bad - bad_before));
    if (w->dups > dups_before)
        as_debug("%s: %llu records were already in the file sink", back,
                 (unsigned long long)(w->dups - dups_before));
    int done = rc != 0 && !w->failed;
    uint64_t dlv = atomic_load(&r->delivered), rep = atomic_load(&r->reported);
    if (done && w->opts->unreported && dlv > rep)
        *w->opts->unreported += dlv - rep;
    if (done && w->opts->unreported) /* in the sink, not yet counted in delivered */
        *w->opts->unreported += w->dups - dups_before;
    if (done && w->opts->damaged)
        *w->opts->damaged += damaged;
    uint64_t head = as_ring_head(r); /* names the summaries below (as_sum_event_id) */
    as_ring_info kept = *info;       /* the summaries below are decoded after the unmap */
    w->info = &kept;
    w->origin.sinks = kept.sinks;
    w->origin.conversation_id = kept.conversation_id;
    w->origin.run_id = kept.run_id;
    w->origin.ring = NULL;
    as_ring_destroy(r);
    w->ring = NULL;
    if (!done) {
        rename(path, back);
        return 0;
    }
    /* What never reached the records: summaries still in the header become actions, the
     * drops are reported. */
    as_ring_lost lost;
    if (as_ring_file_lost(path, &lost) == 0) {
        for (int k = 0; k < lost.nsums; k++) {
            uint64_t at = as_sum_id_pos(head, &lost.sums[k]);
            if (w->ndone && is_done(w, at)) {
                w->dups++; /* the live exporter wrote it to the file sink already */
                continue;
            }
            as_ring_event_id(kept.id_prefix, at, w->event_id);
            _Alignas(8) unsigned char rec[AS_SUM_REC_LEN];
            as_sum_rec_fill(rec, &lost.sums[k]);
            if (on_msg(AS_MSG_SUMMARY, rec, sizeof rec, w) != 0) {
                rename(path, back);
                return 0;
            }
        }
        /* Durable before the file goes: a failed flush leaves it (its tail at the end, so
         * only these summaries come again). */
        if (lost.nsums && w->opts->flush && w->opts->flush(&w->origin, w->ctx) != 0) {
            rename(path, back);
            return 0;
        }
        /* Told by the command that recovers (`send`, `run`); an instrumented program that
         * recovers another process's ring keeps it off its own stderr (info level). */
        if (lost.dropped || lost.dropped_sig)
            as_log(as_diag_is_direct() ? AS_LOG_WARN : AS_LOG_INFO,
                   "%s: process %d dropped %llu actions (%llu queue full, %llu in a signal "
                   "handler)",
                   back, pid, (unsigned long long)(lost.dropped + lost.dropped_sig),
                   (unsigned long long)lost.dropped, (unsigned long long)lost.dropped_sig);
    }
    unlink(path);
    return 1;
}

/* Takes name (a .ring of a dead process, or a .taking of a dead recoverer) by renaming
 * it to <ring>.taking-<ours_id>. Returns 1 and the two names, 0 when it is not ours to
 * take (a file that is not a regular file owned by geteuid() also counts in *foreign). */
static int take(const char *dir, const char *name, const char *ours_id, uint64_t self_image,
                char *taken, size_t tcap, char *orig, size_t ocap, long *foreign) {
    int pid;
    uint64_t start;
    char prefix[NAME_MAX_LEN];
    if (parse_name(name, &pid, &start, prefix, sizeof prefix) != 0)
        return 0;
    unsigned long long image = 0;
    sscanf(prefix, "%*d-%*u-%llx", &image);
    /* Our own pid and start time with another image: the image exec replaced. */
    char own[64];
    snprintf(own, sizeof own, "%d-%llu", pid, (unsigned long long)start);
    int replaced = self_image && image != self_image && strcmp(own, ours_id) == 0;
    const char *dot = strstr(name, ".ring");
    size_t base = (size_t)(dot - name) + 5;
    if (base + 1 >= ocap)
        return 0;
    memcpy(orig, name, base);
    orig[base] = '\0';
    if (name[base] == '\0') {
        if (!replaced && !as_proc_dead(pid, start))
            return 0;
    } else {
        int rp;
        unsigned long long rs;
        if (sscanf(name + base, ".taking-%d-%llu", &rp, &rs) != 2)
            return 0; /* .bad and anything else */
        if (strcmp(name + base + 8, ours_id) == 0 || !as_proc_dead(rp, rs))
            return 0;
    }
    char from[1024], to[1024];
    if (cat3(taken, tcap, orig, ".taking-", ours_id) != 0 ||
        path_of(from, sizeof from, dir, name, NULL) != 0 ||
        path_of(to, sizeof to, dir, taken, NULL) != 0)
        return 0;
    struct stat st;
    if (lstat(from, &st) != 0)
        return 0;
    if (!ours(&st)) {
        (*foreign)++; /* another user's file (or a link) is never shipped as ours */
        return 0;
    }
    return rename(from, to) == 0;
}

/* Removes .targets files of dead processes that no longer have ring files. */
static void sweep_targets(const char *dir, char **list, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const char *nm = list[i];
        size_t l = strlen(nm);
        if (l < 9 || strcmp(nm + l - 8, ".targets") != 0)
            continue;
        int pid;
        unsigned long long start;
        if (sscanf(nm, "%d-%llu-", &pid, &start) != 2 || !as_proc_dead(pid, start))
            continue;
        char prefix[NAME_MAX_LEN];
        memcpy(prefix, nm, l - 8);
        prefix[l - 8] = '-';
        prefix[l - 7] = '\0';
        int used = 0;
        DIR *d = as_opendir_high(dir);
        struct dirent *e;
        while (d && !used && (e = readdir(d)))
            used = strncmp(e->d_name, prefix, strlen(prefix)) == 0 && !strstr(e->d_name, ".bad");
        if (d)
            closedir(d);
        if (!used) {
            char path[1024];
            if (path_of(path, sizeof path, dir, nm, NULL) == 0)
                unlink(path);
        }
    }
}

/* Lists the entry names of dir (malloc'ed). Returns the count, or -1 (errno set). */
static long list_dir(const char *dir, char ***out) {
    DIR *d = as_opendir_high(dir);
    if (!d)
        return -1;
    size_t n = 0, cap = 16;
    char **v = malloc(cap * sizeof *v);
    struct dirent *e;
    while (v && (e = readdir(d))) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= NAME_MAX_LEN)
            continue;
        if (n == cap) {
            char **bigger = cap < 1000000 ? realloc(v, cap * 2 * sizeof *v) : NULL;
            if (!bigger)
                break;
            v = bigger;
            cap *= 2;
        }
        v[n] = strdup(e->d_name);
        if (v[n])
            n++;
    }
    closedir(d);
    if (!v)
        return -1;
    *out = v;
    return (long)n;
}

long as_pipe_recover(const char *root, as_recover_fn fn, void *ctx) {
    as_recover_opts o = {.fn = fn, .ctx = ctx};
    return as_pipe_recover_opts(root, &o);
}

long as_pipe_recover_opts(const char *root, const as_recover_opts *opts) {
    if (!opts || !opts->fn)
        return -1;
    if (!root || !root[0])
        root = as_cfg.spool_dir;
    char dir[1024];
    if (cat3(dir, sizeof dir, root, "/rings", NULL) != 0)
        return -1;
    struct stat dst;
    if (lstat(dir, &dst) != 0)
        return errno == ENOENT ? 0 : -1;
    char why[256];
    if (as_secure_dir(dir, 0, why, sizeof why) != 0) {
        as_alert_warn("%s: %s; its ring files are not recovered (the directory must be ours, mode "
                      "0700)",
                      dir, why);
        return -1;
    }
    char **list = NULL;
    long n = list_dir(dir, &list);
    if (n < 0)
        return errno == ENOENT ? 0 : -1;
    char ours[64];
    snprintf(ours, sizeof ours, "%d-%llu", (int)getpid(),
             (unsigned long long)as_proc_start_time((int)getpid()));
    walk_ctx w;
    memset(&w, 0, sizeof w);
    w.fn = opts->fn;
    w.ctx = opts->ctx;
    w.opts = opts;
    as_buf_init(&w.scratch);
    names nm;
    memset(&nm, 0, sizeof nm);
    /* A callback that stops leaves that file (given back) and recovery goes on with the
     * next one: the pipeline stops at files meant for other sinks than its own. */
    for (long i = 0; i < n; i++) {
        char taken[NAME_MAX_LEN + 64], orig[NAME_MAX_LEN];
        if (!take(dir, list[i], ours, opts->self_image, taken, sizeof taken, orig, sizeof orig,
                  &w.foreign))
            continue;
        recover_file(&w, &nm, dir, taken, orig);
    }
    if (w.foreign)
        as_alert_warn("%s: %ld ring files not owned by uid %u skipped (never shipped)", dir,
                      w.foreign, (unsigned)geteuid());
    sweep_targets(dir, list, (size_t)n);
    for (long i = 0; i < n; i++)
        free(list[i]);
    free(list);
    names_free(&nm);
    as_buf_free(&w.scratch);
    free(w.done);
    return w.taken;
}

/* Whether <root>/rings holds a ring file a dead process left (or one a dead recoverer was
 * taking): what a start with as_pipe_arm() must not leave waiting until the first tracked
 * call. One directory read; no file is made. */
/* Opens <root>/rings (root NULL or "": the configured spool), its path in dir. NULL when
 * there is none. */
static DIR *open_rings(const char *root, char *dir, size_t cap) {
    if (!root || !root[0])
        root = as_cfg.spool_dir;
    if (!root[0] || cat3(dir, cap, root, "/rings", NULL) != 0)
        return NULL;
    return as_opendir_high(dir);
}

int as_pipe_recover_pending(const char *root) {
    char dir[1024];
    DIR *d = open_rings(root, dir, sizeof dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        int pid, rp;
        uint64_t start;
        unsigned long long rs;
        char prefix[NAME_MAX_LEN];
        if (parse_name(e->d_name, &pid, &start, prefix, sizeof prefix) != 0)
            continue;
        const char *rest = strstr(e->d_name, ".ring") + 5;
        if (*rest == '\0')
            found = as_proc_dead(pid, start);
        else if (sscanf(rest, ".taking-%d-%llu", &rp, &rs) == 2)
            found = as_proc_dead(rp, rs);
    }
    closedir(d);
    return found;
}

int as_pipe_live_rings(const char *root, const char *run_id) {
    if (!run_id || !run_id[0])
        return 0;
    char dir[1024];
    DIR *d = open_rings(root, dir, sizeof dir);
    if (!d)
        return 0;
    int live = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid;
        uint64_t start;
        char prefix[NAME_MAX_LEN], path[1024];
        if (parse_name(e->d_name, &pid, &start, prefix, sizeof prefix) != 0 ||
            strcmp(strstr(e->d_name, ".ring"), ".ring") != 0 || as_proc_dead(pid, start) ||
            path_of(path, sizeof path, dir, e->d_name, NULL) != 0)
            continue;
        int fd = as_open_high(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0);
        if (fd < 0)
            continue;
        as_ring h;
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
            pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h && h.magic == AS_RING_MAGIC &&
            strncmp(h.info.run_id, run_id, sizeof h.info.run_id) == 0)
            live++;
        close(fd);
    }
    closedir(d);
    return live;
}
