/* target.h - the table of wrapped functions: one entry per (symbol, defining object),
 * shared by the installer (GOT, dlsym, entry patches), the thunk and the record decoder.
 *
 * Targets are only ever appended (under as_targets_lock); an id, once handed out, stays
 * valid for the life of the process, so the hot path reads as_targets[id] without a lock. */
#ifndef AS_TARGET_H
#define AS_TARGET_H

#include <pthread.h>
#include <stdint.h>

#include "proto.h"

#define AS_MAX_TARGETS 4096

/* How a call reached the thunk (metadata "hook"). */
enum as_hook_via { AS_VIA_GOT = 1, AS_VIA_DLSYM = 2, AS_VIA_ENTRY = 4 };

struct as_entry; /* config.h */

typedef struct as_target {
    void *orig;                   /* the resolved function (never a lazy PLT stub) */
    const char *symbol;           /* e.g. "sqlite3_step" */
    const char *action_name;      /* name= of the entry, else symbol */
    const char *library;          /* file name of the defining object: "libsqlite3.so.0" */
    const struct as_entry *entry; /* config entry that selected it (prototype, options) */
    const as_proto *proto;        /* entry's prototype, else DWARF's, else NULL */
    uint32_t id;
    uint32_t via; /* enum as_hook_via bits seen so far */
} as_target;

extern as_target as_targets[AS_MAX_TARGETS];
extern uint32_t as_ntargets; /* published with release semantics after filling */
extern pthread_mutex_t as_targets_lock;

/* Finds the target for orig, or adds one. Returns its id, or -1 when the table is full.
 * Takes as_targets_lock. Copies nothing: strings must live for the process lifetime. */
int as_target_get(void *orig, const char *symbol, const char *action_name, const char *library,
                  const struct as_entry *entry);

/* The address a GOT slot or dlsym result should hold to route calls of target id through
 * the thunk (a per-target stub in preload/hook/x86_64/). */
void *as_thunk_addr(uint32_t id);

/* The address an entry patch of target id jumps to: its full-preservation stub, which
 * changes no register a direct caller may rely on (thunk.h). NULL for an id outside the
 * stub array. */
void *as_thunk_addr_full(uint32_t id);

/* The target id whose stub is at addr, or -1 when addr is no stub of ours. */
int as_thunk_id(const void *addr);

#endif
