/* netfd.h - keeps the HTTP client's file descriptors apart from the program's. A daemon-
 * style program closes every descriptor it did not open and opens its own files, which
 * then get the numbers our sockets had; libcurl would go on writing requests into, polling,
 * reading from and finally closing the program's files. So sockets are moved to high
 * numbers, and a descriptor is closed only while it is still the one we opened. */
#ifndef AS_NETFD_H
#define AS_NETFD_H

#include <curl/curl.h>
#include <sys/types.h>

/* CURLOPT_OPENSOCKETFUNCTION: a socket, moved to a number near the top of the process's
 * descriptor limit (the program's files keep the low ones), close-on-exec, and
 * remembered. Returns it or CURL_SOCKET_BAD (errno set). */
curl_socket_t as_netfd_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr);

/* CURLOPT_CLOSESOCKETFUNCTION: closes fd only when it is still the socket
 * as_netfd_open made (same device and inode); otherwise the program closed ours and the
 * number is the program's now: left alone. Returns 0. */
int as_netfd_close(void *clientp, curl_socket_t fd);

/* Descriptors created by a library call we cannot steer (curl_multi_init's wakeup pair):
 * as_netfd_mark() notes which descriptors below AS_NETFD_SCAN are open; as_netfd_new()
 * then records the ones opened since (at most cap) into ids; as_netfd_intact() says
 * whether every recorded one is still the same file (0 when the program closed one, and
 * the library must then not close or read it). Can't fail. */
#define AS_NETFD_SCAN 1024
typedef struct as_netfd_id {
    int fd;
    dev_t dev;
    ino_t ino;
} as_netfd_id;
void as_netfd_mark(unsigned char open[AS_NETFD_SCAN]);
int as_netfd_new(const unsigned char before[AS_NETFD_SCAN], as_netfd_id *ids, int cap);
int as_netfd_intact(const as_netfd_id *ids, int n);

#endif
