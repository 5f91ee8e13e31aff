/* durable_agent.c - the test agent of the delivery guarantees (test_durable.py): makes
 * calls of labs(-(BASE+k)) (wrapped when the config names labs, so each call's response
 * names it), in a paced loop that publishes how many calls returned, across exec, or in
 * many forked children that leave with _exit.
 *
 * Usage: durable_agent MODE ...
 *   loop BASE N COUNTFILE [EVERY]
 *                          N calls; after each returns, the count of returned calls is
 *                          stored in the first 8 bytes of COUNTFILE (a shared mapping:
 *                          exact also when the agent is killed at any point); paced (1 ms
 *                          pause every EVERY calls, default 100) so its ring never fills
 *   calls BASE N           N calls, then return 0
 *   exec BASE N            N calls, then exec itself as "calls BASE+N N"
 *   fork M N               M children (20 at a time), child i makes N calls with BASE
 *                          (i+1)*1000000 and leaves with _exit(0); the parent waits, 0 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long calls(long base, long n) {
    long sum = 0;
    for (long k = 0; k < n; k++)
        sum += labs(-(base + k));
    return sum;
}

static int loop(long base, long n, const char *countfile, long every) {
    int fd = open(countfile, O_RDWR);
    if (fd < 0 || ftruncate(fd, 4096) != 0) {
        perror(countfile);
        return 2;
    }
    volatile uint64_t *count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (count == MAP_FAILED) {
        perror("mmap");
        return 2;
    }
    long sum = 0;
    for (long k = 0; k < n; k++) {
        sum += labs(-(base + k));
        __atomic_store_n(count, (uint64_t)(k + 1), __ATOMIC_RELEASE);
        if (k % every == every - 1) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    printf("sum %ld\n", sum);
    return 0;
}

static int forks(long m, long n) {
    long started = 0;
    while (started < m) {
        long batch = m - started < 20 ? m - started : 20;
        for (long i = 0; i < batch; i++) {
            pid_t pid = fork();
            if (pid < 0) {
                perror("fork");
                return 2;
            }
            if (pid == 0) /* the sum is used: labs is const, unused calls would go */
                _exit(calls((started + i + 1) * 1000000, n) == -1);
        }
        for (long i = 0; i < batch; i++)
            wait(NULL);
        started += batch;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "loop") == 0)
        return loop(atol(argv[2]), atol(argv[3]), argv[4],
                    argc > 5 && atol(argv[5]) > 0 ? atol(argv[5]) : 100);
    if (argc >= 4 && strcmp(argv[1], "calls") == 0) {
        printf("sum %ld\n", calls(atol(argv[2]), atol(argv[3])));
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "exec") == 0) {
        long base = atol(argv[2]), n = atol(argv[3]);
        printf("sum %ld\n", calls(base, n));
        fflush(stdout);
        char next[32];
        snprintf(next, sizeof next, "%ld", base + n);
        execl("/proc/self/exe", "durable_agent", "calls", next, argv[3], (char *)NULL);
        perror("exec");
        return 2;
    }
    if (argc >= 4 && strcmp(argv[1], "fork") == 0)
        return forks(atol(argv[2]), atol(argv[3]));
    fprintf(stderr, "usage: durable_agent loop BASE N COUNTFILE | calls BASE N | exec BASE N | "
                    "fork M N\n");
    return 2;
}
