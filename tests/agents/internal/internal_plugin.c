/* internal_plugin.c - a library the internal agent loads while its threads already run:
 * plugin_hot is entry-patched when a later dlopen makes the interposer look at it. */
#define API __attribute__((visibility("default")))

static volatile int plugin_bias = 1;

API __attribute__((noipa)) int plugin_hot(int x) {
    return x + plugin_bias;
}
