/* ringmem_agent.c - the test agent of ring memory bounds (test_ringmem.py): starts many
 * threads that each make tracked calls and then stay alive, idle, so the memory and ring
 * files of live threads can be measured while they wait.
 *
 * Usage: ringmem_agent THREADS CALLS
 *   Starts THREADS threads (64 KiB stacks); thread i makes CALLS calls of
 *   labs(-(i*1000000+k)). Once all have made their calls it prints "ready" and waits for a
 *   line (or end of file) on stdin; then the threads leave and it prints the sum, 0. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static long ncalls;
static pthread_barrier_t made, go;
static long sums[4096];

static void *worker(void *arg) {
    long i = (long)arg, sum = 0;
    for (long k = 0; k < ncalls; k++)
        sum += labs(-(i * 1000000 + k));
    sums[i] = sum;
    pthread_barrier_wait(&made);
    pthread_barrier_wait(&go);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    long n = atol(argv[1]);
    ncalls = atol(argv[2]);
    if (n < 1 || n > 4096 || ncalls < 0)
        return 2;
    pthread_barrier_init(&made, NULL, (unsigned)n + 1);
    pthread_barrier_init(&go, NULL, (unsigned)n + 1);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 << 10);
    pthread_t *t = calloc((size_t)n, sizeof *t);
    if (!t)
        return 2;
    for (long i = 0; i < n; i++) {
        if (pthread_create(&t[i], &a, worker, (void *)i) != 0) {
            perror("pthread_create");
            return 2;
        }
    }
    pthread_barrier_wait(&made);
    printf("ready\n");
    fflush(stdout);
    char line[16];
    (void)!fgets(line, sizeof line, stdin);
    pthread_barrier_wait(&go);
    long total = 0;
    for (long i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        total += sums[i];
    }
    printf("%ld\n", total);
    free(t);
    return 0;
}
