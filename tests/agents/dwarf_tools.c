/* dwarf_tools.c - a test agent built -g -O0 -rdynamic whose functions use every kind of
 * type a prototype can hold (ints of each size and sign, bool, char, float, double, long
 * double, strings, other pointers, enums, structs and a union by value, varargs, more than
 * six parameters, unnamed parameters), so the DWARF reader and typed capture can be checked
 * against known declarations. main() calls each once with fixed values and prints the
 * results, so a run under the interposer can be compared with a run without it. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define TOOL __attribute__((noinline, used))

enum color { COLOR_RED, COLOR_GREEN, COLOR_BLUE };
enum sign { SIGN_NEG = -1, SIGN_ZERO = 0, SIGN_POS = 1 };

struct point { /* 8 bytes: one INTEGER eightbyte */
    int x;
    int y;
};
struct vec2 { /* 16 bytes: SSE, SSE */
    double x;
    double y;
};
struct mixed { /* 16 bytes: SSE, INTEGER */
    double weight;
    int count;
};
struct floats { /* 8 bytes: two floats share one SSE eightbyte */
    float a;
    float b;
};
struct float_int { /* 8 bytes: a float and an int in one eightbyte: INTEGER */
    float f;
    int i;
};
struct big { /* 24 bytes: MEMORY */
    long a, b, c;
};
struct __attribute__((packed)) packed { /* 5 bytes, int unaligned: MEMORY */
    char tag;
    int value;
};
union number { /* 8 bytes: INTEGER (the double shares its eightbyte with a long) */
    long i;
    double d;
};
typedef struct point point_t;

TOOL int calculator_multiply(int a, int b) {
    return a * b;
}

TOOL long dt_signed(signed char c, short s, int i, long l, long long ll) {
    return c + s + i + l + ll;
}

TOOL unsigned long dt_unsigned(unsigned char c, unsigned short s, unsigned int i, unsigned long l,
                               unsigned long long ll) {
    return c + s + i + l + ll;
}

TOOL int64_t dt_many(int8_t a, int16_t b, int32_t c, int64_t d, uint8_t e, uint16_t f, uint32_t g,
                     uint64_t h) {
    return a + b + c + d + e + f + (int64_t)g + (int64_t)h;
}

TOOL bool dt_bool(bool flag, char letter) {
    return flag && letter == 'y';
}

TOOL double dt_float(float f, double d) {
    return f * d;
}

TOOL long double dt_long_double(long double x) {
    return x / 2;
}

TOOL size_t dt_strlen(const char *text) {
    return strlen(text);
}

TOOL char *dt_pointers(char *buf, const unsigned char *bytes, void *opaque, int *count) {
    *count = bytes[0] + (opaque != NULL);
    return buf;
}

TOOL enum color dt_enum(enum color c, enum sign s) {
    return s == SIGN_NEG ? COLOR_RED : c;
}

TOOL int dt_structs(struct point p, struct vec2 v, struct mixed m, struct floats f,
                    struct float_int fi) {
    return p.x + p.y + (int)v.x + (int)v.y + (int)m.weight + m.count + (int)f.a + (int)f.b +
           (int)fi.f + fi.i;
}

TOOL long dt_memory(struct big b, struct packed pk, union number n) {
    return b.a + b.b + b.c + pk.tag + pk.value + n.i;
}

TOOL point_t dt_make_point(int x, int y) {
    point_t p = {x, y};
    return p;
}

TOOL int dt_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

TOOL int dt_unnamed(int, const char *label) {
    return label ? (int)strlen(label) : 0;
}

TOOL int dt_apply(int (*fn)(int), int value) {
    return fn(value);
}

TOOL void dt_void(void) {
    fflush(stdout);
}

TOOL int dt_seventeen(int a1, int a2, int a3, int a4, int a5, int a6, int a7, int a8, int a9,
                      int a10, int a11, int a12, int a13, int a14, int a15, int a16, int a17) {
    return a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11 + a12 + a13 + a14 + a15 + a16 +
           a17;
}

static int dt_local_helper(int x) {
    return x + 1;
}

int main(void) {
    char buf[16] = "buffer";
    unsigned char bytes[1] = {7};
    int count = 0;
    struct point p = {1, 2};
    struct vec2 v = {3.0, 4.0};
    struct mixed m = {5.0, 6};
    struct floats f = {7.0f, 8.0f};
    struct float_int fi = {9.0f, 10};
    struct big b = {1, 2, 3};
    struct packed pk = {4, 5};
    union number n = {.i = 6};
    printf("multiply %d\n", calculator_multiply(6, 7));
    printf("signed %ld\n", dt_signed(-1, -2, -3, -4, -5));
    printf("unsigned %lu\n", dt_unsigned(1, 2, 3, 4, 5));
    printf("many %lld\n", (long long)dt_many(-1, 2, -3, 4, 5, 6, 7, 8));
    printf("bool %d\n", dt_bool(true, 'y'));
    printf("float %.2f\n", dt_float(1.5f, 2.0));
    printf("long double %.2Lf\n", dt_long_double(9.0L));
    printf("strlen %zu\n", dt_strlen("hello"));
    char *same = dt_pointers(buf, bytes, &count, &count);
    printf("pointers %s %d\n", same, count);
    printf("enum %d\n", (int)dt_enum(COLOR_BLUE, SIGN_POS));
    printf("structs %d\n", dt_structs(p, v, m, f, fi));
    printf("memory %ld\n", dt_memory(b, pk, n));
    point_t q = dt_make_point(11, 12);
    printf("point %d %d\n", q.x, q.y);
    dt_printf("printf %s %d\n", "varargs", 3);
    printf("unnamed %d\n", dt_unnamed(1, "label"));
    printf("apply %d\n", dt_apply(dt_local_helper, 41));
    dt_void();
    printf("seventeen %d\n",
           dt_seventeen(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17));
    return 0;
}
