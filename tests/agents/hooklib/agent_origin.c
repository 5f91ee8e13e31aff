/* agent_origin.c - libagent_origin.so: the plugin found only through its loader's
 * $ORIGIN RUNPATH. */
__attribute__((visibility("default"))) int origin_tool(int x) {
    return x * 3;
}
