/* target.c - the table of wrapped functions (target.h): appended under a lock at install
 * time, read without a lock on the hot path, and the mapping between target ids and the
 * per-target stubs of the thunk. */
#include <stddef.h>
#include <stdint.h>

#include "hook/config.h"
#include "hook/target.h"
#include "hook/thunk.h"
#include "core/bigbss.h"

/* Bytes per stub in preload/hook/x86_64/thunk.S. */
#define AS_STUB_SIZE 16

as_target as_targets[AS_MAX_TARGETS] AS_BIG_BSS;
uint8_t as_target_errif[AS_MAX_TARGETS] AS_BIG_BSS;
uint32_t as_ntargets;
pthread_mutex_t as_targets_lock = PTHREAD_MUTEX_INITIALIZER;

/* Returns the judge (as_target_errif) of calls of a function of entry e and prototype p
 * (NULL: untyped): what as_rec_failed answers for each rule and return type. */
static uint8_t judge_of(const as_entry *e, const as_proto *p) {
    if (!e || e->error_if == AS_ERRIF_NONE)
        return AS_JUDGE_NONE;
    if (e->error_if == AS_ERRIF_ERRNO)
        return AS_JUDGE_ERRNO;
    int is_signed = 0;
    unsigned size = 8;
    if (!p) {
        if (e->error_if == AS_ERRIF_NEGATIVE)
            return AS_JUDGE_NEG_UNTYPED;
    } else {
        switch (p->ret.kind) {
        case AS_K_SINT:
        case AS_K_UINT:
            is_signed = p->ret.kind == AS_K_SINT;
            size = p->ret.size >= 1 && p->ret.size < 8 ? p->ret.size : 8; /* sext, zext */
            break;
        case AS_K_BOOL:
            size = 1;
            break;
        case AS_K_PTR:
        case AS_K_STR:
            break;
        case AS_K_FLOAT:
            return AS_JUDGE_C;
        default:
            return AS_JUDGE_NEVER; /* void, aggregates: no value to judge */
        }
    }
    uint8_t drop = (uint8_t)((8 - size) << AS_JUDGE_DROP_SHIFT);
    switch (e->error_if) {
    case AS_ERRIF_NULL:
    case AS_ERRIF_ZERO:
    case AS_ERRIF_FALSE:
        return (uint8_t)(AS_JUDGE_ZERO | drop);
    case AS_ERRIF_NONZERO:
        return (uint8_t)(AS_JUDGE_NONZERO | drop);
    case AS_ERRIF_NEGATIVE:
        return is_signed ? (uint8_t)(AS_JUDGE_NEG | drop) : AS_JUDGE_NEVER;
    default:
        return AS_JUDGE_NEVER;
    }
}

/* Returns the id of the target whose original is orig, adding it when absent; -1 when
 * orig is NULL or the table is full (nothing changed then). Strings are borrowed for the
 * life of the process; action_name NULL means the symbol. */
int as_target_get(void *orig, const char *symbol, const char *action_name, const char *library,
                  const struct as_entry *entry) {
    return as_target_get_in(orig, symbol, action_name, library, entry, 0, 0);
}

/* Returns the id of the live target whose original is orig, adding it (with its object's
 * range) when absent; -1 when orig is NULL or the table is full (nothing changed then). */
int as_target_get_in(void *orig, const char *symbol, const char *action_name, const char *library,
                     const struct as_entry *entry, uintptr_t obj_lo, uintptr_t obj_hi) {
    if (!orig || !symbol)
        return -1;
    pthread_mutex_lock(&as_targets_lock);
    uint32_t n = __atomic_load_n(&as_ntargets, __ATOMIC_RELAXED);
    for (uint32_t i = 0; i < n; i++) {
        if (as_targets[i].orig == orig && !as_target_retired(i)) {
            pthread_mutex_unlock(&as_targets_lock);
            return (int)i;
        }
    }
    if (n >= AS_MAX_TARGETS) {
        pthread_mutex_unlock(&as_targets_lock);
        return -1;
    }
    as_target *t = &as_targets[n];
    t->orig = orig;
    t->symbol = symbol;
    t->action_name = action_name ? action_name : symbol;
    t->library = library ? library : "";
    t->entry = entry;
    /* The entry's prototype; the installer may set a DWARF one when this is NULL. */
    as_target_set_proto(t, entry && entry->has_proto ? &entry->proto : NULL);
    t->id = n;
    t->via = 0;
    t->obj_lo = obj_lo;
    t->obj_hi = obj_hi;
    t->retired = 0;
    /* Readers index as_targets[id] only with ids handed out after this store. */
    __atomic_store_n(&as_ntargets, n + 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&as_targets_lock);
    return (int)n;
}

void as_target_set_proto(as_target *t, const as_proto *p) {
    __atomic_store_n(&t->proto, p, __ATOMIC_RELEASE);
    __atomic_store_n(&as_target_errif[t - as_targets], judge_of(t->entry, p), __ATOMIC_RELEASE);
    /* AS_CAPTURES_ASM cleared: the plan, made once per target, was for another one */
    __atomic_store_n(&t->captures,
                     p != NULL && !(t->entry && t->entry->capture_none) ? AS_CAPTURES : 0,
                     __ATOMIC_RELEASE);
}

void as_target_retire(uint32_t id) {
    if (id < AS_MAX_TARGETS)
        __atomic_store_n(&as_targets[id].retired, 1, __ATOMIC_RELEASE);
}

/* Returns the stub address of id, or NULL for an id outside the stub array. */
void *as_thunk_addr(uint32_t id) {
    if (id >= AS_MAX_TARGETS)
        return NULL;
    return as_thunk_stubs + (size_t)id * AS_STUB_SIZE;
}

/* Returns the full stub address of id, or NULL for an id outside the stub array. */
void *as_thunk_addr_full(uint32_t id) {
    if (id >= AS_MAX_TARGETS)
        return NULL;
    return as_thunk_full_stubs + (size_t)id * AS_STUB_SIZE;
}

/* Returns the id whose stub starts at addr, or -1 when addr is not a stub's first byte. */
int as_thunk_id(const void *addr) {
    uintptr_t a = (uintptr_t)addr;
    uintptr_t base = (uintptr_t)as_thunk_stubs;
    if (a < base || a >= (uintptr_t)as_thunk_stubs_end)
        return -1;
    if ((a - base) % AS_STUB_SIZE)
        return -1;
    uintptr_t id = (a - base) / AS_STUB_SIZE;
    return id < AS_MAX_TARGETS ? (int)id : -1;
}
