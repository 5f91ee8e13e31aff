/* cmd_check.c - `agentsight check CONFIG [PROGRAM]`: validates a config file and, given a
 * program, shows which functions of which loaded objects each entry would wrap, so a
 * mistake is found before the agent runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"
#include "core/log.h"
#include "hook/config.h"
#include "hook/elfsym.h"

#define CHECK_MAX_LISTED 50 /* matches printed per entry before "... and N more" */

static void usage(FILE *f) {
    fprintf(f, "usage: agentsight check CONFIG [PROGRAM]\n"
               "  Parses CONFIG and prints its errors as FILE:LINE:COL: message.\n"
               "  With PROGRAM, lists the functions each entry matches in the program and\n"
               "  the libraries it loads, and warns about entries that match nothing.\n"
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

/* Prints one matching symbol with its flags. This function can't fail. */
static void print_match(const as_entry *e, const as_sym *s, const char *path) {
    const char *vis = s->exported ? "exported" : s->bind == 0 ? "local" : "hidden";
    printf("    %s%s%s  %s  %s%s%s%s\n", s->name, s->version ? "@" : "",
           s->version ? s->version : "", path, vis, s->bind == 2 ? ", weak" : "",
           s->is_ifunc ? ", ifunc" : "",
           (e->hook == AS_HOOK_GOT && !s->exported) ? ", not reachable with hook=got" : "");
}

/* Lists the matches of every entry in the objects of program. Returns the number of
 * entries that match nothing, or -1 when the program's objects could not be listed. */
static int resolve_entries(const as_config *cfg, const char *program) {
    char err[256];
    char **paths = NULL;
    int n = as_program_objects(program, &paths, err, sizeof err);
    if (n < 0) {
        as_error("%s", err);
        return -1;
    }
    as_symtab *tabs = calloc((size_t)n, sizeof *tabs);
    if (!tabs) {
        as_error("out of memory");
        as_paths_free(paths, n);
        return -1;
    }
    printf("program: %s (%d object%s)\n", paths[0], n, n == 1 ? "" : "s");
    for (int i = 0; i < n; i++) {
        if (as_symtab_load(paths[i], &tabs[i], err, sizeof err) < 0)
            as_warn("%s: symbols not read: %s", paths[i], err);
    }
    int unmatched = 0;
    for (int k = 0; k < cfg->nentries; k++) {
        const as_entry *e = &cfg->entries[k];
        int found = 0;
        printf("%s%s%s (%s:%d)%s%s\n", e->pattern, e->version ? "@" : "",
               e->version ? e->version : "", cfg->path, e->line, e->lib ? " lib=" : "",
               e->lib ? e->lib : "");
        for (int i = 0; i < n; i++) {
            if (e->lib && !as_glob_match(e->lib, base_name(paths[i])))
                continue;
            for (size_t j = 0; j < tabs[i].n; j++) {
                const as_sym *s = &tabs[i].syms[j];
                if (!entry_matches(e, s))
                    continue;
                if (found < CHECK_MAX_LISTED)
                    print_match(e, s, paths[i]);
                found++;
            }
        }
        if (found > CHECK_MAX_LISTED)
            printf("    ... and %d more\n", found - CHECK_MAX_LISTED);
        if (!e->is_glob) { /* compiler clones of a bare name: foo.isra.0, foo.constprop.0 */
            size_t pl = strlen(e->pattern);
            for (int i = 0; i < n; i++)
                for (size_t j = 0; j < tabs[i].n; j++) {
                    const char *nm = tabs[i].syms[j].name;
                    if (strncmp(nm, e->pattern, pl) == 0 && nm[pl] == '.')
                        printf("    compiler clone: %s in %s (not matched; name it, e.g. "
                               "'%s.*', to track it)\n",
                               nm, base_name(paths[i]), e->pattern);
                }
        }
        if (!found) {
            printf("    (no match)\n");
            as_warn("entry '%s%s%s' (%s:%d) matches no function", e->pattern, e->version ? "@" : "",
                    e->version ? e->version : "", cfg->path, e->line);
            unmatched++;
        }
    }
    for (int i = 0; i < n; i++)
        as_symtab_free(&tabs[i]);
    free(tabs);
    as_paths_free(paths, n);
    return unmatched;
}

int as_cmd_check(int argc, char **argv) {
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
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
