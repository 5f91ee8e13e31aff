/* core_fixes.c - a program of the public API that reproduces the core review's findings
 * (tests/integration/test_core_fixes.py runs it): restart while an exporter is stuck,
 * calls from a signal handler, an action larger than the queue, exit while another
 * thread tracks, a start that keeps failing, restarts under concurrent tracking, ring
 * files of live threads across a restart, dropped counts per shutdown.
 *
 * Usage: core_fixes MODE [N]; prints counts on stdout as "key=value" lines. */
#include <agentsight.h>

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic long handler_ok, handler_err;
static _Atomic int stop_threads;

static void track_simple(const char *name, const char *tools) {
    agentsight_action a = {.action_name = name, .tools_used = tools};
    agentsight_track_action(&a, NULL);
}

/* Rounds of N actions, each ended by a shutdown (the exporter may be stuck on stderr). */
static int mode_rounds(int n) {
    char tools[64];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < n; i++) {
            snprintf(tools, sizeof tools, "{\"r\":%d,\"i\":%d}", round, i);
            track_simple("x", tools);
        }
        agentsight_shutdown();
        printf("round=%d\n", round);
        fflush(stdout);
    }
    return 0;
}

static void on_alarm(int sig) {
    (void)sig;
    agentsight_action a = {.action_name = "from_handler", .tools_used = "{\"h\":1}"};
    if (agentsight_track_action(&a, NULL) == 0)
        atomic_fetch_add(&handler_ok, 1);
    else
        atomic_fetch_add(&handler_err, 1);
}

/* N actions from main while a 50 us timer tracks from its signal handler. */
static int mode_signal(int n) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 50}, {0, 50}};
    setitimer(ITIMER_REAL, &it, NULL);
    long ok = 0;
    char tools[64];
    for (int i = 0; i < n; i++) {
        snprintf(tools, sizeof tools, "{\"i\":%d}", i);
        agentsight_action a = {.action_name = "main", .tools_used = tools};
        if (agentsight_track_action(&a, NULL) == 0)
            ok++;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    int frc = agentsight_flush(10000);
    printf("main_ok=%ld\nhandler_ok=%ld\nhandler_err=%ld\ndropped=%llu\nflush=%d\n", ok,
           atomic_load(&handler_ok), atomic_load(&handler_err),
           (unsigned long long)agentsight_dropped(), frc);
    return 0;
}

/* One action with a tools_used of n bytes. */
static int mode_big(int n) {
    char *tools = malloc((size_t)n + 16);
    if (!tools)
        return 2;
    memcpy(tools, "{\"p\":\"", 6);
    memset(tools + 6, 'a', (size_t)n);
    memcpy(tools + 6 + n, "\"}", 3);
    agentsight_action a = {.action_name = "big", .tools_used = tools};
    agentsight_result r;
    int rc = agentsight_track_action(&a, &r);
    track_simple("small", NULL);
    int frc = agentsight_flush(5000);
    printf("rc=%d\nmessage=%s\ndropped=%llu\nflush=%d\n", rc, r.message,
           (unsigned long long)agentsight_dropped(), frc);
    free(tools);
    return 0;
}

static char big_tools[8192];

/* Tracks actions that take the exporter longer to write than to queue. */
static void *tracker_heavy(void *arg) {
    (void)arg;
    for (long i = 0; i < 100000000 && !atomic_load(&stop_threads); i++)
        track_simple("busy", big_tools);
    return NULL;
}

/* Returns from main (exit) while two threads track without pause. */
static int mode_exitbusy(void) {
    memcpy(big_tools, "{\"p\":\"", 6);
    for (size_t i = 6; i < sizeof big_tools - 3; i++)
        big_tools[i] = (char)('a' + i % 26);
    memcpy(big_tools + sizeof big_tools - 3, "\"}", 3);
    track_simple("first", NULL);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, tracker_heavy, NULL) != 0)
            return 2;
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
    printf("exiting\n");
    fflush(stdout);
    return 0;
}

/* N calls while no sink can open: each is refused. */
static int mode_failstart(int n) {
    long err = 0;
    for (int i = 0; i < n; i++) {
        agentsight_action a = {.action_name = "x"};
        if (agentsight_track_action(&a, NULL) != 0)
            err++;
    }
    printf("refused=%ld\n", err);
    return 0;
}

static void *tracker_bounded(void *arg) {
    (void)arg;
    for (long i = 0; i < 20000 && !atomic_load(&stop_threads); i++)
        track_simple("busy", NULL);
    return NULL;
}

/* Threads track while main shuts the library down N times (each next call restarts). */
static int mode_restart(int n) {
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        if (pthread_create(&t[i], NULL, tracker_bounded, NULL) != 0)
            return 2;
    for (int i = 0; i < n; i++) {
        agentsight_shutdown();
        track_simple("main", NULL);
    }
    atomic_store(&stop_threads, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    agentsight_shutdown();
    printf("done=1\n");
    return 0;
}

static int count_rings(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".ring") == 0)
            n++;
    }
    closedir(d);
    return n;
}

static pthread_mutex_t lf_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lf_cond = PTHREAD_COND_INITIALIZER;
static int lf_step;

static void *live_thread(void *arg) {
    (void)arg;
    track_simple("worker_before", NULL);
    pthread_mutex_lock(&lf_lock);
    lf_step = 1;
    pthread_cond_broadcast(&lf_cond);
    while (lf_step < 2)
        pthread_cond_wait(&lf_cond, &lf_lock);
    pthread_mutex_unlock(&lf_lock);
    track_simple("worker_after", NULL);
    return NULL;
}

/* A worker tracks, main shuts down and restarts: the ring files of both live threads
 * must still exist (they go on writing into them). argv dir: the rings directory. */
static int mode_livefile(const char *rings) {
    track_simple("main_before", NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, live_thread, NULL) != 0)
        return 2;
    pthread_mutex_lock(&lf_lock);
    while (lf_step < 1)
        pthread_cond_wait(&lf_cond, &lf_lock);
    pthread_mutex_unlock(&lf_lock);
    agentsight_shutdown();
    track_simple("main_after", NULL);
    printf("rings_after_restart=%d\n", count_rings(rings));
    fflush(stdout);
    pthread_mutex_lock(&lf_lock);
    lf_step = 2;
    pthread_cond_broadcast(&lf_cond);
    pthread_mutex_unlock(&lf_lock);
    pthread_join(t, NULL);
    return 0;
}

/* A burst that overflows a small queue (policy drop), a shutdown, then one more action
 * and a second shutdown: the second must not report the first one's drops again. */
static int mode_drops(int n) {
    for (int i = 0; i < n; i++)
        track_simple("burst", "{\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}");
    agentsight_shutdown();
    printf("dropped_first=%llu\n", (unsigned long long)agentsight_dropped());
    fflush(stdout);
    track_simple("after", NULL);
    agentsight_shutdown();
    printf("dropped_total=%llu\n", (unsigned long long)agentsight_dropped());
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 1000;
    if (strcmp(mode, "rounds") == 0)
        return mode_rounds(n);
    if (strcmp(mode, "signal") == 0)
        return mode_signal(n);
    if (strcmp(mode, "big") == 0)
        return mode_big(n);
    if (strcmp(mode, "exitbusy") == 0)
        return mode_exitbusy();
    if (strcmp(mode, "failstart") == 0)
        return mode_failstart(n);
    if (strcmp(mode, "restart") == 0)
        return mode_restart(n);
    if (strcmp(mode, "livefile") == 0)
        return argc > 2 ? mode_livefile(argv[2]) : 2;
    if (strcmp(mode, "drops") == 0)
        return mode_drops(n);
    return 2;
}
