/* run_rings.c - reads the headers of a run's ring files (core/ring.h: as_ring_info) and
 * counts the targets of their .targets files (core/recover.c: the layout), so that
 * `agentsight run` can name the sinks and count the functions of processes that never
 * wrote a stats line (run_rings.h). Reads only; recovery (core/recover.c) stays the one
 * module that takes and removes these files. */
#include "cli/run_rings.h"

#include <dirent.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ring.h"

#define MAX_FILES 4096
#define MAX_TARGET_IDS 4096 /* AS_MAX_TARGETS (pipeline.h) */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Distinct functions (the symbol field) among the targets of the .targets file at path
 * (lines "id<TAB>name<TAB>symbol<TAB>..."): 0 when it cannot be read. A function reached
 * through two targets (the C library's execve and the interposer's own standing in for
 * it) counts once. */
static size_t count_targets(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    struct stat st;
    FILE *f = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() ? fdopen(fd, "r")
                                                                                   : NULL;
    if (!f) {
        close(fd);
        return 0;
    }
    char **names = calloc(MAX_TARGET_IDS, sizeof *names);
    size_t n = 0;
    char line[4096];
    for (int lines = 0; names && n < MAX_TARGET_IDS && lines < 65536 && fgets(line, sizeof line, f);
         lines++) {
        char *end, *sym, *stop;
        unsigned long id = strtoul(line, &end, 10);
        if (end == line || *end != '\t' || id >= MAX_TARGET_IDS)
            continue;
        if (!(sym = strchr(end + 1, '\t')) || !(stop = strchr(++sym, '\t')))
            continue;
        *stop = '\0';
        if ((names[n] = strdup(sym)) != NULL)
            n++;
    }
    fclose(f);
    if (!names)
        return 0;
    qsort(names, n, sizeof *names, cmp_str);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        distinct += i == 0 || strcmp(names[i], names[i - 1]) != 0;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return distinct;
}

int as_run_rings_scan(const char *root, const char *run_id, as_run_rings_fn fn, void *ctx) {
    char dir[1024];
    if ((size_t)snprintf(dir, sizeof dir, "%s/rings", root) >= sizeof dir)
        return -1;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int found = 0, files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && files < MAX_FILES) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".ring") != 0)
            continue; /* taken (.taking-...), damaged (.bad) and .targets files */
        files++;
        char path[1400];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path)
            continue;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue;
        struct stat st;
        uint64_t magic = 0, head = 0, tail = 0, delivered = 0;
        uint32_t version = 0;
        as_ring_info info;
        int ok =
            fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
            (size_t)st.st_size >= sizeof(as_ring) &&
            pread(fd, &magic, sizeof magic, offsetof(as_ring, magic)) == (ssize_t)sizeof magic &&
            pread(fd, &version, sizeof version, offsetof(as_ring, version)) ==
                (ssize_t)sizeof version &&
            pread(fd, &info, sizeof info, offsetof(as_ring, info)) == (ssize_t)sizeof info &&
            pread(fd, &head, sizeof head, offsetof(as_ring, head)) == (ssize_t)sizeof head &&
            pread(fd, &tail, sizeof tail, offsetof(as_ring, tail)) == (ssize_t)sizeof tail &&
            pread(fd, &delivered, sizeof delivered, offsetof(as_ring, delivered)) ==
                (ssize_t)sizeof delivered;
        close(fd);
        if (!ok || magic != AS_RING_MAGIC || version != AS_RING_VERSION)
            continue;
        info.run_id[sizeof info.run_id - 1] = '\0';
        info.sinks[sizeof info.sinks - 1] = '\0';
        if (strcmp(info.run_id, run_id) != 0 || (delivered == 0 && head == tail))
            continue; /* another run's, or a ring that never held an action */
        /* <pid>-<start>-<image>-<slot>.ring -> <pid>-<start>-<image>.targets */
        char prefix[512];
        size_t plen = len - 5 < sizeof prefix ? len - 5 : sizeof prefix - 1;
        memcpy(prefix, e->d_name, plen);
        prefix[plen] = '\0';
        char *dash = strrchr(prefix, '-');
        size_t targets = 0;
        if (dash) {
            *dash = '\0';
            if ((size_t)snprintf(path, sizeof path, "%s/%s.targets", dir, prefix) < sizeof path)
                targets = count_targets(path);
        }
        found++;
        if (fn)
            fn(info.sinks, targets, ctx);
    }
    closedir(d);
    return found;
}
