/* tracer_agent.c - an agent for the tracer-style options (`run -e`, `--no-follow`, the
 * chrome timeline): calls the tools of libtyped_tools.so from its main thread and from
 * THREADS worker threads, and with "child" also runs itself once more as a child process.
 * Prints the same deterministic lines with or without the interposer.
 * Usage: tracer_agent [THREADS [child]] (THREADS 0..16, default 2). */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int multiply(int a, int b);
bool tool_is_even(int x);

#define CALLS 3 /* multiply calls per thread */

static void *worker(void *arg) {
    long k = (long)arg, sum = 0;
    for (int i = 0; i < CALLS; i++)
        sum += multiply((int)k, i + 1);
    sum += tool_is_even((int)k);
    return (void *)sum;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 0 || threads > 16)
        threads = 2;
    long sum = 0;
    for (int i = 0; i < CALLS; i++)
        sum += multiply(7, i + 1);
    pthread_t t[16];
    for (long k = 0; k < threads; k++)
        if (pthread_create(&t[k], NULL, worker, (void *)(k + 1)) != 0)
            return 3;
    for (int k = 0; k < threads; k++) {
        void *r;
        pthread_join(t[k], &r);
        sum += (long)r;
    }
    printf("pid-free result: threads %d sum %ld\n", threads, sum);
    if (argc > 2 && strcmp(argv[2], "child") == 0) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            execl("/proc/self/exe", argv[0], "1", (char *)NULL);
            _exit(127);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128);
    }
    return 0;
}
