/*
 * Internal state of the Redis sink (comparator/redis_sink.c): the connection
 * state machine, the batch in flight, the mesh script. It owns one
 * aggregator (stats_internal.h) and drains it; the aggregator never sees
 * this header. Not a public header: only redis_sink.c and
 * tests/unit/test_stats*.c include it.
 */
#ifndef SHADOWTEE_REDIS_SINK_INTERNAL_H
#define SHADOWTEE_REDIS_SINK_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "shadowtee/redis_sink.h"
#include "stats_internal.h"

struct redisAsyncContext;

#define ST_SINK_ADDR_MAX 8  /* Redis addresses kept of one name */
#define ST_SINK_IP_MAX   48 /* an IPv6 address as text, with room to spare */

typedef enum {
    ST_SINK_OFF = 0,    /* no Redis configured */
    ST_SINK_WAIT,       /* disconnected: reconnect timer armed (backoff), or resolving */
    ST_SINK_CONNECTING, /* redisAsyncConnect issued, connect timeout armed */
    ST_SINK_READY,      /* connected (AUTH/SELECT pipelined ahead of batches) */
    ST_SINK_CLOSED      /* st_sink_close: no more connects */
} st_sink_state_t;

struct st_sink {
    uv_loop_t *loop;
    st_sink_config_t cfg; /* copy; strings borrowed */
    st_agg_t *agg;        /* owned: what the sink drains */

    /* Redis state, for Prometheus (atomics, relaxed) */
    _Atomic uint64_t flushes, lost, reconnects, redis_errors;
    _Atomic int connected;

    /* redis sink: loop-thread only, see redis_sink.c */
    st_sink_state_t state;
    struct redisAsyncContext *ac; /* NULL unless CONNECTING/READY */
    uv_timer_t flush_timer;
    uv_timer_t ctl_timer;       /* connect timeout, reconnect backoff, reply timeout, teardown */
    uint64_t backoff_ms;        /* next reconnect delay */
    uint64_t reply_timeout_ms;  /* a batch (or AUTH/SELECT/PING) without all replies after this:
                                   reconnect */
    int meta_sent;              /* static meta fields written on this connection */
    st_batch_t inflight;        /* the batch whose replies are awaited */
    size_t inflight_left;       /* commands of it still without a reply */
    size_t inflight_deltas;     /* deltas of it still without a reply */
    uint64_t inflight_compared; /* comparisons counted by its commands still without a reply */
    uint64_t inflight_since;    /* uv_now when it was sent */
    size_t setup_pending;       /* AUTH/SELECT replies awaited before batches go out */
    int teardown;               /* 1: free the context from ctl_timer, not from a callback */
    int in_free;     /* inside our own redisAsyncFree (disconnect cb must not reschedule) */
    int close_stage; /* 0 running, 1 final flush, 2 handles closing */
    int logged_down; /* the current outage was logged once */
    int closing;     /* st_sink_close called */
    uint64_t close_deadline;
    int handles_open; /* timers not yet closed */
    /* where Redis is: cfg.redis_host resolved with uv_getaddrinfo (never on
     * the loop thread; an IP literal is used as is), each address tried in
     * turn, hiredis given the numeric address so it resolves nothing */
    uv_getaddrinfo_t gai;
    int resolving;                                /* gai in flight */
    char addrs[ST_SINK_ADDR_MAX][ST_SINK_IP_MAX]; /* numeric, the resolver's order */
    int naddrs;                                   /* 0: none resolved yet */
    int addr_idx;                                 /* the one tried or connected to */
    int addr_left;                                /* not yet tried this round; 0: resolve first */
    char addr_ok[ST_SINK_IP_MAX];                 /* last one that connected, "" none */
    void (*close_cb)(void *);
    void *close_arg;

    /* mesh halves (cfg.mesh): the join script, loaded once per connection */
    char mesh_sha[41];       /* SHA-1 hex of the script (EVALSHA) */
    char *mesh_keys[3];      /* "<prefix>mesh:halves", "...:pending", "...:orphans"; owned */
    size_t mesh_inflight;    /* EVALSHA/EVAL sent, no reply yet */
    uint64_t mesh_progress;  /* uv_now of the last mesh reply, or send into an empty pipe */
    uint64_t mesh_last_send; /* uv_now of the last script call (a sweep is due after 1 s) */
    _Atomic uint64_t mesh_orphans[3];
};

#endif
