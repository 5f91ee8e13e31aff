/* reach.c - decides, for each matched function, whether its GOT slots, its entry or both
 * are diverted (reach.h), from facts the installer reads in memory and `check` reads from
 * the file, so both say the same. */
#include "hook/reach.h"

#include <elf.h>

#include "hook/config.h"

int as_reach_direct_calls(const as_reach_facts *f) {
    return f->in_program || f->symbolic || f->protected_vis || !f->self_ref;
}

unsigned as_reach_decide(const as_reach_facts *f, const char **blind) {
    const char *unseen = NULL;
    unsigned bits = 0;
    int direct = f->exported ? as_reach_direct_calls(f) : 1;
    switch (f->hook) {
    case AS_HOOK_GOT:
        if (!f->exported) {
            unseen = "every call: it is not exported, no GOT slot names it";
            break;
        }
        bits = AS_REACH_GOT;
        if (direct)
            unseen = "calls inside its object, which bypass the GOT with hook=got";
        break;
    case AS_HOOK_ENTRY:
        if (f->ifunc)
            unseen = "every call: an IFUNC resolver is not entry-patched";
        else if (!f->patchable)
            unseen = "every call: its entry cannot be patched";
        else
            bits = AS_REACH_ENTRY;
        break;
    default: /* AS_HOOK_AUTO */
        if (!f->exported) {
            if (f->patchable && !f->ifunc)
                bits = AS_REACH_ENTRY;
            else
                unseen = "every call: it is not exported and its entry cannot be patched";
            break;
        }
        bits = AS_REACH_GOT;
        if (!direct)
            break;
        if (f->ifunc)
            unseen = "calls inside its object, which reach the implementation directly";
        else if (f->own_dep)
            unseen = "calls inside the C library, which bypass its GOT; hook=auto patches no "
                     "entry in a library the interposer itself calls, hook=entry does";
        else if (f->patchable)
            bits |= AS_REACH_ENTRY;
        else
            unseen = "calls inside its object, which bypass the GOT; its entry cannot be "
                     "patched";
        break;
    }
    if (blind)
        *blind = unseen;
    return bits;
}

const char *as_reach_name(unsigned bits) {
    switch (bits & (AS_REACH_GOT | AS_REACH_ENTRY)) {
    case AS_REACH_GOT:
        return "got";
    case AS_REACH_ENTRY:
        return "entry";
    case AS_REACH_GOT | AS_REACH_ENTRY:
        return "got+entry";
    default:
        return "none";
    }
}

/* Marks the symbols named by one relocation table. */
static void mark(const ElfW(Rela) * r, size_t bytes, unsigned char *refs, size_t nsyms) {
    if (!r)
        return;
    size_t n = bytes / sizeof *r;
    for (size_t i = 0; i < n; i++) {
        unsigned type = (unsigned)ELF64_R_TYPE(r[i].r_info);
        size_t sym = (size_t)ELF64_R_SYM(r[i].r_info);
        if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT && type != R_X86_64_64)
            continue;
        if (sym > 0 && sym < nsyms)
            refs[sym] = 1;
    }
}

void as_reach_selfrefs(const ElfW(Rela) * jmprel, size_t jmprelsz, const ElfW(Rela) * rela,
                       size_t relasz, unsigned char *refs, size_t nsyms) {
    if (!refs)
        return;
    mark(jmprel, jmprelsz, refs, nsyms);
    mark(rela, relasz, refs, nsyms);
}

int as_reach_in_exec(const ElfW(Phdr) * phdr, int phnum, uintptr_t base, uintptr_t addr,
                     uint64_t size) {
    uintptr_t end = addr + (size ? size : 1);
    for (int i = 0; phdr && i < phnum; i++) {
        const ElfW(Phdr) *p = &phdr[i];
        if (p->p_type != PT_LOAD || !(p->p_flags & PF_X))
            continue;
        uintptr_t lo = base + p->p_vaddr, hi = lo + p->p_memsz;
        if (addr >= lo && end <= hi)
            return 1;
    }
    return 0;
}
