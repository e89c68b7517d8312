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

/* Reasons are static strings that are also the metric labels. Upstream and
 * shadow failures (enum st_upfail), TLS failures (enum st_tls_fail) and
 * client closes (enum st_close) are in reasons.h. */
enum st_skip {
    ST_SKIP_SAMPLING = 0,
    ST_SKIP_METHOD,
    ST_SKIP_BODY_TOO_LARGE,
    ST_SKIP_INFLIGHT_CAP,
    ST_SKIP_MEMORY_BUDGET,
    ST_SKIP_SHADOW_UNAVAILABLE,
    ST_SKIP_LOOP_GUARD, /* the request is a mirror already (x-shadowtee-mirror, Host *-shadow) */
    ST_SKIP_COUNT
};
/* Why a mesh half was dropped (shadowtee_mesh_halves_total{outcome="dropped",reason}). The
 * first three are counted by the worker, the rest by the comparator thread. */
enum st_mesh_drop {
    ST_MDROP_COMPARATOR_BUSY = 0, /* the comparator queue's length cap */
    ST_MDROP_QUEUE_BYTES,         /* its byte budget, or an allocation failed */
    ST_MDROP_ABORTED,             /* the client went away before the exchange ended */
    ST_MDROP_REDIS_DOWN,          /* not connected to Redis (or too many halves in flight) */
    ST_MDROP_CONNECTION_LOST,     /* sent, the connection went before the reply */
    ST_MDROP_ERROR_REPLY,         /* Redis answered an error */
    ST_MDROP_DUPLICATE,           /* this side already published a half with this request id */
    ST_MDROP_SHUTDOWN,            /* still queued when the drain timeout ran out */
    ST_MDROP_COUNT
};
extern const char *const st_mesh_drop_names[ST_MDROP_COUNT];
/* Why the proxy answered a request itself instead of forwarding it (each
 * with one status, st_reqcheck_status()), plus ST_REJ_UPGRADE: an Upgrade
 * not on --allow-upgrade, removed from a request that is forwarded. */
enum st_reject {
    ST_REJ_NONE = 0,
    ST_REJ_CONNECT,          /* 405: CONNECT without --allow-connect */
    ST_REJ_UPGRADE,          /* Upgrade removed, the request forwarded without it */
    ST_REJ_HTTP09,           /* 400: a request line without an HTTP-version */
    ST_REJ_BAD_REQUEST_LINE, /* 400: not method SP request-target SP HTTP-version, or a bad form */
    ST_REJ_BAD_HEADER_NAME,  /* 400: empty, non-token or space-trailed field name, obs-fold */
    ST_REJ_BAD_HEADER_VALUE, /* 400: a control byte in a field value */
    ST_REJ_BAD_HOST,         /* 400: Host missing (1.1), repeated, invalid; bad target authority */
    ST_REJ_BARE_LF,          /* 400: a head line ended by LF alone */
    ST_REJ_BARE_CR,          /* 400: a CR not followed by LF in the head */
    ST_REJ_BAD_FRAMING,      /* 400: Content-Length / Transfer-Encoding / chunk syntax */
    ST_REJ_MALFORMED,        /* 400: anything else llhttp refuses */
    ST_REJ_UNKNOWN_METHOD,   /* 501: a method llhttp does not know */
    ST_REJ_TRANSFER_CODING,  /* 501: a transfer coding other than chunked */
    ST_REJ_VERSION,          /* 505: HTTP major version other than 1 (HTTP/2 preface) */
    ST_REJ_HEAD_TOO_LARGE,   /* 431 */
    ST_REJ_URI_TOO_LONG,     /* 414 */
    ST_REJ_BODY_TOO_LARGE,   /* 413 */
    ST_REJ_TIMEOUT,          /* 408: head or body not sent in time */
    ST_REJ_COUNT
};

/* accept(2) failures of a client listener (listener.c). */
enum st_accept_err {
    ST_ACCEPT_EMFILE = 0, /* the process's descriptor limit */
    ST_ACCEPT_ENFILE,     /* the system's descriptor limit */
    ST_ACCEPT_ENOBUFS,    /* ENOBUFS / ENOMEM: socket memory */
    ST_ACCEPT_OTHER,
    ST_ACCEPT_ERR_COUNT
};

extern const char *const st_accept_err_names[ST_ACCEPT_ERR_COUNT];
extern const char *const st_skip_names[ST_SKIP_COUNT];
extern const char *const st_reject_names[ST_REJ_COUNT];
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
