/* keptenv.c - the environment as this process image started with it. The interposer reads
 * its settings lazily (the first tracked call opens the sinks, maybe on any thread), and
 * by then the program may have replaced environ: bash frees its old export array after
 * realloc'ing it, so a getenv() in a tracked realloc's record read freed memory and the
 * process died. The strings the kernel put on the initial stack are never freed; the
 * snapshot keeps pointers to them, taken by the constructor before anything runs. It also
 * keeps what `run --no-follow` removes from environ for the program's children. */
#include "core/keptenv.h"

#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

extern char **environ;

static const char **snap; /* NAME=VALUE pointers, as the image started */
static size_t nsnap;
static int kept;

void as_keptenv_keep(void) {
    if (kept)
        return;
    if (getauxval(AT_SECURE)) { /* as secure_getenv: nothing is read from it */
        kept = 1;
        return;
    }
    size_t n = 0;
    while (environ && environ[n])
        n++;
    const char **v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return; /* not kept: secure_getenv() answers, as without a snapshot */
    for (size_t i = 0; i < n; i++)
        v[i] = environ[i];
    snap = v;
    nsnap = n;
    kept = 1;
}

const char *as_keptenv_get(const char *name) {
    if (!kept)
        return secure_getenv(name);
    size_t len = strlen(name);
    for (size_t i = 0; i < nsnap; i++)
        if (strncmp(snap[i], name, len) == 0 && snap[i][len] == '=')
            return snap[i] + len + 1;
    return NULL;
}
