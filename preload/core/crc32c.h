/* crc32c.h - CRC-32C (Castagnoli), the checksum every record of a ring carries (call
 * records, summaries, packed API actions), so that one damaged in memory or in a ring file
 * is known to the decoder: computed with the SSE 4.2 crc32 instruction when the CPU has
 * it (thunk.S uses the same instruction), else by a table, with the same values. */
#ifndef AS_CRC32C_H
#define AS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Goes on with CRC-32C crc over n bytes at p: 8-byte little-endian words in order, then
 * the bytes left. No initial or final inversion here: the callers start from 0xffffffff
 * and keep the result as it is. This function can't fail. */
uint32_t as_crc32c(uint32_t crc, const void *p, size_t n);

/* The same by the table and bit-by-bit code a CPU without the instruction uses, whatever
 * this CPU has (tests compare it with as_crc32c). */
uint32_t as_crc32c_soft(uint32_t crc, const void *p, size_t n);

/* 1 when this CPU has the crc32 instruction (SSE 4.2). */
int as_crc32c_hw(void);

#endif
