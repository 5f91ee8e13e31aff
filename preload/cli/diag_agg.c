/* diag_agg.c - aggregates the diagnostic records of a run's processes (core/diag.h) so
 * `agentsight run` prints each distinct message once, with how many processes saw it. */
#include "cli/diag_agg.h"
#include "core/fdio.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Distinct messages kept; later new ones are only counted. */
#define MAX_MESSAGES 1000

typedef struct agg_msg {
    char kind;   /* 'M' diagnostic, 'U' unmatched entry */
    char *level; /* M: the level word */
    char *text;  /* M: the message; U: the entry */
    char *file;  /* U: the config path */
    char *what;  /* U: "function" or "exported function" */
    long line;   /* U: the config line */
    uint64_t hash;
    size_t procs; /* distinct processes that wrote it */
} agg_msg;

/* A set of nonzero 64-bit keys (open addressing, linear probing). */
typedef struct keyset {
    uint64_t *keys;
    size_t cap, n;
} keyset;

struct as_diag_agg {
    agg_msg *msgs;
    size_t nmsgs, capmsgs, dropped_msgs;
    keyset procs, ended, pairs; /* pairs: (message, process) already counted */
    size_t skipped;
};

static uint64_t fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x ? x : 1;
}

/* Adds key to s. Returns 1 when added, 0 when present, -1 when out of memory. */
static int keyset_add(keyset *s, uint64_t key) {
    key = key ? key : 1;
    if ((s->n + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        uint64_t *nk = calloc(ncap, sizeof *nk);
        if (!nk)
            return -1;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->keys[i])
                continue;
            size_t j = (size_t)(mix(s->keys[i]) & (ncap - 1));
            while (nk[j])
                j = (j + 1) & (ncap - 1);
            nk[j] = s->keys[i];
        }
        free(s->keys);
        s->keys = nk;
        s->cap = ncap;
    }
    size_t j = (size_t)(mix(key) & (s->cap - 1));
    while (s->keys[j]) {
        if (s->keys[j] == key)
            return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->keys[j] = key;
    s->n++;
    return 1;
}

as_diag_agg *as_diag_agg_new(void) {
    return calloc(1, sizeof(as_diag_agg));
}

void as_diag_agg_free(as_diag_agg *agg) {
    if (!agg)
        return;
    for (size_t i = 0; i < agg->nmsgs; i++) {
        free(agg->msgs[i].level);
        free(agg->msgs[i].text);
        free(agg->msgs[i].file);
        free(agg->msgs[i].what);
    }
    free(agg->msgs);
    free(agg->procs.keys);
    free(agg->ended.keys);
    free(agg->pairs.keys);
    free(agg);
}

/* Splits line into at most max tab-separated fields (each NUL-terminated in place).
 * Returns the number of fields. */
static int split(char *line, char **f, int max) {
    int n = 0;
    char *p = line;
    while (n < max) {
        f[n++] = p;
        char *t = strchr(p, '\t');
        if (!t)
            break;
        *t = '\0';
        p = t + 1;
    }
    return n;
}

static char *dup_or_null(const char *s, int *oom) {
    char *d = strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

/* The message with kind and fields, added when new (NULL when the table is full or
 * memory ran out: *oom says which). */
static agg_msg *find_or_add(as_diag_agg *agg, char kind, char **f, int nf, int *oom) {
    uint64_t h = fnv(14695981039346656037ULL, &kind, 1);
    for (int i = 0; i < nf; i++)
        h = fnv(h, f[i], strlen(f[i]) + 1);
    for (size_t i = 0; i < agg->nmsgs; i++) {
        agg_msg *m = &agg->msgs[i];
        if (m->hash != h || m->kind != kind)
            continue;
        if (kind == 'M' && strcmp(m->level, f[0]) == 0 && strcmp(m->text, f[1]) == 0)
            return m;
        if (kind == 'U' && strcmp(m->file, f[0]) == 0 && m->line == strtol(f[1], NULL, 10) &&
            strcmp(m->text, f[2]) == 0 && strcmp(m->what, f[3]) == 0)
            return m;
    }
    if (agg->nmsgs >= MAX_MESSAGES) {
        agg->dropped_msgs++;
        return NULL;
    }
    if (agg->nmsgs == agg->capmsgs) {
        size_t ncap = agg->capmsgs ? agg->capmsgs * 2 : 16;
        agg_msg *nm = realloc(agg->msgs, ncap * sizeof *nm);
        if (!nm) {
            *oom = 1;
            return NULL;
        }
        agg->msgs = nm;
        agg->capmsgs = ncap;
    }
    agg_msg m = {.kind = kind, .hash = h};
    if (kind == 'M') {
        m.level = dup_or_null(f[0], oom);
        m.text = dup_or_null(f[1], oom);
    } else {
        m.file = dup_or_null(f[0], oom);
        m.line = strtol(f[1], NULL, 10);
        m.text = dup_or_null(f[2], oom);
        m.what = dup_or_null(f[3], oom);
    }
    if (*oom) {
        free(m.level);
        free(m.text);
        free(m.file);
        free(m.what);
        return NULL;
    }
    agg->msgs[agg->nmsgs] = m;
    return &agg->msgs[agg->nmsgs++];
}

int as_diag_agg_line(as_diag_agg *agg, const char *line, size_t len) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, line, len);
    copy[len] = '\0';
    char *f[8];
    int nf = split(copy, f, 8);
    int rc = 0, oom = 0;
    int want = 0;
    if (nf >= 2 && f[0][0] && !f[0][1] && f[1][0]) {
        switch (f[0][0]) {
        case 'M':
            want = 4;
            break;
        case 'U':
            want = 6;
            break;
        case 'E':
            want = 2;
            break;
        }
    }
    if (!want || nf != want || (f[0][0] == 'U' && strtol(f[3], NULL, 10) <= 0)) {
        agg->skipped++;
        goto out;
    }
    uint64_t pid = fnv(14695981039346656037ULL, f[1], strlen(f[1]));
    if (f[0][0] == 'E') {
        rc = keyset_add(&agg->ended, pid) < 0 ? -1 : 0;
        goto out;
    }
    /* Only processes that reported something are counted in "(in N of M processes)": a
     * child forked without exec inherits what its parent's image reported at start (its
     * config errors, say) and ends with an E record alone; counting it would make a
     * message every process saw look partial. */
    if (keyset_add(&agg->procs, pid) < 0) {
        rc = -1;
        goto out;
    }
    agg_msg *m = find_or_add(agg, f[0][0], f + 2, nf - 2, &oom);
    if (!m) {
        rc = oom ? -1 : 0;
        goto out;
    }
    int added = keyset_add(&agg->pairs, mix(m->hash) ^ pid);
    if (added < 0)
        rc = -1;
    else if (added)
        m->procs++;
out:
    free(copy);
    return rc;
}

static void add_line(void *agg, const char *line, size_t n) {
    as_diag_agg_line(agg, line, n); /* a failed line does not stop the read */
}

int as_diag_agg_read(as_diag_agg *agg, const char *path) {
    return as_read_lines(path, add_line, agg);
}

/* path (or a message starting with one) relative to cwd when it lies under it. */
static const char *shorter(const char *path, const char *cwd) {
    if (!cwd || !*cwd)
        return path;
    size_t n = strlen(cwd);
    if (strncmp(path, cwd, n) == 0 && path[n] == '/' && path[n + 1])
        return path + n + 1;
    return path;
}

int as_diag_agg_print(const as_diag_agg *agg, FILE *out, const char *cwd) {
    int lines = 0;
    size_t total = agg->procs.n, ended = agg->ended.n;
    for (size_t i = 0; i < agg->nmsgs; i++) {
        const agg_msg *m = &agg->msgs[i];
        if (m->kind != 'M')
            continue;
        fprintf(out, "agentsight: %s: %s", m->level, shorter(m->text, cwd));
        if (m->procs < total)
            fprintf(out, " (in %zu of %zu processes)", m->procs, total);
        fputc('\n', out);
        lines++;
    }
    for (size_t i = 0; i < agg->nmsgs; i++) {
        const agg_msg *m = &agg->msgs[i];
        if (m->kind != 'U' || ended == 0 || m->procs < ended)
            continue; /* matched in some process that ended */
        const char *what = strcmp(m->what, "function") == 0 ? "nothing" : "no exported function";
        fprintf(out, "agentsight: entry '%s' (%s:%ld) matched %s in any of %zu process%s\n",
                m->text, shorter(m->file, cwd), m->line, what, ended, ended == 1 ? "" : "es");
        lines++;
    }
    if (agg->dropped_msgs) {
        fprintf(out, "agentsight: %zu more records of other messages not shown\n",
                agg->dropped_msgs);
        lines++;
    }
    return lines;
}

size_t as_diag_agg_processes(const as_diag_agg *agg) {
    return agg->procs.n;
}

size_t as_diag_agg_ended(const as_diag_agg *agg) {
    return agg->ended.n;
}

size_t as_diag_agg_skipped(const as_diag_agg *agg) {
    return agg->skipped;
}
