/* ingest.h - the payload of today's AgentSight ingest API (POST /api/ingest/): actions as
 * spans grouped by conversation, with ids derived from each action's event id so that a
 * retried request is deduplicable, and gzip of large bodies (zlib opened on demand). */
#ifndef AS_INGEST_H
#define AS_INGEST_H

#include <stddef.h>

#include "core/action.h"
#include "core/jsonw.h"

/* Span kinds of agentsight.span.kind this library emits. */
typedef enum as_span_kind { AS_SPAN_TOOL, AS_SPAN_LLM } as_span_kind;

/* "tool", "llm". */
const char *as_span_kind_name(as_span_kind kind);

/* The span ids of an action: span_id (16 hex) and trace_id (32 hex) from its event id (32
 * hex; NULL or malformed: from the action's name and times instead). Never all zeros.
 * Each action is the root of its own trace (parent_span_id null). This function can't
 * fail. */
void as_ingest_ids(const as_action *a, char span_id[17], char trace_id[33]);

/* AS_SPAN_LLM for an LLM call (metadata.source "llm"), else AS_SPAN_TOOL. This function
 * can't fail. */
as_span_kind as_ingest_kind_of(const as_action *a);

/* Appends one span object for a (conversation id a->conversation_id) of the given kind:
 * span_id, trace_id, parent_span_id, kind, name, started_at, ended_at, duration_ms,
 * status, attributes, events. Tool attributes: agentsight.tool.name, .arguments (JSON
 * text of tools_used.parameters, else of tools_used), .response, .error (when known).
 * LLM attributes (AS_SPAN_LLM; the span is named by the model that ran, as the SDK names
 * them): agentsight.entity.name, gen_ai.system and gen_ai.provider.name,
 * gen_ai.operation.name, gen_ai.request.model (the model that ran) and
 * agentsight.llm.requested_model (when the request named another), gen_ai.response.model,
 * gen_ai.usage.input_tokens (uncached) and .output_tokens, agentsight.llm.cache_read_tokens,
 * .cache_write_tokens, .reasoning_tokens, .embedding_tokens when non-zero,
 * agentsight.llm.usage_reported false when no usage was reported, .streaming true for
 * streams, .error on failure, server.address, server.port, http.response.status_code; an
 * action that does not read as a model call is sent as a tool span.
 * The action's metadata travels as agentsight.metadata (JSON text) and its event id as
 * agentsight.event_id. Needs cJSON loaded (as_cjson_lib). On OOM b->oom is set. */
void as_ingest_span(as_buf *b, const as_action *a, as_span_kind kind);

/* Appends the start of an ingest body up to the first conversation block's spans list:
 * {"sdk":{...},"conversations":[ . Then per conversation as_ingest_block_open(),
 * spans separated by ',', as_ingest_block_close(); finally as_ingest_end(). */
void as_ingest_begin(as_buf *b);
/* environment may be NULL or "" (omitted). first: 1 for the first block of the body. */
void as_ingest_block_open(as_buf *b, const char *conversation_id, const char *environment,
                          int first);
void as_ingest_block_close(as_buf *b);
void as_ingest_end(as_buf *b);

/* Bodies larger than this are gzipped when the server lists the gzip-ingest capability. */
#define AS_INGEST_GZIP_MIN 8192

#endif
