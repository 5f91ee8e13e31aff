/* nofollow.c - puts back the environment `agentsight run --no-follow` changed, so that
 * the programs the traced process executes run without the interposer (nofollow.h). */
#include "hook/nofollow.h"

#include <stdlib.h>
#include <string.h>

extern char **environ;

#define NAME_MAX_LEN 64

/* environ is edited directly, never with setenv/unsetenv: a program may define its own
 * (bash does, and they ignore environ until the shell has started). The edits are made in
 * place, so the envp main() receives sees them too. */

/* Returns the slot of NAME in environ, or NULL. */
static char **env_slot(const char *name) {
    size_t n = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return e;
    return NULL;
}

/* Removes every NAME=... from environ. This function can't fail. */
static void env_remove(const char *name) {
    char **e;
    while ((e = env_slot(name)) != NULL)
        for (; *e; e++)
            e[0] = e[1];
}

void as_nofollow_apply(void) {
    char **slot = env_slot(AS_NOFOLLOW_ENV);
    if (!slot)
        return;
    char names[512];
    const char *list = *slot + sizeof AS_NOFOLLOW_ENV;
    size_t n = strlen(list);
    if (n >= sizeof names)
        n = sizeof names - 1;
    memcpy(names, list, n);
    names[n] = '\0';
    for (char *save = NULL, *name = strtok_r(names, ",", &save); name;
         name = strtok_r(NULL, ",", &save)) {
        size_t len = strlen(name);
        if (len > NAME_MAX_LEN || strchr(name, '='))
            continue;
        char saved_name[sizeof AS_SAVED_PREFIX + NAME_MAX_LEN];
        memcpy(saved_name, AS_SAVED_PREFIX, sizeof AS_SAVED_PREFIX - 1);
        memcpy(saved_name + sizeof AS_SAVED_PREFIX - 1, name, len + 1);
        char **saved = env_slot(saved_name);
        char **cur = env_slot(name);
        char *orig = NULL;
        if (saved && cur) {
            /* "NAME=value" made from "AGENTSIGHT_SAVED_NAME=value": lives for the process */
            const char *value = *saved + strlen(saved_name) + 1;
            orig = malloc(len + 1 + strlen(value) + 1);
            if (orig) {
                memcpy(orig, name, len);
                orig[len] = '=';
                strcpy(orig + len + 1, value);
            }
        }
        if (orig)
            *cur = orig; /* in place: the variable keeps its position */
        else
            env_remove(name); /* was unset before `run`, or no memory to restore it */
        env_remove(saved_name);
    }
    env_remove(AS_NOFOLLOW_ENV);
}
