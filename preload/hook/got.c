/* got.c - finds the relocation slots (GOT/PLT) of every loaded object in memory and
 * rewrites the ones the installer chooses, so calls through them reach our thunks.
 *
 * Cases named here because each changes what a slot holds:
 * - lazy binding: a JUMP_SLOT not yet bound points back into the object's own PLT; once
 *   we write a thunk address there the loader never touches the slot again.
 * - BIND_NOW (-z now): every JUMP_SLOT already holds the resolved function.
 * - -fno-plt and function pointers taken through the GOT: R_X86_64_GLOB_DAT slots.
 * - RELRO: with -z relro (+ -z now) the GOT lies in PT_GNU_RELRO, read-only after
 *   relocation; we read the page's protection from /proc/self/maps, add PROT_WRITE for the
 *   write and restore it.
 * - symbol versions: a slot refers to name@VERSION through DT_VERSYM + DT_VERNEED.
 * - function pointers stored in data (struct tool tools[] = {{"add", tool_add}}, vtables):
 *   R_X86_64_64 relocations with addend 0; they hold the bound address, never a PLT stub,
 *   and may lie in RELRO (.data.rel.ro). */
#include "hook/got.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"

typedef struct collect_ctx {
    as_obj *out;
    int max;
    int n;
} collect_ctx;

/* dl_iterate_phdr callback: copies what we need, allocates nothing, takes no lock. */
static int collect_cb(struct dl_phdr_info *info, size_t size, void *arg) {
    collect_ctx *c = arg;
    (void)size;
    if (c->n < c->max) {
        as_obj *o = &c->out[c->n];
        o->name = info->dlpi_name ? info->dlpi_name : "";
        o->base = info->dlpi_addr;
        o->phdr = info->dlpi_phdr;
        o->phnum = info->dlpi_phnum;
        o->dyn = NULL;
        o->lo = UINTPTR_MAX;
        o->hi = 0;
        o->adds = info->dlpi_adds;
        o->subs = info->dlpi_subs;
        for (int i = 0; i < info->dlpi_phnum; i++) {
            const ElfW(Phdr) *p = &info->dlpi_phdr[i];
            if (p->p_type == PT_DYNAMIC)
                o->dyn = (const ElfW(Dyn) *)(info->dlpi_addr + p->p_vaddr);
            if (p->p_type != PT_LOAD)
                continue;
            uintptr_t lo = info->dlpi_addr + p->p_vaddr;
            uintptr_t hi = lo + p->p_memsz;
            if (lo < o->lo)
                o->lo = lo;
            if (hi > o->hi)
                o->hi = hi;
        }
    }
    c->n++;
    return 0;
}

int as_objs_collect(as_obj *out, int max) {
    collect_ctx c = {out, max, 0};
    dl_iterate_phdr(collect_cb, &c);
    return c.n;
}

/* The loader relocates most d_ptr values in place (the dynamic section is writable);
 * where it did not (a read-only dynamic section), the value is still an offset. */
static uintptr_t dptr(uintptr_t v, uintptr_t base) {
    return (base != 0 && v < base) ? v + base : v;
}

int as_dyn_read(const ElfW(Dyn) * dyn, uintptr_t base, as_dyninfo *di) {
    memset(di, 0, sizeof *di);
    if (!dyn)
        return -1;
    uintptr_t runpath = 0, rpath = 0;
    int has_runpath = 0, has_rpath = 0;
    for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
        switch (d->d_tag) {
        case DT_SYMTAB:
            di->symtab = (const ElfW(Sym) *)dptr(d->d_un.d_ptr, base);
            break;
        case DT_STRTAB:
            di->strtab = (const char *)dptr(d->d_un.d_ptr, base);
            break;
        case DT_STRSZ:
            di->strsz = d->d_un.d_val;
            break;
        case DT_JMPREL:
            di->jmprel = (const ElfW(Rela) *)dptr(d->d_un.d_ptr, base);
            break;
        case DT_PLTRELSZ:
            di->jmprelsz = d->d_un.d_val;
            break;
        case DT_RELA:
            di->rela = (const ElfW(Rela) *)dptr(d->d_un.d_ptr, base);
            break;
        case DT_RELASZ:
            di->relasz = d->d_un.d_val;
            break;
        case DT_RELACOUNT:
            di->relacount = d->d_un.d_val;
            break;
        case DT_VERSYM:
            di->versym = (const ElfW(Half) *)dptr(d->d_un.d_ptr, base);
            break;
        case DT_VERNEED:
            di->verneed = (const ElfW(Verneed) *)dptr(d->d_un.d_ptr, base);
            break;
        case DT_VERDEF:
            di->verdef = (const ElfW(Verdef) *)dptr(d->d_un.d_ptr, base);
            break;
        case DT_GNU_HASH:
            di->gnu_hash = (const uint32_t *)dptr(d->d_un.d_ptr, base);
            break;
        case DT_HASH:
            di->sysv_hash = (const uint32_t *)dptr(d->d_un.d_ptr, base);
            break;
        case DT_RUNPATH:
            runpath = d->d_un.d_val;
            has_runpath = 1;
            break;
        case DT_RPATH:
            rpath = d->d_un.d_val;
            has_rpath = 1;
            break;
        case DT_BIND_NOW:
            di->bind_now = 1;
            break;
        case DT_SYMBOLIC:
            di->symbolic = 1;
            break;
        case DT_FLAGS:
            if (d->d_un.d_val & DF_BIND_NOW)
                di->bind_now = 1;
            if (d->d_un.d_val & DF_SYMBOLIC)
                di->symbolic = 1;
            break;
        case DT_FLAGS_1:
            if (d->d_un.d_val & DF_1_NOW)
                di->bind_now = 1;
            break;
        default:
            break;
        }
    }
    if (!di->strtab) {
        memset(di, 0, sizeof *di);
        return -1;
    }
    if (has_runpath && (!di->strsz || runpath < di->strsz))
        di->runpath = di->strtab + runpath;
    if (has_rpath && (!di->strsz || rpath < di->strsz))
        di->rpath = di->strtab + rpath;
    return 0;
}

const char *as_dyn_version(const as_dyninfo *di, size_t symidx, int *hidden) {
    if (hidden)
        *hidden = 0;
    if (!di->versym)
        return NULL;
    ElfW(Half) raw = di->versym[symidx];
    ElfW(Half) idx = raw & 0x7fff;
    if (hidden)
        *hidden = (raw & 0x8000) != 0;
    if (idx < 2) /* VER_NDX_LOCAL, VER_NDX_GLOBAL: unversioned */
        return NULL;
    /* A reference: the version comes from the DT_VERNEED entry with that index. */
    const ElfW(Verneed) *vn = di->verneed;
    for (int guard = 0; vn && guard < 4096; guard++) {
        const ElfW(Vernaux) *va = (const ElfW(Vernaux) *)((const char *)vn + vn->vn_aux);
        for (unsigned i = 0; i < vn->vn_cnt; i++) {
            if ((va->vna_other & 0x7fff) == idx)
                return di->strtab + va->vna_name;
            if (!va->vna_next)
                break;
            va = (const ElfW(Vernaux) *)((const char *)va + va->vna_next);
        }
        if (!vn->vn_next)
            break;
        vn = (const ElfW(Verneed) *)((const char *)vn + vn->vn_next);
    }
    /* A definition of this object: DT_VERDEF. */
    const ElfW(Verdef) *vd = di->verdef;
    for (int guard = 0; vd && guard < 4096; guard++) {
        if ((vd->vd_ndx & 0x7fff) == idx && !(vd->vd_flags & VER_FLG_BASE)) {
            const ElfW(Verdaux) *vda = (const ElfW(Verdaux) *)((const char *)vd + vd->vd_aux);
            return di->strtab + vda->vda_name;
        }
        if (!vd->vd_next)
            break;
        vd = (const ElfW(Verdef) *)((const char *)vd + vd->vd_next);
    }
    return NULL;
}

static uint32_t gnu_hash(const char *s) {
    uint32_t h = 5381;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = h * 33 + *p;
    return h;
}

static uint32_t sysv_hash(const char *s) {
    uint32_t h = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h = (h << 4) + *p;
        uint32_t g = h & 0xf0000000u;
        if (g)
            h ^= g >> 24;
        h &= ~g;
    }
    return h;
}

/* Whether defined symbol idx fits the version asked for. Returns 2 for an exact or
 * default match, 1 for an acceptable fallback (a hidden version when none was asked; an
 * unversioned definition when one was, which the loader binds a versioned reference to:
 * the interposer's own exec and dl* functions), 0 for no match. */
static int version_fits(const as_dyninfo *di, size_t idx, const char *version) {
    int hidden = 0;
    const char *v = as_dyn_version(di, idx, &hidden);
    if (version)
        return (v && strcmp(v, version) == 0) ? 2 : (!v && !hidden) ? 1 : 0;
    return hidden ? 1 : 2;
}

static int sym_defined(const ElfW(Sym) * s) {
    int type = ELF64_ST_TYPE(s->st_info);
    return s->st_shndx != SHN_UNDEF &&
           (type == STT_FUNC || type == STT_GNU_IFUNC || type == STT_OBJECT || type == STT_TLS ||
            type == STT_NOTYPE || type == STT_COMMON) &&
           ELF64_ST_BIND(s->st_info) != STB_LOCAL;
}

/* A walk of the GNU hash chain of one name (gnu_first, then gnu_next). */
typedef struct {
    const uint32_t *chain;
    uint32_t symoffset, hv, ix, guard;
    int done;
} gnu_walk;

/* Starts the walk of name's chain in di's GNU hash table. Returns 0, or -1 when the chain
 * is empty. */
static int gnu_first(const as_dyninfo *di, const char *name, gnu_walk *w) {
    const uint32_t *h = di->gnu_hash;
    uint32_t nbuckets = h[0], bloom_size = h[2];
    if (nbuckets == 0)
        return -1;
    const ElfW(Addr) *bloom = (const ElfW(Addr) *)&h[4];
    const uint32_t *buckets = (const uint32_t *)&bloom[bloom_size];
    w->chain = &buckets[nbuckets];
    w->symoffset = h[1];
    w->hv = gnu_hash(name);
    w->ix = buckets[w->hv % nbuckets];
    w->guard = 0;
    w->done = 0;
    return w->ix < w->symoffset ? -1 : 0;
}

/* The next symbol index of the chain whose hash is name's (a candidate: the caller
 * compares the name), or UINT32_MAX at the chain's end. */
static uint32_t gnu_next(gnu_walk *w) {
    while (!w->done && w->guard++ < (1u << 24)) {
        uint32_t ix = w->ix++;
        uint32_t h2 = w->chain[ix - w->symoffset];
        w->done = h2 & 1;
        if ((w->hv | 1) == (h2 | 1))
            return ix;
    }
    return UINT32_MAX;
}

/* Keeps s as the answer of a versioned lookup: returns 1 when it is the exact version
 * (the lookup ends), else keeps the first default-version match in *fallback. */
static int version_pick(const as_dyninfo *di, uint32_t ix, const char *version, const ElfW(Sym) * s,
                        const ElfW(Sym) * *fallback) {
    int fit = version_fits(di, ix, version);
    if (fit == 2)
        return 1;
    if (fit == 1 && !*fallback)
        *fallback = s;
    return 0;
}

const ElfW(Sym) * as_dyn_lookup(const as_dyninfo *di, const char *name, const char *version) {
    if (!di->symtab || !di->strtab || !name)
        return NULL;
    const ElfW(Sym) *fallback = NULL;
    if (di->gnu_hash) {
        gnu_walk w;
        if (gnu_first(di, name, &w) != 0)
            return NULL;
        for (uint32_t ix; (ix = gnu_next(&w)) != UINT32_MAX;) {
            const ElfW(Sym) *s = &di->symtab[ix];
            if (sym_defined(s) && strcmp(di->strtab + s->st_name, name) == 0 &&
                version_pick(di, ix, version, s, &fallback))
                return s;
        }
        return fallback;
    }
    if (di->sysv_hash) {
        uint32_t nbucket = di->sysv_hash[0], nchain = di->sysv_hash[1];
        if (nbucket == 0)
            return NULL;
        const uint32_t *bucket = &di->sysv_hash[2];
        const uint32_t *chain = &bucket[nbucket];
        uint32_t guard = 0;
        for (uint32_t ix = bucket[sysv_hash(name) % nbucket];
             ix != 0 && ix < nchain && guard < nchain; ix = chain[ix], guard++) {
            const ElfW(Sym) *s = &di->symtab[ix];
            if (sym_defined(s) && strcmp(di->strtab + s->st_name, name) == 0 &&
                version_pick(di, ix, version, s, &fallback))
                return s;
        }
    }
    return fallback;
}

long as_dyn_named(const as_dyninfo *di, const char *name, uint32_t *out, size_t max) {
    if (!di->gnu_hash || !di->symtab || !di->strtab || !name)
        return -1;
    gnu_walk w;
    if (gnu_first(di, name, &w) != 0)
        return 0;
    long n = 0;
    for (uint32_t ix; (ix = gnu_next(&w)) != UINT32_MAX;) {
        const ElfW(Sym) *s = &di->symtab[ix];
        if ((!di->strsz || s->st_name < di->strsz) && strcmp(di->strtab + s->st_name, name) == 0) {
            if ((size_t)n < max)
                out[n] = ix;
            n++;
        }
    }
    return n;
}

/* The protection of the mapping holding addr, from /proc/self/maps. Returns PROT_* bits,
 * or -1 when the address is not mapped or the file cannot be read. */
static int page_prot(uintptr_t addr) {
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[8192];
    size_t have = 0;
    int prot = -1;
    for (;;) {
        ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        have += (size_t)r;
        buf[have] = '\0';
        char *line = buf;
        char *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            unsigned long lo, hi;
            char perms[8];
            if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && addr >= lo && addr < hi) {
                prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
                       (perms[2] == 'x' ? PROT_EXEC : 0);
                goto done;
            }
            line = nl + 1;
        }
        size_t rest = have - (size_t)(line - buf);
        memmove(buf, line, rest);
        have = rest;
        if (have >= sizeof buf - 1) /* an absurdly long line: drop it */
            have = 0;
    }
done:
    close(fd);
    return prot;
}

int as_got_write(void **slot, void *value) {
    int prot = page_prot((uintptr_t)slot);
    if (prot < 0)
        return -1;
    if (prot & PROT_WRITE) {
        __atomic_store_n(slot, value, __ATOMIC_RELEASE);
        return 0;
    }
    /* RELRO (or a read-only GOT): writable just for the store, then as it was. */
    long pagesz = sysconf(_SC_PAGESIZE);
    uintptr_t page = (uintptr_t)slot & ~((uintptr_t)pagesz - 1);
    if (mprotect((void *)page, (size_t)pagesz, prot | PROT_WRITE) != 0)
        return -1;
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
    mprotect((void *)page, (size_t)pagesz, prot);
    return 0;
}

/* Walks one relocation table. Returns the number of slots written. */
static int patch_table(const as_obj *o, const as_dyninfo *di, const ElfW(Rela) * rel, size_t relsz,
                       as_got_decide_fn decide, void *ctx, void ***witness) {
    int written = 0;
    size_t n = relsz / sizeof(ElfW(Rela));
    for (size_t i = 0; i < n; i++) {
        uint32_t type = ELF64_R_TYPE(rel[i].r_info);
        uint32_t symidx = ELF64_R_SYM(rel[i].r_info);
        int data = type == R_X86_64_64;
        if ((type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT && !data) || symidx == 0)
            continue;
        if (data && rel[i].r_addend != 0)
            continue; /* a pointer into a function, not to it */
        const ElfW(Sym) *s = &di->symtab[symidx];
        int stype = ELF64_ST_TYPE(s->st_info);
        if (stype != STT_FUNC && stype != STT_GNU_IFUNC && stype != STT_NOTYPE)
            continue;
        if (di->strsz && s->st_name >= di->strsz)
            continue;
        const char *name = di->strtab + s->st_name;
        if (!name[0])
            continue;
        void **slot = (void **)(o->base + rel[i].r_offset);
        void *cur = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        if (!cur)
            continue; /* an undefined weak reference */
        int lazy = !data && (uintptr_t)cur >= o->lo && (uintptr_t)cur < o->hi;
        const char *version = as_dyn_version(di, symidx, NULL);
        void *val = decide(o, name, version, cur, lazy, ctx);
        if (!val || val == cur)
            continue;
        if (as_got_write(slot, val) != 0) {
            as_warn("cannot make the GOT slot of %s in %s writable: %s", name,
                    o->name[0] ? o->name : "the program", strerror(errno));
            continue;
        }
        written++;
        if (witness)
            *witness = slot;
    }
    return written;
}

int as_got_patch(const as_obj *o, as_got_decide_fn decide, void *ctx) {
    return as_got_patch_w(o, decide, ctx, NULL);
}

int as_got_patch_w(const as_obj *o, as_got_decide_fn decide, void *ctx, void ***witness) {
    as_dyninfo di;
    if (as_dyn_read(o->dyn, o->base, &di) != 0 || !di.symtab)
        return -1;
    int written = 0;
    if (di.jmprel)
        written += patch_table(o, &di, di.jmprel, di.jmprelsz, decide, ctx, witness);
    if (di.rela) {
        /* The linker puts the R_X86_64_RELATIVE entries first and counts them in
         * DT_RELACOUNT: they name no symbol, and are most of a large library's table
         * (libcrypto: 16,922 of 18,109), so the walk starts after them when the last one
         * counted is indeed one. */
        size_t n = di.relasz / sizeof(ElfW(Rela)), skip = di.relacount;
        if (skip > n || (skip && ELF64_R_TYPE(di.rela[skip - 1].r_info) != R_X86_64_RELATIVE))
            skip = 0;
        written += patch_table(o, &di, di.rela + skip, di.relasz - skip * sizeof(ElfW(Rela)),
                               decide, ctx, witness);
    }
    return written;
}
