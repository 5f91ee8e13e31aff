/* llm_sock.h - plain-HTTP exchanges with local model servers (Ollama, vLLM, llama.cpp on
 * 127.0.0.1): GOT slots of connect/close and the read/write/send/recv family pointed at
 * wrappers; a TCP socket connected to a watched address (loopback by default, or the
 * [llm] plain_http list) hands its bytes to core/llm_detect.h as a TLS connection's
 * plaintext does. Every other descriptor costs one array load per call. */
#ifndef AS_LLM_SOCK_H
#define AS_LLM_SOCK_H

#include <stddef.h>

/* Checks a plain_http value (llm_addr.h). Returns 0, or -1 with a reason in why (may be
 * NULL). With apply set, a valid value becomes the watched set (before
 * as_llm_sock_start). */
int as_llm_sock_config(const char *spec, int apply, char *why, size_t whylen);

/* Patches every object loaded now (again for later ones: as_llm_sock_scan), unless the
 * watched set is empty (plain_http = off). Returns the slots written. Call once, from the
 * constructor, after the pipeline was armed for LLM actions. */
int as_llm_sock_start(void);

/* Patches objects loaded since (after a dlopen). Does nothing before as_llm_sock_start()
 * or while as_in_agentsight is set. */
int as_llm_sock_scan(void);

#endif
