/* internal_lib.c - a tool library whose functions call each other inside the library,
 * where no GOT slot is involved: a static helper, a hidden function, and an exported
 * function also called internally (built with -Bsymbolic-functions). */
#include <stdio.h>

#define NOIPA __attribute__((noipa))
#define API __attribute__((visibility("default")))

int lib_both(int x);

/* Static: only in .symtab. */
static NOIPA int lib_helper(int x) {
    return x * 10;
}

/* Hidden: only in .symtab. */
__attribute__((visibility("hidden"))) NOIPA int lib_hidden(int x) {
    return x * x + 5;
}

/* Exported, and called from lib_api inside the library (bound locally). */
API NOIPA int lib_both(int x) {
    return x * 7 - 1;
}

API NOIPA int lib_api(int x) {
    return lib_helper(x) + lib_hidden(x) + lib_both(x);
}
