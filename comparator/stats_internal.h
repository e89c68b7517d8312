/*
 * Internal types of the stats module, shared by comparator/stats.c (in-memory
 * aggregation, Prometheus text) and comparator/redis_sink.c (connection state
 * machine and batched flush). Not a public header: only these two files and
 * tests/unit/test_stats*.c include it.
 *
 * Data flow:
 *
 *   st_stats_record()  --adds-->  pending deltas (st_delta_t, one per key+field)
 *                                 pending samples (per endpoint ring of JSON)
 *   flush timer        --moves--> st_batch_t (argv of every command) --> hiredis
 *
 * The pending table holds at most cfg.max_backlog entries (deltas + samples):
 * an increment to an existing entry always merges; a new entry beyond the cap
 * is dropped and counted in `dropped`.
 */
#ifndef SHADOWTEE_STATS_INTERNAL_H
#define SHADOWTEE_STATS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "shadowtee/stats.h"

struct redisAsyncContext;

/* Latency histogram: ST_HIST_NBOUNDS upper bounds in ms (1 ms .. 60 s, 9 per
 * decade), plus one overflow bucket "+Inf". Hash field names are the bound
 * written with "%g" ("1", "1.5", ..., "60000", "+Inf"). */
#define ST_HIST_NBOUNDS 44
extern const double st_stats_hist_bounds_ms[ST_HIST_NBOUNDS];
extern const char *const st_stats_hist_fields[ST_HIST_NBOUNDS + 1]; /* "%g" of each, "+Inf" */

#define ST_STATS_MAX_FIELD 512 /* diff paths are cut to keep fields bounded */

/* One pending increment: HINCRBY key field ival, or HINCRBYFLOAT when
 * is_float. key and field live in data[] ("key\0field\0"). */
typedef struct st_delta {
    struct st_delta *next; /* hash chain */
    uint64_t hash;
    int64_t ival;
    double fval;
    int is_float;
    size_t keylen;
    size_t fieldlen;
    char data[];
} st_delta_t;

/* Per-endpoint state. Counters are atomics read by st_stats_prometheus() from
 * another thread (relaxed order); everything else is loop-thread only. */
typedef struct st_stats_ep {
    struct st_stats_ep *hnext; /* endpoint hash chain */
    uint64_t hash;
    char *name;    /* endpoint key, or ST_ENDPOINT_OTHER; owned */
    char *key;     /* "shadowtee:{svc}:ep:<name>:"; owned */
    size_t keylen; /* strlen(key) */
    int touched;   /* 1: seen since the last batch (SADD endpoints) */
    _Atomic uint64_t compared, matched, diverged, noise, errors, timeouts;
    /* uv_hrtime() when added to eps (under lock): the Prometheus fold order */
    uint64_t born_ns;
    int64_t sample_second;    /* wall second of the last sample taken */
    size_t samples_in_second; /* samples taken during sample_second */
    char **samples;           /* ring of pending sample JSON (owned), cap = samples_per_endpoint */
    size_t nsamples, sample_head; /* count pending, index of the oldest */
} st_stats_ep_t;

/* One command of a batch, ready for redisAsyncCommandArgv. */
typedef struct {
    int argc;
    char **argv;        /* owned, each NUL-terminated */
    size_t *argvlen;    /* owned */
    size_t ndeltas;     /* deltas/samples this command carries (for lost accounting) */
    uint64_t ncompared; /* comparisons it counts: the "compared" field of an endpoint's counts */
} st_cmd_t;

typedef struct {
    st_cmd_t *cmds; /* owned */
    size_t ncmds, cap;
    size_t ndeltas;     /* sum of cmds[i].ndeltas */
    uint64_t ncompared; /* sum of cmds[i].ncompared */
} st_batch_t;

#define ST_SINK_ADDR_MAX 8  /* Redis addresses kept of one name */
#define ST_SINK_IP_MAX   48 /* an IPv6 address as text, with room to spare */

typedef enum {
    ST_SINK_OFF = 0,    /* no Redis configured */
    ST_SINK_WAIT,       /* disconnected: reconnect timer armed (backoff), or resolving */
    ST_SINK_CONNECTING, /* redisAsyncConnect issued, connect timeout armed */
    ST_SINK_READY,      /* connected (AUTH/SELECT pipelined ahead of batches) */
    ST_SINK_CLOSED      /* st_stats_close: no more connects */
} st_sink_state_t;

struct st_stats {
    uv_loop_t *loop;
    st_stats_config_t cfg; /* copy; strings borrowed */
    st_rules_t *own_rules; /* default rules when cfg.rules was NULL; owned */
    char *prefix;          /* "shadowtee:{svc}:"; owned */
    size_t prefixlen;

    /* endpoints: eps[0..neps) owned; the array grows under `lock` so the
     * Prometheus reader sees a consistent array */
    pthread_mutex_t lock;
    st_stats_ep_t **eps;
    size_t neps, epcap;
    st_stats_ep_t *other;   /* the "{other}" endpoint once the cap is hit; in eps */
    st_stats_ep_t **ephash; /* lookup by name, nephash chains */
    char *kbuf, *fbuf;      /* scratch key / field buffers (kbufcap, fbufcap bytes); owned */
    size_t kbufcap, fbufcap;
    char *mkey; /* "<prefix>minute:<mkey_minute>", mkeylen bytes; owned */
    size_t mkeylen;
    int64_t mkey_minute;
    size_t nephash;

    /* pending deltas: chained hash table + insertion order list */
    st_delta_t **buckets;
    size_t nbuckets;
    st_delta_t **order; /* insertion order, norder entries */
    size_t norder, ordercap;
    size_t npending_samples;
    int64_t batch_first_ms, batch_last_ms; /* min/max now_ms since the last batch, 0: none */
    int64_t *minutes;                      /* minute numbers touched since the last batch */
    size_t nminutes, minutecap;

    /* counters for Prometheus (atomics, relaxed) */
    _Atomic uint64_t n_match, n_diverged, n_noise, n_error;
    _Atomic uint64_t n_noise_match, n_noise_diverged; /* noise replica vs primary (baseline) */
    _Atomic uint64_t flushes, dropped, lost, reconnects, redis_errors;
    /* comparisons whose counts will never be in Redis, by enum st_cmp_loss:
     * what Redis has plus these is every comparison recorded (with Redis) */
    _Atomic uint64_t cmp_lost[4];
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
    int closing;     /* st_stats_close called */
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

/* Why a comparison's count never reached Redis (metric label in st_cmp_loss_names). */
enum st_cmp_loss {
    ST_CMP_LOSS_BACKLOG = 0, /* the pending table was full: never queued */
    ST_CMP_LOSS_CONNECTION,  /* sent, or about to be, when the connection went away */
    ST_CMP_LOSS_ERROR,       /* Redis answered an error (WRONGTYPE, OOM...) */
    ST_CMP_LOSS_SHUTDOWN,    /* still pending when the stats closed */
};
extern const char *const st_cmp_loss_names[4];
void st_stats__lose(st_stats_t *s, enum st_cmp_loss why, uint64_t n);

/* ---- stats.c (aggregation) ---------------------------------------------- */

/* Moves every pending delta and sample into `out` (initialised empty by the
 * caller with st_batch_init) as Redis commands; the pending table is empty
 * afterwards. `with_meta` adds the static meta fields (schema, bounds, TTL).
 * Returns 0, or -1 on allocation failure (what was built stays in out). */
int st_stats__build_batch(st_stats_t *s, st_batch_t *out, int with_meta, int64_t now_ms);
/* Number of pending entries (deltas + samples). */
size_t st_stats__pending(const st_stats_t *s);
/* Frees all pending deltas and samples (close path). */
void st_stats__pending_clear(st_stats_t *s);
/* Frees the stats object itself (after every handle is closed). */
void st_stats__free(st_stats_t *s);

void st_batch_init(st_batch_t *b);
void st_batch_free(st_batch_t *b);
/* Appends a command built from NUL-terminated strings (argc of them); -1 on ENOMEM. */
int st_batch_add(st_batch_t *b, size_t ndeltas, int argc, const char *const *argv);

/* Index of the histogram bucket for a latency in ms (ST_HIST_NBOUNDS: +Inf). */
size_t st_stats__hist_bucket(double ms);

/* ---- redis_sink.c ------------------------------------------------------- */

/* Starts the timers and, with a Redis host, the first connect. 0 or a uv error. */
int st_sink_start(st_stats_t *s);
/* Final flush (bounded), teardown, then st_stats__free + close_cb. */
void st_sink_close(st_stats_t *s);
/* The one line at close: comparisons recorded and how many Redis lacks. */
void st_sink_closed_line(st_stats_t *s);

#endif
