/* fdio.c - writing a whole buffer to a file descriptor, shared by the sinks and the spool;
 * reading a file line by line, shared by the CLI's readers of records; and keeping the
 * descriptors the interposer holds open at high numbers (fdio.h). */
#include "core/fdio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

int as_write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int as_read_lines(const char *path, void (*fn)(void *ctx, const char *line, size_t n), void *ctx) {
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0)
        fn(ctx, line, (size_t)n);
    free(line);
    fclose(f);
    return 0;
}

int as_fd_high_base(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    rlim_t lim = rl.rlim_cur;
    if (lim == RLIM_INFINITY || lim >= 4096 + 1024)
        return 4096;
    if (lim >= 256)
        return (int)(lim * 3 / 4);
    return 0;
}

int as_fd_move_high(int fd) {
    if (fd < 0)
        return -1;
    int base = as_fd_high_base();
    if (base <= fd)
        return fd;
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, base);
    if (hi < 0)
        return fd;
    int e = errno;
    close(fd);
    errno = e;
    return hi;
}

int as_open_high(const char *path, int flags, mode_t mode) {
    int fd;
    do
        fd = open(path, flags, mode);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -1 : as_fd_move_high(fd);
}

DIR *as_opendir_high(const char *path) {
    int fd = as_open_high(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd < 0)
        return NULL;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return d;
}

FILE *as_fopen_high(const char *path) {
    int fd = as_open_high(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "r");
    if (!f) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return f;
}
