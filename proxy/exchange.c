/*
 * exchange: one request and its primary leg (see exchange.h for its
 * states): the request loop, upstream events and the replay rule, the end of
 * the exchange, error answers. Parser callbacks: exchange_http.c.
 */
#include "exchange.h"

#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "http.h"
#include "mesh.h"
#include "worker.h"

const char *const st_exch_state_names[] = {"none", "head", "connect", "body", "sent"};
const char *const st_exch_resp_names[] = {"none", "body", "done"};

static const st_upstream_ops_t primary_ops; /* defined with the upstream events */

/* Resumes reading the primary once the client took what we sent; the read
 * buffer starts over when everything in it was parsed and written. */
void st_exch_up_resume(st_conn_t *c)
{
    st_upconn_t *u = c->x.up;
    if (!u) return;
    if (u->rb.parsed == u->rb.filled && (c->x.resp != ST_RESP_NONE || c->state == ST_CONN_TUNNEL))
        u->rb.parsed = u->rb.filled = 0;
    if (c->state != ST_CONN_TUNNEL) st_upconn_set_timeout(u, c->w->cfg->upstream_timeout_ms);
    st_upconn_resume(u);
}

/* ---- errors and answers ------------------------------------------------- */

void st_exch_drop(st_conn_t *c)
{
    if (c->x.up) {
        st_upconn_close(c->x.up);
        c->x.up = NULL;
    }
    if (c->x.mirror) {
        if (c->x.state == ST_EXCH_HEAD || c->x.state == ST_EXCH_CONNECT ||
            c->x.state == ST_EXCH_BODY)
            st_tee_abort(c->x.mirror);
        else
            st_tee_primary_done(c->x.mirror, 0, 0);
        c->x.mirror = NULL;
        c->x.cap = NULL;
    }
    if (c->x.half) { /* the exchange ended without an answer to capture */
        ST_INC(c->w->metrics.mesh_dropped[ST_MDROP_ABORTED]);
        st_cmpjob_free(c->x.half);
        c->x.half = NULL;
        c->x.cap = NULL;
    }
}

void st_exch_count_response(st_conn_t *c, int status)
{
    st_metrics_t *m = &c->w->metrics;
    ST_INC(m->requests[st_status_class(status)]);
    double secs = (double)(uv_hrtime() - c->x.t_start) / 1e9;
    st_hist_observe(&m->request_duration, secs);
    if (c->w->cfg->access_log) {
        st_access(
            "msg=access client=%s method=%s uri=\"%s\" status=%d duration_ms=%.3f request_id=%s",
            c->ip, c->x.scan.done ? llhttp_method_name((llhttp_method_t)c->x.method) : "-",
            c->x.url, status, secs * 1e3, c->x.rid);
    }
}

/* Answers with a short error and closes (after draining what the client is
 * still sending, so the answer is not lost to a reset). Without a response
 * head sent yet; otherwise the connection is just closed. */
void st_exch_reply_error(st_conn_t *c, int status, const char *why)
{
    if (st_conn_closed(c) || c->state == ST_CONN_LINGER) return;
    if (c->x.resp != ST_RESP_NONE) {
        st_debug("msg=\"request refused mid-response\" status=%d reason=%s", status, why);
        st_conn_close(c, ST_CLOSE_REFUSED_MID_RESPONSE);
        return;
    }
    st_debug("msg=\"request refused\" status=%d reason=%s", status, why);
    if (status < 500) ST_INC(c->w->metrics.client_errors);
    st_exch_count_response(c, status);
    st_exch_drop(c);
    st_conn_set_state(c, ST_CONN_LINGER);
    st_wbatch_clear(&c->wb[DIR_UP]);
    c->x.rhead.len = 0;
    if (st_http_build_error(&c->x.rhead, status, c->x.rid[0] ? c->x.rid : NULL, 1) != 0 ||
        st_conn_add(c, DIR_CL, c->x.rhead.p, c->x.rhead.len) != 0 ||
        st_conn_flush(c, DIR_CL) != 0) {
        st_conn_close(c, ST_CLOSE_ERROR_WRITE);
        return;
    }
    c->rb.filled = c->rb.parsed = 0;
    st_conn_reading(c, 1);
    st_conn_arm(c, 1000);
    if (c->pending[DIR_CL] == 0) st_conn_shutdown_write(c);
}

/* Refuses the request for why (enum st_reject): counted when the client
 * gets the answer, then answered with why's status and closed. */
void st_exch_reject(st_conn_t *c, enum st_reject why)
{
    if (st_conn_closed(c) || c->state == ST_CONN_LINGER) return;
    if (c->x.resp == ST_RESP_NONE) ST_INC(c->w->metrics.rejected[why]);
    st_exch_reply_error(c, st_reqcheck_status(why), st_reject_labels[why]);
}

/* The head went (or will go) out: a client waiting on Expect: 100-continue
 * is told to send its body, and reading resumes. */
void st_exch_body_begins(st_conn_t *c)
{
    if (c->x.expect) {
        if (st_conn_add(c, DIR_CL, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0 ||
            st_conn_flush(c, DIR_CL) != 0) {
            st_conn_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
            return;
        }
    }
    c->need_exec = 1;
    st_exch_process(c);
}

/* ---- upstream events ---------------------------------------------------- */

static void enter_tunnel(st_conn_t *c);

static void up_on_data(void *owner, st_upconn_t *u)
{
    st_conn_t *c = owner;
    st_upconn_set_timeout(u, c->w->cfg->upstream_timeout_ms);
    if (c->state == ST_CONN_TUNNEL) {
        if (st_conn_add(c, DIR_CL, u->rb.base + u->rb.parsed, u->rb.filled - u->rb.parsed) != 0 ||
            st_conn_flush(c, DIR_CL) != 0) {
            st_conn_close(c, ST_CLOSE_TUNNEL_WRITE);
            return;
        }
        u->rb.parsed = u->rb.filled;
        if (c->pending[DIR_CL])
            st_upconn_pause(u);
        else
            u->rb.parsed = u->rb.filled = 0;
        st_conn_arm(c, c->w->cfg->idle_timeout_ms);
        return;
    }
    llhttp_errno_t err = st_http_execute(&u->parser, &u->rb);
    if (err != HPE_OK && err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
        if (c->write_failed & (1 << DIR_CL)) { /* the client went away, the primary is fine */
            st_conn_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
            return;
        }
        st_debug("msg=\"bad upstream response\" err=%s reason=\"%s\"", llhttp_errno_name(err),
                 llhttp_get_error_reason(&u->parser));
        if (!c->x.resp_sent) { /* nothing left yet: drop the head, answer 502 */
            st_wbatch_clear(&c->wb[DIR_CL]);
            st_exch_set_resp(&c->x, ST_RESP_NONE);
        }
        st_exch_upstream_failed(c, ST_UPFAIL_PROTOCOL);
        return;
    }
    if (st_conn_flush(c, DIR_CL) != 0) {
        st_conn_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
        return;
    }
    if (err == HPE_PAUSED_UPGRADE) {
        enter_tunnel(c);
        return;
    }
    if (c->pending[DIR_CL]) {
        st_upconn_pause(u); /* backpressure: resume when the client took it */
        return;
    }
    if (c->x.resp == ST_RESP_DONE) {
        st_exch_finish(c);
        return;
    }
    if (u->rb.parsed == u->rb.filled && c->x.resp != ST_RESP_NONE)
        u->rb.parsed = u->rb.filled = 0;
    else if (u->rb.filled == u->rb.cap && c->x.resp == ST_RESP_NONE)
        st_exch_upstream_failed(c, ST_UPFAIL_PROTOCOL); /* head too large */
}

void st_exch_upstream_failed(st_conn_t *c, enum st_upfail why)
{
    st_upconn_t *u = c->x.up;
    if (why == ST_UPFAIL_EOF && u && c->x.resp == ST_RESP_BODY && c->x.resp_until_eof) {
        /* a close-delimited response ends with the connection */
        llhttp_finish(&u->parser); /* on_res_message_complete ends the re-chunked body */
        st_exch_set_resp(&c->x, ST_RESP_DONE);
        if (st_conn_flush(c, DIR_CL) == 0 && c->pending[DIR_CL] == 0) st_exch_finish(c);
        return;
    }
    if (c->state == ST_CONN_TUNNEL) {
        st_conn_close(c, ST_CLOSE_TUNNEL_CLOSED);
        return;
    }
    int idempotent = c->x.method == HTTP_GET || c->x.method == HTTP_HEAD ||
                     c->x.method == HTTP_OPTIONS || c->x.method == HTTP_TRACE ||
                     c->x.method == HTTP_PUT || c->x.method == HTTP_DELETE;
    if (u && u->reused && !u->got_bytes && idempotent && c->x.resp == ST_RESP_NONE &&
        !c->x.retried && c->x.state == ST_EXCH_SENT && !c->x.has_body && !c->pending[DIR_UP] &&
        (why == ST_UPFAIL_RESET || why == ST_UPFAIL_EOF)) {
        /* a pooled connection the primary had closed: it never saw the request,
         * which is whole in c->x.head; replay it once on a fresh connection */
        st_upconn_t *fresh;
        c->x.retried = 1;
        st_upconn_close(u);
        c->x.up = NULL;
        if (st_pool_connect(&c->w->primary_pool, c, &primary_ops, &fresh) == 0) {
            st_debug("msg=\"retrying on a fresh connection\" request_id=%s", c->x.rid);
            c->x.up = fresh;
            c->x.retrying = 1;
            return;
        }
    }
    enum st_upfail reason = st_upfail_counted(why);
    ST_INC(c->w->metrics.upstream_errors[reason]);
    if (c->x.half)
        st_exch_mesh_finish(c, st_upfail_labels[reason], 0); /* no answer: an error half */
    st_warn(
        "msg=\"upstream failed\" upstream=%s reason=%s state=%s response_started=%d request_id=%s",
        c->w->cfg->primary.authority, st_upfail_labels[reason], st_conn_state_name(c),
        c->x.resp != ST_RESP_NONE, c->x.rid);
    if (c->x.resp != ST_RESP_NONE) {
        /* never present a cut body as complete: a close-delimited one (HTTP/1.0
         * client) would look whole after a FIN, so it ends with a reset
         * (found by fuzz_response) */
        if (c->x.close_delim) st_conn_reset_on_close(c);
        st_conn_close(c, ST_CLOSE_UPSTREAM_FAILED_MID_RESPONSE);
        return;
    }
    int status = why == ST_UPFAIL_TIMEOUT ? 504 : 502;
    if (c->x.state == ST_EXCH_SENT && c->x.keep_alive && !c->x.upgrade && !c->w->draining &&
        why != ST_UPFAIL_PROTOCOL) {
        /* the request was read whole: answer and keep the connection */
        st_exch_drop(c);
        c->x.status = status;
        st_exch_set_resp(&c->x, ST_RESP_DONE);
        c->x.rhead.len = 0;
        if (st_http_build_error(&c->x.rhead, status, c->x.rid, 0) != 0 ||
            st_conn_add(c, DIR_CL, c->x.rhead.p, c->x.rhead.len) != 0 ||
            st_conn_flush(c, DIR_CL) != 0) {
            st_conn_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
            return;
        }
        st_exch_finish(c);
        return;
    }
    st_exch_reply_error(c, status, st_upfail_labels[reason]);
}

static void up_on_fail(void *owner, st_upconn_t *u, enum st_upfail why)
{
    st_conn_t *c = owner;
    (void)u;
    st_exch_upstream_failed(c, why);
}

static void up_on_ready(void *owner, st_upconn_t *u);

static const st_upstream_ops_t primary_ops = {
    .on_ready = up_on_ready,
    .on_data = up_on_data,
    .on_fail = up_on_fail,
};

static void up_on_ready(void *owner, st_upconn_t *u)
{
    st_conn_t *c = owner;
    llhttp_init(&u->parser, HTTP_RESPONSE, &st_exch_response_settings);
    u->parser.data = c;
    st_http_msg_reset(&c->x.res);
    if (c->x.retrying) { /* the whole (body-less) request again; the parser is already past it */
        c->x.retrying = 0;
        st_upconn_set_timeout(u, c->w->cfg->upstream_timeout_ms);
        if (st_conn_add(c, DIR_UP, c->x.head.p, c->x.head.len) != 0 ||
            st_conn_flush(c, DIR_UP) != 0)
            st_exch_upstream_failed(c, ST_UPFAIL_RESET);
        return;
    }
    st_exch_set_state(&c->x, ST_EXCH_BODY);
    st_conn_arm(c, c->w->cfg->idle_timeout_ms); /* a body that stalls is cut off */
    c->x.head_pending =
        c->x.chunked_in; /* nothing reaches the upstream before the first chunk parses */
    if (!c->x.head_pending && st_conn_add(c, DIR_UP, c->x.head.p, c->x.head.len) != 0) {
        st_exch_upstream_failed(c, ST_UPFAIL_RESET);
        return;
    }
    st_exch_body_begins(c);
}

static void start_upstream(st_conn_t *c)
{
    st_upconn_t *u;
    st_exch_set_state(&c->x, ST_EXCH_CONNECT);
    st_conn_disarm(c);
    int rc = st_pool_acquire(&c->w->primary_pool, c, &primary_ops, &u);
    if (rc < 0) {
        st_exch_reply_error(c, 502, "pool");
        return;
    }
    c->x.up = u;
    if (rc == 0)
        st_conn_reading(c, 0); /* the body waits in the socket until the upstream is ready */
    if (rc == 1) up_on_ready(c, u);
}

static void enter_tunnel(st_conn_t *c)
{
    st_upconn_t *u = c->x.up;
    st_conn_set_state(c, ST_CONN_TUNNEL);
    st_upconn_set_timeout(u, 0);
    st_conn_arm(c, c->w->cfg->idle_timeout_ms);
    st_exch_count_response(c, c->x.status);
    if (c->x.mirror) {
        st_tee_primary_done(c->x.mirror, 0, 0);
        c->x.mirror = NULL;
        c->x.cap = NULL;
    }
    if (c->x.half) {
        st_cmpjob_free(c->x.half); /* never captured: upgrades are not compared */
        c->x.half = NULL;
        c->x.cap = NULL;
    }
    /* bytes after the 101 head, and client bytes after the request */
    if (u->rb.parsed < u->rb.filled) up_on_data(c, u);
    if (!st_conn_closed(c)) st_exch_process(c);
}

/* ---- the end of the exchange -------------------------------------------- */

void st_exch_finish(st_conn_t *c)
{
    if (c->pending[DIR_CL] || c->pending[DIR_UP]) return; /* on_batch_written calls again */
    if (c->x.state != ST_EXCH_SENT) c->close_after = 1;   /* early response: the request was cut */
    st_exch_count_response(c, c->x.status);
    if (c->x.up) {
        st_upconn_t *u = c->x.up;
        int reusable =
            !c->close_after && c->x.state == ST_EXCH_SENT && llhttp_should_keep_alive(&u->parser);
        st_upconn_set_timeout(u, 0);
        c->x.up = NULL;
        st_upconn_release(u, reusable);
    }
    if (c->x.mirror) {
        /* latency like the shadow's: request complete -> response complete,
         * not the client's pace; an answer that completed before the request
         * did has no comparable latency */
        int ok = c->x.t_sent != 0 && c->x.t_resp_done >= c->x.t_sent;
        st_tee_primary_done(c->x.mirror, ok,
                            ok ? (double)(c->x.t_resp_done - c->x.t_sent) / 1e9 : 0);
        c->x.mirror = NULL;
        c->x.cap = NULL;
    }
    if (c->x.half) {
        int ok = c->x.t_sent != 0 && c->x.t_resp_done >= c->x.t_sent;
        st_exch_mesh_finish(c, NULL, ok ? (double)(c->x.t_resp_done - c->x.t_sent) / 1e9 : 0);
    }
    if (c->x.state != ST_EXCH_SENT && c->state != ST_CONN_TUNNEL) {
        /* an early answer while the client still uploads: closing now would
         * reset the connection and lose the answer; discard input instead */
        st_conn_set_state(c, ST_CONN_LINGER);
        c->rb.filled = c->rb.parsed = 0;
        st_conn_reading(c, 1);
        st_conn_arm(c, 1000);
        st_conn_shutdown_write(c);
        return;
    }
    /* Draining, after a response that told the client it may send more:
     * its next request may be on its way, and closing now would reset it.
     * The connection waits like an idle one at drain (st_client_drain_all). */
    int keep_for_drain = c->w->draining && !c->x.resp_close && c->x.state == ST_EXCH_SENT;
    if ((c->close_after || c->w->draining) && !keep_for_drain) {
        st_conn_close(c, ST_CLOSE_EXCHANGE_DONE);
        return;
    }
    c->close_after |= keep_for_drain;
    /* next request: pipelined bytes move to the front of the buffer */
    size_t left = c->rb.filled - c->rb.parsed;
    if (left && c->rb.parsed) memmove(c->rb.base, c->rb.base + c->rb.parsed, left);
    c->rb.filled = left;
    c->rb.parsed = 0;
    memset(&c->x.scan, 0, sizeof(c->x.scan));
    c->x.rid[0] = '\0'; /* a head refused before it is parsed has no request id */
    st_exch_set_resp(&c->x, ST_RESP_NONE);
    c->x.rechunk = c->x.close_delim = c->x.tunnel = c->x.resp_until_eof = c->x.resp_sent = 0;
    c->x.status = 0;
    c->x.pause_why = ST_PAUSE_NONE;
    if (left) {
        st_conn_set_state(c, ST_CONN_EXCHANGE);
        st_exch_set_state(&c->x, ST_EXCH_HEAD);
        c->x.t_start = uv_hrtime();
        st_conn_arm(c, c->w->cfg->client_header_timeout_ms);
    } else {
        st_conn_set_state(c, ST_CONN_IDLE);
        st_rbuf_put(&c->w->rpool, &c->rb);
        st_conn_arm(c, keep_for_drain ? st_conn_drain_grace_ms(c->w) : c->w->cfg->idle_timeout_ms);
    }
    st_exch_process(c);
}

/* ---- the request loop ---------------------------------------------------- */

/* Runs the request parser over the unparsed bytes and acts on where it
 * stopped. Reading from the client is on only while we can take bytes. */
void st_exch_process(st_conn_t *c)
{
    while (!st_conn_closed(c)) {
        if (c->state == ST_CONN_TUNNEL) {
            size_t len = c->rb.filled - c->rb.parsed;
            if (len && c->pending[DIR_UP] == 0) {
                if (st_conn_add(c, DIR_UP, c->rb.base + c->rb.parsed, len) != 0 ||
                    st_conn_flush(c, DIR_UP) != 0) {
                    st_conn_close(c, ST_CLOSE_TUNNEL_WRITE);
                    return;
                }
                c->rb.parsed = c->rb.filled;
                st_conn_arm(c, c->w->cfg->idle_timeout_ms);
            }
            st_conn_tunnel_process(c);
            return;
        }
        if (c->state == ST_CONN_LINGER) return;
        if (c->x.state == ST_EXCH_CONNECT || c->pending[DIR_UP]) {
            st_conn_reading(c, 0);
            return;
        }
        if (c->x.state == ST_EXCH_SENT) { /* the next request waits in the buffer */
            if (c->rb.base && c->rb.filled == c->rb.cap) st_conn_reading(c, 0);
            return;
        }
        if (c->rb.parsed == c->rb.filled && !c->need_exec) {
            if (c->x.state == ST_EXCH_BODY)
                c->rb.parsed = c->rb.filled = 0;          /* nothing references it any more */
            if (c->tls_on && st_tls_has_input(&c->tls)) { /* plaintext waiting inside OpenSSL */
                ssize_t n = st_conn_tls_pull(c);
                if (st_conn_closed(c)) return;
                if (n > 0) {
                    st_conn_request_bytes(c);
                    continue;
                }
            }
            st_conn_reading(c, 1);
            return;
        }
        c->need_exec = 0;
        if (c->x.state == ST_EXCH_HEAD) { /* every head byte is scanned before llhttp parses it */
            enum st_reject why = st_reqcheck_scan(&c->x.scan, c->rb.base, c->rb.filled);
            if (why) {
                st_exch_reject(c, why);
                return;
            }
        }
        llhttp_errno_t err = st_http_execute(&c->parser, &c->rb);
        if (c->x.up && c->x.state != ST_EXCH_HEAD && st_conn_flush(c, DIR_UP) != 0) {
            st_exch_upstream_failed(c, ST_UPFAIL_RESET);
            return;
        }
        if (err == HPE_OK) {
            if (c->x.state == ST_EXCH_HEAD && c->rb.parsed >= c->w->cfg->max_header_size) {
                st_exch_reject(c, ST_REJ_HEAD_TOO_LARGE);
                return;
            }
            continue;
        }
        if (err == HPE_PAUSED && c->x.pause_why == ST_PAUSE_HEADERS) {
            c->x.pause_why = ST_PAUSE_NONE;
            if (c->rb.parsed > c->w->cfg->max_header_size) {
                st_exch_reject(c, ST_REJ_HEAD_TOO_LARGE);
                return;
            }
            if (c->x.local)
                st_exch_start_local(c);
            else
                start_upstream(c);
            return;
        }
        if (err == HPE_PAUSED && c->x.pause_why == ST_PAUSE_DONE) {
            c->x.pause_why = ST_PAUSE_NONE;
            st_exch_set_state(&c->x, ST_EXCH_SENT);
            c->x.t_sent = uv_hrtime();
            st_conn_disarm(c); /* the primary's response timer runs now; a flush arms the send
                                  timeout */
            if (c->x.up) st_upconn_set_timeout(c->x.up, c->w->cfg->upstream_timeout_ms);
            if (c->x.mirror) st_tee_request_done(c->x.mirror);
            if (c->x.local) {
                st_exch_local_answer(c);
                return;
            }
            if (c->x.resp == ST_RESP_DONE) {
                st_exch_finish(c);
                return;
            }
            continue;
        }
        if (c->write_failed & (1 << DIR_UP)) { /* the primary went away mid-body */
            st_exch_upstream_failed(c, ST_UPFAIL_RESET);
            return;
        }
        st_debug("msg=\"bad request\" err=%s reason=\"%s\"", llhttp_errno_name(err),
                 llhttp_get_error_reason(&c->parser));
        if (c->x.req.bad && !c->x.req.why)
            st_exch_reply_error(c, c->x.req.bad, "internal"); /* the head could not be built */
        else
            st_exch_reject(c, c->x.req.why ? (enum st_reject)c->x.req.why : st_reqcheck_errno(err));
        return;
    }
}
