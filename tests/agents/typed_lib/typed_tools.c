/* typed_tools.c - the tool library of typed_agent: functions of every prototype type the
 * interposer captures (issue 4), shaped so the reference page's three examples come out
 * as its payloads. Built as libtyped_tools.so by tests/agents/typed.mk. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define API __attribute__((visibility("default")))

API int multiply(int a, int b) {
    return a * b;
}

API const char *weather_lookup(const char *location, const char *units) {
    if (!location || !units)
        return NULL;
    return "Temperature: 18\xc2\xb0"
           "C, Conditions: Sunny";
}

API const char *database_search(const char *user_id, const char *status) {
    if (!user_id || !status)
        return NULL;
    return "Found 3 active orders";
}

/* Never reads its argument: bad pointers can be passed through a real call. */
API int tool_tag(const char *s) {
    return (int)((uintptr_t)s & 0xff);
}

API int tool_open(const char *path) {
    return open(path, O_RDONLY);
}

API long tool_mixed(int a, double b, long c, double d, int e, float f, int g, double h, long i,
                    short j, unsigned char k, bool l) {
    return a + (long)b + c + (long)d + e + (long)f + g + (long)h + i + j + k + l;
}

API double tool_div(double a, double b) {
    return a / b;
}

API float tool_scale(float x) {
    return x * 2.0f;
}

API bool tool_is_even(int x) {
    return x % 2 == 0;
}

static int log_count;
API void tool_log(const char *msg) {
    log_count += msg != NULL;
}

API void *tool_ptr(void) {
    return &log_count;
}

API int8_t tool_i8(int8_t x) {
    return (int8_t)(x - 1);
}

API uint16_t tool_u16(uint16_t x) {
    return (uint16_t)(x + 1);
}

API uint64_t tool_u64(uint64_t x) {
    return x * 2;
}

API ssize_t tool_ssize(ssize_t x) {
    return -x;
}

API unsigned int tool_uint(unsigned int x) {
    return x;
}

enum color { RED, GREEN, BLUE };
API enum color tool_color(enum color c) {
    return (enum color)((c + 1) % 3);
}

API char *tool_upper(const char *s, char *out) {
    size_t i = 0;
    for (; s[i]; i++)
        out[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
    out[i] = '\0';
    return out;
}

API int tool_secret(const char *password) {
    return (int)strlen(password);
}

API int tool_unnamed(int a, int b) {
    return a - b;
}

API size_t tool_len(const char *s) {
    return strlen(s);
}

API long tool_untyped_neg(void) {
    return -5000000000L;
}

API int tool_untyped_int(void) {
    return -1;
}
