/* redis_url: the Redis address grammar of shadowtee and shadowtee-report (see
 * shadowtee/redis_url.h). */
#include "shadowtee/redis_url.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Copies [p, p + n) into dst (cap bytes with the NUL); -1 when it does not fit. */
static int copy(char *dst, size_t cap, const char *p, size_t n)
{
    if (n >= cap) return -1;
    memcpy(dst, p, n);
    dst[n] = '\0';
    return 0;
}

/* A whole decimal number in [lo, hi] from [p, p + n). */
static int number(const char *p, size_t n, long lo, long hi, long *out)
{
    char buf[24];
    if (n == 0 || n >= sizeof(buf)) return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)buf[i])) return -1;
    errno = 0;
    long v = strtol(buf, NULL, 10);
    if (errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int st_redis_url_parse(const char *text, st_redis_url_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->port = ST_REDIS_DEFAULT_PORT;
    const char *p = text ? text : "";
    if (strncmp(p, "redis://", 8) == 0) {
        p += 8;
        const char *at = strrchr(p, '@'); /* the last: a password may hold '@' and '/' */
        if (at) {
            const char *colon = memchr(p, ':', (size_t)(at - p));
            const char *pw = colon ? colon + 1 : p; /* redis://PASSWORD@host */
            if (colon && copy(out->user, sizeof(out->user), p, (size_t)(colon - p)) != 0)
                return fail(err, errlen, "user name longer than %d bytes", ST_REDIS_USER_MAX - 1);
            if (copy(out->password, sizeof(out->password), pw, (size_t)(at - pw)) != 0) {
                memset(out->user, 0, sizeof(out->user));
                return fail(err, errlen, "password longer than %d bytes",
                            ST_REDIS_PASSWORD_MAX - 1);
            }
            p = at + 1;
        }
    } else if (strncmp(p, "unix:", 5) == 0) {
        return fail(err, errlen, "unix: sockets are not supported for Redis (use HOST:PORT)");
    } else if (strstr(p, "://")) {
        return fail(err, errlen, "only redis:// URLs are supported");
    }
    size_t n = strcspn(p, "/");
    if (p[n] == '/') {
        long db = 0;
        if (p[n + 1] && number(p + n + 1, strlen(p + n + 1), 0, ST_REDIS_DB_MAX, &db) != 0) {
            memset(out, 0, sizeof(*out));
            out->port = ST_REDIS_DEFAULT_PORT;
            return fail(err, errlen, "bad database number '%.40s' (0..%d)", p + n + 1,
                        ST_REDIS_DB_MAX);
        }
        out->db = (int)db;
    }
    const char *host = p, *portstr = NULL;
    size_t hostlen = n;
    if (n && p[0] == '[') { /* [IPv6]:port */
        const char *rb = memchr(p, ']', n);
        if (!rb) goto bad_host;
        host = p + 1;
        hostlen = (size_t)(rb - host);
        if (rb + 1 < p + n) {
            if (rb[1] != ':') goto bad_host;
            portstr = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', n);
        if (colon) {
            if (memchr(colon + 1, ':', (size_t)(p + n - colon - 1))) {
                memset(out, 0, sizeof(*out));
                out->port = ST_REDIS_DEFAULT_PORT;
                return fail(err, errlen, "an IPv6 address needs brackets ([::1]:6379)");
            }
            hostlen = (size_t)(colon - p);
            portstr = colon + 1;
        }
    }
    if (portstr) {
        long port;
        size_t plen = (size_t)(p + n - portstr);
        if (number(portstr, plen, 1, 65535, &port) != 0) {
            memset(out, 0, sizeof(*out));
            out->port = ST_REDIS_DEFAULT_PORT;
            return fail(err, errlen, "bad port '%.*s' (1..65535)", (int)(plen > 40 ? 40 : plen),
                        portstr);
        }
        out->port = (int)port;
    }
    if (hostlen == 0) {
        memset(out, 0, sizeof(*out));
        out->port = ST_REDIS_DEFAULT_PORT;
        return fail(err, errlen, "missing host");
    }
    for (size_t i = 0; i < hostlen; i++)
        if (!isalnum((unsigned char)host[i]) && !strchr(".-_:%", host[i])) goto bad_host;
    if (copy(out->host, sizeof(out->host), host, hostlen) != 0) goto bad_host;
    return 0;
bad_host:
    memset(out, 0, sizeof(*out));
    out->port = ST_REDIS_DEFAULT_PORT;
    return fail(err, errlen, "bad host (a name, an IPv4 address or [IPv6], at most %d bytes)",
                ST_REDIS_HOST_MAX - 1);
}
