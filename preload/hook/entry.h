/* entry.h - wrapping functions no GOT slot reaches (static functions of the program, calls
 * inside one library, pointers from dlsym) by patching their entry: which functions the
 * config selects for it, the target each one gets, and the CET shadow-stack fallback. */
#ifndef AS_ENTRY_H
#define AS_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "hook/config.h"

/*
 * as_entry_scan_obj - entry-patches the functions of one loaded object that cfg selects
 * for it: every function matched by a hook=entry entry, and with hook=auto (the default)
 * every matched function that is not exported (found only in .symtab, or in the separate
 * debug file found by build-id); exported functions are left to install.c, which patches
 * their entries too where reach.h says calls may bypass the GOT. Symbols that are never
 * wrapped (hookable.h) are refused (an entry naming one gets one warning) or, by a glob,
 * skipped. Compiler
 * clones (foo.isra.0, foo.constprop.0, foo.part.0) match only an entry naming them, e.g.
 * "foo.isra.0" or "foo.*". Matching follows install.c: an exact name wins over a glob,
 * then the first entry in the file; lib= globs the object's file name.
 *
 * path is the object's file, base its load bias. matched (cfg->nentries flags, may be
 * NULL) gets 1 for each entry that selected a function. A function that cannot be patched
 * safely gets one warning naming the config line and the reason, and runs unwrapped.
 * Returns the number of functions patched (or already patched), or -1 when the file's
 * symbols could not be read. Allocates and reads files: never call it from a
 * dl_iterate_phdr callback or with the loader lock held.
 */
int as_entry_scan_obj(const as_config *cfg, const char *path, uintptr_t base,
                      unsigned char *matched);

/* Whether cfg has an entry that may select functions for entry patching (hook=auto or
 * hook=entry). This function can't fail. */
int as_entry_wanted(const as_config *cfg);

/*
 * as_entry_hook - entry-patches the function at fn (size bytes, from its symbol): creates
 * or finds its target (as_target_get with orig fn), points the target's orig at the
 * trampoline (so a call that comes through a GOT slot as well is still recorded once),
 * then writes the jump to the target's thunk stub. Strings are borrowed for the life of
 * the process. Returns the target id, or -1 with a warning logged (fn unchanged, the
 * target, if it was created, keeps orig = fn).
 */
int as_entry_hook(void *fn, size_t size, const char *symbol, const char *action_name,
                  const char *library, const as_entry *entry);

/* as_entry_hook for a function whose GOT slots are diverted too (hook=auto on an exported
 * function whose calls inside its object may bypass the GOT): a refusal is an info line
 * naming the calls left unseen, not a warning, since calls through the GOT still are. */
int as_entry_hook_also(void *fn, size_t size, const char *symbol, const char *action_name,
                       const char *library, const as_entry *entry);

/* The target id of an entry-patched function (fn = its original entry), or -1. */
int as_entry_id(const void *fn);

/* Forgets the patched functions whose target was retired (their object was unloaded), so
 * a function loaded again at the same address is patched anew instead of being taken
 * for one already patched (its fresh code has no jump). Their trampolines stay
 * allocated. This function can't fail. */
void as_entry_forget_retired(void);

/* Number of functions entry-patched so far. This function can't fail. */
int as_entry_count(void);

/* cet.c: whether the calling process runs with a CET shadow stack (arch_prctl
 * ARCH_SHSTK_STATUS); then swapping return addresses would fault and entry patches only
 * record entries (t1 = t0, no response, metadata "hook":"entry-only"). Cached after the
 * first call; as_cet_force(1/0) overrides the detection (tests), -1 restores it. */
int as_cet_shstk_enabled(void);
void as_cet_force(int on);

#endif
