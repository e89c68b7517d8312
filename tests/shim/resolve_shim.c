/*
 * resolve_shim: a test-only getaddrinfo() for LD_PRELOAD. Names listed in
 * the file named by $RESOLVE_SHIM_HOSTS resolve to exactly the addresses
 * given there, in that order; every other name (and every IP literal) goes
 * to the real getaddrinfo. The file is read again on every call, so a test
 * changes what a name resolves to by rewriting it (write a new file, then
 * rename it over the old one). Built by the Makefile for the integration
 * tests only; the product binary never links it.
 *
 * File format, one name per line ('#' starts a comment):
 *     NAME [delay=MS] [ADDRESS ...]
 * ADDRESS is an IPv4 or IPv6 literal; the port is the service asked for.
 * A name with no address fails with EAI_NONAME. delay=MS makes the lookup
 * take that long first (a slow DNS server), so a test can tell whether a
 * lookup ever runs on an event-loop thread.
 *
 * The result is allocated as glibc does (one block per entry, ai_addr
 * inside it, no canonical name), so glibc's freeaddrinfo frees it.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define SHIM_MAX_ADDRS 16

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

struct entry {
    struct addrinfo ai;
    struct sockaddr_storage sa;
};

static int real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                            struct addrinfo **res)
{
    static gai_fn real;
    if (!real) real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (!real) return EAI_SYSTEM;
    return real(node, service, hints, res);
}

/* Finds node in the hosts file: 1 with its addresses (n of them, up to
 * SHIM_MAX_ADDRS) and delay, 0 when it is not listed or the file is absent. */
static int lookup(const char *node, char addrs[][64], int *n, long *delay_ms)
{
    const char *path = getenv("RESOLVE_SHIM_HOSTS");
    if (!path || !*path) return 0;
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    char line[1024];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "#\r\n")] = '\0';
        char *save = NULL;
        char *name = strtok_r(line, " \t", &save);
        if (!name || strcasecmp(name, node) != 0) continue;
        found = 1;
        *n = 0;
        *delay_ms = 0;
        for (char *tok = strtok_r(NULL, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
            if (strncmp(tok, "delay=", 6) == 0)
                *delay_ms = strtol(tok + 6, NULL, 10);
            else if (*n < SHIM_MAX_ADDRS)
                snprintf(addrs[(*n)++], 64, "%s", tok);
        }
    }
    fclose(f);
    return found;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    char addrs[SHIM_MAX_ADDRS][64];
    int n = 0;
    long delay_ms = 0;
    if (!node || !lookup(node, addrs, &n, &delay_ms))
        return real_getaddrinfo(node, service, hints, res);
    if (delay_ms > 0) {
        struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    long port = 0;
    if (service) {
        char *end;
        port = strtol(service, &end, 10);
        if (*end != '\0' || port < 0 || port > 65535) return EAI_SERVICE;
    }
    int family = hints ? hints->ai_family : AF_UNSPEC;
    int socktype = hints && hints->ai_socktype ? hints->ai_socktype : SOCK_STREAM;
    int protocol = socktype == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
    struct addrinfo *head = NULL, **tail = &head;
    for (int i = 0; i < n; i++) {
        struct entry *e = calloc(1, sizeof(*e));
        if (!e) {
            freeaddrinfo(head);
            return EAI_MEMORY;
        }
        struct sockaddr_in *s4 = (struct sockaddr_in *)&e->sa;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&e->sa;
        if (inet_pton(AF_INET, addrs[i], &s4->sin_addr) == 1 &&
            (family == AF_UNSPEC || family == AF_INET)) {
            s4->sin_family = AF_INET;
            s4->sin_port = htons((unsigned short)port);
            e->ai.ai_addrlen = sizeof(*s4);
        } else if (inet_pton(AF_INET6, addrs[i], &s6->sin6_addr) == 1 &&
                   (family == AF_UNSPEC || family == AF_INET6)) {
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons((unsigned short)port);
            e->ai.ai_addrlen = sizeof(*s6);
        } else {
            free(e); /* not an address, or not of the family asked for */
            continue;
        }
        e->ai.ai_family = e->sa.ss_family;
        e->ai.ai_socktype = socktype;
        e->ai.ai_protocol = protocol;
        e->ai.ai_addr = (struct sockaddr *)&e->sa;
        *tail = &e->ai;
        tail = &e->ai.ai_next;
    }
    if (!head) return EAI_NONAME;
    *res = head;
    return 0;
}
