/* fuzz_spool.c - libFuzzer target for the spool's batch reader (spool.c): a batch file on
 * disk may be empty, cut short or garbage. The input is written as a pending batch of a
 * real spool (a private directory made once per process), then claimed as a replay
 * claims it (a damaged batch is set aside and its whole action lines spooled again) and
 * read line by line. Every line read back as an action must write out (as the file sink
 * and a dead-letter record write it) as valid UTF-8 JSON, and its tagged metadata too;
 * claiming must end, whatever the file held. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/action.h"
#include "core/jsonw.h"
#include "core/spool.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static as_spool *sp;
static char root[256];

static void wipe(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

/* One line of a batch: an action is written back and checked. */
static int on_line(const char *line, size_t len, void *ctx) {
    int *n = ctx;
    (*n)++;
    as_spool_rec rec;
    if (as_spool_parse_line(line, len, &rec) != 0)
        return 0;
    as_buf b;
    as_buf_init(&b);
    as_action_to_jsonl(&rec.a, &b);
    if (!b.oom) {
        if (b.len == 0 || b.data[b.len - 1] != '\n' || memchr(b.data, '\n', b.len - 1))
            abort();
        fuzz_json_ok("replayed action", b.data, b.len);
        /* the dead-letter record of that line */
        as_buf d;
        as_buf_init(&d);
        char dl[300];
        snprintf(dl, sizeof dl, "%s/dead-letter.jsonl", root);
        unlink(dl);
        if (as_spool_dead_letter(sp, 400, rec.a.response, b.data, b.len) == 0) {
            FILE *f = fopen(dl, "r");
            char *l = NULL;
            size_t cap = 0;
            ssize_t k = f ? getline(&l, &cap, f) : -1;
            if (k <= 0)
                abort();
            fuzz_json_ok("dead letter", l, (size_t)k);
            as_spool_rec back;
            if (as_spool_parse_line(l, (size_t)k, &back) != 0) {
                fprintf(stderr, "dead letter unreadable: %s\n", l);
                abort(); /* a dead letter must read back */
            }
            as_spool_rec_free(&back);
            free(l);
            fclose(f);
        }
        as_buf_free(&d);
    }
    as_buf_reset(&b);
    char id[33];
    as_spool_tag_action(rec.a.metadata, rec.a.event_id, &b, id);
    if (!b.oom) {
        fuzz_json_ok("tagged metadata", b.data, b.len);
        /* one identity, 32 hex digits, the one every reader of the metadata sees */
        if (strlen(id) != 32 || strspn(id, "0123456789abcdef") != 32)
            abort();
        cJSON *m = cJSON_ParseWithLength(b.data, b.len);
        int n = 0;
        for (cJSON *c = m ? m->child : NULL; c; c = c->next)
            if (c->string && strcmp(c->string, "agentsight_event_id") == 0)
                n += cJSON_IsString(c) && strcmp(c->valuestring, id) == 0 ? 1 : 100;
        cJSON_Delete(m);
        if (n != 1) {
            fprintf(stderr, "tagged metadata: id %s not its one event id: %.*s\n", id, (int)b.len,
                    b.data);
            abort();
        }
    }
    as_buf_free(&b);
    as_spool_rec_free(&rec);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!sp) {
        snprintf(root, sizeof root, "/tmp/agentsight-fuzz-spool-%d", (int)getpid());
        sp = as_spool_open(root, "agentsight:http://127.0.0.1:9/", 1 << 20);
        if (!sp)
            abort();
    }
    wipe(as_spool_dir(sp));
    char path[1024];
    snprintf(path, sizeof path, "%s/00000000000000000001-1-1.jsonl", as_spool_dir(sp));
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    fwrite(data, 1, size, f);
    fclose(f);
    /* Claim and read until nothing is left: a set-aside batch's lines come back once. */
    int claims = 0;
    int64_t key;
    while (as_spool_claim(sp, path, sizeof path, &key) == 1) {
        if (++claims > 2)
            abort();
        char uri[512];
        int lines = 0;
        if (as_spool_read(path, uri, sizeof uri, on_line, &lines) != 0)
            abort();
        if (!memchr(uri, '\0', sizeof uri))
            abort();
        as_spool_release(path);
    }
    as_spool_commit(sp);
    return 0;
}
