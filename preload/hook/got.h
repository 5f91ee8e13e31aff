/* got.h - the loaded objects of the process and their relocation slots (GOT/PLT): list
 * them without allocating inside the loader's callback, and rewrite the slots a caller
 * chooses, keeping the page protection (RELRO) as it was. */
#ifndef AS_GOT_H
#define AS_GOT_H

#include <link.h>
#include <stddef.h>
#include <stdint.h>

/* One loaded object as dl_iterate_phdr reports it. The strings and tables belong to the
 * dynamic loader and stay valid while the object is loaded. */
typedef struct as_obj {
    const char *name;        /* dlpi_name: "" for the program itself */
    uintptr_t base;          /* load bias (l_addr) */
    const ElfW(Phdr) * phdr; /* program headers, in memory */
    int phnum;
    uintptr_t lo, hi;        /* [lo, hi): the union of its PT_LOAD segments */
    const ElfW(Dyn) * dyn;   /* PT_DYNAMIC in memory, or NULL */
    unsigned long long adds; /* dlpi_adds when the object was seen */
    unsigned long long subs; /* dlpi_subs (objects unloaded so far) when it was seen */
} as_obj;

/* Lists the loaded objects into out (up to max), in load order. Nothing is allocated and
 * no lock of ours is taken inside the loader's callback. Returns the number of objects
 * loaded (which may exceed max: then only max were written). This function can't fail. */
int as_objs_collect(as_obj *out, int max);

/* The dynamic-section tables of an object, located in memory. */
typedef struct as_dyninfo {
    const ElfW(Sym) * symtab;
    const char *strtab;
    size_t strsz;
    const ElfW(Rela) * jmprel; /* DT_JMPREL: PLT slots (R_X86_64_JUMP_SLOT) */
    size_t jmprelsz;
    const ElfW(Rela) * rela; /* DT_RELA: GLOB_DAT (-fno-plt calls, function pointers) */
    size_t relasz;
    size_t relacount;          /* DT_RELACOUNT: leading R_X86_64_RELATIVE entries of rela */
    const ElfW(Half) * versym; /* DT_VERSYM: version index per dynamic symbol */
    const ElfW(Verneed) * verneed;
    const ElfW(Verdef) * verdef;
    const uint32_t *gnu_hash;
    const uint32_t *sysv_hash;
    const char *runpath; /* DT_RUNPATH string, or NULL */
    const char *rpath;   /* DT_RPATH string, or NULL */
    int bind_now;        /* DT_FLAGS BIND_NOW / DT_FLAGS_1 NOW / DT_BIND_NOW */
    int symbolic;        /* DT_SYMBOLIC / DF_SYMBOLIC: binds to its own definitions first */
} as_dyninfo;

/* Reads the PT_DYNAMIC entries of an object loaded at base. Returns 0, or -1 when dyn is
 * NULL or has no string table (*di is zeroed). */
int as_dyn_read(const ElfW(Dyn) * dyn, uintptr_t base, as_dyninfo *di);

/* The version name of dynamic symbol symidx (from DT_VERNEED for references, DT_VERDEF
 * for definitions), or NULL when the symbol is unversioned. *hidden is set for a
 * non-default (@, not @@) definition when hidden is not NULL. */
const char *as_dyn_version(const as_dyninfo *di, size_t symidx, int *hidden);

/* Looks up a symbol defined in this one object (GNU or SysV hash table). version NULL:
 * the default version (or an unversioned symbol), else exactly that version. Returns the
 * symbol or NULL. */
const ElfW(Sym) * as_dyn_lookup(const as_dyninfo *di, const char *name, const char *version);

/* Writes to out (at most max) the indexes of the dynamic symbols named name, of any
 * version, defined or not, in increasing order, found through the GNU hash table (every
 * symbol the loader can bind to is in it). Returns how many there are (more than max: only
 * max written), or -1 when the object has no GNU hash table. */
long as_dyn_named(const as_dyninfo *di, const char *name, uint32_t *out, size_t max);

/* What to write into one relocation slot. sym/version name the symbol the slot refers to;
 * cur is its current value; lazy is 1 when cur points back into the object itself (a PLT
 * slot not yet bound by lazy binding, or a call to the object's own function). Returns the
 * value to write, or NULL to leave the slot alone. */
typedef void *(*as_got_decide_fn)(const as_obj *o, const char *sym, const char *version, void *cur,
                                  int lazy, void *ctx);

/* Walks the R_X86_64_JUMP_SLOT and R_X86_64_GLOB_DAT relocations of o, and the
 * R_X86_64_64 ones with addend 0 against a function symbol (function pointers stored in
 * data: tool tables, vtables; decide sees them with lazy 0), and writes what decide
 * returns. Returns the number of slots written, or -1 when o has no usable dynamic
 * section (nothing changed). A slot whose page cannot be made writable is left as it was
 * (a warning is logged) and the walk goes on. */
int as_got_patch(const as_obj *o, as_got_decide_fn decide, void *ctx);

/* as_got_patch, also storing in *witness the address of one slot written (unchanged when
 * none was): while the object stays loaded the slot keeps our value, so a different value
 * there later tells the object was unloaded and loaded again at the same address. */
int as_got_patch_w(const as_obj *o, as_got_decide_fn decide, void *ctx, void ***witness);

/* Writes one pointer-sized slot, making its page writable for the write when it is not
 * (RELRO) and restoring the protection afterwards. Returns 0, or -1 (slot unchanged). */
int as_got_write(void **slot, void *value);

#endif
