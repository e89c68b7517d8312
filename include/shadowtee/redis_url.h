/*
 * The Redis address both programs take (shadowtee --redis, shadowtee-report
 * --redis), one grammar (comparator/redis_url.c):
 *
 *     [redis://][[USER]:PASSWORD@ | PASSWORD@]HOST[:PORT][/DB]
 *
 * credentials only after redis://; HOST a name, an IPv4 address or an IPv6
 * address in brackets ([::1]:6379); PORT 1..65535 (default 6379); DB
 * 0..ST_REDIS_DB_MAX (default 0, "/" alone is 0). Other schemes (rediss://,
 * http://) and unix: sockets are refused. No I/O, no allocation.
 */
#ifndef SHADOWTEE_REDIS_URL_H
#define SHADOWTEE_REDIS_URL_H

#include <stddef.h>

#define ST_REDIS_HOST_MAX     256 /* bytes of a host, NUL included */
#define ST_REDIS_USER_MAX     256
#define ST_REDIS_PASSWORD_MAX 512
#define ST_REDIS_DEFAULT_PORT 6379
#define ST_REDIS_DB_MAX       1000000

typedef struct {
    char host[ST_REDIS_HOST_MAX];         /* without brackets */
    int port;                             /* 1..65535 */
    char user[ST_REDIS_USER_MAX];         /* "": none (AUTH PASSWORD) */
    char password[ST_REDIS_PASSWORD_MAX]; /* "": no AUTH */
    int db;                               /* SELECT db when not 0 */
} st_redis_url_t;

/* Parses text into *out. 0; -1 with the reason in err ("bad port '99999'",
 * "only redis:// URLs are supported", ...; without the text itself, which
 * the caller names). *out is zeroed either way (port 6379). */
int st_redis_url_parse(const char *text, st_redis_url_t *out, char *err, size_t errlen);

#endif
