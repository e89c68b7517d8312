/*
 * shadowtee Redis sink: one comparator thread's aggregator (shadowtee/stats.h,
 * owned) drained to Redis in batches, asynchronously (hiredis async on the
 * owner's libuv loop), plus the mesh halves' join script on the same
 * connection. The Redis key schema is written down in
 * include/shadowtee/schema.h and docs/ARCHITECTURE.md.
 *
 * Threading: one st_sink_t per comparator thread (proxy/cmpthread.c), used
 * only from that thread's loop, except st_sink_prometheus(), which the
 * admin thread may call at any time (it only reads counters that are safe
 * to read concurrently) as long as the stats are not freed meanwhile (the
 * owner guards that). Redis is never on the client path: st_sink_record()
 * only adds to memory, on the comparator thread.
 */
#ifndef SHADOWTEE_REDIS_SINK_H
#define SHADOWTEE_REDIS_SINK_H

#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "shadowtee/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_sink st_sink_t;

typedef struct {
    const char *redis_host;      /* NULL: no Redis, counters stay local (metrics only) */
    int redis_port;              /* 6379 */
    const char *redis_user;      /* NULL: AUTH <password> (the default user) */
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
    /* Mesh mirroring (st_sink_mesh_publish): load the join script on each
     * connection and sweep expired halves on the flush timer. */
    int mesh;
    uint64_t mesh_pair_ttl_ms; /* a half waits this long for its partner */
} st_sink_config_t;

/* Sets every default (no Redis, service "default", 100 ms, ...). */
void st_sink_config_init(st_sink_config_t *cfg);

/* Creates the stats of one comparator thread on `loop` (its aggregator and,
 * when cfg->redis_host is set, a connection started at once, with its own
 * reconnect backoff). cfg is copied; strings in it are borrowed and must
 * outlive the stats. NULL on allocation failure. */
st_sink_t *st_sink_new(uv_loop_t *loop, const st_sink_config_t *cfg);

/* Adds one comparison to the aggregator (st_agg_record). O(paths), no I/O. */
void st_sink_record(st_sink_t *stats, const st_agg_record_t *rec);

/* The aggregator the stats own and drain. */
st_agg_t *st_sink_agg(st_sink_t *stats);

/* Flushes what is pending (best effort, bounded by a short timeout), then closes
 * the Redis connection and the timers; cb(arg) runs on the loop once every
 * handle is closed, after which the caller frees nothing more: the stats are
 * freed by the time cb runs. */
void st_sink_close(st_sink_t *stats, void (*cb)(void *arg), void *arg);

/* ---- mesh halves (issue 16) ------------------------------------------------
 * One side's capture ("half") is published under its request id with one
 * EVALSHA of the join script on the stats' own connection (pipelined with the
 * batches, never waited for): the script stores it, or, when the partner
 * side's half is already there, deletes that one and returns it, atomically,
 * so exactly one of the two sides gets the pair. It also sweeps halves
 * whose partner did not come within the pair TTL (orphans, counted by side
 * in Redis). Key schema: docs/ARCHITECTURE.md. */
typedef enum {
    ST_MESH_STORED = 0, /* stored: waiting for the partner */
    ST_MESH_JOINED,     /* the partner was there: partner/len hold its half */
    ST_MESH_DUPLICATE,  /* a half of this side with this id is already stored: not stored */
    ST_MESH_LOST,       /* the connection went away before the reply: maybe stored */
    ST_MESH_ERROR,      /* Redis answered an error: not stored */
} st_mesh_result_t;

typedef struct {
    st_mesh_result_t result;
    const char *partner; /* ST_MESH_JOINED: the partner's half (valid during the callback) */
    size_t partner_len;
    int64_t join_ms;     /* ST_MESH_JOINED: this arrival minus the partner's, Redis clock */
    uint64_t orphans[3]; /* halves this call swept as orphans: stable, shadow, baseline */
} st_mesh_reply_t;

typedef void (*st_mesh_cb)(void *arg, const st_mesh_reply_t *reply);

/* Publishes one half (side: "stable", "shadow"; partner: the other side).
 * 0: sent, cb runs exactly once on the loop (ST_MESH_LOST when the
 * connection goes, including at st_sink_close); the caller keeps the
 * bytes of half alive until then. -1: Redis is not connected (or no mesh
 * configured, or too many halves in flight): not sent, cb never runs. */
int st_sink_mesh_publish(st_sink_t *s, const char *side, const char *partner, const char *id,
                         const char *half, size_t len, st_mesh_cb cb, void *arg);
/* Halves sent and not yet answered. */
size_t st_sink_mesh_inflight(const st_sink_t *s);
/* Orphans swept by this stats' calls so far, by side (stable, shadow, baseline). */
void st_sink_mesh_orphans(const st_sink_t *s, uint64_t out[3]);

/* Writes Prometheus text for all the threads' stats, summed: comparisons by
 * result, per-endpoint divergence counters (st_agg_prometheus), Redis state
 * (connected, flushed, dropped, reconnects). Safe to call from another thread. */
void st_sink_prometheus(st_sink_t *const *all, size_t n, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
