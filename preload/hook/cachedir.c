/* cachedir.c - where the interposer's caches live (cachedir.h). */
#include "hook/cachedir.h"
#include "core/keptenv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

int as_cache_path(const char *sub, char *out, size_t cap) {
    if (getauxval(AT_SECURE))
        return -1;
    const char *env = as_keptenv_get("AGENTSIGHT_CACHE_DIR");
    const char *xdg = as_keptenv_get("XDG_CACHE_HOME"), *home = as_keptenv_get("HOME");
    int n = -1;
    if (env) {
        if (env[0] != '/')
            return -1; /* "off", empty or relative: no cache */
        n = snprintf(out, cap, "%s/%s", env, sub);
    } else if (xdg && xdg[0] == '/') {
        n = snprintf(out, cap, "%s/agentsight/%s", xdg, sub);
    } else if (home && home[0] == '/') {
        n = snprintf(out, cap, "%s/.cache/agentsight/%s", home, sub);
    }
    return n >= 0 && (size_t)n < cap ? 0 : -1;
}
