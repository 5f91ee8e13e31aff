/* fdio.h - writing a whole buffer to a file descriptor, shared by the sinks and the spool,
 * and reading a file line by line, shared by the CLI's readers of records. */
#ifndef AS_FDIO_H
#define AS_FDIO_H

#include <stddef.h>

/* Writes n bytes of p to fd, retrying on EINTR and short writes. Returns 0, or -1 with
 * errno set (some bytes may have been written). */
int as_write_all(int fd, const void *p, size_t n);

/* Calls fn(ctx, line, n) for each line of the file at path, in order: n bytes, the newline
 * included when there is one, NUL-terminated; line is only valid during the call. Stops
 * early (quietly) at a read error or when out of memory. Returns 0, or -1 when the file
 * cannot be opened (fn never called). */
int as_read_lines(const char *path, void (*fn)(void *ctx, const char *line, size_t n), void *ctx);

#endif
