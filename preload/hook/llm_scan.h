/* llm_scan.h - the guarded rescan of GOT slots that the LLM watchers (llm_tls.c: TLS
 * functions; llm_sock.c: socket functions) run after each dlopen: nothing while the watcher
 * is off or the interposer itself is running, else the watcher's scan under its lock, with
 * the interposer's own calls kept out of the hooks and errno as the program left it. */
#ifndef AS_LLM_SCAN_H
#define AS_LLM_SCAN_H

#include <errno.h>
#include <pthread.h>

#include "core/pipeline.h"

/* Runs scan() under lock when *active is set. Returns what scan returned (slots written),
 * or 0 when nothing ran. */
static inline int as_llm_scan_guarded(const int *active, pthread_mutex_t *lock, int (*scan)(void)) {
    if (!__atomic_load_n(active, __ATOMIC_ACQUIRE) || as_in_agentsight)
        return 0;
    int saved = errno;
    pthread_mutex_lock(lock);
    as_in_agentsight++;
    int w = scan();
    as_in_agentsight--;
    pthread_mutex_unlock(lock);
    errno = saved;
    return w;
}

#endif
