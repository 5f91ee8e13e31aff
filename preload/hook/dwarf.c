/* dwarf.c - turns the DWARF description of a function (libdw) into an as_proto, so a bare
 * symbol in the config captures named, typed parameters like a written prototype does.
 *
 * The DWARF of the last file asked for stays open with an index of its subprograms sorted
 * by name (DW_AT_name and DW_AT_linkage_name), so a run of lookups in one object walks
 * its compile units once. */
#include "hook/dl_dw.h"
#include "hook/dwarf.h"
#include "hook/dwarf_cache.h"
#include "hook/dwarf_disk.h"
#include "hook/elfsym.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

AS_DYNLIB_DEFINE(as_dw, AS_DW_FNS, "libdw.so.1", "prototypes from DWARF");

#define MAX_TYPE_DEPTH 16

/* How good a DIE is as the description of a function: a definition with its own name
 * beats a concrete instance that borrows it (DW_AT_abstract_origin), which beats a bare
 * declaration. */
enum { RANK_DECL = 1, RANK_INSTANCE = 2, RANK_DEF = 3 };

typedef struct fn_entry {
    const char *name; /* in the mapped .debug_str, valid while the Dwarf is open */
    Dwarf_Off off;
    int rank;
} fn_entry;

static struct {
    pthread_mutex_t lock;
    char *path; /* the path asked for (NULL: nothing cached) */
    int fd;
    Dwarf *dw; /* NULL when path has no DWARF: remembered so we do not retry */
    fn_entry *fns;
    size_t n, cap;
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

/* Releases the cached handle and index (lock held). This function can't fail. */
static void cache_drop(void) {
    if (cache.dw)
        as_dw.dwarf_end(cache.dw);
    if (cache.fd >= 0)
        close(cache.fd);
    free(cache.fns);
    free(cache.path);
    cache.dw = NULL;
    cache.fd = -1;
    cache.fns = NULL;
    cache.n = cache.cap = 0;
    cache.path = NULL;
}

/* See dwarf_cache.h. */
void as_dwarf_cache_clear(void) {
    pthread_mutex_lock(&cache.lock);
    as_dwdisk_flush();
    cache_drop();
    pthread_mutex_unlock(&cache.lock);
}

/* Appends one index entry. Returns 0, or -1 when out of memory (index unchanged). */
static int index_push(const char *name, Dwarf_Off off, int rank) {
    if (cache.n == cache.cap) {
        size_t cap = cache.cap ? cache.cap * 2 : 256;
        fn_entry *v = realloc(cache.fns, cap * sizeof(*v));
        if (!v)
            return -1;
        cache.fns = v;
        cache.cap = cap;
    }
    cache.fns[cache.n++] = (fn_entry){name, off, rank};
    return 0;
}

/* A string attribute, following abstract_origin/specification; NULL when absent. */
static const char *attr_string(Dwarf_Die *die, int at) {
    Dwarf_Attribute a;
    if (!as_dw.dwarf_attr_integrate(die, at, &a))
        return NULL;
    return as_dw.dwarf_formstring(&a);
}

/* Adds one subprogram DIE under its name and linkage name. */
static int index_subprogram(Dwarf_Die *die) {
    int rank = RANK_DEF;
    bool decl = false;
    Dwarf_Attribute a;
    if (as_dw.dwarf_attr(die, DW_AT_declaration, &a) && as_dw.dwarf_formflag(&a, &decl) == 0 &&
        decl)
        rank = RANK_DECL;
    else if (!as_dw.dwarf_hasattr(die, DW_AT_name) && !as_dw.dwarf_hasattr(die, DW_AT_linkage_name))
        rank = RANK_INSTANCE;
    Dwarf_Off off = as_dw.dwarf_dieoffset(die);
    const char *name = attr_string(die, DW_AT_name);
    const char *link = attr_string(die, DW_AT_linkage_name);
    if (!link)
        link = attr_string(die, DW_AT_MIPS_linkage_name);
    if (name && index_push(name, off, rank) != 0)
        return -1;
    if (link && (!name || strcmp(link, name) != 0) && index_push(link, off, rank) != 0)
        return -1;
    return 0;
}

/* Walks the children of die (a CU or a namespace), recursing into namespaces. */
static int index_children(Dwarf_Die *parent, int depth) {
    Dwarf_Die child;
    if (depth > 8 || as_dw.dwarf_child(parent, &child) != 0)
        return 0;
    do {
        int tag = as_dw.dwarf_tag(&child);
        if (tag == DW_TAG_subprogram && index_subprogram(&child) != 0)
            return -1;
        if (tag == DW_TAG_namespace && index_children(&child, depth + 1) != 0)
            return -1;
    } while (as_dw.dwarf_siblingof(&child, &child) == 0);
    return 0;
}

/* Index order: name, best rank first, DIE offset. */
static int cmp_entry(const void *pa, const void *pb) {
    const fn_entry *a = pa, *b = pb;
    int c = strcmp(a->name, b->name);
    if (c)
        return c;
    if (a->rank != b->rank)
        return b->rank - a->rank; /* best first */
    return a->off < b->off ? -1 : a->off > b->off;
}

/* Opens the DWARF of path (or of its separate debug file) into the cache and indexes its
 * subprograms. Returns 0 with cache.dw set, or -1 with the failure remembered in the cache
 * (cache.dw NULL) so the same path is not tried again. Call with cache.lock held. */
/* as_sym_keep_fn keeping no symbol: only the debug file's name is wanted. */
static int keep_none(const char *name, void *ctx) {
    (void)name;
    (void)ctx;
    return 0;
}

static int cache_open(const char *path) {
    if (cache.path && strcmp(cache.path, path) == 0)
        return cache.dw ? 0 : -1;
    cache_drop();
    cache.path = strdup(path);
    if (!cache.path)
        return -1;
    cache.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (cache.fd >= 0)
        cache.dw = as_dw.dwarf_begin(cache.fd, DWARF_C_READ);
    if (!cache.dw) {
        /* No .debug_info here: look for the build-id / debuglink file. */
        as_symtab t;
        if (as_symtab_load_some(path, &t, NULL, 0, keep_none, NULL) == 0) {
            if (t.debug_path && strcmp(t.debug_path, path) != 0) {
                if (cache.fd >= 0)
                    close(cache.fd);
                cache.fd = open(t.debug_path, O_RDONLY | O_CLOEXEC);
                if (cache.fd >= 0)
                    cache.dw = as_dw.dwarf_begin(cache.fd, DWARF_C_READ);
            }
            as_symtab_free(&t);
        }
    }
    if (!cache.dw)
        return -1;
    Dwarf_Off off = 0, next;
    size_t hsize;
    while (as_dw.dwarf_nextcu(cache.dw, off, &next, &hsize, NULL, NULL, NULL) == 0) {
        Dwarf_Die cu;
        if (as_dw.dwarf_offdie(cache.dw, off + hsize, &cu) && index_children(&cu, 0) != 0)
            break;
        off = next;
    }
    if (cache.n)
        qsort(cache.fns, cache.n, sizeof(*cache.fns), cmp_entry);
    return 0;
}

/* The best DIE for func (lock held). Returns 0 and fills *out, or -1 when absent. */
static int cache_find(const char *func, Dwarf_Die *out) {
    size_t lo = 0, hi = cache.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(cache.fns[mid].name, func) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == cache.n || strcmp(cache.fns[lo].name, func) != 0)
        return -1;
    return as_dw.dwarf_offdie(cache.dw, cache.fns[lo].off, out) ? 0 : -1;
}

/* The DIE DW_AT_type points at, in *out; NULL when there is none (void). */
static Dwarf_Die *type_of(Dwarf_Die *die, Dwarf_Die *out) {
    Dwarf_Attribute a;
    if (!as_dw.dwarf_attr_integrate(die, DW_AT_type, &a))
        return NULL;
    return as_dw.dwarf_formref_die(&a, out);
}

/* Appends s to the NUL-terminated buf, truncating at cap. This function can't fail. */
static void append(char *buf, size_t cap, const char *s) {
    size_t len = strlen(buf);
    if (len + 1 < cap)
        snprintf(buf + len, cap - len, "%s", s);
}

/* The usual C spelling of a DWARF base type name: GCC writes "long unsigned int". */
static const char *base_spelling(const char *name) {
    static const char *const map[][2] = {
        {"_Bool", "bool"},
        {"short int", "short"},
        {"short unsigned int", "unsigned short"},
        {"long int", "long"},
        {"long unsigned int", "unsigned long"},
        {"long long int", "long long"},
        {"long long unsigned int", "unsigned long long"},
    };
    for (size_t i = 0; name && i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(name, map[i][0]) == 0)
            return map[i][1];
    }
    return name;
}

/* Writes the C spelling of type t (NULL: void) into buf, keeping typedef names:
 * "size_t", "const char *", "struct point", "int (*)()". */
static void spell(Dwarf_Die *t, char *buf, size_t cap, int depth) {
    Dwarf_Die inner_mem, *inner;
    buf[0] = '\0';
    if (!t) {
        append(buf, cap, "void");
        return;
    }
    if (depth > MAX_TYPE_DEPTH) {
        append(buf, cap, "?");
        return;
    }
    const char *name = as_dw.dwarf_diename(t);
    char sub[256];
    switch (as_dw.dwarf_tag(t)) {
    case DW_TAG_base_type:
        append(buf, cap, name ? base_spelling(name) : "?");
        return;
    case DW_TAG_typedef:
    case DW_TAG_unspecified_type:
        append(buf, cap, name ? name : "?");
        return;
    case DW_TAG_structure_type:
    case DW_TAG_class_type:
    case DW_TAG_union_type:
    case DW_TAG_enumeration_type: {
        int tag = as_dw.dwarf_tag(t);
        append(buf, cap,
               tag == DW_TAG_union_type         ? "union "
               : tag == DW_TAG_enumeration_type ? "enum "
               : tag == DW_TAG_class_type       ? "class "
                                                : "struct ");
        append(buf, cap, name ? name : "{...}");
        return;
    }
    case DW_TAG_const_type:
    case DW_TAG_volatile_type:
    case DW_TAG_atomic_type: {
        const char *q = as_dw.dwarf_tag(t) == DW_TAG_const_type      ? "const"
                        : as_dw.dwarf_tag(t) == DW_TAG_volatile_type ? "volatile"
                                                                     : "_Atomic";
        inner = type_of(t, &inner_mem);
        spell(inner, sub, sizeof(sub), depth + 1);
        if (inner && as_dw.dwarf_tag(inner) == DW_TAG_pointer_type) {
            append(buf, cap, sub); /* "char *const" */
            append(buf, cap, q);
        } else {
            append(buf, cap, q);
            append(buf, cap, " ");
            append(buf, cap, sub);
        }
        return;
    }
    case DW_TAG_restrict_type:
        spell(type_of(t, &inner_mem), buf, cap, depth + 1);
        return;
    case DW_TAG_pointer_type:
    case DW_TAG_reference_type:
    case DW_TAG_rvalue_reference_type: {
        inner = type_of(t, &inner_mem);
        if (inner && as_dw.dwarf_tag(inner) == DW_TAG_subroutine_type) {
            Dwarf_Die r;
            spell(type_of(inner, &r), sub, sizeof(sub), depth + 1);
            append(buf, cap, sub);
            append(buf, cap, " (*)()");
            return;
        }
        spell(inner, sub, sizeof(sub), depth + 1);
        append(buf, cap, sub);
        size_t len = strlen(sub);
        append(buf, cap, len && sub[len - 1] == '*' ? "" : " ");
        append(buf, cap, as_dw.dwarf_tag(t) == DW_TAG_pointer_type ? "*" : "&");
        return;
    }
    case DW_TAG_array_type:
        spell(type_of(t, &inner_mem), sub, sizeof(sub), depth + 1);
        append(buf, cap, sub);
        append(buf, cap, " []");
        return;
    default:
        append(buf, cap, name ? name : "?");
        return;
    }
}

/* Follows typedefs and qualifiers to the type that decides the kind. Returns die (moved)
 * or NULL for void. */
static Dwarf_Die *peel(Dwarf_Die *die) {
    for (int i = 0; die && i < MAX_TYPE_DEPTH; i++) {
        int tag = as_dw.dwarf_tag(die);
        if (tag != DW_TAG_typedef && tag != DW_TAG_const_type && tag != DW_TAG_volatile_type &&
            tag != DW_TAG_restrict_type && tag != DW_TAG_atomic_type)
            return die;
        Dwarf_Die next;
        if (!type_of(die, &next))
            return NULL;
        *die = next;
    }
    return die;
}

/* An unsigned attribute (integrated). Returns 0, or -1 when absent or not a constant. */
static int udata(Dwarf_Die *die, int at, Dwarf_Word *out) {
    Dwarf_Attribute a;
    if (!as_dw.dwarf_attr_integrate(die, at, &a))
        return -1;
    return as_dw.dwarf_formudata(&a, out);
}

/* SysV eightbyte classes while walking an aggregate. */
typedef struct agg_walk {
    int integer[2], sse[2];
    int memory;
} agg_walk;

/* Records a scalar of size bytes at off in the eightbyte classes; unaligned or beyond
 * 16 bytes means MEMORY. */
static void mark(agg_walk *w, Dwarf_Word off, Dwarf_Word size, int is_sse) {
    if (size == 0)
        return;
    if (off % size != 0 || off + size > 16) {
        w->memory = 1; /* unaligned (packed) or beyond two eightbytes */
        return;
    }
    for (Dwarf_Word b = off / 8; b <= (off + size - 1) / 8 && b < 2; b++) {
        if (is_sse)
            w->sse[b] = 1;
        else
            w->integer[b] = 1;
    }
}

/* Classifies every scalar inside type t placed at byte offset off. */
static void walk_agg(Dwarf_Die *t, Dwarf_Word off, agg_walk *w, int depth) {
    Dwarf_Die mem = *t, *d = peel(&mem);
    if (!d || depth > MAX_TYPE_DEPTH || w->memory) {
        w->memory |= depth > MAX_TYPE_DEPTH;
        return;
    }
    Dwarf_Word size = 0, enc = 0;
    switch (as_dw.dwarf_tag(d)) {
    case DW_TAG_base_type:
        if (as_dw.dwarf_aggregate_size(d, &size) != 0 || udata(d, DW_AT_encoding, &enc) != 0) {
            w->memory = 1;
            return;
        }
        if (enc == DW_ATE_float && size > 8) {
            w->memory = 1; /* long double: class X87, passed in memory */
            return;
        }
        if (enc == DW_ATE_complex_float) {
            if (size > 16) {
                w->memory = 1;
                return;
            }
            mark(w, off, size / 2, 1);
            mark(w, off + size / 2, size / 2, 1);
            return;
        }
        if (size == 16) { /* __int128: two INTEGER eightbytes, 16-aligned */
            mark(w, off, 8, 0);
            mark(w, off + 8, 8, 0);
            return;
        }
        mark(w, off, size, enc == DW_ATE_float);
        return;
    case DW_TAG_pointer_type:
    case DW_TAG_reference_type:
    case DW_TAG_rvalue_reference_type:
        mark(w, off, 8, 0);
        return;
    case DW_TAG_enumeration_type:
        if (as_dw.dwarf_aggregate_size(d, &size) != 0)
            size = 4;
        mark(w, off, size, 0);
        return;
    case DW_TAG_array_type: {
        Dwarf_Die elem;
        Dwarf_Word esize = 0, total = 0;
        if (!type_of(d, &elem) || as_dw.dwarf_aggregate_size(&elem, &esize) != 0 || esize == 0)
            return;
        if (as_dw.dwarf_aggregate_size(d, &total) != 0)
            return; /* flexible array member: no storage */
        for (Dwarf_Word i = 0; i < total / esize && i < 16; i++)
            walk_agg(&elem, off + i * esize, w, depth + 1);
        return;
    }
    case DW_TAG_structure_type:
    case DW_TAG_class_type:
    case DW_TAG_union_type: {
        Dwarf_Die m;
        if (as_dw.dwarf_child(d, &m) != 0)
            return;
        do {
            if (as_dw.dwarf_tag(&m) != DW_TAG_member || as_dw.dwarf_hasattr(&m, DW_AT_declaration))
                continue;
            Dwarf_Word loc = 0, bitoff = 0, bits = 0;
            if (udata(&m, DW_AT_data_bit_offset, &bitoff) == 0)
                loc = bitoff / 8;
            else if (udata(&m, DW_AT_data_member_location, &loc) != 0)
                loc = 0; /* union members */
            Dwarf_Die mt;
            if (udata(&m, DW_AT_bit_size, &bits) == 0) {
                /* bit-field: INTEGER in the eightbyte holding its first byte */
                mark(w, off + loc, 1, 0);
                continue;
            }
            if (type_of(&m, &mt))
                walk_agg(&mt, off + loc, w, depth + 1);
        } while (as_dw.dwarf_siblingof(&m, &m) == 0);
        return;
    }
    default:
        w->memory = 1;
        return;
    }
}

/* Returns 1 when d is a one-byte character base type (char, signed char). */
static int is_char_base(Dwarf_Die *d) {
    Dwarf_Word enc = 0, size = 0;
    if (!d || as_dw.dwarf_tag(d) != DW_TAG_base_type || udata(d, DW_AT_encoding, &enc) != 0 ||
        as_dw.dwarf_aggregate_size(d, &size) != 0 || size != 1)
        return 0;
    const char *name = as_dw.dwarf_diename(d);
    return enc == DW_ATE_signed_char || (name && strcmp(name, "char") == 0);
}

/* Converts type die t (NULL: void) into *out. Returns 0, or -1 when the type cannot be
 * represented (out partly written). */
static int convert(Dwarf_Die *t, as_type *out) {
    memset(out, 0, sizeof(*out));
    spell(t, out->spelling, sizeof(out->spelling), 0);
    if (!t) {
        out->kind = AS_K_VOID;
        return 0;
    }
    Dwarf_Die mem = *t, *d = peel(&mem);
    if (!d)
        return -1; /* "const void" as a value */
    Dwarf_Word size = 0, enc = 0;
    switch (as_dw.dwarf_tag(d)) {
    case DW_TAG_base_type:
        if (as_dw.dwarf_aggregate_size(d, &size) != 0 || udata(d, DW_AT_encoding, &enc) != 0)
            return -1;
        out->size = (uint8_t)size;
        switch (enc) {
        case DW_ATE_boolean:
            out->kind = AS_K_BOOL;
            return size <= 8 ? 0 : -1;
        case DW_ATE_float:
            out->kind = AS_K_FLOAT;
            return size == 4 || size == 8 || size == 16 ? 0 : -1;
        case DW_ATE_signed:
        case DW_ATE_signed_char:
            out->kind = AS_K_SINT;
            return size <= 8 ? 0 : -1;
        case DW_ATE_unsigned:
        case DW_ATE_unsigned_char:
        case DW_ATE_UTF:
            out->kind = AS_K_UINT;
            return size <= 8 ? 0 : -1;
        default:
            return -1; /* complex, decimal float, ... */
        }
    case DW_TAG_pointer_type:
    case DW_TAG_reference_type:
    case DW_TAG_rvalue_reference_type: {
        out->size = 8;
        Dwarf_Die pm, *pt = type_of(d, &pm);
        if (as_dw.dwarf_tag(d) == DW_TAG_pointer_type && pt)
            pt = peel(pt);
        out->kind =
            as_dw.dwarf_tag(d) == DW_TAG_pointer_type && is_char_base(pt) ? AS_K_STR : AS_K_PTR;
        return 0;
    }
    case DW_TAG_enumeration_type: {
        if (as_dw.dwarf_aggregate_size(d, &size) != 0 || size > 8)
            return -1;
        out->size = (uint8_t)size;
        Dwarf_Die um, *u = type_of(d, &um);
        if (u && (u = peel(u)) && udata(u, DW_AT_encoding, &enc) == 0) {
            out->kind = enc == DW_ATE_signed || enc == DW_ATE_signed_char ? AS_K_SINT : AS_K_UINT;
            return 0;
        }
        out->kind = AS_K_UINT; /* no underlying type: unsigned unless an enumerator is < 0 */
        Dwarf_Die e;
        if (as_dw.dwarf_child(d, &e) == 0) {
            do {
                Dwarf_Attribute a;
                Dwarf_Sword v;
                if (as_dw.dwarf_tag(&e) == DW_TAG_enumerator &&
                    as_dw.dwarf_attr(&e, DW_AT_const_value, &a) &&
                    as_dw.dwarf_formsdata(&a, &v) == 0 && v < 0)
                    out->kind = AS_K_SINT;
            } while (as_dw.dwarf_siblingof(&e, &e) == 0);
        }
        return 0;
    }
    case DW_TAG_structure_type:
    case DW_TAG_class_type:
    case DW_TAG_union_type: {
        out->kind = AS_K_AGG;
        if (as_dw.dwarf_aggregate_size(d, &size) != 0)
            return 0; /* incomplete type: size 0, skipped by capture */
        out->size = size <= 255 ? (uint8_t)size : 0;
        agg_walk w = {0};
        if (size <= 16)
            walk_agg(d, 0, &w, 0);
        if (size > 16 || w.memory) {
            out->cls[0] = out->cls[1] = AS_AGG_MEMORY;
            return 0;
        }
        for (int i = 0; i < 2; i++) {
            if ((Dwarf_Word)i * 8 >= size)
                out->cls[i] = AS_AGG_NONE;
            else
                out->cls[i] = w.integer[i] ? AS_AGG_INTEGER : w.sse[i] ? AS_AGG_SSE : AS_AGG_NONE;
        }
        return 0;
    }
    default:
        return -1;
    }
}

/* Fills *p from subprogram fn. Returns 0, or -1 when a type cannot be represented or there
 * are more than AS_PROTO_MAX_PARAMS parameters. */
static int build_proto(Dwarf_Die *fn, as_proto *p) {
    Dwarf_Die origin;
    Dwarf_Attribute a;
    /* A concrete instance (inlined elsewhere, or a clone) describes its parameters through
     * the abstract DIE it points at; read that one. */
    if (as_dw.dwarf_attr(fn, DW_AT_abstract_origin, &a) && as_dw.dwarf_formref_die(&a, &origin))
        fn = &origin;
    memset(p, 0, sizeof(*p));
    Dwarf_Die rm;
    if (convert(type_of(fn, &rm), &p->ret) != 0)
        return -1;
    Dwarf_Die c;
    if (as_dw.dwarf_child(fn, &c) != 0)
        return 0;
    do {
        int tag = as_dw.dwarf_tag(&c);
        if (tag == DW_TAG_unspecified_parameters) {
            p->variadic = 1;
            continue;
        }
        if (tag != DW_TAG_formal_parameter)
            continue;
        if (p->nparams == AS_PROTO_MAX_PARAMS)
            return -1;
        Dwarf_Die tm, *t = type_of(&c, &tm);
        if (!t || convert(t, &p->params[p->nparams]) != 0)
            return -1;
        const char *name = attr_string(&c, DW_AT_name);
        if (name && *name)
            snprintf(p->names[p->nparams], AS_PROTO_NAME_LEN, "%s", name);
        else
            snprintf(p->names[p->nparams], AS_PROTO_NAME_LEN, "arg%d", p->nparams + 1);
        p->nparams++;
    } while (as_dw.dwarf_siblingof(&c, &c) == 0);
    return 0;
}

/* Returns 0 with *out filled, or -1 with *out untouched (see dwarf.h). */
int as_dwarf_proto(const char *path, const char *func, as_proto *out) {
    if (!path || !func || !out)
        return -1;
    as_proto tmp;
    pthread_mutex_lock(&cache.lock);
    int rc = as_dwdisk_get(path, func, &tmp);
    if (rc >= 0) { /* answered by an earlier process: no DWARF read */
        if (rc == 1)
            *out = tmp;
        pthread_mutex_unlock(&cache.lock);
        return rc == 1 ? 0 : -1;
    }
    rc = -1;
    Dwarf_Die fn;
    if (as_dynlib_load(&as_dw_lib) == 0 && cache_open(path) == 0) {
        if (cache_find(func, &fn) == 0 && build_proto(&fn, &tmp) == 0) {
            *out = tmp;
            rc = 0;
        }
        as_dwdisk_put(path, func, rc == 0 ? &tmp : NULL); /* what the DWARF says, either way */
    }
    pthread_mutex_unlock(&cache.lock);
    return rc;
}

int as_dwarf_proto_cached(const char *path, const char *func, as_proto *out) {
    if (!path || !func || !out)
        return -1;
    pthread_mutex_lock(&cache.lock);
    int rc = as_dwdisk_get(path, func, out);
    pthread_mutex_unlock(&cache.lock);
    return rc;
}

/* Appends "type name" with C spacing: "int a", "const char *s", "int (*cb)()". */
static void format_decl(char *buf, size_t cap, const char *type, const char *name) {
    const char *fp = strstr(type, "(*)");
    if (fp) {
        char tmp[AS_PROTO_TYPE_LEN + AS_PROTO_NAME_LEN + 4];
        snprintf(tmp, sizeof(tmp), "%.*s(*%s)%s", (int)(fp - type), type, name, fp + 3);
        append(buf, cap, tmp);
        return;
    }
    size_t len = strlen(type);
    append(buf, cap, type);
    if (len && type[len - 1] != '*')
        append(buf, cap, " ");
    append(buf, cap, name);
}

/* Returns the length written (always NUL-terminated, truncated at cap; 0 when cap is 0). */
int as_proto_format(const as_proto *p, const char *func, char *buf, size_t cap) {
    if (!buf || cap == 0)
        return 0;
    buf[0] = '\0';
    if (!p || !func)
        return 0;
    const char *ret = p->ret.spelling[0] ? p->ret.spelling : "void";
    format_decl(buf, cap, ret, func);
    append(buf, cap, "(");
    int n = p->nparams < 0                     ? 0
            : p->nparams > AS_PROTO_MAX_PARAMS ? AS_PROTO_MAX_PARAMS
                                               : p->nparams;
    for (int i = 0; i < n; i++) {
        char name[AS_PROTO_NAME_LEN + 1];
        snprintf(name, sizeof(name), "%s", p->names[i]);
        if (i)
            append(buf, cap, ", ");
        format_decl(buf, cap, p->params[i].spelling[0] ? p->params[i].spelling : "?", name);
    }
    if (p->variadic)
        append(buf, cap, n ? ", ..." : "...");
    else if (n == 0)
        append(buf, cap, "void");
    append(buf, cap, ")");
    return (int)strlen(buf);
}
