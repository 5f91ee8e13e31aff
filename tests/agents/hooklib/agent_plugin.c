/* agent_plugin.c - libagent_plugin.so: a plugin the test agent dlopens and reaches through
 * dlsym; it calls into libagent_tools.so through its own GOT. */
int tool_add(int a, int b);

__attribute__((visibility("default"))) int plugin_search(int x) {
    volatile int r = tool_add(x, 100);
    return r;
}
