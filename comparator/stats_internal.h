/*
 * Internal types of the aggregator (comparator/stats.c: in-memory
 * aggregation, the batch of Redis commands it drains into, its Prometheus
 * families). No libuv, no hiredis. Not a public header: only stats.c, the
 * sink above it (comparator/redis_sink_internal.h) and tests/unit/test_stats*.c,
 * test_agg.c include it.
 *
 * Data flow:
 *
 *   st_sink_record()  --adds-->  pending deltas (st_delta_t, one per key+field)
 *                                 pending samples (per endpoint ring of JSON)
 *   st_agg_build_batch --moves--> st_batch_t (argv of every command) --> the sink
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

/* Latency histogram: ST_HIST_NBOUNDS upper bounds in ms (1 ms .. 60 s, 9 per
 * decade), plus one overflow bucket "+Inf". Hash field names are the bound
 * written with "%g" ("1", "1.5", ..., "60000", "+Inf"). */
#define ST_HIST_NBOUNDS 44
extern const double st_agg_hist_bounds_ms[ST_HIST_NBOUNDS];
extern const char *const st_agg_hist_fields[ST_HIST_NBOUNDS + 1]; /* "%g" of each, "+Inf" */

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

/* Per-endpoint state. Counters are atomics read by st_sink_prometheus() from
 * another thread (relaxed order); everything else is loop-thread only. */
typedef struct st_agg_ep {
    struct st_agg_ep *hnext; /* endpoint hash chain */
    uint64_t hash;
    char *name;    /* endpoint key, or ST_ENDPOINT_OTHER; owned */
    char *key;     /* "shadowtee:{svc}:ep:<name>:"; owned */
    size_t keylen; /* strlen(key) */
    int touched;   /* 1: seen since the last batch (SADD endpoints) */
    _Atomic uint64_t compared, matched, diverged, noise, errors, timeouts;
    /* CLOCK_MONOTONIC ns when added to eps (under lock): the Prometheus fold order */
    uint64_t born_ns;
    int64_t sample_second;    /* wall second of the last sample taken */
    size_t samples_in_second; /* samples taken during sample_second */
    char **samples;           /* ring of pending sample JSON (owned), cap = samples_per_endpoint */
    size_t nsamples, sample_head; /* count pending, index of the oldest */
} st_agg_ep_t;

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

struct st_agg {
    st_agg_config_t cfg;   /* copy; strings borrowed */
    st_rules_t *own_rules; /* default rules when cfg.rules was NULL; owned */
    char *prefix;          /* "shadowtee:{svc}:"; owned */
    size_t prefixlen;

    /* endpoints: eps[0..neps) owned; the array grows under `lock` so the
     * Prometheus reader sees a consistent array */
    pthread_mutex_t lock;
    st_agg_ep_t **eps;
    size_t neps, epcap;
    st_agg_ep_t *other;   /* the "{other}" endpoint once the cap is hit; in eps */
    st_agg_ep_t **ephash; /* lookup by name, nephash chains */
    char *kbuf, *fbuf;    /* scratch key / field buffers (kbufcap, fbufcap bytes); owned */
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
    _Atomic uint64_t dropped; /* deltas and samples not kept: the backlog was full */
    /* comparisons whose counts will never be in Redis, by enum st_cmp_loss:
     * what Redis has plus these is every comparison recorded (with Redis) */
    _Atomic uint64_t cmp_lost[4];
};

/* Why a comparison's count never reached Redis (metric label in st_cmp_loss_names). */
enum st_cmp_loss {
    ST_CMP_LOSS_BACKLOG = 0, /* the pending table was full: never queued */
    ST_CMP_LOSS_CONNECTION,  /* sent, or about to be, when the connection went away */
    ST_CMP_LOSS_ERROR,       /* Redis answered an error (WRONGTYPE, OOM...) */
    ST_CMP_LOSS_SHUTDOWN,    /* still pending when the stats closed */
};
extern const char *const st_cmp_loss_names[4];
/* Counts n comparisons whose counts Redis will never have. */
void st_agg_lose(st_agg_t *a, enum st_cmp_loss why, uint64_t n);

/* Moves every pending delta and sample into `out` (initialised empty by the
 * caller with st_batch_init) as Redis commands; the pending table is empty
 * afterwards. `with_meta` adds the static meta fields (schema, bounds, TTL).
 * Returns 0, or -1 on allocation failure (what was built stays in out). */
int st_agg_build_batch(st_agg_t *a, st_batch_t *out, int with_meta, int64_t now_ms);
/* Number of pending entries (deltas + samples). */
size_t st_agg_pending(const st_agg_t *a);
/* Frees all pending deltas and samples. */
void st_agg_pending_clear(st_agg_t *a);
/* Counts the comparisons of the pending deltas as lost (`why`): they will
 * never be sent (the close path, before st_agg_free). */
void st_agg_lose_pending(st_agg_t *a, enum st_cmp_loss why);
/* Comparisons recorded (every verdict) and, of them, lost for Redis. */
uint64_t st_agg_compared(const st_agg_t *a);
uint64_t st_agg_lost(const st_agg_t *a);

void st_batch_init(st_batch_t *b);
void st_batch_free(st_batch_t *b);
/* Appends a command built from NUL-terminated strings (argc of them); -1 on ENOMEM. */
int st_batch_add(st_batch_t *b, size_t ndeltas, int argc, const char *const *argv);

/* Index of the histogram bucket for a latency in ms (ST_HIST_NBOUNDS: +Inf). */
size_t st_agg_hist_bucket(double ms);

#endif
