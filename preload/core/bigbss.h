/* bigbss.h - AS_BIG_BSS: places a large zero-initialised object after all the small ones.
 *
 * Every process pays a page fault (tens of microseconds in a virtual machine) for each page
 * of .bss it touches. The start-up path touches a few dozen small variables spread over many
 * files; with the large tables (rings' bookkeeping, batches, target tables) between them,
 * those variables fell on a dozen different pages of the 1.2 MB .bss. Tables marked with
 * this attribute go to .lbss, which the linker places after .bss, so the small variables
 * share two or three pages and a large table costs a fault only in the processes that
 * use it; each starts on a page of its own, so that its first element (often the only one a
 * process uses) never straddles two pages. Only for objects initialised to zero. */
#ifndef AS_BIGBSS_H
#define AS_BIGBSS_H

#define AS_BIG_BSS __attribute__((section(".lbss"), aligned(4096)))

#endif
