/* ring.h - the per-thread single-producer/single-consumer byte ring that carries messages
 * from a producing thread to the exporter without a lock, a syscall or a malloc; the
 * same ring may live in a file so that what a process recorded survives its death.
 *
 * Layout of one ring (one mapping: anonymous, or MAP_SHARED of a file in
 * <spool>/rings/ made by as_ring_create_file(); the file holds exactly these bytes):
 *
 *   offset 0     head      committed bytes (monotonic), release-stored by the producer;
 *                          the only cache line the producer writes that others read
 *   offset 64    tail      consumed bytes (monotonic), release-stored by the consumer
 *                          once its records are durable in every sink (never before)
 *                sink_mark consumer-private: a byte offset of the last file sink before
 *                          which no record of this ring past tail was written
 *                          (AS_RING_NO_MARK: none was ever handed to a file sink), so a
 *                          recoverer knows where to look for what is already there
 *                delivered, reported  actions of the ring its own exporter delivered, and
 *                          that count when the process last reported it (stats line), so
 *                          what a process that died without reporting delivered is counted
 *   offset 128   pending   producer-private: head after the open reservation; equal to
 *                          head while none is open (AS_RING_CLAIMED while one is being made)
 *                limit     producer-private: last tail it read + size (room check)
 *                dropped   messages the producer dropped: no room (only it writes)
 *                dropped_sig  ... refused because a signal handler interrupted a write
 *                summarized   calls counted into the summary table instead of recorded
 *   offset 192   magic, version, size, mask, map_len, file flag (set once)
 *   offset 256   as_ring_info: who wrote the ring (file-backed rings; zero otherwise)
 *   then         sum_spare, sum_n, sums[AS_SUM_SLOTS]: per-function summaries of calls
 *                that found the ring full (queue = drop), producer-written; moved into
 *                the ring as AS_MSG_SUMMARY records once there is room (as_ring_sum_*)
 *   offset 4096  data[size]: records
 *
 * A record is an 8-byte header {uint32 len; uint16 kind; uint16 tag} then len payload
 * bytes padded to 8. tag is a hash of the record's position (as_ring_tag), so a header
 * that is garbage, stale or shifted is recognised by whoever reads a ring file left by a
 * dead process. A record never wraps: when it does not fit before the end of data, a
 * padding record (kind AS_RING_PAD) fills the rest and the record starts at offset 0.
 * Counters never wrap in practice (64-bit byte counts).
 *
 * Commit protocol: the producer writes header and payload, then stores head. Every
 * record below head is complete, also in the file of a process killed at any point.
 *
 * One reservation at a time, also against a signal handler of the producing thread: a
 * reservation is claimed (pending = AS_RING_CLAIMED) before head is read, and a producer
 * that finds pending != head has interrupted an open one and is refused (as_ring_open). */
#ifndef AS_RING_H
#define AS_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define AS_RING_PAD 0
#define AS_RING_HDR 8
#define AS_RING_MIN 4096
#define AS_RING_DATA_OFF 4096 /* data starts one page into the mapping */
#define AS_RING_PAGE 4096     /* the unit in which consumed record space is given back */
#define AS_RING_ALLOC0 16384  /* record bytes of a ring file allocated at its creation */
#define AS_RING_MAGIC 0x31474e4952534741ull /* "AGSRING1" little-endian */
#define AS_RING_VERSION                                                                            \
    3 /* 2: event ids, run id, file sink mark, drop summaries; 3: call record checksums */
#define AS_RING_CLAIMED UINT64_MAX /* pending while a reservation is being made */
#define AS_RING_NO_MARK UINT64_MAX /* sink_mark: nothing of the ring went to a file sink */

/* Who wrote a file-backed ring, for whoever recovers it. Written once at creation. */
typedef struct as_ring_info {
    int32_t pid;
    uint32_t slot;           /* registry slot of the writing thread */
    uint64_t start_time;     /* process start, /proc/PID/stat field 22 (clock ticks) */
    uint64_t image;          /* distinguishes program images of one pid (exec) */
    uint64_t clock_raw0;     /* a raw clock value (as_clock_raw) ... */
    int64_t clock_unix0;     /* ... and the Unix ns it stood for */
    double clock_ns_per_raw; /* raw units -> ns */
    char conversation_id[264];
    char sinks[1024];   /* the writer's sink URIs, without user:password@ */
    uint64_t id_prefix; /* first half of every event id of this ring (as_ring_event_id) */
    char run_id[64];    /* AGENTSIGHT_RUN_ID of the writer ("" outside `agentsight run`) */
} as_ring_info;

/* The summary of the calls of one function that found a thread's ring full: the payload
 * of an AS_MSG_SUMMARY record (kind 3) and a slot of the ring header. Durations in ns;
 * hist[k] counts calls of duration in [2^k, 2^(k+1)) ns (k = 0 also holds 0 ns, the last
 * bucket everything longer). t_first/t_last: raw clock of the first entry and the last
 * return. */
#define AS_SUM_SLOTS 12
#define AS_SUM_BUCKETS 32
typedef struct as_sum {
    uint32_t id; /* target id + 1; 0 = free slot */
    int32_t tid;
    uint64_t calls, errors;
    uint64_t total_ns, min_ns, max_ns;
    uint64_t t_first, t_last;
    uint32_t hist[AS_SUM_BUCKETS];
} as_sum;

typedef struct as_ring {
    _Alignas(64) _Atomic uint64_t head;
    _Alignas(64) _Atomic uint64_t tail;
    _Atomic uint64_t sink_mark;
    _Atomic uint64_t delivered; /* consumer: actions of this ring the sinks took */
    _Atomic uint64_t reported;  /* delivered when the process last wrote its stats line */
    _Alignas(64) uint64_t pending;
    uint64_t limit;
    _Atomic uint64_t dropped;
    _Atomic uint64_t dropped_sig;
    _Atomic uint64_t summarized;
    _Alignas(64) uint64_t magic;
    uint32_t version;
    uint32_t is_file;
    uint64_t size;
    uint64_t mask;
    uint64_t map_len;
    _Alignas(64) as_ring_info info;
    /* Summaries (queue = drop): written by the producer only. sum_spare is not written
     * (rings of earlier builds counted changes of the table in it; no reader ever used
     * it: a ring's table is read once no one writes it any more). */
    _Alignas(64) uint32_t sum_spare;
    uint32_t sum_n; /* slots in use (written with __atomic_store_n: the exporter peeks) */
    as_sum sums[AS_SUM_SLOTS];
} as_ring;

/* The record space of r. */
static inline unsigned char *as_ring_data(as_ring *r) {
    return (unsigned char *)r + AS_RING_DATA_OFF;
}

/* The record space as_ring_create(data_bytes) gives: a power of two >= AS_RING_MIN. */
static inline uint64_t as_ring_create_size(size_t data_bytes) {
    uint64_t size = AS_RING_MIN;
    while (size < data_bytes && size < ((uint64_t)1 << 40))
        size <<= 1;
    return size;
}

/* The header tag of a record starting at byte position pos. */
static inline uint32_t as_ring_tag(uint64_t pos) {
    return (uint32_t)((pos * 0x9E3779B97F4A7C15ull) >> 48);
}

/* Maps an anonymous ring with data_bytes of record space (rounded up to a power of two,
 * at least AS_RING_MIN). Returns the ring, or NULL when the mapping failed (nothing is
 * left mapped). */
/* Maps the first bytes of the ring's records (and its header page) writable now, contents
 * unchanged, so the hot path does not take the page fault of a first write (about 1 us,
 * once per 56 records on a fresh ring). Bounded by the caller: what it maps stays resident.
 * Returns 0, or -1 when the kernel cannot (before Linux 5.14: pages then fault as used). */
int as_ring_prefault(as_ring *r, size_t bytes);

as_ring *as_ring_create(size_t data_bytes);

/* Creates the file path (mode 0600, O_EXCL: an existing file is never overwritten) and
 * maps it MAP_SHARED as a ring of data_bytes, with *info copied into its header. Returns
 * the ring, or NULL with errno set (no file is left behind). */
as_ring *as_ring_create_file(const char *path, size_t data_bytes, const as_ring_info *info);

/* Unmaps r (NULL is accepted). A ring file is left on disk. This function can't fail. */
void as_ring_destroy(as_ring *r);

/* Bytes a message of payload_len takes in the ring, header and padding included. */
static inline uint64_t as_ring_rec_size(size_t payload_len) {
    return AS_RING_HDR + (((uint64_t)payload_len + 7) & ~(uint64_t)7);
}

/* 1 when a message of payload_len can ever fit in r (needs at most half the ring, so a
 * padding record plus the message always fit once the ring is empty). */
static inline int as_ring_fits(const as_ring *r, size_t payload_len) {
    return payload_len <= UINT32_MAX && as_ring_rec_size(payload_len) <= r->size / 2;
}

/* Producer, taking a ring over from a thread that died inside a write (its reservation
 * left claimed): nothing is open any more. */
static inline void as_ring_close_open(as_ring *r) {
    r->pending = atomic_load_explicit(&r->head, memory_order_relaxed);
}

/* Producer: 1 while a reservation of r is open on its thread, i.e. when called from a
 * signal handler that interrupted the producer between reserve and commit (or the
 * thunk's own record write). Nothing may be reserved then. */
static inline int as_ring_open(const as_ring *r) {
    return r->pending != atomic_load_explicit(&r->head, memory_order_relaxed);
}

/* Producer: 1 when a message of payload_len has room in r now (its cached limit, or the
 * consumer's tail read again); 0 when the ring is full for it. Reserves nothing. */
static inline int as_ring_room(as_ring *r, size_t payload_len) {
    uint64_t need = as_ring_rec_size(payload_len);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t contig = r->size - (head & (r->size - 1));
    uint64_t total = contig < need ? contig + need : need;
    if (head + total <= r->limit)
        return 1;
    r->limit = atomic_load_explicit(&r->tail, memory_order_acquire) + r->size;
    return head + total <= r->limit;
}

/* Producer: reserves payload_len bytes for a message of kind (1..65535). Returns an
 * 8-byte aligned payload pointer, or NULL when the ring has no room now or a reservation
 * is open (as_ring_open: nothing changed). Only the owning thread calls it; at most one reservation
 * is open at a time. Reads the consumer's tail only when its cached limit says the ring is full;
 * writes nothing another thread reads. */
static inline void *as_ring_reserve(as_ring *r, unsigned kind, size_t payload_len) {
    if (!as_ring_fits(r, payload_len) || as_ring_open(r))
        return NULL;
    /* Claimed before head is read: a signal handler that runs from here on is refused,
     * one that ran before has committed all it wrote. */
    r->pending = AS_RING_CLAIMED;
    atomic_signal_fence(memory_order_seq_cst);
    uint64_t need = as_ring_rec_size(payload_len);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t size = r->size;
    uint64_t off = head & (size - 1);
    uint64_t contig = size - off;
    uint64_t total = contig < need ? contig + need : need;
    if (__builtin_expect(head + total > r->limit, 0)) {
        r->limit = atomic_load_explicit(&r->tail, memory_order_acquire) + size;
        if (head + total > r->limit) {
            atomic_signal_fence(memory_order_seq_cst);
            r->pending = head; /* nothing open */
            return NULL;
        }
    }
    unsigned char *data = as_ring_data(r);
    if (__builtin_expect(contig < need, 0)) {
        uint32_t *pad = (uint32_t *)(data + off);
        pad[0] = (uint32_t)(contig - AS_RING_HDR);
        pad[1] = AS_RING_PAD | (as_ring_tag(head) << 16);
        head += contig;
        off = 0;
    }
    uint32_t *hdr = (uint32_t *)(data + off);
    hdr[0] = (uint32_t)payload_len;
    hdr[1] = (kind & 0xffffu) | (as_ring_tag(head) << 16);
    r->pending = head + need;
    return data + off + AS_RING_HDR;
}

/* Producer: publishes the open reservation (release store of head: a plain store on
 * x86-64). */
static inline void as_ring_commit(as_ring *r) {
    atomic_store_explicit(&r->head, r->pending, memory_order_release);
}

/* Bytes committed and not yet consumed. Either side may call it. */
static inline uint64_t as_ring_used(as_ring *r) {
    return atomic_load_explicit(&r->head, memory_order_acquire) -
           atomic_load_explicit(&r->tail, memory_order_acquire);
}

static inline uint64_t as_ring_head(as_ring *r) {
    return atomic_load_explicit(&r->head, memory_order_acquire);
}
static inline uint64_t as_ring_tail(as_ring *r) {
    return atomic_load_explicit(&r->tail, memory_order_relaxed);
}

/* Consumer: reads the message at *cursor (a byte count between tail and head, head read
 * with as_ring_head()). Skips padding. Returns the payload and sets *kind, *len and
 * advances *cursor past the message; returns NULL when *cursor reached head. A header
 * that is not valid ends the read at head (the consumer never reads outside the ring). */
const void *as_ring_read(as_ring *r, uint64_t *cursor, uint64_t head, unsigned *kind, size_t *len);

/* Consumer: frees everything before cursor for the producer (release store of tail). */
static inline void as_ring_release(as_ring *r, uint64_t cursor) {
    atomic_store_explicit(&r->tail, cursor, memory_order_release);
}

/* Consumer: as as_ring_release, after giving back to the system the whole pages of
 * records between the tail stored now and cursor (a hole punched in a ring file, zero
 * pages in an anonymous ring), so a ring costs the pages its unconsumed records take, not
 * every page it ever wrote. Only pages that lie wholly in [tail, cursor) before tail
 * moves: the producer writes below the old tail + size only, i.e. never into them (a page
 * the tail stands in stays until the next lap). A reader of the file after a death reads
 * from the tail on, so it never reads a hole. Not called by the exporter: a busy producer
 * faults every page given back in again on its next lap (about ten times the cost of a
 * call in bench-hook). */
void as_ring_release_trim(as_ring *r, uint64_t cursor);

/* Consumer, once no producer writes r any more (its thread exited, its records consumed):
 * gives all its record pages back to the system, contents left as zeros. */
void as_ring_give_back(as_ring *r);

/* Producer: counts one dropped message (single writer: no read-modify-write). */
static inline void as_ring_count_drop(as_ring *r) {
    atomic_store_explicit(&r->dropped, atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Counts one message refused because a signal handler interrupted the producer's own
 * write (as_ring_open). Producer only. */
static inline void as_ring_count_drop_sig(as_ring *r) {
    atomic_store_explicit(&r->dropped_sig,
                          atomic_load_explicit(&r->dropped_sig, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* The log2 bucket of a duration of ns nanoseconds. */
static inline unsigned as_sum_bucket(uint64_t ns) {
    unsigned k = ns ? 63u - (unsigned)__builtin_clzll(ns) : 0;
    return k < AS_SUM_BUCKETS ? k : AS_SUM_BUCKETS - 1;
}

/* Producer: counts one call of target id (tid, raw times t0..t1, dur_ns, failed) into
 * the summary table. Returns 1, or 0 when the table holds AS_SUM_SLOTS other functions
 * already (the call is then not accounted here: the caller counts a drop). Forces the
 * producer's next write through the slow path (limit 0), which moves the table into the
 * ring first (as_ring_sum_flush). No atomic read-modify-write, no call. */
static inline int as_ring_sum_add(as_ring *r, uint32_t id, int32_t tid, uint64_t t0, uint64_t t1,
                                  uint64_t dur_ns, int failed) {
    as_sum *s = NULL;
    uint32_t n = r->sum_n;
    for (uint32_t i = 0; i < n; i++) {
        if (r->sums[i].id == id + 1) {
            s = &r->sums[i];
            break;
        }
    }
    if (!s && n >= AS_SUM_SLOTS)
        return 0;
    if (!s) {
        s = &r->sums[n];
        *s = (as_sum){.id = id + 1, .tid = tid, .min_ns = dur_ns, .t_first = t0};
        __atomic_store_n(&r->sum_n, n + 1, __ATOMIC_RELAXED);
    }
    s->calls++;
    s->errors += failed != 0;
    s->total_ns += dur_ns;
    if (dur_ns < s->min_ns)
        s->min_ns = dur_ns;
    if (dur_ns > s->max_ns)
        s->max_ns = dur_ns;
    s->t_last = t1;
    s->hist[as_sum_bucket(dur_ns)]++;
    atomic_store_explicit(&r->summarized,
                          atomic_load_explicit(&r->summarized, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    r->limit = 0; /* the next write goes through as_ring_sum_flush */
    return 1;
}

/* An AS_MSG_SUMMARY record: the as_sum, then its checksum (4 bytes: CRC-32C of the
 * as_sum's bytes from 0xffffffff, crc32c.h) and 4 zero bytes. Decoders are handed
 * summaries in this form only, also those taken from a ring's header table. */
#define AS_SUM_REC_LEN (sizeof(as_sum) + 8)

/* Writes s and its checksum at out (AS_SUM_REC_LEN bytes, 8-byte aligned). */
void as_sum_rec_fill(void *out, const as_sum *s);

/* 1 when the payload of len bytes is a summary record whose checksum matches (it may
 * then be copied into an as_sum); 0 when it is damaged or of another length. */
int as_sum_rec_intact(const void *payload, size_t len);

/* Producer: moves the summary table into the ring as AS_MSG_SUMMARY records, as room
 * allows. Returns 1 when the table is empty afterwards, 0 when the ring had no room for
 * all of it (what was written is gone from the table). Not while a reservation is open. */
int as_ring_sum_flush(as_ring *r);

/* The summaries of a ring no one writes any more (an exited thread's, a dead
 * process's file), copied into out (AS_SUM_SLOTS entries); the table is emptied.
 * Returns how many. */
int as_ring_sum_take(as_ring *r, as_sum *out);

/* The same copy, the table left as it is (emptied by as_ring_sum_take once what was
 * copied is delivered). */
int as_ring_sum_copy(const as_ring *r, as_sum *out);

/* Producer side after a fork or a reuse of the ring by a new thread: empties the ring
 * (tail = head) and resets the producer's cached state. Only when no one consumes it. */
void as_ring_reset(as_ring *r);

/* ---- event ids ------------------------------------------------------------------------ */

/* The stable identity of the record at byte position pos of a ring whose info.id_prefix
 * is prefix: 32 lowercase hex digits (prefix, then pos) and a NUL into out. The same record
 * gets the same id from the live exporter and from any recoverer of the ring's file. */
void as_ring_event_id(uint64_t prefix, uint64_t pos, char out[33]);

/* Parses an event id made by as_ring_event_id. Returns 0 with *prefix and *pos, or -1. */
int as_ring_event_id_parse(const char *id, size_t len, uint64_t *prefix, uint64_t *pos);

/* An id prefix for the ring of thread slot slot of a process image (pid, start_time,
 * image); serial tells apart rings that one slot had one after another. Never 0. */
uint64_t as_ring_id_prefix(int pid, uint64_t start_time, uint64_t image, uint32_t slot,
                           uint64_t serial);

/* The position half of the event id of a summary taken from a ring's header table (one
 * that never became a record): AS_SUM_ID_BIT set, so it is no record's position (those
 * stay far below 2^63), and the rest a hash of what names that summary: head (the ring's
 * head when the table was read: a table is read only once no one writes the ring, so
 * the live exporter and every recoverer of the file see the same one), the function, the
 * thread and the raw time of the first call it counts (two summaries of one function in
 * one ring never share it). The same summary read twice gets the same id. */
#define AS_SUM_ID_BIT ((uint64_t)1 << 63)
uint64_t as_sum_id_pos(uint64_t head, const as_sum *s);

/* as_ring_event_id(prefix, as_sum_id_pos(head, s), out). */
void as_sum_event_id(uint64_t prefix, uint64_t head, const as_sum *s, char out[33]);

/* ---- ring files left by dead processes ---------------------------------------------- */

/* Maps a ring file (already taken by the caller) read-write after checking it: a regular
 * file owned by geteuid(), right magic, version and sizes. Returns the ring (unmap with
 * as_ring_destroy), or NULL when the file is not a ring file of ours. */
as_ring *as_ring_file_map(const char *path);

/* One record of a mapped ring file: its kind, payload and byte position. Returns 0 to go
 * on, non-zero to stop before this record. */
typedef int (*as_ring_rec_fn)(unsigned kind, const void *payload, size_t len, uint64_t pos,
                              void *ctx);

/* Walks the intact records of a mapped ring file from *pos (at least its tail) up to its
 * head, calling fn for each. A header whose length, kind or tag is wrong is skipped: the
 * walker looks for the next valid header (8-byte steps) and counts the bytes it passed in
 * *skipped. Leaves *pos after the last record fn accepted (or at head). Never stores the
 * tail: the caller does, once what it took is durable (as_ring_release). A whole page of
 * zeros is passed over silently (given back by as_ring_release_trim just before a death:
 * its records were delivered). Returns 1 when
 * head was reached, 0 when fn stopped. */
int as_ring_walk(as_ring *r, uint64_t *pos, as_ring_rec_fn fn, void *ctx, uint64_t *skipped);

/* What a ring file's header says about the messages that never reached its records: the
 * drops by cause and the summaries still in its table (a process killed while its ring
 * was full). */
typedef struct as_ring_lost {
    uint64_t dropped, dropped_sig, summarized;
    int nsums;
    as_sum sums[AS_SUM_SLOTS];
} as_ring_lost;

/* Reads those counts of the ring file path (read only; the same checks as
 * as_ring_file_walk). Returns 0, or -1 when it is not a ring file of ours. */
int as_ring_file_lost(const char *path, as_ring_lost *out);

/* The start time of process pid (/proc/PID/stat field 22), or 0 when it has none (dead,
 * or /proc unreadable). */
uint64_t as_proc_start_time(int pid);

/* 1 when the process that wrote a file as (pid, start_time) is gone: no such pid, a
 * zombie, or the pid now belongs to a process started at another time. 0 while it (or a
 * process we may not signal) runs. */
int as_proc_dead(int pid, uint64_t start_time);

#endif
