/* api_disable.c - tracks one action and prints the result dictionary as
 * "status|conversation_id|message", then the drop counter and the flush result: the
 * program the kill-switch test (AGENTSIGHT_DISABLE=1) runs. */
#include <stdio.h>

#include "agentsight.h"

int main(void) {
    agentsight_action a = {.action_name = "weather_lookup",
                           .response = "Sunny",
                           .conversation_id = "conv_kill_switch"};
    agentsight_result r;
    int rc = agentsight_track_action(&a, &r);
    printf("%d|%s|%s|%s|%s\n", rc, r.status, r.conversation_id, r.action_name, r.message);
    printf("flush %d dropped %llu\n", agentsight_flush(1000),
           (unsigned long long)agentsight_dropped());
    return 0;
}
