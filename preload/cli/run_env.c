/* run_env.c - `agentsight run -e PATTERN` and `--no-follow`: the environment that carries
 * command-line entries to the interposer, and the record that lets the traced process
 * give its children the environment they would have had without us (run_env.h). */
#include "cli/run_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hook/config.h"
#include "hook/nofollow.h"

/* The variables `run` sets for PROGRAM that the traced process puts back. Those it reads
 * later (AGENTSIGHT_DIAG_FILE, AGENTSIGHT_RUN_ID, AGENTSIGHT_SYMCACHE, AGENTSIGHT_STATS_FILE,
 * AGENTSIGHT_RUN_DIR) it keeps first (core/keptenv.h). */
static const char *const watched[] = {
    "LD_PRELOAD",           "AGENTSIGHT_CONFIG", "AGENTSIGHT_OUTPUT",   AS_ENTRIES_ENV,
    "AGENTSIGHT_DIAG_FILE", "AGENTSIGHT_RUN_ID", "AGENTSIGHT_SYMCACHE", "AGENTSIGHT_STATS_FILE",
    "AGENTSIGHT_LLM",       "AGENTSIGHT_RUN_DIR"};
#define NWATCHED (sizeof(watched) / sizeof(watched[0]))

static char *before[NWATCHED]; /* copies of the values at the snapshot; NULL when unset */
static int had[NWATCHED];

int as_run_env_entries(char *const *patterns, size_t n) {
    if (n == 0)
        return 0;
    const char *old = getenv(AS_ENTRIES_ENV);
    size_t len = old && *old ? strlen(old) + 1 : 0;
    for (size_t i = 0; i < n; i++) {
        if (strchr(patterns[i], '\n')) {
            fprintf(stderr, "agentsight run: -e '%s': one entry per -e (no newline)\n",
                    patterns[i]);
            return -1;
        }
        len += strlen(patterns[i]) + 1;
    }
    char *text = malloc(len + 1);
    if (!text) {
        fputs("agentsight run: out of memory\n", stderr);
        return -1;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        at += (size_t)sprintf(text + at, "%s\n", patterns[i]);
    /* the same parser as the interposer: an entry refused here would be refused there */
    as_config check;
    memset(&check, 0, sizeof check);
    int errors = as_config_add_entries(&check, text, at, "-e");
    as_config_free(&check);
    if (errors) {
        free(text);
        return -1;
    }
    if (old && *old) { /* entries already in the environment come first */
        memmove(text + strlen(old) + 1, text, at + 1);
        memcpy(text, old, strlen(old));
        text[strlen(old)] = '\n';
    }
    text[len > 0 ? len - 1 : 0] = '\0'; /* no trailing newline */
    int rc = setenv(AS_ENTRIES_ENV, text, 1);
    free(text);
    if (rc != 0)
        fputs("agentsight run: out of memory\n", stderr);
    return rc == 0 ? 0 : -1;
}

void as_run_env_snapshot(void) {
    for (size_t i = 0; i < NWATCHED; i++) {
        const char *v = getenv(watched[i]);
        had[i] = v != NULL;
        free(before[i]);
        before[i] = v ? strdup(v) : NULL;
        if (v && !before[i])
            had[i] = 0; /* out of memory: treated as unset, so removed rather than restored */
    }
}

int as_run_env_nofollow(void) {
    char list[256] = "";
    for (size_t i = 0; i < NWATCHED; i++) {
        const char *now = getenv(watched[i]);
        int same = (!now && !had[i]) || (now && had[i] && strcmp(now, before[i]) == 0);
        if (same)
            continue;
        if (had[i]) {
            char saved[96];
            snprintf(saved, sizeof saved, "%s%s", AS_SAVED_PREFIX, watched[i]);
            if (setenv(saved, before[i], 1) != 0) {
                fputs("agentsight run: out of memory\n", stderr);
                return -1;
            }
        }
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? "," : "",
                 watched[i]);
    }
    if (setenv(AS_NOFOLLOW_ENV, list, 1) != 0) {
        fputs("agentsight run: out of memory\n", stderr);
        return -1;
    }
    return 0;
}
