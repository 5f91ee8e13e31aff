/* cmd_run.c - `agentsight run`: runs a program under the interposer (LD_PRELOAD), passes
 * its standard streams and exit status through untouched, delivers what processes of its
 * tree left undelivered (killed, `_exit`, an exporter that could not finish), and prints
 * one summary line of what every instrumented process tracked (from the
 * AGENTSIGHT_STATS_FILE protocol of preload/core/pipeline.h). Signals sent to `run` go
 * on to PROGRAM, and `run` ends by the signal that ended PROGRAM (run_signals.h).
 *
 * Every process of the tree inherits AGENTSIGHT_RUN_ID (this process's pid and a random
 * part), written into the header of each of its ring files: after the program exits, the
 * ring files of that run whose processes are gone are recovered here, into the sinks
 * each names (an HTTP sink that cannot deliver leaves them in its spool), and counted in
 * the summary; an exporter of another run never takes them (pipeline.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agentsight.h"
#include "core/redact.h"
#include "cli/cmds.h"
#include "cli/diag_agg.h"
#include "cli/run_env.h"
#include "cli/run_rings.h"
#include "cli/run_signals.h"
#include "hook/config.h"
#include "core/clock.h"
#include "core/fdio.h"
#include "core/http.h"
#include "core/pipeline.h"
#include "core/settings.h"
#include "core/sink.h"

/* settings.c: the URI list with relative file: paths made absolute (settings.h does not
 * declare it). Returns 1 (changed), 0 (nothing to change) or -1 (out is a copy of in). */

#define PRELOAD_NAME "libagentsight-preload.so"
#define DEFAULT_CONFIG "agentsight.conf"
#define MAX_OUTPUTS_TEXT 1024

static const char usage[] =
    "usage: agentsight run [-c CONFIG] [-e PATTERN]... [-o SINK] [-q] [--llm] [--no-follow] [--]\n"
    "                      PROGRAM [ARGS...]\n"
    "Runs PROGRAM with the interposer; every call of a function named in CONFIG or by -e\n"
    "becomes an action. PROGRAM's input, output and exit status pass through untouched.\n"
    "  -c, --config FILE  config file (default: $AGENTSIGHT_CONFIG, else ./agentsight.conf)\n"
    "  -e, --entry PATTERN  also track PATTERN: a name, a glob or a C prototype, written as\n"
    "                     a config [actions] line (repeatable; no config file needed)\n"
    "  --llm              also turn every call PROGRAM makes to a language-model API\n"
    "                     (OpenAI, Anthropic, Ollama shapes over OpenSSL, GnuTLS, or\n"
    "                     plain HTTP to a loopback address) into an action\n"
    "  --no-follow        track PROGRAM only, not the programs it executes\n"
    "  -o, --output URIS  sinks: file:PATH, stderr, null, agentsight, otlp, otlp:URL\n"
    "                     (comma-separated; otlp alone follows OTEL_EXPORTER_OTLP_*)\n"
    "  -q, --quiet        no summary line on stderr\n"
    "  -V, --version      print the version\n"
    "  -h, --help         show this help\n";

typedef struct run_opts {
    const char *config;
    const char *output;
    int quiet;
    int no_follow;
    int llm;
    char **entries; /* the -e patterns (pointers into argv), n_entries of them */
    size_t n_entries;
    char **prog; /* PROGRAM and its arguments, NULL-terminated */
} run_opts;

/* Parses the options up to PROGRAM. Returns 0 (opts filled), 1 after printing the help,
 * or 2 after printing a usage error. */
static int parse_opts(int argc, char **argv, run_opts *o, char **entries) {
    memset(o, 0, sizeof(*o));
    o->entries = entries;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0')
            break;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 1;
        }
        if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("agentsight %s\n", AGENTSIGHT_VERSION);
            return 1;
        }
        if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
            continue;
        }
        if (strcmp(a, "--no-follow") == 0) {
            o->no_follow = 1;
            continue;
        }
        if (strcmp(a, "--llm") == 0) {
            o->llm = 1;
            continue;
        }
        if (strcmp(a, "-e") == 0 || strcmp(a, "--entry") == 0 || strncmp(a, "--entry=", 8) == 0) {
            const char *v = a[1] == '-' && a[7] == '=' ? a + 8 : i + 1 < argc ? argv[++i] : NULL;
            if (!v || !*v) {
                fprintf(stderr, "agentsight run: %s needs a PATTERN\n%s", a, usage);
                return 2;
            }
            o->entries[o->n_entries++] = (char *)v; /* argc slots: never more -e than args */
            continue;
        }
        const char **dst = NULL;
        const char *val = NULL;
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)
            dst = &o->config;
        else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)
            dst = &o->output;
        else if (strncmp(a, "--config=", 9) == 0)
            dst = &o->config, val = a + 9;
        else if (strncmp(a, "--output=", 9) == 0)
            dst = &o->output, val = a + 9;
        if (!dst) {
            fprintf(stderr, "agentsight run: unknown option '%s'\n%s", a, usage);
            return 2;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "agentsight run: %s needs a value\n%s", a, usage);
                return 2;
            }
            val = argv[++i];
        }
        *dst = val;
    }
    if (i >= argc) {
        fprintf(stderr, "agentsight run: no PROGRAM given\n%s", usage);
        return 2;
    }
    o->prog = argv + i;
    return 0;
}

/* The multiarch directory of this build's target (Debian's libdir is lib/TRIPLET), set by
 * the Makefile from `cc -print-multiarch`. */
#ifndef AS_MULTIARCH
#define AS_MULTIARCH ""
#endif

/* Finds libagentsight-preload.so next to the running binary (the build tree), else in
 * ../lib/agentsight relative to it (`make install`: PREFIX/bin + PREFIX/lib/agentsight),
 * in ../lib/TRIPLET/agentsight or ../lib64/agentsight (`make install` with a multiarch or
 * lib64 libdir), else in ../lib (a copy put beside the libraries by hand). Returns 0 with
 * the absolute path in out, or -1 with a message printed. */
static int find_preload(char *out, size_t cap) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        fprintf(stderr, "agentsight run: cannot read /proc/self/exe: %s\n", strerror(errno));
        return -1;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    static const char *const rel[] = {"/" PRELOAD_NAME, "/../lib/agentsight/" PRELOAD_NAME,
                                      "/../lib/" AS_MULTIARCH "/agentsight/" PRELOAD_NAME,
                                      "/../lib64/agentsight/" PRELOAD_NAME,
                                      "/../lib/" PRELOAD_NAME};
    char cand[PATH_MAX + 64];
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        snprintf(cand, sizeof(cand), "%s%s", exe, rel[i]);
        char real[PATH_MAX];
        if (!realpath(cand, real) || access(real, R_OK) != 0)
            continue;
        if (strpbrk(real, ": ")) {
            fprintf(stderr, "agentsight run: %s: LD_PRELOAD cannot hold a path with ':' or ' '\n",
                    real);
            return -1;
        }
        if (strlen(real) >= cap)
            continue;
        strcpy(out, real);
        return 0;
    }
    fprintf(stderr,
            "agentsight run: " PRELOAD_NAME " not found in %s, %s/../lib/agentsight, "
            "%s/../lib/" AS_MULTIARCH "/agentsight, %s/../lib64/agentsight or %s/../lib\n",
            exe, exe, exe, exe, exe);
    return -1;
}

/* Sets AGENTSIGHT_CONFIG, AGENTSIGHT_OUTPUT (relative file: paths made absolute),
 * AGENTSIGHT_RUN_DIR and LD_PRELOAD for the program. Returns 0, or -1 with a message printed (the
 * environment may then be partly changed). */
static int setup_env(const run_opts *o, const char *lib) {
    char real[PATH_MAX];
    if (o->llm)
        setenv("AGENTSIGHT_LLM", "1", 1); /* core/llm_detect.h: AS_LLM_ENV */
    if (o->config) {
        if (access(o->config, R_OK) != 0 || !realpath(o->config, real)) {
            fprintf(stderr, "agentsight run: %s: %s\n", o->config, strerror(errno));
            return -1;
        }
        setenv("AGENTSIGHT_CONFIG", real, 1);
    } else if (!getenv("AGENTSIGHT_CONFIG") && access(DEFAULT_CONFIG, R_OK) == 0 &&
               realpath(DEFAULT_CONFIG, real)) {
        setenv("AGENTSIGHT_CONFIG", real, 1);
    }
    /* Relative file: sinks (the config's, AGENTSIGHT_OUTPUT's, the default) mean our
     * working directory for every process of the run (core/settings.c, absolute_output). */
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd))
        setenv("AGENTSIGHT_RUN_DIR", cwd, 1);
    else
        unsetenv("AGENTSIGHT_RUN_DIR");
    if (o->output) {
        char msg[256] = "";
        char shown[1024];
        as_redact_uris(o->output, shown, sizeof(shown));
        if (as_sinks_check(o->output, msg, sizeof(msg)) != 0) {
            fprintf(stderr, "agentsight run: -o %s: %s\n", shown, msg);
            return -1;
        }
        /* The program and every program it execs must agree on the file, wherever
         * they chdir: a relative file: path means our working directory. */
        char abs[1024];
        if (as_settings_absolute_output(o->output, abs, sizeof(abs)) < 0) {
            fprintf(stderr, "agentsight run: -o %s: cannot make the file path absolute\n", shown);
            return -1;
        }
        setenv("AGENTSIGHT_OUTPUT", abs, 1);
    }
    const char *old = getenv("LD_PRELOAD");
    if (old && *old) {
        size_t len = strlen(lib) + 1 + strlen(old) + 1;
        char *v = malloc(len);
        if (!v) {
            fputs("agentsight run: out of memory\n", stderr);
            return -1;
        }
        snprintf(v, len, "%s:%s", lib, old);
        setenv("LD_PRELOAD", v, 1);
        free(v);
    } else {
        setenv("LD_PRELOAD", lib, 1);
    }
    return 0;
}

/* Creates the empty stats file and exports its name. Returns 0 with the path in path, or
 * -1 (a warning printed; the run goes on without a summary). */
static int make_stats_file(char *path, size_t cap) {
    const char *tmp = getenv("TMPDIR");
    snprintf(path, cap, "%s/agentsight-stats-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        fprintf(stderr, "agentsight run: no summary: %s: %s\n", path, strerror(errno));
        path[0] = '\0';
        return -1;
    }
    close(fd);
    setenv("AGENTSIGHT_STATS_FILE", path, 1);
    return 0;
}

/* The run's private directory (mode 0700) and the diagnostic records file in it, named
 * for the processes in AGENTSIGHT_DIAG_FILE (core/diag.h):
 *   $TMPDIR/agentsight-run-XXXXXX/      made by mkdtemp, removed at the end
 *   $TMPDIR/agentsight-run-XXXXXX/diag  one record line per diagnostic, appended
 * Not made when AGENTSIGHT_LOG is set (every message goes to that file then). Returns 0
 * with the directory in dir and the file in file, or -1 (the processes then report as
 * under plain LD_PRELOAD; nothing printed). */
static int make_diag_file(char *dir, size_t dcap, char *file, size_t fcap) {
    const char *log = getenv("AGENTSIGHT_LOG");
    if (log && *log)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, dcap, "%s/agentsight-run-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        dir[0] = '\0';
        return -1;
    }
    snprintf(file, fcap, "%s/diag", dir);
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rmdir(dir);
        dir[0] = '\0';
        return -1;
    }
    close(fd);
    setenv("AGENTSIGHT_DIAG_FILE", file, 1);
    return 0;
}

/* Prints each distinct diagnostic of the run once (unless quiet) and removes the
 * directory of make_diag_file. Returns the processes that reported their end (0 under
 * quiet). This function can't fail. */
static size_t finish_diag(const char *dir, const char *file, int quiet) {
    size_t ended = 0;
    if (!quiet) {
        as_diag_agg *agg = as_diag_agg_new();
        char cwd[PATH_MAX];
        if (agg && as_diag_agg_read(agg, file) == 0) {
            as_diag_agg_print(agg, stderr, getcwd(cwd, sizeof cwd) ? cwd : NULL);
            ended = as_diag_agg_ended(agg);
        }
        as_diag_agg_free(agg);
    }
    unlink(file);
    rmdir(dir);
    return ended;
}

/* Creates the empty cache file the run's processes share (hook/symcache.h) and exports its
 * name. Returns 0 with the path in path, or -1 (each process then reads what it needs). */
static int make_symcache_file(char *path, size_t cap) {
    const char *tmp = getenv("TMPDIR");
    snprintf(path, cap, "%s/agentsight-symcache-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        path[0] = '\0';
        return -1;
    }
    close(fd);
    setenv("AGENTSIGHT_SYMCACHE", path, 1);
    return 0;
}

#define MAX_SEEN_FUNCTIONS 256

typedef struct run_stats {
    uint64_t procs, actions, dropped, hooked, recovered;
    size_t ended;                   /* processes of the diag records that ended */
    char *seen[MAX_SEEN_FUNCTIONS]; /* distinct functions of recovered actions */
    size_t nseen;
    size_t ring_targets; /* most targets of one process among the run's ring files */
    uint64_t queue_full, threads, signal, damaged, summarized, sink_failed; /* by cause... */
    char outputs[MAX_OUTPUTS_TEXT]; /* of processes that delivered or lost an action */
    char idle[MAX_OUTPUTS_TEXT];    /* of processes that reported none (shown when alone) */
} run_stats;

/* Adds output to the comma-separated list (a run_stats outputs or idle field) of
 * distinct outputs (dropped when full). */
static void add_to(char *list, size_t cap, const char *output) {
    size_t have = strlen(list), n = strlen(output);
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, output, n) == 0)
            return;
        p += len + (end ? 1 : 0);
    }
    if (have + n + 2 > cap)
        return;
    if (have)
        list[have++] = ',';
    memcpy(list + have, output, n + 1);
}

static void add_output(run_stats *st, const char *output) {
    add_to(st->outputs, sizeof st->outputs, output);
}

/* as_cli_rescue_seen_fn: a recovered action counts its sinks among the outputs and its
 * function among those tracked (a process that ended with _exit or was killed never
 * wrote the stats line that names them). */
static void rescue_seen(const char *sinks, const char *function, void *ctx) {
    run_stats *st = ctx;
    if (sinks && sinks[0])
        add_output(st, sinks);
    if (!function || st->nseen == MAX_SEEN_FUNCTIONS)
        return;
    for (size_t i = 0; i < st->nseen; i++)
        if (strcmp(st->seen[i], function) == 0)
            return;
    if ((st->seen[st->nseen] = strdup(function)) != NULL)
        st->nseen++;
}

/* as_run_rings_fn: a ring file of the run names its process's sinks and functions. */
static void ring_seen(const char *sinks, size_t targets, void *ctx) {
    run_stats *st = ctx;
    if (sinks && sinks[0])
        add_output(st, sinks);
    if (targets > st->ring_targets)
        st->ring_targets = targets;
}

/* Returns o[key] as a count: 0 when absent, not a number or not positive. */
static uint64_t num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) && v->valuedouble > 0 ? (uint64_t)v->valuedouble : 0;
}

/* Adds one stats line (n bytes) to st (a run_stats); a bad line is skipped. */
static void add_stats_line(void *ctx, const char *line, size_t n) {
    run_stats *st = ctx;
    cJSON *o = cJSON_ParseWithLength(line, n);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return;
    }
    st->procs++;
    st->actions += num(o, "actions");
    st->dropped += num(o, "dropped");
    st->queue_full += num(o, "queue_full");
    st->threads += num(o, "threads");
    st->signal += num(o, "signal");
    st->damaged += num(o, "damaged");
    st->summarized += num(o, "summarized");
    st->sink_failed += num(o, "sink_failed");
    uint64_t h = num(o, "hooked");
    if (h > st->hooked)
        st->hooked = h;
    /* A process that tracked nothing (a shell that changed directory, say) names a sink
     * that got nothing from it: listed only when no process tracked anything. */
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(o, "output");
    if (cJSON_IsString(out) && out->valuestring[0]) {
        if (num(o, "actions") || num(o, "dropped") || num(o, "sink_failed") || num(o, "summarized"))
            add_output(st, out->valuestring);
        else
            add_to(st->idle, sizeof st->idle, out->valuestring);
    }
    cJSON_Delete(o);
}

/* Sums the stats lines in path into st: actions and dropped added, hooked the largest
 * (a forked child reports the parent's hooks again). Bad lines are skipped. Returns 0, or
 * -1 when the file cannot be read (st unchanged). */
static int read_stats(const char *path, run_stats *st) {
    return as_read_lines(path, add_stats_line, st);
}

/* Prints the one summary line on stderr. This function can't fail. */
static void print_summary(const run_stats *st) {
    if (st->procs == 0 && st->recovered == 0 && st->actions == 0) {
        const char *entries = getenv(AS_ENTRIES_ENV);
        if (st->ended) /* they ran the interposer: nothing they called was tracked */
            fprintf(stderr, "agentsight: 0 actions tracked in %zu process%s\n", st->ended,
                    st->ended == 1 ? "" : "es");
        else if (!getenv("AGENTSIGHT_CONFIG") && !(entries && *entries))
            fputs("agentsight: nothing tracked: no config (give -c CONFIG or create "
                  "./" DEFAULT_CONFIG ")\n",
                  stderr);
        else
            fputs("agentsight: no instrumented process reported (nothing hooked, a program "
                  "ending with _exit, a statically linked program, or AGENTSIGHT_DISABLE=1)\n",
                  stderr);
        return;
    }
    const char *outputs = st->outputs[0] ? st->outputs : st->idle;
    char shown[MAX_OUTPUTS_TEXT];
    const char *asked = getenv("AGENTSIGHT_OUTPUT");
    if (!outputs[0] && asked && *asked) { /* only processes that wrote no stats line */
        as_redact_uris(asked, shown, sizeof shown);
        outputs = shown;
    }
    unsigned long long a = st->actions + st->recovered, d = st->dropped;
    unsigned long long h = st->hooked;
    if (st->nseen > h)
        h = st->nseen;
    if (st->ring_targets > h)
        h = st->ring_targets;
    char rec[96] = "";
    if (st->recovered)
        snprintf(rec, sizeof rec, ", %llu recovered from processes that ended early",
                 (unsigned long long)st->recovered);
    fprintf(stderr,
            "agentsight: %llu action%s tracked from %llu function%s (%llu dropped%s) -> %s\n", a,
            a == 1 ? "" : "s", h, h == 1 ? "" : "s", d, rec, outputs[0] ? outputs : "-");
    if (d || st->summarized || st->sink_failed)
        fprintf(stderr,
                "agentsight: dropped %llu (queue full), %llu (over the thread limit), %llu (in a "
                "signal handler), %llu (damaged record); %llu calls summarized (queue full); "
                "%llu actions not delivered by a sink (spooled or lost)\n",
                (unsigned long long)st->queue_full, (unsigned long long)st->threads,
                (unsigned long long)st->signal, (unsigned long long)st->damaged,
                (unsigned long long)st->summarized, (unsigned long long)st->sink_failed);
}

/* Under -q: the one line about lost actions, when there are any (losses are always
 * shown; the processes of a run leave that line to `run`). This function can't fail. */
static void print_losses(const run_stats *st) {
    if (st->dropped == 0 && st->sink_failed == 0)
        return;
    fprintf(stderr,
            "agentsight: %llu actions dropped (%llu queue full, %llu over the thread limit, %llu "
            "in a signal handler, %llu damaged records); %llu actions not delivered by a sink "
            "(spooled or lost)\n",
            (unsigned long long)st->dropped, (unsigned long long)st->queue_full,
            (unsigned long long)st->threads, (unsigned long long)st->signal,
            (unsigned long long)st->damaged, (unsigned long long)st->sink_failed);
}

/* The spool root the program's processes use (settings.c rules, without its warnings):
 * AGENTSIGHT_SPOOL_DIR, else the XDG state or home default. Returns 0 or -1 (none). */
static int spool_root(char *out, size_t cap) {
    const char *d = getenv("AGENTSIGHT_SPOOL_DIR");
    if (d && *d)
        return (size_t)snprintf(out, cap, "%s", d) < cap ? 0 : -1;
    const char *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME"),
               *run = getenv("XDG_RUNTIME_DIR");
    int n = -1;
    if (x && x[0] == '/')
        n = snprintf(out, cap, "%s/agentsight/spool", x);
    else if (home && home[0] == '/')
        n = snprintf(out, cap, "%s/.local/state/agentsight/spool", home);
    else if (run && run[0] == '/')
        n = snprintf(out, cap, "%s/agentsight/spool", run);
    return n >= 0 && (size_t)n < cap ? 0 : -1;
}

/* Delivers what the processes of this run left in their ring files. Descendants that
 * outlive PROGRAM (orphans of a killed shell, say: `run` is their subreaper, so they
 * become its children) are waited for up to the flush timeout
 * (AGENTSIGHT_FLUSH_TIMEOUT_MS, 2000 ms), what each leaves recovered as it ends; those
 * still alive then deliver their own. Returns the actions recovered; *unreported
 * receives those the ended processes delivered but never reported, *damaged the records
 * found damaged and skipped; st the sinks and functions the run's ring files name. */
static unsigned long long rescue_run(const char *run_id, unsigned long long *unreported,
                                     unsigned long long *damaged, run_stats *st) {
    char root[sizeof as_cfg.spool_dir];
    const char *cs = getenv("AGENTSIGHT_CRASH_SAFE");
    if ((cs && strcmp(cs, "0") == 0) || spool_root(root, sizeof root) != 0)
        return 0;
    snprintf(as_cfg.spool_dir, sizeof as_cfg.spool_dir, "%s", root);
    const char *t = getenv("AGENTSIGHT_FLUSH_TIMEOUT_MS");
    long ms = t && atol(t) > 0 ? atol(t) : 2000;
    long long deadline = (long long)as_mono_ms() + ms;
    unsigned long long total = 0, unrep_total = 0, dmg_total = 0;
    for (;;) {
        unsigned long long n = 0, unrep = 0, dmg = 0;
        as_run_rings_scan(root, run_id, ring_seen, st); /* before recovery removes them */
        as_cli_rescue_rings(root, run_id, deadline, &n, &unrep, &dmg);
        total += n;
        unrep_total += unrep;
        dmg_total += dmg;
        int st, children = 0;
        pid_t w;
        while ((w = waitpid(-1, &st, WNOHANG)) > 0)
            ; /* orphans reparented to us (a subreaper) that ended: reaped */
        children = w == 0;
        if ((!children && as_pipe_live_rings(root, run_id) == 0) ||
            (long long)as_mono_ms() >= deadline)
            break;
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (unreported)
        *unreported = unrep_total;
    if (damaged)
        *damaged = dmg_total;
    return total;
}

/* Forks and execs o->prog, forwarding to it the signals sent to `run` alone
 * (run_signals.h). Returns PROGRAM's exit status (128+signo after a signal, that signal
 * in *killed_by, else 0), or 127/126 when it cannot be started (message printed,
 * *started left 0). */
static int spawn_and_wait(const run_opts *o, int *started, int *killed_by) {
    *started = 0;
    *killed_by = 0;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        fprintf(stderr, "agentsight run: pipe: %s\n", strerror(errno));
        return 126;
    }
    sigset_t block, old;
    sigemptyset(&block);
    as_run_sig_add(&block);
    sigprocmask(SIG_BLOCK, &block, &old);
    fflush(stdout);
    fflush(stderr);
    /* Descendants orphaned while PROGRAM runs become our children, not init's: `run` can
     * then wait for the end of the whole tree before it recovers what it left. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        sigprocmask(SIG_SETMASK, &old, NULL);
        execvp(o->prog[0], o->prog);
        int e = errno;
        ssize_t w = write(pfd[1], &e, sizeof(e));
        (void)w;
        _exit(127);
    }
    close(pfd[1]);
    if (pid < 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        close(pfd[0]);
        fprintf(stderr, "agentsight run: fork: %s\n", strerror(e));
        return 126;
    }
    /* Sent to `run` by its pid: on to PROGRAM. Ctrl-C and Ctrl-\ reach the whole
     * foreground group from the kernel: PROGRAM has them already, `run` lets them be. */
    as_run_sig_forward(pid);
    sigprocmask(SIG_SETMASK, &old, NULL);

    int child_errno = 0;
    ssize_t got;
    do
        got = read(pfd[0], &child_errno, sizeof(child_errno));
    while (got < 0 && errno == EINTR);
    close(pfd[0]);

    int status = 0;
    if (as_run_sig_wait(pid, &status) != 0) {
        fprintf(stderr, "agentsight run: wait: %s\n", strerror(errno));
        return 1;
    }

    if (got == (ssize_t)sizeof(child_errno)) {
        if (child_errno == ENOENT) {
            fprintf(stderr, "agentsight: %s: not found\n", o->prog[0]);
            return 127;
        }
        fprintf(stderr, "agentsight: %s: %s\n", o->prog[0], strerror(child_errno));
        return 126;
    }
    *started = 1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) {
        *killed_by = WTERMSIG(status);
        return 128 + WTERMSIG(status);
    }
    return 1;
}

int as_cmd_run(int argc, char **argv) {
    run_opts o;
    char **entries = calloc((size_t)argc + 1, sizeof(*entries));
    if (!entries) {
        fputs("agentsight run: out of memory\n", stderr);
        return 2;
    }
    int rc = parse_opts(argc, argv, &o, entries);
    if (rc) {
        free(entries);
        return rc == 1 ? 0 : 2;
    }
    as_run_env_snapshot();
    rc = as_run_env_entries(o.entries, o.n_entries);
    free(entries);
    o.entries = NULL, o.n_entries = 0; /* handed over to the environment */
    if (rc < 0)
        return 2;
    char lib[PATH_MAX];
    if (find_preload(lib, sizeof(lib)) < 0)
        return 2;
    if (setup_env(&o, lib) < 0)
        return 2;
    char stats[PATH_MAX];
    int have_stats = make_stats_file(stats, sizeof(stats)) == 0;
    char diag_dir[PATH_MAX], diag[PATH_MAX + 8];
    int have_diag = make_diag_file(diag_dir, sizeof diag_dir, diag, sizeof diag) == 0;
    char run_id[64];
    snprintf(run_id, sizeof run_id, "%d-%016llx", (int)getpid(),
             (unsigned long long)as_http_random64());
    setenv("AGENTSIGHT_RUN_ID", run_id, 1);
    char symcache[PATH_MAX];
    int have_symcache = make_symcache_file(symcache, sizeof(symcache)) == 0;
    if (o.no_follow && as_run_env_nofollow() < 0) {
        if (have_diag)
            finish_diag(diag_dir, diag, 1);
        if (have_stats)
            unlink(stats);
        if (have_symcache)
            unlink(symcache);
        return 2;
    }
    int started = 0, killed_by = 0;
    rc = spawn_and_wait(&o, &started, &killed_by);
    if (have_symcache)
        unlink(symcache);
    static run_stats st; /* filled by the recovery (rescue_seen), then the stats lines */
    as_cli_rescue_observe(rescue_seen, &st);
    unsigned long long unreported = 0, damaged = 0;
    unsigned long long recovered = started ? rescue_run(run_id, &unreported, &damaged, &st) : 0;
    as_cli_rescue_observe(NULL, NULL);
    size_t ended = have_diag ? finish_diag(diag_dir, diag, o.quiet) : 0;
    if (have_stats) {
        st.ended = ended;
        st.recovered = recovered;
        st.actions = unreported; /* the stats lines add what was reported */
        st.damaged = damaged;    /* and the records recovery found damaged */
        st.dropped = damaged;
        if (started && read_stats(stats, &st) == 0) {
            if (!o.quiet)
                print_summary(&st);
            else
                print_losses(&st);
        }
        unlink(stats);
    }
    for (size_t i = 0; i < st.nseen; i++)
        free(st.seen[i]);
    if (killed_by) { /* PROGRAM's parent would have seen it end by this signal: so does ours */
        fflush(NULL);
        as_run_sig_die(killed_by);
    }
    return rc;
}
