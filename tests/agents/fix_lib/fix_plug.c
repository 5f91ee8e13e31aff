/* fix_plug.c - a plugin the fix agent loads, unloads and loads again: it calls a tracked
 * function of libfix_tools.so. FIX_BIAS makes two copies answer differently. */
#ifndef FIX_BIAS
#define FIX_BIAS 100
#endif
int fix_add(int a, int b);

int fix_plug_go(int x) {
    return fix_add(x, FIX_BIAS);
}

/* A tool of the plugin itself (the swap case: another plugin later at the same address). */
int fix_swap_tool(int x) {
    return x + FIX_BIAS;
}
