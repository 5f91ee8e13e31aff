/* api_validate.c - a test program that sends every validation case and every defaults
 * case through the public API and prints one JSON line per case:
 * {"case":..., "rc":..., "status":..., "message":..., "action_name":..., "conversation_id":...}
 * Valid cases use the case name as action_name, so the JSONL can be matched to them. */
#include <stdio.h>
#include <string.h>

#include "agentsight.h"

static void put_json_str(const char *s) {
    putchar('"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c >= 0x80)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void report(const char *name, int rc, const agentsight_result *r) {
    printf("{\"case\":\"%s\",\"rc\":%d,\"status\":", name, rc);
    put_json_str(r->status);
    printf(",\"message\":");
    put_json_str(r->message);
    printf(",\"action_name\":");
    put_json_str(r->action_name);
    printf(",\"conversation_id\":");
    put_json_str(r->conversation_id);
    printf(",\"timestamp\":");
    put_json_str(r->timestamp);
    printf("}\n");
}

static void run(const char *name, const agentsight_action *a) {
    agentsight_result r;
    memset(&r, 0x55, sizeof(r)); /* garbage: every member must be written */
    int rc = agentsight_track_action(a, &r);
    report(name, rc, &r);
}

int main(void) {
    static char long_name[300], long_conv[300];
    memset(long_name, 'n', 257);
    memset(long_conv, 'c', 257);

    agentsight_options bad = {.output = "ftp://nowhere"};
    printf("{\"case\":\"init_bad_output\",\"rc\":%d}\n", agentsight_init(&bad));
    printf("{\"case\":\"init\",\"rc\":%d}\n", agentsight_init(NULL));
    printf("{\"case\":\"init_again\",\"rc\":%d}\n", agentsight_init(NULL));

    run("null_action", NULL);
    run("name_missing", &(agentsight_action){.response = "x"});
    run("name_empty", &(agentsight_action){.action_name = ""});
    run("name_too_long", &(agentsight_action){.action_name = long_name});
    run("name_bad_utf8", &(agentsight_action){.action_name = "bad\xff"});
    run("started_bad", &(agentsight_action){.action_name = "v", .started_at = "yesterday"});
    run("ended_bad", &(agentsight_action){.action_name = "v", .ended_at = "2024-13-01T00:00:00Z"});
    run("duration_negative", &(agentsight_action){.action_name = "v", .duration_ms = -1});
    run("duration_disagrees", &(agentsight_action){.action_name = "v",
                                                   .started_at = "2024-01-15T10:30:00Z",
                                                   .ended_at = "2024-01-15T10:30:00.050Z",
                                                   .duration_ms = 70});
    run("ended_before_started", &(agentsight_action){.action_name = "v",
                                                     .started_at = "2024-01-15T10:30:01Z",
                                                     .ended_at = "2024-01-15T10:30:00Z"});
    run("tools_not_object", &(agentsight_action){.action_name = "v", .tools_used = "[1,2]"});
    run("tools_bad_json", &(agentsight_action){.action_name = "v", .tools_used = "{bad"});
    run("metadata_not_object", &(agentsight_action){.action_name = "v", .metadata = "42"});
    run("response_bad_utf8", &(agentsight_action){.action_name = "v", .response = "\xc3("});
    run("error_bad_utf8", &(agentsight_action){.action_name = "v", .error_msg = "\xe2\x82"});
    run("conversation_too_long",
        &(agentsight_action){.action_name = "v", .conversation_id = long_conv});

    run("only_name", &(agentsight_action){.action_name = "only_name"});
    run("start_and_duration", &(agentsight_action){.action_name = "start_and_duration",
                                                   .started_at = "2024-01-15T10:30:00Z",
                                                   .duration_ms = 250});
    run("end_and_duration", &(agentsight_action){.action_name = "end_and_duration",
                                                 .ended_at = "2024-01-15T11:30:00+01:00",
                                                 .duration_ms = 1500});
    run("start_and_end", &(agentsight_action){.action_name = "start_and_end",
                                              .started_at = "2024-01-15T10:30:00.100Z",
                                              .ended_at = "2024-01-15T10:30:02.600Z"});
    run("duration_only", &(agentsight_action){.action_name = "duration_only", .duration_ms = 42});
    run("with_error", &(agentsight_action){.action_name = "with_error",
                                           .error_msg = "connection refused",
                                           .conversation_id = "conv_given"});
    return 0;
}
