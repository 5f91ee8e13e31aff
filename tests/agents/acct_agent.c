/* acct_agent.c - the agent of the accounting tests (tests/integration/test_accounting.py):
 * makes a known number of calls of libacct_tools.so and prints what it made, so a test
 * can check that every call is accounted for exactly once.
 *
 * Usage: acct_agent MODE ARGS
 *   loop T N      T threads, N calls of acct_mul each; prints "calls T*N sum S"
 *   errno T N     T threads, N calls of acct_fail each (errno never reset by the agent);
 *                 prints "failed F"
 *   jmpfork N     longjmp out of acct_cb's callback, then fork: the child makes N calls of
 *                 acct_mul and exits; prints "child N" and "parent 1"
 *   threads T     T threads alive at once, one call of acct_mul each; prints "calls T"
 *   typed N END   N rounds of acct_div, acct_name, acct_search, acct_scale, acct_even,
 *                 acct_big, acct_log, acct_fail, acct_name(-k); END is "clean" (return 0)
 *                 or "kill" (SIGKILL itself after printing "done") */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int acct_mul(int a, int b);
int acct_fail(const char *path);
int acct_cb(void (*cb)(void));
double acct_div(double a, double b);
const char *acct_name(int k);
int acct_search(const char *user, int k);
float acct_scale(float x);
_Bool acct_even(long x);
unsigned long long acct_big(unsigned long long x);
void acct_log(const char *msg);

static long per_thread;

static void *loop_thread(void *arg) {
    long sum = 0;
    for (long i = 0; i < per_thread; i++)
        sum += acct_mul((int)(i & 0xff), 3);
    *(long *)arg = sum;
    return NULL;
}

static void *errno_thread(void *arg) {
    long failed = 0;
    for (long i = 0; i < per_thread; i++)
        failed += acct_fail("/nonexistent/acct") == -1;
    *(long *)arg = failed;
    return NULL;
}

/* Runs fn on t threads; returns the sum of their results. */
static long on_threads(int t, void *(*fn)(void *)) {
    pthread_t th[64];
    long res[64] = {0};
    if (t < 1 || t > 64)
        return -1;
    for (int i = 0; i < t; i++)
        if (pthread_create(&th[i], NULL, fn, &res[i]) != 0)
            return -1;
    long sum = 0;
    for (int i = 0; i < t; i++) {
        pthread_join(th[i], NULL);
        sum += res[i];
    }
    return sum;
}

static pthread_barrier_t all_alive;

/* One call, then waits until every thread has made its call (all alive at once). */
static void *one_call(void *arg) {
    *(long *)arg = acct_mul(2, 3);
    pthread_barrier_wait(&all_alive);
    return NULL;
}

static int mode_threads(int t) {
    if (t < 1 || t > 4096)
        return 2;
    pthread_t *th = calloc((size_t)t, sizeof *th);
    long *res = calloc((size_t)t, sizeof *res);
    if (!th || !res || pthread_barrier_init(&all_alive, NULL, (unsigned)t) != 0)
        return 1;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 64 * 1024);
    int made = 0;
    for (; made < t; made++)
        if (pthread_create(&th[made], &at, one_call, &res[made]) != 0)
            break;
    if (made != t) {
        fprintf(stderr, "acct_agent: only %d threads\n", made);
        return 1; /* the barrier never opens: the harness's timeout ends the run */
    }
    long sum = 0;
    for (int i = 0; i < t; i++) {
        pthread_join(th[i], NULL);
        sum += res[i];
    }
    printf("calls %d sum %ld\n", t, sum);
    free(th);
    free(res);
    return 0;
}

static jmp_buf jb;

static void jump_out(void) {
    longjmp(jb, 1);
}

static int mode_jmpfork(long n) {
    if (setjmp(jb) == 0) {
        acct_cb(jump_out);
        return 1; /* not reached */
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        long sum = 0;
        for (long i = 0; i < n; i++)
            sum += acct_mul((int)i, 2);
        printf("child %ld sum %ld\n", n, sum);
        exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    printf("parent 1\n");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

static int mode_typed(long n, const char *end) {
    double d = 0;
    long rows = 0, len = 0;
    for (long k = 0; k < n; k++) {
        d += acct_div((double)k, 4.0);
        const char *s = acct_name((int)k);
        len += s ? (long)strlen(s) : 0;
        rows += acct_search("user-7", (int)k);
        d += acct_scale((float)k);
        rows += acct_even(k);
        rows += (long)(acct_big((unsigned long long)k) & 0xff);
        acct_log(k % 2 ? "odd" : NULL);
        rows += acct_fail(k % 3 ? "/nonexistent" : "/tmp") == -1;
        len += acct_name(-(int)k - 1) == NULL;
    }
    printf("typed %ld %.3f %ld %ld\n", n, d, len, rows);
    printf("done\n");
    fflush(stdout);
    if (strcmp(end, "kill") == 0)
        raise(SIGKILL);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: acct_agent loop|errno T N | jmpfork N | typed N clean|kill\n");
        return 2;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "jmpfork") == 0)
        return mode_jmpfork(atol(argv[2]));
    if (strcmp(mode, "threads") == 0)
        return mode_threads(atoi(argv[2]));
    if (strcmp(mode, "typed") == 0)
        return mode_typed(atol(argv[2]), argc > 3 ? argv[3] : "clean");
    if (argc < 4)
        return 2;
    int t = atoi(argv[2]);
    per_thread = atol(argv[3]);
    if (strcmp(mode, "loop") == 0) {
        long sum = on_threads(t, loop_thread);
        printf("calls %ld sum %ld\n", (long)t * per_thread, sum);
        return 0;
    }
    if (strcmp(mode, "errno") == 0) {
        printf("failed %ld\n", on_threads(t, errno_thread));
        return 0;
    }
    return 2;
}
