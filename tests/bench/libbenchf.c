/* libbenchf.c - the function the hook benchmark wraps: int f(int,int) in a shared
 * library, so the benchmark calls it through the PLT like an agent calls its tools. */
__attribute__((visibility("default"))) int f(int a, int b);

int f(int a, int b) {
    return a + b;
}
