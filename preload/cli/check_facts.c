/* check_facts.c - what `agentsight check` needs to know of an object file to say how the
 * interposer will reach each function (reach.h) and which symbols it never wraps
 * (hookable.h): the DT_SYMBOLIC flag, protected symbols, the object's relocations against
 * its own definitions, its executable segments. Read from the file with libelf, the same
 * facts the installer reads in memory. */
#include "cli/check_facts.h"

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends a copy of s to *v (n used, cap allocated). Returns 0 or -1 (out of memory). */
static int push(char ***v, size_t *n, size_t *cap, const char *s) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        char **nv = realloc(*v, c * sizeof *nv);
        if (!nv)
            return -1;
        *v = nv;
        *cap = c;
    }
    char *d = strdup(s);
    if (!d)
        return -1;
    (*v)[(*n)++] = d;
    return 0;
}

/* Reads the relocation section scn (against dynsym data ds, strings at strndx) and adds
 * the names of defined symbols that JUMP_SLOT, GLOB_DAT or 64-bit relocations name. */
static int read_relocs(Elf *elf, Elf_Scn *scn, Elf_Data *ds, size_t strndx, as_objfacts *f,
                       size_t *cap) {
    GElf_Shdr sh;
    Elf_Data *d = elf_getdata(scn, NULL);
    if (!d || !gelf_getshdr(scn, &sh) || sh.sh_entsize == 0)
        return 0;
    size_t n = sh.sh_size / sh.sh_entsize;
    for (size_t i = 0; i < n; i++) {
        GElf_Rela r;
        if (!gelf_getrela(d, (int)i, &r))
            continue;
        unsigned type = (unsigned)GELF_R_TYPE(r.r_info);
        if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT && type != R_X86_64_64)
            continue;
        GElf_Sym s;
        if (!GELF_R_SYM(r.r_info) || !gelf_getsym(ds, (int)GELF_R_SYM(r.r_info), &s) ||
            s.st_shndx == SHN_UNDEF)
            continue;
        const char *name = elf_strptr(elf, strndx, s.st_name);
        if (name && *name && push(&f->selfref, &f->nselfref, cap, name) != 0)
            return -1;
    }
    return 0;
}

int as_objfacts_load(const char *path, as_objfacts *f) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    elf_version(EV_CURRENT);
    Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    size_t cap_self = 0, cap_prot = 0, nph = 0;
    int rc = -1;
    if (!elf || elf_kind(elf) != ELF_K_ELF)
        goto out;
    if (elf_getphdrnum(elf, &nph) == 0) {
        for (size_t i = 0; i < nph && f->nexec < AS_OBJFACTS_MAX_EXEC; i++) {
            GElf_Phdr ph;
            if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X)) {
                f->exec_lo[f->nexec] = ph.p_vaddr;
                f->exec_hi[f->nexec++] = ph.p_vaddr + ph.p_memsz;
            }
        }
    }
    Elf_Scn *scn = NULL, *dynsym = NULL;
    size_t dynstr = 0;
    while ((scn = elf_nextscn(elf, scn)) != NULL) {
        GElf_Shdr sh;
        if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_DYNSYM) {
            dynsym = scn;
            dynstr = sh.sh_link;
        }
    }
    Elf_Data *ds = dynsym ? elf_getdata(dynsym, NULL) : NULL;
    size_t dynsym_idx = dynsym ? elf_ndxscn(dynsym) : 0;
    scn = NULL;
    while ((scn = elf_nextscn(elf, scn)) != NULL) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh))
            continue;
        if (sh.sh_type == SHT_DYNAMIC) {
            Elf_Data *d = elf_getdata(scn, NULL);
            size_t n = d && sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
            for (size_t i = 0; i < n; i++) {
                GElf_Dyn dy;
                if (!gelf_getdyn(d, (int)i, &dy))
                    continue;
                if (dy.d_tag == DT_SYMBOLIC ||
                    (dy.d_tag == DT_FLAGS && (dy.d_un.d_val & DF_SYMBOLIC)))
                    f->symbolic = 1;
            }
        } else if (sh.sh_type == SHT_RELA && ds && sh.sh_link == dynsym_idx) {
            if (read_relocs(elf, scn, ds, dynstr, f, &cap_self) != 0)
                goto out;
        }
    }
    if (ds) {
        GElf_Shdr sh;
        gelf_getshdr(dynsym, &sh);
        size_t n = sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
        for (size_t i = 1; i < n; i++) {
            GElf_Sym s;
            if (!gelf_getsym(ds, (int)i, &s) || s.st_shndx == SHN_UNDEF ||
                GELF_ST_VISIBILITY(s.st_other) != STV_PROTECTED)
                continue;
            const char *name = elf_strptr(elf, dynstr, s.st_name);
            if (name && *name && push(&f->prot, &f->nprot, &cap_prot, name) != 0)
                goto out;
        }
    }
    if (f->nselfref)
        qsort(f->selfref, f->nselfref, sizeof *f->selfref, cmp_str);
    if (f->nprot)
        qsort(f->prot, f->nprot, sizeof *f->prot, cmp_str);
    rc = 0;
out:
    if (elf)
        elf_end(elf);
    close(fd);
    if (rc != 0)
        as_objfacts_free(f);
    return rc;
}

void as_objfacts_free(as_objfacts *f) {
    for (size_t i = 0; i < f->nselfref; i++)
        free(f->selfref[i]);
    for (size_t i = 0; i < f->nprot; i++)
        free(f->prot[i]);
    free(f->selfref);
    free(f->prot);
    memset(f, 0, sizeof *f);
}

/* Binary search of name in the sorted v[0, n). */
static int has(char *const *v, size_t n, const char *name) {
    return v && n && bsearch(&name, v, n, sizeof *v, cmp_str) != NULL;
}

int as_objfacts_selfref(const as_objfacts *f, const char *name) {
    return has(f->selfref, f->nselfref, name);
}

int as_objfacts_protected(const as_objfacts *f, const char *name) {
    return has(f->prot, f->nprot, name);
}

int as_objfacts_exec(const as_objfacts *f, uint64_t value, uint64_t size) {
    if (!f->nexec)
        return -1;
    uint64_t end = value + (size ? size : 1);
    for (int i = 0; i < f->nexec; i++)
        if (value >= f->exec_lo[i] && end <= f->exec_hi[i])
            return 1;
    return 0;
}
