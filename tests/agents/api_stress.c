/* api_stress.c - a test program that drives the public API hard: many threads, fork,
 * exit() from a worker thread, a full queue. Each action's metadata carries pid, thread
 * and sequence so a test can check the JSONL for losses and duplicates.
 *
 * usage: api_stress threads T N    T threads x N actions, return from main (no flush)
 *        api_stress exit-thread T N  T threads track up to N actions each while another
 *                                  thread tracks N actions and calls exit(3)
 *        api_stress fork N         N actions, fork; child N actions; parent N more
 *        api_stress queue N        N actions as fast as possible; prints
 *                                  "refused R dropped D" on stdout */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agentsight.h"

static int track(const char *who, int thread, int seq) {
    char meta[160];
    snprintf(meta, sizeof(meta), "{\"pid\":%d,\"who\":\"%s\",\"t\":%d,\"s\":%d}", (int)getpid(),
             who, thread, seq);
    agentsight_action a = {.action_name = "stress_step",
                           .duration_ms = 1,
                           .tools_used = "{\"function\":\"step\"}",
                           .response = "ok",
                           .metadata = meta};
    return agentsight_track_action(&a, NULL);
}

typedef struct job {
    int thread, count, refused;
} job;

static void *worker(void *arg) {
    job *j = arg;
    for (int i = 0; i < j->count; i++)
        j->refused += track("worker", j->thread, i) != 0;
    return NULL;
}

static void *exiter(void *arg) {
    job *j = arg;
    for (int i = 0; i < j->count; i++)
        track("exiter", j->thread, i);
    exit(3);
}

static int run_threads(int t, int n, int with_exit) {
    pthread_t th[65];
    job jobs[65];
    if (t < 1 || t > 64)
        return 2;
    for (int i = 0; i < t; i++) {
        jobs[i] = (job){.thread = i, .count = n};
        if (pthread_create(&th[i], NULL, worker, &jobs[i]) != 0)
            return 2;
    }
    if (with_exit) {
        jobs[t] = (job){.thread = t, .count = n};
        pthread_t ex;
        if (pthread_create(&ex, NULL, exiter, &jobs[t]) != 0)
            return 2;
    }
    int refused = 0;
    for (int i = 0; i < t; i++) {
        pthread_join(th[i], NULL);
        refused += jobs[i].refused;
    }
    if (with_exit) /* the exiter ends the process; never return first */
        for (;;)
            pause();
    printf("refused %d\n", refused);
    return 0;
}

static int run_fork(int n) {
    for (int i = 0; i < n; i++)
        track("parent", 0, i);
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        for (int i = 0; i < n; i++)
            track("child", 0, i);
        exit(0);
    }
    for (int i = n; i < 2 * n; i++)
        track("parent", 0, i);
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 4;
    printf("child %d\n", (int)pid);
    return 0;
}

static int run_queue(int n) {
    int refused = 0;
    for (int i = 0; i < n; i++)
        refused += track("queue", 0, i) != 0;
    printf("refused %d dropped %llu\n", refused, (unsigned long long)agentsight_dropped());
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(argv[1], "threads") && argc == 4)
        return run_threads(atoi(argv[2]), atoi(argv[3]), 0);
    if (!strcmp(argv[1], "exit-thread") && argc == 4)
        return run_threads(atoi(argv[2]), atoi(argv[3]), 1);
    if (!strcmp(argv[1], "fork"))
        return run_fork(atoi(argv[2]));
    if (!strcmp(argv[1], "queue"))
        return run_queue(atoi(argv[2]));
    return 2;
}
