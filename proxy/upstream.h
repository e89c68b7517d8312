/*
 * upstream: connections to one upstream (primary, shadow or noise replica)
 * and the per-worker pool that keeps idle ones for reuse.
 *
 * An st_upconn_t is borrowed by one owner at a time (a client exchange or a
 * mirror leg), which gets events through a static ops table of its kind and
 * drives the response parser itself. Idle connections keep reading so a close
 * by the upstream is noticed at once and the connection leaves the pool.
 *
 *   CONNECTING --connected--> ACTIVE --release(reusable)--> IDLE --acquire--> ACTIVE
 *     |  ^ next address          |                              |
 *     +--+ on a failed connect   |                              |
 *        +- every address failed-+--------- close --------------+--> CLOSING --> freed
 *
 * A connect that fails (refused, unreachable, timed out) goes on to the
 * pool's next address with a fresh socket, until every address was tried
 * once; only then does the owner get on_fail(ST_UPFAIL_CONNECT).
 */
#ifndef ST_UPSTREAM_H
#define ST_UPSTREAM_H

#include <llhttp.h>
#include <stdint.h>
#include <uv.h>

#include "addrset.h"
#include "buf.h"
#include "config.h"
#include "list.h"
#include "reasons.h"
#include "tls.h"

struct st_worker;
typedef struct st_upconn st_upconn_t;

/* Why a connection failed: enum st_upfail (reasons.h), whose counted
 * reasons index upstream_errors / shadow_errors. */

typedef struct {
    /* The connection is ready for a request (connected, or taken from the pool
     * when acquire returned 0 asynchronously). */
    void (*on_ready)(void *owner, st_upconn_t *u);
    /* New bytes are in u->rb[parsed, filled). The owner parses them. */
    void (*on_data)(void *owner, st_upconn_t *u);
    /* The connection failed or the upstream closed it. The owner must stop
     * using it and call st_upconn_close() (it stays allocated until then). */
    void (*on_fail)(void *owner, st_upconn_t *u, enum st_upfail why);
} st_upstream_ops_t;

enum st_upconn_state {
    ST_UP_CONNECTING = 0,
    ST_UP_HANDSHAKE,
    ST_UP_ACTIVE,
    ST_UP_IDLE,
    ST_UP_CLOSING
};

typedef struct st_pool {
    struct st_worker *w;
    const st_addr_t *addr;
    const char *name; /* "primary", "shadow", "noise" for logs */
    st_list_t idle;   /* idle st_upconn_t, most recently used last */
    size_t nidle, max_idle;
    size_t nconns, max_conns; /* open connections; 0 = unbounded */
    uint64_t connect_timeout_ms;
    uint64_t idle_timeout_ms;    /* idle pooled connections are closed after this */
    st_addrset_t addrs;          /* where to connect, tried in turn; n == 0: not resolved yet */
    uint64_t unreachable_log_ms; /* loop time of the last "every address failed" line */
    unsigned unreachable_quiet;  /* such failures not logged since (one line per second) */
    SSL_CTX *tls_ctx;            /* https upstream: shared client context, NULL for plain HTTP */
    SSL_SESSION *tls_session;    /* last session, resumed by new connections */
    int tls_side;                /* enum st_tls_side, for metrics */
} st_pool_t;

struct st_upconn {
    st_sock_t sock; /* TCP or unix: socket; data = this */
    uv_connect_t creq;
    uv_timer_t timer; /* connect timeout, then the owner's response timeout */
    st_pool_t *pool;
    st_list_t link; /* in pool->idle while IDLE */
    enum st_upconn_state state;
    int handles;        /* open libuv handles; freed when it reaches 0 */
    int reading;        /* uv_read_start active */
    int reused;         /* served at least one earlier request */
    int got_bytes;      /* received something since it was acquired */
    uint64_t deadline;  /* loop time (ms) the timeout expires, 0: none (lazy timer) */
    uint64_t timer_due; /* loop time the uv timer is set to fire */
    st_rbuf_t rb;       /* read buffer, borrowed from the worker's rpool while needed */
    llhttp_t parser;    /* response parser, initialised by the owner */
    st_tls_t tls;       /* with pool->tls_ctx */
    int pumping;        /* inside tls_pump: no re-entry */
    void *owner;        /* NULL while idle */
    const st_upstream_ops_t *ops;
    /* connecting: the address tried (pool->addrs.a[idx] at generation gen),
     * then the one connected to (peer) */
    st_sockaddr_t peer;
    unsigned gen;
    int idx;
    int tries;             /* addresses tried by this connect */
    int redialing;         /* the socket is closing to try the next address */
    int dial_err;          /* a connect that failed at once, reported by the timer */
    int errs[ST_ADDR_MAX]; /* libuv error of each address tried, for the log */
};

void st_pool_init(st_pool_t *p, struct st_worker *w, const st_addr_t *addr, const char *name,
                  size_t max_idle, size_t max_conns, uint64_t connect_timeout_ms,
                  uint64_t idle_timeout_ms);
/* Starts an asynchronous re-resolution of the pool's host name unless one
 * started less than min_gap_ms ago (a Service that appears late, moves or
 * is re-created). Until a name resolves at all, st_pool_acquire refuses (-1). */
void st_pool_resolve(st_pool_t *p, uint64_t min_gap_ms);
/* Least time between two resolutions that failures ask for. */
#define ST_RESOLVE_RETRY_MS 1000
/* Closes every idle connection (active ones are closed by their owners). */
void st_pool_close_idle(st_pool_t *p);

/* Borrows a connection for owner. Returns 1 with *out ready now (reused from
 * the pool: on_ready is NOT called), 0 with *out connecting (on_ready or
 * on_fail follows), -1 when the pool is at max_conns or out of memory. */
int st_pool_acquire(st_pool_t *p, void *owner, const st_upstream_ops_t *ops, st_upconn_t **out);
/* Like st_pool_acquire but always a new connection (a retry after a pooled
 * connection died under a request). Returns 0 or -1. */
int st_pool_connect(st_pool_t *p, void *owner, const st_upstream_ops_t *ops, st_upconn_t **out);
/* Gives the connection back: kept idle when reusable and there is room,
 * closed otherwise. The owner must not touch it afterwards. */
void st_upconn_release(st_upconn_t *u, int reusable);
/* Closes the connection; the owner must not touch it afterwards. */
void st_upconn_close(st_upconn_t *u);
/* (Re)arms the owner's timeout: on expiry on_fail(ST_UPFAIL_TIMEOUT). 0 stops it. */
void st_upconn_set_timeout(st_upconn_t *u, uint64_t ms);
void st_upconn_pause(st_upconn_t *u);  /* stop reading (backpressure) */
void st_upconn_resume(st_upconn_t *u); /* start reading again */
/* Writes bufs to the upstream, as is or encrypted for TLS upstreams. What the
 * socket takes at once goes out now; the rest is queued with req. Returns 1
 * when everything went out now (cb is not called, *owned is NULL), 0 when a
 * write is queued (cb follows; for TLS *owned is the ciphertext buffer the
 * caller frees in cb), or a negative libuv error. A response can then be
 * read, and the connection reused, before a queued write's callback ran only
 * when the caller waits for it. */
int st_upconn_write(st_upconn_t *u, uv_write_t *req, const uv_buf_t *bufs, unsigned nbufs,
                    char **owned, uv_write_cb cb);
/* The connection's socket as a stream. */
static inline uv_stream_t *st_upconn_stream(st_upconn_t *u)
{
    return &u->sock.stream;
}
/* The TLS session of a TLS upstream connection, NULL for plain HTTP. */
static inline st_tls_t *st_upconn_tls(st_upconn_t *u)
{
    return u->pool->tls_ctx ? &u->tls : NULL;
}
/* Returns the read buffer to the pool when it holds nothing unparsed. */
void st_upconn_trim(st_upconn_t *u);

#endif
