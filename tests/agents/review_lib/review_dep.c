/* review_dep.c - the dependency of the review plugin: a helper the plugin finds with
 * dlsym(RTLD_DEFAULT) (only in the plugin's local scope) and a tool to track. */
int review_dep_helper(void) {
    return 42;
}

int review_tool_add(int a, int b) {
    return a + b;
}
