/* cold_demo.c - a library function with an unlikely path that gcc -O2 moves out of line
 * into a fragment, cold_demo.cold, entered by a jump from cold_demo and jumping back: the
 * interposer must never take that fragment for a function. */
#include <stdio.h>

#define API __attribute__((visibility("default")))

/* A cold function: calling it marks the branch unlikely, so gcc splits it off. */
__attribute__((cold, noinline)) void cold_demo_note(int i) {
    fprintf(stderr, "cold_demo: rare value %d\n", i);
}

API long cold_demo(int n) {
    long s = 0;
    for (int i = 0; i < n; i++) {
        if (__builtin_expect(i % 97 == 96, 0)) {
            cold_demo_note(i);
            s = s * 3 - i;
        }
        s += i;
    }
    return s;
}
