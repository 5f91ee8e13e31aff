/* netfd.h - keeps the HTTP client's file descriptors apart from the program's. A daemon-
 * style program closes every descriptor it did not open and opens its own files, which
 * then get the numbers our sockets had; libcurl would go on writing requests into, polling,
 * reading from and finally closing the program's files. So sockets are moved to high
 * numbers, and a descriptor is closed only while it is still the one we opened. */
#ifndef AS_NETFD_H
#define AS_NETFD_H

#include <curl/curl.h>
#include <sys/types.h>

/* CURLOPT_OPENSOCKETFUNCTION: a socket, moved to a high number (4096 when the descriptor
 * limit is 5120 or more, else the last quarter of a limit of at least 256; the program's files keep
 * the low ones; a number curl may still hold for a socket the program closed is skipped),
 * close-on-exec, and remembered. A forked child forgets the parent's. Returns it or
 * CURL_SOCKET_BAD. */
curl_socket_t as_netfd_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr);

/* CURLOPT_CLOSESOCKETFUNCTION: closes fd only when it is still the socket
 * as_netfd_open made (same device and inode); otherwise the program closed ours and the
 * number is the program's now: left alone. Returns 0. */
int as_netfd_close(void *clientp, curl_socket_t fd);

/* Descriptors created by a library call we cannot steer (curl_multi_init's wakeup pair):
 * as_netfd_mark() notes which descriptors below AS_NETFD_SCAN are open; as_netfd_new()
 * then records the sockets opened since (at most cap) into ids; as_netfd_intact() says
 * whether every recorded one is still the same file (0 when the program closed one, and
 * the library must then not close it). A pair created above AS_NETFD_SCAN (a program
 * holding over a thousand descriptors) is not seen: it is then trusted. Can't fail. */
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
