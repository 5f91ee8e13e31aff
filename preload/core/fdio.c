/* fdio.c - writing a whole buffer to a file descriptor, shared by the sinks and the spool,
 * and reading a file line by line, shared by the CLI's readers of records. */
#include "core/fdio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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
