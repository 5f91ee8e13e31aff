/* buildid.c - finds an object's build-id note in memory (buildid.h). */
#include "hook/buildid.h"

#include <elf.h>
#include <stdio.h>
#include <string.h>

extern const ElfW(Ehdr) __ehdr_start __attribute__((visibility("hidden")));

size_t as_build_id_mem(const ElfW(Phdr) * phdr, int phnum, uintptr_t bias,
                       const unsigned char **id) {
    for (int i = 0; phdr && i < phnum; i++) {
        if (phdr[i].p_type != PT_NOTE)
            continue;
        const char *d = (const char *)(bias + phdr[i].p_vaddr), *end = d + phdr[i].p_memsz;
        while (d + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)d;
            size_t name_off = sizeof *nh, desc_off = name_off + ((nh->n_namesz + 3u) & ~3u);
            size_t next = desc_off + ((nh->n_descsz + 3u) & ~3u);
            if (next > (size_t)(end - d))
                break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
                memcmp(d + name_off, "GNU", 4) == 0) {
                *id = (const unsigned char *)d + desc_off;
                return nh->n_descsz;
            }
            d += next;
        }
    }
    return 0;
}

size_t as_build_id_self(const unsigned char **id) {
    const ElfW(Ehdr) *eh = &__ehdr_start;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)((const char *)eh + eh->e_phoff);
    /* The segment that maps the file's start holds the headers: it gives the load bias
     * (0 for a position-dependent program, whose addresses are absolute). */
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0)
            return as_build_id_mem(ph, eh->e_phnum, (uintptr_t)eh - ph[i].p_vaddr, id);
    return 0;
}

int as_build_id_debug_path(const unsigned char *id, size_t len, char *out, size_t cap) {
    if (!id || len < 2 || len > 64)
        return -1;
    int n = snprintf(out, cap, AS_DEBUG_ROOT "/.build-id/%02x/", id[0]);
    for (size_t i = 1; n >= 0 && (size_t)n < cap && i < len; i++)
        n += snprintf(out + n, cap - (size_t)n, "%02x", id[i]);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    n += snprintf(out + n, cap - (size_t)n, ".debug");
    return (size_t)n < cap ? 0 : -1;
}
