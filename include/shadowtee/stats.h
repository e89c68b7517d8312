/*
 * shadowtee stats: aggregation of comparison results and their batched,
 * asynchronous flush to Redis (hiredis async on the owner's libuv loop). The
 * Redis key schema is written down in docs/ARCHITECTURE.md.
 *
 * Threading: one st_stats_t per comparator thread (proxy/cmpthread.c), used
 * only from that thread's loop, except st_stats_prometheus(), which the
 * admin thread may call at any time (it only reads counters that are safe
 * to read concurrently) as long as the stats are not freed meanwhile (the
 * owner guards that). Redis is never on the client path: st_stats_record()
 * only adds to memory, on the comparator thread.
 */
#ifndef SHADOWTEE_STATS_H
#define SHADOWTEE_STATS_H

#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "shadowtee/comparator.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_stats st_stats_t;

typedef struct {
    const char *redis_host;      /* NULL: no Redis, counters stay local (metrics only) */
    int redis_port;              /* 6379 */
    const char *redis_password;  /* NULL: no AUTH */
    int redis_db;                /* SELECT db, 0 */
    const char *service;         /* keys live under "shadowtee:{<service>}:" */
    uint64_t flush_interval_ms;  /* ~100 ms */
    size_t max_backlog;          /* delta entries buffered while Redis is away; beyond: dropped */
    size_t samples_per_endpoint; /* newest N divergent samples kept per endpoint */
    size_t sample_body_max;      /* bytes of each body kept in a sample */
    uint64_t bucket_ttl_s;       /* TTL of per-minute buckets */
    size_t max_endpoints;        /* endpoint label cardinality cap (then "{other}") */
    const st_rules_t *rules;     /* redaction rules; borrowed, outlives the stats */
    /* Where the few state-change lines go ("event=redis_down ..."): NULL
     * writes them to stderr; a proxy passes its own (non-blocking) logger. */
    void (*log)(void *arg, int is_warning, const char *line);
    void *log_arg;
} st_stats_config_t;

/* Sets every default (no Redis, service "default", 100 ms, ...). */
void st_stats_config_init(st_stats_config_t *cfg);

typedef struct {
    const char *endpoint;   /* endpoint key (st_endpoint_key) */
    const char *method;     /* NUL-terminated */
    const char *path;       /* raw request path with query, NUL-terminated (kept in samples) */
    const char *request_id; /* x-request-id, NUL-terminated */
    st_verdict_t verdict;
    const st_diff_result_t *diff; /* NULL when verdict == ST_VERDICT_ERROR */
    const char *shadow_error; /* with ST_VERDICT_ERROR: "timeout", "connect", "reset", "tls", ... */
    double primary_seconds;   /* primary latency; < 0 when unknown */
    double shadow_seconds;    /* shadow latency; < 0 when unknown */
    const st_response_t *primary; /* for samples; may be NULL */
    const st_response_t *shadow;  /* for samples; may be NULL */
    int64_t now_ms;               /* wall clock (ms since epoch) of the comparison */
} st_stats_record_t;

/* Creates the stats of one comparator thread on `loop` and, when cfg->redis_host is set,
 * starts connecting (with its own reconnect backoff). cfg is copied; strings
 * in it are borrowed and must outlive the stats. NULL on allocation failure. */
st_stats_t *st_stats_new(uv_loop_t *loop, const st_stats_config_t *cfg);

/* Adds one comparison to the in-memory aggregates. O(paths), no I/O. */
void st_stats_record(st_stats_t *stats, const st_stats_record_t *rec);

/* Flushes what is pending (best effort, bounded by a short timeout), then closes
 * the Redis connection and the timers; cb(arg) runs on the loop once every
 * handle is closed, after which the caller frees nothing more: the stats are
 * freed by the time cb runs. */
void st_stats_close(st_stats_t *stats, void (*cb)(void *arg), void *arg);

/* Writes Prometheus text for all the threads' stats, summed: comparisons by
 * result, per-endpoint divergence counters, Redis state (connected, flushed,
 * dropped, reconnects). Safe to call from another thread. */
void st_stats_prometheus(st_stats_t *const *all, size_t n, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
