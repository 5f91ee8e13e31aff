/* ring.h - the per-thread single-producer/single-consumer byte ring that carries messages
 * from a producing thread to the exporter without a lock, a syscall or a malloc.
 *
 * Layout of one ring (one anonymous mapping made by as_ring_create(); a later change may
 * back it by a file so a crashed process leaves its rings readable):
 *
 *   offset 0    head      committed bytes (monotonic), release-stored by the producer
 *               pending   producer-private: head after the open reservation
 *               tail_seen producer-private: last tail it read
 *               dropped   messages the producer dropped (only it writes)
 *   offset 64   tail      consumed bytes (monotonic), release-stored by the consumer
 *   offset 128  size, mask, map_len (set once)
 *   offset 192  data[size]: records
 *
 * A record is an 8-byte header {uint32 len; uint16 kind; uint16 zero} then len payload
 * bytes padded to 8. A record never wraps: when it does not fit before the end of data,
 * a padding record (kind AS_RING_PAD) fills the rest and the record starts at offset 0.
 * Counters never wrap in practice (64-bit byte counts). */
#ifndef AS_RING_H
#define AS_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define AS_RING_PAD 0
#define AS_RING_HDR 8
#define AS_RING_MIN 4096

typedef struct as_ring {
    _Alignas(64) _Atomic uint64_t head;
    uint64_t pending;
    uint64_t tail_seen;
    _Atomic uint64_t dropped;
    _Alignas(64) _Atomic uint64_t tail;
    _Alignas(64) uint64_t size;
    uint64_t mask;
    size_t map_len;
    _Alignas(64) unsigned char data[];
} as_ring;

/* The record space as_ring_create(data_bytes) gives: a power of two >= AS_RING_MIN. */
static inline uint64_t as_ring_create_size(size_t data_bytes) {
    uint64_t size = AS_RING_MIN;
    while (size < data_bytes && size < ((uint64_t)1 << 40))
        size <<= 1;
    return size;
}

/* Maps a ring with data_bytes of record space (rounded up to a power of two, at least
 * AS_RING_MIN). Returns the ring, or NULL when the mapping failed (nothing is left
 * mapped). The only function that allocates ring memory. */
as_ring *as_ring_create(size_t data_bytes);

/* Unmaps r (NULL is accepted). This function can't fail. */
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

/* Producer: reserves payload_len bytes for a message of kind (> 0). Returns an 8-byte
 * aligned payload pointer, or NULL when the ring has no room now (nothing changed).
 * Only the owning thread calls it; at most one reservation is open at a time. */
static inline void *as_ring_reserve(as_ring *r, unsigned kind, size_t payload_len) {
    if (!as_ring_fits(r, payload_len))
        return NULL;
    uint64_t need = as_ring_rec_size(payload_len);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t off = head & r->mask;
    uint64_t contig = r->size - off;
    uint64_t total = contig < need ? contig + need : need;
    if (head + total - r->tail_seen > r->size) {
        r->tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (head + total - r->tail_seen > r->size)
            return NULL;
    }
    if (contig < need) {
        uint32_t *pad = (uint32_t *)(r->data + off);
        pad[0] = (uint32_t)(contig - AS_RING_HDR);
        pad[1] = AS_RING_PAD;
        off = 0;
    }
    uint32_t *hdr = (uint32_t *)(r->data + off);
    hdr[0] = (uint32_t)payload_len;
    hdr[1] = kind & 0xffffu;
    r->pending = head + total;
    return r->data + off + AS_RING_HDR;
}

/* Producer: publishes the open reservation (release store of head). */
static inline void as_ring_commit(as_ring *r) {
    atomic_store_explicit(&r->head, r->pending, memory_order_release);
}

/* Bytes committed and not yet consumed. Either side may call it. */
static inline uint64_t as_ring_used(as_ring *r) {
    return atomic_load_explicit(&r->head, memory_order_acquire) -
           atomic_load_explicit(&r->tail, memory_order_acquire);
}

/* Consumer: reads the message at *cursor (a byte count between tail and head, head read
 * with as_ring_head()). Skips padding. Returns the payload and sets *kind, *len and
 * advances *cursor past the message; returns NULL when *cursor reached head. */
static inline uint64_t as_ring_head(as_ring *r) {
    return atomic_load_explicit(&r->head, memory_order_acquire);
}
static inline uint64_t as_ring_tail(as_ring *r) {
    return atomic_load_explicit(&r->tail, memory_order_relaxed);
}
const void *as_ring_read(as_ring *r, uint64_t *cursor, uint64_t head, unsigned *kind, size_t *len);

/* Consumer: frees everything before cursor for the producer (release store of tail). */
static inline void as_ring_release(as_ring *r, uint64_t cursor) {
    atomic_store_explicit(&r->tail, cursor, memory_order_release);
}

/* Producer: counts one dropped message (single writer: no read-modify-write). */
static inline void as_ring_count_drop(as_ring *r) {
    atomic_store_explicit(&r->dropped, atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Pipeline internals shared with api.c (pipeline.h has no such query): 1 while the
 * exporter of this process runs. */
int as_pipe_running(void);

/* Wakes the exporter when the calling thread's ring is more than half full. Not for the
 * interposer's hot path (may make a futex syscall). */
void as_pipe_nudge_if_busy(void);

#endif
