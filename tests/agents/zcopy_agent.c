/* zcopy_agent.c - a program that carries a function of zlib's (inflateReset2, exported
 * with -rdynamic, as node exports the zlib built into it) and posts one chat completion
 * over plain HTTP to 127.0.0.1:PORT (argv[1]) asking for gzip. Its inflateReset2 is not
 * zlib's: if the libz the interposer opens to decode the answer called it, it says so on
 * stderr and fails. tests/integration/test_llm_clients.py checks that it is never called
 * and that the gzip answer is decoded. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int inflateReset2(void *strm, int window_bits);
int inflateReset2(void *strm, int window_bits) {
    (void)strm, (void)window_bits;
    fputs("zcopy_agent: the program's own inflateReset2 was called\n", stderr);
    return -2; /* Z_STREAM_ERROR */
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return 1;
    const char *body = "{\"model\":\"zmodel\",\"messages\":[]}";
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n"
                     "Accept-Encoding: gzip\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     argv[1], strlen(body), body);
    if (write(fd, req, (size_t)n) != n)
        return 1;
    char buf[4096];
    size_t total = 0;
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        total += (size_t)r;
    close(fd);
    printf("read %s\n", total > 0 ? "some" : "nothing");
    return 0;
}
