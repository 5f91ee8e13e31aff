/* review_many.c - a library with 256 exported tools and one function calling each of them
 * through its PLT (lazily bound slots the installer resolves by asking the loader);
 * copied under many names so that each dlopen of a copy keeps the installer busy. */

/* clang-format off */
#define T(n) int review_many_##n(int a); int review_many_##n(int a) { return a + n; }
#define T4(n) T(n##0) T(n##1) T(n##2) T(n##3)
#define T16(n) T4(n##0) T4(n##1) T4(n##2) T4(n##3)
#define T64(n) T16(n##0) T16(n##1) T16(n##2) T16(n##3)
T64(1) T64(2) T64(3) T64(4)
#undef T
#define T(n) s += review_many_##n(x);
int review_many_all(int x);
int review_many_all(int x) {
    int s = 0;
    T64(1) T64(2) T64(3) T64(4)
    return s;
}
/* clang-format on */
