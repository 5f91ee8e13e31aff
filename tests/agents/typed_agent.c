/* typed_agent.c - calls every tool of libtyped_tools.so once or twice with known
 * arguments and prints each result, so a test can compare its output bare and under the
 * interposer and check the typed payloads (tests/integration/test_typed.py). Exits 7. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

int multiply(int a, int b);
const char *weather_lookup(const char *location, const char *units);
const char *database_search(const char *user_id, const char *status);
int tool_tag(const char *s);
int tool_open(const char *path);
long tool_mixed(int a, double b, long c, double d, int e, float f, int g, double h, long i, short j,
                unsigned char k, bool l);
double tool_div(double a, double b);
float tool_scale(float x);
bool tool_is_even(int x);
void tool_log(const char *msg);
void *tool_ptr(void);
int8_t tool_i8(int8_t x);
uint16_t tool_u16(uint16_t x);
uint64_t tool_u64(uint64_t x);
ssize_t tool_ssize(ssize_t x);
unsigned int tool_uint(unsigned int x);
enum color { RED, GREEN, BLUE };
enum color tool_color(enum color c);
char *tool_upper(const char *s, char *out);
int tool_secret(const char *password);
int tool_unnamed(int a, int b);
size_t tool_len(const char *s);
long tool_untyped_neg(void);
int tool_untyped_int(void);

int main(void) {
    printf("multiply %d\n", multiply(12, 5));
    printf("weather %s\n", weather_lookup("San Francisco, CA", "metric"));
    printf("database %s\n", database_search("123", "active"));
    printf("weather_null %p\n", (void *)weather_lookup(NULL, "metric"));

    long pg = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return 1;
    munmap(m, (size_t)pg);
    printf("tag %d %d\n", tool_tag((const char *)0x10), tool_tag(m + 0x20));
    fprintf(stderr, "unmapped %p\n", (void *)(m + 0x20)); /* differs per run */

    errno = 0;
    int fd = tool_open("/nonexistent/agentsight-typed");
    printf("open %d %s\n", fd, strerror(errno));

    printf("mixed %ld\n",
           tool_mixed(-7, 2.5, 1L << 40, -0.125, 5, 1.5f, 6, 1024.5, -9, -300, 200, true));
    printf("div %g\n", tool_div(5.0, 2.0));
    printf("scale %g\n", (double)tool_scale(0.75f));
    printf("even %d %d\n", tool_is_even(4), tool_is_even(5));
    tool_log("logged");
    printf("ptr %d\n", tool_ptr() != NULL);
    printf("i8 %d\n", tool_i8(-128));
    printf("u16 %u\n", tool_u16(65535));
    printf("u64 %llu\n", (unsigned long long)tool_u64(UINT64_C(9000000000000000000)));
    printf("ssize %zd\n", tool_ssize(42));
    printf("uint %u\n", tool_uint(4294967295u));
    printf("color %d\n", (int)tool_color(BLUE));
    char out[64] = "";
    printf("upper %s\n", tool_upper("shout", out));
    printf("secret %d\n", tool_secret("hunter2"));
    printf("unnamed %d\n", tool_unnamed(9, 4));
    printf("len %zu\n", tool_len("abcdefghijklmnopqrstuvwxyz"));
    printf("bad_utf8 %zu\n", tool_len("ok\xff\xfe end"));
    printf("untyped %ld %d\n", tool_untyped_neg(), tool_untyped_int());
    return 7;
}
