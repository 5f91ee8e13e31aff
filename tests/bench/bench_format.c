/* bench_format.c - measures how many ~350-byte action lines per second one core formats
 * with the exporter's writer (as_action_to_jsonl) and, for comparison, by building and
 * printing the same object with cJSON. Each measurement runs for about one second. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/action.h"
#include "core/clock.h"
#include "core/jsonw.h"

#define RUN_NS 1000000000LL
#define CHUNK 5000

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static const as_action sample = {
    .action_name = "weather_lookup",
    .started_ns = 1705314600LL * 1000000000LL,
    .ended_ns = 1705314600LL * 1000000000LL + 800000000LL,
    .duration_ms = 800,
    .tools_used = "{\"api\":\"OpenWeatherMap\",\"parameters\":{\"units\":\"metric\"}}",
    .response = "18\xc2\xb0"
                "C, Sunny",
    .error_msg = NULL,
    .conversation_id = "conv_5f2a9c1d7e3b",
    .metadata = "{\"q\":\"San Francisco\"}",
    .timestamp_ns = 1705314600LL * 1000000000LL + 801000000LL,
};

/* The same line built as a cJSON tree and printed. Returns its length (0 on OOM). */
static size_t format_cjson(const as_action *a) {
    char iso[AS_ISO_LEN];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "action_name", a->action_name);
    as_iso_format(a->started_ns, iso);
    cJSON_AddStringToObject(o, "started_at", iso);
    as_iso_format(a->ended_ns, iso);
    cJSON_AddStringToObject(o, "ended_at", iso);
    cJSON_AddNumberToObject(o, "duration_ms", (double)a->duration_ms);
    cJSON_AddRawToObject(o, "tools_used", a->tools_used);
    cJSON_AddStringToObject(o, "response", a->response);
    cJSON_AddNullToObject(o, "error_msg");
    cJSON_AddStringToObject(o, "conversation_id", a->conversation_id);
    cJSON_AddRawToObject(o, "metadata", a->metadata);
    as_iso_format(a->timestamp_ns, iso);
    cJSON_AddStringToObject(o, "timestamp", iso);
    char *s = cJSON_PrintUnformatted(o);
    size_t n = s ? strlen(s) + 1 : 0;
    cJSON_free(s);
    cJSON_Delete(o);
    return n;
}

int main(void) {
    as_buf b;
    as_buf_init(&b);
    as_action_to_jsonl(&sample, &b);
    size_t line_len = b.len;
    size_t sink = 0;

    int64_t t0 = now_ns(), t = t0;
    long long lines = 0;
    while (t - t0 < RUN_NS) {
        for (int i = 0; i < CHUNK; i++) {
            as_buf_reset(&b);
            as_action_to_jsonl(&sample, &b);
            sink += b.len;
        }
        lines += CHUNK;
        t = now_ns();
    }
    double jsonw_rate = (double)lines * 1e9 / (double)(t - t0);

    t0 = now_ns(), t = t0;
    lines = 0;
    while (t - t0 < RUN_NS) {
        for (int i = 0; i < CHUNK / 10; i++)
            sink += format_cjson(&sample);
        lines += CHUNK / 10;
        t = now_ns();
    }
    double cjson_rate = (double)lines * 1e9 / (double)(t - t0);

    fprintf(stderr, "line: %zu bytes (checksum %zu)\n", line_len, sink);
    printf("BENCH format_jsonw %.0f lines/s\n", jsonw_rate);
    printf("BENCH format_cjson %.0f lines/s\n", cjson_rate);
    as_buf_free(&b);
    return 0;
}
