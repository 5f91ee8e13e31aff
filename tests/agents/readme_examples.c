/* readme_examples.c - the three examples of the track_action reference page
 * (calculator_multiply, weather_lookup, database_search) written with the C API, with
 * exactly the field values of the page. Prints each result dictionary as JSON. */
#include <stdio.h>

#include "agentsight.h"

static void show(int rc, const agentsight_result *r) {
    printf("{\"rc\":%d,\"status\":\"%s\",\"conversation_id\":\"%s\",\"timestamp\":\"%s\","
           "\"action_name\":\"%s\",\"message\":\"%s\"}\n",
           rc, r->status, r->conversation_id, r->timestamp, r->action_name, r->message);
}

int main(void) {
    agentsight_result r;
    int failed = 0;

    /* Track a calculation used in answer generation */
    agentsight_action calc = {
        .action_name = "calculator_multiply",
        .started_at = "2024-01-15T10:30:00Z",
        .ended_at = "2024-01-15T10:30:00.050Z",
        .duration_ms = 50,
        .tools_used = "{\"function\": \"multiply\", \"parameters\": {\"a\": 12, \"b\": 5}}",
        .response = "60",
        .conversation_id = "math_help_123",
    };
    int rc = agentsight_track_action(&calc, &r);
    show(rc, &r);
    failed |= rc;

    /* Track weather lookup function used in response */
    agentsight_action weather = {
        .action_name = "weather_lookup",
        .duration_ms = 800,
        .tools_used = "{\"api\": \"OpenWeatherMap\", \"location\": \"San Francisco, CA\", "
                      "\"parameters\": {\"units\": \"metric\"}}",
        .response = "Temperature: 18\xc2\xb0"
                    "C, Conditions: Sunny",
        .metadata = "{\"location_query\": \"San Francisco\", \"units\": \"celsius\"}",
    };
    rc = agentsight_track_action(&weather, &r);
    show(rc, &r);
    failed |= rc;

    /* Track database search used to generate answer */
    agentsight_action db = {
        .action_name = "database_search",
        .started_at = "2024-01-15T10:30:00Z",
        .ended_at = "2024-01-15T10:30:00.200Z",
        .duration_ms = 200,
        .tools_used = "{\"database\": \"user_orders\", \"query_type\": \"SELECT\", "
                      "\"filters\": {\"user_id\": \"123\", \"status\": \"active\"}}",
        .response = "Found 3 active orders",
        .conversation_id = "order_inquiry_456",
    };
    rc = agentsight_track_action(&db, &r);
    show(rc, &r);
    failed |= rc;
    return failed ? 1 : 0;
}
