/* cfgmatch.c - which config entry names a function (config.h: as_config_match): exact
 * names through the index config.c builds, globs after them, so that start-up with a
 * config of many entries costs one hash lookup per symbol, not one compare per entry. */
#include <string.h>

#include "hook/config.h"
#include "hook/elfsym.h"

/* Whether e's version and lib= allow a function of that version in that file. */
static int fits(const as_entry *e, const char *version, const char *file) {
    if (e->version && (!version || strcmp(e->version, version) != 0))
        return 0;
    return !e->lib || as_glob_match(e->lib, file);
}

/* The linear scan, for a config without an index (out of memory while building it). */
static const as_entry *scan(const as_config *cfg, const char *name, const char *version,
                            const char *file, int *index) {
    const as_entry *glob = NULL;
    int glob_i = -1;
    for (int i = 0; i < cfg->nentries; i++) {
        const as_entry *e = &cfg->entries[i];
        if (!e->pattern || !fits(e, version, file))
            continue;
        if (!e->is_glob) {
            if (strcmp(e->pattern, name) == 0) {
                *index = i;
                return e;
            }
        } else if (!glob && as_glob_match(e->pattern, name)) {
            glob = e;
            glob_i = i;
        }
    }
    *index = glob_i;
    return glob;
}

const as_entry *as_config_match(const as_config *cfg, const char *name, const char *version,
                                const char *file, int *index) {
    *index = -1;
    if (!cfg || !name)
        return NULL;
    const struct as_cfg_index *x = cfg->index;
    if (!x)
        return scan(cfg, name, version, file, index);
    uint64_t h = as_config_name_hash(name);
    size_t k = (size_t)h & (x->nslot - 1);
    for (; x->slot[k]; k = (k + 1) & (x->nslot - 1)) {
        int i = x->slot[k] - 1;
        if (x->hash[k] != h || strcmp(cfg->entries[i].pattern, name) != 0)
            continue;
        /* The chain holds every entry with this exact text, globs included (a glob whose
         * text equals the name matches it too, and is found below as well). */
        for (; i >= 0; i = x->next[i]) {
            const as_entry *e = &cfg->entries[i];
            if (!e->is_glob && !e->dup_line && fits(e, version, file)) {
                *index = i;
                return e;
            }
        }
        break;
    }
    for (int g = 0; g < x->nglobs; g++) {
        const as_entry *e = &cfg->entries[x->globs[g]];
        if (fits(e, version, file) && as_glob_match(e->pattern, name)) {
            *index = x->globs[g];
            return e;
        }
    }
    return NULL;
}

/* Whether e may patch entries in file: a pattern, a hook other than got, lib= fitting. */
static int may_patch(const as_entry *e, const char *file) {
    return e->pattern && e->hook != AS_HOOK_GOT && (!e->lib || as_glob_match(e->lib, file));
}

int as_config_may_entry_patch(const as_config *cfg, const char *name, const char *file) {
    if (!cfg || !name)
        return 0;
    char buf[256];
    size_t len = strcspn(name, "@");
    if (len >= sizeof buf)
        return 1; /* too long to test here: kept, as_config_match decides */
    memcpy(buf, name, len);
    buf[len] = '\0';
    const struct as_cfg_index *x = cfg->index;
    if (!x) {
        for (int i = 0; i < cfg->nentries; i++) {
            const as_entry *e = &cfg->entries[i];
            if (may_patch(e, file) &&
                (e->is_glob ? as_glob_match(e->pattern, buf) : strcmp(e->pattern, buf) == 0))
                return 1;
        }
        return 0;
    }
    uint64_t h = as_config_name_hash(buf);
    for (size_t k = (size_t)h & (x->nslot - 1); x->slot[k]; k = (k + 1) & (x->nslot - 1)) {
        int i = x->slot[k] - 1;
        if (x->hash[k] != h || strcmp(cfg->entries[i].pattern, buf) != 0)
            continue;
        for (; i >= 0; i = x->next[i])
            if (!cfg->entries[i].is_glob && may_patch(&cfg->entries[i], file))
                return 1;
        break;
    }
    for (int g = 0; g < x->nglobs; g++) {
        const as_entry *e = &cfg->entries[x->globs[g]];
        if (may_patch(e, file) && as_glob_match(e->pattern, buf))
            return 1;
    }
    return 0;
}
