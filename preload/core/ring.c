/* ring.c - mapping and consumer side of the per-thread message ring (see ring.h for the
 * layout); the producer side is inline in ring.h because it is on the hot path. */
#include "ring.h"

#include <string.h>
#include <sys/mman.h>

_Static_assert(offsetof(as_ring, tail) == 64, "tail on its own cache line");
_Static_assert(offsetof(as_ring, data) == 192, "data after the header lines");

/* Returns the ring, or NULL when data_bytes is absurd or mmap failed (nothing mapped). */
as_ring *as_ring_create(size_t data_bytes) {
    if (data_bytes > ((size_t)1 << 40))
        return NULL;
    uint64_t size = as_ring_create_size(data_bytes);
    size_t len = sizeof(as_ring) + size;
    len = (len + 4095) & ~(size_t)4095;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    as_ring *r = p; /* anonymous memory is zero: head = tail = dropped = 0 */
    r->size = size;
    r->mask = size - 1;
    r->map_len = len;
    return r;
}

/* This function can't fail. */
void as_ring_destroy(as_ring *r) {
    if (!r)
        return;
    munmap(r, r->map_len);
}

/* Returns the next payload at *cursor (padding skipped), or NULL at head. A corrupt
 * header (length past the end of data) ends the read at head so the consumer never reads
 * outside the mapping. */
const void *as_ring_read(as_ring *r, uint64_t *cursor, uint64_t head, unsigned *kind, size_t *len) {
    while (*cursor < head) {
        uint64_t off = *cursor & r->mask;
        const uint32_t *hdr = (const uint32_t *)(r->data + off);
        uint64_t rec = as_ring_rec_size(hdr[0]);
        if (off + rec > r->size || *cursor + rec > head) {
            *cursor = head;
            return NULL;
        }
        *cursor += rec;
        if (hdr[1] == AS_RING_PAD)
            continue;
        *kind = hdr[1];
        *len = hdr[0];
        return r->data + off + AS_RING_HDR;
    }
    return NULL;
}
