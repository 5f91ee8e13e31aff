/* fdio.h - writing a whole buffer to a file descriptor, shared by the sinks and the spool. */
#ifndef AS_FDIO_H
#define AS_FDIO_H

#include <stddef.h>

/* Writes n bytes of p to fd, retrying on EINTR and short writes. Returns 0, or -1 with
 * errno set (some bytes may have been written). */
int as_write_all(int fd, const void *p, size_t n);

#endif
