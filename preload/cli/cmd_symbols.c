/* cmd_symbols.c - `agentsight symbols`: lists the functions of a program or library that a
 * config can name, with their address, binding, version and DWARF prototype, so writing a
 * config starts from what the binary really contains. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentsight.h"
#include "cli/cmds.h"
#include "hook/dwarf.h"
#include "hook/elfsym.h"

#define PROTO_TEXT_LEN 1024

/* One line of output. */
typedef struct row {
    const as_sym *sym;
    const as_symtab *tab;
    int obj;     /* index of the object, for a stable order between objects */
    char *proto; /* malloc'ed C prototype, or NULL */
} row;

typedef struct options {
    int deps;
    int json;
    const char *file;
    const char *glob;
} options;

/* Prints the command reference to f. This function can't fail. */
static void usage(FILE *f) {
    fputs("usage: agentsight symbols [--deps|--all] [--json] FILE [GLOB]\n"
          "\n"
          "Lists the functions defined in FILE (a program or shared library; a name without\n"
          "'/' is looked up in the current directory, then PATH, then the system library\n"
          "directories) that a config entry can name: name[@version], object, address,\n"
          "size, exported|local, ifunc, and the C prototype when DWARF describes it.\n"
          "\n"
          "  GLOB         only names matching it: *, ?, [a-z], [!x]; name@VERSION\n"
          "  --deps, --all  also the shared objects the program loads (found as the\n"
          "               dynamic linker finds them, by reading files: nothing is run)\n"
          "  --json       a JSON array of objects instead of text\n"
          "  -h, --help   this text\n"
          "  -V, --version  print the version\n"
          "\n"
          "Exit status: 0 when something was listed, 1 when FILE is missing or not ELF or\n"
          "nothing matches GLOB, 2 for a usage error.\n",
          f);
}

/* Parses argv into *o. Returns 0, 1 after --help (usage printed), or 2 on a usage error
 * (message on stderr). */
static int parse_args(int argc, char **argv, options *o) {
    static const struct option longopts[] = {
        {"all", no_argument, NULL, 'a'},     {"deps", no_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},    {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof(*o));
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "ajhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'a':
            o->deps = 1;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
            printf("agentsight %s\n", AGENTSIGHT_VERSION);
            return 1;
        default:
            fprintf(stderr, "agentsight symbols: unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    int rest = argc - optind;
    if (rest < 1 || rest > 2) {
        fputs(rest < 1 ? "agentsight symbols: no FILE given\n"
                       : "agentsight symbols: too many arguments\n",
              stderr);
        usage(stderr);
        return 2;
    }
    o->file = argv[optind];
    o->glob = rest == 2 ? argv[optind + 1] : NULL;
    return 0;
}

/* Returns 1 when p names a regular file. */
static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Finds FILE: as given when it has a '/' or exists here, else in PATH, else in the system
 * library directories. Returns a malloc'ed path, or NULL when it is nowhere. */
static char *locate(const char *file) {
    if (strchr(file, '/') || is_file(file))
        return strdup(file);
    char buf[PATH_MAX];
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path; *p;) {
        const char *colon = strchr(p, ':');
        int len = colon ? (int)(colon - p) : (int)strlen(p);
        if (len > 0 && snprintf(buf, sizeof(buf), "%.*s/%s", len, p, file) < (int)sizeof(buf) &&
            is_file(buf) && access(buf, X_OK) == 0)
            return strdup(buf);
        if (!colon)
            break;
        p = colon + 1;
    }
    static const char *libdirs[] = {"/lib/x86_64-linux-gnu",
                                    "/usr/lib/x86_64-linux-gnu",
                                    "/usr/local/lib",
                                    "/lib64",
                                    "/usr/lib",
                                    "/lib"};
    for (size_t i = 0; i < sizeof(libdirs) / sizeof(libdirs[0]); i++) {
        if (snprintf(buf, sizeof(buf), "%s/%s", libdirs[i], file) < (int)sizeof(buf) &&
            is_file(buf))
            return strdup(buf);
    }
    return NULL;
}

/* The file name part of path (a pointer into it). */
static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* "name" or "name@version". */
static void display_name(const as_sym *s, char *buf, size_t cap) {
    if (s->version)
        snprintf(buf, cap, "%s@%s", s->name, s->version);
    else
        snprintf(buf, cap, "%s", s->name);
}

/* Output order: name, then object, then the table's own order. */
static int cmp_row(const void *pa, const void *pb) {
    const row *a = pa, *b = pb;
    int c = strcmp(a->sym->name, b->sym->name);
    if (c)
        return c;
    if (a->obj != b->obj)
        return a->obj - b->obj;
    return a->sym < b->sym ? -1 : a->sym > b->sym; /* the table's own order */
}

/* Address order for the alias search. */
static int cmp_addr(const void *pa, const void *pb) {
    const as_sym *a = *(const as_sym *const *)pa, *b = *(const as_sym *const *)pb;
    return a->value < b->value ? -1 : a->value > b->value;
}

/* The symbols of t sorted by address, for finding aliases. Returns a malloc'ed array of
 * t->n pointers, or NULL when out of memory or t is empty. */
static const as_sym **sort_by_addr(const as_symtab *t) {
    if (t->n == 0)
        return NULL;
    const as_sym **v = malloc(t->n * sizeof(*v));
    if (!v)
        return NULL;
    for (size_t i = 0; i < t->n; i++)
        v[i] = &t->syms[i];
    qsort(v, t->n, sizeof(*v), cmp_addr);
    return v;
}

/* The C prototype of s from DWARF: under its own name, else under an alias at the same
 * address (printf is described as "__printf" in libc's DWARF). Returns a malloc'ed text,
 * or NULL when DWARF does not describe it. */
static char *prototype(const as_symtab *t, const as_sym *s, const as_sym **by_addr) {
    if (!t->has_debug || !t->debug_path)
        return NULL;
    as_proto p;
    char text[PROTO_TEXT_LEN];
    if (as_dwarf_proto(t->debug_path, s->name, &p) == 0) {
        as_proto_format(&p, s->name, text, sizeof(text));
        return strdup(text);
    }
    if (!by_addr)
        return NULL;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (by_addr[mid]->value < s->value)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < t->n && by_addr[i]->value == s->value; i++) {
        if (by_addr[i] == s || strcmp(by_addr[i]->name, s->name) == 0)
            continue;
        if (as_dwarf_proto(t->debug_path, by_addr[i]->name, &p) == 0) {
            as_proto_format(&p, s->name, text, sizeof(text));
            return strdup(text);
        }
    }
    return NULL;
}

/* Appends the matching symbols of table t (object index obj) to *rows, with prototypes.
 * Returns 0, or -1 when out of memory (rows already added stay valid). */
static int add_rows(const as_symtab *t, int obj, const char *glob, row **rows, size_t *n,
                    size_t *cap) {
    char name[512];
    const as_sym **by_addr = t->has_debug ? sort_by_addr(t) : NULL;
    for (size_t i = 0; i < t->n; i++) {
        const as_sym *s = &t->syms[i];
        display_name(s, name, sizeof(name));
        if (glob && !as_glob_match(glob, name))
            continue;
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            row *v = realloc(*rows, nc * sizeof(*v));
            if (!v) {
                free(by_addr);
                return -1;
            }
            *rows = v;
            *cap = nc;
        }
        row *r = &(*rows)[(*n)++];
        r->sym = s;
        r->tab = t;
        r->obj = obj;
        r->proto = NULL;
        r->proto = prototype(t, s, by_addr);
    }
    free(by_addr);
    return 0;
}

/* "global", "weak" or "local" for an STB_* value. */
static const char *bind_name(int bind) {
    return bind == 1 ? "global" : bind == 2 ? "weak" : "local"; /* STB_GLOBAL, STB_WEAK */
}

/* Prints rows as aligned text columns. This function can't fail. */
static void print_text(const row *rows, size_t n) {
    int wname = 4, wobj = 6;
    char name[512];
    for (size_t i = 0; i < n; i++) {
        display_name(rows[i].sym, name, sizeof(name));
        int l = (int)strlen(name), o = (int)strlen(base_name(rows[i].tab->path));
        wname = l > wname ? (l < 48 ? l : 48) : wname;
        wobj = o > wobj ? (o < 32 ? o : 32) : wobj;
    }
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        display_name(r->sym, name, sizeof(name));
        printf("%-*s  %-*s  %#10llx  %6llu  %s%s%s%s\n", wname, name, wobj, base_name(r->tab->path),
               (unsigned long long)r->sym->value, (unsigned long long)r->sym->size,
               r->sym->exported ? "exported" : "local   ", r->sym->is_ifunc ? " ifunc" : "",
               r->proto ? "  " : "", r->proto ? r->proto : "");
    }
}

/* Prints rows as a JSON array, one object per line. Returns 0, or -1 when out of memory. */
static int print_json(const row *rows, size_t n) {
    char name[512], addr[32];
    fputs("[", stdout);
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        const as_sym *s = r->sym;
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return -1;
        display_name(s, name, sizeof(name));
        snprintf(addr, sizeof(addr), "0x%llx", (unsigned long long)s->value);
        cJSON_AddStringToObject(o, "symbol", name);
        cJSON_AddStringToObject(o, "name", s->name);
        if (s->version)
            cJSON_AddStringToObject(o, "version", s->version);
        else
            cJSON_AddNullToObject(o, "version");
        cJSON_AddBoolToObject(o, "default_version", s->version_default);
        cJSON_AddStringToObject(o, "object", base_name(r->tab->path));
        cJSON_AddStringToObject(o, "path", r->tab->path);
        cJSON_AddStringToObject(o, "address", addr);
        cJSON_AddNumberToObject(o, "size", (double)s->size);
        cJSON_AddStringToObject(o, "binding", bind_name(s->bind));
        cJSON_AddBoolToObject(o, "exported", s->exported);
        cJSON_AddBoolToObject(o, "ifunc", s->is_ifunc);
        if (r->proto)
            cJSON_AddStringToObject(o, "prototype", r->proto);
        else
            cJSON_AddNullToObject(o, "prototype");
        char *text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!text)
            return -1;
        printf("%s\n%s", i ? "," : "", text);
        free(text);
    }
    fputs(n ? "\n]\n" : "]\n", stdout);
    return 0;
}

/* Returns the exit status: 0 listed, 1 missing/non-ELF file or no match, 2 usage. */
int as_cmd_symbols(int argc, char **argv) {
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : 2;
    char err[PATH_MAX + 64];
    char **paths = NULL;
    int npaths = 0;
    as_symtab *tabs = NULL;
    row *rows = NULL;
    size_t nrows = 0, cap = 0;
    rc = 1;
    char *file = locate(o.file);
    if (!file) {
        fprintf(stderr, "agentsight symbols: %s: no such file (nor in PATH)\n", o.file);
        return 1;
    }
    if (o.deps) {
        npaths = as_program_objects(file, &paths, err, sizeof(err));
        if (npaths < 0) {
            fprintf(stderr, "agentsight symbols: %s\n", err);
            goto out;
        }
    } else {
        paths = calloc(1, sizeof(*paths));
        if (!paths || !(paths[0] = strdup(file)))
            goto oom;
        npaths = 1;
    }
    tabs = calloc((size_t)npaths, sizeof(*tabs));
    if (!tabs)
        goto oom;
    for (int i = 0; i < npaths; i++) {
        if (as_symtab_load(paths[i], &tabs[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "agentsight symbols: %s\n", err);
            if (i == 0)
                goto out; /* the file asked for: an error; a dependency: a note */
            continue;
        }
        if (add_rows(&tabs[i], i, o.glob, &rows, &nrows, &cap) != 0)
            goto oom;
    }
    if (nrows == 0 && o.glob) {
        fprintf(stderr, "agentsight symbols: no function matches '%s' in %s%s\n", o.glob, file,
                o.deps ? " or the objects it loads" : " (--deps also searches its libraries)");
        goto out;
    }
    if (nrows)
        qsort(rows, nrows, sizeof(*rows), cmp_row);
    if (o.json) {
        if (print_json(rows, nrows) != 0)
            goto oom;
    } else {
        print_text(rows, nrows);
    }
    rc = fflush(stdout) == 0 ? 0 : 1;
    goto out;
oom:
    fputs("agentsight symbols: out of memory\n", stderr);
    rc = 1;
out:
    for (size_t i = 0; i < nrows; i++)
        free(rows[i].proto);
    free(rows);
    for (int i = 0; tabs && i < npaths; i++)
        as_symtab_free(&tabs[i]);
    free(tabs);
    as_paths_free(paths, npaths);
    free(file);
    return rc;
}
