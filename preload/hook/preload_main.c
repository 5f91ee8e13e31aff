/* preload_main.c - the constructor and destructor of libagentsight-preload.so: read the
 * settings and the config file named by AGENTSIGHT_CONFIG, then install the hooks. Any
 * failure leaves the program running exactly as without us. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "agentsight.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/dynlib.h"
#include "core/keptenv.h"
#include "core/log.h"
#include "core/pipeline.h"
#include "core/record.h"
#include "core/settings.h"
#include "hook/callrec.h"
#include "hook/capture.h"
#include "hook/config.h"
#include "hook/install.h"
#include "hook/llm_sock.h"
#include "hook/llm_tls.h"
#include "core/llm_detect.h"
#include "hook/nofollow.h"
#include "hook/target.h"
#include "hook/thunk.h"

static as_config g_config; /* lives for the process: targets point at its entries */

/* Tells capture.c that as_capture_start() is called from here, only when something is to
 * be hooked, instead of from its constructor in every process. */
const int as_preload_defers_init = 1;

static int env_set(const char *name) {
    const char *v = as_keptenv_get(name);
    return v && *v;
}

/* Applies the [output] section over the settings; the environment wins where both say
 * something. Returns 0, or -1 when a value was refused (a message was printed). */
static int apply_output(const as_config *cfg) {
    agentsight_options o;
    memset(&o, 0, sizeof o);
    if (cfg->sink && !env_set("AGENTSIGHT_OUTPUT"))
        o.output = cfg->sink;
    if (cfg->conversation_id && !env_set("AGENTSIGHT_CONVERSATION_ID"))
        o.conversation_id = cfg->conversation_id;
    if (cfg->flush_timeout_ms >= 0 && !env_set("AGENTSIGHT_FLUSH_TIMEOUT_MS"))
        o.flush_timeout_ms = cfg->flush_timeout_ms;
    if (cfg->queue_policy != AGENTSIGHT_QUEUE_DEFAULT && !env_set("AGENTSIGHT_QUEUE_POLICY"))
        o.queue_policy = (agentsight_queue_policy)cfg->queue_policy;
    if (cfg->service && !env_set("AGENTSIGHT_SERVICE_NAME")) {
        size_t n = strlen(cfg->service);
        if (n >= sizeof as_cfg.service_name)
            n = sizeof as_cfg.service_name - 1;
        memcpy(as_cfg.service_name, cfg->service, n);
        as_cfg.service_name[n] = '\0';
    }
    return as_settings_apply(&o);
}

/* Hands the targets created since the last call to the pipeline, which writes their
 * names beside the ring files (a dead process's call records refer to them by id).
 * Called after every step that may create targets: install, dlopen, dlsym. Also used by
 * dlwrap.c (declared there). Not on the hot path; takes a lock. Can't fail. */
void as_preload_note_targets(void) {
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static uint32_t done;
    pthread_mutex_lock(&lock);
    uint32_t n = __atomic_load_n(&as_ntargets, __ATOMIC_ACQUIRE);
    for (uint32_t id = done; id < n; id++) {
        /* The description recovery decodes this target's records with (core/record.h);
         * kept for the process, as the pipeline keeps the pointer. */
        as_rec_desc d;
        memset(&d, 0, sizeof d);
        char *desc = NULL;
        if (as_callrec_describe(id, &d) == 0) {
            as_buf b;
            as_buf_init(&b);
            as_rec_desc_format(&d, &b);
            desc = b.oom ? NULL : strdup(as_buf_cstr(&b));
            as_buf_free(&b);
        }
        as_pipe_note_target(id, as_targets[id].action_name, as_targets[id].symbol,
                            as_targets[id].library, d.display, desc);
    }
    if (n > done)
        done = n;
    pthread_mutex_unlock(&lock);
}

static void atfork_child(void) {
    as_dlwrap_set_pid();
}

AS_OWN_ATFORK(own_fork, as_fork_nothing, as_fork_nothing, atfork_child)

__attribute__((constructor)) static void as_preload_init(void) {
    as_keptenv_keep(); /* first: every setting is read from the environment as it started */
    const char *off = as_keptenv_get("AGENTSIGHT_DISABLE");
    if (off && strcmp(off, "1") == 0) {
        as_nofollow_apply(); /* nothing tracked; children still run as without us */
        return;
    }
    /* setuid/setgid programs: never write files or read configs with raised privileges. */
    if (getauxval(AT_SECURE))
        return;
    as_in_agentsight++;
    /* Libraries opened on demand go through the C library's dlopen, never our wrapper
     * (which would instrument them). */
    if (as_real_init() == 0)
        as_dynlib_set_loader(as_real.dlopen, as_real.dlsym);
    as_dlwrap_set_pid();
    pthread_atfork(own_fork_prepare, own_fork_parent, own_fork_child);
    as_settings_load_at_start(AGENTSIGHT_QUEUE_DROP); /* the hot path must never wait */
    const char *path = as_keptenv_get("AGENTSIGHT_CONFIG");
    const char *extra = as_keptenv_get(AS_ENTRIES_ENV); /* `agentsight run -e` patterns */
    const char *llm = as_keptenv_get(AS_LLM_ENV);       /* `agentsight run --llm` */
    if (llm && strcmp(llm, "1") == 0)
        as_llm.enable = 1;
    if ((!path || !*path) && (!extra || !*extra)) {
        if (!as_llm.enable)
            as_info("AGENTSIGHT_CONFIG is not set: tracking nothing");
        goto out;
    }
    if (path && *path && as_config_load(path, &g_config) != 0)
        goto out; /* "PATH: cannot read: ..." was printed */
    if (extra && *extra)
        as_config_add_entries(&g_config, extra, strlen(extra), "-e");
    if (g_config.llm_enable >= 0 && !as_llm.enable)
        as_llm.enable = g_config.llm_enable;
    if (g_config.llm_capture >= 0)
        as_llm.capture = g_config.llm_capture;
    if (g_config.llm_max_string > 0)
        as_llm.max_string = g_config.llm_max_string;
    if (g_config.llm_plain_http[0])
        as_llm_sock_config(g_config.llm_plain_http, 1, NULL, 0); /* checked by the parser */
    if (g_config.nentries == 0) {
        if (!as_llm.enable)
            as_info("%s: no [actions] entries: tracking nothing", g_config.path);
        else if (apply_output(&g_config) != 0)
            as_llm.enable = 0; /* the [output] message was printed */
        goto out;
    }
    if (apply_output(&g_config) != 0) {
        as_error("%s: [output] refused: tracking nothing", path);
        goto out;
    }
    as_clock_select(); /* the calibration point is taken at the first record */
    as_capture_off = g_config.capture_off;
    as_capture_start();
    int n = as_install_start(&g_config);
    as_preload_note_targets();
    if (n < 0) {
        as_error("the interposer could not start: tracking nothing");
        goto out;
    }
    as_debug("%d functions wrapped", n);
out:
    if (as_llm.enable && as_llm_arm() == 0) {
        as_llm_tls_start();  /* LLM calls: the pipeline starts at the first one */
        as_llm_sock_start(); /* plain HTTP to local model servers */
    }
    as_nofollow_apply(); /* last: what the program's children will see */
    as_in_agentsight--;
}

/* The pipeline's own at-exit handler normally ran already; shutting down twice is
 * harmless, and this covers a program that unloads us without exit(). */
__attribute__((destructor)) static void as_preload_fini(void) {
    if (as_install_active())
        as_pipe_shutdown();
    /* The process ends here (exit or return from main; _exit and exec are not an end:
     * an exec'd image reports for itself): entries still unmatched are reported now,
     * with every dlopen'ed object counted. */
    if (as_install_config()) {
        as_install_report_unmatched();
        as_diag_end();
    }
}
