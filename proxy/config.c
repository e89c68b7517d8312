/*
 * config: defaults, environment, flags and validation, driven by one table.
 * Each option is one row {flag, type, offset, min, max, default, help}; the
 * same parser serves the default string, SHADOWTEE_<FLAG> and --flag.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <llhttp.h>
#include <math.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "reqcheck.h"

enum opt_type {
    OPT_ADDR,     /* st_addr_t, resolved after parsing */
    OPT_STR,      /* char[size] */
    OPT_INT,      /* int within [min, max] */
    OPT_DOUBLE,   /* double within [min, max] */
    OPT_DUR,      /* uint64_t ms within [min, max] */
    OPT_SIZE,     /* size_t bytes within [min, max] */
    OPT_BOOL,     /* int 0/1; as a flag it takes no value */
    OPT_ONOFF,    /* int 0/1 from on|off */
    OPT_LOGLEVEL, /* int */
    OPT_SUFFIX,   /* int enum st_host_suffix */
    OPT_SCHED,    /* int enum st_compare_sched */
    OPT_MODE,     /* int enum st_mirror_mode */
    OPT_ROLE,     /* int enum st_mesh_role */
    OPT_METHODS,  /* uint64_t method mask */
    OPT_REDIS,    /* redis_* fields */
};

typedef struct {
    const char *flag; /* without "--" */
    enum opt_type type;
    size_t offset;
    size_t size; /* for OPT_STR */
    double min, max;
    const char *def; /* NULL: no default */
    const char *help;
} opt_t;

#define OFF(f) offsetof(st_config_t, f)
#define SZ(f)  sizeof(((st_config_t *)0)->f)

static const opt_t options[] = {
    {"listen", OPT_ADDR, OFF(listen), 0, 0, 0, "0.0.0.0:8080", "ADDR:PORT the clients connect to"},
    {"primary", OPT_ADDR, OFF(primary), 0, 0, 0, NULL,
     "HOST:PORT or unix:/path of the stable app (required)"},
    {"admin", OPT_ADDR, OFF(admin), 0, 0, 0, "127.0.0.1:9901",
     "ADDR:PORT for /healthz /readyz /metrics"},
    {"workers", OPT_INT, OFF(workers), 0, 0, 256, "0", "worker threads (0: one per CPU)"},
    {"log-level", OPT_LOGLEVEL, OFF(log_level), 0, 0, 0, "info", "debug|info|warn|error"},
    {"access-log", OPT_BOOL, OFF(access_log), 0, 0, 1, "0", "log one line per request"},
    {"max-header-size", OPT_SIZE, OFF(max_header_size), 0, 1024, 65536, "16K",
     "request head limit (431)"},
    {"max-uri-size", OPT_SIZE, OFF(max_uri_size), 0, 64, 1 << 20, "8K", "request URI limit (414)"},
    {"max-body-size", OPT_SIZE, OFF(max_body_size), 0, 0, 1e18, "0",
     "request body limit, 0 = none (413)"},
    {"allow-connect", OPT_BOOL, OFF(allow_connect), 0, 0, 1, "0",
     "forward CONNECT and tunnel a 2xx answer (default: 405)"},
    {"allow-upgrade", OPT_STR, OFF(allow_upgrade), SZ(allow_upgrade), 0, 0, "websocket",
     "Upgrade protocols forwarded, comma-separated (others removed; \"\": none)"},
    {"client-header-timeout", OPT_DUR, OFF(client_header_timeout_ms), 0, 1, 86400000, "10s",
     "time to send a request head (408)"},
    {"idle-timeout", OPT_DUR, OFF(idle_timeout_ms), 0, 1, 86400000, "60s",
     "keep-alive idle and body inactivity timeout"},
    {"upstream-connect-timeout", OPT_DUR, OFF(upstream_connect_timeout_ms), 0, 1, 3600000, "2s",
     "primary connect timeout (502)"},
    {"upstream-timeout", OPT_DUR, OFF(upstream_timeout_ms), 0, 1, 86400000, "60s",
     "primary response inactivity timeout (504)"},
    {"upstream-idle-conns", OPT_INT, OFF(upstream_idle_conns), 0, 0, 100000, "64",
     "idle primary connections kept per worker"},
    {"resolve-interval", OPT_DUR, OFF(resolve_interval_ms), 0, 0, 86400000, "5s",
     "re-resolve upstream names this often (0: only after failures)"},
    {"drain-timeout", OPT_DUR, OFF(drain_timeout_ms), 0, 0, 3600000, "25s",
     "on SIGTERM, how long in-flight requests may finish"},
    {"max-connections", OPT_INT, OFF(max_connections), 0, 0, 10000000, "0",
     "client connections held at most, then accepts wait (0: from the descriptor limit)"},
    {"handover", OPT_STR, OFF(handover), SZ(handover), 0, 0, "",
     "PATH of a unix socket: take the listening sockets of the instance serving it, then serve "
     "it (zero-downtime restart)"},
    {"shadow", OPT_ADDR, OFF(shadow), 0, 0, 0, NULL,
     "HOST:PORT, http://host:port or unix:/path of the shadow"},
    {"mirror-percent", OPT_DOUBLE, OFF(mirror_percent), 0, 0, 100, NULL,
     "percent of requests mirrored (default 100 with --shadow)"},
    {"mirror-sample-by", OPT_STR, OFF(mirror_sample_by), SZ(mirror_sample_by), 0, 0, "",
     "sample on a hash of this header (e.g. x-request-id)"},
    {"mirror-methods", OPT_METHODS, OFF(mirror_methods), 0, 0, 0, "*",
     "comma-separated methods to mirror (default all)"},
    {"shadow-host-suffix", OPT_SUFFIX, OFF(shadow_host_suffix), 0, 0, 0, "off",
     "off|append: append -shadow to the Host"},
    {"mirror-max-body", OPT_SIZE, OFF(mirror_max_body), 0, 0, 1 << 30, "8M",
     "larger bodies are not mirrored (counted)"},
    {"shadow-connect-timeout", OPT_DUR, OFF(shadow_connect_timeout_ms), 0, 1, 3600000, "1s",
     "shadow connect timeout"},
    {"shadow-timeout", OPT_DUR, OFF(shadow_timeout_ms), 0, 1, 3600000, "3s",
     "shadow response timeout"},
    {"shadow-eject-timeouts", OPT_INT, OFF(shadow_eject_timeouts), 0, 0, 1000000, "5",
     "shadow response timeouts in a row that mark it down (0: never)"},
    {"shadow-max-inflight", OPT_INT, OFF(shadow_max_inflight), 0, 1, 1000000, "1024",
     "in-flight shadow requests per process"},
    {"mirror-memory-budget", OPT_SIZE, OFF(mirror_memory_budget), 0, 4096, 1e12, "64M",
     "memory for buffered mirror copies per process"},
    {"shadow-idle-conns", OPT_INT, OFF(shadow_idle_conns), 0, 0, 100000, "0",
     "idle shadow connections kept per worker (0: the per-worker in-flight cap)"},
    {"mirror-mode", OPT_MODE, OFF(mirror_mode), 0, 0, 0, "tee",
     "tee|mesh: this sidecar tees to --shadow, or the mesh mirrors and the sidecars of the "
     "stable and shadow pods join their halves in --redis"},
    {"mesh-role", OPT_ROLE, OFF(mesh_role), 0, 0, 0, NULL,
     "stable|shadow: with --mirror-mode mesh, the pod this sidecar runs in"},
    {"mesh-pair-ttl", OPT_DUR, OFF(mesh_pair_ttl_ms), 0, 100, 3600000, "30s",
     "mesh mode: how long a published half waits for its partner (then an orphan)"},
    {"compare", OPT_ONOFF, OFF(compare), 0, 0, 1, "on",
     "on|off: compare primary and shadow responses"},
    {"noise-upstream", OPT_ADDR, OFF(noise), 0, 0, 0, NULL,
     "HOST:PORT or unix:/path of a second stable replica (noise cancellation)"},
    {"compare-rules", OPT_STR, OFF(compare_rules), SZ(compare_rules), 0, 0, "",
     "JSON rules file for the comparator"},
    {"compare-max-body", OPT_SIZE, OFF(compare_max_body), 0, 0, 1 << 30, "1M",
     "bodies captured for comparison up to this size"},
    {"compare-threads", OPT_INT, OFF(compare_threads), 0, 1, 64, "1",
     "comparator threads (off the client loops, lower priority)"},
    {"compare-queue", OPT_INT, OFF(compare_queue), 0, 1, 1000000, "256",
     "pairs queued for comparison per process; beyond: dropped as comparator_busy"},
    {"compare-queue-bytes", OPT_SIZE, OFF(compare_queue_bytes), 0, 65536, 1e12, "32M",
     "memory of queued pairs per process; beyond: dropped as queue_bytes"},
    {"heap-retain", OPT_SIZE, OFF(heap_retain), 0, 0, 1 << 30, "64M",
     "freed memory the allocator keeps for reuse instead of giving it back to the OS (glibc "
     "M_TRIM_THRESHOLD; blocks up to half of it, 128K to 32M, from the heap, not mmap); 0: "
     "glibc's adaptive default"},
    {"compare-cpu", OPT_DOUBLE, OFF(compare_cpu), 0, 0, 64, "0.5",
     "CPU cores the comparator threads may use together (0: no limit)"},
    {"compare-sched", OPT_SCHED, OFF(compare_sched), 0, 0, 0, "idle",
     "idle|batch: comparator threads run SCHED_IDLE (only on spare CPU) or SCHED_BATCH"},
    {"compare-nice", OPT_INT, OFF(compare_nice), 0, 0, 19, "10",
     "with --compare-sched batch: nice of the comparator threads above the workers' (capped at "
     "19)"},
#ifdef ST_TEST_HOOKS
    {"test-compare-delay", OPT_DUR, OFF(test_compare_delay_ms), 0, 0, 60000, "0",
     "TEST BUILD ONLY: each comparison first burns this much CPU"},
#endif
    {"redis", OPT_REDIS, 0, 0, 0, 0, NULL,
     "HOST:PORT or redis://[[user]:password@]host[:port][/db] for statistics"},
    {"service", OPT_STR, OFF(service), SZ(service), 0, 0, "default",
     "service name: keys under shadowtee:{NAME}:"},
    {"redis-flush-interval", OPT_DUR, OFF(redis_flush_interval_ms), 0, 10, 60000, "100ms",
     "how often statistics are flushed"},
    {"samples-per-endpoint", OPT_INT, OFF(samples_per_endpoint), 0, 0, 10000, "20",
     "divergent samples kept per endpoint"},
    {"max-endpoints", OPT_INT, OFF(max_endpoints), 0, 1, 100000, "100",
     "endpoint keys tracked before {other}"},
    {"tls-cert", OPT_STR, OFF(tls_cert), SZ(tls_cert), 0, 0, "",
     "PEM certificate chain: terminate TLS on --listen"},
    {"tls-key", OPT_STR, OFF(tls_key), SZ(tls_key), 0, 0, "",
     "PEM private key for --tls-cert (reloaded on SIGHUP)"},
    {"primary-ca", OPT_STR, OFF(primary_ca), SZ(primary_ca), 0, 0, "",
     "CA file for an https primary and noise replica (default: system store)"},
    {"primary-client-cert", OPT_STR, OFF(primary_client_cert), SZ(primary_client_cert), 0, 0, "",
     "client certificate for mutual TLS to the primary"},
    {"primary-client-key", OPT_STR, OFF(primary_client_key), SZ(primary_client_key), 0, 0, "",
     "key of --primary-client-cert"},
    {"primary-insecure", OPT_BOOL, OFF(primary_insecure), 0, 0, 1, "0",
     "do not verify the primary's certificate (logged)"},
    {"shadow-ca", OPT_STR, OFF(shadow_ca), SZ(shadow_ca), 0, 0, "",
     "CA file for an https shadow (default: system store)"},
    {"shadow-client-cert", OPT_STR, OFF(shadow_client_cert), SZ(shadow_client_cert), 0, 0, "",
     "client certificate for mutual TLS to the shadow"},
    {"shadow-client-key", OPT_STR, OFF(shadow_client_key), SZ(shadow_client_key), 0, 0, "",
     "key of --shadow-client-cert"},
    {"shadow-insecure", OPT_BOOL, OFF(shadow_insecure), 0, 0, 1, "0",
     "do not verify the shadow's certificate (logged)"},
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int st_config_parse_duration(const char *s, uint64_t *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0 || !isfinite(v)) return -1;
    double mult;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return -1;
    v *= mult;
    if (v > 1e15) return -1;
    *ms = (uint64_t)(v + 0.5);
    return 0;
}

int st_config_parse_size(const char *s, size_t *bytes)
{
    char *end;
    if (!isdigit((unsigned char)*s)) return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -1;
    unsigned long long mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1ULL << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mult = 1ULL << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mult = 1ULL << 30, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end != '\0') return -1;
    if (v > (~0ULL) / mult) return -1;
    *bytes = (size_t)(v * mult);
    return 0;
}

int st_config_parse_addr(const char *s, st_addr_t *a, int default_port)
{
    memset(a, 0, sizeof(*a));
    if (strncmp(s, "unix:", 5) == 0) { /* the path's length is checked by validate */
        const char *path = s + 5;
        if (*path == '\0' || strlen(path) >= sizeof(a->host)) return -1;
        snprintf(a->host, sizeof(a->host), "%s", path);
        snprintf(a->authority, sizeof(a->authority), "unix:%s", path);
        a->is_unix = a->numeric = a->set = 1;
        return 0;
    }
    const char *p = s;
    int port = default_port;
    if (strncmp(p, "http://", 7) == 0)
        p += 7, port = 80;
    else if (strncmp(p, "https://", 8) == 0)
        p += 8, port = 443, a->tls = 1;
    size_t n = strcspn(p, "/");
    if (p[n] == '/' && p[n + 1] != '\0') return -1; /* no paths */
    char hp[ST_HOST_MAX + 16];
    if (n == 0 || n >= sizeof(hp)) return -1;
    memcpy(hp, p, n);
    hp[n] = '\0';
    const char *host = hp, *portstr = NULL;
    if (hp[0] == '[') {
        char *rb = strchr(hp, ']');
        if (!rb) return -1;
        *rb = '\0';
        host = hp + 1;
        if (rb[1] == ':')
            portstr = rb + 2;
        else if (rb[1] != '\0')
            return -1;
    } else {
        char *colon = strrchr(hp, ':');
        if (colon) {
            if (strchr(hp, ':') != colon) return -1; /* bare IPv6 needs brackets */
            *colon = '\0';
            portstr = colon + 1;
        }
    }
    if (portstr) {
        char *end;
        long v = strtol(portstr, &end, 10);
        if (*portstr == '\0' || *end != '\0' || v < 1 || v > 65535) return -1;
        port = (int)v;
    }
    if (port <= 0 || *host == '\0' || strlen(host) >= sizeof(a->host)) return -1;
    for (const char *c = host; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr(".-_:%", *c)) return -1;
    snprintf(a->host, sizeof(a->host), "%.255s", host);
    a->port = port;
    unsigned char probe[sizeof(struct in6_addr)];
    a->numeric = inet_pton(AF_INET, host, probe) == 1 || inet_pton(AF_INET6, host, probe) == 1;
    if (strchr(host, ':'))
        snprintf(a->authority, sizeof(a->authority), "[%.255s]:%d", host, port);
    else
        snprintf(a->authority, sizeof(a->authority), "%.255s:%d", host, port);
    a->set = 1;
    return 0;
}

/* --redis, in the grammar shadowtee-report shares (shadowtee/redis_url.h). */
static int parse_redis(st_config_t *cfg, const char *s, char *why, size_t whylen)
{
    st_redis_url_t u;
    if (st_redis_url_parse(s, &u, why, whylen) != 0) return -1;
    _Static_assert(sizeof(cfg->redis_host) >= sizeof(u.host), "redis_host holds a parsed host");
    snprintf(cfg->redis_host, sizeof(cfg->redis_host), "%s", u.host);
    cfg->redis_port = u.port;
    memcpy(cfg->redis_user, u.user, sizeof(cfg->redis_user));
    memcpy(cfg->redis_password, u.password, sizeof(cfg->redis_password));
    cfg->redis_db = u.db;
    cfg->redis_set = 1;
    return 0;
}

/* HTTP methods llhttp knows, by number (llhttp_method_name aborts on others). */
static const struct {
    int num;
    const char *name;
} http_methods[] = {
#define ST_METHOD_ROW(num, name, string) {num, #string},
    HTTP_METHOD_MAP(ST_METHOD_ROW)
#undef ST_METHOD_ROW
};

static int parse_methods(const char *s, uint64_t *mask)
{
    if (strcmp(s, "*") == 0 || strcasecmp(s, "all") == 0) {
        *mask = ~0ULL;
        return 0;
    }
    uint64_t m = 0;
    char buf[512];
    if (strlen(s) >= sizeof(buf)) return -1;
    snprintf(buf, sizeof(buf), "%s", s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        int found = 0;
        for (size_t i = 0; i < sizeof(http_methods) / sizeof(http_methods[0]); i++) {
            if (http_methods[i].num < 64 && strcasecmp(http_methods[i].name, tok) == 0) {
                m |= 1ULL << http_methods[i].num;
                found = 1;
                break;
            }
        }
        if (!found) return -1;
    }
    if (m == 0) return -1;
    *mask = m;
    return 0;
}

static int set_option(st_config_t *cfg, const opt_t *o, const char *val, const char *src, char *err,
                      size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    switch (o->type) {
    case OPT_ADDR:
        if (st_config_parse_addr(val, (st_addr_t *)field, 0) != 0)
            return fail(err, errlen,
                        "%s: invalid address '%s' (want HOST:PORT, http://host:port or unix:/path)",
                        src, val);
        return 0;
    case OPT_STR:
        if (strlen(val) >= o->size) return fail(err, errlen, "%s: value too long", src);
        memcpy(field, val, strlen(val) + 1);
        return 0;
    case OPT_INT: {
        char *end;
        errno = 0;
        long v = strtol(val, &end, 10);
        if (*val == '\0' || *end != '\0' || errno || v < o->min || v > o->max)
            return fail(err, errlen, "%s: invalid value '%s' (want an integer in [%.0f, %.0f])",
                        src, val, o->min, o->max);
        *(int *)field = (int)v;
        return 0;
    }
    case OPT_DOUBLE: {
        char *end;
        errno = 0;
        double v = strtod(val, &end);
        if (*val == '\0' || *end != '\0' || errno || !isfinite(v) || v < o->min || v > o->max)
            return fail(err, errlen, "%s: invalid value '%s' (want a number in [%g, %g])", src, val,
                        o->min, o->max);
        *(double *)field = v;
        if (o->offset == OFF(mirror_percent)) cfg->mirror_percent_set = 1;
        return 0;
    }
    case OPT_DUR: {
        uint64_t ms;
        if (st_config_parse_duration(val, &ms) != 0 || (double)ms < o->min || (double)ms > o->max)
            return fail(
                err, errlen,
                "%s: invalid duration '%s' (e.g. 250ms, 10s, 1m; between %.0fms and %.0fms)", src,
                val, o->min, o->max);
        *(uint64_t *)field = ms;
        if (o->offset == OFF(mesh_pair_ttl_ms) && strcmp(src, "default") != 0)
            cfg->mesh_pair_ttl_set = 1;
        return 0;
    }
    case OPT_SIZE: {
        size_t b;
        if (st_config_parse_size(val, &b) != 0 || (double)b < o->min || (double)b > o->max)
            return fail(err, errlen,
                        "%s: invalid size '%s' (e.g. 512, 16K, 8M; between %.0f and %.0f bytes)",
                        src, val, o->min, o->max);
        *(size_t *)field = b;
        return 0;
    }
    case OPT_BOOL:
    case OPT_ONOFF:
        if (!strcmp(val, "1") || !strcasecmp(val, "true") || !strcasecmp(val, "yes") ||
            !strcasecmp(val, "on"))
            *(int *)field = 1;
        else if (!strcmp(val, "0") || !strcasecmp(val, "false") || !strcasecmp(val, "no") ||
                 !strcasecmp(val, "off"))
            *(int *)field = 0;
        else
            return fail(err, errlen, "%s: invalid value '%s' (want on or off)", src, val);
        return 0;
    case OPT_LOGLEVEL:
        for (int l = ST_LOG_DEBUG; l <= ST_LOG_ERROR; l++)
            if (!strcasecmp(val, st_log_level_name(l))) {
                *(int *)field = l;
                return 0;
            }
        return fail(err, errlen, "%s: invalid log level '%s' (want debug, info, warn or error)",
                    src, val);
    case OPT_SUFFIX:
        if (!strcmp(val, "off"))
            *(int *)field = ST_HOST_SUFFIX_OFF;
        else if (!strcmp(val, "append"))
            *(int *)field = ST_HOST_SUFFIX_APPEND;
        else
            return fail(err, errlen, "%s: invalid value '%s' (want off or append)", src, val);
        return 0;
    case OPT_SCHED:
        if (!strcmp(val, "idle"))
            *(int *)field = ST_COMPARE_SCHED_IDLE;
        else if (!strcmp(val, "batch"))
            *(int *)field = ST_COMPARE_SCHED_BATCH;
        else
            return fail(err, errlen, "%s: invalid value '%s' (want idle or batch)", src, val);
        return 0;
    case OPT_MODE:
        if (!strcmp(val, "tee"))
            *(int *)field = ST_MIRROR_TEE;
        else if (!strcmp(val, "mesh"))
            *(int *)field = ST_MIRROR_MESH;
        else
            return fail(err, errlen, "%s: invalid value '%s' (want tee or mesh)", src, val);
        return 0;
    case OPT_ROLE:
        if (!strcmp(val, "stable"))
            *(int *)field = ST_ROLE_STABLE;
        else if (!strcmp(val, "shadow"))
            *(int *)field = ST_ROLE_SHADOW;
        else if (!strcmp(val, "baseline"))
            return fail(err, errlen,
                        "%s: the baseline role is not implemented yet (want stable or shadow)",
                        src);
        else
            return fail(err, errlen, "%s: invalid value '%s' (want stable or shadow)", src, val);
        return 0;
    case OPT_METHODS:
        if (parse_methods(val, (uint64_t *)field) != 0)
            return fail(err, errlen, "%s: invalid method list '%s' (e.g. GET,POST)", src, val);
        return 0;
    case OPT_REDIS: {
        char why[160];
        if (parse_redis(cfg, val, why, sizeof(why)) != 0)
            return fail(err, errlen,
                        "%s: invalid Redis address '%s': %s (want HOST:PORT or "
                        "redis://[[user]:password@]host[:port][/db])",
                        src, val, why);
        return 0;
    }
    }
    return fail(err, errlen, "%s: unhandled option type", src);
}

static const opt_t *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strlen(options[i].flag) == len && memcmp(options[i].flag, name, len) == 0)
            return &options[i];
    return NULL;
}

static void env_name(const opt_t *o, char *out, size_t outlen)
{
    size_t n = (size_t)snprintf(out, outlen, "SHADOWTEE_");
    for (const char *c = o->flag; *c && n + 1 < outlen; c++)
        out[n++] = *c == '-' ? '_' : (char)toupper((unsigned char)*c);
    out[n] = '\0';
}

static const char *env_lookup(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

void st_config_usage(FILE *out)
{
    fprintf(out, "usage: shadowtee --primary HOST:PORT [options]\n\n"
                 "An HTTP/1.1 sidecar that serves the primary's response and tees sampled\n"
                 "requests to a shadow. Every flag can also be set as SHADOWTEE_<FLAG>\n"
                 "(upper case, '-' as '_'); flags win over the environment.\n\noptions:\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        const opt_t *o = &options[i];
        char env[64];
        env_name(o, env, sizeof(env));
        fprintf(out, "  --%-26s %s", o->flag, o->help);
        if (o->def && *o->def && o->type != OPT_BOOL) fprintf(out, " [%s]", o->def);
        fprintf(out, "\n  %-28s (env %s)\n", "", env);
    }
    fprintf(out, "  --%-26s %s\n  --%-26s %s\n", "help", "print this help", "version",
            "print the version");
}

int st_config_addrs_from(const struct addrinfo *res, st_sockaddr_t *out, int max)
{
    int n = 0;
    for (const struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(out[0].sa))
            continue;
        int dup = 0;
        for (int k = 0; k < n && !dup; k++)
            dup = out[k].len == ai->ai_addrlen && memcmp(&out[k].sa, ai->ai_addr, out[k].len) == 0;
        if (dup) continue;
        memset(&out[n], 0, sizeof(out[n]));
        memcpy(&out[n].sa, ai->ai_addr, ai->ai_addrlen);
        out[n].len = ai->ai_addrlen;
        n++;
    }
    return n;
}

void st_sockaddr_format(const st_sockaddr_t *a, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->sa.ss_family == AF_UNIX) {
        snprintf(out, outlen, "unix:%s", ((const struct sockaddr_un *)&a->sa)->sun_path);
    } else if (a->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%d", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%d", ip, ntohs(s4->sin_port));
    }
}

/* A unix: address: its sockaddr_un, or -1 when the path does not fit in
 * sun_path (libuv would cut it silently and connect elsewhere). */
static int unix_addr(st_addr_t *a, const char *what, char *err, size_t errlen)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&a->addrs[0].sa;
    size_t n = strlen(a->host);
    if (n >= sizeof(un->sun_path))
        return fail(err, errlen,
                    "--%s: unix socket path is %zu bytes long, at most %zu fit (sun_path): '%s'",
                    what, n, sizeof(un->sun_path) - 1, a->host);
    memset(&a->addrs[0], 0, sizeof(a->addrs[0]));
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, a->host, n + 1);
    a->addrs[0].len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    a->naddrs = 1;
    struct stat st; /* the app may start after the sidecar: only a warning */
    if (stat(a->host, &st) != 0)
        st_warn("msg=\"upstream socket does not exist yet\" upstream=%s err=\"%s\"", a->authority,
                strerror(errno));
    else if (!S_ISSOCK(st.st_mode))
        st_warn("msg=\"upstream path is not a socket\" upstream=%s", a->authority);
    return 0;
}

/* Start-up resolution (before any loop runs, so blocking is fine): every
 * address of the name, in the resolver's order. */
static int resolve(st_addr_t *a, const char *what, int passive, char *err, size_t errlen)
{
    if (a->is_unix) return unix_addr(a, what, err, errlen);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (passive) hints.ai_flags = AI_PASSIVE;
    char port[8];
    snprintf(port, sizeof(port), "%d", a->port);
    int rc = getaddrinfo(a->host, port, &hints, &res);
    if (rc != 0 || !res)
        return fail(err, errlen, "--%s: cannot resolve '%s': %s", what, a->host, gai_strerror(rc));
    a->naddrs = st_config_addrs_from(res, a->addrs, ST_ADDR_MAX);
    freeaddrinfo(res);
    if (a->naddrs == 0)
        return fail(err, errlen, "--%s: '%s' has no IPv4 or IPv6 address", what, a->host);
    return 0;
}

/* --mirror-mode and the flags that go with it: one clear line per conflict. */
static int validate_mode(const st_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->mirror_mode == ST_MIRROR_TEE) {
        if (cfg->mesh_role != ST_ROLE_NONE)
            return fail(err, errlen, "--mesh-role needs --mirror-mode mesh");
        if (cfg->mesh_pair_ttl_set)
            return fail(err, errlen, "--mesh-pair-ttl needs --mirror-mode mesh");
        return 0;
    }
    if (cfg->mesh_role == ST_ROLE_NONE)
        return fail(err, errlen, "--mirror-mode mesh needs --mesh-role stable|shadow");
    if (!cfg->redis_set)
        return fail(err, errlen,
                    "--mirror-mode mesh needs --redis (the stable and shadow halves are joined "
                    "there)");
    if (cfg->shadow.set)
        return fail(err, errlen,
                    "--mirror-mode mesh does not tee: remove --shadow (the mesh mirrors to the "
                    "shadow pods)");
    if (cfg->noise.set)
        return fail(err, errlen, "--mirror-mode mesh does not take --noise-upstream");
    if (!cfg->compare)
        return fail(err, errlen,
                    "--mirror-mode mesh needs --compare on (it only captures to compare)");
    if (cfg->mirror_sample_by[0] && strcasecmp(cfg->mirror_sample_by, "x-request-id") != 0)
        return fail(err, errlen,
                    "--mirror-sample-by: --mirror-mode mesh samples by x-request-id only");
    return 0;
}

static int validate(st_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->primary.set)
        return fail(err, errlen, "--primary is required (e.g. --primary 127.0.0.1:5000)");
    const struct {
        st_addr_t *a;
        const char *name;
    } addrs[] = {{&cfg->listen, "listen"},
                 {&cfg->primary, "primary"},
                 {&cfg->admin, "admin"},
                 {&cfg->shadow, "shadow"},
                 {&cfg->noise, "noise-upstream"}};
    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        if (!addrs[i].a->set) continue;
        if (addrs[i].a->tls && (i == 0 || i == 2))
            return fail(err, errlen, "--%s: use --tls-cert/--tls-key to serve TLS, not https://",
                        addrs[i].name);
        if (addrs[i].a->is_unix && (i == 0 || i == 2))
            return fail(err, errlen,
                        "--%s: listens on TCP only (HOST:PORT), not unix:", addrs[i].name);
        if (addrs[i].a->is_unix) { /* a path too long for sun_path is fatal for every upstream */
            if (resolve(addrs[i].a, addrs[i].name, 0, err, errlen) != 0) return -1;
            continue;
        }
        if (resolve(addrs[i].a, addrs[i].name, i == 0 || i == 2, err, errlen) == 0) continue;
        if (i < 3) return -1; /* listen, primary, admin: fatal */
        /* shadow, noise: never keep the stable path from starting; the
         * workers resolve again (asynchronously) and skip mirrors meanwhile */
        st_warn("msg=\"upstream not resolvable yet, will retry\" upstream=%s detail=\"%s\"",
                addrs[i].a->authority, err);
        addrs[i].a->naddrs = 0;
    }
    if (!cfg->tls_cert[0] != !cfg->tls_key[0])
        return fail(err, errlen, "--tls-cert and --tls-key go together");
    const char *files[][2] = {{cfg->tls_cert, "--tls-cert"},
                              {cfg->tls_key, "--tls-key"},
                              {cfg->primary_ca, "--primary-ca"},
                              {cfg->primary_client_cert, "--primary-client-cert"},
                              {cfg->primary_client_key, "--primary-client-key"},
                              {cfg->shadow_ca, "--shadow-ca"},
                              {cfg->shadow_client_cert, "--shadow-client-cert"},
                              {cfg->shadow_client_key, "--shadow-client-key"}};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if (files[i][0][0] && access(files[i][0], R_OK) != 0)
            return fail(err, errlen, "%s: cannot read '%s': %s", files[i][1], files[i][0],
                        strerror(errno));
    if (!cfg->primary_client_cert[0] != !cfg->primary_client_key[0])
        return fail(err, errlen, "--primary-client-cert and --primary-client-key go together");
    if (!cfg->shadow_client_cert[0] != !cfg->shadow_client_key[0])
        return fail(err, errlen, "--shadow-client-cert and --shadow-client-key go together");
    if (validate_mode(cfg, err, errlen) != 0) return -1;
    if (cfg->mirror_mode == ST_MIRROR_MESH) {
        if (!cfg->mirror_percent_set) cfg->mirror_percent = 100.0;
    } else {
        if (cfg->noise.set && !cfg->shadow.set)
            return fail(err, errlen, "--noise-upstream needs --shadow");
        if (!cfg->mirror_percent_set) cfg->mirror_percent = cfg->shadow.set ? 100.0 : 0.0;
        if (cfg->mirror_percent_set && !cfg->shadow.set && cfg->mirror_percent > 0)
            return fail(err, errlen, "--mirror-percent needs --shadow");
    }
    if (cfg->max_uri_size > cfg->max_header_size)
        cfg->max_uri_size = cfg->max_header_size; /* the URI is part of the head */
    for (const char *c = cfg->mirror_sample_by; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("-_", *c))
            return fail(err, errlen, "--mirror-sample-by: invalid header name '%s'",
                        cfg->mirror_sample_by);
    if (!st_reqcheck_allow_list_valid(cfg->allow_upgrade))
        return fail(err, errlen, "--allow-upgrade: invalid protocol list '%s' (e.g. websocket)",
                    cfg->allow_upgrade);
    if (cfg->service[0] == '\0') return fail(err, errlen, "--service: must not be empty");
    for (const char *c = cfg->service; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("-_.", *c))
            return fail(err, errlen,
                        "--service: '%s' may only contain letters, digits, '-', '_' and '.'",
                        cfg->service);
    if (cfg->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n > 0 ? (int)n : 1;
    }
    if (cfg->shadow_max_inflight < cfg->workers) cfg->shadow_max_inflight = cfg->workers;
    return 0;
}

int st_config_load(st_config_t *cfg, int argc, char **argv, char **envp, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (!options[i].def) continue;
        if (set_option(cfg, &options[i], options[i].def, "default", err, errlen) != 0) return -1;
    }
    cfg->mirror_percent_set = 0;
    for (size_t i = 0; i < NOPTIONS; i++) {
        char name[64], src[80];
        env_name(&options[i], name, sizeof(name));
        const char *v = env_lookup(envp, name);
        if (!v) continue;
        snprintf(src, sizeof(src), "%s", name);
        if (set_option(cfg, &options[i], v, src, err, errlen) != 0) return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            st_config_usage(stdout);
            return 1;
        }
        if (!strcmp(arg, "--version")) {
            printf("shadowtee %s\n", ST_VERSION);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0)
            return fail(err, errlen, "unexpected argument '%s' (see --help)", arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const opt_t *o = find_option(name, nlen);
        if (!o) return fail(err, errlen, "unknown flag '--%.*s' (see --help)", (int)nlen, name);
        char src[80];
        snprintf(src, sizeof(src), "--%s", o->flag);
        const char *val;
        if (eq)
            val = eq + 1;
        else if (o->type == OPT_BOOL)
            val = "1";
        else if (i + 1 < argc)
            val = argv[++i];
        else
            return fail(err, errlen, "%s needs a value", src);
        if (set_option(cfg, o, val, src, err, errlen) != 0) return -1;
    }
    return validate(cfg, err, errlen);
}
