/* llm_addr.h - the servers whose plain-HTTP exchanges are read (the [llm] plain_http
 * value): "off", "loopback", or a comma-separated list of "loopback", "IPv4[:PORT]",
 * "[IPv6][:PORT]" (no port: any port). Parsing and matching only: no state, no I/O, so
 * the config parser (and its fuzz target) use it alone. */
#ifndef AS_LLM_ADDR_H
#define AS_LLM_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define AS_LLM_MAX_WATCH 16

typedef struct as_llm_watch {
    int family; /* AF_INET, AF_INET6 */
    unsigned char addr[16];
    uint16_t port; /* host order; 0: any */
} as_llm_watch;

typedef struct as_llm_watchset {
    int loopback; /* 127.0.0.0/8, ::1, ::ffff:127.x */
    int n;
    as_llm_watch w[AS_LLM_MAX_WATCH];
} as_llm_watchset;

/* Parses spec into *out. Returns 0, or -1 with a reason in why (out unspecified). */
int as_llm_addr_parse(const char *spec, as_llm_watchset *out, char *why, size_t whylen);

/* 1 when the socket address (of length len) is one of ws's, else 0. */
int as_llm_addr_match(const as_llm_watchset *ws, const struct sockaddr *sa, socklen_t len);

/* 1 when ws watches nothing (plain_http = off). */
static inline int as_llm_addr_none(const as_llm_watchset *ws) {
    return !ws->loopback && ws->n == 0;
}

#endif
