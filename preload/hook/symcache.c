/* symcache.c - the cache of object files without a local function the config selects
 * (symcache.h), so a process tree reads each object's symbol tables once. */
#include "hook/symcache.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/keptenv.h"
#include "core/securedir.h"
#include "hook/buildid.h"
#include "hook/cachedir.h"

#define ENV "AGENTSIGHT_SYMCACHE"
#define CACHE_MAX (1 << 20) /* bytes of the file read; the persistent one starts over */

static char *g_text; /* the file's lines as read at the first question, NUL-terminated */
static int g_loaded;

static uint64_t fnv(uint64_t h, const char *s) {
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull; /* a separator: ("ab","c") != ("a","bc") */
}

/* The file of answers: the run's, else the persistent one (*persistent set). NULL when
 * neither can be used. */
static const char *cache_file(int *persistent) {
    static char path[600];
    const char *env = as_keptenv_get(ENV);
    *persistent = 0;
    if (env && *env)
        return env;
    if (as_cache_path("symbols", path, sizeof path) != 0)
        return NULL;
    *persistent = 1;
    return path;
}

uint64_t as_symcache_key(const as_config *cfg) {
    uint64_t h = 14695981039346656037ull;
    const unsigned char *id = NULL;
    size_t idlen = as_build_id_self(&id);
    for (size_t i = 0; i < idlen; i++)
        h = (h ^ id[i]) * 1099511628211ull;
    for (int i = 0; cfg && i < cfg->nentries; i++) {
        const as_entry *e = &cfg->entries[i];
        if (!e->pattern || e->hook == AS_HOOK_GOT)
            continue;
        char hook[16];
        snprintf(hook, sizeof hook, "%d", e->hook);
        h = fnv(fnv(fnv(fnv(h, e->pattern), e->version), e->lib), hook);
    }
    return h;
}

/* Writes the cache line of path (loaded as o) for key into out. Returns its length, or 0
 * when the file cannot be described (no stat). */
static size_t line_of(const as_obj *o, const char *path, uint64_t key, char *out, size_t cap) {
    struct stat st, dbg;
    if (stat(path, &st) != 0)
        return 0;
    char debug[64] = "-", dpath[200];
    const unsigned char *id = NULL;
    size_t idlen = o ? as_build_id_mem(o->phdr, o->phnum, o->base, &id) : 0;
    if (as_build_id_debug_path(id, idlen, dpath, sizeof dpath) == 0 && stat(dpath, &dbg) == 0)
        snprintf(debug, sizeof debug, "%llx.%lld.%09ld", (unsigned long long)dbg.st_ino,
                 (long long)dbg.st_mtim.tv_sec, dbg.st_mtim.tv_nsec);
    int n = snprintf(out, cap, "%016llx %llx %llx %llx %lld.%09ld %s\n", (unsigned long long)key,
                     (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
                     (unsigned long long)st.st_size, (long long)st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec, debug);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Reads the cache file once (its path from the environment). */
static void load(void) {
    if (g_loaded)
        return;
    g_loaded = 1;
    int persistent;
    const char *path = cache_file(&persistent);
    if (!path)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC | (persistent ? O_NOFOLLOW : 0));
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        size_t want = st.st_size < CACHE_MAX ? (size_t)st.st_size : CACHE_MAX;
        char *t = malloc(want + 2);
        ssize_t got = t ? pread(fd, t + 1, want, 0) : -1;
        if (got > 0) {
            t[0] = '\n'; /* every line is then found as "\n" + line */
            t[got + 1] = '\0';
            g_text = t;
        } else {
            free(t);
        }
    }
    close(fd);
}

int as_symcache_known_empty(const as_obj *o, const char *path, uint64_t key) {
    int persistent;
    if (!path || !*path || !cache_file(&persistent))
        return 0;
    load();
    char line[256];
    if (!g_text || !line_of(o, path, key, line + 1, sizeof line - 1))
        return 0;
    line[0] = '\n';
    return strstr(g_text, line) != NULL;
}

void as_symcache_note_empty(const as_obj *o, const char *path, uint64_t key) {
    int persistent;
    const char *file = cache_file(&persistent);
    if (!file || !path || !*path)
        return;
    char line[256];
    size_t n = line_of(o, path, key, line, sizeof line);
    if (!n)
        return;
    int fd = -1;
    if (!persistent) {
        fd = open(file, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW); /* never O_CREAT */
    } else {
        char dir[600];
        snprintf(dir, sizeof dir, "%s", file);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        if (slash && as_secure_dir(dir, 1, NULL, 0) == 0)
            fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size >= CACHE_MAX && ftruncate(fd, 0) != 0) {
            close(fd);
            return;
        }
    }
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, n); /* one short write: lines of processes never mix */
    (void)w;
    close(fd);
}
