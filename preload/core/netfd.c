/* netfd.c - the HTTP client's descriptors kept apart from the program's (netfd.h). */
#include "core/pipeline.h"
#include "core/netfd.h"
#include "core/bigbss.h"
#include "core/fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SOCKETS 256

/* Sockets we opened and have not closed: fd and identity. */
static as_netfd_id g_socks[MAX_SOCKETS] AS_BIG_BSS;
static int g_nsocks;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* A forked child starts with no socket of its own (the parent's clients are not its). */
static void child_reset(void) {
    pthread_mutex_init(&g_lock, NULL);
    g_nsocks = 0;
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

AS_OWN_ATFORK(own_fork, as_fork_nothing, as_fork_nothing, child_reset)

static void register_fork(void) {
    pthread_atfork(own_fork_prepare, own_fork_parent, own_fork_child);
}

/* Whether fd is in the table (a socket of ours the program may have closed: its number
 * must not serve a second connection while curl still holds it). g_lock held. */
static int in_table(int fd) {
    for (int i = 0; i < g_nsocks; i++)
        if (g_socks[i].fd == fd)
            return 1;
    return 0;
}

static int identify(int fd, as_netfd_id *id) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    id->fd = fd;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    return 0;
}

static int same_file(const as_netfd_id *id) {
    struct stat st;
    return fstat(id->fd, &st) == 0 && st.st_dev == id->dev && st.st_ino == id->ino;
}

curl_socket_t as_netfd_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr) {
    (void)clientp;
    (void)purpose;
    pthread_once(&g_once, register_fork);
    int fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    pthread_mutex_lock(&g_lock);
    int base = as_fd_high_base(); /* fdio.h */
    if (base > fd) {
        /* The lowest free number from base, skipping those curl may still hold. */
        int skipped[8], nskip = 0, start = base;
        for (;;) {
            int hi = fcntl(fd, F_DUPFD_CLOEXEC, start);
            if (hi < 0)
                break;
            if (!in_table(hi)) {
                close(fd);
                fd = hi;
                break;
            }
            if (nskip == 8) {
                close(hi);
                break;
            }
            skipped[nskip++] = hi;
            start = hi + 1;
        }
        while (nskip > 0)
            close(skipped[--nskip]);
    }
    as_netfd_id id;
    if (!in_table(fd) && g_nsocks < MAX_SOCKETS && identify(fd, &id) == 0)
        g_socks[g_nsocks++] = id;
    pthread_mutex_unlock(&g_lock);
    return fd;
}

int as_netfd_close(void *clientp, curl_socket_t fd) {
    (void)clientp;
    int known = 0, ours = 0;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < g_nsocks; i++) {
        if (g_socks[i].fd != fd)
            continue;
        known = 1;
        ours = same_file(&g_socks[i]);
        g_socks[i] = g_socks[--g_nsocks];
        break;
    }
    pthread_mutex_unlock(&g_lock);
    /* Not in the table (it was full): a socket is still closed when it is one. */
    if (!known) {
        struct stat st;
        ours = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
    }
    if (ours)
        close(fd);
    return 0;
}

void as_netfd_mark(unsigned char open[AS_NETFD_SCAN]) {
    for (int fd = 0; fd < AS_NETFD_SCAN; fd++)
        open[fd] = fcntl(fd, F_GETFD) != -1;
}

int as_netfd_new(const unsigned char before[AS_NETFD_SCAN], as_netfd_id *ids, int cap) {
    int n = 0;
    for (int fd = 0; fd < AS_NETFD_SCAN && n < cap; fd++) {
        struct stat st;
        if (before[fd] || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
            continue; /* not new, or not a socket: another thread's file */
        if (identify(fd, &ids[n]) == 0)
            n++;
    }
    return n;
}

int as_netfd_intact(const as_netfd_id *ids, int n) {
    for (int i = 0; i < n; i++)
        if (!same_file(&ids[i]))
            return 0;
    return 1;
}
