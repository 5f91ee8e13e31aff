/* cmd_check.c - `agentsight check CONFIG [PROGRAM]`: validates a config file and, given a
 * program, shows which functions of which loaded objects each entry would wrap, how their
 * calls will be reached (GOT slots, entry patch, both) and which calls stay unseen, and
 * which matches are never wrapped and why, so a mistake is found before the agent runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentsight.h"
#include "cli/check_facts.h"
#include "cli/cmds.h"
#include "core/log.h"
#include "hook/config.h"
#include "hook/elfsym.h"
#include "hook/hookable.h"
#include "hook/reach.h"

#define CHECK_MAX_LISTED 50 /* matches printed per entry before "... and N more" */

static void usage(FILE *f) {
    fprintf(f, "usage: agentsight check [-h|-V] [--] CONFIG [PROGRAM]\n"
               "  Parses CONFIG and prints its errors as FILE:LINE:COL: message.\n"
               "  With PROGRAM, lists the functions each entry matches in the program and\n"
               "  the libraries it loads, and warns about entries that match nothing.\n"
               "  -V, --version  print the version;  -h, --help  this text\n"
               "  Exit status: 0 all fine, 1 errors or unmatched entries, 2 usage.\n");
}

/* The file name part of a path. */
static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* 1 when symbol s is selected by entry e (name glob or exact name, and version). */
static int entry_matches(const as_entry *e, const as_sym *s) {
    if (e->is_glob ? !as_glob_match(e->pattern, s->name) : strcmp(e->pattern, s->name) != 0)
        return 0;
    if (!e->version)
        return 1;
    return s->version && as_glob_match(e->version, s->version);
}

/* One object of the program, with what check needs to classify its functions. */
typedef struct check_obj {
    const char *path;
    as_symtab tab;
    as_objfacts facts;
    int facts_ok;
    as_fnindex fidx;
    int is_program;
    int own_dep; /* the C library: hook=auto patches no entry there (reach.h) */
} check_obj;

/* as_fnindex_build reader over an as_symtab. */
static void symtab_get(const void *ctx, size_t i, uint64_t *value, uint64_t *size,
                       const char **name) {
    const as_sym *s = &((const as_symtab *)ctx)->syms[i];
    *value = s->value;
    *size = s->size;
    *name = s->name;
}

/* The hookable.c facts of s in o. */
static as_symfacts sym_facts(const check_obj *o, const as_sym *s) {
    as_symfacts f = {.name = s->name, .size = s->size, .exported = s->exported, .exec = -1};
    if (o->facts_ok)
        f.exec = as_objfacts_exec(&o->facts, s->value, s->size);
    f.inside = as_fnindex_inside(&o->fidx, s->value);
    size_t nrt;
    const char *const *rt = as_returns_twice_names(&nrt);
    for (size_t i = 0; i < nrt && !as_returns_twice(s->name); i++) {
        const as_sym *r = as_symtab_find(&o->tab, rt[i]);
        if (r && r->value == s->value)
            f.alias_of = r->name;
    }
    return f;
}

/* How calls of s in o reach the thunk for entry e; *blind the calls left unseen. */
static unsigned sym_reach(const check_obj *o, const as_entry *e, const as_sym *s,
                          const as_symfacts *f, const char **blind) {
    as_reach_facts rf = {.hook = e->hook, .exported = s->exported, .ifunc = s->is_ifunc};
    rf.in_program = o->is_program;
    rf.own_dep = o->own_dep && !o->is_program;
    rf.symbolic = o->facts_ok && o->facts.symbolic;
    rf.protected_vis = o->facts_ok && as_objfacts_protected(&o->facts, s->name);
    rf.self_ref = !o->facts_ok || as_objfacts_selfref(&o->facts, s->name);
    rf.patchable = s->size > 0 && !f->inside;
    return as_reach_decide(&rf, blind);
}

static int is_libc(const char *path);

/* Whether name is one of the C library functions the interposer exports its own of
 * (preload/hook/dlwrap.c): a program binds its calls to ours, which are tracked in the
 * C library's stead (through the same GOT slots). */
static int stood_in(const char *name) {
    static const char *const names[] = {"dlopen", "dlmopen", "dlsym",   "dlvsym",  "execve",
                                        "execv",  "execvp",  "execvpe", "fexecve", "execl",
                                        "execlp", "execle",  "_exit",   "_Exit"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i], name) == 0)
            return 1;
    return 0;
}

/* Prints one matching symbol: its flags, then how its calls are reached, or why it is
 * never wrapped. Returns 1 when it is wrapped. This function can't fail. */
static int print_match(const as_entry *e, const as_sym *s, const check_obj *o, int print) {
    const char *vis = s->exported ? "exported" : s->bind == 0 ? "local" : "hidden";
    as_symfacts f = sym_facts(o, s);
    int kind = as_nohook_classify(&f);
    char why[256];
    if (print)
        printf("    %s%s%s  %s  %s%s%s  ", s->name, s->version ? "@" : "",
               s->version ? s->version : "", o->path, vis, s->bind == 2 ? ", weak" : "",
               s->is_ifunc ? ", ifunc" : "");
    if (kind != AS_HOOKABLE) {
        if (print)
            printf("never wrapped: %s\n", as_nohook_why(kind, &f, why, sizeof why));
        return 0;
    }
    const char *blind = NULL;
    unsigned via = sym_reach(o, e, s, &f, &blind);
    int ekind = as_nohook_entry_classify(&f);
    if ((via & AS_REACH_ENTRY) && ekind != AS_HOOKABLE) {
        /* the entry is never patched; the GOT slots still are, when the mode takes them */
        via &= ~(unsigned)AS_REACH_ENTRY;
        if (!via) {
            if (print)
                printf("never wrapped: %s\n", as_nohook_why(ekind, &f, why, sizeof why));
            return 0;
        }
        blind = "calls inside the object that bypass its GOT (its entry is never patched)";
    }
    int ours = (via & AS_REACH_GOT) && is_libc(o->path) && stood_in(s->name);
    if (print)
        printf("via %s%s%s%s%s%s\n", as_reach_name(via), ours ? " (the interposer's own " : "",
               ours ? s->name : "", ours ? ", which stands in for it)" : "",
               blind ? "; not seen: " : "", blind ? blind : "");
    return via != 0;
}

/* Whether path is the dynamic loader, which is never instrumented. */
static int is_loader(const char *path) {
    const char *b = base_name(path);
    return strncmp(b, "ld-linux", 8) == 0 || strncmp(b, "ld64.so", 7) == 0;
}

/* Whether name is the C library (hook=auto leaves its entries alone, reach.h). */
static int is_libc(const char *path) {
    return strncmp(base_name(path), "libc.so", 7) == 0;
}

/* Lists the matches of every entry in the objects of program. Returns the number of
 * entries that match nothing wrappable, or -1 when the program's objects could not be
 * listed. */
static int resolve_entries(const as_config *cfg, const char *program) {
    char err[256];
    char **paths = NULL;
    int n = as_program_objects(program, &paths, err, sizeof err);
    if (n < 0) {
        as_error("%s", err);
        return -1;
    }
    check_obj *objs = calloc((size_t)n, sizeof *objs);
    if (!objs) {
        as_error("out of memory");
        as_paths_free(paths, n);
        return -1;
    }
    printf("program: %s (%d object%s)\n", paths[0], n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++) {
        check_obj *o = &objs[i];
        o->path = paths[i];
        o->is_program = i == 0;
        o->own_dep = is_libc(paths[i]);
        if (as_symtab_load(paths[i], &o->tab, err, sizeof err) < 0)
            as_warn("%s: symbols not read: %s", paths[i], err);
        o->facts_ok = as_objfacts_load(paths[i], &o->facts) == 0;
        as_fnindex_build(&o->fidx, o->tab.n, symtab_get, &o->tab);
    }
    int unmatched = 0;
    for (int k = 0; k < cfg->nentries; k++) {
        const as_entry *e = &cfg->entries[k];
        int found = 0, listed = 0, never = 0;
        printf("%s%s%s (%s:%d)%s%s\n", e->pattern, e->version ? "@" : "",
               e->version ? e->version : "", cfg->path, e->line, e->lib ? " lib=" : "",
               e->lib ? e->lib : "");
        if (e->dup_line) { /* warned about when the config was read */
            printf("    (duplicates line %d: never used)\n", e->dup_line);
            unmatched++;
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (e->lib && !as_glob_match(e->lib, base_name(paths[i])))
                continue;
            if (is_loader(paths[i]))
                continue; /* never instrumented */
            for (size_t j = 0; j < objs[i].tab.n; j++) {
                const as_sym *s = &objs[i].tab.syms[j];
                if (!entry_matches(e, s))
                    continue;
                int wrapped = print_match(e, s, &objs[i], listed < CHECK_MAX_LISTED);
                listed++;
                found += wrapped;
                never += !wrapped;
            }
        }
        if (listed > CHECK_MAX_LISTED)
            printf("    ... and %d more\n", listed - CHECK_MAX_LISTED);
        if (never && e->is_glob)
            printf("    (%d of the matches %s never wrapped or not reached)\n", never,
                   never == 1 ? "is" : "are");
        if (!e->is_glob) { /* compiler clones of a bare name: foo.isra.0, foo.constprop.0 */
            size_t pl = strlen(e->pattern);
            for (int i = 0; i < n; i++)
                for (size_t j = 0; j < objs[i].tab.n; j++) {
                    const as_sym *s = &objs[i].tab.syms[j];
                    if (strncmp(s->name, e->pattern, pl) != 0 || s->name[pl] != '.' ||
                        is_loader(paths[i]))
                        continue;
                    as_symfacts f = sym_facts(&objs[i], s);
                    if (as_nohook_classify(&f) != AS_HOOKABLE)
                        continue; /* a fragment: calls of the parent cover it */
                    const as_sym *parent = as_symtab_find(&objs[i].tab, e->pattern);
                    if (parent && parent->value == s->value)
                        continue; /* an alias (foo.localalias): the same function */
                    printf("    compiler clone: %s in %s (a function of its own, not matched; "
                           "name it, e.g. '%s', to track it)\n",
                           s->name, base_name(paths[i]), s->name);
                }
        }
        if (!listed) {
            printf("    (no match)\n");
            as_warn("entry '%s%s%s' (%s:%d) matches no function", e->pattern, e->version ? "@" : "",
                    e->version ? e->version : "", cfg->path, e->line);
            unmatched++;
        } else if (!found) {
            as_warn("entry '%s%s%s' (%s:%d) matches only functions that are never wrapped",
                    e->pattern, e->version ? "@" : "", e->version ? e->version : "", cfg->path,
                    e->line);
            unmatched++;
        }
    }
    for (int i = 0; i < n; i++) {
        as_symtab_free(&objs[i].tab);
        as_objfacts_free(&objs[i].facts);
        as_fnindex_free(&objs[i].fidx);
    }
    free(objs);
    as_paths_free(paths, n);
    return unmatched;
}

int as_cmd_check(int argc, char **argv) {
    /* Options may come anywhere before "--"; the other arguments are compacted in place
     * after argv[0]: CONFIG [PROGRAM]. */
    int nargs = 0, opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (opts_done || a[0] != '-' || a[1] == '\0') {
            argv[1 + nargs++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            opts_done = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("agentsight %s\n", AGENTSIGHT_VERSION);
            return 0;
        } else {
            fprintf(stderr, "agentsight check: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    argc = 1 + nargs;
    if (argc < 2 || argc > 3) {
        usage(stderr);
        return 2;
    }
    as_config cfg;
    int status = 0;
    if (as_config_load(argv[1], &cfg) < 0) {
        as_config_free(&cfg);
        return 1;
    }
    printf("%s: %d entr%s, %d error%s\n", cfg.path, cfg.nentries, cfg.nentries == 1 ? "y" : "ies",
           cfg.errors, cfg.errors == 1 ? "" : "s");
    if (cfg.errors)
        status = 1;
    if (argc == 3 && resolve_entries(&cfg, argv[2]) != 0)
        status = 1;
    as_config_free(&cfg);
    return status;
}
