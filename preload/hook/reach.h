/* reach.h - how the calls of a matched function are diverted under each hook= mode: through
 * the GOT slots and dlsym results that name it, by patching its entry, or both; and which
 * calls then stay unseen. One rule for the installer and for `agentsight check`. */
#ifndef AS_REACH_H
#define AS_REACH_H

#include <link.h>
#include <stddef.h>
#include <stdint.h>

/* The ways calls are caught (bits). */
enum { AS_REACH_GOT = 1, AS_REACH_ENTRY = 2 };

/* What is known of a function and its object. */
typedef struct as_reach_facts {
    int hook;          /* AS_HOOK_* of the entry (config.h) */
    int exported;      /* in .dynsym: GOT slots and dlsym can name it */
    int in_program;    /* defined by the main executable, whose calls of its own
                          functions never go through a GOT */
    int symbolic;      /* the object is DT_SYMBOLIC / DF_SYMBOLIC (-Bsymbolic) */
    int protected_vis; /* STV_PROTECTED: calls inside the object bind to it directly */
    int self_ref;      /* the object's own GOT/PLT relocations name it: its internal calls
                          go through a slot (it is interposable) */
    int ifunc;         /* STT_GNU_IFUNC */
    int patchable;     /* its entry may be patched: size known, not inside another
                          function (the patcher may still refuse its first instructions) */
    int own_dep;       /* the object is one the interposer itself needs (the C library):
                          its functions run inside the thunk and the patcher, so hook=auto
                          never patches their entries */
} as_reach_facts;

/*
 * as_reach_decide - the AS_REACH_* bits for f. hook=auto patches the entry of every
 * function whose calls may bypass the GOT (program functions, -Bsymbolic objects,
 * protected symbols, exported functions the object never calls through a slot of its own:
 * -fno-semantic-interposition, -Bsymbolic-functions, LTO, or no internal call at all), and
 * also takes its GOT slots (calls from other objects then use the cheaper lean thunk; a
 * call is recorded once either way); an interposable function (self_ref) gets its GOT
 * slots only, which is all it takes. In an object the interposer itself needs (own_dep)
 * hook=auto takes the GOT slots only, and says the internal calls are unseen.
 * hook=got: GOT only; hook=entry: entry only.
 * *blind (may be NULL) gets a phrase naming the calls left unseen ("calls inside the
 * object that bypass its GOT"), or NULL when every call is seen. Pure; can't fail.
 */
unsigned as_reach_decide(const as_reach_facts *f, const char **blind);

/* "got", "entry", "got+entry" or "none" for bits. This function can't fail. */
const char *as_reach_name(unsigned bits);

/* Whether calls inside the defining object may bypass its GOT (program, symbolic,
 * protected, or no slot of its own names the function). */
int as_reach_direct_calls(const as_reach_facts *f);

/*
 * as_reach_selfrefs - marks in refs (nsyms bytes, zeroed by the caller) each dynamic symbol
 * index that one of the object's own JUMP_SLOT, GLOB_DAT or R_X86_64_64 relocations names.
 * jmprel/rela (byte sizes jmprelsz/relasz) are the object's tables, in memory or in a file
 * image. Out-of-range indices are ignored. This function can't fail.
 */
void as_reach_selfrefs(const ElfW(Rela) * jmprel, size_t jmprelsz, const ElfW(Rela) * rela,
                       size_t relasz, unsigned char *refs, size_t nsyms);

/* Whether [addr, addr + size) (size 0: addr alone) lies in an executable PT_LOAD segment
 * of the object with program headers phdr[0, phnum) loaded at base. */
int as_reach_in_exec(const ElfW(Phdr) * phdr, int phnum, uintptr_t base, uintptr_t addr,
                     uint64_t size);

#endif
