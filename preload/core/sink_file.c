/* sink_file.c - the "file:PATH" sink: appends one JSONL line per action.
 *
 * The file is opened O_APPEND|O_CREAT, mode 0600 (its lines hold call arguments); a
 * relative PATH is resolved against the
 * working directory at open time and s->uri is rewritten to the absolute path (a forked
 * child reopens that). Each batch is formatted into one buffer and written under
 * flock(LOCK_EX), usually with a single write(2), so processes sharing the file never
 * interleave lines.
 *
 * The program owns its file descriptors: a daemon-style program may close every fd and
 * get ours back for a file of its own. So the sink remembers the device and inode it
 * opened, checks the fd with one fstat(2) before each batch, and reopens the path when
 * the fd is gone (EBADF) or now names another file. A descriptor that is no longer ours
 * is never written to, locked or closed.
 *
 * A failed write (disk full, EIO, the file size limit) leaves no torn line: under the lock
 * the sink notes the file's size, and on failure truncates it back to that size, so the
 * batch is either wholly in the file or not at all. A writer killed in the middle of its
 * write(2) (SIGKILL) can leave a partial last line; the next writer, under the lock, cuts
 * that partial line off when it is one of ours (it starts like an action line, or is a
 * beginning of one: a writer killed after a few bytes), because
 * its action is still in the dead process's ring and is written again whole by whoever
 * recovers it; any other partial line gets a '\n' after it. So every line of ours in the
 * file is whole. s->mark is the end of the sink's last write (where its next one starts
 * at the earliest): the pipeline stores it in each ring before a batch, so a recoverer
 * knows from where to look for lines already written (pipeline.h, as_pipe_recover).
 *
 * A batch that cannot be written is not kept here: send returns -1 and the caller, who
 * still holds the actions durably (the exporter does not release its rings, a recoverer
 * does not move a dead ring's tail), sends it again later; a sink never holds the only
 * copy of an action in memory. When the truncation itself fails, the next batch starts
 * after the partial line is repaired as above. A failure is logged once per streak of
 * failures, and once more when writing works again.
 *
 * Shared directories. The default sink is a relative path, so a program run from /tmp
 * writes into a directory anyone may write to. A symlink there is followed only when the
 * kernel's fs.protected_symlinks rule would follow it, whatever the sysctl says: the
 * directory holding the link is neither sticky nor world-writable, or the link belongs to
 * us (the effective uid) or to the directory's owner; otherwise the path is opened with
 * O_NOFOLLOW and the sink is refused with a message (the program runs as without us). Only
 * the last component is checked (the one a relative default path puts in the working
 * directory). The file must be a regular file: a FIFO (opened O_NONBLOCK, so no open
 * waits for a reader), a device, a socket or a directory is refused the same way. */
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "fdio.h"

typedef struct file_sink {
    int fd; /* -1 when it is not (or no longer) ours */
    dev_t dev;
    ino_t ino;                  /* what fd named when we opened it */
    as_buf buf;                 /* the batch being written */
    unsigned long long failing; /* batches failed in the current streak (0: none) */
    unsigned long long end;     /* file size after our last write */
    char path[PATH_MAX];
} file_sink;

/* Whether following a symlink at path is allowed by the fs.protected_symlinks rule: 1 when
 * path is not a symlink, or its directory is neither sticky nor world-writable, or the link
 * belongs to us or to the directory's owner; 0 otherwise (*link_uid, *dir_uid say whose).
 * A path whose directory cannot be examined is judged as in a shared directory. */
static int link_allowed(const char *path, uid_t *link_uid, uid_t *dir_uid) {
    struct stat ln, dir;
    if (lstat(path, &ln) != 0 || !S_ISLNK(ln.st_mode))
        return 1; /* nothing to follow now; a link planted later meets O_NOFOLLOW */
    char parent[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t pl = slash ? (size_t)(slash - path) : 0;
    snprintf(parent, sizeof parent, "%.*s", (int)pl, pl ? path : "/");
    *link_uid = ln.st_uid;
    *dir_uid = (uid_t)-1;
    if (stat(parent, &dir) != 0)
        return ln.st_uid == geteuid();
    *dir_uid = dir.st_uid;
    if (!(dir.st_mode & (S_ISVTX | S_IWOTH)))
        return 1;
    return ln.st_uid == geteuid() || ln.st_uid == dir.st_uid;
}

/* Whether path's directory is sticky or world-writable (or cannot be examined): there, a
 * symlink that appears after link_allowed() looked is not followed. */
static int dir_shared(const char *path) {
    char parent[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t pl = slash ? (size_t)(slash - path) : 0;
    snprintf(parent, sizeof parent, "%.*s", (int)pl, pl ? path : "/");
    struct stat dir;
    return stat(parent, &dir) != 0 || (dir.st_mode & (S_ISVTX | S_IWOTH)) != 0;
}

/* Opens f->path for appending and records its identity. Returns 0; or -1 with errno set
 * (f->fd is then -1), why naming the refusal when it is ours (a symlink the rule above
 * does not follow, a file that is not a regular file), else "". */
static int open_path(file_sink *f, char *why, size_t why_cap) {
    why[0] = 0;
    uid_t link_uid = 0, dir_uid = 0;
    int flags = O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK;
    if (!link_allowed(f->path, &link_uid, &dir_uid)) {
        snprintf(why, why_cap,
                 "a symlink owned by uid %ld in a shared (sticky or world-writable) directory "
                 "owned by uid %ld; not followed",
                 (long)link_uid, (long)dir_uid);
        f->fd = -1;
        errno = ELOOP;
        return -1;
    }
    struct stat st;
    if (lstat(f->path, &st) != 0 || !S_ISLNK(st.st_mode)) {
        if (dir_shared(f->path))
            flags |= O_NOFOLLOW; /* no link was there: none is followed if one appears */
    }
    /* Read access lets the sink see whether the file ends in a partial line; a file we
     * may only write to is still used, without that check. */
    f->fd = open(f->path, O_RDWR | flags, 0600);
    if (f->fd < 0 && (errno == EACCES || errno == EISDIR || errno == EPERM))
        f->fd = open(f->path, O_WRONLY | flags, 0600);
    f->fd = as_fd_move_high(f->fd); /* kept open: never one of the program's low numbers */
    if (f->fd < 0) {
        if (errno == ELOOP && (flags & O_NOFOLLOW))
            snprintf(why, why_cap, "a symlink appeared in a shared directory; not followed");
        return -1;
    }
    if (fstat(f->fd, &st) != 0) {
        int e = errno;
        close(f->fd);
        f->fd = -1;
        errno = e;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, why_cap, "not a regular file (%s); refused",
                 S_ISFIFO(st.st_mode)                         ? "a FIFO"
                 : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                 : S_ISSOCK(st.st_mode)                       ? "a socket"
                                                              : "not a file");
        close(f->fd);
        f->fd = -1;
        errno = EINVAL;
        return -1;
    }
    int fl = fcntl(f->fd, F_GETFL);
    if (fl >= 0)
        fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK);
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->end = (unsigned long long)st.st_size;
    return 0;
}

/* Whether f->fd is still the descriptor we opened (same device and inode). */
static int fd_is_ours(const file_sink *f) {
    struct stat st;
    if (f->fd < 0 || fstat(f->fd, &st) != 0)
        return 0;
    return st.st_dev == f->dev && st.st_ino == f->ino;
}

/* Makes sure f->fd is ours before a batch: reopens the path (leaving the old number to
 * the program) when it is not. Returns 0, or -1 with errno set when the file cannot be
 * reopened (the caller logs it). */
static int ensure_ours(file_sink *f) {
    if (fd_is_ours(f))
        return 0;
    char why[200];
    if (open_path(f, why, sizeof why) != 0)
        return -1;
    as_debug("file sink '%s': its descriptor was taken by the program; reopened", f->path);
    return 0;
}

/* Returns 0 with s->impl set, or -1 (logged) with nothing left open. */
static int file_open(as_sink *s, const char *arg) {
    file_sink *f = calloc(1, sizeof(*f));
    if (!f) {
        as_error("file sink: out of memory");
        return -1;
    }
    if (arg[0] == '/') {
        snprintf(f->path, sizeof(f->path), "%s", arg);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd)) ||
            snprintf(f->path, sizeof(f->path), "%s/%s", cwd, arg) >= (int)sizeof(f->path)) {
            as_error("file sink '%s': cannot resolve the path", arg);
            free(f);
            return -1;
        }
    }
    char why[200];
    if (open_path(f, why, sizeof why) != 0) {
        as_error("file sink '%s': %s; no actions are written there", f->path,
                 why[0] ? why : strerror(errno));
        free(f);
        return -1;
    }
    as_buf_init(&f->buf);
    s->mark = f->end;
    if ((size_t)snprintf(s->uri, sizeof(s->uri), "file:%s", f->path) >= sizeof(s->uri))
        snprintf(s->uri, sizeof(s->uri), "file:%s", arg);
    s->impl = f;
    return 0;
}

/* Whether the regular file fd (size bytes) ends in something other than '\n', i.e. a
 * partial line another writer (or a failed truncation of ours) left behind. */
static int ends_torn(int fd, off_t size) {
    char last;
    return size > 0 && pread(fd, &last, 1, size - 1) == 1 && last != '\n';
}

/* A file (size bytes) ending in a partial line: cuts that line off when it is a partial
 * action line of ours (a writer killed inside its write), else ends it with '\n'.
 * Returns 0, or -1 with errno set. Under the lock. */
static int end_torn(file_sink *f, off_t *size) {
    static const char ours[] = "{\"action_name\":";
    char buf[1 << 16];
    off_t end = *size;
    /* Look back up to 4 MiB for the last '\n' (or the start of the file). */
    for (off_t at = end; at > 0 && end - at < (4 << 20);) {
        size_t want = at > (off_t)sizeof buf ? sizeof buf : (size_t)at;
        ssize_t n = pread(f->fd, buf, want, at - (off_t)want);
        if (n != (ssize_t)want)
            break;
        at -= (off_t)want;
        for (ssize_t i = n - 1; i >= -1; i--) {
            if (i >= 0 && buf[i] != '\n')
                continue;
            if (i < 0 && at > 0)
                break;
            off_t line = at + i + 1;
            /* A writer killed early in its line may have left less than the prefix. */
            char head[sizeof ours - 1];
            size_t k = end - line < (off_t)sizeof head ? (size_t)(end - line) : sizeof head;
            if (k > 0 && pread(f->fd, head, k, line) == (ssize_t)k && memcmp(head, ours, k) == 0 &&
                ftruncate(f->fd, line) == 0) {
                *size = line;
                return 0;
            }
            return as_write_all(f->fd, "\n", 1);
        }
    }
    return as_write_all(f->fd, "\n", 1);
}

/* Writes buf (n bytes) under f's lock. For a regular file: first repairs a partial last
 * line (end_torn), and on failure truncates back to the size seen under the lock.
 * Returns 0, or -1 with errno set (the file then holds none of buf, unless even the
 * truncation failed). */
static int write_locked(file_sink *f, const char *buf, size_t n) {
    while (flock(f->fd, LOCK_EX) != 0 && errno == EINTR)
        ;
    struct stat st;
    int regular = fstat(f->fd, &st) == 0 && S_ISREG(st.st_mode);
    int rc = 0;
    if (regular && ends_torn(f->fd, st.st_size))
        rc = end_torn(f, &st.st_size);
    if (rc == 0)
        rc = as_write_all(f->fd, buf, n);
    if (rc == 0 && regular)
        f->end = (unsigned long long)st.st_size + n;
    int saved = errno;
    if (rc != 0 && regular && ftruncate(f->fd, st.st_size) != 0)
        as_debug("file sink '%s': cannot cut the partial batch: %s", f->path, strerror(errno));
    flock(f->fd, LOCK_UN);
    errno = saved;
    return rc;
}

/* Logs the first failure of a streak. */
static void failed(file_sink *f, const char *what, int err) {
    if (f->failing++ == 0)
        as_alert_warn("file sink '%s': %s: %s; the actions stay queued and are written when the "
                      "file can be written again (logged once until then)",
                      f->path, what, strerror(err));
}

/* Formats a batch and writes it with one write(2) under the lock. Returns 0 when it is
 * all in the file (counted as sent); -1 when none of it is (out of memory, the file
 * cannot be reopened or written): the caller keeps the actions and sends them again. */
static int file_send(as_sink *s, const as_action *batch, size_t n) {
    file_sink *f = s->impl;
    as_buf_reset(&f->buf);
    for (size_t i = 0; i < n; i++)
        as_action_to_jsonl(&batch[i], &f->buf);
    int rc = -1;
    if (f->buf.oom) {
        f->buf.oom = 0;
        failed(f, "formatting", ENOMEM);
    } else if (f->buf.len == 0) {
        rc = 0;
    } else if (ensure_ours(f) != 0) {
        failed(f, "cannot reopen", errno);
    } else if (write_locked(f, f->buf.data, f->buf.len) != 0) {
        failed(f, "write failed", errno);
    } else {
        rc = 0;
    }
    if (f->buf.cap > (1u << 20)) { /* an unusual batch: give the memory back */
        as_buf_free(&f->buf);
        as_buf_init(&f->buf);
    }
    as_buf_reset(&f->buf);
    if (rc != 0)
        return -1;
    s->mark = f->end;
    s->sent += n;
    if (f->failing) {
        as_alert_warn("file sink '%s': writing again after %llu failed batches", f->path,
                      f->failing);
        f->failing = 0;
    }
    return 0;
}

/* Nothing is held: a write never waits. Returns 0. */
static int file_flush(as_sink *s, int timeout_ms) {
    (void)s;
    (void)timeout_ms;
    return 0;
}

/* Closes our descriptor, unless the program has taken its number over. */
static void file_close(as_sink *s) {
    file_sink *f = s->impl;
    if (!f)
        return;
    if (fd_is_ours(f))
        close(f->fd);
    as_buf_free(&f->buf);
    free(f);
    s->impl = NULL;
}

/* Takes the file's lock through a descriptor of its own (flock locks belong to the open
 * file description, so this waits for the exporter's write_locked) and never gives it back:
 * the process is exiting, and an exit in the middle of a write(2) could end it short. */
static void file_hold(as_sink *s, int timeout_ms) {
    file_sink *f = s->impl;
    int fd = as_open_high(f->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0);
    if (fd < 0)
        return;
    for (int waited = 0; waited <= timeout_ms; waited++) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return; /* held until the process ends */
        if (errno != EWOULDBLOCK && errno != EINTR)
            break;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    close(fd);
}

const as_sink_ops as_sink_file_ops = {"file",     file_open,  file_send,
                                      file_flush, file_close, file_hold};
