/* crash_agent.c - the test agent of crash-safe capture: tracks N actions through the API
 * (metadata {"i":k}) and makes N calls of labs(-(1000+k)) (wrapped by the interposer when
 * the config names labs), then ends as asked, without flushing anything first.
 *
 * Usage: crash_agent MODE N
 *   kill   raise SIGKILL          segv   raise SIGSEGV        exit   _exit(3)
 *   clean  return 0 (normal exit) wait   print "ready", wait for stdin to close, return 0
 *   start  agentsight_init() (which ships what dead processes left) and flush, return 0 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "agentsight.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: crash_agent kill|segv|exit|clean|wait|start N\n");
        return 2;
    }
    const char *mode = argv[1];
    long n = atol(argv[2]);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core); /* the SIGSEGV case must not leave a core file */
    long sum = 0;
    for (long k = 0; k < n; k++) {
        char meta[64];
        snprintf(meta, sizeof meta, "{\"i\":%ld}", k);
        agentsight_action a = {.action_name = "crash_api", .metadata = meta};
        if (agentsight_track_action(&a, NULL) != 0)
            fprintf(stderr, "crash_agent: action %ld refused\n", k);
        sum += labs(-(1000 + k));
    }
    printf("sum %ld\n", sum);
    fflush(stdout);
    if (strcmp(mode, "kill") == 0)
        raise(SIGKILL);
    if (strcmp(mode, "segv") == 0)
        raise(SIGSEGV);
    if (strcmp(mode, "exit") == 0)
        _exit(3);
    if (strcmp(mode, "start") == 0) {
        agentsight_init(NULL);
        agentsight_flush(10000);
    }
    if (strcmp(mode, "wait") == 0) {
        printf("ready\n");
        fflush(stdout);
        char buf[64];
        while (fgets(buf, sizeof buf, stdin))
            ;
    }
    return 0;
}
