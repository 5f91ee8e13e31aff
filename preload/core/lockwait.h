/* lockwait.h - takes a mutex, waiting at most a bound: for fork handlers, which wait for
 * a patch in progress (up to ~250 ms) but must not hang on a lock that a thread stopped in
 * a signal handler holds. */
#ifndef AS_LOCKWAIT_H
#define AS_LOCKWAIT_H

#include <pthread.h>
#include <time.h>

/* Tries mu every millisecond for about ms milliseconds. Returns 1 when taken, else 0. */
static inline int as_mutex_lock_bounded(pthread_mutex_t *mu, int ms) {
    for (int i = 0; i < ms; i++) {
        if (pthread_mutex_trylock(mu) == 0)
            return 1;
        struct timespec nap = {0, 1000000};
        nanosleep(&nap, NULL);
    }
    return pthread_mutex_trylock(mu) == 0;
}

#endif
