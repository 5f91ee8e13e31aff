/* crc32c.c - CRC-32C for the checksums of ring records (crc32c.h): the crc32 instruction
 * when the CPU has it, a table otherwise. */
#include "crc32c.h"

#include <cpuid.h>
#include <string.h>

#define CRC32C_POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static uint32_t crc_table[256];
static int crc_mode; /* 0 not chosen yet, 1 the crc32 instruction, 2 the table */

int as_crc32c_hw(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2);
}

/* Picks the instruction or the table once (either choice gives the same values: a race
 * between two first callers is harmless: they write the same table). */
static int crc_pick(void) {
    int m = __atomic_load_n(&crc_mode, __ATOMIC_ACQUIRE);
    if (__builtin_expect(m != 0, 1))
        return m;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
        crc_table[i] = c;
    }
    m = as_crc32c_hw() ? 1 : 2;
    __atomic_store_n(&crc_mode, m, __ATOMIC_RELEASE);
    return m;
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const unsigned char *p,
                                                         size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t q;
        memcpy(&q, p + i, 8);
        c = (uint32_t)__builtin_ia32_crc32di(c, q);
    }
    for (; i < n; i++)
        c = __builtin_ia32_crc32qi(c, p[i]);
    return c;
}

static uint32_t crc_sw(uint32_t c, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c;
}

uint32_t as_crc32c(uint32_t crc, const void *p, size_t n) {
    return crc_pick() == 1 ? crc_hw(crc, p, n) : crc_sw(crc, p, n);
}
