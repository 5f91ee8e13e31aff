/* example_agent.c - the demo "agent": answers a few questions by calling the tools of
 * libexample_tools.so and prints its answers. Built without any knowledge of agentsight. */
#include <stdio.h>

int calculator_multiply(int a, int b);
int calculator_add(int a, int b);
const char *weather_lookup(const char *location);
int database_search(const char *table, int user_id);

int main(void) {
    printf("Q: What is 12 times 5?\n");
    printf("A: %d\n\n", calculator_multiply(12, 5));

    printf("Q: What is 12 times 5, plus 7?\n");
    printf("A: %d\n\n", calculator_add(calculator_multiply(12, 5), 7));

    const char *places[] = {"San Francisco", "Oslo", "Atlantis"};
    for (int i = 0; i < 3; i++) {
        const char *w = weather_lookup(places[i]);
        printf("Q: What is the weather in %s?\n", places[i]);
        printf("A: %s\n\n", w ? w : "I could not find that place.");
    }

    printf("Q: How many active orders does user 123 have?\n");
    printf("A: %d\n\n", database_search("user_orders", 123));

    printf("Q: And in the archive?\n");
    int n = database_search("archive", 123);
    printf("A: %s\n", n < 0 ? "That table does not exist." : "Found some.");
    return 0;
}
