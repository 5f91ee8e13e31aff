/* dwarf_disk.c - the on-disk cache of DWARF prototypes (dwarf_disk.h), so a tree of
 * processes reads an object's debug information once, not once per process. */
#include "hook/dwarf_disk.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/securedir.h"
#include "hook/buildid.h"
#include "hook/cachedir.h"

#define FILE_MAX (8u << 20) /* bytes: a larger file is neither read nor grown */

typedef struct line_ref {
    const char *name; /* in text, NUL-terminated in place */
    char *rest;       /* the fields after the name, NUL-terminated in place */
    char kind;        /* 'F' or 'N' */
} line_ref;

static struct {
    int dir_state; /* 0 unknown, 1 usable, -1 off */
    char dir[512];
    char *path;      /* the object asked about (NULL: none loaded) */
    char file[600];  /* its cache file ("" when the object cannot be described) */
    char *text;      /* the file as read */
    line_ref *lines; /* sorted by name */
    size_t nlines;
    size_t size;   /* bytes in the file when read */
    char *pending; /* lines to append */
    size_t plen, pcap;
} g;

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull; /* a separator between fields */
}

/* Works out the cache directory once (not created here). */
static int dir_usable(void) {
    if (!g.dir_state)
        g.dir_state = as_cache_path("dwarf", g.dir, sizeof g.dir) == 0 ? 1 : -1;
    return g.dir_state > 0;
}

static int cmp_line(const void *a, const void *b) {
    return strcmp(((const line_ref *)a)->name, ((const line_ref *)b)->name);
}

/* Splits g.text into its lines and sorts them by name. A torn last line is dropped. */
static void index_text(size_t len) {
    size_t cap = 0;
    for (size_t i = 0; i < len; i++)
        cap += g.text[i] == '\n';
    g.lines = cap ? malloc(cap * sizeof *g.lines) : NULL;
    if (!g.lines)
        return;
    char *p = g.text, *end = g.text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        *nl = '\0';
        char *tab = strchr(p, '\t');
        if ((p[0] == 'F' || p[0] == 'N') && p + 1 == tab) {
            char *name = tab + 1, *rest = strchr(name, '\t');
            if (rest)
                *rest++ = '\0';
            else
                rest = nl;
            if (*name)
                g.lines[g.nlines++] = (line_ref){name, rest, p[0]};
        }
        p = nl + 1;
    }
    qsort(g.lines, g.nlines, sizeof *g.lines, cmp_line);
}

/* Makes path the loaded object: names its cache file and reads it. */
static void load(const char *path) {
    if (g.path && strcmp(g.path, path) == 0)
        return;
    as_dwdisk_flush();
    g.path = strdup(path);
    struct stat st;
    if (!g.path || stat(path, &st) != 0)
        return;
    uint64_t h = 14695981039346656037ull;
    long long fields[5] = {(long long)st.st_dev, (long long)st.st_ino, (long long)st.st_size,
                           (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
    const unsigned char *id = NULL;
    size_t idlen = as_build_id_self(&id);
    h = fnv_bytes(fnv_bytes(fnv_bytes(h, path, strlen(path)), fields, sizeof fields), id, idlen);
    int n = snprintf(g.file, sizeof g.file, "%s/%016llx", g.dir, (unsigned long long)h);
    if (n < 0 || (size_t)n >= sizeof g.file) {
        g.file[0] = '\0';
        return;
    }
    int fd = open(g.file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    struct stat fs;
    if (fstat(fd, &fs) == 0 && S_ISREG(fs.st_mode) && fs.st_uid == geteuid() && fs.st_size > 0 &&
        (size_t)fs.st_size <= FILE_MAX) {
        g.text = malloc((size_t)fs.st_size + 1);
        ssize_t got = g.text ? pread(fd, g.text, (size_t)fs.st_size, 0) : -1;
        if (got > 0) {
            g.text[got] = '\0';
            g.size = (size_t)got;
            index_text((size_t)got);
        }
    } else if (fstat(fd, &fs) == 0 && (size_t)fs.st_size > FILE_MAX) {
        g.size = FILE_MAX; /* never grown further */
    }
    close(fd);
}

/* Reads an unsigned decimal field ending at sep. Returns 0 or -1. */
static int num_field(char **p, char sep, unsigned long max, unsigned long *out) {
    char *end;
    if (**p < '0' || **p > '9')
        return -1;
    unsigned long v = strtoul(*p, &end, 10);
    if (*end != sep || v > max)
        return -1;
    *out = v;
    *p = end + 1;
    return 0;
}

/* The next TAB-separated field of *p (NUL-terminated in place), or NULL at the end. */
static char *next_field(char **p) {
    if (!*p || !**p)
        return NULL;
    char *f = *p, *tab = strchr(f, '\t');
    if (tab) {
        *tab = '\0';
        *p = tab + 1;
    } else {
        *p = f + strlen(f);
    }
    return f;
}

/* Parses "kind,size,class0,class1,spelling". Returns 0 or -1. */
static int parse_type(char *f, as_type *t) {
    unsigned long kind, size, c0, c1;
    if (num_field(&f, ',', AS_K_AGG, &kind) != 0 || num_field(&f, ',', 255, &size) != 0 ||
        num_field(&f, ',', AS_AGG_MEMORY, &c0) != 0 || num_field(&f, ',', AS_AGG_MEMORY, &c1) != 0)
        return -1;
    size_t len = strlen(f);
    if (len >= sizeof t->spelling)
        return -1;
    memset(t, 0, sizeof *t);
    t->kind = (uint8_t)kind;
    t->size = (uint8_t)size;
    t->cls[0] = (uint8_t)c0;
    t->cls[1] = (uint8_t)c1;
    memcpy(t->spelling, f, len);
    return 0;
}

/* Parses the fields after the name of an 'F' line (a copy: the text stays as read). */
static int parse_proto(const char *rest, as_proto *p) {
    char buf[4096];
    size_t len = strlen(rest);
    if (len >= sizeof buf)
        return -1;
    memcpy(buf, rest, len + 1);
    char *s = buf, *f;
    unsigned long variadic, nparams;
    memset(p, 0, sizeof *p);
    if (num_field(&s, '\t', 1, &variadic) != 0 ||
        num_field(&s, '\t', AS_PROTO_MAX_PARAMS, &nparams) != 0)
        return -1;
    if (!(f = next_field(&s)) || parse_type(f, &p->ret) != 0)
        return -1;
    for (unsigned long i = 0; i < nparams; i++) {
        char *name = next_field(&s), *type = next_field(&s);
        if (!name || !type || strlen(name) >= sizeof p->names[i] || parse_type(type, &p->params[i]))
            return -1;
        memcpy(p->names[i], name, strlen(name) + 1);
    }
    if (*s)
        return -1; /* more fields than it says */
    p->variadic = (int)variadic;
    p->nparams = (int)nparams;
    return 0;
}

int as_dwdisk_get(const char *path, const char *func, as_proto *out) {
    if (!path || !func || !out || !dir_usable())
        return -1;
    load(path);
    line_ref key = {.name = func};
    const line_ref *l = g.nlines ? bsearch(&key, g.lines, g.nlines, sizeof key, cmp_line) : NULL;
    if (!l)
        return -1;
    if (l->kind == 'N')
        return 0;
    as_proto p;
    if (parse_proto(l->rest, &p) != 0)
        return -1;
    *out = p;
    return 1;
}

/* A field the line format can carry: no TAB, newline or other control byte. */
static int clean(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* Appends the text of one type to buf. Returns 0, or -1 when it cannot be written. */
static int put_type(char *buf, size_t cap, size_t *len, const as_type *t) {
    if (!clean(t->spelling) || memchr(t->spelling, '\0', sizeof t->spelling) == NULL)
        return -1;
    int n = snprintf(buf + *len, cap - *len, "\t%u,%u,%u,%u,%s", t->kind, t->size, t->cls[0],
                     t->cls[1], t->spelling);
    if (n < 0 || (size_t)n >= cap - *len)
        return -1;
    *len += (size_t)n;
    return 0;
}

void as_dwdisk_put(const char *path, const char *func, const as_proto *p) {
    if (!path || !func || !*func || !clean(func) || !dir_usable())
        return;
    load(path);
    if (!g.file[0] || g.size >= FILE_MAX)
        return;
    char line[4096];
    size_t len;
    int n = snprintf(line, sizeof line, "%c\t%s", p ? 'F' : 'N', func);
    if (n < 0 || (size_t)n >= sizeof line)
        return;
    len = (size_t)n;
    if (p) {
        if (p->nparams < 0 || p->nparams > AS_PROTO_MAX_PARAMS)
            return;
        n = snprintf(line + len, sizeof line - len, "\t%d\t%d", p->variadic ? 1 : 0, p->nparams);
        if (n < 0 || (size_t)n >= sizeof line - len)
            return;
        len += (size_t)n;
        if (put_type(line, sizeof line, &len, &p->ret) != 0)
            return;
        for (int i = 0; i < p->nparams; i++) {
            const char *name = p->names[i];
            if (!memchr(name, '\0', sizeof p->names[i]) || !*name || !clean(name) ||
                len + strlen(name) + 2 >= sizeof line)
                return;
            line[len++] = '\t';
            memcpy(line + len, name, strlen(name));
            len += strlen(name);
            if (put_type(line, sizeof line, &len, &p->params[i]) != 0)
                return;
        }
    }
    if (len + 1 >= sizeof line)
        return;
    line[len++] = '\n';
    if (g.plen + len > g.pcap) {
        size_t cap = g.pcap ? g.pcap * 2 : 4096;
        while (cap < g.plen + len)
            cap *= 2;
        char *b = realloc(g.pending, cap);
        if (!b)
            return;
        g.pending = b;
        g.pcap = cap;
    }
    memcpy(g.pending + g.plen, line, len);
    g.plen += len;
}

void as_dwdisk_flush(void) {
    if (g.plen && g.file[0] && g.size + g.plen <= FILE_MAX &&
        as_secure_dir(g.dir, 1, NULL, 0) == 0) {
        int fd = open(g.file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0) {
            ssize_t w = write(fd, g.pending, g.plen); /* one write: lines never mix */
            (void)w;
            close(fd);
        }
    }
    free(g.path);
    free(g.text);
    free(g.lines);
    free(g.pending);
    g.path = g.text = g.pending = NULL;
    g.lines = NULL;
    g.nlines = g.size = g.plen = g.pcap = 0;
    g.file[0] = '\0';
}
