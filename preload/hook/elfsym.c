/* elfsym.c - reads the function symbols of an ELF file on disk (mapped read-only and read
 * with <elf.h> alone: no library is loaded for it), so a config can name any function a
 * program or library defines: .dynsym with its symbol versions,
 * .symtab (local functions, compiler clones) from the file or from its separate debug file.
 *
 * On-disk places searched for a separate debug file, in this order:
 *   /usr/lib/debug/.build-id/<first byte hex>/<remaining bytes hex>.debug  (NT_GNU_BUILD_ID)
 *   <dir>/<debuglink>, <dir>/.debug/<debuglink>, /usr/lib/debug/<dir>/<debuglink>
 * where <dir> is the directory of the real path of the object and <debuglink> the file
 * name stored in its .gnu_debuglink section. */
#include "hook/elfsym.h"
#include "core/keptenv.h"
#include "hook/buildid.h"
#include "hook/ldpath.h"

#include <errno.h>
#include <fcntl.h>
#include <elf.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define VERSYM_HIDDEN 0x8000
#define VERSYM_INDEX 0x7fff
#define DEBUG_ROOT AS_DEBUG_ROOT

/* A symbol while collecting: the name still points into a mapped ELF string table. */
typedef struct raw_sym {
    const char *name;
    size_t name_len; /* bytes of the name before any '@' */
    const char *version;
    uint64_t value;
    uint64_t size;
    uint8_t bind;
    uint8_t is_ifunc;
    uint8_t exported;
    uint8_t version_default;
    uint8_t from_dynsym;
} raw_sym;

typedef struct raw_list {
    raw_sym *v;
    size_t n, cap;
} raw_list;

/* One open ELF file, mapped read-only as a whole (the kernel pages in only what is read).
 * Section indices are 0 when absent. */
typedef struct elf_file {
    int fd;
    const uint8_t *map;
    size_t size;
    const Elf64_Ehdr *eh;
    const Elf64_Shdr *sh; /* section headers, nsec of them */
    size_t nsec;
    size_t dynsym, symtab, versym, verdef;
    int has_debug_info;
    int is_dyn;
    int has_interp;
    const uint8_t *build_id;
    size_t build_id_len;
    const char *debuglink; /* file name from .gnu_debuglink, inside the mapping */
} elf_file;

/* Writes a reason into err when the caller gave room for one. This function can't fail. */
static void set_err(char *err, size_t cap, const char *fmt, const char *arg) {
    if (err && cap)
        snprintf(err, cap, fmt, arg);
}

/* Unmaps and closes; f is left zeroed with fd -1. */
static void elf_file_close(elf_file *f) {
    if (f->map)
        munmap((void *)f->map, f->size);
    if (f->fd >= 0)
        close(f->fd);
    memset(f, 0, sizeof(*f));
    f->fd = -1;
}

/* The bytes of section i inside the mapping, or NULL (absent, SHT_NOBITS, out of the
 * file); *len gets their count. */
static const uint8_t *sec_data(const elf_file *f, size_t i, size_t *len) {
    *len = 0;
    if (i == 0 || i >= f->nsec)
        return NULL;
    const Elf64_Shdr *sh = &f->sh[i];
    if (sh->sh_type == SHT_NOBITS || sh->sh_offset > f->size ||
        sh->sh_size > f->size - sh->sh_offset)
        return NULL;
    *len = sh->sh_size;
    return f->map + sh->sh_offset;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

/* Maps the pages of [p, p + len) of the file mapping in one system call: a symbol table
 * read from start to end otherwise takes a page fault every few pages, and a fault costs
 * ten times a system call on a virtual machine. Best effort (older kernels refuse). */
static void prefault(const void *p, size_t len) {
    uintptr_t lo = (uintptr_t)p & ~(uintptr_t)4095, hi = (uintptr_t)p + len;
    if (len > 4096)
        madvise((void *)lo, hi - lo, MADV_POPULATE_READ);
}

/* A string section whose last byte is NUL (then every offset inside it starts a
 * terminated string), or NULL; *len gets its size. */
static const char *str_sec(const elf_file *f, size_t strndx, size_t *len) {
    const uint8_t *d = sec_data(f, strndx, len);
    return d && *len > 0 && d[*len - 1] == 0 ? (const char *)d : NULL;
}

/* The NUL-terminated string at off in string section strndx, or NULL. */
static const char *str_at(const elf_file *f, size_t strndx, size_t off) {
    size_t len;
    const char *d = str_sec(f, strndx, &len);
    return d && off < len ? d + off : NULL;
}

/* Reads the build-id note out of the notes d[0, len). */
static void scan_note(elf_file *f, const uint8_t *d, size_t len) {
    size_t off = 0;
    while (off + sizeof(Elf64_Nhdr) <= len) {
        const Elf64_Nhdr *nh = (const Elf64_Nhdr *)(d + off);
        size_t name_off = off + sizeof(*nh);
        size_t desc_off = name_off + ((nh->n_namesz + 3u) & ~3u);
        size_t next = desc_off + ((nh->n_descsz + 3u) & ~3u);
        if (desc_off > len || next > len || next <= off)
            return;
        if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
            memcmp(d + name_off, "GNU", 4) == 0 && nh->n_descsz > 0) {
            f->build_id = d + desc_off;
            f->build_id_len = nh->n_descsz;
            return;
        }
        off = next;
    }
}

/* Opens and maps path and finds the sections we read. Returns 0, or -1 with a reason in
 * err and f closed. */
static int elf_file_open(const char *path, elf_file *f, char *err, size_t cap) {
    memset(f, 0, sizeof(*f));
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        set_err(err, cap, errno == ENOENT ? "%s: no such file" : "%s: cannot open", path);
        return -1;
    }
    struct stat st;
    if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr))
        goto not_elf;
    f->size = (size_t)st.st_size;
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, f->fd, 0);
    if (m == MAP_FAILED) {
        f->size = 0;
        goto not_elf;
    }
    f->map = m;
    const Elf64_Ehdr *eh = f->eh = m;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_ident[EI_DATA] != ELFDATA2LSB)
        goto not_elf;
    f->is_dyn = eh->e_type == ET_DYN;
    if (eh->e_phoff && eh->e_phentsize == sizeof(Elf64_Phdr) && eh->e_phoff < f->size &&
        (size_t)eh->e_phnum * sizeof(Elf64_Phdr) <= f->size - eh->e_phoff) {
        const Elf64_Phdr *ph = (const Elf64_Phdr *)(f->map + eh->e_phoff);
        for (size_t i = 0; i < eh->e_phnum; i++)
            if (ph[i].p_type == PT_INTERP)
                f->has_interp = 1;
    }
    if (!eh->e_shoff || eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shoff >= f->size)
        return 0; /* no section headers: no symbols, still an ELF file */
    f->sh = (const Elf64_Shdr *)(f->map + eh->e_shoff);
    size_t room = (f->size - eh->e_shoff) / sizeof(Elf64_Shdr);
    if (room == 0)
        return 0;
    f->nsec = eh->e_shnum ? eh->e_shnum : f->sh[0].sh_size; /* 0: the count is in section 0 */
    if (f->nsec > room)
        f->nsec = room;
    size_t shstrndx = eh->e_shstrndx == SHN_XINDEX ? f->sh[0].sh_link : eh->e_shstrndx;
    size_t shstr_len;
    const char *shstr = str_sec(f, shstrndx, &shstr_len);
    for (size_t i = 1; i < f->nsec; i++) {
        const Elf64_Shdr *sh = &f->sh[i];
        size_t len;
        const uint8_t *d;
        switch (sh->sh_type) {
        case SHT_DYNSYM:
            f->dynsym = i;
            break;
        case SHT_SYMTAB:
            f->symtab = i;
            break;
        case SHT_GNU_versym:
            f->versym = i;
            break;
        case SHT_GNU_verdef:
            f->verdef = i;
            break;
        case SHT_NOTE:
            if (!f->build_id && (d = sec_data(f, i, &len)) != NULL)
                scan_note(f, d, len);
            break;
        default:
            break;
        }
        if (!shstr || sh->sh_name >= shstr_len)
            continue;
        const char *name = shstr + sh->sh_name;
        if (strcmp(name, ".debug_info") == 0 && sh->sh_type != SHT_NOBITS && sh->sh_size > 0)
            f->has_debug_info = 1;
        if (strcmp(name, ".gnu_debuglink") == 0) {
            d = sec_data(f, i, &len);
            if (d && len > 1 && memchr(d, 0, len))
                f->debuglink = (const char *)d;
        }
    }
    return 0;
not_elf:
    set_err(err, cap, "%s: not an ELF file", path);
    elf_file_close(f);
    return -1;
}

/* Appends s. Returns 0, or -1 when out of memory (the list is unchanged). */
static int raw_push(raw_list *l, const raw_sym *s) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        raw_sym *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *s;
    return 0;
}

/* Version names by verdef index (1..max), pointing into the mapping. Returns a calloc'ed
 * table of *n entries, or NULL when the file defines no versions. */
static const char **read_verdefs(const elf_file *f, size_t *n) {
    *n = 0;
    size_t len;
    const uint8_t *d = sec_data(f, f->verdef, &len);
    if (!d)
        return NULL;
    const Elf64_Shdr *sh = &f->sh[f->verdef];
    size_t max = 0, off = 0;
    for (size_t i = 0; i < sh->sh_info && off + sizeof(Elf64_Verdef) <= len; i++) {
        const Elf64_Verdef *vd = (const Elf64_Verdef *)(d + off);
        if (vd->vd_ndx > max)
            max = vd->vd_ndx;
        if (!vd->vd_next)
            break;
        off += vd->vd_next;
    }
    const char **names = calloc(max + 1, sizeof(*names));
    if (!names)
        return NULL;
    off = 0;
    for (size_t i = 0; i < sh->sh_info && off + sizeof(Elf64_Verdef) <= len; i++) {
        const Elf64_Verdef *vd = (const Elf64_Verdef *)(d + off);
        size_t aux = off + vd->vd_aux;
        if (vd->vd_cnt > 0 && !(vd->vd_flags & VER_FLG_BASE) && aux >= off &&
            aux + sizeof(Elf64_Verdaux) <= len) {
            const Elf64_Verdaux *va = (const Elf64_Verdaux *)(d + aux);
            names[vd->vd_ndx] = str_at(f, sh->sh_link, va->vda_name);
        }
        if (!vd->vd_next)
            break;
        off += vd->vd_next;
    }
    *n = max + 1;
    return names;
}

/* Returns 1 for a defined STT_FUNC / STT_GNU_IFUNC symbol with a non-zero value. */
static int is_function(const Elf64_Sym *s) {
    int type = ELF64_ST_TYPE(s->st_info);
    return (type == STT_FUNC || type == STT_GNU_IFUNC) && s->st_shndx != SHN_UNDEF &&
           s->st_value != 0;
}

/* Appends the defined functions of symbol section scn. dynamic selects the .dynsym rules
 * (versions from .gnu.version, exported flag). Returns 0, or -1 when out of memory. */
static int collect(const elf_file *f, size_t scn, int dynamic, as_sym_keep_fn keep, void *ctx,
                   raw_list *out) {
    size_t len;
    const uint8_t *d = sec_data(f, scn, &len);
    if (!d || f->sh[scn].sh_entsize != sizeof(Elf64_Sym))
        return 0;
    size_t strlen_ = 0;
    const uint8_t *sd = sec_data(f, f->sh[scn].sh_link, &strlen_);
    prefault(d, len);
    prefault(sd, strlen_);
    const char *strs = str_sec(f, f->sh[scn].sh_link, &strlen_);
    if (!strs)
        return 0;
    const Elf64_Sym *syms = (const Elf64_Sym *)d;
    size_t count = len / sizeof(Elf64_Sym);
    size_t vlen = 0;
    const uint16_t *vs = dynamic ? (const uint16_t *)sec_data(f, f->versym, &vlen) : NULL;
    size_t nvs = vlen / sizeof(uint16_t);
    size_t nver = 0;
    const char **vernames = dynamic ? read_verdefs(f, &nver) : NULL;
    int rc = 0;
    for (size_t i = 1; i < count; i++) {
        const Elf64_Sym *s = &syms[i];
        if (!is_function(s))
            continue;
        if (s->st_name >= strlen_ || !strs[s->st_name])
            continue;
        const char *name = strs + s->st_name;
        if (keep && !keep(name, ctx))
            continue;
        const char *at = strchrnul(name, '@'); /* one pass: the name's end or its version */
        size_t name_len = (size_t)(at - name);
        raw_sym r = {.name = name,
                     .value = s->st_value,
                     .size = s->st_size,
                     .bind = ELF64_ST_BIND(s->st_info),
                     .is_ifunc = ELF64_ST_TYPE(s->st_info) == STT_GNU_IFUNC,
                     .version_default = 1,
                     .from_dynsym = (uint8_t)dynamic};
        r.name_len = name_len;
        if (*at) { /* .symtab spelling of a versioned symbol: "memcpy@GLIBC_2.2.5" */
            r.version_default = at[1] == '@';
            r.version = at + 1 + (at[1] == '@');
        }
        if (dynamic) {
            int vis = ELF64_ST_VISIBILITY(s->st_other);
            r.exported = (r.bind == STB_GLOBAL || r.bind == STB_WEAK) &&
                         (vis == STV_DEFAULT || vis == STV_PROTECTED);
            if (vs && i < nvs) {
                uint16_t v = vs[i];
                size_t idx = v & VERSYM_INDEX;
                if (idx > 1 && idx < nver && vernames[idx]) {
                    r.version = vernames[idx];
                    r.version_default = !(v & VERSYM_HIDDEN);
                }
            }
        }
        if (raw_push(out, &r) != 0) {
            rc = -1;
            break;
        }
    }
    free(vernames);
    return rc;
}

/* Compares two names given with their lengths, like strcmp. */
static int cmp_name(const char *a, size_t alen, const char *b, size_t blen) {
    size_t n = alen < blen ? alen : blen;
    int c = memcmp(a, b, n);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* strcmp where NULL sorts first. */
static int cmp_opt_str(const char *a, const char *b) {
    if (!a || !b)
        return a ? 1 : b ? -1 : 0;
    return strcmp(a, b);
}

/* Order: name, value, version (unversioned first), .dynsym entries before .symtab ones. */
static int cmp_raw(const void *pa, const void *pb) {
    const raw_sym *a = pa, *b = pb;
    int c = cmp_name(a->name, a->name_len, b->name, b->name_len);
    if (c)
        return c;
    if (a->value != b->value)
        return a->value < b->value ? -1 : 1;
    c = cmp_opt_str(a->version, b->version);
    if (c)
        return c;
    return a->from_dynsym == b->from_dynsym ? 0 : a->from_dynsym ? -1 : 1;
}

/* The entry among kept[0..n) (sorted) that describes the same function as r: same name
 * and value, and the same version or one of them unversioned. NULL when none. */
static raw_sym *same_function(raw_sym *kept, size_t n, const raw_sym *r) {
    for (size_t i = n; i-- > 0;) {
        raw_sym *p = &kept[i];
        if (p->value != r->value || cmp_name(p->name, p->name_len, r->name, r->name_len) != 0)
            return NULL;
        if (!p->version || !r->version || strcmp(p->version, r->version) == 0)
            return p;
    }
    return NULL;
}

/* Final order: name, default version first, version, value. */
static int cmp_sym(const void *pa, const void *pb) {
    const as_sym *a = pa, *b = pb;
    int c = strcmp(a->name, b->name);
    if (c)
        return c;
    if (a->version_default != b->version_default)
        return a->version_default ? -1 : 1;
    c = cmp_opt_str(a->version, b->version);
    if (c)
        return c;
    return a->value < b->value ? -1 : a->value > b->value;
}

/* Looks for the separate debug file of f (build-id first, then .gnu_debuglink). Returns a
 * malloc'ed path or NULL. */
static char *find_debug_file(const char *path, const elf_file *f) {
    char buf[PATH_MAX];
    struct stat st, self;
    if (fstat(f->fd, &self) != 0)
        return NULL;
    if (as_build_id_debug_path(f->build_id, f->build_id_len, buf, sizeof buf) == 0 &&
        stat(buf, &st) == 0 && S_ISREG(st.st_mode))
        return strdup(buf);
    if (!f->debuglink || strchr(f->debuglink, '/'))
        return NULL;
    char real[PATH_MAX];
    if (!realpath(path, real))
        return NULL;
    char *slash = strrchr(real, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    const char *dir = real;
    const char *fmts[] = {"%s/%s", "%s/.debug/%s", DEBUG_ROOT "%s/%s"};
    for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        if (snprintf(buf, sizeof(buf), fmts[i], dir, f->debuglink) >= (int)sizeof(buf))
            continue;
        if (stat(buf, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (st.st_dev == self.st_dev && st.st_ino == self.st_ino)
            continue; /* the object itself */
        return strdup(buf);
    }
    return NULL;
}

/* Copies the merged symbols and their strings into t (one string block in t->priv).
 * Returns 0, or -1 when out of memory (t untouched). */
static int build_table(raw_list *l, as_symtab *t) {
    if (l->n)
        qsort(l->v, l->n, sizeof(raw_sym), cmp_raw);
    size_t keep = 0, bytes = 0;
    for (size_t i = 0; i < l->n; i++) {
        raw_sym *r = &l->v[i];
        raw_sym *p = same_function(l->v, keep, r);
        if (p) {
            /* One function seen twice (.dynsym and .symtab): the .dynsym entry wins, and
             * a version known to either is kept. */
            if (r->from_dynsym && !p->from_dynsym) {
                const char *ver = p->version;
                uint8_t def = p->version_default;
                bytes -= p->version ? strlen(p->version) + 1 : 0;
                *p = *r;
                if (!p->version) {
                    p->version = ver;
                    p->version_default = def;
                }
                bytes += p->version ? strlen(p->version) + 1 : 0;
            } else if (!p->version && r->version) {
                p->version = r->version;
                p->version_default = r->version_default;
                bytes += strlen(r->version) + 1;
            }
            continue;
        }
        l->v[keep++] = *r;
        bytes += r->name_len + 1 + (r->version ? strlen(r->version) + 1 : 0);
    }
    as_sym *syms = calloc(keep ? keep : 1, sizeof(*syms));
    char *pool = malloc(bytes ? bytes : 1);
    if (!syms || !pool) {
        free(syms);
        free(pool);
        return -1;
    }
    char *w = pool;
    for (size_t i = 0; i < keep; i++) {
        raw_sym *r = &l->v[i];
        as_sym *s = &syms[i];
        memcpy(w, r->name, r->name_len);
        w[r->name_len] = '\0';
        s->name = w;
        w += r->name_len + 1;
        if (r->version) {
            size_t vl = strlen(r->version);
            memcpy(w, r->version, vl + 1);
            s->version = w;
            w += vl + 1;
        }
        s->value = r->value;
        s->size = r->size;
        s->bind = r->bind;
        s->is_ifunc = r->is_ifunc;
        s->exported = r->exported;
        s->version_default = r->version_default;
    }
    if (keep)
        qsort(syms, keep, sizeof(*syms), cmp_sym);
    t->syms = syms;
    t->n = keep;
    t->priv = pool;
    return 0;
}

/* Returns 0 with *t filled, or -1 with err set and *t zeroed (see elfsym.h). */
int as_symtab_load(const char *path, as_symtab *t, char *err, size_t cap) {
    return as_symtab_load_some(path, t, err, cap, NULL, NULL);
}

/* The same, keeping only what keep accepts (all when keep is NULL). */
int as_symtab_load_some(const char *path, as_symtab *t, char *err, size_t cap, as_sym_keep_fn keep,
                        void *ctx) {
    elf_file f, dbg;
    raw_list raw = {0};
    char *debug_file = NULL;
    int rc = -1;
    memset(t, 0, sizeof(*t));
    if (!path || !*path) {
        set_err(err, cap, "%s: no such file", "(empty path)");
        return -1;
    }
    if (elf_file_open(path, &f, err, cap) != 0)
        return -1;
    memset(&dbg, 0, sizeof(dbg));
    dbg.fd = -1;
    if (!f.symtab || !f.has_debug_info) {
        debug_file = find_debug_file(path, &f);
        if (debug_file && elf_file_open(debug_file, &dbg, NULL, 0) != 0) {
            free(debug_file);
            debug_file = NULL;
        }
        if (debug_file && f.build_id && dbg.build_id &&
            (f.build_id_len != dbg.build_id_len ||
             memcmp(f.build_id, dbg.build_id, f.build_id_len) != 0)) {
            elf_file_close(&dbg); /* a debug file of another build: its addresses lie */
            free(debug_file);
            debug_file = NULL;
        }
    }
    if (f.dynsym && collect(&f, f.dynsym, 1, keep, ctx, &raw) != 0)
        goto oom;
    if (f.symtab && collect(&f, f.symtab, 0, keep, ctx, &raw) != 0)
        goto oom;
    if (!f.symtab && dbg.symtab && collect(&dbg, dbg.symtab, 0, keep, ctx, &raw) != 0)
        goto oom;
    t->path = strdup(path);
    if (!t->path || build_table(&raw, t) != 0)
        goto oom;
    t->is_dyn = f.is_dyn;
    if (f.has_debug_info) {
        t->has_debug = 1;
        t->debug_path = strdup(path);
    } else if (debug_file && dbg.has_debug_info) {
        t->has_debug = 1;
        t->debug_path = debug_file;
        debug_file = NULL;
    }
    rc = 0;
    goto out;
oom:
    set_err(err, cap, "%s: out of memory", path);
    free(t->path);
    memset(t, 0, sizeof(*t));
out:
    free(raw.v);
    free(debug_file);
    elf_file_close(&dbg);
    elf_file_close(&f);
    return rc;
}

/* Frees what as_symtab_load allocated and zeroes *t. Accepts NULL. */
void as_symtab_free(as_symtab *t) {
    if (!t)
        return;
    free(t->path);
    free(t->syms);
    free(t->debug_path);
    free(t->priv);
    memset(t, 0, sizeof(*t));
}

/* Returns the exported default-version entry named name, else its first entry, or
 * NULL when absent. */
const as_sym *as_symtab_find(const as_symtab *t, const char *name) {
    if (!t || !name || t->n == 0)
        return NULL;
    size_t lo = 0, hi = t->n;
    while (lo < hi) { /* first index whose name is >= name */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(t->syms[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == t->n || strcmp(t->syms[lo].name, name) != 0)
        return NULL;
    /* Sorted default version first; among those prefer an exported definition. */
    for (size_t i = lo; i < t->n && strcmp(t->syms[i].name, name) == 0; i++) {
        if (t->syms[i].version_default && t->syms[i].exported)
            return &t->syms[i];
    }
    return &t->syms[lo];
}

/* Matches one bracket expression at *pp against c; advances *pp past it. Returns 1 on
 * match, 0 on no match, -1 when the bracket is not closed (then '[' is literal). */
static int match_class(const char **pp, const char *end, char c) {
    const char *p = *pp + 1;
    int negate = 0, hit = 0;
    if (p < end && (*p == '!' || *p == '^')) {
        negate = 1;
        p++;
    }
    const char *first = p;
    while (p < end && (*p != ']' || p == first)) {
        char lo = *p, hi = *p;
        if (p + 2 < end && p[1] == '-' && p[2] != ']') {
            hi = p[2];
            p += 2;
        }
        if ((unsigned char)c >= (unsigned char)lo && (unsigned char)c <= (unsigned char)hi)
            hit = 1;
        p++;
    }
    if (p >= end)
        return -1;
    *pp = p + 1;
    return hit != negate;
}

/* Glob match of pattern [p, pe) against [s, se). Iterative with one backtrack point for
 * the last '*', so it runs in O(len(p) * len(s)) at worst and never recurses. */
static int glob_range(const char *p, const char *pe, const char *s, const char *se) {
    const char *star_p = NULL, *star_s = NULL;
    while (s < se) {
        if (p < pe && *p == '*') {
            while (p < pe && *p == '*')
                p++;
            if (p == pe)
                return 1;
            star_p = p;
            star_s = s;
            continue;
        }
        if (p < pe && *p == '[') {
            const char *q = p;
            int m = match_class(&q, pe, *s);
            if (m == 1) {
                p = q;
                s++;
                continue;
            }
            if (m == -1 && *s == '[') {
                p++;
                s++;
                continue;
            }
        } else if (p < pe && (*p == '?' || *p == *s)) {
            p++;
            s++;
            continue;
        }
        if (!star_p)
            return 0;
        p = star_p;
        s = ++star_s;
    }
    while (p < pe && *p == '*')
        p++;
    return p == pe;
}

/* Splits "name@VER" / "name@@VER" at the first '@': *ver gets the version (or NULL).
 * Returns the length of the name part. */
static size_t split_version(const char *s, const char **ver) {
    const char *at = strchr(s, '@');
    if (!at) {
        *ver = NULL;
        return strlen(s);
    }
    *ver = at + 1 + (at[1] == '@');
    return (size_t)(at - s);
}

/* Returns 1 when s ("name" or "name@VERSION") matches pattern; a pattern without a
 * version matches any version, one with a version only that version. */
int as_glob_match(const char *pattern, const char *s) {
    if (!pattern || !s)
        return 0;
    const char *pver, *sver;
    size_t pn = split_version(pattern, &pver);
    size_t sn = split_version(s, &sver);
    if (pver && !sver)
        return 0; /* a versioned pattern never matches an unversioned symbol */
    if (!as_is_glob(pattern)) {
        if (pn != sn || memcmp(pattern, s, pn) != 0)
            return 0;
        return !pver || strcmp(pver, sver) == 0;
    }
    if (!glob_range(pattern, pattern + pn, s, s + sn))
        return 0;
    return !pver || glob_range(pver, pver + strlen(pver), sver, sver + strlen(sver));
}

/* Returns 1 when pattern contains *, ? or [. */
int as_is_glob(const char *pattern) {
    return pattern && strpbrk(pattern, "*?[") != NULL;
}

/* Frees an as_program_objects result. Accepts NULL. */
void as_paths_free(char **paths, int n) {
    if (!paths)
        return;
    for (int i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

/* Resolves a program name the way execvp does: a name with '/' is made absolute against
 * the current directory, otherwise PATH is searched for an executable regular file.
 * Returns a malloc'ed path, or NULL when not found. */
static char *resolve_program(const char *program) {
    char buf[PATH_MAX];
    struct stat st;
    if (strchr(program, '/')) {
        if (program[0] == '/')
            return strdup(program);
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd)) ||
            snprintf(buf, sizeof(buf), "%s/%s", cwd, program) >= (int)sizeof(buf))
            return strdup(program);
        return strdup(buf);
    }
    const char *path = as_keptenv_get("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        const char *dir = len ? path : ".";
        int dlen = len ? (int)len : 1;
        if (snprintf(buf, sizeof(buf), "%.*s/%s", dlen, dir, program) < (int)sizeof(buf) &&
            stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
            return strdup(buf);
        path += len + (colon ? 1 : 0);
        if (!colon)
            break;
    }
    return NULL;
}

/* Appends a copy of p[0..len) unless already present. Returns 0, or -1 when out of
 * memory (the list stays valid). */
static int push_path(char ***paths, int *n, const char *p, size_t len) {
    for (int i = 0; i < *n; i++) {
        if (strlen((*paths)[i]) == len && memcmp((*paths)[i], p, len) == 0)
            return 0;
    }
    char **v = realloc(*paths, (size_t)(*n + 1) * sizeof(*v));
    if (!v)
        return -1;
    *paths = v;
    v[*n] = strndup(p, len);
    if (!v[*n])
        return -1;
    (*n)++;
    return 0;
}

/* Returns the number of paths (>= 1) with *paths allocated, or -1 with err set and
 * *paths NULL. */
int as_program_objects(const char *program, char ***paths, char *err, size_t cap) {
    *paths = NULL;
    if (!program || !*program) {
        set_err(err, cap, "%s: no such file", "(empty program)");
        return -1;
    }
    char *abs = resolve_program(program);
    if (!abs) {
        set_err(err, cap, "%s: not found in PATH", program);
        return -1;
    }
    struct stat st;
    if (stat(abs, &st) != 0) {
        set_err(err, cap, "%s: no such file", program);
        free(abs);
        return -1;
    }
    int n = 0;
    char **v = NULL;
    if (push_path(&v, &n, abs, strlen(abs)) != 0)
        goto oom;
    elf_file f;
    int dynamic = 0;
    if (elf_file_open(abs, &f, NULL, 0) == 0) {
        dynamic = f.has_interp; /* static binaries and plain libraries are not run */
        elf_file_close(&f);
    }
    /* The libraries are found by reading files (ldpath.c), never by running the
     * program's interpreter: a program names its own (PT_INTERP). */
    if (dynamic && as_ldpath_deps(abs, &v, &n) != 0)
        goto oom;
    free(abs);
    *paths = v;
    return n;
oom:
    set_err(err, cap, "%s: out of memory", program);
    as_paths_free(v, n);
    free(abs);
    return -1;
}
