/* example_tools.c - libexample_tools.so: the tools of the demo agent (a calculator, a
 * weather service, a database), standing in for the real services an agent would call.
 * The weather and database tools sleep a little, as a network or disk round trip would,
 * so the demo's report has times worth reading. */
#include <string.h>
#include <time.h>

#define TOOL __attribute__((visibility("default"), noinline))

static void wait_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

TOOL int calculator_multiply(int a, int b) {
    return a * b;
}

TOOL int calculator_add(int a, int b) {
    return a + b;
}

/* A forecast for a known place, or NULL. */
TOOL const char *weather_lookup(const char *location) {
    wait_ms(12);
    if (location && strcmp(location, "San Francisco") == 0)
        return "Temperature: 18\xc2\xb0"
               "C, Conditions: Sunny";
    if (location && strcmp(location, "Oslo") == 0)
        return "Temperature: -3\xc2\xb0"
               "C, Conditions: Snow";
    return NULL;
}

/* Number of rows of table matching user_id, or -1 for an unknown table. */
TOOL int database_search(const char *table, int user_id) {
    wait_ms(4);
    if (!table || strcmp(table, "user_orders") != 0)
        return -1;
    return user_id == 123 ? 3 : 0;
}
