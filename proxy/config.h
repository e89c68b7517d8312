/*
 * config: the sidecar's configuration as one struct, filled from defaults,
 * then SHADOWTEE_* environment variables, then command-line flags (flags
 * win), then validated. After st_config_load() returns it is read-only and
 * shared by every thread as `const st_config_t *`.
 */
#ifndef ST_CONFIG_H
#define ST_CONFIG_H

#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/socket.h>

#include "shadowtee/redis_url.h"

#define ST_HOST_MAX 256
#define ST_ADDR_MAX 8 /* addresses kept of one name (the resolver's first ones) */

/* One socket address: IPv4, IPv6, or AF_UNIX for unix: upstreams. */
typedef struct {
    struct sockaddr_storage sa;
    socklen_t len;
} st_sockaddr_t;

/* A configured address with the text it came from and what it resolved to. */
typedef struct {
    char host[ST_HOST_MAX]; /* as written (no brackets for IPv6); the socket path for unix: */
    int port;               /* 0 for unix: */
    int tls;                /* 1: https:// */
    int is_unix;            /* 1: unix:/path (a Unix-domain stream socket) */
    int numeric;            /* 1: host is an IP literal (or a path): nothing to re-resolve */
    char authority[ST_HOST_MAX + 16]; /* "host:port" or "unix:/path" as written, for logs */
    st_sockaddr_t addrs[ST_ADDR_MAX]; /* resolved at load time, in the resolver's order */
    int naddrs;                       /* 0: not resolvable (yet) */
    int set;                          /* 1 when configured */
} st_addr_t;

enum st_host_suffix { ST_HOST_SUFFIX_OFF = 0, ST_HOST_SUFFIX_APPEND = 1 };
enum st_compare_sched { ST_COMPARE_SCHED_IDLE = 0, ST_COMPARE_SCHED_BATCH = 1 };
/* --mirror-mode: who mirrors. tee: this sidecar tees to --shadow (and compares);
 * mesh: the mesh (Istio/Envoy, nginx) mirrors, each pod's sidecar captures its
 * own answer and the halves are joined in Redis by x-request-id. */
enum st_mirror_mode { ST_MIRROR_TEE = 0, ST_MIRROR_MESH = 1 };
/* --mesh-role (mesh mode): which half this sidecar captures. */
enum st_mesh_role {
    ST_ROLE_NONE = 0,
    ST_ROLE_STABLE = 1,
    ST_ROLE_SHADOW = 2,
    ST_ROLE_BASELINE = 3
};

typedef struct st_config {
    st_addr_t listen;  /* --listen */
    st_addr_t primary; /* --primary */
    st_addr_t admin;   /* --admin */
    int workers;       /* --workers (0 at parse time: the number of CPUs) */
    int log_level;     /* --log-level */
    int access_log;    /* --access-log */

    size_t max_header_size;               /* 431 beyond */
    size_t max_uri_size;                  /* 414 beyond */
    size_t max_body_size;                 /* 413 beyond; 0: unlimited */
    int allow_connect;                    /* forward CONNECT (else 405) */
    char allow_upgrade[256];              /* Upgrade protocols forwarded, comma-separated */
    uint64_t client_header_timeout_ms;    /* 408 */
    uint64_t idle_timeout_ms;             /* keep-alive idle, and body/send inactivity */
    uint64_t upstream_connect_timeout_ms; /* 502 */
    uint64_t upstream_timeout_ms;         /* 504 */
    int upstream_idle_conns;              /* idle pool bound per worker */
    uint64_t resolve_interval_ms;         /* upstream names re-resolved this often; 0: on failure */
    uint64_t drain_timeout_ms;
    int max_connections; /* --max-connections, 0 at parse time: from RLIMIT_NOFILE (main.c) */
    char handover[108];  /* --handover unix socket path, "" for none (sun_path size) */

    /* tee */
    st_addr_t shadow;      /* --shadow */
    double mirror_percent; /* 0..100 */
    int mirror_percent_set;
    char mirror_sample_by[128]; /* header name, "" for random sampling */
    uint64_t mirror_methods;    /* bit per llhttp method; all ones = all */
    int shadow_host_suffix;     /* enum st_host_suffix */
    size_t mirror_max_body;
    uint64_t shadow_connect_timeout_ms;
    uint64_t shadow_timeout_ms;
    int shadow_max_inflight;     /* per process */
    int shadow_eject_timeouts;   /* response timeouts in a row that mark the shadow down */
    size_t mirror_memory_budget; /* per process */
    int shadow_idle_conns;       /* per worker */

    /* mesh mirroring (issue 16) */
    int mirror_mode;           /* enum st_mirror_mode */
    int mesh_role;             /* enum st_mesh_role, ST_ROLE_NONE when not given */
    uint64_t mesh_pair_ttl_ms; /* --mesh-pair-ttl: a published half waits this long */
    int mesh_pair_ttl_set;     /* given (flag or environment), not the default */

    /* comparator */
    int compare;     /* --compare on|off */
    st_addr_t noise; /* --noise-upstream */
    char compare_rules[1024];
    size_t compare_max_body;
    char redis_host[ST_HOST_MAX]; /* name or IP; the Redis sink resolves it asynchronously */
    int redis_port;
    char redis_user[ST_REDIS_USER_MAX];         /* "": AUTH <password> */
    char redis_password[ST_REDIS_PASSWORD_MAX]; /* "": no AUTH */
    int redis_db;
    int redis_set;
    char service[128];
    uint64_t redis_flush_interval_ms;
    int samples_per_endpoint;
    int max_endpoints;
    int compare_threads;            /* --compare-threads */
    int compare_queue;              /* --compare-queue: pairs, per process */
    size_t compare_queue_bytes;     /* --compare-queue-bytes: per process */
    size_t heap_retain;             /* --heap-retain: freed heap kept for reuse (0: glibc's) */
    double compare_cpu;             /* --compare-cpu: cores, all comparator threads; 0: no limit */
    int compare_sched;              /* --compare-sched: enum st_compare_sched */
    int compare_nice;               /* --compare-nice (SCHED_BATCH only) */
    uint64_t test_compare_delay_ms; /* --test-compare-delay: settable only in the test build
                                       (shadowtee-test, -DST_TEST_HOOKS); 0 in production */

    /* TLS */
    char tls_cert[1024]; /* --tls-cert: terminate TLS on --listen */
    char tls_key[1024];
    char primary_ca[1024]; /* https primary (and noise replica): CA file, "" = system store */
    char primary_client_cert[1024]; /* mutual TLS towards the primary */
    char primary_client_key[1024];
    int primary_insecure;
    char shadow_ca[1024];
    char shadow_client_cert[1024];
    char shadow_client_key[1024];
    int shadow_insecure;
} st_config_t;

/* Fills cfg from defaults, the environment (envp may be NULL: no variables)
 * and argv. Returns 0 when the proxy should run, 1 when --help or --version
 * was printed (exit 0), -1 on error with one message in err (exit 2). */
int st_config_load(st_config_t *cfg, int argc, char **argv, char **envp, char *err, size_t errlen);

/* Parses "250ms", "10s", "1m", "1h", "5" (seconds) into milliseconds. */
int st_config_parse_duration(const char *s, uint64_t *ms);
/* Parses "123", "16K", "8M", "1G" (powers of 1024) into bytes. */
int st_config_parse_size(const char *s, size_t *bytes);
/* Parses "host:port", "[v6]:port", "http://host:port", "https://host" or
 * "unix:/path" without resolving. Returns 0 or -1. */
int st_config_parse_addr(const char *s, st_addr_t *a, int default_port);
/* Copies the stream addresses of a getaddrinfo result into out (at most max,
 * duplicates dropped, the resolver's order kept). Returns how many. */
int st_config_addrs_from(const struct addrinfo *res, st_sockaddr_t *out, int max);
/* Writes "1.2.3.4:80", "[::1]:80" or "unix:/path" for a. */
void st_sockaddr_format(const st_sockaddr_t *a, char *out, size_t outlen);

void st_config_usage(FILE *out);

#endif
