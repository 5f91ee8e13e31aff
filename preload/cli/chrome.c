/* chrome.c - JSONL actions to Chrome trace event JSON, so a run can be looked at as a
 * timeline in Perfetto or chrome://tracing (`agentsight report --format chrome`). */
#include "cli/chrome.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agentsight.h"
#include "cli/report.h"

#define MAX_LINE (64u << 20) /* longer lines are skipped as bad, like report's table */
#define MAX_DUR_US 1e18      /* a bigger duration is not a real one */

/* One lane: a pid (tid < 0 for the process itself) or a (pid, tid) pair. */
typedef struct lane {
    double pid, tid;
} lane;

struct as_chrome {
    FILE *out;
    uint64_t events;  /* action events */
    uint64_t written; /* every event, metadata included */
    lane *lanes;      /* open addressing, cap a power of two; used slots have used[i] = 1 */
    unsigned char *used;
    size_t nlanes, cap;
    as_bad_lines bad;
};

as_chrome *as_chrome_new(FILE *out) {
    as_chrome *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->out = out;
    if (fputs("{\"traceEvents\":[", out) < 0) {
        free(c);
        return NULL;
    }
    return c;
}

void as_chrome_free(as_chrome *c) {
    if (!c)
        return;
    free(c->lanes);
    free(c->used);
    as_bad_lines_free(&c->bad);
    free(c);
}

uint64_t as_chrome_events(const as_chrome *c) {
    return c->events;
}

uint64_t as_chrome_bad_lines(const as_chrome *c) {
    return c->bad.n;
}

/* ---- lanes -------------------------------------------------------------------------- */

static size_t lane_hash(lane l, size_t cap) {
    uint64_t h = (uint64_t)(int64_t)l.pid * 0x9E3779B97F4A7C15ull ^ (uint64_t)(int64_t)l.tid;
    h ^= h >> 29;
    return (size_t)(h * 0xBF58476D1CE4E5B9ull >> 7) & (cap - 1);
}

/* Adds l to the set when new. Returns 0, or -1 when out of memory (the set unchanged). */
static int lane_add(as_chrome *c, lane l) {
    if ((c->nlanes + 1) * 2 > c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        lane *nl = calloc(ncap, sizeof(*nl));
        unsigned char *nu = calloc(ncap, 1);
        if (!nl || !nu) {
            free(nl);
            free(nu);
            return -1;
        }
        for (size_t i = 0; i < c->cap; i++) {
            if (!c->used[i])
                continue;
            size_t s = lane_hash(c->lanes[i], ncap);
            while (nu[s])
                s = (s + 1) & (ncap - 1);
            nl[s] = c->lanes[i];
            nu[s] = 1;
        }
        free(c->lanes);
        free(c->used);
        c->lanes = nl;
        c->used = nu;
        c->cap = ncap;
    }
    size_t s = lane_hash(l, c->cap);
    while (c->used[s]) {
        if (c->lanes[s].pid == l.pid && c->lanes[s].tid == l.tid)
            return 0;
        s = (s + 1) & (c->cap - 1);
    }
    c->lanes[s] = l;
    c->used[s] = 1;
    c->nlanes++;
    return 0;
}

/* ---- times -------------------------------------------------------------------------- */

int as_chrome_parse_iso(const char *s, double *us) {
    int y, mo, d, h, mi, sec, n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
        n != 19)
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
        return -1;
    double frac = 0, scale = 0.1;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
            frac += (*p - '0') * scale;
    }
    if (strcmp(p, "Z") != 0)
        return -1;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    /* whole microseconds, so a value printed back carries no float noise */
    *us = (double)t * 1e6 + round(frac * 1e6);
    return 0;
}

/* A whole number that fits a pid/tid lane, else -1. */
static double lane_id(const cJSON *item) {
    if (!cJSON_IsNumber(item))
        return -1;
    double v = item->valuedouble;
    return v >= 0 && v <= 2147483647.0 && v == floor(v) ? v : -1;
}

/* ---- events ------------------------------------------------------------------------- */

static const cJSON *member(const cJSON *o, const char *key) {
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

/* Adds a copy of v to o under key. Returns 0, or -1 when out of memory. */
static int add_copy(cJSON *o, const char *key, const cJSON *v) {
    cJSON *d = cJSON_Duplicate(v, 1);
    if (!d)
        return -1;
    if (!cJSON_AddItemToObject(o, key, d)) {
        cJSON_Delete(d);
        return -1;
    }
    return 0;
}

/* Writes one event object, preceded by a comma unless it is the first. Returns 0, or -1
 * when out of memory (*why set) or on a write error. */
static int put_event(as_chrome *c, const cJSON *ev, const char **why) {
    char *text = cJSON_PrintUnformatted(ev);
    if (!text) {
        *why = "out of memory";
        return -1;
    }
    int rc = fputs(c->written ? ",\n" : "\n", c->out) < 0 || fputs(text, c->out) < 0 ? -1 : 0;
    cJSON_free(text);
    if (rc < 0) {
        *why = "write error";
        return -1;
    }
    c->written++;
    return 0;
}

/* Builds the event of one parsed action. Returns 0 (written), -1 (bad: *why set). */
static int action_event(as_chrome *c, const cJSON *root, const char **why) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "action_name");
    if (!cJSON_IsString(name) || !name->valuestring[0]) {
        *why = "no action_name";
        return -1;
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools_used");
    double start = 0, end = 0, dur = 0;
    int has_start =
        as_chrome_parse_iso(cJSON_GetStringValue(member(root, "started_at")), &start) == 0;
    int has_end = as_chrome_parse_iso(cJSON_GetStringValue(member(root, "ended_at")), &end) == 0;
    int got = as_jsonl_duration(member(meta, "duration_ns"), 1e-3, MAX_DUR_US, &dur);
    if (got == 0)
        got = as_jsonl_duration(member(root, "duration_ms"), 1e3, MAX_DUR_US, &dur);
    if (got < 0) {
        *why = "bad duration";
        return -1;
    }
    if (got == 0 && has_start && has_end)
        dur = end > start ? end - start : 0, got = 1;
    if (!has_start && has_end)
        start = end - dur, has_start = 1;
    if (!has_start) {
        *why = "no time";
        return -1;
    }
    double pid = lane_id(member(meta, "pid")), tid = lane_id(member(meta, "tid"));
    if (pid < 0)
        pid = 0;
    if (tid < 0)
        tid = pid;

    /* a model call made by the TLS hooks gets a category of its own, so a viewer can
     * select or colour the model calls apart from the tool calls */
    const char *src = cJSON_GetStringValue(member(meta, "source"));
    const char *cat = src && strcmp(src, "llm") == 0 ? "llm" : "action";

    int rc = -1;
    *why = "out of memory";
    cJSON *ev = cJSON_CreateObject();
    cJSON *args = cJSON_CreateObject();
    if (!ev || !args)
        goto done;
    if (!cJSON_AddStringToObject(ev, "name", name->valuestring) ||
        !cJSON_AddStringToObject(ev, "cat", cat) || !cJSON_AddStringToObject(ev, "ph", "X") ||
        !cJSON_AddNumberToObject(ev, "ts", start) ||
        !cJSON_AddNumberToObject(ev, "dur", round(dur * 1e3) / 1e3) ||
        !cJSON_AddNumberToObject(ev, "pid", pid) || !cJSON_AddNumberToObject(ev, "tid", tid))
        goto done;
    static const struct {
        const char *from, *to;
        int in_tools;
    } copies[] = {{"function", "function", 1},    {"library", "library", 1},
                  {"parameters", "arguments", 1}, {"response", "response", 0},
                  {"error_msg", "error", 0},      {"conversation_id", "conversation_id", 0}};
    for (size_t i = 0; i < sizeof(copies) / sizeof(copies[0]); i++) {
        const cJSON *v =
            copies[i].in_tools ? member(tools, copies[i].from) : member(root, copies[i].from);
        if (v && !cJSON_IsNull(v) && add_copy(args, copies[i].to, v) < 0)
            goto done;
    }
    /* tools_used of a hand-tracked action has no "parameters": keep it whole */
    if (cJSON_IsObject(tools) && !member(tools, "parameters") && !member(tools, "function") &&
        add_copy(args, "tools_used", tools) < 0)
        goto done;
    cJSON_AddItemToObject(ev, "args", args);
    args = NULL;
    if (lane_add(c, (lane){pid, -1}) < 0 || lane_add(c, (lane){pid, tid}) < 0)
        goto done;
    if (put_event(c, ev, why) < 0)
        goto done;
    c->events++;
    rc = 0;
done:
    cJSON_Delete(args);
    cJSON_Delete(ev);
    return rc;
}

int as_chrome_line(as_chrome *c, const char *line, size_t len, const char **why) {
    cJSON *root = NULL;
    int got = as_jsonl_read_line(line, len, why, &root);
    if (got != 0)
        return got;
    const char *dummy;
    if (!why)
        why = &dummy;
    int rc = -1;
    if (!cJSON_IsObject(root))
        *why = "not an object";
    else
        rc = action_event(c, root, why);
    cJSON_Delete(root);
    return rc;
}

int as_chrome_stream(as_chrome *c, FILE *f, const char *label) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        const char *why = NULL;
        if ((size_t)n > MAX_LINE)
            as_bad_lines_note(&c->bad, lineno, "line too long", label);
        else if (as_chrome_line(c, line, (size_t)n, &why) < 0)
            as_bad_lines_note(&c->bad, lineno, why, label);
    }
    int err = ferror(f);
    free(line);
    return err ? -1 : 0;
}

void as_chrome_print_bad(const as_chrome *c, FILE *f, int several_files) {
    as_bad_lines_print(&c->bad, f, several_files);
}

/* Writes one metadata event naming a process (tid < 0) or a thread. Returns 0 or -1. */
static int put_name(as_chrome *c, lane l) {
    char label[64];
    const char *why;
    if (l.tid < 0)
        snprintf(label, sizeof(label), l.pid > 0 ? "pid %.0f" : "no pid", l.pid);
    else if (l.tid == l.pid)
        snprintf(label, sizeof(label), l.pid > 0 ? "main %.0f" : "no tid", l.tid);
    else
        snprintf(label, sizeof(label), "thread %.0f", l.tid);
    cJSON *ev = cJSON_CreateObject();
    cJSON *args = cJSON_CreateObject();
    int rc = -1;
    if (!ev || !args || !cJSON_AddStringToObject(args, "name", label) ||
        !cJSON_AddStringToObject(ev, "name", l.tid < 0 ? "process_name" : "thread_name") ||
        !cJSON_AddStringToObject(ev, "ph", "M") || !cJSON_AddNumberToObject(ev, "pid", l.pid) ||
        !cJSON_AddNumberToObject(ev, "tid", l.tid < 0 ? l.pid : l.tid))
        goto done;
    cJSON_AddItemToObject(ev, "args", args);
    args = NULL;
    rc = put_event(c, ev, &why);
done:
    cJSON_Delete(args);
    cJSON_Delete(ev);
    return rc;
}

int as_chrome_finish(as_chrome *c) {
    for (size_t i = 0; i < c->cap; i++)
        if (c->used[i] && put_name(c, c->lanes[i]) < 0)
            return -1;
    if (fprintf(c->out,
                "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"generator\":\"agentsight "
                "%s\",\"events\":%llu}}\n",
                AGENTSIGHT_VERSION, (unsigned long long)c->events) < 0)
        return -1;
    return fflush(c->out) == 0 && !ferror(c->out) ? 0 : -1;
}
