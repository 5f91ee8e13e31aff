/* capture.c - typed capture on the hot path (capture.h): classifies a prototype's
 * parameters by the SysV x86-64 rules, copies their values and bounded strings into a
 * per-thread arena at entry, the returned string or aggregate at exit, and reads agent
 * memory without ever faulting.
 *
 * Reading agent memory. A pointer argument may be dangling, NULL-ish (0x10) or point into
 * an unmapped page. Memory that cannot disappear while we read it is read directly: this
 * thread's own stack above our frame, the brk heap below the current break, and the
 * segments of the objects loaded at start (never unmapped: the program holds them).
 * Everything else is copied by process_vm_readv(2) on our own pid, which fails with EFAULT
 * instead of faulting (one system call, about 0.3 us). A cache of pages once found
 * readable would be cheaper but is unsound: munmap, malloc trimming and dlclose happen
 * behind our back (glibc calls them internally), and a stale entry would fault the agent.
 * The one remaining window: a dangling pointer into the brk heap while another thread
 * shrinks the break in the instant between our check and our copy.
 *
 * Vector state. The full-preservation thunk (x86_64/thunk.S) saves only xmm0-15 around
 * the C side of a call unless as_capture_vec_risk_entry/exit say the call may reach code
 * that touches more. That holds because everything on the common path is built without
 * AVX (legacy SSE encodings leave ymm/zmm upper halves, zmm16-31 and k0-7 alone) and
 * calls no library routine: strings and items are copied here with SSE2 and plain
 * 8-byte loads and stores (never memcpy, strnlen or memset, whose AVX2/EVEX variants use
 * ymm16-31 and k registers), the break is read from __curbrk, not through sbrk(). What
 * is left (the first call of a thread, the arena's mapping, the record copy in thunk.c)
 * is named in those two functions. */
#include <emmintrin.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/pipeline.h"
#include "hook/capture.h"
#include "hook/config.h"
#include "hook/target.h"
#include "core/bigbss.h"

#define PAGE 4096u /* also the zero-page bound of thunk.S's typed entry */
#define MAX_REGIONS 256
#define MAX_IOV 40 /* pages one slow read may span (AS_MAX_STRING_LIMIT needs 17) */

/* Address ranges that stay readable for the life of the process (see the top). */
/* Read by the thunk's assembly entry too (x86_64/thunk.S: its string capture does what
 * known_len does; layout checked in thunk.c). */
as_cap_region as_cap_regions[MAX_REGIONS];
int as_cap_nregions;
uintptr_t as_cap_brk_lo; /* start of the brk heap; [as_cap_brk_lo, current break) is mapped */
static pthread_key_t arena_key;
static int arena_key_ok;

/* glibc's current program break (what sbrk(0) returns, without the call). A weak
 * reference: a libc without it makes known_len() fall back to sbrk(0). */
extern void *__curbrk __attribute__((weak));

/* Per-thread state (capture.h): the arena and the bounds of this thread's stack. */
__thread as_cap_tstate as_cap_ts;

static int add_region(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    for (int i = 0; i < info->dlpi_phnum && as_cap_nregions < MAX_REGIONS; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_R) || ph->p_memsz == 0)
            continue;
        uintptr_t lo = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)(PAGE - 1);
        uintptr_t hi =
            (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
        as_cap_regions[as_cap_nregions].lo = lo;
        as_cap_regions[as_cap_nregions].hi = hi;
        as_cap_nregions++;
    }
    return 0;
}

static void arena_free(void *p) {
    if (p)
        munmap(p, AS_CAP_ARENA);
    as_cap_ts.arena = NULL;
    as_cap_ts.top = 0;
    as_cap_ts.arena_failed = 1; /* the thread is exiting: no new arena */
}

/* Returns where the brk heap starts: field 47 (start_brk) of /proc/self/stat, which stays
 * right when malloc has already grown the heap before we run (a program linked with this
 * library, constructors that allocate); else the break now. Can't fail. */
static uintptr_t heap_start(void) {
    uintptr_t now = (uintptr_t)sbrk(0);
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return now;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return now;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p)
        return now;
    int field = 2; /* ')' ends field 2 */
    while (*p && field < 47) {
        if (*p++ == ' ')
            field++;
    }
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    if (field != 47 || end == p || v == 0 || v > now)
        return now;
    return (uintptr_t)v;
}

/* Sets as_cap_brk_lo once per process, at its first typed call (a target's plan, a
 * thread's arena): before it, 0 (heap memory is read the slow way, and no plan lets the
 * assembly capture). Threads racing here store the same value. Preserves errno. */
static void learn_heap(void) {
    if (__atomic_load_n(&as_cap_brk_lo, __ATOMIC_RELAXED))
        return;
    int e = errno;
    __atomic_store_n(&as_cap_brk_lo, heap_start(), __ATOMIC_RELAXED);
    errno = e;
}

/* Defined only in the interposer (preload_main.c), which calls as_capture_start() itself
 * when it has something to hook: a process that tracks nothing pays nothing here. */
extern const int as_preload_defers_init __attribute__((weak, visibility("hidden")));

/* Takes the stable regions once, at load time (every object loaded at start is mapped:
 * constructors run after the loader mapped them all). */
__attribute__((constructor)) static void capture_init(void) {
    if (&as_preload_defers_init == NULL)
        as_capture_start();
}

void as_capture_start(void) {
    static int done;
    if (done)
        return;
    done = 1;
    int e = errno;
    dl_iterate_phdr(add_region, NULL);
    /* as_cap_brk_lo is learnt at the first typed call (arena_map): reading /proc/self/stat
     * here cost every process three system calls and the kernel's formatting of the file,
     * and most processes of a tree never make a typed call. */
    arena_key_ok = pthread_key_create(&arena_key, arena_free) == 0;
    errno = e;
}

/* Parses "LO-HI " (hex) at p; returns the position after it, or NULL. */
static const char *maps_range(const char *p, const char *end, uintptr_t *lo, uintptr_t *hi) {
    uintptr_t v[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        const char *start = p;
        for (; p < end; p++) {
            unsigned d = *p >= '0' && *p <= '9'   ? (unsigned)(*p - '0')
                         : *p >= 'a' && *p <= 'f' ? (unsigned)(*p - 'a' + 10)
                                                  : 16u;
            if (d == 16)
                break;
            v[k] = v[k] << 4 | d;
        }
        if (p == start || p >= end || *p != (k == 0 ? '-' : ' '))
            return NULL;
        p++;
    }
    *lo = v[0];
    *hi = v[1];
    return p;
}

extern void *__libc_stack_end; /* ld.so: the top of the main thread's stack */

/* The stack of the calling thread: the mapping of /proc/self/maps that holds the main
 * thread's stack top (__libc_stack_end; its [stack] reaches down to RLIMIT_STACK) or,
 * in another thread, the thread's descriptor, which glibc places at the top of the
 * thread's stack block (its own or the one pthread_attr_setstack gave). Not the stack
 * pointer: a first tracked call may run on a coroutine's stack. Read with plain system
 * calls and no lock: pthread_getattr_np takes the thread's own lock and calls malloc,
 * free and stdio under it, so a first tracked call made inside it (a JVM starting its
 * threads, with free wrapped) asked it again and hung. */
void as_thread_stack(uintptr_t *lo, uintptr_t *hi) {
    *lo = *hi = 0;
    int main_thread = syscall(SYS_gettid) == getpid();
    uintptr_t sp = main_thread ? (uintptr_t)__libc_stack_end : (uintptr_t)pthread_self();
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[4096];
    size_t have = 0;
    int found = 0, is_main = 0;
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        const char *p = buf, *end = buf + have, *nl;
        while (!found && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            uintptr_t a, z;
            if (maps_range(p, nl, &a, &z) && sp >= a && sp < z) {
                *lo = a;
                *hi = z;
                found = 1;
                is_main = nl - p > 7 && memcmp(nl - 7, "[stack]", 7) == 0;
            }
            p = nl + 1;
        }
        if (found)
            break;
        have = (size_t)(end - p);
        if (have == sizeof buf) /* a line longer than the buffer: dropped */
            have = 0;
        memmove(buf, p, have);
    }
    close(fd);
    if (found && is_main) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            rl.rlim_cur < *hi && *hi - rl.rlim_cur < *lo)
            *lo = *hi - rl.rlim_cur;
    }
}

/* Maps the calling thread's arena and learns its stack bounds (first typed call of a
 * thread only: library calls, mmap). Returns the arena, or NULL when it cannot be mapped
 * (then no later call of this thread tries again). */
__attribute__((noinline, cold)) static char *arena_map(void) {
    if (as_cap_ts.arena_failed)
        return NULL;
    void *m = mmap(NULL, AS_CAP_ARENA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        as_cap_ts.arena_failed = 1;
        return NULL;
    }
    as_cap_ts.arena = m;
    as_cap_ts.top = 0;
    learn_heap();
    if (arena_key_ok)
        pthread_setspecific(arena_key, m);
    as_thread_stack(&as_cap_ts.stack_lo, &as_cap_ts.stack_hi);
    return as_cap_ts.arena;
}

/* Returns this thread's arena, mapping it on first use; NULL when it cannot be mapped. */
static inline char *arena_get(void) {
    if (__builtin_expect(as_cap_ts.arena != NULL, 1))
        return as_cap_ts.arena;
    return arena_map();
}

/* Returns the current program break. Can't fail. */
static inline uintptr_t cur_brk(void) {
    if (__builtin_expect(&__curbrk != NULL, 1))
        return (uintptr_t)__atomic_load_n(&__curbrk, __ATOMIC_RELAXED);
    return (uintptr_t)sbrk(0);
}

/* Returns how many of the n bytes at p lie in memory known to stay readable (0 when p
 * is in none of it). No library call (sbrk only where libc lacks __curbrk). Can't fail. */
static inline size_t known_len(uintptr_t p, size_t n) {
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    uintptr_t hi = 0;
    /* Above our frame up to the stack's end, only while we run on the thread's own stack:
     * on a coroutine's or a signal stack the range up to stack_hi may hold gaps. */
    if (p >= sp && p < as_cap_ts.stack_hi && sp >= as_cap_ts.stack_lo) {
        hi = as_cap_ts.stack_hi;
    } else if (p >= as_cap_brk_lo && as_cap_brk_lo) {
        /* the kernel maps the heap up to the page that holds the break */
        uintptr_t cur = (cur_brk() + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
        if (p < cur)
            hi = cur;
    }
    if (!hi) {
        for (int i = 0; i < as_cap_nregions; i++) {
            if (p >= as_cap_regions[i].lo && p < as_cap_regions[i].hi) {
                hi = as_cap_regions[i].hi;
                break;
            }
        }
    }
    if (!hi)
        return 0;
    return hi - p < n ? hi - p : n;
}

/* The copy mask (capture.h). */
const unsigned char as_cap_keep_mask[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/* Copies the string at s to d up to its NUL or lim bytes, whichever comes first, sixteen
 * bytes at a time with SSE2 (legacy encodings: only xmm0-15, upper halves untouched; see
 * the top); all lim bytes at s must be readable (the caller checked them), so the loads
 * may run past the NUL but never past lim: hence no_sanitize_address, as in any
 * word-at-a-time strlen. Bytes of the last block after the NUL are stored as zeros (they
 * pad the item; nothing of the agent's beyond the string is kept). Writes at most lim
 * bytes to d. Returns the length copied (lim: no NUL within lim). */
__attribute__((no_sanitize_address)) static inline size_t copy_str(char *d, const char *s,
                                                                   size_t lim) {
    size_t n = 0;
    const __m128i zero = _mm_setzero_si128();
    for (; n + 16 <= lim; n += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + n));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero));
        if (m) {
            unsigned k = (unsigned)__builtin_ctz(m);
            v = _mm_and_si128(
                v, _mm_loadu_si128((const __m128i *)(const void *)(as_cap_keep_mask + 16 - k)));
            _mm_storeu_si128((__m128i *)(void *)(d + n), v);
            return n + k;
        }
        _mm_storeu_si128((__m128i *)(void *)(d + n), v);
    }
    for (; n < lim; n++) {
        char c = s[n];
        if (!c)
            return n;
        __asm__("" : "+r"(c));
        d[n] = c;
    }
    return n;
}

/* Copies n bytes through the kernel, one iovec per page so a partial copy stops exactly
 * at the first unreadable page. Returns the bytes copied. */
__attribute__((noinline)) static size_t slow_read(void *dst, uintptr_t src, size_t n) {
    struct iovec local = {dst, n};
    struct iovec remote[MAX_IOV];
    int k = 0;
    size_t covered = 0;
    while (covered < n && k < MAX_IOV) {
        uintptr_t a = src + covered;
        size_t chunk = PAGE - (a & (PAGE - 1));
        if (chunk > n - covered)
            chunk = n - covered;
        remote[k].iov_base = (void *)a;
        remote[k].iov_len = chunk;
        covered += chunk;
        k++;
    }
    local.iov_len = covered;
    as_cap_ts.slow++;
    ssize_t got = process_vm_readv(getpid(), &local, 1, remote, (unsigned long)k, 0);
    return got > 0 ? (size_t)got : 0;
}

size_t as_safe_read(void *dst, const void *src, size_t n) {
    uintptr_t p = (uintptr_t)src;
    if (n == 0)
        return 0;
    if (p < PAGE || p + n < p)
        return 0; /* the zero page, or a range that wraps */
    if (known_len(p, n) == n) {
        as_capture_copy(dst, src, n);
        return n;
    }
    return slow_read(dst, p, n);
}

/* as_safe_strcpy, inlined into the capture of string items. */
__attribute__((always_inline)) static inline size_t safe_strcpy(char *dst, const char *src,
                                                                size_t max, int *trunc) {
    uintptr_t p = (uintptr_t)src;
    *trunc = 0;
    if (p < PAGE)
        return (size_t)-1;
    /* max + 1 bytes tell a string of exactly max bytes from a longer one. */
    size_t k = known_len(p, max + 1);
    if (__builtin_expect(k != 0, 1)) {
        size_t l = copy_str(dst, src, k);
        if (l < k || k == max + 1) {
            if (l > max) {
                l = max;
                *trunc = 1;
            }
            return l;
        }
    }
    size_t got = slow_read(dst, p, max + 1);
    if (got == 0)
        return (size_t)-1;
    size_t l = 0;
    while (l < got && dst[l]) {
        __asm__("" : "+r"(l)); /* a plain loop, never turned into a strnlen call */
        l++;
    }
    if (l == got) { /* no NUL: cut by max or by an unreadable page */
        *trunc = 1;
        if (l > max)
            l = max;
    }
    return l;
}

size_t as_safe_strcpy(char *dst, const char *src, size_t max, int *trunc) {
    return safe_strcpy(dst, src, max, trunc);
}

uint64_t as_capture_slow_reads(void) {
    return as_cap_ts.slow;
}

/* ---- items ---------------------------------------------------------------------- */

static inline size_t pad8(size_t n) {
    return (n + 7) & ~(size_t)7;
}

/* Writes an item header with len bytes of data at w (data copied from src when not NULL)
 * if it fits before end. Returns the position after the item, or w when it does not fit. */
static char *put_item(char *w, char *end, int tag, int index, int flags, const void *src,
                      size_t len) {
    if ((size_t)(end - w) < sizeof(as_cap_item) + pad8(len))
        return w;
    as_cap_item h = {(uint32_t)len, (uint8_t)tag, (uint8_t)index, (uint8_t)flags, 0};
    memcpy(w, &h, sizeof h);
    if (src && len)
        as_capture_copy(w + sizeof h, src, len);
    return w + sizeof h + pad8(len);
}

/* Item of a string argument or return: its text, NULL, or the unreadable address. The
 * text is copied once, straight into place; the item's padding is zeroed. */
__attribute__((always_inline)) static inline char *put_str(char *w, char *end, int index,
                                                           const char *s, int max_string) {
    if (!s)
        return put_item(w, end, AS_CAP_NULL, index, 0, NULL, 0);
    size_t room = (size_t)(end - w);
    if (room < sizeof(as_cap_item) + 16)
        return w;
    size_t max = (size_t)max_string;
    if (max + 1 > room - sizeof(as_cap_item) - 8)
        max = room - sizeof(as_cap_item) - 8 - 1;
    int trunc = 0;
    char *d = w + sizeof(as_cap_item);
    size_t n = safe_strcpy(d, s, max, &trunc);
    if (n == (size_t)-1) {
        uint64_t a = (uint64_t)(uintptr_t)s;
        return put_item(w, end, AS_CAP_BAD, index, 0, &a, sizeof a);
    }
    for (size_t i = n; i < pad8(n); i++) {
        __asm__("" : "+r"(i)); /* not a memset call */
        d[i] = 0;
    }
    /* the as_cap_item as one word (layout checked below, at the plan) */
    uint64_t h = (uint32_t)n | (uint64_t)AS_CAP_STR << 32 | (uint64_t)(uint8_t)index << 40 |
                 (uint64_t)(trunc ? AS_CAP_TRUNC : 0) << 48;
    memcpy(w, &h, sizeof h);
    return w + sizeof h + pad8(n);
}

/* Item of size bytes read from agent memory at src (stack arguments, struct returns). */
static char *put_mem(char *w, char *end, int index, const void *src, size_t size) {
    if ((size_t)(end - w) < sizeof(as_cap_item) + pad8(size))
        return w;
    if (as_safe_read(w + sizeof(as_cap_item), src, size) != size) {
        uint64_t a = (uint64_t)(uintptr_t)src;
        return put_item(w, end, AS_CAP_BAD, index, 0, &a, sizeof a);
    }
    as_cap_item h = {(uint32_t)size, AS_CAP_VAL, (uint8_t)index, 0, 0};
    memcpy(w, &h, sizeof h);
    return w + sizeof h + pad8(size);
}

/* 1 when an aggregate travels in memory: larger than 16 bytes, a MEMORY eightbyte, or
 * of unknown size (treated alike for the return: a hidden pointer is assumed). */
static int agg_in_memory(const as_type *t) {
    if (t->size == 0 || t->size > 16)
        return 1;
    int n = (t->size + 7) / 8;
    for (int i = 0; i < n; i++)
        if (t->cls[i] == AS_AGG_MEMORY || t->cls[i] == AS_AGG_NONE)
            return 1;
    return 0;
}

void as_capture_entry(as_shadow_frame *f, const as_proto *p, int max_string, const as_regs *regs,
                      void *const *slot) {
    f->cap_len = 0;
    char *a = arena_get();
    if (!a) {
        f->cap_off = UINT32_MAX;
        return;
    }
    uint32_t start = as_cap_ts.top;
    f->cap_off = start;
    size_t lim = start + (size_t)AS_CAP_MAX_CALL;
    char *end = a + (lim < AS_CAP_ARENA ? lim : AS_CAP_ARENA);
    char *w = a + start;
    const char *stack = (const char *)(slot + 1); /* first stack argument */
    size_t so = 0;                                /* its offset */
    int gi = 0, si = 0;
    int lost = 0; /* an aggregate of unknown size hides where the rest is */
    if (p->ret.kind == AS_K_AGG) {
        if (p->ret.size == 0)
            lost = 1;
        else if (agg_in_memory(&p->ret))
            gi = 1; /* rdi holds the hidden struct-return pointer */
    }
    int np = p->nparams < AS_PROTO_MAX_PARAMS ? p->nparams : AS_PROTO_MAX_PARAMS;
    for (int i = 0; i < np; i++) {
        const as_type *ty = &p->params[i];
        uint64_t v[2] = {0, 0};
        if (lost || ty->kind == AS_K_VOID || (ty->kind == AS_K_AGG && ty->size == 0)) {
            lost = 1;
            w = put_item(w, end, AS_CAP_SKIP, i, 0, NULL, 0);
            continue;
        }
        switch (ty->kind) {
        case AS_K_FLOAT:
            if (ty->size > 8) { /* long double: memory class, 16-byte aligned */
                so = (so + 15) & ~(size_t)15;
                w = put_mem(w, end, i, stack + so, 16);
                so += 16;
                continue;
            }
            if (si < 8) {
                v[0] = regs->xmm[si++].lo;
                w = put_item(w, end, AS_CAP_VAL, i, 0, v, 8);
            } else {
                w = put_mem(w, end, i, stack + so, 8);
                so += 8;
            }
            continue;
        case AS_K_AGG: {
            int n = (ty->size + 7) / 8, ni = 0, ns = 0;
            if (!agg_in_memory(ty)) {
                for (int k = 0; k < n; k++) {
                    if (ty->cls[k] == AS_AGG_SSE)
                        ns++;
                    else
                        ni++;
                }
            }
            if (agg_in_memory(ty) || gi + ni > 6 || si + ns > 8) {
                w = put_mem(w, end, i, stack + so, ty->size);
                so += pad8(ty->size);
                continue;
            }
            for (int k = 0; k < n; k++)
                v[k] = ty->cls[k] == AS_AGG_SSE ? regs->xmm[si++].lo : regs->gpr[gi++];
            w = put_item(w, end, AS_CAP_VAL, i, 0, v, ty->size);
            continue;
        }
        default: /* integers, bool, enums, pointers, strings: one INTEGER eightbyte */
            if (gi < 6) {
                v[0] = regs->gpr[gi++];
            } else {
                if (as_safe_read(v, stack + so, 8) != 8) {
                    w = put_item(w, end, AS_CAP_SKIP, i, 0, NULL, 0);
                    so += 8;
                    continue;
                }
                so += 8;
            }
            if (ty->kind == AS_K_STR)
                w = put_str(w, end, i, (const char *)(uintptr_t)v[0], max_string);
            else
                w = put_item(w, end, AS_CAP_VAL, i, 0, v, 8);
        }
    }
    f->cap_len = (uint32_t)(w - (a + start));
    as_cap_ts.top = start + f->cap_len;
}

/* ---- the precomputed plan -------------------------------------------------------- */

_Static_assert(sizeof(as_cap_item) == 8 && offsetof(as_cap_item, tag) == 4 &&
                   offsetof(as_cap_item, index) == 5 && offsetof(as_cap_item, flags) == 6,
               "fast item header word");
_Static_assert(offsetof(as_regs, gpr) == 0 && offsetof(as_regs, xmm) == 64 &&
                   sizeof(((as_regs *)0)->xmm[0]) == 16,
               "as_regs words");

void as_capture_plan_make(as_cap_plan *pl, const as_proto *p) {
    pl->fast = 0;
    pl->n = 0;
    pl->nstr = 0;
    pl->gpr_only = 0;
    pl->ret_str = p->ret.kind == AS_K_STR;
    if (p->ret.kind == AS_K_AGG || p->nparams < 0 || p->nparams > AS_PROTO_MAX_PARAMS)
        return; /* a hidden return pointer or an unknown size shifts the registers */
    int gi = 0, si = 0;
    for (int i = 0; i < p->nparams; i++) {
        const as_type *ty = &p->params[i];
        switch (ty->kind) {
        case AS_K_SINT:
        case AS_K_UINT:
        case AS_K_BOOL:
        case AS_K_PTR:
            if (gi >= 6)
                return;
            pl->src[i] = (uint8_t)gi++;
            break;
        case AS_K_FLOAT:
            if (ty->size > 8 || si >= 8)
                return;
            pl->src[i] = (uint8_t)(8 + 2 * si++);
            break;
        case AS_K_STR:
            if (gi >= 6)
                return;
            pl->src[i] = (uint8_t)(AS_PLAN_STR | gi++);
            pl->nstr++;
            break;
        default: /* aggregates, void: the general path */
            return;
        }
    }
    pl->n = (uint8_t)p->nparams;
    pl->fast = 1;
    pl->gpr_only = si == 0;
}

/* One plan per target id, made on the target's first typed call (the installer may attach
 * a DWARF prototype after the target was created, so it is keyed by the prototype). */
as_cap_plan as_cap_plans[AS_MAX_TARGETS] AS_BIG_BSS;

/* Returns the published plan of target id for prototype p, making it when nobody has;
 * NULL when another thread is making it, or it was made for another prototype. */
static inline const as_cap_plan *plan_of(uint32_t id, const as_proto *p) {
    if (id >= AS_MAX_TARGETS)
        return NULL;
    as_cap_plan *pl = &as_cap_plans[id];
    if (__builtin_expect(__atomic_load_n(&pl->proto, __ATOMIC_ACQUIRE) == p, 1))
        return pl;
    uint8_t no = 0;
    if (!__atomic_compare_exchange_n(&pl->claimed, &no, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return NULL;
    as_capture_plan_make(pl, p);
    learn_heap();
    /* What the thunk's assembly entry reads: max_string, and the most the items of one call
     * may take (16 per value, a header and max + 1 bytes padded per string). */
    size_t max = (size_t)as_target_max_string(&as_targets[id]);
    size_t need = 16u * pl->n + (size_t)pl->nstr * (max + 24);
    pl->max = (uint32_t)max;
    pl->need = (uint32_t)need;
    __atomic_store_n(&pl->proto, p, __ATOMIC_RELEASE);
    /* The assembly entry captures its calls from now on (it compares the prototype too:
     * one set since takes the general path); it relies on the break being readable
     * through __curbrk and as_cap_brk_lo being known, as known_len does. */
    if (pl->gpr_only && need <= AS_CAP_MAX_CALL && as_cap_brk_lo != 0 && &__curbrk != NULL &&
        __atomic_load_n(&as_targets[id].proto, __ATOMIC_ACQUIRE) == p)
        __atomic_fetch_or(&as_targets[id].captures, AS_CAPTURES_ASM, __ATOMIC_RELEASE);
    return pl;
}

/* The plan's case with string parameters (kept apart: the all-scalar case then needs no
 * saved register). */
__attribute__((noinline)) static void plan_with_strings(as_shadow_frame *f, const as_cap_plan *pl,
                                                        int max_string, const uint64_t *rw, char *a,
                                                        uint32_t start) {
    size_t lim = start + (size_t)AS_CAP_MAX_CALL;
    char *end = a + (lim < AS_CAP_ARENA ? lim : AS_CAP_ARENA);
    char *w = a + start;
    for (uint32_t i = 0; i < pl->n; i++) {
        uint8_t src = pl->src[i];
        if (src & AS_PLAN_STR)
            w = put_str(w, end, (int)i, (const char *)(uintptr_t)rw[src & ~AS_PLAN_STR],
                        max_string);
        else
            w = put_item(w, end, AS_CAP_VAL, (int)i, 0, &rw[src], 8);
    }
    f->cap_off = start;
    f->cap_len = (uint32_t)(w - (a + start));
    as_cap_ts.top = f->cap_off + f->cap_len;
}

void as_capture_entry_plan(as_shadow_frame *f, const as_proto *p, int max_string,
                           const as_regs *regs, void *const *slot) {
    const as_cap_plan *pl = plan_of(f->id, p);
    uint32_t n = pl && pl->fast ? pl->n : UINT32_MAX;
    char *a = as_cap_ts.arena;
    uint32_t start = as_cap_ts.top;
    /* Anything else (no plan yet, no arena yet, a full arena) takes the general path. */
    if (__builtin_expect(n == UINT32_MAX || !a || (size_t)start + 16 * n > AS_CAP_ARENA, 0)) {
        as_capture_entry(f, p, max_string, regs, slot);
        return;
    }
    const uint64_t *rw = (const uint64_t *)(const void *)regs;
    if (pl->nstr) {
        plan_with_strings(f, pl, max_string, rw, a, start);
        return;
    }
    uint64_t *w = (uint64_t *)(void *)(a + start); /* items are padded to 8 */
    for (uint32_t i = 0; i < n; i++) {
        /* as_cap_item {len 8, AS_CAP_VAL, index i, no flags}, then the register word */
        w[2 * i] = 8u | (uint64_t)AS_CAP_VAL << 32 | (uint64_t)i << 40;
        w[2 * i + 1] = rw[pl->src[i]];
    }
    f->cap_off = start;
    f->cap_len = 16 * n;
    as_cap_ts.top = start + 16 * n;
}

void as_capture_exit(as_shadow_frame *f, const as_proto *p, int max_string, const as_retregs *r) {
    if (f->cap_off == UINT32_MAX || !as_cap_ts.arena)
        return;
    const as_type *rt = &p->ret;
    if (rt->kind != AS_K_STR && rt->kind != AS_K_AGG)
        return;
    uint32_t start = f->cap_off + f->cap_len;
    size_t lim = (size_t)f->cap_off + AS_CAP_MAX_CALL;
    char *end = as_cap_ts.arena + (lim < AS_CAP_ARENA ? lim : AS_CAP_ARENA);
    char *w = as_cap_ts.arena + start;
    if (rt->kind == AS_K_STR) {
        w = put_str(w, end, AS_CAP_RET, (const char *)(uintptr_t)r->rax, max_string);
    } else if (rt->size == 0) {
        w = put_item(w, end, AS_CAP_SKIP, AS_CAP_RET, 0, NULL, 0);
    } else if (agg_in_memory(rt)) {
        w = put_mem(w, end, AS_CAP_RET, (const void *)(uintptr_t)r->rax, rt->size);
    } else {
        /* INTEGER eightbytes come in rax then rdx, SSE ones in xmm0 then xmm1. */
        uint64_t v[2] = {0, 0}, ints[2] = {r->rax, r->rdx}, sses[2] = {r->xmm[0].lo, r->xmm[1].lo};
        int ni = 0, ns = 0;
        for (int k = 0; k < (rt->size + 7) / 8; k++)
            v[k] = rt->cls[k] == AS_AGG_SSE ? sses[ns++] : ints[ni++];
        w = put_item(w, end, AS_CAP_VAL, AS_CAP_RET, 0, v, rt->size);
    }
    f->cap_len = (uint32_t)(w - (as_cap_ts.arena + f->cap_off));
    as_cap_ts.top = f->cap_off + f->cap_len;
}

/* ---- vector state of the full-preservation thunk ---------------------------------- */

/* What the C side of a call may reach, by path (thunk.c, pipeline.h, this file), and what
 * of it calls a library routine that may use AVX/EVEX registers:
 *   entry  as_hook_enter_full: a thread's first tracked call maps its shadow stack and
 *          learns its stack bounds (mmap, /proc/self/maps), the errno location,
 *          as_clock_raw (rdtsc, or the vDSO), typed capture (library-free here once the
 *          thread's arena is mapped; slow reads make plain system calls), and records
 *          for frames a longjmp left (drop_dead -> emit).
 *   exit   as_hook_exit: as_clock_raw, as_capture_exit, emit: as_pipe_reserve (inline;
 *          its slow path maps the thread's ring on its first record; a full ring only
 *          counts a drop), gettid once per thread, then the copy of the capture items
 *          into the record (thunk.c: memcpy, unless it defines as_record_copy_library_free
 *          and copies with as_capture_copy).
 * So a wide save is needed until a tracked call has returned through the full path on
 * this thread (as_cap_ts.warm: by then its shadow stack, errno location and thread id are
 * known), while the thread has no ring, at a typed target's first call on a thread (its
 * arena is mapped), and, while records are copied with memcpy, whenever a record with
 * items may be written: at an entry, while a frame with items is in flight (dead frames
 * are written there); at an exit, on any thread that ever captured (the exit cannot tell
 * whether the returning call did). Everything else on both paths is library-free: keep
 * it so, or name the new case here (tests/unit/test_fullregs.c checks the registers). */

/* 1 when a record with capture items is copied by a library routine (see above). */
static inline int items_copy_risky(void) {
    return &as_record_copy_library_free == NULL;
}

int as_capture_vec_risk_entry(uint32_t id) {
    if (__builtin_expect(!as_cap_ts.warm || as_pipe_tring == NULL, 0))
        return 1;
    if (as_cap_ts.top != 0 && items_copy_risky())
        return 1;
    if (id >= AS_MAX_TARGETS)
        return 1;
    if (as_cap_ts.arena != NULL || as_cap_ts.arena_failed)
        return 0;
    /* Would this call map the arena? It does when it captures. */
    return as_capture_proto(&as_targets[id]) != NULL;
}

int as_capture_vec_risk_exit(void) {
    if (__builtin_expect(!as_cap_ts.warm, 0)) {
        as_cap_ts.warm = 1; /* this exit is saved wide; the thread's first-call work ends with it */
        return 1;
    }
    if (__builtin_expect(as_pipe_tring == NULL, 0))
        return 1;
    /* The returning frame itself is not read (rbp may point into the shadow stack of a
     * thread that exited: a coroutine resumed elsewhere): any thread that captured items
     * once may be writing some now. */
    return items_copy_risky() && (as_cap_ts.top != 0 || as_cap_ts.arena != NULL);
}
