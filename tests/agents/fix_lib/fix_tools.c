/* fix_tools.c - the tools of the fix regression agent (tests/agents/fix_agent.c): plain
 * functions, one that calls back (coroutines park inside it), one that exits. */
#include <stdlib.h>

int fix_add(int a, int b) {
    return a + b;
}

int fix_call(void (*cb)(void)) {
    cb();
    return 7;
}

int fix_exit(int code) {
    exit(code);
}
