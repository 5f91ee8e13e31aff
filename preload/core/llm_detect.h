/* llm_detect.h - one TLS connection's plaintext seen as HTTP exchanges with a language-model
 * API (OpenAI and Anthropic shapes, on any host), each exchange turned into one action:
 * model, token usage, latency, the assistant's text, the API's error. */
#ifndef AS_LLM_DETECT_H
#define AS_LLM_DETECT_H

#include <stddef.h>

/* What the [llm] section (or `agentsight run --llm`) asks for. */
typedef struct as_llm_opts {
    int enable;     /* 1: TLS exchanges are watched */
    int capture;    /* AS_LLM_CAPTURE_* */
    int max_string; /* bytes of response text (and prompt) kept; default 4096 */
} as_llm_opts;

enum { AS_LLM_CAPTURE_NONE = 0, AS_LLM_CAPTURE_RESPONSE = 1, AS_LLM_CAPTURE_PROMPTS = 2 };

extern as_llm_opts as_llm;

/* Environment variable `agentsight run --llm` sets: "1" enables with the defaults. */
#define AS_LLM_ENV "AGENTSIGHT_LLM"

typedef struct as_llm_conn as_llm_conn;

/* A new connection's state, or NULL when out of memory (then the connection is not
 * watched). */
as_llm_conn *as_llm_conn_new(void);

/* Plaintext the program wrote (requests) or read (responses). Runs the parsers; an
 * exchange that ends here is turned into an action and queued. Never fails. */
void as_llm_conn_wrote(as_llm_conn *c, const void *data, size_t len);
void as_llm_conn_read(as_llm_conn *c, const void *data, size_t len);

/* 1 when the connection is passed through for good: it does not carry HTTP/1.x, or its
 * first exchange was no model API's and was answered with something else than JSON (a
 * download). Its caller may then free c and remember only that (llm_tls.c does). */
int as_llm_conn_ignored(const as_llm_conn *c);

/* The connection ended: a response read until close ends here; frees c. */
void as_llm_conn_free(as_llm_conn *c);

/* Arms the pipeline for LLM actions (pipeline.h as_pipe_arm: it starts at the first
 * one) with the packed-action decoder registered. Returns 0, or -1 when the sink URIs are
 * refused (a message was printed). */
int as_llm_arm(void);

/* Test seam: where finished actions go (NULL: agentsight_track_action). */
struct agentsight_action;
typedef void (*as_llm_emit_fn)(const struct agentsight_action *a);
void as_llm_set_emit(as_llm_emit_fn fn);

#endif
