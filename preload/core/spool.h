/* spool.h - the on-disk spool where HTTP sinks leave batches they could not deliver, and
 * the dead-letter file for actions a server refused; read back for replay by the sinks
 * and by `agentsight send`. Layout: see the comment at the top of spool.c.
 *
 * Threads: an as_spool belongs to one thread (the exporter, or the CLI). Several
 * processes may share one spool directory: files are written under a temporary name and
 * renamed, and a batch is claimed by renaming it before replay. */
#ifndef AS_SPOOL_H
#define AS_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "core/action.h"

typedef struct as_spool as_spool;

/* Default total size bound of one sink's spool: AGENTSIGHT_SPOOL_MAX_BYTES, else 64 MiB. */
uint64_t as_spool_default_max(void);

/* The spool root: dir when non-empty, else $XDG_STATE_HOME/agentsight/spool, else
 * $HOME/.local/state/agentsight/spool. Writes it into out (cap bytes). Returns 0, or -1
 * when no root can be named (no HOME). */
int as_spool_root(const char *dir, char *out, size_t cap);

/* Opens the spool of one sink (directory created 0700). uri names the sink as it is
 * re-opened at replay ("otlp:http://h:4318", "agentsight:https://api..."); it must hold
 * no secret (as_spool_uri_clean() strips user:password@). Batches claimed by processes
 * that no longer run are released. max_bytes 0 means as_spool_default_max().
 * Returns the spool, or NULL (message logged, nothing left allocated). */
as_spool *as_spool_open(const char *root, const char *uri, uint64_t max_bytes);

/* Writes what is staged, then frees. NULL is accepted. */
void as_spool_close(as_spool *sp);

/* Copies uri into out without any "user:password@" part. */
void as_spool_uri_clean(const char *uri, char *out, size_t cap);

/* Stages one JSONL line (an as_action_to_jsonl line, with or without its '\n') for the
 * next batch file. key orders batches (Unix ns; 0 means the time the first of the staged
 * lines was staged): lines with a different
 * key than those staged first commit the staged ones. Returns 0, -1 when out of memory
 * (the line is lost and counted as dropped). */
int as_spool_stage(as_spool *sp, int64_t key, const char *line, size_t len);

/* Writes the staged lines as one batch file (temp name, fsync, rename), dropping the
 * oldest batches first when the spool would exceed its bound. Returns the number of
 * lines written (0 when nothing was staged), or -1 when writing failed (the lines are
 * counted as dropped and logged). */
long as_spool_commit(as_spool *sp);

/* Staged lines are committed as one batch file when they reach AS_SPOOL_BATCH_BYTES (or a
 * quarter of the spool's bound, when smaller), or
 * by as_spool_commit_due() once the oldest has waited AS_SPOOL_LINGER_MS: during an outage
 * a sink writes a few large files instead of one small file per exporter pass (creating
 * files costs the exporter more than writing them). What is staged is in memory only, so
 * the sinks commit what they staged before a send returns whenever the staged lines
 * have no other durable copy (new actions). */
#define AS_SPOOL_BATCH_BYTES (1u << 20)
#define AS_SPOOL_LINGER_MS 100

/* The longest a spool goes without summing its directory before it writes a batch: the
 * bound holds across processes spooling for one sink, give or take what they write in
 * that time. */
#define AS_SPOOL_RESCAN_MS 1000

/* Commits the staged lines when the oldest has waited AS_SPOOL_LINGER_MS or more. Returns
 * what as_spool_commit() returns, or 0 when nothing was due. */
long as_spool_commit_due(as_spool *sp);

/* Lines staged and not yet committed. */
size_t as_spool_staged(const as_spool *sp);

/* Claims the oldest pending batch for replay by renaming it. Returns 1 and fills path
 * (the claimed file) and *key (its order key); 0 when nothing is pending; -1 on error. */
int as_spool_claim(as_spool *sp, char *path, size_t cap, int64_t *key);

/* A claimed batch is done: removes it. Returns 0 or -1. */
int as_spool_release(const char *claimed_path);

/* A batch a sink replays: the claimed file, its order key, and how many of its parts the
 * sink still has in flight (1 while the sink is loading it). */
typedef struct as_spool_replay {
    char path[1024];
    int64_t key;
    size_t remaining;
    int loaded; /* all lines read (for sinks that count parts while loading) */
} as_spool_replay;

/* Commits what is staged (it is older than anything new), then claims the oldest pending
 * batch. Returns it with remaining = 1, or NULL: nothing pending (*pending is then set to
 * 0), out of memory, or an error. */
as_spool_replay *as_spool_replay_start(as_spool *sp, int *pending);

/* The replayed batch is done: commits what its failures staged, removes it, frees rp. */
void as_spool_replay_end(as_spool *sp, as_spool_replay *rp);

/* The write-ahead copy of a sink (rule 1 of the data flow: an action leaves its ring
 * only into a durable place): writes lines (count JSONL action lines, each ending in
 * '\n') as one batch file claimed by this process before any of them is sent. Returns a
 * replay (remaining 0, loaded 1, key now) the sink counts its actions into and ends with
 * as_spool_replay_end() when each is delivered or staged again (the file is removed
 * then); or NULL when the file cannot be written (logged; nothing left behind). A
 * process that dies leaves the file claimed: the next as_spool_open() (or `agentsight
 * send`) releases it as pending, so what was not answered yet is replayed (what was
 * is sent again, with the same event ids). */
as_spool_replay *as_spool_wal(as_spool *sp, const char *lines, size_t len, size_t count);

/* Puts a claimed batch back as pending (replay interrupted). Returns 0 or -1. */
int as_spool_unclaim(const char *claimed_path);

/* Pending batches (not counting claimed ones) and their total size. */
size_t as_spool_pending(as_spool *sp, uint64_t *bytes);

/* Lines dropped because of the size bound or write errors since open. */
uint64_t as_spool_dropped(const as_spool *sp);

/* The sink directory of this spool. */
const char *as_spool_dir(const as_spool *sp);

/* Appends one dead-letter record to <root>/dead-letter.jsonl (0600):
 * {"sink":URI,"status":N,"answer":"...","action":<line>}. Returns 0 or -1.
 * A refusal for authentication (status 401 or 403) is not a dead letter: the line is
 * staged back into the spool (as as_spool_stage(sp, 0, ...)) and sp replays nothing more
 * in this process (as_spool_replay_start returns NULL); logged once per spool. */
int as_spool_dead_letter(as_spool *sp, long status, const char *answer, const char *line,
                         size_t len);

/* Batches set aside as damaged by this process, in any spool: a batch that is empty,
 * cut short or holds lines that are not actions (see spool.c) is renamed <name>.bad when
 * it is claimed or listed by as_spool_foreach_sink(), its readable actions pending again. */
unsigned long as_spool_set_aside(void);

/* Reads a batch (or any JSONL file of actions) as far as it reaches when opened. Calls
 * fn for each action line (the header line is skipped). Stops when fn returns non-zero and returns
 * that value; returns 0 at the end, -1 when the file cannot be read. When uri is non-NULL it
 * receives the header's sink URI ("" for a plain JSONL file). */
int as_spool_read(const char *path, char *uri, size_t uri_cap,
                  int (*fn)(const char *line, size_t len, void *ctx), void *ctx);

/* Calls fn(uri, dir, ctx) for every sink directory under root that has pending
 * batches (uri from its oldest batch with a readable header), after setting aside the
 * damaged ones (as_spool_set_aside). Returns the number visited. */
int as_spool_foreach_sink(const char *root, void (*fn)(const char *uri, const char *dir, void *ctx),
                          void *ctx);

/* Gives an action its identity for duplicate detection: writes into out the metadata
 * object text with an "agentsight_event_id" member (32 hex: 64 random bits per process,
 * then a counter), keeping an id the metadata already has (a replayed action), and
 * copies the id into id (33 bytes). metadata may be NULL. This function can't fail
 * (out->oom is set when memory ran out). */
void as_spool_tag_metadata(const char *metadata, as_buf *out, char id[33]);

/* as_spool_tag_metadata for an action that has its own event_id (NULL: as above): the
 * metadata's agentsight_event_id becomes that id, which is copied into id. */
void as_spool_tag_action(const char *metadata, const char *event_id, as_buf *out, char id[33]);

/* An action read back from a JSONL line. The action borrows strings owned by rec. */
typedef struct as_spool_rec {
    as_action a;
    void *json;       /* the parsed line (cJSON) */
    char *tools_used; /* printed object text, or NULL */
    char *metadata;   /* printed object text, or NULL */
} as_spool_rec;

/* Parses one JSONL action line (the file sink's format), or a dead-letter record (its
 * "action"). Returns 0 and fills rec, or -1
 * when the line is not an action (rec left empty; nothing to free). */
int as_spool_parse_line(const char *line, size_t len, as_spool_rec *rec);
void as_spool_rec_free(as_spool_rec *rec);

#endif
