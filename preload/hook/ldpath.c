/* ldpath.c - the dynamic linker's library search, done by reading ELF headers and the
 * loader cache (ldpath.h), so that `agentsight check` and `symbols --deps` never run the
 * program's own interpreter (which a hostile program names itself, PT_INTERP). */
#include "hook/ldpath.h"
#include "core/keptenv.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Debian's multiarch layout: what $LIB means and where the linker looks last. */
#define DST_LIB "lib/x86_64-linux-gnu" /* Debian's multiarch $LIB */
static const char *const system_dirs[] = {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                                          "/lib", "/usr/lib"};
#define LDSO_CACHE "/etc/ld.so.cache"
#define LDSO_CONF "/etc/ld.so.conf"
#define MAX_NEEDED 256
#define MAX_STRTAB (1u << 24)

/* What the search needs from one ELF object. Strings are malloc'ed. */
typedef struct dyninfo {
    char *needed[MAX_NEEDED];
    int nneeded;
    char *rpath, *runpath, *soname, *interp;
} dyninfo;

static void dyninfo_free(dyninfo *d) {
    for (int i = 0; i < d->nneeded; i++)
        free(d->needed[i]);
    free(d->rpath);
    free(d->runpath);
    free(d->soname);
    free(d->interp);
    memset(d, 0, sizeof *d);
}

static int pread_all(int fd, void *buf, size_t n, off_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* Opens path when it is a regular file holding an ELF object of our class and machine
 * (the linker skips others and goes on searching). Returns the fd, or -1. */
static int open_elf(const char *path, Elf64_Ehdr *eh) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || pread_all(fd, eh, sizeof *eh, 0) != 0 ||
        memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_machine != EM_X86_64 ||
        eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 || eh->e_phnum > 512) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A copy of the NUL-terminated string at off in strtab (size sz), or NULL. */
static char *str_at(const char *strtab, size_t sz, uint64_t off) {
    if (off >= sz)
        return NULL;
    size_t len = strnlen(strtab + off, sz - off);
    return len < sz - off ? strndup(strtab + off, len) : NULL;
}

/* Reads the dynamic facts of path into d. Returns 0, or -1 when path is not a usable ELF
 * object (d is then empty). */
static int read_dyn(const char *path, dyninfo *d) {
    memset(d, 0, sizeof *d);
    Elf64_Ehdr eh;
    int fd = open_elf(path, &eh);
    if (fd < 0)
        return -1;
    Elf64_Phdr ph[512];
    Elf64_Dyn *dyn = NULL;
    char *strtab = NULL;
    int rc = -1;
    size_t nph = eh.e_phnum;
    if (pread_all(fd, ph, nph * sizeof *ph, (off_t)eh.e_phoff) != 0)
        goto out;
    const Elf64_Phdr *pdyn = NULL;
    for (size_t i = 0; i < nph; i++) {
        if (ph[i].p_type == PT_DYNAMIC)
            pdyn = &ph[i];
        if (ph[i].p_type == PT_INTERP && ph[i].p_filesz > 1 && ph[i].p_filesz < PATH_MAX &&
            !d->interp) {
            d->interp = calloc(1, ph[i].p_filesz + 1);
            if (d->interp && pread_all(fd, d->interp, ph[i].p_filesz, (off_t)ph[i].p_offset))
                d->interp[0] = '\0';
        }
    }
    rc = 0;
    if (!pdyn || pdyn->p_filesz == 0 || pdyn->p_filesz > (1u << 20))
        goto out; /* static: no libraries */
    size_t ndyn = pdyn->p_filesz / sizeof(Elf64_Dyn);
    dyn = malloc(ndyn * sizeof *dyn);
    if (!dyn || pread_all(fd, dyn, ndyn * sizeof *dyn, (off_t)pdyn->p_offset) != 0)
        goto out;
    uint64_t strva = 0, strsz = 0;
    for (size_t i = 0; i < ndyn && dyn[i].d_tag != DT_NULL; i++) {
        if (dyn[i].d_tag == DT_STRTAB)
            strva = dyn[i].d_un.d_ptr;
        else if (dyn[i].d_tag == DT_STRSZ)
            strsz = dyn[i].d_un.d_val;
    }
    if (!strva || !strsz || strsz > MAX_STRTAB)
        goto out;
    /* DT_STRTAB is an address: the PT_LOAD segment holding it gives the file offset. */
    uint64_t stroff = UINT64_MAX;
    for (size_t i = 0; i < nph; i++)
        if (ph[i].p_type == PT_LOAD && strva >= ph[i].p_vaddr &&
            strva - ph[i].p_vaddr < ph[i].p_filesz &&
            strsz <= ph[i].p_filesz - (strva - ph[i].p_vaddr))
            stroff = ph[i].p_offset + (strva - ph[i].p_vaddr);
    if (stroff == UINT64_MAX)
        goto out;
    strtab = malloc(strsz);
    if (!strtab || pread_all(fd, strtab, strsz, (off_t)stroff) != 0)
        goto out;
    for (size_t i = 0; i < ndyn && dyn[i].d_tag != DT_NULL; i++) {
        uint64_t v = dyn[i].d_un.d_val;
        switch (dyn[i].d_tag) {
        case DT_NEEDED:
            if (d->nneeded < MAX_NEEDED && (d->needed[d->nneeded] = str_at(strtab, strsz, v)))
                d->nneeded++;
            break;
        case DT_RPATH:
            if (!d->rpath)
                d->rpath = str_at(strtab, strsz, v);
            break;
        case DT_RUNPATH:
            if (!d->runpath)
                d->runpath = str_at(strtab, strsz, v);
            break;
        case DT_SONAME:
            if (!d->soname)
                d->soname = str_at(strtab, strsz, v);
            break;
        }
    }
out:
    free(dyn);
    free(strtab);
    close(fd);
    return rc;
}

/* ---- /etc/ld.so.cache (glibc "glibc-ld.so.cache1.1" format) ---- */

#define CACHE_MAGIC "glibc-ld.so.cache"
#define CACHE_VERSION "1.1"
#define FLAG_ELF_LIBC6 0x0003
#define FLAG_X8664_LIB64 0x0300

struct cache_hdr {
    char magic[sizeof CACHE_MAGIC - 1];
    char version[sizeof CACHE_VERSION - 1];
    uint32_t nlibs;
    uint32_t len_strings;
    uint8_t flags;
    uint8_t pad[3];
    uint32_t extension_offset;
    uint32_t unused[3];
};

struct cache_entry {
    int32_t flags;
    uint32_t key, value; /* offsets from the start of the new-format header */
    uint32_t osversion;
    uint64_t hwcap;
};

typedef struct ldcache {
    const char *map;
    size_t size;
    const struct cache_hdr *hdr; /* NULL: no usable cache */
    size_t hdr_off;
} ldcache;

static void cache_open(ldcache *c) {
    memset(c, 0, sizeof *c);
    int fd = open(LDSO_CACHE, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        st.st_size > (off_t)sizeof(struct cache_hdr) && st.st_size < (off_t)(256u << 20)) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            c->map = m;
            c->size = (size_t)st.st_size;
        }
    }
    close(fd);
    if (!c->map)
        return;
    /* The new format alone, or after the old one ("ld.so-1.7.0"): look for its magic. */
    const char *p = memmem(c->map, c->size, CACHE_MAGIC CACHE_VERSION,
                           sizeof CACHE_MAGIC + sizeof CACHE_VERSION - 2);
    if (!p)
        return;
    size_t off = (size_t)(p - c->map);
    if (c->size - off < sizeof(struct cache_hdr))
        return;
    const struct cache_hdr *h = (const void *)p;
    if ((size_t)h->nlibs > (c->size - off - sizeof *h) / sizeof(struct cache_entry))
        return;
    c->hdr = h;
    c->hdr_off = off;
}

static void cache_close(ldcache *c) {
    if (c->map)
        munmap((void *)c->map, c->size);
    memset(c, 0, sizeof *c);
}

static const char *cache_str(const ldcache *c, uint32_t off) {
    size_t at = c->hdr_off + off;
    if (off >= c->size || at >= c->size || !memchr(c->map + at, '\0', c->size - at))
        return NULL;
    return c->map + at;
}

/* The cache's path for name (an x86-64 libc6 library without a hwcap subdirectory), or
 * NULL. */
static const char *cache_lookup(const ldcache *c, const char *name) {
    if (!c->hdr)
        return NULL;
    const struct cache_entry *e = (const void *)(c->hdr + 1);
    for (uint32_t i = 0; i < c->hdr->nlibs; i++) {
        if ((e[i].flags & 0xff) != FLAG_ELF_LIBC6 || (e[i].flags & 0xff00) != FLAG_X8664_LIB64 ||
            e[i].hwcap != 0)
            continue;
        const char *k = cache_str(c, e[i].key);
        if (k && strcmp(k, name) == 0)
            return cache_str(c, e[i].value);
    }
    return NULL;
}

/* ---- the search ---- */

typedef struct search {
    char ***paths;
    int *n;
    char *sonames[AS_LDPATH_MAX]; /* per listed object (after the program): its DT_SONAME */
    char *origin_exe;             /* $ORIGIN of the program */
    char *exe_rpath;              /* the program's DT_RPATH when it has no DT_RUNPATH */
    ldcache cache;
    char **conf_dirs; /* /etc/ld.so.conf directories, read when the cache is unusable */
    int nconf;
    int conf_read;
    int oom;
} search;

static int push(search *s, const char *path, const char *soname) {
    if (*s->n >= AS_LDPATH_MAX)
        return -1;
    char **v = realloc(*s->paths, (size_t)(*s->n + 1) * sizeof *v);
    if (!v) {
        s->oom = 1;
        return -1;
    }
    *s->paths = v;
    v[*s->n] = strdup(path);
    char *so = soname ? strdup(soname) : NULL;
    if (!v[*s->n] || (soname && !so)) {
        free(v[*s->n]);
        free(so);
        s->oom = 1;
        return -1;
    }
    s->sonames[*s->n] = so;
    (*s->n)++;
    return 0;
}

/* Whether name (a DT_NEEDED) is an object already listed: by soname, or by the last path
 * component of its file, as the linker compares them. */
static int listed(const search *s, const char *name) {
    for (int i = 0; i < *s->n; i++) {
        const char *p = (*s->paths)[i];
        if (s->sonames[i] && strcmp(s->sonames[i], name) == 0)
            return 1;
        if (strchr(name, '/') ? strcmp(p, name) == 0 : 0)
            return 1;
    }
    return 0;
}

static int listed_path(const search *s, const char *path) {
    struct stat a, b;
    int have = stat(path, &a) == 0;
    for (int i = 0; i < *s->n; i++) {
        if (strcmp((*s->paths)[i], path) == 0)
            return 1;
        if (have && stat((*s->paths)[i], &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
            return 1;
    }
    return 0;
}

/* The length of the DST name ref at input ("ORIGIN" or "{ORIGIN}"), counting the braces,
 * or 0 when input does not start with it (glibc's is_dst: an unbraced name must not be
 * followed by an identifier character). */
static size_t is_dst(const char *input, size_t avail, const char *ref) {
    size_t rl = strlen(ref);
    int curly = avail > 0 && input[0] == '{';
    const char *p = input + curly;
    size_t left = avail - (size_t)curly;
    if (left < rl || strncmp(p, ref, rl) != 0)
        return 0;
    if (curly)
        return left > rl && p[rl] == '}' ? rl + 2 : 0;
    if (left > rl && (p[rl] == '_' || (p[rl] >= '0' && p[rl] <= '9') ||
                      ((p[rl] | 0x20) >= 'a' && (p[rl] | 0x20) <= 'z')))
        return 0;
    return rl;
}

/* The loader's $PLATFORM. The kernel's AT_PLATFORM ("x86_64"), except where the C library
 * replaces it (glibc's init_cpu_features, x86_64): on an Intel CPU, "xeon_phi" with
 * AVX512CD, ER and PF, else "haswell" with AVX2, FMA, BMI1, BMI2, LZCNT, MOVBE and POPCNT,
 * each usable (the OS saving the vector state). Worked out once. */
static const char *loader_platform(void) {
    static const char *plat;
    if (plat)
        return plat;
    const char *p = (const char *)getauxval(AT_PLATFORM);
    const char *found = p && p[0] ? p : "x86_64";
#if defined(__x86_64__)
    __builtin_cpu_init();
    unsigned a, b, c, d;
    int lzcnt = __get_cpuid(0x80000001u, &a, &b, &c, &d) && (c & (1u << 5));
    int movbe = __get_cpuid(1u, &a, &b, &c, &d) && (c & (1u << 22));
    if (__builtin_cpu_is("intel")) {
        if (__builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512er") &&
            __builtin_cpu_supports("avx512pf"))
            found = "xeon_phi";
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                 __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") && lzcnt &&
                 movbe && __builtin_cpu_supports("popcnt"))
            found = "haswell";
    }
#endif
    __atomic_store_n(&plat, found, __ATOMIC_RELEASE);
    return found;
}

int as_dst_expand(const char *in, size_t len, const char *origin, int keep_unknown, char *out,
                  size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        const char *val = NULL;
        size_t skip = 0;
        if (in[i] == '$') {
            const char *p = in + i + 1;
            size_t avail = len - i - 1;
            if ((skip = is_dst(p, avail, "ORIGIN"))) {
                val = origin;
            } else if ((skip = is_dst(p, avail, "PLATFORM"))) {
                val = loader_platform();
            } else if ((skip = is_dst(p, avail, "LIB"))) {
                val = DST_LIB;
            }
            if (!val && !keep_unknown)
                return -1; /* an unknown name, or $ORIGIN with no origin */
        }
        if (val) {
            size_t vl = strlen(val);
            if (o + vl >= cap)
                return -1;
            memcpy(out + o, val, vl);
            o += vl;
            i += 1 + skip;
            continue;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = in[i++];
    }
    out[o] = '\0';
    return 0;
}

/* Tries dir/name. Returns 1 (found, out holds the path) or 0. */
static int try_dir(const char *dir, const char *name, char *out, size_t cap) {
    if (!*dir)
        dir = "."; /* an empty element means the working directory */
    if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap)
        return 0;
    Elf64_Ehdr eh;
    int fd = open_elf(out, &eh);
    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

/* Searches a ':'-separated list (';' too, as the linker reads LD_LIBRARY_PATH). */
static int try_list(const char *list, const char *origin, const char *name, char *out, size_t cap) {
    char dir[PATH_MAX];
    for (const char *p = list; p;) {
        size_t len = strcspn(p, ":;");
        if (as_dst_expand(p, len, origin, 0, dir, sizeof dir) == 0 && try_dir(dir, name, out, cap))
            return 1;
        p = p[len] ? p + len + 1 : NULL;
    }
    return 0;
}

/* Adds the directories of one ld.so.conf file (include lines followed, depth-bounded). */
static void conf_file(search *s, const char *path, int depth) {
    FILE *f = depth < 8 ? fopen(path, "re") : NULL;
    if (!f)
        return;
    char line[PATH_MAX];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "#\n")] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t l = strlen(p);
        while (l && (p[l - 1] == ' ' || p[l - 1] == '\t'))
            p[--l] = '\0';
        if (!*p)
            continue;
        if (strncmp(p, "include", 7) == 0 && (p[7] == ' ' || p[7] == '\t')) {
            char *pat = p + 8;
            while (*pat == ' ' || *pat == '\t')
                pat++;
            glob_t g;
            if (glob(pat, 0, NULL, &g) == 0) {
                for (size_t i = 0; i < g.gl_pathc; i++)
                    conf_file(s, g.gl_pathv[i], depth + 1);
                globfree(&g);
            }
            continue;
        }
        if (*p != '/' || s->nconf >= 256)
            continue;
        char **v = realloc(s->conf_dirs, (size_t)(s->nconf + 1) * sizeof *v);
        if (!v)
            break;
        s->conf_dirs = v;
        if ((v[s->nconf] = strdup(p)))
            s->nconf++;
    }
    fclose(f);
}

/* Finds needed (a DT_NEEDED of the object whose facts are d and whose directory is
 * origin). Returns 1 with the path in out, or 0. */
static int find(search *s, const dyninfo *d, const char *origin, const char *needed, char *out,
                size_t cap) {
    Elf64_Ehdr eh;
    if (strchr(needed, '/')) { /* a path: taken as it is ($ORIGIN expanded) */
        if (as_dst_expand(needed, strlen(needed), origin, 0, out, cap) != 0)
            return 0;
        int fd = open_elf(out, &eh);
        if (fd < 0)
            return 0;
        close(fd);
        return 1;
    }
    /* DT_RPATH of the object, then of the program, unless the object has DT_RUNPATH */
    if (!d->runpath && d->rpath && try_list(d->rpath, origin, needed, out, cap))
        return 1;
    if (!d->runpath && s->exe_rpath && try_list(s->exe_rpath, s->origin_exe, needed, out, cap))
        return 1;
    const char *llp = as_keptenv_get("LD_LIBRARY_PATH");
    if (llp && *llp && try_list(llp, origin, needed, out, cap))
        return 1;
    if (d->runpath && try_list(d->runpath, origin, needed, out, cap))
        return 1;
    const char *c = cache_lookup(&s->cache, needed);
    if (c && (size_t)snprintf(out, cap, "%s", c) < cap) {
        int fd = open_elf(out, &eh);
        if (fd >= 0) {
            close(fd);
            return 1;
        }
    }
    if (!s->cache.hdr) { /* no usable cache: the directories it is made from */
        if (!s->conf_read) {
            s->conf_read = 1;
            conf_file(s, LDSO_CONF, 0);
        }
        for (int i = 0; i < s->nconf; i++)
            if (try_dir(s->conf_dirs[i], needed, out, cap))
                return 1;
    }
    for (size_t i = 0; i < sizeof system_dirs / sizeof *system_dirs; i++)
        if (try_dir(system_dirs[i], needed, out, cap))
            return 1;
    return 0;
}

/* The directory part of path in out ("." when it has none). */
static void dir_of(const char *path, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, cap, ".");
    else if (slash == path)
        snprintf(out, cap, "/");
    else
        snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

int as_ldpath_deps(const char *program, char ***paths, int *n) {
    search s;
    memset(&s, 0, sizeof s);
    s.paths = paths;
    s.n = n;
    int first = *n; /* the program is (*paths)[first - 1] when the caller listed it */
    char real[PATH_MAX], origin[PATH_MAX], found[PATH_MAX];
    dyninfo exe;
    if (read_dyn(program, &exe) != 0)
        return 0;
    /* $ORIGIN of the program: the directory of its real path, as the linker takes it. */
    dir_of(realpath(program, real) ? real : program, origin, sizeof origin);
    s.origin_exe = origin;
    s.exe_rpath = exe.runpath ? NULL : exe.rpath;
    cache_open(&s.cache);
    /* The interpreter is loaded first and known by its soname (libc names it too). */
    dyninfo interp = {0};
    int interp_ok = exe.interp && exe.interp[0] && read_dyn(exe.interp, &interp) == 0;
    /* read, never run; an interpreter that is no ELF object of ours is not listed */
    /* Breadth first over DT_NEEDED, starting from the program. */
    int head = first - 1 >= 0 ? first - 1 : first;
    if (first == 0 && push(&s, program, exe.soname) != 0)
        goto out;
    if (first > 0)
        s.sonames[first - 1] = exe.soname ? strdup(exe.soname) : NULL;
    for (int q = head; q < *n && !s.oom; q++) {
        dyninfo d;
        const dyninfo *dp = &exe;
        if (q != head) {
            if (read_dyn((*paths)[q], &d) != 0)
                continue;
            dp = &d;
        }
        char dir[PATH_MAX];
        if (q == head)
            snprintf(dir, sizeof dir, "%s", origin);
        else
            dir_of((*paths)[q], dir, sizeof dir);
        for (int k = 0; k < dp->nneeded && !s.oom; k++) {
            const char *name = dp->needed[k];
            if (listed(&s, name))
                continue;
            if (interp_ok && interp.soname && strcmp(interp.soname, name) == 0) {
                if (!listed_path(&s, exe.interp))
                    push(&s, exe.interp, interp.soname);
                continue;
            }
            if (!find(&s, dp, dir, name, found, sizeof found) || listed_path(&s, found))
                continue;
            dyninfo f;
            char *so = NULL;
            if (read_dyn(found, &f) == 0) {
                so = f.soname ? strdup(f.soname) : NULL;
                dyninfo_free(&f);
            }
            /* Listed under the name it was needed by when it has no soname. */
            push(&s, found, so ? so : name);
            free(so);
        }
        if (dp != &exe)
            dyninfo_free(&d);
    }
    if (interp_ok && !listed_path(&s, exe.interp) && !s.oom)
        push(&s, exe.interp, interp.soname);
out:
    for (int i = 0; i < AS_LDPATH_MAX; i++)
        free(s.sonames[i]);
    for (int i = 0; i < s.nconf; i++)
        free(s.conf_dirs[i]);
    free(s.conf_dirs);
    cache_close(&s.cache);
    dyninfo_free(&interp);
    dyninfo_free(&exe);
    return s.oom ? -1 : 0;
}
