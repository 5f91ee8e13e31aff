/* example_tools.c - libexample_tools.so: the tools of the demo agent (a calculator, a
 * weather service, a database), standing in for the real services an agent would call. */
#include <string.h>

#define TOOL __attribute__((visibility("default"), noinline))

TOOL int calculator_multiply(int a, int b) {
    return a * b;
}

TOOL int calculator_add(int a, int b) {
    return a + b;
}

TOOL const char *weather_lookup(const char *location) {
    if (location && strcmp(location, "San Francisco") == 0)
        return "Temperature: 18C, Conditions: Sunny";
    if (location && strcmp(location, "Oslo") == 0)
        return "Temperature: -3C, Conditions: Snow";
    return NULL;
}

/* Number of rows of table matching user_id, or -1 for an unknown table. */
TOOL int database_search(const char *table, int user_id) {
    if (!table || strcmp(table, "user_orders") != 0)
        return -1;
    return user_id == 123 ? 3 : 0;
}
