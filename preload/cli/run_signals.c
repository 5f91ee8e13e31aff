/* run_signals.c - `agentsight run` between its caller and PROGRAM: what is sent to `run`
 * by its pid (a supervisor's SIGTERM, Popen.terminate(), timeout(1)) goes on to PROGRAM,
 * and `run` ends by the signal that ended PROGRAM (run_signals.h). */
#include "cli/run_signals.h"

#include <errno.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static const int forwarded[] = {SIGTERM, SIGHUP,   SIGINT,  SIGQUIT, SIGUSR1,
                                SIGUSR2, SIGWINCH, SIGCONT, SIGALRM};
#define NFORWARDED (sizeof(forwarded) / sizeof(forwarded[0]))

static volatile sig_atomic_t target; /* the pid signals go to; 0: none (any more) */

static void on_signal(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    pid_t pid = (pid_t)target;
    if (pid <= 0)
        return;
    if (si && (si->si_code == SI_KERNEL || (si->si_code <= 0 && si->si_pid == pid)))
        return; /* the terminal's (PROGRAM's group has it too) or PROGRAM's own */
    int e = errno;
    kill(pid, sig);
    errno = e;
}

void as_run_sig_add(sigset_t *set) {
    for (size_t i = 0; i < NFORWARDED; i++)
        sigaddset(set, forwarded[i]);
}

void as_run_sig_forward(pid_t pid) {
    target = pid;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    as_run_sig_add(&sa.sa_mask); /* one handler at a time: target read once */
    for (size_t i = 0; i < NFORWARDED; i++)
        sigaction(forwarded[i], &sa, NULL);
    /* A stderr nobody reads any more must not end `run` before it reports PROGRAM's
     * status: the summary's write fails with EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
}

int as_run_sig_wait(pid_t pid, int *status) {
    siginfo_t si;
    for (;;) { /* ends when pid ends: each pass either returns or was interrupted */
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) == 0)
            break;
        if (errno != EINTR)
            return -1;
    }
    sigset_t set, old;
    sigemptyset(&set);
    as_run_sig_add(&set);
    sigprocmask(SIG_BLOCK, &set, &old);
    target = 0; /* a zombie still holds its pid: no handler can reach a recycled one */
    sigprocmask(SIG_SETMASK, &old, NULL);
    while (waitpid(pid, status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return 0;
}

void as_run_sig_die(int sig) {
    switch (sig) {
    case SIGQUIT:
    case SIGILL:
    case SIGTRAP:
    case SIGABRT:
    case SIGBUS:
    case SIGFPE:
    case SIGSEGV:
    case SIGXCPU:
    case SIGXFSZ:
    case SIGSYS: {
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* also when core_pattern pipes to a program */
        break;
    }
    default:
        break;
    }
    if (sig == SIGKILL || sig == SIGSTOP) {
        kill(getpid(), SIGKILL);
        return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
}
