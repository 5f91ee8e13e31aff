/* diag.c - routes the interposer's messages (diag.h): to AGENTSIGHT_LOG, to the records
 * `agentsight run` aggregates, or to stderr in the first instrumented process of a tree
 * only, so that the program's stderr stays its own. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/fdio.h"
#include "core/keptenv.h"
#include "core/diag.h"
#include "core/log.h"

static const char *const level_names[] = {"error", "warning", "info", "debug"};

static const char *level_name(int level) {
    if (level < AS_LOG_ERROR)
        level = AS_LOG_ERROR;
    if (level > AS_LOG_DEBUG)
        level = AS_LOG_DEBUG;
    return level_names[level];
}

/* The pid, parent pid and start time this image started with: set by the constructor
 * below, which runs before the other constructors of this object. The time is the CPU's
 * time-stamp counter where there is one: a process's first clock_gettime() maps the
 * kernel's clock pages into it (two page faults, tens of microseconds in a virtual
 * machine, paid by every process of a tree); CLOCK_MONOTONIC ns elsewhere. */
static long start_pid, start_ppid;
static unsigned long long start_time;

__attribute__((constructor(101))) static void diag_note_start(void) {
#if defined(__x86_64__) || defined(__i386__)
    start_time = __builtin_ia32_rdtsc();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    start_time = (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
#endif
    start_pid = (long)getpid();
    start_ppid = (long)getppid();
}

/* Writes this process's record id, "PID.TIME", into id: a fork child (new pid), an exec'd
 * image (new start time) and a reused pid each count apart. */
static void process_id(char *id, size_t cap) {
    snprintf(id, cap, "%ld.%llu", (long)getpid(), start_time);
}

/* Writes all of p to fd, retrying on EINTR. Gives up silently on any other failure. */
static void write_fd(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        len -= (size_t)w;
    }
}

/* Opens the file named by environment variable var for appending (created when create).
 * Returns the descriptor, or -1 (unset, empty or not openable). */
static int open_env_file(const char *var, int create) {
    const char *path = as_keptenv_get(var);
    if (!path || !*path)
        return -1;
    int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY;
    if (create)
        flags |= O_CREAT;
    return as_open_high(path, flags, 0644); /* retries on EINTR; out of the program's way */
}

size_t as_diag_put_field(char *buf, size_t len, size_t cap, const char *s) {
    if (cap == 0)
        return 0;
    for (; s && *s && len + 1 < cap; s++)
        buf[len++] = (*s == '\t' || *s == '\n' || *s == '\r') ? ' ' : *s;
    buf[len < cap ? len : cap - 1] = '\0';
    return len;
}

/* Appends "agentsight[PID]: LEVEL: MSG\n" to AGENTSIGHT_LOG. Returns 0, or -1 when it is
 * not set or cannot be opened. */
static int to_log_file(int level, const char *msg) {
    int fd = open_env_file("AGENTSIGHT_LOG", 1);
    if (fd < 0)
        return -1;
    char line[AS_DIAG_RECORD_MAX];
    int n;
    if (level < 0)
        n = snprintf(line, sizeof line, "agentsight[%ld]: ", (long)getpid());
    else
        n = snprintf(line, sizeof line, "agentsight[%ld]: %s: ", (long)getpid(), level_name(level));
    size_t len = n > 0 ? (size_t)n : 0;
    len = as_diag_put_field(line, len, sizeof line - 1, msg);
    line[len++] = '\n';
    write_fd(fd, line, len);
    close(fd);
    return 0;
}

/* Writes "agentsight: LEVEL: MSG\n" to stderr with one write(2). */
static void to_stderr(int level, const char *msg) {
    char line[AS_DIAG_RECORD_MAX];
    int n = level < 0 ? snprintf(line, sizeof line, "agentsight: ")
                      : snprintf(line, sizeof line, "agentsight: %s: ", level_name(level));
    size_t len = n > 0 ? (size_t)n : 0;
    size_t msglen = strlen(msg);
    if (msglen > sizeof line - 1 - len)
        msglen = sizeof line - 1 - len;
    memcpy(line + len, msg, msglen);
    len += msglen;
    line[len++] = '\n';
    write_fd(2, line, len);
}

/* Appends one record (fields already joined) to AGENTSIGHT_DIAG_FILE. Returns 0, or -1
 * when there is no such file (not under `run`, or `run` is gone). */
static int to_run(const char *record, size_t len) {
    int fd = open_env_file("AGENTSIGHT_DIAG_FILE", 0);
    if (fd < 0)
        return -1;
    write_fd(fd, record, len);
    close(fd);
    return 0;
}

/* Calls fn(line, ctx) for each line of /proc/PID/maps (pid 0: self) until it returns
 * nonzero. Returns that value, 0 at the end, or -1 when the file cannot be read. Lines
 * longer than the buffer are cut. Uses no heap. */
static int each_maps_line(long pid, int (*fn)(const char *, void *), void *ctx) {
    char path[64];
    if (pid)
        snprintf(path, sizeof path, "/proc/%ld/maps", pid);
    else
        snprintf(path, sizeof path, "/proc/self/maps");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[4096]; /* a line longer than this is cut: its path then matches nothing */
    size_t have = 0;
    int rc = 0;
    for (int rounds = 0; rounds < 100000 && rc == 0; rounds++) {
        ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (have > 0) {
                buf[have] = '\0';
                rc = fn(buf, ctx);
            }
            break;
        }
        have += (size_t)r;
        size_t start = 0;
        for (size_t i = 0; i < have && rc == 0; i++) {
            if (buf[i] != '\n')
                continue;
            buf[i] = '\0';
            rc = fn(buf + start, ctx);
            start = i + 1;
        }
        if (start == 0 && have == sizeof buf - 1) {
            buf[have] = '\0'; /* one line longer than the buffer: cut */
            rc = fn(buf, ctx);
            start = have;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
    }
    close(fd);
    return rc;
}

/* The path field of a maps line ("" when none). */
static const char *maps_path(const char *line) {
    const char *p = strchr(line, '/');
    return p ? p : "";
}

typedef struct own_ctx {
    uintptr_t addr;
    char *path;
    size_t cap;
} own_ctx;

static int find_own(const char *line, void *vctx) {
    own_ctx *c = vctx;
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx", &lo, &hi) != 2 || c->addr < lo || c->addr >= hi)
        return 0;
    snprintf(c->path, c->cap, "%s", maps_path(line));
    return 1;
}

static int find_path(const char *line, void *vctx) {
    return strcmp(maps_path(line), (const char *)vctx) == 0;
}

/* Whether this process is the first instrumented one of its tree, i.e. none of: a fork
 * child of this image (its parent runs us), a process whose parent changed since it
 * started (an orphan or a daemon: the tree's first process spoke), a process whose parent
 * maps the object holding this code. The answer is kept per pid. */
static int first_of_tree(void) {
    /* (pid << 1) | answer, in one word: a vfork child shares this memory with the other
     * threads of its parent. */
    static long cached;
    long pid = (long)getpid();
    long c = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
    if (c >> 1 == pid)
        return (int)(c & 1);
    long ppid = (long)getppid();
    int first = start_pid == 0 || (pid == start_pid && ppid == start_ppid);
    char own[1024]; /* a longer path is cut and matches nothing: the process speaks */
    own[0] = '\0';
    own_ctx ctx = {(uintptr_t)(void *)&first_of_tree, own, sizeof own};
    if (first && ppid > 0 && each_maps_line(0, find_own, &ctx) == 1 && own[0] == '/' &&
        each_maps_line(ppid, find_path, own) == 1)
        first = 0;
    __atomic_store_n(&cached, (pid << 1) | first, __ATOMIC_RELEASE);
    return first;
}

static int direct; /* as_diag_direct() was called */

void as_diag_direct(void) {
    direct = 1;
}

int as_diag_is_direct(void) {
    return __atomic_load_n(&direct, __ATOMIC_RELAXED);
}

void as_diag_emit(int level, const char *msg) {
    int saved = errno;
    if (direct) {
        to_stderr(level, msg);
        goto out;
    }
    if (to_log_file(level, msg) == 0)
        goto out;
    if (as_keptenv_get("AGENTSIGHT_DIAG_FILE")) {
        char rec[AS_DIAG_RECORD_MAX], id[64];
        process_id(id, sizeof id);
        int n = snprintf(rec, sizeof rec, "M\t%s\t%s\t", id, level_name(level));
        size_t len = n > 0 ? (size_t)n : 0;
        len = as_diag_put_field(rec, len, sizeof rec - 1, msg);
        rec[len++] = '\n';
        if (to_run(rec, len) == 0)
            goto out;
    }
    if (first_of_tree())
        to_stderr(level, msg);
out:
    errno = saved;
}

void as_diag_alert(int level, const char *msg) {
    int saved = errno;
    if (direct || to_log_file(level, msg) != 0)
        to_stderr(level, msg);
    errno = saved;
}

void as_diag_unmatched(const char *file, int line, const char *entry, int exported_only) {
    int saved = errno;
    if (AS_LOG_WARN > as_log_level())
        goto out;
    const char *kind = exported_only ? "exported function" : "function";
    if (!direct && !as_keptenv_get("AGENTSIGHT_LOG") && as_keptenv_get("AGENTSIGHT_DIAG_FILE")) {
        char rec[AS_DIAG_RECORD_MAX], id[64];
        process_id(id, sizeof id);
        int n = snprintf(rec, sizeof rec, "U\t%s\t", id);
        size_t len = n > 0 ? (size_t)n : 0;
        len = as_diag_put_field(rec, len, sizeof rec - 64, file);
        n = snprintf(rec + len, sizeof rec - len, "\t%d\t", line);
        len += n > 0 ? (size_t)n : 0;
        len = as_diag_put_field(rec, len, sizeof rec - 32, entry);
        n = snprintf(rec + len, sizeof rec - len, "\t%s\n", kind);
        len += n > 0 ? (size_t)n : 0;
        if (to_run(rec, len) == 0)
            goto out;
    }
    as_log(AS_LOG_WARN, "%s:%d:1: '%s' matched no %s of the objects this process loaded", file,
           line, entry, kind);
out:
    errno = saved;
}

void as_diag_end(void) {
    int saved = errno;
    if (!as_keptenv_get("AGENTSIGHT_LOG") && as_keptenv_get("AGENTSIGHT_DIAG_FILE")) {
        char rec[96], id[64];
        process_id(id, sizeof id);
        int n = snprintf(rec, sizeof rec, "E\t%s\n", id);
        if (n > 0)
            to_run(rec, (size_t)n);
    }
    errno = saved;
}
