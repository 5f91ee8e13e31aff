/* llm_facts.h - what an LLM action (one exchange with a model API, made by the TLS hooks:
 * metadata.source "llm") says about the call, read back from its tools_used JSON, so the
 * sinks that send spans (otlp, agentsight ingest) map the same facts to their attributes
 * without parsing the action themselves; and the OpenTelemetry GenAI span of such a call
 * (the ingest attributes are in ingest.c, beside the rest of that wire shape).
 *
 * Threads: no shared state; called on the exporter thread. Nothing here blocks. */
#ifndef AS_LLM_FACTS_H
#define AS_LLM_FACTS_H

#include <stdint.h>

#include "core/action.h"
#include "core/otlp_enc.h"

typedef struct as_llm_facts {
    char op[32];              /* gen_ai.operation.name: chat, text_completion, embeddings */
    char provider[32];        /* openai, anthropic, ... */
    char request_model[256];  /* "" when the request named none */
    char response_model[256]; /* "" when the answer named none */
    char server_address[256]; /* host of the Host header, without the port */
    int server_port;          /* 0: the Host header named none */
    int stream;               /* 1: the answer was a stream of events */
    int http_status;          /* 0: unknown */
    /* Usage as the provider reported it; -1 when not reported. OpenAI's input counts
     * include the cached ones, Anthropic's exclude both cache counts. */
    int64_t input, output, cache_read, cache_write, reasoning;
} as_llm_facts;

/* 1 when metadata says the action is an LLM call (source "llm"); a cheap test on the JSON
 * text, no parser. This function can't fail. */
int as_llm_is_action(const as_action *a);

/* Fills f from a's tools_used and action_name. Returns 0, or -1 when a is not an LLM
 * action, its tools_used is not a JSON object or names no provider (f is then zeroed, the
 * counts -1). Loads cJSON on demand. */
int as_llm_facts_of(const as_action *a, as_llm_facts *f);

/* Input tokens as the OpenTelemetry GenAI conventions count them (cached tokens included):
 * Anthropic's input plus both cache counts, OpenAI's as reported. -1: not reported. */
int64_t as_llm_input_all(const as_llm_facts *f);

/* Input tokens billed at the full rate (cached ones excluded), as AgentSight's ingest
 * counts them: OpenAI's input minus the cache reads, Anthropic's as reported. -1: not
 * reported. */
int64_t as_llm_input_uncached(const as_llm_facts *f);

/* Makes sp (ids and times already set) the OpenTelemetry span of an LLM call: kind CLIENT,
 * named as the action ("chat gpt-4o-mini"), with gen_ai.operation.name,
 * gen_ai.provider.name, gen_ai.request.model, gen_ai.response.model,
 * gen_ai.usage.input_tokens (as_llm_input_all) and .output_tokens, the cache and reasoning
 * counts the provider reported (gen_ai.usage.cache_read.input_tokens,
 * .cache_creation.input_tokens, .reasoning.output_tokens), server.address, server.port,
 * http.response.status_code; on failure error.type (the HTTP status code as text, else
 * "_OTHER") and status 2 with error_msg as its message. The attribute strings point into
 * a, f and status_text, which must outlive sp. This function can't fail. */
void as_llm_otlp_span(as_otlp_span *sp, const as_action *a, const as_llm_facts *f,
                      char status_text[8]);

#endif
