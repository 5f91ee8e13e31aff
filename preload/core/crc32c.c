/* crc32c.c - CRC-32C for the checksums of ring records (crc32c.h): the crc32 instruction
 * when the CPU has it, a table otherwise. */
#include "crc32c.h"

#include <cpuid.h>
#include <string.h>

#define CRC32C_POLY 0x82F63B78u /* reflected Castagnoli polynomial */

static uint32_t crc_table[256];
/* 0 not chosen yet, 1 the crc32 instruction, 2 the table, 3 the table being made (by the
 * one caller that claimed it; others meanwhile go bit by bit) */
static int crc_mode;

/* The byte table of the reflected polynomial. */
static void make_table(uint32_t t[256]) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
        t[i] = c;
    }
}

int as_crc32c_hw(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2);
}

/* Picks the instruction, or else makes the table once. No lock (signal handlers of
 * the interposer's writers may get here first): a caller that finds the table being made
 * computes bit by bit, with the same values. */
static int crc_pick(void) {
    int m = __atomic_load_n(&crc_mode, __ATOMIC_ACQUIRE);
    if (__builtin_expect(m == 1 || m == 2, 1))
        return m;
    if (m == 0 && as_crc32c_hw()) {
        __atomic_store_n(&crc_mode, 1, __ATOMIC_RELEASE);
        return 1;
    }
    int zero = 0;
    if (!__atomic_compare_exchange_n(&crc_mode, &zero, 3, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return zero == 1 || zero == 2 ? zero : 3;
    make_table(crc_table);
    __atomic_store_n(&crc_mode, 2, __ATOMIC_RELEASE);
    return 2;
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

static uint32_t crc_sw(const uint32_t t[256], uint32_t c, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        c = t[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c;
}

static uint32_t crc_bits(uint32_t c, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
    }
    return c;
}

uint32_t as_crc32c(uint32_t crc, const void *p, size_t n) {
    int m = crc_pick();
    return m == 1 ? crc_hw(crc, p, n) : m == 2 ? crc_sw(crc_table, crc, p, n) : crc_bits(crc, p, n);
}

uint32_t as_crc32c_soft(uint32_t crc, const void *p, size_t n) {
    uint32_t t[256];
    make_table(t);
    size_t half = n / 2; /* the first half by the table, the rest bit by bit */
    crc = crc_sw(t, crc, p, half);
    return crc_bits(crc, (const unsigned char *)p + half, n - half);
}
