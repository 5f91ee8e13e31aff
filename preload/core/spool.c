/* spool.c - the on-disk spool of undelivered batches and the dead-letter file (spool.h).
 *
 * Layout (directories 0700, files 0600):
 *
 *   <root>/                              $XDG_STATE_HOME/agentsight/spool by default
 *     dead-letter.jsonl                  actions a server refused (4xx), one per line:
 *                                        {"sink":URI,"status":400,"answer":"...",
 *                                         "action":{...the action line...}}
 *     <16 hex: FNV-1a 64 of the URI>/    one directory per sink
 *       <key:20 digits>-<pid>-<seq>.jsonl              a pending batch
 *       <key:20 digits>-<pid>-<seq>.jsonl.claim-<pid>  a batch being replayed by <pid>, or
 *                                                      the write-ahead copy of actions a
 *                                                      sink of <pid> is sending (as_spool_wal)
 *       .tmp-<pid>-<seq>                               a batch being written
 *       <key:20 digits>-<pid>-<seq>.jsonl.bad          a damaged batch set aside
 *
 * A batch is written to its temporary name and renamed, so a reader never sees half a
 * batch, also when the writer is killed; AGENTSIGHT_SPOOL_FSYNC=1 adds an fdatasync
 * before the rename (power loss), off by default because it costs milliseconds per batch
 * on the exporter thread.
 *
 * A batch file is JSONL: one header line, then one action line per action, each exactly
 * as the file sink writes it (as_action_to_jsonl), metadata carrying the action's
 * agentsight_event_id so a replayed action keeps its identity:
 *
 *   {"agentsight_spool":1,"sink":"agentsight:http://127.0.0.1:8080","count":2,"pid":42}
 *   {"action_name":"weather_lookup",...,"metadata":{"agentsight_event_id":"..."},...}
 *   {"action_name":"database_search",...}
 *
 * The key is the Unix time (ns) the batch was first spooled; a batch replayed and
 * spooled again keeps its key, so sorting names replays oldest first. No secret is ever
 * written: the URI has no user:password part and the API key is read from the
 * environment again at replay.
 *
 * Damage. A batch is checked before it is replayed (as_spool_claim) and when `agentsight
 * send` lists the sinks (as_spool_foreach_sink): it must have its header, end in '\n' and
 * hold as many action lines as the header counts. One that does not (an empty file left by
 * a power loss with fsync off, a file cut short, garbage) is renamed <name>.bad with a
 * message; its whole action lines, if any, go back to the spool as a new pending batch of
 * the same key. So a damaged file never blocks the batches behind it and no readable
 * action is lost with it.
 *
 * Refusals for authentication (HTTP 401, 403) are not dead letters: the action is fine,
 * the key is not. as_spool_dead_letter() stages such an action back into the spool, and
 * the spool stops handing out batches for replay for the rest of the process (the key
 * does not change while it runs); `agentsight send` with a key that is accepted ships
 * them. */
#include "core/pipeline.h"
#include "core/keptenv.h"
#include "core/spool.h"
#include "core/securedir.h"

#include "core/dl_cjson.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/fdio.h"
#include "core/jsonw.h"
#include "core/http.h"
#include "core/log.h"

struct as_spool {
    char root[512];
    char dir[600];
    char uri[512];
    uint64_t max_bytes;
    as_buf staged;
    size_t nstaged;
    int64_t staged_key;
    int64_t staged_since_ms; /* CLOCK_MONOTONIC ms when the staged lines began */
    int64_t staged_first_ns; /* Unix ns then: the key of a batch of new lines (key 0) */
    unsigned seq;
    uint64_t dropped;
    uint64_t known_bytes; /* bytes of pending and claimed batches, at least as of the
                           * last scan plus what this spool wrote since (batches removed
                           * meanwhile make it an over-estimate: a scan corrects it) */
    int64_t scanned_ms;   /* CLOCK_MONOTONIC ms of the last scan */
    int fsync_on;         /* AGENTSIGHT_SPOOL_FSYNC=1: fdatasync each batch */
    int auth_refused;     /* a 401/403 was staged back: no replay in this process */
};

/* Batches set aside as damaged by this process (any spool). */
static _Atomic unsigned long set_aside_total;

unsigned long as_spool_set_aside(void) {
    return set_aside_total;
}

uint64_t as_spool_default_max(void) {
    const char *e = as_keptenv_get("AGENTSIGHT_SPOOL_MAX_BYTES");
    if (e && *e) {
        char *end;
        unsigned long long v = strtoull(e, &end, 10);
        if (!*end && v > 0)
            return v;
    }
    return 64ull << 20;
}

int as_spool_root(const char *dir, char *out, size_t cap) {
    if (dir && *dir) /* too long is refused: a truncated path is another place */
        return (size_t)snprintf(out, cap, "%s", dir) < cap ? 0 : -1;
    const char *x = as_keptenv_get("XDG_STATE_HOME");
    if (x && *x == '/') {
        snprintf(out, cap, "%s/agentsight/spool", x);
        return 0;
    }
    const char *home = as_keptenv_get("HOME");
    if (!home || !*home)
        return -1;
    snprintf(out, cap, "%s/.local/state/agentsight/spool", home);
    return 0;
}

/* mkdir -p with mode 0700, refusing a place another user controls (as_secure_dir: owner,
 * mode, symlink). Returns 0, or -1 with the reason logged. */
static int mkdirs(const char *path) {
    char why[256];
    if (as_secure_dir(path, 1, why, sizeof why) == 0)
        return 0;
    as_error("spool: %s: %s; running without a spool", path, why);
    errno = EPERM;
    return -1;
}

void as_spool_uri_clean(const char *uri, char *out, size_t cap) {
    const char *scheme_end = strstr(uri, "://");
    const char *at = NULL;
    if (scheme_end) {
        const char *host = scheme_end + 3;
        size_t hl = strcspn(host, "/?#");
        for (size_t i = 0; i < hl; i++)
            if (host[i] == '@')
                at = host + i;
    }
    if (!at) {
        snprintf(out, cap, "%s", uri);
        return;
    }
    snprintf(out, cap, "%.*s%s", (int)(scheme_end + 3 - uri), uri, at + 1);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static int pid_alive(long pid) {
    if (pid <= 0)
        return 0;
    return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

/* Releases batches claimed by dead processes and removes their half-written files. */
static void recover(as_spool *sp) {
    DIR *d = as_opendir_high(sp->dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[900], back[900];
        const char *c = strstr(de->d_name, ".jsonl.claim-");
        if (c && !pid_alive(atol(c + 13))) {
            snprintf(path, sizeof path, "%s/%s", sp->dir, de->d_name);
            snprintf(back, sizeof back, "%s/%.*s", sp->dir, (int)(c + 6 - de->d_name), de->d_name);
            rename(path, back);
        } else if (strncmp(de->d_name, ".tmp-", 5) == 0 && !pid_alive(atol(de->d_name + 5))) {
            snprintf(path, sizeof path, "%s/%s", sp->dir, de->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

static char **list_pending(const char *dir, size_t *n, uint64_t *total);
static void free_list(char **v, size_t n);

as_spool *as_spool_open(const char *root, const char *uri, uint64_t max_bytes) {
    as_spool *sp = calloc(1, sizeof *sp);
    if (!sp)
        return NULL;
    if (as_spool_root(root, sp->root, sizeof sp->root) != 0) {
        as_error("spool: no spool directory (set AGENTSIGHT_SPOOL_DIR or HOME)");
        free(sp);
        return NULL;
    }
    as_spool_uri_clean(uri, sp->uri, sizeof sp->uri);
    snprintf(sp->dir, sizeof sp->dir, "%s/%016llx", sp->root, (unsigned long long)fnv1a(sp->uri));
    if (mkdirs(sp->dir) != 0) {
        as_error("spool: cannot create %s: %s", sp->dir, strerror(errno));
        free(sp);
        return NULL;
    }
    sp->max_bytes = max_bytes ? max_bytes : as_spool_default_max();
    as_buf_init(&sp->staged);
    recover(sp);
    size_t n = 0;
    char **names = list_pending(sp->dir, &n, &sp->known_bytes);
    free_list(names, n);
    sp->scanned_ms = as_mono_ms();
    const char *fs = as_keptenv_get("AGENTSIGHT_SPOOL_FSYNC");
    sp->fsync_on = fs && strcmp(fs, "1") == 0;
    return sp;
}

void as_spool_close(as_spool *sp) {
    if (!sp)
        return;
    as_spool_commit(sp);
    if (sp->dropped)
        as_alert_warn("spool %s: %llu actions dropped (spool full or not writable)", sp->uri,
                      (unsigned long long)sp->dropped);
    as_buf_free(&sp->staged);
    free(sp);
}

const char *as_spool_dir(const as_spool *sp) {
    return sp->dir;
}

uint64_t as_spool_dropped(const as_spool *sp) {
    return sp ? sp->dropped : 0;
}

size_t as_spool_staged(const as_spool *sp) {
    return sp ? sp->nstaged : 0;
}

int as_spool_stage(as_spool *sp, int64_t key, const char *line, size_t len) {
    if (sp->nstaged > 0 && key != sp->staged_key)
        as_spool_commit(sp);
    if (sp->nstaged == 0) {
        sp->staged_key = key;
        sp->staged_since_ms = as_mono_ms();
        sp->staged_first_ns = as_clock_unix_ns();
    }
    while (len > 0 && line[len - 1] == '\n')
        len--;
    as_buf_put(&sp->staged, line, len);
    as_buf_putc(&sp->staged, '\n');
    if (sp->staged.oom) {
        sp->dropped++;
        return -1;
    }
    sp->nstaged++;
    /* Keep batch files and memory moderate, and well under the spool's bound (a batch
     * bigger than the bound could not be written at all). */
    uint64_t cap =
        sp->max_bytes / 4 < AS_SPOOL_BATCH_BYTES ? sp->max_bytes / 4 : AS_SPOOL_BATCH_BYTES;
    if (sp->staged.len >= cap)
        as_spool_commit(sp);
    return 0;
}

long as_spool_commit_due(as_spool *sp) {
    if (!sp || sp->nstaged == 0 || as_mono_ms() - sp->staged_since_ms < AS_SPOOL_LINGER_MS)
        return 0;
    return as_spool_commit(sp);
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of pending batches (malloc'd array of malloc'd names, count in *n) and
 * the total bytes of pending and claimed batches. Returns NULL when there are none. */
static char **list_pending(const char *dir, size_t *n, uint64_t *total) {
    *n = 0;
    if (total)
        *total = 0;
    DIR *d = as_opendir_high(dir);
    if (!d)
        return NULL;
    char **v = NULL;
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        size_t l = strlen(de->d_name);
        int pending = l > 6 && strcmp(de->d_name + l - 6, ".jsonl") == 0;
        if (total && (pending || strstr(de->d_name, ".claim-"))) {
            char path[900];
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            if (stat(path, &st) == 0)
                *total += (uint64_t)st.st_size;
        }
        if (!pending)
            continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nv = realloc(v, nc * sizeof *v);
            if (!nv)
                break;
            v = nv;
            cap = nc;
        }
        if (!(v[*n] = strdup(de->d_name)))
            break;
        (*n)++;
    }
    closedir(d);
    if (*n > 1)
        qsort(v, *n, sizeof *v, name_cmp);
    return v;
}

static void free_list(char **v, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The "count" of a batch file's header, 0 when unreadable. */
static long header_count(const char *path) {
    FILE *f = as_fopen_high(path);
    if (!f)
        return 0;
    char line[2048];
    long n = 0;
    if (fgets(line, sizeof line, f)) {
        const char *c = strstr(line, "\"count\":");
        if (c)
            n = atol(c + 8);
    }
    fclose(f);
    return n;
}

/* What a batch file holds. */
typedef struct batch_check {
    int header;     /* the first line is a spool header naming its sink */
    long count;     /* the header's count */
    size_t actions; /* whole lines that parse as actions */
    size_t other;   /* other lines: garbage, or a line cut short */
    int cut;        /* the file does not end in '\n' */
} batch_check;

/* 1 when line (len bytes) is a JSON object with a non-empty string action_name: a line
 * a replay reads as an action (as_spool_parse_line). */
static int is_action_line(const char *line, size_t len) {
    if (len < 2 || line[0] != '{')
        return 0; /* what follows is what as_spool_parse_line() accepts */
    cJSON *o = as_cjson.cJSON_ParseWithLength(line, len);
    const cJSON *n = as_cjson.cJSON_GetObjectItemCaseSensitive(o, "action_name");
    int ok = as_cjson.cJSON_IsString(n) && n->valuestring[0];
    as_cjson.cJSON_Delete(o);
    return ok;
}

/* Reads the batch at path into *c; its header's sink into uri (cap bytes; "" when none)
 * and, when keep is non-NULL, its whole action lines (each with '\n'). Returns 0, or -1
 * when the file cannot be read (c then says nothing). */
static int check_batch(const char *path, batch_check *c, char *uri, size_t cap, as_buf *keep) {
    memset(c, 0, sizeof *c);
    uri[0] = 0;
    if (as_dynlib_load(&as_cjson_lib) != 0)
        return -1; /* no parser: nothing can be judged */
    FILE *f = as_fopen_high(path);
    if (!f)
        return -1;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    for (int first = 1; (n = getline(&line, &lcap, f)) >= 0; first = 0) {
        int whole = n > 0 && line[n - 1] == '\n';
        c->cut = !whole;
        size_t len = (size_t)n - (size_t)whole;
        if (first && len > 20 && strncmp(line, "{\"agentsight_spool\":", 20) == 0) {
            cJSON *h = as_cjson.cJSON_ParseWithLength(line, len);
            const cJSON *u = as_cjson.cJSON_GetObjectItemCaseSensitive(h, "sink");
            const cJSON *k = as_cjson.cJSON_GetObjectItemCaseSensitive(h, "count");
            if (as_cjson.cJSON_IsString(u) && u->valuestring[0] && as_cjson.cJSON_IsNumber(k)) {
                c->header = 1;
                c->count = (long)k->valuedouble;
                snprintf(uri, cap, "%s", u->valuestring);
            }
            as_cjson.cJSON_Delete(h);
            if (c->header)
                continue;
        }
        if (whole && is_action_line(line, len)) {
            c->actions++;
            if (keep)
                as_buf_put(keep, line, (size_t)n);
        } else {
            c->other++;
        }
    }
    free(line);
    int err = ferror(f);
    fclose(f);
    return err ? -1 : 0;
}

/* 1 when a checked batch is sound: its header, every line an action, as many as counted,
 * the last one whole. */
static int batch_sound(const batch_check *c) {
    return c->header && c->other == 0 && !c->cut && c->count == (long)c->actions;
}

/* Checks the pending or claimed batch at path in dir; a damaged one is renamed
 * <name>.bad (".claim-PID" dropped) with a message, and its whole action lines go back
 * to dir as a new pending batch of the same key, for the sink uri (its own header's, else
 * uri; with neither they stay in the .bad file only). Returns 1 when the batch is sound
 * (or cannot be judged: it is left as it is), 0 when it was set aside or is gone. */
static int settle(const char *dir, const char *uri, const char *path) {
    batch_check c;
    char own[512];
    as_buf keep;
    as_buf_init(&keep);
    if (check_batch(path, &c, own, sizeof own, &keep) != 0) {
        as_buf_free(&keep);
        return access(path, F_OK) == 0 ? 1 : 0;
    }
    if (batch_sound(&c)) {
        as_buf_free(&keep);
        return 1;
    }
    const char *to = own[0] ? own : uri;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    int64_t key = strtoll(base, NULL, 10);
    char bad[1024];
    const char *claim = strstr(path, ".claim-");
    snprintf(bad, sizeof bad, "%.*s.bad", (int)(claim ? claim - path : (ptrdiff_t)strlen(path)),
             path);
    int kept = 0;
    if (c.actions > 0 && to && to[0] && !keep.oom) {
        static _Atomic unsigned salvage_seq;
        char tmp[1024], final[1024];
        unsigned seq = salvage_seq++;
        snprintf(tmp, sizeof tmp, "%s/.tmp-%d-r%u", dir, (int)getpid(), seq);
        snprintf(final, sizeof final, "%s/%020lld-%d-r%u.jsonl", dir, (long long)key, (int)getpid(),
                 seq);
        as_buf head;
        as_buf_init(&head);
        as_buf_puts(&head, "{\"agentsight_spool\":1,\"sink\":");
        as_json_cstr(&head, to);
        as_buf_printf(&head, ",\"count\":%zu,\"pid\":%d}\n", c.actions, (int)getpid());
        unlink(tmp);
        int fd = head.oom ? -1
                          : as_open_high(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                         0600);
        if (fd >= 0) {
            int ok = as_write_all(fd, head.data, head.len) == 0 &&
                     as_write_all(fd, keep.data, keep.len) == 0;
            if (close(fd) == 0 && ok && rename(tmp, final) == 0)
                kept = 1;
            else
                unlink(tmp);
        }
        as_buf_free(&head);
    }
    as_buf_free(&keep);
    if (c.actions > 0 && !kept)
        return 1; /* its readable actions have no other copy: leave it be */
    if (rename(path, bad) != 0)
        return access(path, F_OK) == 0 ? 1 : 0;
    set_aside_total++;
    const char *what = c.header == 0 && c.actions == 0 && c.other == 0 && !c.cut ? "empty"
                       : c.cut || (c.header && c.count > (long)c.actions)        ? "cut short"
                                                                                 : "garbage in it";
    as_alert_warn("spool: damaged batch (%s: %zu actions readable of %ld counted); set aside "
                  "as %s%s",
                  what, c.actions, c.header ? c.count : 0L, bad,
                  c.actions ? "; its readable actions stay pending" : "");
    return 0;
}

/* Drops the oldest pending batches until `need` more bytes fit. The directory is scanned
 * when the known size says the bound may be reached, and at least every
 * AS_SPOOL_RESCAN_MS: other processes spooling for the same sink write into the same
 * directory, so together they pass the bound by at most what they write in that time (a
 * commit stays cheap with many batches pending). Returns 0, or -1 when they cannot fit
 * even in an empty spool. */
static int make_room(as_spool *sp, uint64_t need) {
    if (need > sp->max_bytes)
        return -1;
    int64_t now = as_mono_ms();
    if (sp->known_bytes + need <= sp->max_bytes && now - sp->scanned_ms < AS_SPOOL_RESCAN_MS)
        return 0;
    size_t n;
    uint64_t total;
    char **v = list_pending(sp->dir, &n, &total);
    sp->scanned_ms = now;
    for (size_t i = 0; i < n && total + need > sp->max_bytes; i++) {
        char path[900];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", sp->dir, v[i]);
        if (stat(path, &st) != 0)
            continue;
        long cnt = header_count(path);
        if (unlink(path) == 0) {
            total -= (uint64_t)st.st_size;
            sp->dropped += (uint64_t)cnt;
            as_alert_warn("spool %s full (%llu bytes): dropped the oldest batch (%ld actions)",
                          sp->uri, (unsigned long long)sp->max_bytes, cnt);
        }
    }
    free_list(v, n);
    sp->known_bytes = total;
    return total + need > sp->max_bytes ? -1 : 0;
}

as_spool_replay *as_spool_wal(as_spool *sp, const char *lines, size_t len, size_t count) {
    as_spool_replay *rp = calloc(1, sizeof *rp);
    as_buf head;
    as_buf_init(&head);
    if (!rp)
        return NULL;
    rp->key = as_clock_unix_ns();
    rp->loaded = 1;
    as_buf_puts(&head, "{\"agentsight_spool\":1,\"sink\":");
    as_json_cstr(&head, sp->uri);
    as_buf_printf(&head, ",\"count\":%zu,\"pid\":%d}\n", count, (int)getpid());
    unsigned seq = sp->seq++;
    snprintf(rp->path, sizeof rp->path, "%s/%020lld-%d-%u.jsonl.claim-%d", sp->dir,
             (long long)rp->key, (int)getpid(), seq, (int)getpid());
    int fd = -1;
    errno = 0;
    if (head.oom || make_room(sp, head.len + len) != 0)
        goto error;
    /* Claimed from the start (no other process replays it while we run); should we die,
     * the claim of a dead process is released and the batch replayed. A write torn by a
     * kill leaves a partial last line: the batch is then set aside when it is claimed
     * (settle), its whole lines pending again; the actions of the partial line are still
     * in the ring that was not yet released. */
    fd = as_open_high(rp->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        goto error;
    if (as_write_all(fd, head.data, head.len) != 0 || as_write_all(fd, lines, len) != 0)
        goto error;
    if (sp->fsync_on)
        fdatasync(fd);
    if (close(fd) != 0) {
        fd = -1;
        goto error;
    }
    sp->known_bytes += head.len + len;
    as_buf_free(&head);
    return rp;
error:
    as_alert_error("spool %s: cannot write ahead %zu actions in %s: %s", sp->uri, count, sp->dir,
                   errno ? strerror(errno) : "bigger than the spool bound");
    if (fd >= 0) {
        close(fd);
        unlink(rp->path);
    }
    as_buf_free(&head);
    free(rp);
    return NULL;
}

long as_spool_commit(as_spool *sp) {
    if (!sp || sp->nstaged == 0)
        return 0;
    long count = (long)sp->nstaged;
    int64_t key = sp->staged_key > 0 ? sp->staged_key : sp->staged_first_ns;
    as_buf head;
    as_buf_init(&head);
    as_buf_puts(&head, "{\"agentsight_spool\":1,\"sink\":");
    as_json_cstr(&head, sp->uri);
    as_buf_printf(&head, ",\"count\":%ld,\"pid\":%d}\n", count, (int)getpid());
    char tmp[900], final[900];
    unsigned seq = sp->seq++;
    snprintf(tmp, sizeof tmp, "%s/.tmp-%d-%u", sp->dir, (int)getpid(), seq);
    snprintf(final, sizeof final, "%s/%020lld-%d-%u.jsonl", sp->dir, (long long)key, (int)getpid(),
             seq);
    int fd = -1;
    errno = 0;
    if (head.oom || make_room(sp, head.len + sp->staged.len) != 0)
        goto error;
    unlink(tmp); /* a stale one of a reused pid; the directory is private (mkdirs) */
    fd = as_open_high(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        goto error;
    if (as_write_all(fd, head.data, head.len) != 0 ||
        as_write_all(fd, sp->staged.data, sp->staged.len) != 0)
        goto error;
    if (sp->fsync_on)
        fdatasync(fd); /* power loss; a process crash is covered by write + rename */
    if (close(fd) != 0) {
        fd = -1;
        goto error;
    }
    fd = -1;
    if (rename(tmp, final) != 0)
        goto error;
    sp->known_bytes += head.len + sp->staged.len;
    as_buf_free(&head);
    as_buf_reset(&sp->staged);
    sp->nstaged = 0;
    return count;
error:
    as_alert_error("spool %s: cannot write a batch of %ld actions in %s: %s", sp->uri, count,
                   sp->dir, errno ? strerror(errno) : "bigger than the spool bound");
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    as_buf_free(&head);
    sp->dropped += (uint64_t)count;
    as_buf_reset(&sp->staged);
    sp->nstaged = 0;
    return -1;
}

as_spool_replay *as_spool_replay_start(as_spool *sp, int *pending) {
    as_spool_commit(sp);
    if (sp->auth_refused)
        return NULL; /* the key was refused: a replay could only be refused again */
    as_spool_replay *rp = calloc(1, sizeof *rp);
    if (!rp)
        return NULL;
    int c = as_spool_claim(sp, rp->path, sizeof rp->path, &rp->key);
    if (c != 1) {
        free(rp);
        if (c == 0)
            *pending = 0;
        return NULL;
    }
    rp->remaining = 1;
    return rp;
}

void as_spool_replay_end(as_spool *sp, as_spool_replay *rp) {
    as_spool_commit(sp); /* failures of this batch are safe before it goes */
    as_spool_release(rp->path);
    free(rp);
}

int as_spool_claim(as_spool *sp, char *path, size_t cap, int64_t *key) {
    /* A damaged batch set aside may leave its readable actions as a new batch: the
     * directory is listed again then (bounded: each pass sets aside what it found). */
    for (int pass = 0; pass < 8; pass++) {
        size_t n;
        char **v = list_pending(sp->dir, &n, NULL);
        int rc = 0, set_aside = 0;
        for (size_t i = 0; i < n; i++) {
            char from[900];
            snprintf(from, sizeof from, "%s/%s", sp->dir, v[i]);
            snprintf(path, cap, "%s.claim-%d", from, (int)getpid());
            if (rename(from, path) != 0)
                continue;
            if (settle(sp->dir, sp->uri, path) != 1) {
                set_aside = 1;
                continue;
            }
            if (key)
                *key = strtoll(v[i], NULL, 10);
            rc = 1;
            break;
        }
        free_list(v, n);
        if (rc == 1 || !set_aside)
            return rc;
    }
    return 0;
}

int as_spool_release(const char *claimed_path) {
    return unlink(claimed_path);
}

int as_spool_unclaim(const char *claimed_path) {
    char back[900];
    const char *c = strstr(claimed_path, ".claim-");
    if (!c)
        return -1;
    snprintf(back, sizeof back, "%.*s", (int)(c - claimed_path), claimed_path);
    return rename(claimed_path, back);
}

size_t as_spool_pending(as_spool *sp, uint64_t *bytes) {
    size_t n;
    uint64_t total;
    char **v = list_pending(sp->dir, &n, &total);
    free_list(v, n);
    if (bytes)
        *bytes = total;
    return n;
}

int as_spool_dead_letter(as_spool *sp, long status, const char *answer, const char *line,
                         size_t len) {
    if (status == 401 || status == 403) {
        if (!sp->auth_refused)
            as_alert_warn("spool %s: the server refused the API key (HTTP %ld); actions stay "
                          "in the spool and `agentsight send` delivers them once the key is "
                          "accepted",
                          sp->uri, status);
        sp->auth_refused = 1;
        return as_spool_stage(sp, 0, line, len);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/dead-letter.jsonl", sp->root);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == ' '))
        len--;
    as_buf b;
    as_buf_init(&b);
    as_buf_puts(&b, "{\"sink\":");
    as_json_cstr(&b, sp->uri);
    as_buf_printf(&b, ",\"status\":%ld,\"answer\":", status);
    size_t al = answer ? strlen(answer) : 0;
    as_json_str(&b, answer ? answer : "", al > 4096 ? 4096 : al);
    as_buf_puts(&b, ",\"action\":");
    if (len > 0 && line[0] == '{')
        as_buf_put(&b, line, len);
    else
        as_json_str(&b, line, len);
    as_buf_puts(&b, "}\n");
    int rc = -1;
    int fd = as_open_high(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0 && !b.oom)
        rc = as_write_all(fd, b.data, b.len);
    if (fd >= 0)
        close(fd);
    as_buf_free(&b);
    return rc;
}

int as_spool_read(const char *path, char *uri, size_t uri_cap,
                  int (*fn)(const char *line, size_t len, void *ctx), void *ctx) {
    if (uri && uri_cap)
        uri[0] = 0;
    FILE *f = as_fopen_high(path);
    if (!f)
        return -1;
    /* Only what the file holds now: lines appended while it is read (the dead-letter
     * file, read by `send` while its sink appends refusals) are not read again. */
    struct stat st;
    uint64_t size = fstat(fileno(f), &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
    uint64_t at = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int first = 1, rc = 0;
    while (at < size && (n = getline(&line, &cap, f)) >= 0) {
        at += (uint64_t)n;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (n == 0)
            continue;
        if (first && strncmp(line, "{\"agentsight_spool\":", 20) == 0) {
            first = 0;
            if (as_dynlib_load(&as_cjson_lib) != 0)
                continue; /* the sink stays unknown */
            cJSON *h = as_cjson.cJSON_ParseWithLength(line, (size_t)n);
            const cJSON *s = as_cjson.cJSON_GetObjectItemCaseSensitive(h, "sink");
            if (uri && as_cjson.cJSON_IsString(s))
                snprintf(uri, uri_cap, "%s", s->valuestring);
            as_cjson.cJSON_Delete(h);
            continue;
        }
        first = 0;
        if ((rc = fn(line, (size_t)n, ctx)) != 0)
            break;
    }
    free(line);
    fclose(f);
    return rc;
}

/* The sink URI of the batch header at path into uri ("" when it has none). */
static void header_uri(const char *path, char *uri, size_t cap) {
    uri[0] = 0;
    FILE *f = as_fopen_high(path);
    char line[2048];
    if (f && fgets(line, sizeof line, f) && as_dynlib_load(&as_cjson_lib) == 0) {
        cJSON *h = as_cjson.cJSON_Parse(line);
        const cJSON *s = as_cjson.cJSON_GetObjectItemCaseSensitive(h, "sink");
        if (as_cjson.cJSON_IsString(s))
            snprintf(uri, cap, "%s", s->valuestring);
        as_cjson.cJSON_Delete(h);
    }
    if (f)
        fclose(f);
}

int as_spool_foreach_sink(const char *root, void (*fn)(const char *uri, const char *dir, void *ctx),
                          void *ctx) {
    DIR *d = as_opendir_high(root);
    if (!d)
        return 0;
    int visited = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strlen(de->d_name) != 16 || strspn(de->d_name, "0123456789abcdef") != 16)
            continue;
        char dir[600];
        if (snprintf(dir, sizeof dir, "%.*s/%s", 500, root, de->d_name) >= (int)sizeof dir)
            continue;
        as_spool probe = {0};
        snprintf(probe.dir, sizeof probe.dir, "%s", dir);
        recover(&probe);
        size_t n;
        char **v = list_pending(dir, &n, NULL);
        /* The sink is named by the first batch with a readable header (a damaged one
         * may come first); then every batch is checked, claimed while it is. */
        char uri[512] = "";
        for (size_t k = 0; k < n && !uri[0]; k++) {
            char path[1000];
            snprintf(path, sizeof path, "%s/%s", dir, v[k]);
            header_uri(path, uri, sizeof uri);
        }
        for (size_t k = 0; k < n; k++) {
            char path[1000], claimed[1100];
            snprintf(path, sizeof path, "%s/%s", dir, v[k]);
            snprintf(claimed, sizeof claimed, "%s.claim-%d", path, (int)getpid());
            if (rename(path, claimed) == 0 && settle(dir, uri, claimed) == 1)
                rename(claimed, path);
        }
        free_list(v, n);
        v = list_pending(dir, &n, NULL);
        if (n > 0 && uri[0]) {
            fn(uri, dir, ctx);
            visited++;
        }
        free_list(v, n);
    }
    closedir(d);
    return visited;
}

static const char *str_member(const cJSON *o, const char *name) {
    const cJSON *v = as_cjson.cJSON_GetObjectItemCaseSensitive(o, name);
    return as_cjson.cJSON_IsString(v) ? v->valuestring : NULL;
}

static int time_member(const cJSON *o, const char *name, int64_t *ns) {
    const char *s = str_member(o, name);
    return s && as_iso_parse(s, ns) == 0 ? 0 : -1;
}

int as_spool_parse_line(const char *line, size_t len, as_spool_rec *rec) {
    memset(rec, 0, sizeof *rec);
    if (as_dynlib_load(&as_cjson_lib) != 0)
        return -1;
    /* cJSON keeps bytes that are not UTF-8 as they are, and tools_used and metadata are
     * written back as raw JSON text: such bytes become U+FFFD before the parse. */
    as_buf fixed;
    as_buf_init(&fixed);
    if (as_utf8_fix(&fixed, &line, &len) != 0)
        return -1;
    cJSON *o = as_cjson.cJSON_ParseWithLength(line, len);
    as_buf_free(&fixed);
    if (!as_cjson.cJSON_IsObject(o)) {
        as_cjson.cJSON_Delete(o);
        return -1;
    }
    cJSON *root = o;
    const cJSON *inner = as_cjson.cJSON_GetObjectItemCaseSensitive(o, "action");
    if (!str_member(o, "action_name") && as_cjson.cJSON_IsObject(inner) &&
        as_cjson.cJSON_GetObjectItemCaseSensitive(o, "status"))
        o = (cJSON *)inner; /* a dead-letter record: its action */
    const char *name = str_member(o, "action_name");
    if (!name || !*name) {
        as_cjson.cJSON_Delete(root);
        return -1;
    }
    rec->json = root;
    as_action *a = &rec->a;
    a->action_name = name;
    a->response = str_member(o, "response");
    a->error_msg = str_member(o, "error_msg");
    a->conversation_id = str_member(o, "conversation_id");
    if (!a->conversation_id)
        a->conversation_id = "";
    const cJSON *d = as_cjson.cJSON_GetObjectItemCaseSensitive(o, "duration_ms");
    a->duration_ms =
        as_cjson.cJSON_IsNumber(d) && d->valuedouble >= 0 ? (int64_t)d->valuedouble : 0;
    int64_t now = as_clock_unix_ns();
    if (time_member(o, "timestamp", &a->timestamp_ns) != 0)
        a->timestamp_ns = now;
    if (time_member(o, "ended_at", &a->ended_ns) != 0)
        a->ended_ns = a->timestamp_ns;
    if (time_member(o, "started_at", &a->started_ns) != 0)
        a->started_ns = a->ended_ns - a->duration_ms * 1000000;
    const cJSON *t = as_cjson.cJSON_GetObjectItemCaseSensitive(o, "tools_used");
    if (as_cjson.cJSON_IsObject(t))
        a->tools_used = rec->tools_used = as_cjson.cJSON_PrintUnformatted(t);
    const cJSON *m = as_cjson.cJSON_GetObjectItemCaseSensitive(o, "metadata");
    if (as_cjson.cJSON_IsObject(m))
        a->metadata = rec->metadata = as_cjson.cJSON_PrintUnformatted(m);
    a->event_id = str_member(o, "event_id");
    if (!a->event_id && as_cjson.cJSON_IsObject(m)) /* a line spooled before event_id was a field */
        a->event_id = str_member(m, "agentsight_event_id");
    if (a->event_id && (strlen(a->event_id) != 32 || strspn(a->event_id, "0123456789abcdef") != 32))
        a->event_id = NULL; /* not one of ours: the sink draws one */
    return 0;
}

void as_spool_rec_free(as_spool_rec *rec) {
    if (rec->json)
        as_cjson.cJSON_Delete(rec->json);
    free(rec->tools_used);
    free(rec->metadata);
    memset(rec, 0, sizeof *rec);
}

/* The pid the ids below were drawn for: set once, and again in a forked child (no getpid
 * system call per action). */
static pid_t tag_pid;
static pthread_once_t tag_once = PTHREAD_ONCE_INIT;

static void tag_child(void) {
    tag_pid = getpid();
}

AS_OWN_ATFORK(own_fork, as_fork_nothing, as_fork_nothing, tag_child)

static void tag_atfork(void) {
    tag_pid = getpid();
    pthread_atfork(own_fork_prepare, own_fork_parent, own_fork_child);
}

/* Writes v as 16 lowercase hex digits (no NUL). */
static void hex64(char *out, uint64_t v) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = digits[v & 15];
        v >>= 4;
    }
}

void as_spool_tag_metadata(const char *metadata, as_buf *out, char id[33]) {
    as_spool_tag_action(metadata, NULL, out, id);
}

/* Where the value of the top-level member "agentsight_event_id" of the object text s
 * starts (the byte after its opening quote), or NULL. Members of nested objects and text
 * inside strings do not count. */
static const char *top_event_id(const char *s) {
    static const char key[] = "\"agentsight_event_id\"";
    int depth = 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (c == '"') {
            if (depth == 1 && strncmp(p, key, sizeof key - 1) == 0) {
                const char *q = p + sizeof key - 1;
                q += strspn(q, " \t\r\n");
                if (*q == ':') {
                    q++;
                    q += strspn(q, " \t\r\n");
                    if (*q == '"')
                        return q + 1;
                }
            }
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (!*p)
                return NULL;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return NULL;
}

void as_spool_tag_action(const char *metadata, const char *event_id, as_buf *out, char id[33]) {
    static uint64_t prefix, counter;
    static pid_t prefix_pid = -1;
    const char *v = metadata ? top_event_id(metadata) : NULL;
    int ours = v && strspn(v, "0123456789abcdef") == 32 && v[32] == '"';
    if (ours && (!event_id || strncmp(v, event_id, 32) == 0)) {
        memcpy(id, v, 32);
        id[32] = 0;
        as_buf_puts(out, metadata);
        return;
    }
    if (event_id) {
        snprintf(id, 33, "%s", event_id);
    } else {
        pthread_once(&tag_once, tag_atfork);
        if (prefix_pid != tag_pid) { /* a forked child draws its own ids */
            prefix_pid = tag_pid;
            prefix = as_http_random64();
            counter = 0;
        }
        hex64(id, prefix);
        hex64(id + 16, ++counter);
        id[32] = '\0';
    }
    if (v) { /* a malformed id, or another one than the action's: its value is replaced
              * (a second member of that name would leave readers to pick either) */
        const char *e = v;
        while (*e && *e != '"')
            e += *e == '\\' && e[1] ? 2 : 1;
        as_buf_put(out, metadata, (size_t)(v - metadata));
        as_buf_puts(out, id);
        as_buf_puts(out, e);
        return;
    }
    as_buf_puts(out, "{\"agentsight_event_id\":\"");
    as_buf_puts(out, id);
    as_buf_putc(out, '"');
    const char *p = metadata ? strchr(metadata, '{') : NULL;
    if (!p) {
        as_buf_putc(out, '}');
        return;
    }
    p++;
    const char *q = p + strspn(p, " \t\r\n");
    if (*q != '}')
        as_buf_putc(out, ',');
    as_buf_puts(out, q);
}
