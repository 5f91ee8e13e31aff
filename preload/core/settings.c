/* settings.c - the process-wide settings: built-in defaults, then AGENTSIGHT_* environment
 * variables, then agentsight_init() options; and the per-process conversation id.
 *
 * A relative file: sink path means the working directory of the moment the settings are
 * taken (process start in the interposer, agentsight_init() in the library), not of the
 * moment the sink happens to open (the pipeline may start later, after a chdir): explicit
 * outputs are made absolute when loaded or applied, and the default one when options are
 * applied (the interposer always applies its config's [output] at start). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/pipeline.h"
#include "core/redact.h"
#include "core/keptenv.h"
#include "core/log.h"
#include "core/securedir.h"
#include "core/settings.h"
#include "core/otel_env.h"
#include "core/sink.h"

/* Used by the CLI too (cmd_run.c declares it; settings.h has no room for it yet). */

/* Checked only when the sink layer is linked in (it always is in the libraries). */
#pragma weak as_sinks_check

#define DEF_ENDPOINT "https://api.agentsight.io"
#define DEF_FILE_OUTPUT "file:agentsight-actions.jsonl"
#define DEF_FLUSH_MS 2000
#define DEF_WAIT_MS 1000
#define DEF_QUEUE_BYTES ((size_t)1 << 20)
#define MIN_QUEUE_BYTES ((size_t)64 << 10)
#define MAX_QUEUE_BYTES ((size_t)256 << 20)

as_settings as_cfg;

/* The generated conversation id: conv_gen is set while as_cfg.conversation_id holds one
 * generated here (not given), so a forked child knows to make its own. */
static int conv_gen;
static pthread_mutex_t conv_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Copies s into dst (cap bytes) when it fits. Returns 0, or -1 (dst untouched). */
static int copy_str(char *dst, size_t cap, const char *s) {
    size_t n = strlen(s);
    if (n >= cap)
        return -1;
    memcpy(dst, s, n + 1);
    return 0;
}

/* Sets a string setting from a source name (for the warning); keeps the old value and
 * warns when the value does not fit. Returns 0 or -1. */
static int set_str(const char *what, char *dst, size_t cap, const char *s) {
    if (copy_str(dst, cap, s) == 0)
        return 0;
    as_warn("%s: value longer than %zu bytes, ignored", what, cap - 1);
    return -1;
}

/* Writes "conv_" + 12 lowercase hex digits from getrandom() into out (>= 18 bytes).
 * Falls back to pid/time mixing when getrandom() is unavailable. Can't fail. */
static void gen_conversation_id(char *out) {
    unsigned char r[6];
    ssize_t got = -1;
    do {
        got = getrandom(r, sizeof r, GRND_NONBLOCK);
    } while (got < 0 && errno == EINTR);
    if (got != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x =
            (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
        x *= 0x9E3779B97F4A7C15ull;
        for (int i = 0; i < 6; i++)
            r[i] = (unsigned char)(x >> (8 * i + 16));
    }
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "conv_", 5);
    for (int i = 0; i < 6; i++) {
        out[5 + 2 * i] = hex[r[i] >> 4];
        out[6 + 2 * i] = hex[r[i] & 15];
    }
    out[17] = '\0';
}

/* In a forked child: a generated id belongs to the parent's conversation; make a new one.
 * The child has one thread here, so no lock is taken (the parent may have held it). */
static void atfork_child(void) {
    pthread_mutex_init(&conv_lock, NULL);
    if (conv_gen)
        gen_conversation_id(as_cfg.conversation_id);
}

AS_OWN_ATFORK(own_fork, as_fork_nothing, as_fork_nothing, atfork_child)

static void register_atfork(void) {
    pthread_atfork(own_fork_prepare, own_fork_parent, own_fork_child);
}

/* Returns the conversation id (generated on first use when none was given). Can't fail. */
const char *as_settings_conversation_id(void) {
    pthread_once(&atfork_once, register_atfork);
    if (as_cfg.conversation_id[0])
        return as_cfg.conversation_id;
    pthread_mutex_lock(&conv_lock);
    if (!as_cfg.conversation_id[0]) {
        gen_conversation_id(as_cfg.conversation_id);
        conv_gen = 1;
    }
    pthread_mutex_unlock(&conv_lock);
    return as_cfg.conversation_id;
}

/*
 * as_settings_absolute_output - copies the comma-separated sink URI list in into out
 * (cap bytes), with every relative file:PATH made absolute against the current working
 * directory. Other URIs, and spacing, are copied as they are. Returns 1 when a path was
 * made absolute, 0 when nothing needed it (out is a copy), or -1 when the working
 * directory is unknown or the result does not fit (out is then a copy of in, or "" when
 * in itself does not fit).
 */
/* As as_settings_absolute_output, against base (an absolute directory) when not NULL. */
static int absolute_against(const char *in, char *out, size_t cap, const char *base) {
    if (!in || cap == 0)
        return -1;
    if (copy_str(out, cap, in) != 0) {
        out[0] = '\0';
        return -1;
    }
    char cwd[PATH_MAX];
    int have_cwd = -1, changed = 0;
    size_t o = 0;
    for (const char *p = in; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        size_t lead = 0;
        while (lead < len && (p[lead] == ' ' || p[lead] == '\t'))
            lead++;
        const char *u = p + lead;
        size_t ulen = len - lead;
        int rel =
            ulen > 5 && strncmp(u, "file:", 5) == 0 && u[5] != '/' && u[5] != ' ' && u[5] != '\t';
        if (rel && have_cwd < 0)
            have_cwd =
                base ? copy_str(cwd, sizeof cwd, base) == 0 : getcwd(cwd, sizeof cwd) != NULL;
        size_t cl = rel && have_cwd ? strlen(cwd) : 0;
        if ((rel && !have_cwd) || o + len + cl + 2 >= cap)
            goto keep;
        size_t head = rel ? lead + 5 : len; /* up to and including "file:" */
        memcpy(out + o, p, head);
        o += head;
        if (rel) {
            memcpy(out + o, cwd, cl);
            o += cl;
            out[o++] = '/';
            memcpy(out + o, p + head, len - head);
            o += len - head;
            changed = 1;
        }
        if (end)
            out[o++] = ',';
        p = end ? end + 1 : p + len;
        continue;
    keep:
        copy_str(out, cap, in);
        return -1;
    }
    out[o] = '\0';
    return changed;
}

int as_settings_absolute_output(const char *in, char *out, size_t cap) {
    return absolute_against(in, out, cap, NULL);
}

/* Makes the relative file: paths of output (cap bytes) absolute in place; on failure
 * output stays as it was, with a warning. They are resolved once, when the settings are
 * made: against the working directory of `agentsight run` (AGENTSIGHT_RUN_DIR, which run
 * sets) under run, so that every process of the run writes the same file wherever it
 * changed directory; else against the working directory at that moment (under
 * LD_PRELOAD, the process's at its start). This function can't fail. */
static void absolute_output(char *output, size_t cap) {
    char abs[sizeof as_cfg.output];
    const char *base = as_keptenv_get("AGENTSIGHT_RUN_DIR");
    if (!base || base[0] != '/')
        base = NULL; /* unset, or not absolute: never trusted as a base */
    int rc = absolute_against(output, abs, sizeof abs, base);
    if (rc == 1 && copy_str(output, cap, abs) == 0)
        return;
    if (rc < 0) {
        char shown[512];
        as_redact_uris(output, shown, sizeof shown);
        as_warn("output '%s': cannot make its file path absolute; it follows the working "
                "directory",
                shown);
    }
}

/* Parses a non-negative decimal int. Returns 0, or -1 on anything else. */
static int parse_ms(const char *s, int *out) {
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > INT_MAX)
        return -1;
    *out = (int)v;
    return 0;
}

/* Parses a byte count with an optional K, M or G suffix (binary; "KiB"/"k" accepted).
 * Returns 0, or -1 on anything else. */
static int parse_bytes(const char *s, size_t *out) {
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    int shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10, end++;
        break;
    case 'm':
    case 'M':
        shift = 20, end++;
        break;
    case 'g':
    case 'G':
        shift = 30, end++;
        break;
    }
    if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    if (*end || v > (ULLONG_MAX >> shift))
        return -1;
    *out = (size_t)(v << shift);
    return 0;
}

/* Rounds up to a power of two within [64 KiB, 256 MiB]. Can't fail. */
static size_t fit_queue_bytes(size_t v) {
    if (v <= MIN_QUEUE_BYTES)
        return MIN_QUEUE_BYTES;
    if (v >= MAX_QUEUE_BYTES)
        return MAX_QUEUE_BYTES;
    size_t p = MIN_QUEUE_BYTES;
    while (p < v)
        p <<= 1;
    return p;
}

static int parse_policy(const char *s) {
    if (strcasecmp(s, "wait") == 0)
        return AGENTSIGHT_QUEUE_WAIT;
    if (strcasecmp(s, "drop") == 0)
        return AGENTSIGHT_QUEUE_DROP;
    return -1;
}

/* Whether the no-spool warning was given (once per process, whatever the reloads). */
static int nospool_warned;

/* The spool root when AGENTSIGHT_SPOOL_DIR does not give one: $XDG_STATE_HOME/agentsight/
 * spool, else $HOME/.local/state/agentsight/spool, else $XDG_RUNTIME_DIR/agentsight/spool
 * when that directory is ours and private (as_secure_dir); else none at all (""), with
 * one warning: a predictable shared place such as /tmp/agentsight-<uid> could be made
 * beforehand by another user, who would then read our spool or plant ring files that we
 * would ship as ours. This function can't fail. */
static void default_spool_dir(void) {
    const char *xdg = as_keptenv_get("XDG_STATE_HOME");
    const char *home = as_keptenv_get("HOME");
    const char *run = as_keptenv_get("XDG_RUNTIME_DIR");
    char why[256] = "";
    int n = -1;
    as_cfg.spool_dir[0] = '\0';
    if (xdg && xdg[0] == '/')
        n = snprintf(as_cfg.spool_dir, sizeof as_cfg.spool_dir, "%s/agentsight/spool", xdg);
    else if (home && home[0] == '/')
        n = snprintf(as_cfg.spool_dir, sizeof as_cfg.spool_dir, "%s/.local/state/agentsight/spool",
                     home);
    else if (run && run[0] == '/' && as_secure_dir(run, 0, why, sizeof why) == 0)
        n = snprintf(as_cfg.spool_dir, sizeof as_cfg.spool_dir, "%s/agentsight/spool", run);
    if (n >= 0 && (size_t)n < sizeof as_cfg.spool_dir)
        return;
    as_cfg.spool_dir[0] = '\0';
    if (nospool_warned)
        return;
    nospool_warned = 1;
    if (n >= 0)
        as_warn("spool directory: the default path is longer than %zu bytes; running without a "
                "spool (no retry after exit, no crash-safe rings); set AGENTSIGHT_SPOOL_DIR",
                sizeof as_cfg.spool_dir - 1);
    else if (run && run[0])
        as_warn("spool directory: neither XDG_STATE_HOME nor HOME is set and XDG_RUNTIME_DIR "
                "'%s' is not usable (%s); running without a spool (no retry after exit, no "
                "crash-safe rings); set AGENTSIGHT_SPOOL_DIR",
                run, why[0] ? why : "not an absolute path");
    else
        as_warn("spool directory: neither XDG_STATE_HOME, HOME nor XDG_RUNTIME_DIR is set; "
                "running without a spool (no retry after exit, no crash-safe rings); set "
                "AGENTSIGHT_SPOOL_DIR");
}

/* The process's name as the kernel set it at exec (what /proc/self/comm says then): the
 * last part of the path execve() was given, cut to 15 bytes; read from the auxiliary
 * vector, without opening /proc in every process. Writes "" when it cannot be told
 * (fexecve: the kernel names the process after the file's directory entry). */
static void comm_at_exec(char *comm) {
    const char *fn = (const char *)getauxval(AT_EXECFN);
    comm[0] = '\0';
    if (!fn || strncmp(fn, "/dev/fd/", 8) == 0 || strncmp(fn, "/proc/", 6) == 0)
        return;
    const char *b = strrchr(fn, '/');
    snprintf(comm, 16, "%s", b ? b + 1 : fn); /* TASK_COMM_LEN */
}

/* Set by as_settings_load_at_start: no code of the program has run yet. */
static int g_at_start;

static void default_service_name(void) {
    char comm[64] = "";
    if (g_at_start)
        comm_at_exec(comm);
    int fd = comm[0] ? -1 : open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, comm, sizeof comm - 1);
        close(fd);
        comm[n > 0 ? n : 0] = '\0';
        comm[strcspn(comm, "\n")] = '\0';
    }
    if (!comm[0] && program_invocation_short_name)
        snprintf(comm, sizeof comm, "%s", program_invocation_short_name);
    snprintf(as_cfg.service_name, sizeof as_cfg.service_name, "%s", comm[0] ? comm : "agentsight");
}

static void resource_service_name(void *ctx, const char *k, const char *v) {
    (void)ctx;
    if (strcmp(k, "service.name") == 0 && v[0])
        snprintf(as_cfg.service_name, sizeof as_cfg.service_name, "%s", v);
}

static const char *env(const char *name) {
    const char *v = as_keptenv_get(name);
    return v && *v ? v : NULL;
}

/* AT_SECURE (setuid, setgid, file capabilities): the environment and the caller's home
 * belong to a less privileged user. secure_getenv() already hides every variable from the
 * loads above and below; here the spool goes under the *effective* user's own home (from
 * the password database), never HOME or XDG_*; without such an entry, a system path that
 * only root may create (the spool then fails to open for other users, with a message).
 * This function can't fail. */
static void secure_spool_dir(void) {
    struct passwd pw, *res = NULL;
    char buf[1024];
    int n = -1;
    if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &res) == 0 && res && res->pw_dir &&
        res->pw_dir[0] == '/')
        n = snprintf(as_cfg.spool_dir, sizeof as_cfg.spool_dir, "%s/.local/state/agentsight/spool",
                     res->pw_dir);
    if (n < 0 || (size_t)n >= sizeof as_cfg.spool_dir)
        snprintf(as_cfg.spool_dir, sizeof as_cfg.spool_dir, "/var/lib/agentsight/spool");
}

/* Loads defaults, then the environment (see settings.h). Can't fail: a bad value is
 * reported with a warning naming the variable and the default is kept. */
void as_settings_load_at_start(int default_policy) {
    g_at_start = 1;
    as_settings_load(default_policy);
    g_at_start = 0;
}

void as_settings_load(int default_policy) {
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&conv_lock);
    memset(&as_cfg, 0, sizeof as_cfg);
    conv_gen = 0;
    pthread_mutex_unlock(&conv_lock);

    const char *v;
    snprintf(as_cfg.api_endpoint, sizeof as_cfg.api_endpoint, "%s", DEF_ENDPOINT);
    as_cfg.flush_timeout_ms = DEF_FLUSH_MS;
    as_cfg.queue_policy =
        default_policy == AGENTSIGHT_QUEUE_DROP ? AGENTSIGHT_QUEUE_DROP : AGENTSIGHT_QUEUE_WAIT;
    as_cfg.queue_wait_ms = DEF_WAIT_MS;
    as_cfg.queue_bytes = DEF_QUEUE_BYTES;
    if (getauxval(AT_SECURE)) {
        /* Actions are discarded until the program itself names an output (agentsight_init):
         * the default file sink would write into a working directory the caller chose. */
        as_cfg.output_explicit = 1;
        snprintf(as_cfg.output, sizeof as_cfg.output, "null");
        secure_spool_dir();
    } else if ((v = env("AGENTSIGHT_SPOOL_DIR"))) {
        if (copy_str(as_cfg.spool_dir, sizeof as_cfg.spool_dir, v) != 0)
            as_error("AGENTSIGHT_SPOOL_DIR: value longer than %zu bytes; running without a "
                     "spool (no other directory is used)",
                     sizeof as_cfg.spool_dir - 1);
    } else {
        default_spool_dir();
    }
    default_service_name();

    if ((v = env("AGENTSIGHT_API_KEY")))
        set_str("AGENTSIGHT_API_KEY", as_cfg.api_key, sizeof as_cfg.api_key, v);
    if ((v = env("AGENTSIGHT_API_ENDPOINT")))
        set_str("AGENTSIGHT_API_ENDPOINT", as_cfg.api_endpoint, sizeof as_cfg.api_endpoint, v);
    if ((v = env("AGENTSIGHT_OUTPUT"))) {
        /* Too long is a configuration error, not a reason to write elsewhere: the output
         * stays empty and explicit, so no sink opens and nothing goes to the default. */
        as_cfg.output_explicit = 1;
        if (copy_str(as_cfg.output, sizeof as_cfg.output, v) != 0)
            as_error("AGENTSIGHT_OUTPUT: value of %zu bytes is longer than %zu; no sink is "
                     "opened",
                     strlen(v), sizeof as_cfg.output - 1);
    }
    if (as_cfg.output_explicit) {
        if (as_cfg.output[0])
            absolute_output(as_cfg.output, sizeof as_cfg.output);
    } else {
        snprintf(as_cfg.output, sizeof as_cfg.output, "%s",
                 as_cfg.api_key[0] ? "agentsight" : DEF_FILE_OUTPUT);
        absolute_output(as_cfg.output, sizeof as_cfg.output); /* the default file too */
    }
    if ((v = env("AGENTSIGHT_CONVERSATION_ID")))
        set_str("AGENTSIGHT_CONVERSATION_ID", as_cfg.conversation_id, sizeof as_cfg.conversation_id,
                v);
    /* service.name as OpenTelemetry users set it, below our own variable: the
     * service.name item of OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME. */
    if ((v = env("OTEL_RESOURCE_ATTRIBUTES")))
        as_otel_parse_list(v, resource_service_name, NULL);
    if ((v = env("OTEL_SERVICE_NAME")))
        set_str("OTEL_SERVICE_NAME", as_cfg.service_name, sizeof as_cfg.service_name, v);
    if ((v = env("AGENTSIGHT_SERVICE_NAME")))
        set_str("AGENTSIGHT_SERVICE_NAME", as_cfg.service_name, sizeof as_cfg.service_name, v);

    if ((v = env("AGENTSIGHT_FLUSH_TIMEOUT_MS")) && parse_ms(v, &as_cfg.flush_timeout_ms))
        as_warn("AGENTSIGHT_FLUSH_TIMEOUT_MS: '%s' is not a number of milliseconds; using %d", v,
                DEF_FLUSH_MS);
    if ((v = env("AGENTSIGHT_QUEUE_WAIT_MS")) && parse_ms(v, &as_cfg.queue_wait_ms))
        as_warn("AGENTSIGHT_QUEUE_WAIT_MS: '%s' is not a number of milliseconds; using %d", v,
                DEF_WAIT_MS);
    if ((v = env("AGENTSIGHT_QUEUE_POLICY"))) {
        int p = parse_policy(v);
        if (p < 0)
            as_warn("AGENTSIGHT_QUEUE_POLICY: '%s' is not wait or drop; using %s", v,
                    as_cfg.queue_policy == AGENTSIGHT_QUEUE_DROP ? "drop" : "wait");
        else
            as_cfg.queue_policy = p;
    }
    if ((v = env("AGENTSIGHT_QUEUE_BYTES"))) {
        size_t qb;
        if (parse_bytes(v, &qb) || qb == 0)
            as_warn("AGENTSIGHT_QUEUE_BYTES: '%s' is not a byte count; using %zu", v,
                    DEF_QUEUE_BYTES);
        else
            as_cfg.queue_bytes = fit_queue_bytes(qb);
    }
    (void)as_settings_conversation_id(); /* fixes the id now, before any fork */
}

/* Applies the non-zero members of opts. Returns 0, or -1 with a message on stderr when a
 * value is invalid: then nothing at all is changed. */
int as_settings_apply(const agentsight_options *opts) {
    if (!opts)
        return 0;
    as_settings next = as_cfg;
    int next_gen = conv_gen;
    if (opts->output) {
        char msg[256];
        if (as_sinks_check && as_sinks_check(opts->output, msg, sizeof msg) != 0) {
            as_error("output: %s", msg);
            return -1;
        }
        if (set_str("output", next.output, sizeof next.output, opts->output))
            return -1;
        absolute_output(next.output, sizeof next.output); /* resolved now, not at open */
        next.output_explicit = 1;
    }
    if (opts->conversation_id && opts->conversation_id[0]) {
        if (set_str("conversation_id", next.conversation_id, sizeof next.conversation_id,
                    opts->conversation_id))
            return -1;
        next_gen = 0;
    }
    if (opts->api_key) {
        if (set_str("api_key", next.api_key, sizeof next.api_key, opts->api_key))
            return -1;
        if (!next.output_explicit) {
            snprintf(next.output, sizeof next.output, "%s",
                     next.api_key[0] ? "agentsight" : DEF_FILE_OUTPUT);
            absolute_output(next.output, sizeof next.output);
        }
    }
    if (opts->api_endpoint &&
        set_str("api_endpoint", next.api_endpoint, sizeof next.api_endpoint, opts->api_endpoint))
        return -1;
    if (opts->flush_timeout_ms < 0 || opts->queue_wait_ms < 0) {
        as_error("%s: negative", opts->flush_timeout_ms < 0 ? "flush_timeout_ms" : "queue_wait_ms");
        return -1;
    }
    if (opts->flush_timeout_ms)
        next.flush_timeout_ms = opts->flush_timeout_ms;
    if (opts->queue_wait_ms)
        next.queue_wait_ms = opts->queue_wait_ms;
    if (opts->queue_policy != AGENTSIGHT_QUEUE_DEFAULT) {
        if (opts->queue_policy != AGENTSIGHT_QUEUE_WAIT &&
            opts->queue_policy != AGENTSIGHT_QUEUE_DROP) {
            as_error("queue_policy: %d is not AGENTSIGHT_QUEUE_WAIT or AGENTSIGHT_QUEUE_DROP",
                     (int)opts->queue_policy);
            return -1;
        }
        next.queue_policy = opts->queue_policy;
    }
    if (opts->queue_bytes)
        next.queue_bytes = fit_queue_bytes(opts->queue_bytes);
    absolute_output(next.output, sizeof next.output);
    pthread_mutex_lock(&conv_lock);
    as_cfg = next;
    conv_gen = next_gen;
    pthread_mutex_unlock(&conv_lock);
    return 0;
}
