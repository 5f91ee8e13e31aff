/* llm_sock.c - GOT-patched wrappers of the C library's socket calls (llm_sock.h): local
 * model servers (Ollama, vLLM) speak plain HTTP/1.1, which no TLS hook sees. connect()
 * marks a TCP socket bound for a watched address with a parser of its own; the read/write
 * family shows that descriptor's bytes to the parser; close() ends it. A descriptor that
 * turns out not to carry HTTP/1.x (TLS, a database protocol) is forgotten at once. The
 * wrappers call the C library's functions by name: the preload defines none of them, so
 * symbol resolution of the program never changes. */
#include "hook/llm_sock.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/dynlib.h"
#include "core/llm_detect.h"
#include "core/log.h"
#include "core/pipeline.h"
#include "hook/got.h"
#include "hook/llm_addr.h"
#include "hook/llm_scan.h"

/* The fortified forms programs built with _FORTIFY_SOURCE call. */
extern ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
extern ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
extern ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                              struct sockaddr *addr, socklen_t *alen);

#define MAX_OBJS 1024
#define NFDS 65536 /* descriptors at or above this are never watched */

/* ---- what is watched (llm_addr.h): loopback unless plain_http says otherwise ---- */
static as_llm_watchset g_ws = {.loopback = 1};

int as_llm_sock_config(const char *spec, int apply, char *why, size_t whylen) {
    as_llm_watchset ws;
    char dummy[8];
    if (as_llm_addr_parse(spec, &ws, why ? why : dummy, why ? whylen : sizeof dummy) != 0)
        return -1;
    if (apply)
        g_ws = ws;
    return 0;
}

/* ---- the watched descriptors ---- */
/* g_conn[fd]: the parser of a watched socket, NULL for every other descriptor. Written
 * under g_lock; the wrappers' first look is a relaxed load, then again under the lock. */
static as_llm_conn *g_conn[NFDS];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_active;
/* Slots rewritten so far: only connect's until the first watched connect, then all of
 * them (a process that never talks to a watched server rewrites a handful of slots). */
static size_t g_nhooks = 1;

static void hook_all(void);

/* The process the table belongs to. A vfork child (python's subprocess closes the
 * inherited descriptors in one) shares the parent's memory and must neither allocate nor
 * free there: it changes nothing. Set at start and in a forked child. */
static pid_t g_pid;

static int in_vfork_child(void) {
    return getpid() != __atomic_load_n(&g_pid, __ATOMIC_RELAXED);
}

static inline int marked(int fd) {
    return (unsigned)fd < NFDS && __atomic_load_n(&g_conn[fd], __ATOMIC_RELAXED);
}

/* Forgets fd's parser (g_lock held): a response read until close ends here. */
static void drop_locked(int fd) {
    as_llm_conn *c = g_conn[fd];
    if (!c)
        return;
    __atomic_store_n(&g_conn[fd], NULL, __ATOMIC_RELAXED);
    as_llm_conn_free(c);
}

/* Shows bytes of fd to its parser: wrote 1 for what the program sent. Pieces of an
 * iovec array are given in order, up to total bytes. */
static void observe(int fd, int wrote, const struct iovec *iov, int iovcnt, size_t total) {
    if (as_in_agentsight || total == 0)
        return;
    int saved = errno;
    if (in_vfork_child()) {
        errno = saved;
        return;
    }
    as_in_agentsight++;
    pthread_mutex_lock(&g_lock);
    as_llm_conn *c = g_conn[fd];
    for (int i = 0; c && i < iovcnt && total > 0; i++) {
        size_t n = iov[i].iov_len < total ? iov[i].iov_len : total;
        total -= n;
        if (!n || !iov[i].iov_base)
            continue;
        if (wrote)
            as_llm_conn_wrote(c, iov[i].iov_base, n);
        else
            as_llm_conn_read(c, iov[i].iov_base, n);
    }
    if (c && as_llm_conn_ignored(c))
        drop_locked(fd); /* not HTTP/1.x: never looked at again */
    pthread_mutex_unlock(&g_lock);
    as_in_agentsight--;
    errno = saved;
}

static void observe1(int fd, int wrote, const void *buf, ssize_t r) {
    if (r <= 0)
        return;
    struct iovec v = {(void *)buf, (size_t)r};
    observe(fd, wrote, &v, 1, (size_t)r);
}

static int w_connect(int fd, const struct sockaddr *sa, socklen_t len) {
    int r = connect(fd, sa, len);
    if ((unsigned)fd >= NFDS || as_in_agentsight)
        return r;
    int saved = errno;
    int want = (r == 0 || saved == EINPROGRESS) && as_llm_addr_match(&g_ws, sa, len);
    if ((want || marked(fd)) && !in_vfork_child()) {
        int type = 0;
        socklen_t tl = sizeof type;
        if (want && (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM))
            want = 0; /* UDP (a resolver on 127.0.0.53) and the like */
        if (want && __atomic_load_n(&g_nhooks, __ATOMIC_ACQUIRE) == 1)
            hook_all(); /* before the first byte is written on fd */
        as_in_agentsight++;
        pthread_mutex_lock(&g_lock);
        drop_locked(fd); /* a descriptor number used again */
        if (want)
            __atomic_store_n(&g_conn[fd], as_llm_conn_new(), __ATOMIC_RELAXED);
        pthread_mutex_unlock(&g_lock);
        as_in_agentsight--;
    }
    errno = saved;
    return r;
}

static int w_close(int fd) {
    if (marked(fd) && !as_in_agentsight && !in_vfork_child()) {
        int saved = errno;
        as_in_agentsight++;
        pthread_mutex_lock(&g_lock);
        drop_locked(fd);
        pthread_mutex_unlock(&g_lock);
        as_in_agentsight--;
        errno = saved;
    }
    return close(fd);
}

static ssize_t w_write(int fd, const void *buf, size_t n) {
    ssize_t r = write(fd, buf, n);
    if (marked(fd))
        observe1(fd, 1, buf, r);
    return r;
}

static ssize_t w_send(int fd, const void *buf, size_t n, int flags) {
    ssize_t r = send(fd, buf, n, flags);
    if (marked(fd))
        observe1(fd, 1, buf, r);
    return r;
}

static ssize_t w_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *a,
                        socklen_t al) {
    ssize_t r = sendto(fd, buf, n, flags, a, al);
    if (marked(fd))
        observe1(fd, 1, buf, r);
    return r;
}

static ssize_t w_writev(int fd, const struct iovec *iov, int cnt) {
    ssize_t r = writev(fd, iov, cnt);
    if (marked(fd) && r > 0)
        observe(fd, 1, iov, cnt, (size_t)r);
    return r;
}

static ssize_t w_sendmsg(int fd, const struct msghdr *m, int flags) {
    ssize_t r = sendmsg(fd, m, flags);
    if (marked(fd) && r > 0 && m)
        observe(fd, 1, m->msg_iov, (int)m->msg_iovlen, (size_t)r);
    return r;
}

static ssize_t w_read(int fd, void *buf, size_t n) {
    ssize_t r = read(fd, buf, n);
    if (marked(fd))
        observe1(fd, 0, buf, r);
    return r;
}

static ssize_t w_read_chk(int fd, void *buf, size_t n, size_t buflen) {
    ssize_t r = __read_chk(fd, buf, n, buflen);
    if (marked(fd))
        observe1(fd, 0, buf, r);
    return r;
}

/* MSG_PEEK leaves the bytes for the next read, which shows them. */
static ssize_t w_recv(int fd, void *buf, size_t n, int flags) {
    ssize_t r = recv(fd, buf, n, flags);
    if (marked(fd) && !(flags & MSG_PEEK))
        observe1(fd, 0, buf, r);
    return r;
}

static ssize_t w_recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags) {
    ssize_t r = __recv_chk(fd, buf, n, buflen, flags);
    if (marked(fd) && !(flags & MSG_PEEK))
        observe1(fd, 0, buf, r);
    return r;
}

static ssize_t w_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *a,
                          socklen_t *al) {
    ssize_t r = recvfrom(fd, buf, n, flags, a, al);
    if (marked(fd) && !(flags & MSG_PEEK))
        observe1(fd, 0, buf, r);
    return r;
}

static ssize_t w_recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                              struct sockaddr *a, socklen_t *al) {
    ssize_t r = __recvfrom_chk(fd, buf, n, buflen, flags, a, al);
    if (marked(fd) && !(flags & MSG_PEEK))
        observe1(fd, 0, buf, r);
    return r;
}

static ssize_t w_readv(int fd, const struct iovec *iov, int cnt) {
    ssize_t r = readv(fd, iov, cnt);
    if (marked(fd) && r > 0)
        observe(fd, 0, iov, cnt, (size_t)r);
    return r;
}

static ssize_t w_recvmsg(int fd, struct msghdr *m, int flags) {
    ssize_t r = recvmsg(fd, m, flags);
    if (marked(fd) && r > 0 && m && !(flags & MSG_PEEK))
        observe(fd, 0, m->msg_iov, (int)m->msg_iovlen, (size_t)r);
    return r;
}

/* ---- the slots ---- */
typedef struct hooked {
    const char *name;
    void *wrapper;
    void *real; /* the C library's function */
} hooked;

static const hooked g_hooks[] = {
    /* connect first: see g_nhooks */
    {"connect", (void *)w_connect, (void *)connect},
    {"close", (void *)w_close, (void *)close},
    {"write", (void *)w_write, (void *)write},
    {"send", (void *)w_send, (void *)send},
    {"sendto", (void *)w_sendto, (void *)sendto},
    {"writev", (void *)w_writev, (void *)writev},
    {"sendmsg", (void *)w_sendmsg, (void *)sendmsg},
    {"read", (void *)w_read, (void *)read},
    {"__read_chk", (void *)w_read_chk, (void *)__read_chk},
    {"recv", (void *)w_recv, (void *)recv},
    {"__recv_chk", (void *)w_recv_chk, (void *)__recv_chk},
    {"recvfrom", (void *)w_recvfrom, (void *)recvfrom},
    {"__recvfrom_chk", (void *)w_recvfrom_chk, (void *)__recvfrom_chk},
    {"readv", (void *)w_readv, (void *)readv},
    {"recvmsg", (void *)w_recvmsg, (void *)recvmsg},
};
#define NHOOKS (sizeof g_hooks / sizeof g_hooks[0])

static void *decide(const as_obj *o, const char *sym, const char *version, void *cur, int lazy,
                    void *ctx) {
    (void)o, (void)version;
    size_t nhooks = *(const size_t *)ctx;
    switch (sym[0]) { /* most symbols of an object are none of these */
    case 'c':
    case 'w':
    case 's':
    case 'r':
    case '_':
        break;
    default:
        return NULL;
    }
    for (size_t k = 0; k < nhooks; k++) {
        if (strcmp(sym, g_hooks[k].name) != 0)
            continue;
        /* a slot bound elsewhere (another interposer, a tracked function's thunk) or
         * already ours is left alone */
        if (cur == g_hooks[k].wrapper || (!lazy && cur && cur != g_hooks[k].real))
            return NULL;
        return g_hooks[k].wrapper;
    }
    return NULL;
}

static as_obj g_objs[MAX_OBJS];
static pthread_mutex_t g_scan_lock = PTHREAD_MUTEX_INITIALIZER;

static int is_libc(const char *name) {
    const char *b = strrchr(name, '/');
    b = b ? b + 1 : name;
    return strncmp(b, "libc.so", 7) == 0 || strncmp(b, "ld-linux", 8) == 0;
}

static int scan_locked(void) {
    int n = as_objs_collect(g_objs, MAX_OBJS);
    if (n > MAX_OBJS)
        n = MAX_OBJS;
    Dl_info self;
    uintptr_t self_base = dladdr((void *)&scan_locked, &self) ? (uintptr_t)self.dli_fbase : 0;
    int written = 0;
    for (int i = 0; i < n; i++) {
        const as_obj *o = &g_objs[i];
        if (o->lo == self_base || is_libc(o->name) || as_dynlib_owns(o->base, o->name) ||
            strstr(o->name, "linux-vdso"))
            continue;
        if (self_base && o->lo <= self_base && self_base < o->hi)
            continue;
        int w = as_got_patch(o, decide, &g_nhooks);
        if (w > 0)
            written += w;
    }
    return written;
}

static void fork_prepare(void) {
    pthread_mutex_lock(&g_lock);
}
static void fork_release(void) {
    pthread_mutex_unlock(&g_lock);
}
static void fork_child(void) {
    __atomic_store_n(&g_pid, getpid(), __ATOMIC_RELAXED);
    pthread_mutex_unlock(&g_lock);
}

AS_OWN_ATFORK(own_fork, fork_prepare, fork_release, fork_child)

int as_llm_sock_start(void) {
    if (as_llm_addr_none(&g_ws))
        return 0; /* plain_http = off */
    __atomic_store_n(&g_pid, getpid(), __ATOMIC_RELAXED);
    pthread_atfork(own_fork_prepare, own_fork_parent, own_fork_child);
    pthread_mutex_lock(&g_scan_lock);
    as_in_agentsight++;
    __atomic_store_n(&g_active, 1, __ATOMIC_RELEASE);
    int w = scan_locked();
    as_in_agentsight--;
    pthread_mutex_unlock(&g_scan_lock);
    as_debug("llm: %d connect slots hooked", w);
    return w;
}

/* The first watched connect: the read/write family is hooked everywhere. */
static void hook_all(void) {
    as_in_agentsight++;
    pthread_mutex_lock(&g_scan_lock);
    if (g_nhooks == 1) {
        __atomic_store_n(&g_nhooks, NHOOKS, __ATOMIC_RELEASE);
        int w = scan_locked();
        as_debug("llm: %d socket slots hooked at the first watched connect", w);
    }
    pthread_mutex_unlock(&g_scan_lock);
    as_in_agentsight--;
}

int as_llm_sock_scan(void) {
    return as_llm_scan_guarded(&g_active, &g_scan_lock, scan_locked);
}
