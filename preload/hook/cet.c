/* cet.c - detects a CET shadow stack on the calling process: with one, the thunk's
 * return-address swap would fault (the return would not match the shadow copy), so entry
 * patches fall back to recording entries only. */
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hook/entry.h"

#define AS_ARCH_SHSTK_STATUS 0x5005 /* arch_prctl: features enabled for this thread */
#define AS_ARCH_SHSTK_SHSTK (1ull << 0)

static int g_detected = -1; /* -1: not asked yet */
static int g_forced = -1;   /* -1: use the detection */

/* Asks the kernel. Returns 1 when the shadow stack is on, 0 when it is off or the kernel
 * does not know the request (EINVAL on kernels before 6.6, or without CET). */
static int detect(void) {
#if defined(__x86_64__)
    uint64_t features = 0;
    if (syscall(SYS_arch_prctl, AS_ARCH_SHSTK_STATUS, &features) != 0)
        return 0;
    return (features & AS_ARCH_SHSTK_SHSTK) != 0;
#else
    return 0;
#endif
}

int as_cet_shstk_enabled(void) {
    int f = __atomic_load_n(&g_forced, __ATOMIC_RELAXED);
    if (f >= 0)
        return f;
    int d = __atomic_load_n(&g_detected, __ATOMIC_RELAXED);
    if (d < 0) {
        d = detect();
        __atomic_store_n(&g_detected, d, __ATOMIC_RELAXED);
    }
    return d;
}

void as_cet_force(int on) {
    __atomic_store_n(&g_forced, on < 0 ? -1 : on != 0, __ATOMIC_RELAXED);
}
