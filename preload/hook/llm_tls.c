/* llm_tls.c - GOT-patched wrappers of the record I/O of OpenSSL and GnuTLS (llm_tls.h):
 * each call runs the original, then shows the plaintext it carried to the connection's
 * parser. The preload exports no SSL_* or gnutls_* symbol: symbol resolution of the
 * program is never changed. */
#include "hook/llm_tls.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/dynlib.h"
#include "core/llm_detect.h"
#include "core/log.h"
#include "core/pipeline.h"
#include "hook/got.h"
#include "hook/llm_scan.h"
#include "hook/llm_sig.h"
#include "hook/patch.h"
#include "core/bigbss.h"

#define MAX_OBJS 1024
#define NBUCKETS 256

typedef int (*read_fn)(void *, void *, int);
typedef int (*read_ex_fn)(void *, void *, size_t, size_t *);
typedef int (*write_fn)(void *, const void *, int);
typedef int (*write_ex_fn)(void *, const void *, size_t, size_t *);
typedef void (*free_fn)(void *);
typedef ssize_t (*gsend_fn)(void *, const void *, size_t);
typedef ssize_t (*grecv_fn)(void *, void *, size_t);

static read_fn real_read;
static read_ex_fn real_read_ex;
static write_fn real_write;
static write_ex_fn real_write_ex;
static free_fn real_free;
static gsend_fn real_gsend;
static grecv_fn real_grecv;
static free_fn real_gdeinit;

static int g_active;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* the table and every parser */

/* One connection seen. c is NULL once the connection is passed through
 * (as_llm_conn_ignored): its reads and writes then cost this lookup and nothing else, and
 * the node is all it keeps. */
typedef struct conn_node {
    struct conn_node *next;
    void *ssl;
    as_llm_conn *c;
} conn_node;
static conn_node *g_buckets[NBUCKETS] AS_BIG_BSS;

static size_t bucket(const void *ssl) {
    uintptr_t x = (uintptr_t)ssl;
    x ^= x >> 17;
    x *= 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 56) % NBUCKETS;
}

/* The node of ssl, made on first sight. g_lock held. NULL when out of memory. */
static conn_node *conn_get(void *ssl) {
    conn_node **b = &g_buckets[bucket(ssl)];
    for (conn_node *n = *b; n; n = n->next)
        if (n->ssl == ssl)
            return n;
    conn_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->c = as_llm_conn_new();
    if (!n->c) {
        free(n);
        return NULL;
    }
    n->ssl = ssl;
    n->next = *b;
    *b = n;
    return n;
}

/* Shows plaintext of ssl to its parser; wrote: 1 for bytes the program sent. */
static void observe(void *ssl, int wrote, const void *data, size_t len) {
    if (as_in_agentsight || !ssl || !data || len == 0)
        return;
    int saved = errno;
    as_in_agentsight++;
    pthread_mutex_lock(&g_lock);
    conn_node *n = conn_get(ssl);
    if (n && n->c) {
        if (wrote)
            as_llm_conn_wrote(n->c, data, len);
        else
            as_llm_conn_read(n->c, data, len);
        if (as_llm_conn_ignored(n->c)) { /* passed through from now on */
            as_llm_conn_free(n->c);
            n->c = NULL;
        }
    }
    pthread_mutex_unlock(&g_lock);
    as_in_agentsight--;
    errno = saved;
}

static int w_SSL_read(void *ssl, void *buf, int num) {
    int r = real_read(ssl, buf, num);
    if (r > 0)
        observe(ssl, 0, buf, (size_t)r);
    return r;
}

static int w_SSL_read_ex(void *ssl, void *buf, size_t num, size_t *got) {
    int r = real_read_ex(ssl, buf, num, got);
    if (r == 1 && got)
        observe(ssl, 0, buf, *got);
    return r;
}

static int w_SSL_write(void *ssl, const void *buf, int num) {
    int r = real_write(ssl, buf, num);
    if (r > 0)
        observe(ssl, 1, buf, (size_t)r);
    return r;
}

static int w_SSL_write_ex(void *ssl, const void *buf, size_t num, size_t *sent) {
    int r = real_write_ex(ssl, buf, num, sent);
    if (r == 1 && sent)
        observe(ssl, 1, buf, *sent);
    return r;
}

/* The connection of ssl (an SSL* or a gnutls_session_t) ended: its state goes. */
static void conn_end(void *ssl) {
    if (!ssl || as_in_agentsight)
        return;
    int saved = errno;
    as_in_agentsight++;
    pthread_mutex_lock(&g_lock);
    conn_node **p = &g_buckets[bucket(ssl)];
    while (*p && (*p)->ssl != ssl)
        p = &(*p)->next;
    conn_node *n = *p;
    if (n) {
        *p = n->next;
        as_llm_conn_free(n->c); /* a response read until close ends here */
        free(n);
    }
    pthread_mutex_unlock(&g_lock);
    as_in_agentsight--;
    errno = saved;
}

void as_llm_tls_observe(void *conn, int wrote, const void *data, size_t len) {
    observe(conn, wrote, data, len);
}

void as_llm_tls_end(void *conn) {
    conn_end(conn);
}

static void w_SSL_free(void *ssl) {
    conn_end(ssl);
    real_free(ssl);
}

/* GnuTLS: gnutls_record_send/recv return the bytes moved (or a negative error code). */
static ssize_t w_gnutls_record_send(void *session, const void *data, size_t size) {
    ssize_t r = real_gsend(session, data, size);
    if (r > 0)
        observe(session, 1, data, (size_t)r);
    return r;
}

static ssize_t w_gnutls_record_recv(void *session, void *data, size_t size) {
    ssize_t r = real_grecv(session, data, size);
    if (r > 0)
        observe(session, 0, data, (size_t)r);
    return r;
}

static void w_gnutls_deinit(void *session) {
    conn_end(session);
    real_gdeinit(session);
}

typedef struct hooked {
    const char *lib; /* the library that defines it: "libssl.so", "libgnutls.so" */
    const char *name;
    void *wrapper;
    void **real;
} hooked;

static const hooked g_hooks[] = {
    {"libssl.so", "SSL_read", (void *)w_SSL_read, (void **)&real_read},
    {"libssl.so", "SSL_read_ex", (void *)w_SSL_read_ex, (void **)&real_read_ex},
    {"libssl.so", "SSL_write", (void *)w_SSL_write, (void **)&real_write},
    {"libssl.so", "SSL_write_ex", (void *)w_SSL_write_ex, (void **)&real_write_ex},
    {"libssl.so", "SSL_free", (void *)w_SSL_free, (void **)&real_free},
    {"libgnutls.so", "gnutls_record_send", (void *)w_gnutls_record_send, (void **)&real_gsend},
    {"libgnutls.so", "gnutls_record_recv", (void *)w_gnutls_record_recv, (void **)&real_grecv},
    {"libgnutls.so", "gnutls_deinit", (void *)w_gnutls_deinit, (void **)&real_gdeinit},
};
#define NHOOKS (sizeof g_hooks / sizeof g_hooks[0])

static as_obj g_objs[MAX_OBJS] AS_BIG_BSS;

static const char *base_name(const char *p) {
    const char *b = strrchr(p, '/');
    return b ? b + 1 : p;
}

static int is_lib(const as_obj *o, const char *lib) {
    return strncmp(base_name(o->name), lib, strlen(lib)) == 0;
}

/* A TLS library itself: its own calls of these functions are never wrapped. */
static int is_tls_lib(const as_obj *o) {
    return is_lib(o, "libssl.so") || is_lib(o, "libgnutls.so");
}

/* Fills the real functions from the first TLS library loaded that defines them. */
static void find_reals(int n) {
    for (int i = 0; i < n; i++) {
        if (!is_tls_lib(&g_objs[i]) || as_dynlib_owns(g_objs[i].base, g_objs[i].name))
            continue;
        as_dyninfo di;
        if (as_dyn_read(g_objs[i].dyn, g_objs[i].base, &di) != 0)
            continue;
        for (size_t k = 0; k < NHOOKS; k++) {
            if (!is_lib(&g_objs[i], g_hooks[k].lib) ||
                __atomic_load_n(g_hooks[k].real, __ATOMIC_ACQUIRE))
                continue;
            const ElfW(Sym) *s = as_dyn_lookup(&di, g_hooks[k].name, NULL);
            if (s && s->st_shndx != SHN_UNDEF && s->st_value)
                __atomic_store_n(g_hooks[k].real, (void *)(g_objs[i].base + s->st_value),
                                 __ATOMIC_RELEASE);
        }
    }
}

/* Set once OpenSSL's functions were entry-patched in an object that carries its own copy
 * (node): the reals are then that copy's trampolines, and no GOT slot is ever pointed at
 * the wrappers (a slot bound to another copy would reach the wrong library). */
static int g_embedded;
static as_patch g_patches[NHOOKS] AS_BIG_BSS;

/* A program or library that carries its own OpenSSL (node embeds it and exports its
 * functions, but calls them directly: no GOT slot sees those calls) gets the entries of
 * SSL_read/SSL_read_ex/SSL_write/SSL_write_ex/SSL_free patched to jump to the wrappers,
 * when no libssl is loaded. A copy that cannot be patched is said once. */
static void patch_embedded(int n) {
    static int told;
    if (g_embedded || told)
        return;
    for (int i = 0; i < n; i++) {
        const as_obj *o = &g_objs[i];
        if (is_tls_lib(o) || as_dynlib_owns(o->base, o->name) || is_lib(o, "libgnutls-openssl"))
            continue;
        as_dyninfo di;
        if (as_dyn_read(o->dyn, o->base, &di) != 0)
            continue;
        const ElfW(Sym) *sym = as_dyn_lookup(&di, "SSL_read", NULL);
        if (!sym || sym->st_shndx == SHN_UNDEF || !sym->st_value)
            continue;
        const char *who = o->name[0] ? o->name : program_invocation_name;
        told = 1;
        if (__atomic_load_n(&real_read, __ATOMIC_ACQUIRE)) {
            as_warn("llm: %s has OpenSSL built in besides libssl: its own LLM calls are not "
                    "decoded",
                    who);
            return;
        }
        char why[160] = "";
        size_t k = 0;
        for (; k < NHOOKS; k++) {
            if (strcmp(g_hooks[k].lib, "libssl.so") != 0)
                continue;
            const ElfW(Sym) *f = as_dyn_lookup(&di, g_hooks[k].name, NULL);
            if (!f || f->st_shndx == SHN_UNDEF || !f->st_value || !f->st_size) {
                snprintf(why, sizeof why, "%s not found", g_hooks[k].name);
                break;
            }
            if (as_patch_prepare((void *)(o->base + f->st_value), f->st_size, &g_patches[k], why,
                                 sizeof why) != 0)
                break;
        }
        if (k < NHOOKS && strcmp(g_hooks[k].lib, "libssl.so") == 0) {
            as_warn("llm: %s has OpenSSL built in and its entries cannot be patched (%s): its "
                    "LLM calls are not decoded",
                    who, why);
            return;
        }
        /* The trampolines are the originals from now on, set before any jump is written. */
        for (k = 0; k < NHOOKS; k++)
            if (g_patches[k].tramp)
                __atomic_store_n(g_hooks[k].real, (void *)g_patches[k].tramp, __ATOMIC_RELEASE);
        g_embedded = 1;
        for (k = 0; k < NHOOKS; k++) {
            if (!g_patches[k].tramp)
                continue;
            if (as_patch_install(&g_patches[k], g_hooks[k].wrapper, why, sizeof why) != 0)
                as_warn("llm: %s: %s of its built-in OpenSSL not patched (%s): some LLM calls "
                        "may be missed",
                        who, g_hooks[k].name, why);
        }
        as_debug("llm: OpenSSL built into %s entry-patched", who);
        return;
    }
}

static void *decide(const as_obj *o, const char *sym, const char *version, void *cur, int lazy,
                    void *ctx) {
    (void)o, (void)version, (void)ctx;
    if (strncmp(sym, "SSL_", 4) != 0 && strncmp(sym, "gnutls_", 7) != 0)
        return NULL;
    for (size_t k = 0; k < NHOOKS; k++) {
        if (strcmp(sym, g_hooks[k].name) != 0)
            continue;
        if (g_embedded && strcmp(g_hooks[k].lib, "libssl.so") == 0)
            return NULL;
        if (cur == g_hooks[k].wrapper)
            return NULL;
        void *real = __atomic_load_n(g_hooks[k].real, __ATOMIC_ACQUIRE);
        if (!lazy && cur && cur != real) {
            if (real)
                return NULL; /* bound to another copy of the library: left alone */
            __atomic_store_n(g_hooks[k].real, cur, __ATOMIC_RELEASE);
            real = cur;
        }
        return real ? g_hooks[k].wrapper : NULL;
    }
    return NULL;
}

/* 1 when the dynamic string table of o holds the name of a hooked function. A GOT slot
 * is named by that table, so an object without any of the names has none of the slots,
 * and its relocations (tens of thousands in a large library, read at random: most of the
 * start-up cost of --llm) are never walked. A name found as the tail of a longer one
 * ("BIO_SSL_free") only costs the walk. */
static int names_hooked(const as_obj *o) {
    as_dyninfo di;
    if (as_dyn_read(o->dyn, o->base, &di) != 0 || !di.strtab || !di.strsz)
        return 1; /* no size to scan within: walked as before */
    /* one pass per prefix: each hit is compared with the names that have it */
    static const char *const prefixes[] = {"SSL_", "gnutls_"};
    const char *end = di.strtab + di.strsz;
    for (size_t p = 0; p < 2; p++) {
        size_t pl = strlen(prefixes[p]);
        for (const char *q = di.strtab; q < end;) {
            const char *hit = memmem(q, (size_t)(end - q), prefixes[p], pl);
            if (!hit)
                break;
            for (size_t k = 0; k < NHOOKS; k++) {
                size_t n = strlen(g_hooks[k].name) + 1; /* with its NUL */
                if ((size_t)(end - hit) >= n && memcmp(hit, g_hooks[k].name, n) == 0)
                    return 1;
            }
            q = hit + pl;
        }
    }
    return 0;
}

static int scan_locked(void) {
    int n = as_objs_collect(g_objs, MAX_OBJS);
    if (n > MAX_OBJS)
        n = MAX_OBJS;
    patch_embedded(n);
    if (!g_embedded)
        find_reals(n);
    if (!g_embedded && !__atomic_load_n(&real_read, __ATOMIC_ACQUIRE))
        as_llm_sig_scan(g_objs, n); /* BoringSSL without symbols (bun) */
    Dl_info self;
    uintptr_t self_base = dladdr((void *)&scan_locked, &self) ? (uintptr_t)self.dli_fbase : 0;
    int written = 0;
    for (int i = 0; i < n; i++) {
        const as_obj *o = &g_objs[i];
        if (o->lo == self_base || is_tls_lib(o) || as_dynlib_owns(o->base, o->name) ||
            strstr(o->name, "linux-vdso"))
            continue;
        if (self_base && o->lo <= self_base && self_base < o->hi)
            continue;
        if (!names_hooked(o))
            continue;
        int w = as_got_patch(o, decide, NULL);
        if (w > 0)
            written += w;
    }
    return written;
}

static pthread_mutex_t g_scan_lock = PTHREAD_MUTEX_INITIALIZER;

/* fork: the child gets the table in a consistent state, whatever another thread held. */
static void fork_prepare(void) {
    pthread_mutex_lock(&g_lock);
}
static void fork_release(void) {
    pthread_mutex_unlock(&g_lock);
}

AS_OWN_ATFORK(own_fork, fork_prepare, fork_release, fork_release)

int as_llm_tls_start(void) {
    pthread_atfork(own_fork_prepare, own_fork_parent, own_fork_child);
    pthread_mutex_lock(&g_scan_lock);
    as_in_agentsight++;
    __atomic_store_n(&g_active, 1, __ATOMIC_RELEASE);
    int w = scan_locked();
    as_in_agentsight--;
    pthread_mutex_unlock(&g_scan_lock);
    as_debug("llm: %d TLS slots hooked", w);
    return w;
}

int as_llm_tls_scan(void) {
    return as_llm_scan_guarded(&g_active, &g_scan_lock, scan_locked);
}

int as_llm_tls_active(void) {
    return __atomic_load_n(&g_active, __ATOMIC_ACQUIRE);
}
