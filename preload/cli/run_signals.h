/* run_signals.h - how `agentsight run` stays out of the way of signals: the signals sent
 * to `run` alone reach PROGRAM, and `run` ends by the signal that ended PROGRAM, so a
 * parent sees the same wait status with or without `run`. */
#ifndef AS_RUN_SIGNALS_H
#define AS_RUN_SIGNALS_H

#include <signal.h>
#include <sys/types.h>

/* Adds the signals `run` forwards (SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2,
 * SIGWINCH, SIGCONT, SIGALRM) to set. Block them before fork, so that none arrives
 * between the fork and as_run_sig_forward(). */
void as_run_sig_add(sigset_t *set);

/* From now on each of those signals received by this process is sent to pid, except:
 * one the kernel sent (si_code SI_KERNEL: the terminal's Ctrl-C, Ctrl-\, hang-up and
 * window change, which reach PROGRAM's process group by themselves) and one PROGRAM
 * itself sent. SIGPIPE is ignored from now on (the summary written to a closed pipe
 * must not end `run`). Call in the parent after fork, with the signals still blocked. */
void as_run_sig_forward(pid_t pid);

/* Waits for pid to end and reaps it: its wait status into *status. Forwarding stops
 * before the pid is reaped (no signal can reach a recycled pid); later signals of the
 * set are ignored while `run` finishes its work. Returns 0, or -1 (errno) when pid is
 * not a child. */
int as_run_sig_wait(pid_t pid, int *status);

/* Ends this process by signal sig, as PROGRAM ended: the disposition reset to SIG_DFL,
 * the signal unblocked and raised (SIGKILL: sent to itself). A signal whose default
 * action dumps core has the core dump of this process disabled first (RLIMIT_CORE 0, not
 * dumpable): only PROGRAM dumps. Returns only when the signal did not end the process. */
void as_run_sig_die(int sig);

#endif
