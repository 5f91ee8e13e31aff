/* llm_addr.c - the plain_http value of [llm] (llm_addr.h): numeric addresses only, no
 * name lookups (the value is read in the constructor of every process). */
#include "hook/llm_addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_one(const char *s, size_t n, as_llm_watch *w, int *loop, char *why,
                     size_t whylen) {
    char tok[80];
    if (n == 0 || n >= sizeof tok) {
        snprintf(why, whylen, "an empty or too long entry");
        return -1;
    }
    memcpy(tok, s, n);
    tok[n] = '\0';
    if (strcmp(tok, "loopback") == 0 || strcmp(tok, "localhost") == 0) {
        *loop = 1;
        return 0;
    }
    char *host = tok, *port = NULL;
    memset(w, 0, sizeof *w);
    if (tok[0] == '[') {
        char *close = strchr(tok, ']');
        if (!close) {
            snprintf(why, whylen, "'%s': expected ']'", tok);
            return -1;
        }
        *close = '\0';
        host = tok + 1;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1]) {
            snprintf(why, whylen, "'%s': expected ':PORT' after ']'", s);
            return -1;
        }
        w->family = AF_INET6;
    } else {
        port = strchr(tok, ':');
        if (port)
            *port++ = '\0';
        w->family = AF_INET;
    }
    if (inet_pton(w->family, host, w->addr) != 1) {
        snprintf(why, whylen, "'%s' is not a numeric IPv4 address or [IPv6] address", host);
        return -1;
    }
    if (port) {
        char *end;
        long p = strtol(port, &end, 10);
        if (!*port || *end || p < 1 || p > 65535) {
            snprintf(why, whylen, "'%s' is not a port from 1 to 65535", port);
            return -1;
        }
        w->port = (uint16_t)p;
    }
    return 0;
}

int as_llm_addr_parse(const char *spec, as_llm_watchset *out, char *why, size_t whylen) {
    as_llm_watch ws[AS_LLM_MAX_WATCH];
    int nw = 0, loop = 0;
    size_t len = strlen(spec);
    while (len && (spec[len - 1] == ' ' || spec[len - 1] == '\t'))
        len--;
    if (len == 3 && memcmp(spec, "off", 3) == 0) {
        /* nothing watched */
    } else {
        for (size_t i = 0; i <= len;) {
            size_t j = i;
            while (j < len && spec[j] != ',')
                j++;
            size_t a = i, b = j;
            while (a < b && (spec[a] == ' ' || spec[a] == '\t'))
                a++;
            while (b > a && (spec[b - 1] == ' ' || spec[b - 1] == '\t'))
                b--;
            if (nw == AS_LLM_MAX_WATCH) {
                snprintf(why, whylen, "more than %d addresses", AS_LLM_MAX_WATCH);
                return -1;
            }
            if (parse_one(spec + a, b - a, &ws[nw], &loop, why, whylen) != 0)
                return -1;
            if (ws[nw].family)
                nw++;
            i = j + 1;
        }
    }
    memset(out, 0, sizeof *out);
    memcpy(out->w, ws, (size_t)nw * sizeof ws[0]);
    out->n = nw;
    out->loopback = loop;
    return 0;
}

int as_llm_addr_match(const as_llm_watchset *ws, const struct sockaddr *sa, socklen_t len) {
    if (!sa)
        return 0;
    const unsigned char *a;
    int fam;
    uint16_t port;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const void *)sa;
        a = (const unsigned char *)&in->sin_addr;
        fam = AF_INET;
        port = ntohs(in->sin_port);
        if (ws->loopback && a[0] == 127)
            return 1;
    } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        a = (const unsigned char *)&in6->sin6_addr;
        fam = AF_INET6;
        port = ntohs(in6->sin6_port);
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, v4mapped, 12) == 0) { /* ::ffff:a.b.c.d is the IPv4 address */
            a += 12;
            fam = AF_INET;
            if (ws->loopback && a[0] == 127)
                return 1;
        } else if (ws->loopback && IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
            return 1;
        }
    } else {
        return 0;
    }
    for (int i = 0; i < ws->n; i++)
        if (ws->w[i].family == fam && (!ws->w[i].port || ws->w[i].port == port) &&
            memcmp(ws->w[i].addr, a, fam == AF_INET ? 4 : 16) == 0)
            return 1;
    return 0;
}