/* fdio.h - writing a whole buffer to a file descriptor, shared by the sinks and the spool;
 * reading a file line by line, shared by the CLI's readers of records; and keeping the
 * descriptors the interposer holds open at high numbers, out of the program's way. */
#ifndef AS_FDIO_H
#define AS_FDIO_H

#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/* Writes n bytes of p to fd, retrying on EINTR and short writes. Returns 0, or -1 with
 * errno set (some bytes may have been written). */
int as_write_all(int fd, const void *p, size_t n);

/* Calls fn(ctx, line, n) for each line of the file at path, in order: n bytes, the newline
 * included when there is one, NUL-terminated; line is only valid during the call. Stops
 * early (quietly) at a read error or when out of memory. Returns 0, or -1 when the file
 * cannot be opened (fn never called). */
int as_read_lines(const char *path, void (*fn)(void *ctx, const char *line, size_t n), void *ctx);

/* Where descriptors the interposer keeps open in the program's process start: 4096 when the
 * descriptor limit allows (higher would grow the kernel's descriptor table, copied by every
 * fork of the program), else the last quarter of a limit of at least 256; 0 when nothing
 * sensible. A program expects open, dup and pipe to return its lowest free numbers (tar
 * closes 0 and expects dup(3) to return 0): a sink file, the .targets file or a duplicate
 * of stderr kept at a low number would break that. */
int as_fd_high_base(void);

/* Moves fd to the lowest free number from as_fd_high_base() (close-on-exec) and closes the
 * original. Returns the new number, or fd itself when it is already there or cannot be
 * moved (no sensible base, the limit reached); -1 when fd < 0. */
int as_fd_move_high(int fd);

/* open(2) whose descriptor is then moved by as_fd_move_high. Retries on EINTR. Returns the
 * descriptor, or -1 with errno set. Between the open and the move the file holds a low
 * number for a moment: a program thread running close(0); dup(x) at that very moment could
 * still see it (only long-lived descriptors are worth this). */
int as_open_high(const char *path, int flags, mode_t mode);

/* opendir(3) and fopen(3) for reading (close-on-exec) whose descriptor is
 * moved as by as_open_high: for the exporter thread, whose scans of directories and
 * reads of files run beside the program's threads, where a low number held for the whole
 * scan would be one the program's own open or dup expected. NULL with errno set. */
DIR *as_opendir_high(const char *path);
FILE *as_fopen_high(const char *path);

#endif
