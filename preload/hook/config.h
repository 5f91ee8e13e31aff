/* config.h - the interposer's config file: which functions become actions ([actions]
 * entries, with an optional C prototype and options) and where actions go ([output]).
 * The format is documented in config/README.md. */
#ifndef AS_CONFIG_H
#define AS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "hook/proto.h"

/* error_if= : when a call counts as failed (judged on the return value, or errno). */
enum {
    AS_ERRIF_NONE = 0,
    AS_ERRIF_NULL,     /* the result is a NULL pointer */
    AS_ERRIF_NEGATIVE, /* the result is < 0 */
    AS_ERRIF_ZERO,     /* the result is 0 */
    AS_ERRIF_NONZERO,  /* the result is not 0 */
    AS_ERRIF_FALSE,    /* the result is false (0) as a bool */
    AS_ERRIF_ERRNO
}; /* errno changed during the call */

/* hook= : how calls are diverted. */
enum { AS_HOOK_AUTO = 0, AS_HOOK_GOT, AS_HOOK_ENTRY };

/* Default bytes captured per string, and the accepted range of max_string. */
#define AS_MAX_STRING_DEFAULT 256
#define AS_MAX_STRING_LIMIT 65536

/* One [actions] line. Every string is owned by the as_config (freed by as_config_free). */
typedef struct as_entry {
    char *pattern; /* symbol name or glob, without "@VERSION" */
    int is_glob;   /* pattern has *, ? or [ */
    char *version; /* "GLIBC_2.2.5" from "name@GLIBC_2.2.5", else NULL */
    char *name;    /* name= (the action_name), else NULL: use the symbol */
    char *lib;     /* lib= glob on the defining object's file name, else NULL */
    char *display; /* display=, else NULL */
    int has_proto; /* the line was a C prototype: proto is valid */
    as_proto proto;
    int error_if;     /* AS_ERRIF_* */
    int capture_none; /* capture=none on the entry, or capture = off in [output] */
    int max_string;   /* max_string= of the entry, else [output] max_string, else 256 */
    int hook;         /* AS_HOOK_* */
    int line;         /* 1-based line of the entry in the file, or which -e it was */
    const char *src;  /* NULL: from the file (cfg->path); else where it came from ("-e") */
    int dup_line;     /* line of an earlier entry with the same symbol, version, lib= and hook=
                       * (this one is never used), else 0 */
} as_entry;

/* The name messages give for where entry e of cfg came from ("FILE" or "-e"). */
#define AS_ENTRY_SRC(cfg, e) ((e)->src ? (e)->src : (cfg)->path ? (cfg)->path : "config")

/* The environment variable that carries `agentsight run -e` patterns to the interposer:
 * one [actions] entry line per line. */
#define AS_ENTRIES_ENV "AGENTSIGHT_ENTRIES"

/* A parsed file. Unset [output] keys: NULL strings, flush_timeout_ms -1, queue_policy 0
 * (AGENTSIGHT_QUEUE_DEFAULT); set ones: queue_policy is AGENTSIGHT_QUEUE_WAIT or _DROP. */
typedef struct as_config {
    char *path; /* the name used in messages */
    as_entry *entries;
    int nentries;
    char *sink; /* comma-separated sink URIs */
    char *conversation_id;
    int capture_off;      /* capture = off */
    int max_string;       /* 256 unless set */
    char *service;        /* OTLP service.name */
    int flush_timeout_ms; /* -1 unless set */
    int queue_policy;
    int llm_enable;           /* [llm] enable: 1 on, 0 off, -1 unset */
    int llm_capture;          /* [llm] capture: 0 none, 1 response, 2 prompts, -1 unset */
    int llm_max_string;       /* [llm] max_string, 0 unset */
    char llm_plain_http[256]; /* [llm] plain_http as written (checked), "" unset */
    int errors;               /* number of error messages printed while parsing */
    /* Lookup index built at the end of parsing (config.c): exact names by hash, globs in
     * file order. NULL (then lookups scan every entry) when out of memory. */
    struct as_cfg_index *index;
} as_config;

/* Every entry with a pattern sits in an open-addressing table keyed by its pattern text
 * (the first entry of each text; later ones chained in file order through next[]); glob
 * entries that are not duplicates are also listed in file order. */
struct as_cfg_index {
    int *slot;      /* entry index + 1, 0 when empty; nslot is a power of two */
    uint64_t *hash; /* per slot: the hash of its pattern (compared before the text) */
    size_t nslot;
    int *next; /* per entry: the next entry with the same pattern, or -1 */
    int *tail; /* per first entry of a pattern: the last one with that pattern */
    int *globs;
    int nglobs;
};

/* The hash of the index (FNV-1a). */
uint64_t as_config_name_hash(const char *s);

/* How many messages about the entries of one config are printed (parse errors,
 * duplicates, entries matching nothing); the rest are counted in one closing line. */
#define AS_CONFIG_MSG_CAP 20

/*
 * as_config_load - reads and parses the file at path (see as_config_parse).
 *
 * Returns 0 when the file was read (cfg->errors says how many lines were refused), or -1
 * when it could not be read: then one message "PATH: cannot read: <reason>" was printed,
 * cfg is an empty config (cfg->errors 1) and must still be freed with as_config_free.
 */
int as_config_load(const char *path, as_config *cfg);

/*
 * as_config_parse - parses len bytes of config text; name is used in messages.
 *
 * cfg is overwritten (not freed first). Every refused line or option prints one
 * "agentsight: error: NAME:LINE:COL: what is wrong" message on stderr (through as_log),
 * the rest is parsed. Returns the number of errors (also in cfg->errors); on an
 * out-of-memory condition the config holds what was parsed so far and one more error.
 */
int as_config_parse(const char *text, size_t len, const char *name, as_config *cfg);

/*
 * as_config_add_entries - parses len bytes of text as [actions] entry lines (one per
 * line, no section headers; blank lines skipped) and appends them to cfg, which may be
 * empty (zeroed: it is then initialised with path src) or hold a parsed file. Entries get
 * src as their origin and their line number in text as line. Each refused line prints
 * one "agentsight: error: SRC:LINE:COL: what is wrong" message. Returns the number of
 * errors (also added to cfg->errors).
 */
int as_config_add_entries(as_config *cfg, const char *text, size_t len, const char *src);

/* Frees everything cfg owns and zeroes it. Safe on a zeroed or already freed config. */
void as_config_free(as_config *cfg);

/* Name of an error_if value ("null", "negative", ...; "none"). This function can't fail. */
const char *as_errif_name(int error_if);

/*
 * as_config_match - the entry for a function named name (version: its symbol version or
 * NULL) defined in the object file named file: an exact name wins over a glob; among
 * equals the first in the file; an entry's version and lib= must fit. Exact names are
 * found by hash, so the cost does not grow with the number of exact entries. Returns the
 * entry (its index in *index), or NULL (*index -1). This function can't fail.
 */
const as_entry *as_config_match(const as_config *cfg, const char *name, const char *version,
                                const char *file, int *index);

/*
 * as_config_may_entry_patch - 1 when some entry that may patch entries (hook= other than
 * got) and whose lib= fits file could select a function named name (maybe "name@VERSION";
 * the version is left to as_config_match), 0 when none can. Exact names are found by hash,
 * so a large .symtab is filtered at one lookup per symbol whatever the number of entries.
 */
int as_config_may_entry_patch(const as_config *cfg, const char *name, const char *file);

#endif
