/* libbenchf.c - the functions the hook benchmark wraps: int f(int,int), and int fs(const
 * char *) for the typed row (a string argument the interposer copies), in a shared
 * library, so the benchmark calls them through the PLT like an agent calls its tools. */
__attribute__((visibility("default"))) int f(int a, int b);

int f(int a, int b) {
    return a + b;
}

__attribute__((visibility("default"))) int fs(const char *s);

int fs(const char *s) {
    return s[0];
}
