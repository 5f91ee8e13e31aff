/* settings.h - process-wide settings: defaults, then the environment, then
 * agentsight_init() options or the interposer's config file [output] section. */
#ifndef AS_SETTINGS_H
#define AS_SETTINGS_H

#include <stddef.h>

#include "agentsight.h"

typedef struct as_settings {
    char output[1024]; /* comma-separated sink URIs */
    char conversation_id[AGENTSIGHT_MAX_NAME + 1];
    char api_key[128];
    char api_endpoint[512];
    char service_name[128]; /* OTLP service.name; default program name */
    char spool_dir[512];
    int flush_timeout_ms; /* default 2000 */
    int queue_policy;     /* AGENTSIGHT_QUEUE_WAIT / _DROP (never DEFAULT once loaded) */
    int queue_wait_ms;    /* default 1000 */
    size_t queue_bytes;   /* per-thread ring, default 1 MiB, power of two */
    int output_explicit;  /* output came from env/options/config, not the default */
} as_settings;

/* The live settings. Loaded by as_settings_load(); read-mostly afterwards. */
extern as_settings as_cfg;

/* Fills as_cfg from the defaults and the environment. default_policy is the queue
 * policy used when neither environment nor options say (WAIT for the API library,
 * DROP for the interposer). Idempotent only in the sense that it overwrites. */
void as_settings_load(int default_policy);

/* as_settings_load for a caller running before any code of the program (the interposer's
 * constructor): the process name, which nothing can have changed yet, is then taken from
 * the path given to exec instead of reading /proc in every process. */
void as_settings_load_at_start(int default_policy);

/* Applies non-zero members of opts over as_cfg. Returns 0, or -1 with a message on
 * stderr for an invalid value. */
int as_settings_apply(const agentsight_options *opts);

/* Copies the comma-separated sink URI list in into out (cap bytes), with every relative
 * file:PATH made absolute against the current working directory. Returns 1 when a path
 * was made absolute, 0 when nothing needed it, -1 when the working directory is unknown
 * or the result does not fit (out is then a copy of in, or "" when in does not fit). */
int as_settings_absolute_output(const char *in, char *out, size_t cap);

/* The per-process generated conversation id, "conv_" + 12 hex (regenerated in a forked
 * child only when it was generated, never when it was given). */
const char *as_settings_conversation_id(void);

#endif
