/* fix_many.c - a library with many tracked functions: copies of it keep the installer
 * busy while another thread's constructor calls dlopen. */
#define T(n)                                                                                       \
    int fix_many_##n(int a) {                                                                      \
        return a + n;                                                                              \
    }
#define T10(n) T(n##0) T(n##1) T(n##2) T(n##3) T(n##4) T(n##5) T(n##6) T(n##7) T(n##8) T(n##9)
T10(1) T10(2) T10(3) T10(4) T10(5) T10(6) T10(7) T10(8) T10(9)
