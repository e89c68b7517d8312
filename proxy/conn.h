/*
 * conn: one client connection (st_conn_t): its socket, read buffer, timers,
 * TLS session and the write batches it fills, and the one exchange it
 * carries at a time (exchange.h; pipelined requests wait in the read buffer
 * and are answered in order). The public entry points are client.h.
 *
 * Connection state:
 *   IDLE      keep-alive, no bytes of a request yet
 *   EXCHANGE  a request in progress (its own state: exchange.h)
 *   TUNNEL    101 / CONNECT accepted: raw bytes both ways
 *   LINGER    error answered, draining input before close
 *   CLOSED    st_conn_close ran; the handles close, then the memory goes
 *
 *   IDLE -> EXCHANGE    the first byte of a request
 *   EXCHANGE -> IDLE    the exchange ended, no pipelined bytes
 *   EXCHANGE -> TUNNEL  the primary accepted the upgrade / CONNECT
 *   any -> LINGER       the proxy answered an error (or early) and drains
 *   any -> CLOSED       st_conn_close(c, reason), reason from reasons.h
 *
 * Bytes flow without copies: request body spans point into rb and response
 * body spans into the upstream connection's read buffer; they are queued in
 * a write batch per direction (wbatch.h). While a batch is in flight its
 * source is not read (backpressure), so each side holds at most one read
 * buffer.
 */
#ifndef ST_CONN_H
#define ST_CONN_H

#include <llhttp.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "exchange.h"
#include "list.h"
#include "log.h"
#include "reasons.h"
#include "tls.h"
#include "wbatch.h"

struct st_worker;

enum st_conn_dir { DIR_UP = 0, DIR_CL = 1 }; /* a write batch's destination */
enum st_conn_state {
    ST_CONN_IDLE = 0,
    ST_CONN_EXCHANGE,
    ST_CONN_TUNNEL,
    ST_CONN_LINGER,
    ST_CONN_CLOSED
};

extern const char *const st_conn_state_names[];

typedef struct st_conn {
    uv_tcp_t tcp;     /* data = this */
    uv_timer_t timer; /* header / idle / linger timeout */
    struct st_worker *w;
    st_list_t link; /* in w->clients */
    int handles;    /* open libuv handles */
    enum st_conn_state state;
    int pending[2];    /* heap batches in flight per direction */
    st_rbuf_t rb;      /* client bytes; head spans point here */
    llhttp_t parser;   /* request parser (callbacks: exchange_http.c) */
    st_wbatch_t wb[2]; /* batches being filled */
    st_tls_t tls;      /* --tls-cert: the client's TLS session */
    int tls_on;
    char ip[64];
    int need_exec;    /* run the parser even without new bytes */
    int write_failed; /* bit per direction: a flush inside a parser callback failed */
    int close_after;  /* close once the exchange ends */
    int reading;
    uint64_t deadline;  /* loop time (ms) the current timeout expires, 0: none */
    uint64_t timer_due; /* loop time the uv timer is set to fire */
    st_exch_t x;        /* the exchange in progress (or the last one) */
} st_conn_t;

static inline int st_conn_closed(const st_conn_t *c)
{
    return c->state == ST_CONN_CLOSED;
}

/* Every change of the connection's state: logged from -> to at debug level.
 * Leaving EXCHANGE (but for CLOSED) ends the request side of the exchange. */
static inline void st_conn_set_state(st_conn_t *c, enum st_conn_state to)
{
    if (c->state == to) return;
    st_debug("msg=\"connection state\" from=%s to=%s client=%s", st_conn_state_names[c->state],
             st_conn_state_names[to], c->ip);
    c->state = to;
    if (to != ST_CONN_EXCHANGE && to != ST_CONN_CLOSED) st_exch_set_state(&c->x, ST_EXCH_NONE);
}

/* The state as the logs name it: the exchange's while one is in progress. */
static inline const char *st_conn_state_name(const st_conn_t *c)
{
    return c->state == ST_CONN_EXCHANGE ? st_exch_state_names[c->x.state]
                                        : st_conn_state_names[c->state];
}

/* Closes the connection (once), counted by reason in /metrics. */
void st_conn_close(st_conn_t *c, enum st_close why);
/* The close that follows sends a RST instead of a FIN (SO_LINGER 0). */
void st_conn_reset_on_close(st_conn_t *c);
/* Half-closes after an error answer, so the client reads it before EOF. */
void st_conn_shutdown_write(st_conn_t *c);

/* Queues bytes / a chunk-size line for dir; a full batch is sent first.
 * -1: that send failed (noted in write_failed). */
int st_conn_add_full(st_conn_t *c, int dir, const char *p, size_t n);
static inline int st_conn_add(st_conn_t *c, int dir, const char *p, size_t n)
{
    return st_wbatch_add(&c->wb[dir], p, n) == 0 ? 0 : st_conn_add_full(c, dir, p, n);
}
int st_conn_add_chunk_size(st_conn_t *c, int dir, unsigned long long v);
/* Sends what dir's batch holds. 0 or -1 (write error). */
int st_conn_flush(st_conn_t *c, int dir);

/* Reading from the client on or off. */
void st_conn_reading(st_conn_t *c, int on);
/* The connection's one timeout: ms from now; disarm: none. */
void st_conn_arm(st_conn_t *c, uint64_t ms);
static inline void st_conn_disarm(st_conn_t *c)
{
    c->deadline = 0;
}
/* How long an idle keep-alive connection stays open once draining. */
uint64_t st_conn_drain_grace_ms(const struct st_worker *w);

/* TLS: decrypts what OpenSSL holds into rb. The bytes added, UV_EOF on
 * close_notify, or UV_EPROTO after closing on an error. */
ssize_t st_conn_tls_pull(st_conn_t *c);
/* Timers and state on new request bytes (plain or decrypted). */
void st_conn_request_bytes(st_conn_t *c);
/* A tunnel's client side after its bytes went up: reading on or off. */
void st_conn_tunnel_process(st_conn_t *c);

#endif
