/*
 * metrics: per-worker counters and histograms, rendered by the admin thread
 * as Prometheus text. Each st_metrics_t has exactly one writer (its worker's
 * loop thread), so increments are a relaxed load + store, no lock prefix; the
 * admin thread reads them with relaxed loads and sums over workers.
 */
#ifndef ST_METRICS_H
#define ST_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "reasons.h"

/* Every reason family the counters are indexed by (enum st_upfail,
 * st_tls_fail, st_close, st_skip, st_mesh_drop, st_reject, st_accept_err) is
 * an X-macro table in reasons.h: enum value, name and metric label. */

enum st_tls_side { ST_TLS_LISTENER = 0, ST_TLS_PRIMARY, ST_TLS_SHADOW, ST_TLS_NOISE };

#define ST_HIST_BUCKETS 14
typedef struct {
    _Atomic uint64_t bucket[ST_HIST_BUCKETS]; /* non-cumulative; the last one is +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
} st_hist_t;

typedef struct st_metrics {
    _Atomic uint64_t requests[6]; /* by status class: [1]=1xx .. [5]=5xx, [0]=other */
    _Atomic uint64_t upstream_errors[ST_UPFAIL_NCOUNTED];
    _Atomic int64_t active_connections;
    _Atomic uint64_t connections_total;
    _Atomic uint64_t client_closes[ST_CLOSE_COUNT]; /* by enum st_close */
    _Atomic uint64_t client_errors; /* 4xx answered by the proxy itself (framing, limits) */
    _Atomic uint64_t rejected[ST_REJ_COUNT]; /* refused by the proxy, by enum st_reject */
    st_hist_t request_duration;
    _Atomic uint64_t mirror_requests; /* mirror copies sent to the shadow */
    _Atomic uint64_t mirror_skipped[ST_SKIP_COUNT];
    _Atomic uint64_t shadow_responses[6];
    _Atomic uint64_t shadow_errors[ST_UPFAIL_NCOUNTED];
    st_hist_t shadow_duration;
    _Atomic uint64_t noise_requests;
    _Atomic uint64_t mirror_inflight;                   /* gauge */
    _Atomic uint64_t mirror_bytes;                      /* gauge: bytes of mirror copies held */
    _Atomic uint64_t tls_failures[4][ST_TLSFAIL_COUNT]; /* [side][enum st_tls_fail]: side
                                                           listener/primary/shadow/noise */
    _Atomic uint64_t tls_resumed[4];       /* upstream handshakes that resumed a session, by side */
    _Atomic uint64_t upstream_connects[4]; /* connects started (one per address tried), by pool
                                              (enum st_tls_side) */
    _Atomic uint64_t upstream_failovers[4];   /* failed connects that went on to the next address */
    _Atomic uint64_t upstream_resolves[4][3]; /* [pool][enum st_resolve_result] re-resolutions */
    _Atomic uint64_t accept_errors[ST_ACCEPT_ERR_COUNT]; /* by enum st_accept_err */
    _Atomic uint64_t accept_paused;   /* gauge: 1 while the listener does not accept */
    _Atomic uint64_t max_connections; /* gauge: this worker's connection cap, 0: none */
    /* mesh mode (--mirror-mode mesh) */
    _Atomic uint64_t mesh_sampled;       /* requests in the share: a half is captured */
    _Atomic uint64_t mesh_unsampled;     /* requests outside the share (shadow role: 204) */
    _Atomic uint64_t mesh_no_request_id; /* requests without x-request-id: never sampled */
    _Atomic uint64_t mesh_dropped[ST_MDROP_COUNT]; /* the worker's reasons only */
} st_metrics_t;

#define ST_INC(field) ST_ADD(field, 1)
#define ST_ADD(field, n)                                                                           \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n),    \
                          memory_order_relaxed)

void st_hist_observe(st_hist_t *h, double seconds);
/* Writes one Prometheus histogram: the sum of n histograms. */
void st_hist_render(FILE *out, const char *name, const char *help, const st_hist_t *const *h,
                    size_t n);
int st_status_class(int status); /* 1..5, 0 for anything else */

/* Writes the proxy's own metrics (summed over n workers) in Prometheus text. */
void st_metrics_render(st_metrics_t *const *all, size_t n, FILE *out);

#endif
