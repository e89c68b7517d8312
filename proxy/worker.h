/*
 * worker: one thread with its own uv_loop, its own SO_REUSEPORT listener
 * (listener.h: one socket, or those a predecessor handed over), its own
 * upstream pools, buffers and metrics. Nothing on the request path is shared
 * between workers, so nothing is locked. The main thread talks to a worker
 * only through `cmd` + the `wake` async handle; finished pairs leave through
 * the worker's lock-free rings to the comparator threads (cmpthread.h),
 * which own the statistics.
 */
#ifndef ST_WORKER_H
#define ST_WORKER_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "cmpthread.h"
#include "config.h"
#include "list.h"
#include "listener.h"
#include "mesh.h"
#include "metrics.h"
#include "tee.h"
#include "tls.h"
#include "upstream.h"
#include "wbatch.h"

#define ST_RBUF_SIZE (64 * 1024)

enum st_worker_cmd { ST_CMD_NONE = 0, ST_CMD_DRAIN = 1, ST_CMD_STOP = 2 };

typedef struct st_worker {
    int id;
    const st_config_t *cfg;
    uv_loop_t loop;
    uv_thread_t thread;
    st_listener_t listener; /* started by st_worker_listen */
    char listener_name[32];
    uv_async_t wake;        /* main -> worker: look at cmd */
    _Atomic int cmd;        /* enum st_worker_cmd */
    _Atomic int finished;   /* set by the worker thread when its loop has returned */
    uv_async_t *done_async; /* worker -> main: this worker finished */
    int draining;
    int stopping;

    st_metrics_t metrics;
    st_rpool_t rpool;        /* ST_RBUF_SIZE read buffers */
    st_wbatch_pool_t wbatch; /* free list of heap write batches */
    char *tls_wscratch;      /* ST_TLS_RECORD_MAX bytes: gathers small writes into one TLS record */
    char
        *tls_scratch; /* ST_RBUF_SIZE ciphertext buffer for TLS reads (alloc -> read -> callback) */
    st_tls_server_t *tls_server; /* --tls-cert listener context, NULL: plain HTTP */

    st_pool_t primary_pool;
    st_pool_t shadow_pool;
    st_pool_t noise_pool;
    uv_timer_t resolve_timer; /* --resolve-interval: re-resolves the pools' names */
    int resolve_timer_open;

    st_list_t clients; /* st_conn_t (conn.h) */
    size_t nclients;
    st_tee_t tee; /* mirrors, their caps, send queue, shadow health (tee.h) */

    uint64_t rng;             /* xorshift64* state */
    st_cmpfeed_t cmpfeed;     /* rings to the comparator threads; no threads: nothing compared */
    st_mesh_hash_t mesh_hash; /* --mirror-mode mesh: the sampling digest (mesh.h) */
} st_worker_t;

/* TLS contexts shared by all workers (NULL members: plain HTTP). */
typedef struct {
    st_tls_server_t *server;
    SSL_CTX *primary, *shadow, *noise;
} st_tls_contexts_t;

/* Sets up the worker (loop, listener, pools) on the calling thread; finished
 * pairs go to ring `id` of each of the ncmp comparator threads (none: not
 * compared). 0 or a negative libuv error with a message logged. */
int st_worker_init(st_worker_t *w, int id, const st_config_t *cfg, st_cmpthread_t *cmp, size_t ncmp,
                   const st_tls_contexts_t *tls, uv_async_t *done_async);
/* After st_worker_init: accepts on fds[0..n) (listening sockets taken over
 * from a predecessor, handover.h; the worker owns them now), or with n = 0 on
 * a new SO_REUSEPORT socket bound to --listen. 0 or a libuv error, logged. */
int st_worker_listen(st_worker_t *w, const int *fds, int n);
/* Runs the loop on a new thread. */
int st_worker_start(st_worker_t *w);
/* Asks the worker to drain (stop accepting, finish in-flight) or stop now. */
void st_worker_command(st_worker_t *w, enum st_worker_cmd cmd);
/* Joins the thread and frees everything (after done_async fired). */
void st_worker_join(st_worker_t *w);

uint64_t st_worker_random(st_worker_t *w);
/* Writes a fresh request id (UUID v4 form, 36 chars + NUL) into out. */
void st_worker_request_id(st_worker_t *w, char out[37]);
/* Called by clients and mirrors when they go away; finishes a drain. */
void st_worker_maybe_done(st_worker_t *w);

#endif
