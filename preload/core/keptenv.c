/* keptenv.c - keeps the values of the variables `agentsight run` sets for its tree, so the
 * traced process still reads them after `run --no-follow` removed them from environ. */
#include "core/keptenv.h"

#include <stdlib.h>
#include <string.h>

static const char *const names[] = {"AGENTSIGHT_LOG",        "AGENTSIGHT_DIAG_FILE",
                                    "AGENTSIGHT_RUN_ID",     "AGENTSIGHT_SYMCACHE",
                                    "AGENTSIGHT_STATS_FILE", "AGENTSIGHT_RUN_DIR"};
#define NNAMES (sizeof names / sizeof names[0])

static const char *values[NNAMES];
static int kept;

void as_keptenv_keep(void) {
    if (kept)
        return;
    for (size_t i = 0; i < NNAMES; i++)
        values[i] = secure_getenv(names[i]); /* nothing under AT_SECURE */
    kept = 1;
}

const char *as_keptenv_get(const char *name) {
    if (kept)
        for (size_t i = 0; i < NNAMES; i++)
            if (strcmp(names[i], name) == 0)
                return values[i];
    return secure_getenv(name);
}
