/* ring.c - mapping (anonymous or file-backed) and consumer side of the per-thread
 * message ring (see ring.h for the layout), and the reading of ring files that dead
 * processes left; the producer side is inline in ring.h because it is on the hot path. */
#include "core/fdio.h"
#include "ring.h"

#include "crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(offsetof(as_ring, tail) == 64, "tail on its own cache line");
_Static_assert(offsetof(as_ring, pending) == 128, "producer-private line");
_Static_assert(offsetof(as_ring, magic) == 192, "constants line");
_Static_assert(offsetof(as_ring, info) == 256, "identity after the constants");
_Static_assert(sizeof(as_ring) <= AS_RING_DATA_OFF, "header fits before data");

/* Bytes of the whole mapping for a ring of size record bytes. */
static size_t map_bytes(uint64_t size) {
    return AS_RING_DATA_OFF + (size_t)size;
}

static void init_header(as_ring *r, uint64_t size, size_t len, int is_file) {
    r->magic = AS_RING_MAGIC;
    r->version = AS_RING_VERSION;
    r->is_file = (uint32_t)is_file;
    r->size = size;
    r->mask = size - 1;
    r->map_len = len;
    r->limit = size; /* tail 0 */
    atomic_store_explicit(&r->sink_mark, AS_RING_NO_MARK, memory_order_relaxed);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

int as_ring_prefault(as_ring *r, size_t bytes) {
    if (!r)
        return -1;
    size_t len = (size_t)AS_RING_DATA_OFF + (bytes < r->size ? bytes : (size_t)r->size);
    int saved = errno;
    int rc = madvise(r, len, MADV_POPULATE_WRITE);
    errno = saved;
    return rc;
}

/* Returns the ring, or NULL when data_bytes is absurd or mmap failed (nothing mapped). */
as_ring *as_ring_create(size_t data_bytes) {
    if (data_bytes > ((size_t)1 << 40))
        return NULL;
    uint64_t size = as_ring_create_size(data_bytes);
    size_t len = map_bytes(size);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    as_ring *r = p; /* anonymous memory is zero: head = tail = dropped = 0 */
    init_header(r, size, len, 0);
    return r;
}

/* Returns the ring, or NULL with errno set; the file is removed again on any failure. */
as_ring *as_ring_create_file(const char *path, size_t data_bytes, const as_ring_info *info) {
    if (data_bytes > ((size_t)1 << 40)) {
        errno = EINVAL;
        return NULL;
    }
    uint64_t size = as_ring_create_size(data_bytes);
    size_t len = map_bytes(size);
    int fd = as_open_high(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return NULL;
    void *p = MAP_FAILED;
    int ok = ftruncate(fd, (off_t)len) == 0;
    /* The whole file is allocated: a write into a hole that a full disk cannot fill would
     * be a SIGBUS in the program. (Rings of the threads past the first few are small:
     * pipeline.c, ring_bytes_for.) */
    if (ok && fallocate(fd, 0, 0, (off_t)len) != 0 && errno != EOPNOTSUPP && errno != ENOSYS)
        ok = 0;
    if (ok)
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int saved = errno;
    close(fd);
    if (p == MAP_FAILED) {
        unlink(path);
        errno = saved;
        return NULL;
    }
    as_ring *r = p; /* a new file reads as zeros */
    r->info = *info;
    init_header(r, size, len, 1);
    return r;
}

/* This function can't fail. */
void as_ring_destroy(as_ring *r) {
    if (!r)
        return;
    munmap(r, r->map_len);
}

#define AS_MSG_SUMMARY_KIND 3 /* AS_MSG_SUMMARY (pipeline.h) */

int as_ring_sum_flush(as_ring *r) {
    while (r->sum_n > 0) {
        void *s = as_ring_reserve(r, AS_MSG_SUMMARY_KIND, AS_SUM_REC_LEN);
        if (!s)
            return 0;
        uint32_t last = r->sum_n - 1;
        as_sum_rec_fill(s, &r->sums[last]);
        /* Taken out of the table before the record is visible: a reader of a dead
         * process's file sees the call in one place or the other (the record is
         * committed right after; a death in between loses this one summary). */
        memset(&r->sums[last], 0, sizeof r->sums[last]);
        __atomic_store_n(&r->sum_n, last, __ATOMIC_RELAXED);
        atomic_signal_fence(memory_order_seq_cst);
        as_ring_commit(r);
    }
    return 1;
}

void as_sum_rec_fill(void *out, const as_sum *s) {
    uint32_t trailer[2] = {as_crc32c(0xffffffffu, s, sizeof *s), 0};
    memcpy(out, s, sizeof *s);
    memcpy((unsigned char *)out + sizeof *s, trailer, sizeof trailer);
}

int as_sum_rec_intact(const void *payload, size_t len) {
    uint32_t sum;
    if (!payload || len != AS_SUM_REC_LEN)
        return 0;
    memcpy(&sum, (const unsigned char *)payload + sizeof(as_sum), sizeof sum);
    return as_crc32c(0xffffffffu, payload, sizeof(as_sum)) == sum;
}

int as_ring_sum_copy(const as_ring *r, as_sum *out) {
    uint32_t n = r->sum_n < AS_SUM_SLOTS ? r->sum_n : AS_SUM_SLOTS;
    int k = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (r->sums[i].id == 0 || r->sums[i].calls == 0)
            continue;
        out[k++] = r->sums[i];
    }
    return k;
}

int as_ring_sum_take(as_ring *r, as_sum *out) {
    int k = as_ring_sum_copy(r, out);
    memset(r->sums, 0, sizeof r->sums);
    __atomic_store_n(&r->sum_n, 0, __ATOMIC_RELAXED);
    return k;
}

void as_ring_reset(as_ring *r) {
    uint64_t head = as_ring_head(r);
    as_ring_release(r, head);
    r->pending = head;
    r->limit = head + r->size;
    atomic_store(&r->dropped, 0);
    atomic_store(&r->dropped_sig, 0);
    atomic_store(&r->summarized, 0);
    memset(r->sums, 0, sizeof r->sums);
    __atomic_store_n(&r->sum_n, 0, __ATOMIC_RELAXED);
}

/* Returns 1 when the header at pos (offset off in data) is a valid record header of a
 * ring of size bytes, with rec its full size. */
static int header_ok(const uint32_t *hdr, uint64_t pos, uint64_t off, uint64_t size,
                     uint64_t *rec) {
    if ((hdr[1] >> 16) != as_ring_tag(pos))
        return 0;
    *rec = as_ring_rec_size(hdr[0]);
    return off + *rec <= size;
}

/* Gives the pages of record positions [lo, hi) (page-aligned, hi - lo <= size) back to
 * the system: no longer resident (the file keeps its blocks: a write into a hole that a
 * full disk cannot fill would be a SIGBUS in the program), or fresh zero pages
 * (anonymous). */
static void trim_range(as_ring *r, uint64_t lo, uint64_t hi) {
    unsigned char *data = as_ring_data(r);
    while (lo < hi) {
        uint64_t off = lo & r->mask;
        uint64_t n = hi - lo < r->size - off ? hi - lo : r->size - off;
        madvise(data + off, (size_t)n, MADV_DONTNEED);
        lo += n;
    }
}

void as_ring_give_back(as_ring *r) {
    int saved = errno;
    trim_range(r, 0, r->size);
    errno = saved;
}

void as_ring_release_trim(as_ring *r, uint64_t cursor) {
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t pg = AS_RING_PAGE;
    uint64_t lo = (tail + pg - 1) & ~(pg - 1);
    uint64_t hi = cursor & ~(pg - 1);
    if (hi > lo && cursor <= tail + r->size) {
        int saved = errno;
        trim_range(r, lo, hi);
        errno = saved;
    }
    as_ring_release(r, cursor);
}

/* Returns the next payload at *cursor (padding skipped), or NULL at head. A corrupt
 * header ends the read at head so the consumer never reads outside the mapping. */
const void *as_ring_read(as_ring *r, uint64_t *cursor, uint64_t head, unsigned *kind, size_t *len) {
    unsigned char *data = as_ring_data(r);
    while (*cursor < head) {
        uint64_t off = *cursor & r->mask;
        const uint32_t *hdr = (const uint32_t *)(data + off);
        uint64_t rec;
        if (!header_ok(hdr, *cursor, off, r->size, &rec) || *cursor + rec > head) {
            *cursor = head;
            return NULL;
        }
        *cursor += rec;
        if ((hdr[1] & 0xffffu) == AS_RING_PAD)
            continue;
        *kind = hdr[1] & 0xffffu;
        *len = hdr[0];
        return data + off + AS_RING_HDR;
    }
    return NULL;
}

/* ---- ring files left by dead processes ---------------------------------------------- */

/* ---- event ids ------------------------------------------------------------------------ */

static void hex64(char *out, uint64_t v) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = digits[v & 15];
        v >>= 4;
    }
}

void as_ring_event_id(uint64_t prefix, uint64_t pos, char out[33]) {
    hex64(out, prefix);
    hex64(out + 16, pos);
    out[32] = '\0';
}

int as_ring_event_id_parse(const char *id, size_t len, uint64_t *prefix, uint64_t *pos) {
    if (len != 32)
        return -1;
    uint64_t v[2] = {0, 0};
    for (size_t i = 0; i < 32; i++) {
        char c = id[i];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                            : 16u;
        if (d == 16)
            return -1;
        v[i / 16] = v[i / 16] << 4 | d;
    }
    *prefix = v[0];
    *pos = v[1];
    return 0;
}

/* splitmix64 finaliser: spreads every input bit over the result. */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t as_ring_id_prefix(int pid, uint64_t start_time, uint64_t image, uint32_t slot,
                           uint64_t serial) {
    uint64_t h = mix64((uint64_t)(uint32_t)pid ^ 0x6167736576656e74ull);
    h = mix64(h ^ start_time);
    h = mix64(h ^ image);
    h = mix64(h ^ ((uint64_t)slot << 32 | (serial & 0xffffffffu)));
    return h ? h : 1;
}

uint64_t as_sum_id_pos(uint64_t head, const as_sum *s) {
    uint64_t h = mix64(head ^ 0x73756d6d61727921ull);
    h = mix64(h ^ ((uint64_t)s->id << 32 | (uint32_t)s->tid));
    h = mix64(h ^ s->t_first);
    return AS_SUM_ID_BIT | (h & ~AS_SUM_ID_BIT);
}

void as_sum_event_id(uint64_t prefix, uint64_t head, const as_sum *s, char out[33]) {
    as_ring_event_id(prefix, as_sum_id_pos(head, s), out);
}

/* ---- ring files left by dead processes ---------------------------------------------- */

/* 1 when the page at p holds only zero bytes. */
static int zero_page(const unsigned char *p) {
    const uint64_t *w = (const uint64_t *)p;
    for (size_t i = 0; i < AS_RING_PAGE / 8; i++) {
        if (w[i])
            return 0;
    }
    return 1;
}

int as_ring_walk(as_ring *r, uint64_t *pos, as_ring_rec_fn fn, void *ctx, uint64_t *skipped) {
    unsigned char *data = as_ring_data(r);
    uint64_t head = atomic_load(&r->head);
    uint64_t tail = atomic_load(&r->tail);
    if (head < tail || head - tail > r->size) { /* garbage counters: nothing is trusted */
        *pos = head;
        return 1;
    }
    uint64_t p = *pos < tail ? tail : *pos;
    while (p < head) {
        uint64_t off = p & r->mask;
        const uint32_t *hdr = (const uint32_t *)(data + off);
        uint64_t rec;
        /* A page given back (as_ring_release_trim) by a process that died before it
         * stored the tail past it: records already delivered, not damage (no record
         * starts a page with 4096 zero bytes: its header holds its length or tag). */
        if ((p & (AS_RING_PAGE - 1)) == 0 && p + AS_RING_PAGE <= head && zero_page(data + off)) {
            p += AS_RING_PAGE;
            continue;
        }
        if (!header_ok(hdr, p, off, r->size, &rec) || p + rec > head) {
            /* Torn or corrupt: step to the next position whose header carries its tag. */
            p += 8;
            *skipped += 8;
            continue;
        }
        unsigned kind = hdr[1] & 0xffffu;
        if (kind != AS_RING_PAD && fn(kind, data + off + AS_RING_HDR, hdr[0], p, ctx) != 0) {
            *pos = p;
            return 0;
        }
        p += rec;
    }
    *pos = head;
    return 1;
}

as_ring *as_ring_file_map(const char *path) {
    int fd = as_open_high(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
    if (fd < 0)
        return NULL;
    struct stat st;
    /* A file someone else owns may be forged: never ship it as ours. */
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        (uint64_t)st.st_size < AS_RING_DATA_OFF) {
        close(fd);
        return NULL;
    }
    /* Read the constants first: the mapping is sized from them only when they agree with
     * the file (a truncated file would fault past its end). */
    as_ring head_copy;
    ssize_t n = pread(fd, &head_copy, sizeof head_copy, 0);
    uint64_t size = head_copy.size;
    if (n != (ssize_t)sizeof head_copy || head_copy.magic != AS_RING_MAGIC ||
        head_copy.version != AS_RING_VERSION || size < AS_RING_MIN || size > ((uint64_t)1 << 40) ||
        (size & (size - 1)) != 0 || head_copy.mask != size - 1 ||
        (uint64_t)st.st_size != map_bytes(size)) {
        close(fd);
        return NULL;
    }
    void *p = mmap(NULL, map_bytes(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return NULL;
    as_ring *r = p;
    r->map_len = map_bytes(size); /* as_ring_destroy unmaps what was mapped here */
    r->info.conversation_id[sizeof r->info.conversation_id - 1] = '\0';
    r->info.sinks[sizeof r->info.sinks - 1] = '\0';
    r->info.run_id[sizeof r->info.run_id - 1] = '\0';
    return r;
}

int as_ring_file_lost(const char *path, as_ring_lost *out) {
    memset(out, 0, sizeof *out);
    int fd = as_open_high(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
    if (fd < 0)
        return -1;
    struct stat st;
    as_ring h;
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
             pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h && h.magic == AS_RING_MAGIC &&
             h.version == AS_RING_VERSION;
    close(fd);
    if (!ok)
        return -1;
    out->dropped = h.dropped;
    out->dropped_sig = h.dropped_sig;
    out->summarized = h.summarized;
    uint32_t n = h.sum_n < AS_SUM_SLOTS ? h.sum_n : AS_SUM_SLOTS;
    for (uint32_t i = 0; i < n; i++) {
        if (h.sums[i].id != 0 && h.sums[i].calls != 0)
            out->sums[out->nsums++] = h.sums[i];
    }
    return 0;
}

/* The start time of pid (0 when unknown) and its state letter in *state. */
static uint64_t proc_stat(int pid, char *state) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = as_open_high(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: count from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    if (p[0] == ' ')
        *state = p[1];
    for (int field = 2; field < 21 && p; field++) {
        p = strchr(p + 1, ' ');
    }
    if (!p)
        return 0;
    return strtoull(p + 1, NULL, 10);
}

uint64_t as_proc_start_time(int pid) {
    char state;
    return proc_stat(pid, &state);
}

int as_proc_dead(int pid, uint64_t start_time) {
    if (pid <= 0)
        return 1;
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 1;
    char state = 0;
    uint64_t now = proc_stat(pid, &state);
    if (now == 0) /* gone between the two looks, or another namespace: treat as live */
        return kill(pid, 0) != 0 && errno == ESRCH;
    return now != start_time || state == 'Z' || state == 'X'; /* a zombie writes no more */
}
