/*
 * exchange: one request on a client connection, its primary leg and its
 * mirror (st_exch_t, embedded in its st_conn_t: nothing is allocated per
 * request). exchange.c drives it (the parser loop, upstream events, the
 * replay rule, the end of the exchange, error answers); exchange_http.c
 * holds the request and response parser callbacks; exchange_mesh.c the mesh
 * mode's half and its local answer. The connection side is conn.h.
 *
 * Request side (state), while the connection is ST_CONN_EXCHANGE:
 *   NONE     no exchange (the connection is idle, a tunnel, lingering)
 *   HEAD     reading the request head
 *   CONNECT  head parsed, waiting for the upstream
 *   BODY     streaming the request body
 *   SENT     request complete, waiting for the response
 *
 *   NONE -> HEAD     the request's first byte (or pipelined bytes waiting)
 *   HEAD -> CONNECT  the head parsed: a primary connection is asked for
 *   CONNECT -> BODY  the primary is ready: the head goes out
 *   HEAD -> BODY     mesh shadow role, outside the share: answered here
 *   BODY -> SENT     the request complete
 *   SENT -> HEAD     the exchange ended, pipelined bytes wait
 *   any -> NONE      the connection leaves ST_CONN_EXCHANGE
 *
 * Response side (resp): NONE nothing from the primary; BODY head sent to the
 * client, relaying; DONE response complete (or answered by the proxy).
 *
 * The exchange ends when the request is SENT, the response DONE and no write
 * is pending in either direction (st_exch_finish); then the connection goes
 * back to idle (or the next head when pipelined bytes wait) or closes.
 */
#ifndef ST_EXCHANGE_H
#define ST_EXCHANGE_H

#include <llhttp.h>
#include <stdint.h>

#include "buf.h"
#include "cmpjob.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "reqcheck.h"
#include "tee.h"
#include "upstream.h"

struct st_conn;

enum st_exch_state { ST_EXCH_NONE = 0, ST_EXCH_HEAD, ST_EXCH_CONNECT, ST_EXCH_BODY, ST_EXCH_SENT };
enum st_exch_resp { ST_RESP_NONE = 0, ST_RESP_BODY, ST_RESP_DONE };
/* Why the request parser paused (read once by st_exch_process). */
enum st_exch_pause { ST_PAUSE_NONE = 0, ST_PAUSE_HEADERS, ST_PAUSE_DONE };

extern const char *const st_exch_state_names[];
extern const char *const st_exch_resp_names[];

typedef struct st_exch {
    enum st_exch_state state;
    enum st_exch_resp resp;
    enum st_exch_pause pause_why;
    st_http_msg_t req;   /* current request head (spans into the connection's rb) */
    st_http_msg_t res;   /* current response head (spans into up->rb) */
    st_sbuf_t head;      /* request head sent upstream */
    st_sbuf_t rhead;     /* response head sent to the client */
    st_upconn_t *up;     /* borrowed primary connection */
    st_mirror_t *mirror; /* mirror copy of the current request, or NULL */
    st_capture_t *cap;   /* primary response capture for the comparator, or NULL */
    st_cmpjob_t *half;   /* mesh mode: this pod's half of a sampled request, or NULL */
    int local;           /* mesh shadow role: not sampled, answered here (204), no upstream */
    int rid_given;       /* the x-request-id came with the request (not generated) */
    char rid[129];       /* x-request-id of the current request */
    char url[256];       /* request target for the access log (truncated copy) */
    int method;
    int minor;      /* client's HTTP minor version */
    int keep_alive; /* the client wants keep-alive */
    int upgrade;    /* Upgrade or CONNECT request */
    int has_body;
    int chunked_in;
    int last_chunk;
    int expect; /* answer 100 Continue when the upstream is ready */
    uint64_t body_seen;
    int rechunk;        /* response re-chunked to the client */
    int tunnel;         /* the response accepted an upgrade / CONNECT */
    int resp_until_eof; /* the primary's body ends when it closes (no length, not chunked) */
    int resp_sent;      /* some of the response went to the client socket */
    int retried;        /* the request was replayed once on a fresh connection */
    int retrying;       /* on_ready: send the kept head again instead of resuming the parser */
    int head_pending;   /* chunked request: head goes out with the first valid chunk */
    int close_delim;    /* response delimited by close */
    int status;
    int resp_close;       /* the response head said Connection: close */
    uint64_t t_start;     /* uv_hrtime at the request's first byte */
    uint64_t t_sent;      /* uv_hrtime when the request was complete (primary latency) */
    uint64_t t_resp_done; /* uv_hrtime at the response's message-complete */

    /* grammar scan of the current head, ahead of the parser (reqcheck.c) */
    st_reqcheck_scan_t scan;
} st_exch_t;

/* Every change of the request side: logged from -> to at debug level. */
static inline void st_exch_set_state(st_exch_t *x, enum st_exch_state to)
{
    if (x->state == to) return;
    st_debug("msg=\"exchange state\" from=%s to=%s request_id=%s", st_exch_state_names[x->state],
             st_exch_state_names[to], x->rid);
    x->state = to;
}

/* Every change of the response side, as st_exch_set_state. */
static inline void st_exch_set_resp(st_exch_t *x, enum st_exch_resp to)
{
    if (x->resp == to) return;
    st_debug("msg=\"exchange response\" from=%s to=%s request_id=%s", st_exch_resp_names[x->resp],
             st_exch_resp_names[to], x->rid);
    x->resp = to;
}

extern const llhttp_settings_t st_exch_request_settings;  /* exchange_http.c */
extern const llhttp_settings_t st_exch_response_settings; /* exchange_http.c */

/* exchange.c */
/* Runs the request parser over the unparsed bytes and acts on where it
 * stopped (or relays a tunnel's bytes). Reading is on only while the
 * exchange can take bytes. */
void st_exch_process(struct st_conn *c);
/* Ends the exchange once nothing is pending: counts it, releases the
 * primary, hands the mirror its primary answer, then the next request. */
void st_exch_finish(struct st_conn *c);
/* The primary failed (why): replays a request that never reached a reused
 * connection once, else answers 502/504 or closes. */
void st_exch_upstream_failed(struct st_conn *c, enum st_upfail why);
/* Resumes reading the primary once the client took what was sent. */
void st_exch_up_resume(struct st_conn *c);
/* Drops the primary leg, the mirror and the mesh half of an exchange cut short. */
void st_exch_drop(struct st_conn *c);
void st_exch_count_response(struct st_conn *c, int status);
/* Answers with status and lingers (why: for the debug log). */
void st_exch_reply_error(struct st_conn *c, int status, const char *why);
/* Refuses the request for why: counted, answered with why's status. */
void st_exch_reject(struct st_conn *c, enum st_reject why);
/* The head went (or will go) out: 100 Continue if asked, reading resumes. */
void st_exch_body_begins(struct st_conn *c);

/* exchange_mesh.c */
void st_exch_mesh_begin(struct st_conn *c);
void st_exch_mesh_finish(struct st_conn *c, const char *error, double seconds);
void st_exch_start_local(struct st_conn *c);
void st_exch_local_answer(struct st_conn *c);

#endif
