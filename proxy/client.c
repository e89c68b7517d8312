/*
 * client: the client connection state machine (see client.h for states).
 *
 * Bytes flow without copies: request body spans point into the client's read
 * buffer and response body spans into the upstream connection's read buffer;
 * they are queued as iovecs in a write batch and sent with uv_try_write, or
 * uv_write when the socket is full. While a batch is in flight the source is
 * not read (backpressure), so each side holds at most one read buffer.
 */
#include "client.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "reqcheck.h"
#include "cmpjob.h"
#include "mesh.h"
#include "tee.h"
#include "wbatch.h"
#include "worker.h"

#define ST_DRAIN_IDLE_GRACE_MS 1000
enum dir { DIR_UP = 0, DIR_CL = 1 };

enum cstate { C_IDLE = 0, C_HEAD, C_CONNECT, C_BODY, C_SENT, C_TUNNEL, C_LINGER };
enum rstate { R_NONE = 0, R_BODY, R_DONE };
enum pause_why { P_NONE = 0, P_HEADERS, P_DONE };

static const char *const cstate_names[] = {"idle", "head",   "connect", "body",
                                           "sent", "tunnel", "linger"};

typedef struct st_client {
    uv_tcp_t tcp;     /* data = this */
    uv_timer_t timer; /* header / idle / linger timeout */
    st_worker_t *w;
    st_list_t link; /* in w->clients */
    int handles;    /* open libuv handles */
    int closing;
    int pending[2]; /* heap batches in flight per direction */
    enum cstate state;
    enum rstate resp;
    st_rbuf_t rb;        /* client bytes; head spans point here */
    llhttp_t parser;     /* request parser */
    st_http_msg_t req;   /* current request head (spans into rb) */
    st_http_msg_t res;   /* current response head (spans into up->rb) */
    st_wbatch_t wb[2];   /* batches being filled */
    st_sbuf_t head;      /* request head sent upstream */
    st_sbuf_t rhead;     /* response head sent to the client */
    st_upconn_t *up;     /* borrowed primary connection */
    st_mirror_t *mirror; /* mirror copy of the current request, or NULL */
    st_capture_t *cap;   /* primary response capture for the comparator, or NULL */
    st_cmpjob_t *half;   /* mesh mode: this pod's half of a sampled request, or NULL */
    int local;           /* mesh shadow role: not sampled, answered here (204), no upstream */
    int rid_given;       /* the x-request-id came with the request (not generated) */
    char ip[64];
    char rid[129]; /* x-request-id of the current request */
    char url[256]; /* request target for the access log (truncated copy) */
    int method;
    int minor;      /* client's HTTP minor version */
    int keep_alive; /* the client wants keep-alive */
    int upgrade;    /* Upgrade or CONNECT request */
    int has_body;
    int chunked_in;
    int last_chunk;
    int expect; /* answer 100 Continue when the upstream is ready */
    uint64_t body_seen;
    int pause_why;
    int need_exec;      /* run the parser even without new bytes */
    int rechunk;        /* response re-chunked to the client */
    int tunnel;         /* the response accepted an upgrade / CONNECT */
    int resp_until_eof; /* the primary's body ends when it closes (no length, not chunked) */
    int resp_sent;      /* some of the response went to the client socket */
    int write_failed;   /* bit per direction: a flush inside a parser callback failed */
    int retried;        /* the request was replayed once on a fresh connection */
    int retrying;       /* on_ready: send the kept head again instead of resuming the parser */
    int head_pending;   /* chunked request: head goes out with the first valid chunk */
    st_tls_t tls;       /* --tls-cert: the client's TLS session */
    int tls_on;
    int close_delim; /* response delimited by close */
    int status;
    int close_after; /* close once the exchange ends */
    int resp_close;  /* the response head said Connection: close */
    int reading;
    uint64_t deadline;    /* loop time (ms) the current timeout expires, 0: none */
    uint64_t timer_due;   /* loop time the uv timer is set to fire */
    uint64_t t_start;     /* uv_hrtime at the request's first byte */
    uint64_t t_sent;      /* uv_hrtime when the request was complete (primary latency) */
    uint64_t t_resp_done; /* uv_hrtime at the response's message-complete */

    /* grammar scan of the current head, ahead of the parser (reqcheck.c) */
    st_reqcheck_scan_t scan;
} st_client_t;

static void client_process(st_client_t *c);
static void client_close(st_client_t *c, enum st_close why);
static void finish_exchange(st_client_t *c);
static void upstream_failed(st_client_t *c, enum st_upfail why);
static const st_upstream_ops_t primary_ops; /* defined with the upstream events */
static int flush(st_client_t *c, int dir);

/* ---- small helpers ------------------------------------------------------ */

static uv_stream_t *dst_stream(st_client_t *c, int dir)
{
    return dir == DIR_UP ? st_upconn_stream(c->up) : (uv_stream_t *)&c->tcp;
}

static void maybe_free(st_client_t *c)
{
    if (c->handles > 0 || c->pending[0] || c->pending[1]) return;
    st_worker_t *w = c->w;
    for (int i = 0; i < 2; i++)
        st_wbatch_release(&c->wb[i]);
    st_tls_free(&c->tls);
    st_sbuf_free(&c->head);
    st_sbuf_free(&c->rhead);
    free(c);
    st_worker_maybe_done(w);
}

static void on_handle_closed(uv_handle_t *h)
{
    st_client_t *c = h->data;
    c->handles--;
    maybe_free(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static ssize_t tls_input(st_client_t *c, const char *data, size_t len);
static ssize_t tls_pull(st_client_t *c);
static void on_request_bytes(st_client_t *c);

static void reading(st_client_t *c, int on)
{
    if (c->closing || on == c->reading) return;
    if (on) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void on_timer(uv_timer_t *t);
/* Timeouts are lazy: arm() only records the deadline and touches the libuv
 * timer when it must fire earlier than it is set to; on_timer() re-arms for
 * the rest when the deadline moved. Most requests cost no timer operation. */
static void arm(st_client_t *c, uint64_t ms)
{
    if (c->closing) return;
    c->deadline = uv_now(&c->w->loop) + ms;
    if (!uv_is_active((uv_handle_t *)&c->timer) || c->deadline < c->timer_due) {
        c->timer_due = c->deadline;
        uv_timer_start(&c->timer, on_timer, ms, 0);
    }
}

static void disarm(st_client_t *c)
{
    c->deadline = 0;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    free(req);
}

/* Half-closes after an error answer, so the client reads it before EOF. */
static void shutdown_write(st_client_t *c)
{
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req && uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) free(req);
}

/* ---- write batches ------------------------------------------------------ */

/* Queues bytes for dir; a full batch is sent first. -1: that send failed
 * (noted in write_failed for the parser's caller). */
static int add(st_client_t *c, int dir, const char *p, size_t n)
{
    st_wbatch_t *b = &c->wb[dir];
    if (st_wbatch_add(b, p, n) == 0) return 0;
    if (flush(c, dir) != 0) {
        c->write_failed |= 1 << dir;
        return -1;
    }
    return st_wbatch_add(b, p, n);
}

/* Queues a chunk-size line for dir, as add(). */
static int add_chunk_size(st_client_t *c, int dir, unsigned long long v)
{
    st_wbatch_t *b = &c->wb[dir];
    if (st_wbatch_add_chunk_size(b, v) == 0) return 0;
    if (flush(c, dir) != 0) {
        c->write_failed |= 1 << dir;
        return -1;
    }
    return st_wbatch_add_chunk_size(b, v);
}

/* Resumes reading the primary once the client took what we sent; the read
 * buffer starts over when everything in it was parsed and written. */
static void up_resume(st_client_t *c)
{
    st_upconn_t *u = c->up;
    if (!u) return;
    if (u->rb.parsed == u->rb.filled && (c->resp != R_NONE || c->state == C_TUNNEL))
        u->rb.parsed = u->rb.filled = 0;
    if (c->state != C_TUNNEL) st_upconn_set_timeout(u, c->w->cfg->upstream_timeout_ms);
    st_upconn_resume(u);
}

static void on_batch_written(void *owner, int dir, int status)
{
    st_client_t *c = owner;
    c->pending[dir]--;
    if (c->closing) {
        maybe_free(c);
        return;
    }
    if (status < 0) {
        if (dir == DIR_CL)
            client_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
        else if (c->up && status != UV_ECANCELED)
            upstream_failed(c, ST_UPFAIL_RESET);
        else if (c->state != C_LINGER && c->resp == R_DONE && !c->pending[0] && !c->pending[1])
            finish_exchange(c); /* the cancelled write of a connection we closed ourselves */
        return;
    }
    if (c->pending[dir] > 0) return;
    if (dir == DIR_UP || c->state == C_TUNNEL) {
        if (dir == DIR_CL)
            up_resume(c);
        else
            client_process(c);
        return;
    }
    /* DIR_CL drained */
    if (c->state == C_LINGER) {
        shutdown_write(c);
        return;
    }
    if (c->resp == R_DONE)
        finish_exchange(c);
    else if (c->up) {
        if (c->state == C_BODY)
            arm(c, c->w->cfg->idle_timeout_ms); /* back to the body deadline */
        else
            disarm(c); /* SENT: the primary's timer governs */
        up_resume(c);
    }
}

/* Sends what the batch holds: inline when the socket takes it all, else the
 * rest goes to uv_write in a heap copy. Returns 0 or -1 (write error). */
static int flush(st_client_t *c, int dir)
{
    st_wbatch_t *b = &c->wb[dir];
    st_tls_t *tls =
        dir == DIR_UP ? (c->up ? st_upconn_tls(c->up) : NULL) : (c->tls_on ? &c->tls : NULL);
    if (tls) { /* encrypt: the plaintext sources are free again right away */
        int rc = st_wbatch_encrypt(b, tls, c->w->tls_wscratch, ST_TLS_RECORD_MAX);
        if (rc <= 0) return rc;
    }
    if (b->n == 0) return 0;
    if (dir == DIR_CL && c->resp != R_NONE) c->resp_sent = 1;
    int rc = st_wbatch_send(b, &c->w->wbatch, dst_stream(c, dir), c->pending[dir] == 0,
                            on_batch_written, c, dir);
    if (rc <= 0) return rc;
    c->pending[dir]++;
    if (dir == DIR_CL && !c->closing) { /* a client that does not read: send timeout */
        if (c->up && c->state != C_TUNNEL) {
            st_upconn_pause(c->up);
            st_upconn_set_timeout(c->up, 0); /* our client is slow, not the primary */
        }
        arm(c, c->w->cfg->idle_timeout_ms);
    }
    return 0;
}

/* ---- closing and errors ------------------------------------------------- */

static void drop_exchange(st_client_t *c)
{
    if (c->up) {
        st_upconn_close(c->up);
        c->up = NULL;
    }
    if (c->mirror) {
        if (c->state == C_HEAD || c->state == C_CONNECT || c->state == C_BODY)
            st_tee_abort(c->mirror);
        else
            st_tee_primary_done(c->mirror, 0, 0);
        c->mirror = NULL;
        c->cap = NULL;
    }
    if (c->half) { /* the exchange ended without an answer to capture */
        ST_INC(c->w->metrics.mesh_dropped[ST_MDROP_ABORTED]);
        st_cmpjob_free(c->half);
        c->half = NULL;
        c->cap = NULL;
    }
}

/* TLS: queue a close_notify and hand it to the socket if it takes it now
 * (best effort, never blocks), so a close is not mistaken for a truncation. */
static void tls_close_notify(st_client_t *c)
{
    if (!c->tls_on || !c->tls.handshaken || c->tls.failed || c->pending[DIR_CL]) return;
    SSL_shutdown(c->tls.ssl);
    char *out;
    long n = st_tls_take_output(&c->tls, &out);
    if (n <= 0) return;
    uv_buf_t b = uv_buf_init(out, (unsigned)n);
    uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    free(out);
}

static void client_close(st_client_t *c, enum st_close why)
{
    if (c->closing) return;
    if (c->resp != R_BODY)
        tls_close_notify(c); /* never for a cut response: it would look complete */
    ST_INC(c->w->metrics.client_closes[why]);
    st_debug("msg=\"client closed\" reason=%s state=%s", st_close_labels[why],
             cstate_names[c->state]);
    drop_exchange(c);
    c->closing = 1;
    c->reading = 0;
    st_list_remove(&c->link);
    c->w->nclients--;
    ST_ADD(c->w->metrics.active_connections, -1);
    st_rbuf_put(&c->w->rpool, &c->rb);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* The close that follows sends a RST instead of a FIN (SO_LINGER 0). */
static void reset_on_close(st_client_t *c)
{
    uv_os_fd_t fd;
    struct linger lg = {1, 0};
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void count_response(st_client_t *c, int status)
{
    st_metrics_t *m = &c->w->metrics;
    ST_INC(m->requests[st_status_class(status)]);
    double secs = (double)(uv_hrtime() - c->t_start) / 1e9;
    st_hist_observe(&m->request_duration, secs);
    if (c->w->cfg->access_log) {
        st_access(
            "msg=access client=%s method=%s uri=\"%s\" status=%d duration_ms=%.3f request_id=%s",
            c->ip, c->scan.done ? llhttp_method_name((llhttp_method_t)c->method) : "-", c->url,
            status, secs * 1e3, c->rid);
    }
}

/* Answers with a short error and closes (after draining what the client is
 * still sending, so the answer is not lost to a reset). Without a response
 * head sent yet; otherwise the connection is just closed. */
static void reply_error(st_client_t *c, int status, const char *why)
{
    if (c->closing || c->state == C_LINGER) return;
    if (c->resp != R_NONE) {
        st_debug("msg=\"request refused mid-response\" status=%d reason=%s", status, why);
        client_close(c, ST_CLOSE_REFUSED_MID_RESPONSE);
        return;
    }
    st_debug("msg=\"request refused\" status=%d reason=%s", status, why);
    if (status < 500) ST_INC(c->w->metrics.client_errors);
    count_response(c, status);
    drop_exchange(c);
    c->state = C_LINGER;
    st_wbatch_clear(&c->wb[DIR_UP]);
    c->rhead.len = 0;
    if (st_http_build_error(&c->rhead, status, c->rid[0] ? c->rid : NULL, 1) != 0 ||
        add(c, DIR_CL, c->rhead.p, c->rhead.len) != 0 || flush(c, DIR_CL) != 0) {
        client_close(c, ST_CLOSE_ERROR_WRITE);
        return;
    }
    c->rb.filled = c->rb.parsed = 0;
    reading(c, 1);
    arm(c, 1000);
    if (c->pending[DIR_CL] == 0) shutdown_write(c);
}

/* Refuses the request for why (enum st_reject): counted when the client
 * gets the answer, then answered with why's status and closed. */
static void reject(st_client_t *c, enum st_reject why)
{
    if (c->closing || c->state == C_LINGER) return;
    if (c->resp == R_NONE) ST_INC(c->w->metrics.rejected[why]);
    reply_error(c, st_reqcheck_status(why), st_reject_names[why]);
}

static void on_timer(uv_timer_t *t)
{
    st_client_t *c = t->data;
    uint64_t now = uv_now(&c->w->loop);
    if (c->deadline == 0) return;
    if (now < c->deadline) { /* the deadline moved later since the timer was set */
        c->timer_due = c->deadline;
        uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
        return;
    }
    c->deadline = 0;
    switch (c->state) {
    case C_HEAD:
        reject(c, ST_REJ_TIMEOUT); /* slowloris */
        break;
    case C_BODY:
        if (c->pending[DIR_UP]) { /* the primary stopped reading the body: its fault */
            upstream_failed(c, ST_UPFAIL_TIMEOUT);
            break;
        }
        if (c->resp == R_NONE)
            reject(c, ST_REJ_TIMEOUT);
        else
            client_close(c, ST_CLOSE_BODY_TIMEOUT);
        break;
    default: /* idle keep-alive, linger, send timeout, tunnel idle */
        client_close(c, ST_CLOSE_TIMEOUT);
        break;
    }
}

/* The comparator feed refused a half (full queue or byte budget): counted by
 * the reason the feed gave. */
static void half_refused(st_worker_t *w)
{
    enum st_mesh_drop why =
        w->cmpfeed.last_skip == ST_CMPSKIP_BUSY ? ST_MDROP_COMPARATOR_BUSY : ST_MDROP_QUEUE_BYTES;
    ST_INC(w->metrics.mesh_dropped[why]);
}

/* ---- mesh mode (--mirror-mode mesh) ---------------------------------------
 * The mesh mirrors; this sidecar only decides from the request id whether
 * the request is in the compared share (mesh.h) and, when it is, captures
 * its own pod's answer into a half (a job of kind ST_CMPJOB_HALF) that the
 * comparator thread publishes. The stable role always proxies; the shadow
 * role answers requests outside the share itself (204), so its app only
 * sees the share. */

static void mesh_begin(st_client_t *c)
{
    st_worker_t *w = c->w;
    const st_config_t *cfg = w->cfg;
    int role = cfg->mesh_role;
    if (role == ST_ROLE_STABLE && st_mesh_is_mirror(&c->req)) {
        /* a copy reaching a stable pod: the loop guard, never a half */
        ST_INC(w->metrics.mirror_skipped[ST_SKIP_LOOP_GUARD]);
        return;
    }
    int in_share = 0;
    if (!c->rid_given) {
        ST_INC(w->metrics.mesh_no_request_id);
    } else if (c->method < 64 && !(cfg->mirror_methods & (1ULL << c->method))) {
        ST_INC(w->metrics.mirror_skipped[ST_SKIP_METHOD]);
    } else {
        uint32_t point = st_mesh_point(&w->mesh_hash, c->rid, strlen(c->rid));
        in_share = st_mesh_in_share(point, cfg->mirror_percent);
        if (!in_share) ST_INC(w->metrics.mesh_unsampled);
    }
    if (!in_share) {
        if (role == ST_ROLE_SHADOW) c->local = 1;
        return;
    }
    ST_INC(w->metrics.mesh_sampled);
    if (c->upgrade) return; /* passes through, never compared (as in tee mode) */
    if (w->cmpfeed.nthreads == 0) return;
    if (!st_cmpfeed_admit(&w->cmpfeed)) { /* no copy made for a half that would be dropped */
        half_refused(w);
        return;
    }
    st_cmpjob_t *j = st_cmpjob_new(ST_CMPJOB_HALF);
    if (j) j->path = strndup(c->req.url ? c->req.url : "/", c->req.url ? c->req.url_len : 1);
    if (!j || !j->path) {
        st_cmpjob_free(j);
        ST_INC(w->metrics.mesh_dropped[ST_MDROP_QUEUE_BYTES]);
        return;
    }
    j->role = role;
    snprintf(j->request_id, sizeof(j->request_id), "%s", c->rid);
    snprintf(j->method, sizeof(j->method), "%s", llhttp_method_name((llhttp_method_t)c->method));
    c->half = j;
    c->cap = &j->primary; /* filled like the tee's primary capture */
}

/* The exchange ended: the half (error NULL: the answer captured; else why
 * there was none) goes to a comparator thread, woken after this turn. */
static void mesh_finish(st_client_t *c, const char *error, double seconds)
{
    st_worker_t *w = c->w;
    st_cmpjob_t *j = c->half;
    c->half = NULL;
    c->cap = NULL;
    j->primary.error = error;
    j->primary.seconds = seconds;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    j->wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    j->bytes = st_cmpjob_size(j);
    if (st_cmpfeed_submit(&w->cmpfeed, j) == 0) {
        st_tee_kick_later(w);
        return;
    }
    half_refused(w);
}

/* The head went (or will go) out: a client waiting on Expect: 100-continue
 * is told to send its body, and reading resumes. */
static void body_begins(st_client_t *c)
{
    if (c->expect) {
        if (add(c, DIR_CL, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0 || flush(c, DIR_CL) != 0) {
            client_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
            return;
        }
    }
    c->need_exec = 1;
    client_process(c);
}

/* Shadow role, a request outside the share: no upstream; its body is read
 * and dropped (C_BODY without c->up), then local_answer. */
static void start_local(st_client_t *c)
{
    c->state = C_BODY;
    arm(c, c->w->cfg->idle_timeout_ms);
    body_begins(c);
}

/* The request is complete: 204 with x-shadowtee-mesh: unsampled. */
static void local_answer(st_client_t *c)
{
    c->status = 204;
    c->resp = R_DONE;
    if (!c->keep_alive || c->w->draining || c->upgrade) c->close_after = 1;
    c->resp_close = c->close_after;
    c->rhead.len = 0;
    int rc = ST_SBUF_LIT(&c->rhead, "HTTP/1.1 204 No Content\r\nx-shadowtee-mesh: unsampled\r\n");
    rc |= ST_SBUF_LIT(&c->rhead, "x-request-id: ");
    rc |= st_sbuf_appends(&c->rhead, c->rid);
    if (c->close_after)
        rc |= ST_SBUF_LIT(&c->rhead, "\r\nConnection: close\r\n\r\n");
    else if (c->minor == 0)
        rc |= ST_SBUF_LIT(&c->rhead, "\r\nConnection: keep-alive\r\n\r\n");
    else
        rc |= ST_SBUF_LIT(&c->rhead, "\r\n\r\n");
    if (rc || add(c, DIR_CL, c->rhead.p, c->rhead.len) != 0 || flush(c, DIR_CL) != 0) {
        client_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
        return;
    }
    finish_exchange(c);
}

/* ---- request parser callbacks ------------------------------------------ */

static int on_message_begin(llhttp_t *p)
{
    st_client_t *c = p->data;
    st_http_msg_reset(&c->req);
    c->write_failed = c->retried = c->retrying = 0;
    c->t_sent = c->t_resp_done = 0;
    c->body_seen = 0;
    c->last_chunk = 0;
    c->rid[0] = '\0';
    c->url[0] = '\0';
    c->local = 0;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    st_client_t *c = p->data;
    return st_http_on_url(&c->req, at, len, c->w->cfg->max_uri_size) ? HPE_USER : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    st_client_t *c = p->data;
    if (c->state != C_HEAD) return 0; /* trailers are dropped; names were scanned (reqcheck) */
    return st_http_on_header_field(&c->req, at, len) ? HPE_USER : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    st_client_t *c = p->data;
    if (c->state != C_HEAD) return 0;
    return st_http_on_header_value(&c->req, at, len) ? HPE_USER : 0;
}

static int te_is_chunked(const st_http_msg_t *m)
{
    int n = 0;
    for (size_t i = 0; i < m->nhdr; i++) {
        const st_header_t *h = &m->hdr[i];
        if (!st_http_name_eq(h->name, h->name_len, "transfer-encoding")) continue;
        if (++n > 1) return 0;
        const char *v = h->value;
        size_t len = h->value_len;
        while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
            len--;
        if (!st_http_name_eq(v, len, "chunked")) return 0;
    }
    return n == 1;
}

/* An incoming x-request-id is kept only when it is a plain token: it goes
 * into logs, Redis samples and both upstreams. Otherwise one is generated. */
static int rid_is_safe(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (!isalnum(ch) && !strchr("._:/+=-", ch)) return 0;
    }
    return n > 0;
}

/* Refuses the head being parsed for why: client_process answers. */
static int refuse_head(st_client_t *c, enum st_reject why)
{
    c->req.bad = st_reqcheck_status(why);
    c->req.why = why;
    return HPE_USER;
}

static int on_headers_complete(llhttp_t *p)
{
    st_client_t *c = p->data;
    const st_config_t *cfg = c->w->cfg;
    st_http_on_headers_complete(&c->req);
    c->method = llhttp_get_method(p);
    if (llhttp_get_http_major(p) != 1) /* HTTP/2.0 in text framing */
        return refuse_head(c, ST_REJ_VERSION);
    c->minor = llhttp_get_http_minor(p);
    c->keep_alive = llhttp_should_keep_alive(p);
    c->upgrade = llhttp_get_upgrade(p);
    c->chunked_in = (p->flags & F_CHUNKED) != 0;
    c->has_body = c->chunked_in || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    c->expect = c->req.expect_continue && c->minor >= 1 && c->has_body;
    if (c->req.xrid >= 0 && c->req.hdr[c->req.xrid].value_len < sizeof(c->rid) &&
        rid_is_safe(c->req.hdr[c->req.xrid].value, c->req.hdr[c->req.xrid].value_len)) {
        const st_header_t *h = &c->req.hdr[c->req.xrid];
        memcpy(c->rid, h->value, h->value_len);
        c->rid[h->value_len] = '\0';
        c->rid_given = 1;
    } else {
        st_worker_request_id(c->w, c->rid);
        c->rid_given = 0;
    }
    size_t ulen = c->req.url_len < sizeof(c->url) ? c->req.url_len : sizeof(c->url) - 1;
    for (size_t i = 0; i < ulen; i++) /* as the client sent it, for the access log */
        c->url[i] = c->req.url[i] == '"' ? '\'' : c->req.url[i];
    c->url[ulen] = '\0';
    /* CONNECT, the target's form, Host; an absolute-form target becomes origin-form */
    enum st_reject why = st_reqcheck_head(&c->req, c->method, c->minor, cfg->allow_connect);
    if (why) return refuse_head(c, why);
    if ((p->flags & F_TRANSFER_ENCODING) && c->minor == 0) /* RFC 9112 6.1: faulty framing */
        return refuse_head(c, ST_REJ_BAD_FRAMING);
    if ((p->flags & F_TRANSFER_ENCODING) && !te_is_chunked(&c->req))
        return refuse_head(c, ST_REJ_TRANSFER_CODING); /* a coding we cannot re-frame */
    if (cfg->max_body_size && (p->flags & F_CONTENT_LENGTH) &&
        p->content_length > cfg->max_body_size)
        return refuse_head(c, ST_REJ_BODY_TOO_LARGE);
    if (c->upgrade && c->method != HTTP_CONNECT &&
        !st_reqcheck_upgrade_allowed(&c->req, cfg->allow_upgrade)) {
        /* as nginx does: the request goes on without its Upgrade (and the
         * Connection: upgrade the builder would add). llhttp 8 reads
         * p->upgrade after this callback: cleared, the bytes that follow the
         * request stay HTTP/1.1 instead of "another protocol". */
        c->upgrade = 0;
        p->upgrade = 0;
        ST_INC(c->w->metrics.rejected[ST_REJ_UPGRADE]);
    }
    st_reqhead_opts_t o = {
        .method = llhttp_method_name((llhttp_method_t)c->method),
        .http_minor = c->minor,
        .client_ip = c->ip,
        .proto = c->tls_on ? "https" : "http",
        .keep_forwarded_proto = !c->tls_on,
        .request_id = c->rid,
        .upgrade = c->upgrade,
        .framing = c->chunked_in                   ? ST_FRAME_CHUNKED
                   : (p->flags & F_CONTENT_LENGTH) ? ST_FRAME_LENGTH
                                                   : ST_FRAME_NONE,
        .content_length = p->content_length,
    };
    c->head.len = 0;
    if (st_http_build_request_head(&c->head, &c->req, &o) != 0) {
        c->req.bad = 500;
        return HPE_USER;
    }
    if (cfg->mirror_mode == ST_MIRROR_MESH) {
        mesh_begin(c);
    } else if (cfg->shadow.set) {
        st_tee_request_t r = {
            .req = &c->req,
            .method = c->method,
            .method_name = o.method,
            .request_id = c->rid,
            .client_ip = c->ip,
            .proto = o.proto,
            .keep_forwarded_proto = o.keep_forwarded_proto,
            .has_body = o.framing != ST_FRAME_NONE,
            .chunked = c->chunked_in,
            .content_length = p->content_length,
            .upgrade = c->upgrade,
        };
        c->mirror = st_tee_begin(c->w, &r);
        c->cap = c->mirror ? st_tee_primary_capture(c->mirror) : NULL;
    }
    c->pause_why = P_HEADERS;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    st_client_t *c = p->data;
    c->body_seen += len;
    if (c->w->cfg->max_body_size && c->body_seen > c->w->cfg->max_body_size)
        return refuse_head(c, ST_REJ_BODY_TOO_LARGE); /* a chunked body past the limit */
    if (c->mirror && st_tee_body(c->mirror, at, len) != 0) {
        c->mirror = NULL;
        c->cap = NULL;
    }
    if (c->local) return 0; /* answered here: the body is read and dropped */
    return add(c, DIR_UP, at, len) ? HPE_USER : 0;
}

static int on_chunk_header(llhttp_t *p)
{
    st_client_t *c = p->data;
    if (c->local) return 0;
    if (c->head_pending) {
        c->head_pending = 0;
        if (add(c, DIR_UP, c->head.p, c->head.len) != 0) return HPE_USER;
    }
    if (p->content_length == 0) {
        /* the last chunk goes out at message-complete, once the trailer
         * section parsed: a bad trailer must not leave the primary with a
         * request that looks complete (found by fuzz_request) */
        c->last_chunk = 1;
        return 0;
    }
    return add_chunk_size(c, DIR_UP, (unsigned long long)p->content_length) ? HPE_USER : 0;
}

static int on_chunk_complete(llhttp_t *p)
{
    st_client_t *c = p->data;
    if (c->last_chunk || c->local) return 0;
    return add(c, DIR_UP, "\r\n", 2) ? HPE_USER : 0;
}

static int on_message_complete(llhttp_t *p)
{
    st_client_t *c = p->data;
    if (c->chunked_in && c->last_chunk && !c->local && add(c, DIR_UP, "0\r\n\r\n", 5) != 0)
        return HPE_USER;
    c->pause_why = P_DONE;
    return HPE_PAUSED;
}

static const llhttp_settings_t request_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
    .on_chunk_complete = on_chunk_complete,
};

/* ---- response parser callbacks (primary) -------------------------------- */

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    st_client_t *c = p->data;
    return st_http_on_status(&c->res, at, len) ? HPE_USER : 0;
}

static int on_res_header_field(llhttp_t *p, const char *at, size_t len)
{
    st_client_t *c = p->data;
    if (c->resp != R_NONE) return 0; /* trailers */
    return st_http_on_header_field(&c->res, at, len) ? HPE_USER : 0;
}

static int on_res_header_value(llhttp_t *p, const char *at, size_t len)
{
    st_client_t *c = p->data;
    if (c->resp != R_NONE) return 0;
    return st_http_on_header_value(&c->res, at, len) ? HPE_USER : 0;
}

static int on_res_message_begin(llhttp_t *p)
{
    st_client_t *c = p->data;
    st_http_msg_reset(&c->res);
    return 0;
}

static int on_res_headers_complete(llhttp_t *p)
{
    st_client_t *c = p->data;
    int status = llhttp_get_status_code(p);
    if (status < 100 || status > 599) return HPE_USER; /* not a 3-digit code: 502 */
    if (status == 101 && !c->upgrade) return HPE_USER; /* a switch nobody asked for: 502 */
    /* a switch to a protocol not on --allow-upgrade: 502, never a tunnel */
    if (status == 101 && !st_reqcheck_upgrade_allowed(&c->res, c->w->cfg->allow_upgrade))
        return HPE_USER;
    const char *codings = NULL; /* transfer codings besides chunked, kept for the client */
    size_t codings_len = 0;
    if ((p->flags & F_TRANSFER_ENCODING) && !te_is_chunked(&c->res)) {
        const st_header_t *te = st_http_find(&c->res, "transfer-encoding");
        if (c->minor == 0 || !te) return HPE_USER; /* cannot be delivered to HTTP/1.0: 502 */
        codings = te->value;
        codings_len = te->value_len;
        while (codings_len && (codings[codings_len - 1] == ' ' || codings[codings_len - 1] == '\t'))
            codings_len--;
        if (codings_len >= 7 && st_http_name_eq(codings + codings_len - 7, 7, "chunked")) {
            codings_len -= 7; /* "gzip, chunked" -> "gzip" */
            while (codings_len &&
                   (codings[codings_len - 1] == ' ' || codings[codings_len - 1] == ','))
                codings_len--;
        }
    }
    if (status >= 100 && status < 200 && status != 101)
        return 1; /* interim: dropped, never a body */
    c->status = status;
    st_http_on_headers_complete(&c->res);
    int connect_ok = c->method == HTTP_CONNECT && status >= 200 && status < 300;
    int tunnel = (status == 101 && c->upgrade) || connect_ok;
    c->tunnel = tunnel;
    int no_body = c->method == HTTP_HEAD || status == 204 || status == 304 || tunnel;
    st_resphead_opts_t o = {.status = status, .http_minor = c->minor};
    if (tunnel) {
        o.upgrade = status == 101;
        o.connection = status == 101 ? "upgrade" : NULL;
    } else {
        if (no_body) {
            o.framing = ST_FRAME_NONE;
            o.keep_content_length = c->method == HTTP_HEAD || status == 304;
        } else if (p->flags & F_CONTENT_LENGTH) {
            o.framing = ST_FRAME_LENGTH;
            o.content_length = p->content_length;
        } else if (c->minor >= 1) {
            o.framing = ST_FRAME_CHUNKED;
            o.te_codings = codings;
            o.te_codings_len = codings_len;
            c->rechunk = 1;
            c->resp_until_eof = !(p->flags & F_CHUNKED);
        } else {
            c->resp_until_eof = !(p->flags & F_CHUNKED);
            o.framing = ST_FRAME_CLOSE;
            c->close_delim = 1;
        }
        if (c->state != C_SENT || c->upgrade)
            c->close_after = 1; /* early answer, or a refused upgrade */
        if (!c->keep_alive || c->w->draining || c->close_delim) c->close_after = 1;
        c->resp_close = c->close_after;
        if (c->close_after)
            o.connection = "close";
        else if (c->minor == 0)
            o.connection = "keep-alive";
    }
    c->rhead.len = 0;
    if (st_http_build_response_head(&c->rhead, &c->res, &o) != 0) return HPE_USER;
    if (c->cap) {
        c->cap->status = status;
        for (size_t i = 0; i < c->res.nhdr; i++)
            st_capture_header(c->cap, c->res.hdr[i].name, c->res.hdr[i].name_len,
                              c->res.hdr[i].value, c->res.hdr[i].value_len);
        if (!no_body && (p->flags & F_CONTENT_LENGTH))
            st_capture_expect(c->cap, p->content_length, c->w->cfg->compare_max_body);
    }
    c->resp = R_BODY;
    if (add(c, DIR_CL, c->rhead.p, c->rhead.len) != 0) return HPE_USER;
    if (tunnel) return 2;
    return no_body ? 1 : 0; /* HEAD, 204, 304: no body whatever the headers say (RFC 9112 6.3) */
}

static int on_res_body(llhttp_t *p, const char *at, size_t len)
{
    st_client_t *c = p->data;
    if (c->cap) st_capture_body(c->cap, at, len, c->w->cfg->compare_max_body);
    if (c->rechunk && add_chunk_size(c, DIR_CL, (unsigned long long)len) != 0) return HPE_USER;
    if (add(c, DIR_CL, at, len) != 0) return HPE_USER;
    if (c->rechunk && add(c, DIR_CL, "\r\n", 2) != 0) return HPE_USER;
    return 0;
}

static int on_res_message_complete(llhttp_t *p)
{
    st_client_t *c = p->data;
    if (c->resp == R_NONE || c->tunnel)
        return 0; /* interim response, or llhttp pauses for the upgrade */
    if (c->rechunk && add(c, DIR_CL, "0\r\n\r\n", 5) != 0) return HPE_USER;
    c->resp = R_DONE;
    c->t_resp_done = uv_hrtime();
    return HPE_PAUSED;
}

static const llhttp_settings_t response_settings = {
    .on_message_begin = on_res_message_begin,
    .on_status = on_status,
    .on_header_field = on_res_header_field,
    .on_header_value = on_res_header_value,
    .on_headers_complete = on_res_headers_complete,
    .on_body = on_res_body,
    .on_message_complete = on_res_message_complete,
};

/* ---- upstream events ---------------------------------------------------- */

static void enter_tunnel(st_client_t *c);

static void up_on_data(void *owner, st_upconn_t *u)
{
    st_client_t *c = owner;
    st_upconn_set_timeout(u, c->w->cfg->upstream_timeout_ms);
    if (c->state == C_TUNNEL) {
        if (add(c, DIR_CL, u->rb.base + u->rb.parsed, u->rb.filled - u->rb.parsed) != 0 ||
            flush(c, DIR_CL) != 0) {
            client_close(c, ST_CLOSE_TUNNEL_WRITE);
            return;
        }
        u->rb.parsed = u->rb.filled;
        if (c->pending[DIR_CL])
            st_upconn_pause(u);
        else
            u->rb.parsed = u->rb.filled = 0;
        arm(c, c->w->cfg->idle_timeout_ms);
        return;
    }
    llhttp_errno_t err = st_http_execute(&u->parser, &u->rb);
    if (err != HPE_OK && err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
        if (c->write_failed & (1 << DIR_CL)) { /* the client went away, the primary is fine */
            client_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
            return;
        }
        st_debug("msg=\"bad upstream response\" err=%s reason=\"%s\"", llhttp_errno_name(err),
                 llhttp_get_error_reason(&u->parser));
        if (!c->resp_sent) { /* nothing left yet: drop the head, answer 502 */
            st_wbatch_clear(&c->wb[DIR_CL]);
            c->resp = R_NONE;
        }
        upstream_failed(c, ST_UPFAIL_PROTOCOL);
        return;
    }
    if (flush(c, DIR_CL) != 0) {
        client_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
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
    if (c->resp == R_DONE) {
        finish_exchange(c);
        return;
    }
    if (u->rb.parsed == u->rb.filled && c->resp != R_NONE)
        u->rb.parsed = u->rb.filled = 0;
    else if (u->rb.filled == u->rb.cap && c->resp == R_NONE)
        upstream_failed(c, ST_UPFAIL_PROTOCOL); /* head too large */
}

static void upstream_failed(st_client_t *c, enum st_upfail why)
{
    st_upconn_t *u = c->up;
    if (why == ST_UPFAIL_EOF && u && c->resp == R_BODY && c->resp_until_eof) {
        /* a close-delimited response ends with the connection */
        llhttp_finish(&u->parser); /* on_res_message_complete ends the re-chunked body */
        c->resp = R_DONE;
        if (flush(c, DIR_CL) == 0 && c->pending[DIR_CL] == 0) finish_exchange(c);
        return;
    }
    if (c->state == C_TUNNEL) {
        client_close(c, ST_CLOSE_TUNNEL_CLOSED);
        return;
    }
    int idempotent = c->method == HTTP_GET || c->method == HTTP_HEAD || c->method == HTTP_OPTIONS ||
                     c->method == HTTP_TRACE || c->method == HTTP_PUT || c->method == HTTP_DELETE;
    if (u && u->reused && !u->got_bytes && idempotent && c->resp == R_NONE && !c->retried &&
        c->state == C_SENT && !c->has_body && !c->pending[DIR_UP] &&
        (why == ST_UPFAIL_RESET || why == ST_UPFAIL_EOF)) {
        /* a pooled connection the primary had closed: it never saw the request,
         * which is whole in c->head; replay it once on a fresh connection */
        st_upconn_t *fresh;
        c->retried = 1;
        st_upconn_close(u);
        c->up = NULL;
        if (st_pool_connect(&c->w->primary_pool, c, &primary_ops, &fresh) == 0) {
            st_debug("msg=\"retrying on a fresh connection\" request_id=%s", c->rid);
            c->up = fresh;
            c->retrying = 1;
            return;
        }
    }
    enum st_upfail reason = st_upfail_counted(why);
    ST_INC(c->w->metrics.upstream_errors[reason]);
    if (c->half) mesh_finish(c, st_upfail_labels[reason], 0); /* no answer: an error half */
    st_warn(
        "msg=\"upstream failed\" upstream=%s reason=%s state=%s response_started=%d request_id=%s",
        c->w->cfg->primary.authority, st_upfail_labels[reason], cstate_names[c->state],
        c->resp != R_NONE, c->rid);
    if (c->resp != R_NONE) {
        /* never present a cut body as complete: a close-delimited one (HTTP/1.0
         * client) would look whole after a FIN, so it ends with a reset
         * (found by fuzz_response) */
        if (c->close_delim) reset_on_close(c);
        client_close(c, ST_CLOSE_UPSTREAM_FAILED_MID_RESPONSE);
        return;
    }
    int status = why == ST_UPFAIL_TIMEOUT ? 504 : 502;
    if (c->state == C_SENT && c->keep_alive && !c->upgrade && !c->w->draining &&
        why != ST_UPFAIL_PROTOCOL) {
        /* the request was read whole: answer and keep the connection */
        drop_exchange(c);
        c->status = status;
        c->resp = R_DONE;
        c->rhead.len = 0;
        if (st_http_build_error(&c->rhead, status, c->rid, 0) != 0 ||
            add(c, DIR_CL, c->rhead.p, c->rhead.len) != 0 || flush(c, DIR_CL) != 0) {
            client_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
            return;
        }
        finish_exchange(c);
        return;
    }
    reply_error(c, status, st_upfail_labels[reason]);
}

static void up_on_fail(void *owner, st_upconn_t *u, enum st_upfail why)
{
    st_client_t *c = owner;
    (void)u;
    upstream_failed(c, why);
}

static void up_on_ready(void *owner, st_upconn_t *u);

static const st_upstream_ops_t primary_ops = {
    .on_ready = up_on_ready,
    .on_data = up_on_data,
    .on_fail = up_on_fail,
};

static void up_on_ready(void *owner, st_upconn_t *u)
{
    st_client_t *c = owner;
    llhttp_init(&u->parser, HTTP_RESPONSE, &response_settings);
    u->parser.data = c;
    st_http_msg_reset(&c->res);
    if (c->retrying) { /* the whole (body-less) request again; the parser is already past it */
        c->retrying = 0;
        st_upconn_set_timeout(u, c->w->cfg->upstream_timeout_ms);
        if (add(c, DIR_UP, c->head.p, c->head.len) != 0 || flush(c, DIR_UP) != 0)
            upstream_failed(c, ST_UPFAIL_RESET);
        return;
    }
    c->state = C_BODY;
    arm(c, c->w->cfg->idle_timeout_ms); /* a body that stalls is cut off */
    c->head_pending =
        c->chunked_in; /* nothing reaches the upstream before the first chunk parses */
    if (!c->head_pending && add(c, DIR_UP, c->head.p, c->head.len) != 0) {
        upstream_failed(c, ST_UPFAIL_RESET);
        return;
    }
    body_begins(c);
}

static void start_upstream(st_client_t *c)
{
    st_upconn_t *u;
    c->state = C_CONNECT;
    disarm(c);
    int rc = st_pool_acquire(&c->w->primary_pool, c, &primary_ops, &u);
    if (rc < 0) {
        reply_error(c, 502, "pool");
        return;
    }
    c->up = u;
    if (rc == 0) reading(c, 0); /* the body waits in the socket until the upstream is ready */
    if (rc == 1) up_on_ready(c, u);
}

static void enter_tunnel(st_client_t *c)
{
    st_upconn_t *u = c->up;
    c->state = C_TUNNEL;
    st_upconn_set_timeout(u, 0);
    arm(c, c->w->cfg->idle_timeout_ms);
    count_response(c, c->status);
    if (c->mirror) {
        st_tee_primary_done(c->mirror, 0, 0);
        c->mirror = NULL;
        c->cap = NULL;
    }
    if (c->half) {
        st_cmpjob_free(c->half); /* never captured: upgrades are not compared */
        c->half = NULL;
        c->cap = NULL;
    }
    /* bytes after the 101 head, and client bytes after the request */
    if (u->rb.parsed < u->rb.filled) up_on_data(c, u);
    if (!c->closing) client_process(c);
}

/* ---- the exchange ------------------------------------------------------- */

/* How long an idle keep-alive connection stays open once draining. */
static uint64_t drain_grace_ms(const st_worker_t *w)
{
    uint64_t idle = w->cfg->idle_timeout_ms;
    return idle < ST_DRAIN_IDLE_GRACE_MS ? idle : ST_DRAIN_IDLE_GRACE_MS;
}

static void finish_exchange(st_client_t *c)
{
    if (c->pending[DIR_CL] || c->pending[DIR_UP]) return; /* on_batch_written calls again */
    if (c->state != C_SENT) c->close_after = 1;           /* early response: the request was cut */
    count_response(c, c->status);
    if (c->up) {
        st_upconn_t *u = c->up;
        int reusable =
            !c->close_after && c->state == C_SENT && llhttp_should_keep_alive(&u->parser);
        st_upconn_set_timeout(u, 0);
        c->up = NULL;
        st_upconn_release(u, reusable);
    }
    if (c->mirror) {
        /* latency like the shadow's: request complete -> response complete,
         * not the client's pace; an answer that completed before the request
         * did has no comparable latency */
        int ok = c->t_sent != 0 && c->t_resp_done >= c->t_sent;
        st_tee_primary_done(c->mirror, ok, ok ? (double)(c->t_resp_done - c->t_sent) / 1e9 : 0);
        c->mirror = NULL;
        c->cap = NULL;
    }
    if (c->half) {
        int ok = c->t_sent != 0 && c->t_resp_done >= c->t_sent;
        mesh_finish(c, NULL, ok ? (double)(c->t_resp_done - c->t_sent) / 1e9 : 0);
    }
    if (c->state != C_SENT && c->state != C_TUNNEL) {
        /* an early answer while the client still uploads: closing now would
         * reset the connection and lose the answer; discard input instead */
        c->state = C_LINGER;
        c->rb.filled = c->rb.parsed = 0;
        reading(c, 1);
        arm(c, 1000);
        shutdown_write(c);
        return;
    }
    /* Draining, after a response that told the client it may send more:
     * its next request may be on its way, and closing now would reset it.
     * The connection waits like an idle one at drain (st_client_drain_all). */
    int keep_for_drain = c->w->draining && !c->resp_close && c->state == C_SENT;
    if ((c->close_after || c->w->draining) && !keep_for_drain) {
        client_close(c, ST_CLOSE_EXCHANGE_DONE);
        return;
    }
    c->close_after |= keep_for_drain;
    /* next request: pipelined bytes move to the front of the buffer */
    size_t left = c->rb.filled - c->rb.parsed;
    if (left && c->rb.parsed) memmove(c->rb.base, c->rb.base + c->rb.parsed, left);
    c->rb.filled = left;
    c->rb.parsed = 0;
    memset(&c->scan, 0, sizeof(c->scan));
    c->rid[0] = '\0'; /* a head refused before it is parsed has no request id */
    c->resp = R_NONE;
    c->rechunk = c->close_delim = c->tunnel = c->resp_until_eof = c->resp_sent = 0;
    c->status = 0;
    c->pause_why = P_NONE;
    if (left) {
        c->state = C_HEAD;
        c->t_start = uv_hrtime();
        arm(c, c->w->cfg->client_header_timeout_ms);
    } else {
        c->state = C_IDLE;
        st_rbuf_put(&c->w->rpool, &c->rb);
        arm(c, keep_for_drain ? drain_grace_ms(c->w) : c->w->cfg->idle_timeout_ms);
    }
    client_process(c);
}

static void tunnel_process(st_client_t *c)
{
    if (c->pending[DIR_UP]) {
        reading(c, 0);
        return;
    }
    c->rb.parsed = c->rb.filled = 0;
    if (c->up == NULL) return;
    if (c->tls_on && st_tls_has_input(&c->tls)) { /* decrypted bytes still inside OpenSSL */
        ssize_t n = tls_pull(c);
        if (c->closing) return;
        if (n > 0) {
            client_process(c); /* forwards them and comes back here */
            return;
        }
    }
    reading(c, 1);
}

/* Runs the request parser over the unparsed bytes and acts on where it
 * stopped. Reading from the client is on only while we can take bytes. */
static void client_process(st_client_t *c)
{
    while (!c->closing) {
        if (c->state == C_TUNNEL) {
            size_t len = c->rb.filled - c->rb.parsed;
            if (len && c->pending[DIR_UP] == 0) {
                if (add(c, DIR_UP, c->rb.base + c->rb.parsed, len) != 0 || flush(c, DIR_UP) != 0) {
                    client_close(c, ST_CLOSE_TUNNEL_WRITE);
                    return;
                }
                c->rb.parsed = c->rb.filled;
                arm(c, c->w->cfg->idle_timeout_ms);
            }
            tunnel_process(c);
            return;
        }
        if (c->state == C_LINGER) return;
        if (c->state == C_CONNECT || c->pending[DIR_UP]) {
            reading(c, 0);
            return;
        }
        if (c->state == C_SENT) { /* the next request waits in the buffer for this exchange */
            if (c->rb.base && c->rb.filled == c->rb.cap) reading(c, 0);
            return;
        }
        if (c->rb.parsed == c->rb.filled && !c->need_exec) {
            if (c->state == C_BODY)
                c->rb.parsed = c->rb.filled = 0;          /* nothing references it any more */
            if (c->tls_on && st_tls_has_input(&c->tls)) { /* plaintext waiting inside OpenSSL */
                ssize_t n = tls_pull(c);
                if (c->closing) return;
                if (n > 0) {
                    on_request_bytes(c);
                    continue;
                }
            }
            reading(c, 1);
            return;
        }
        c->need_exec = 0;
        if (c->state == C_HEAD) { /* every head byte is scanned before llhttp parses it */
            enum st_reject why = st_reqcheck_scan(&c->scan, c->rb.base, c->rb.filled);
            if (why) {
                reject(c, why);
                return;
            }
        }
        llhttp_errno_t err = st_http_execute(&c->parser, &c->rb);
        if (c->up && c->state != C_HEAD && flush(c, DIR_UP) != 0) {
            upstream_failed(c, ST_UPFAIL_RESET);
            return;
        }
        if (err == HPE_OK) {
            if (c->state == C_HEAD && c->rb.parsed >= c->w->cfg->max_header_size) {
                reject(c, ST_REJ_HEAD_TOO_LARGE);
                return;
            }
            continue;
        }
        if (err == HPE_PAUSED && c->pause_why == P_HEADERS) {
            c->pause_why = P_NONE;
            if (c->rb.parsed > c->w->cfg->max_header_size) {
                reject(c, ST_REJ_HEAD_TOO_LARGE);
                return;
            }
            if (c->local)
                start_local(c);
            else
                start_upstream(c);
            return;
        }
        if (err == HPE_PAUSED && c->pause_why == P_DONE) {
            c->pause_why = P_NONE;
            c->state = C_SENT;
            c->t_sent = uv_hrtime();
            disarm(c); /* the primary's response timer runs now; flush() arms the send timeout */
            if (c->up) st_upconn_set_timeout(c->up, c->w->cfg->upstream_timeout_ms);
            if (c->mirror) st_tee_request_done(c->mirror);
            if (c->local) {
                local_answer(c);
                return;
            }
            if (c->resp == R_DONE) {
                finish_exchange(c);
                return;
            }
            continue;
        }
        if (c->write_failed & (1 << DIR_UP)) { /* the primary went away mid-body */
            upstream_failed(c, ST_UPFAIL_RESET);
            return;
        }
        st_debug("msg=\"bad request\" err=%s reason=\"%s\"", llhttp_errno_name(err),
                 llhttp_get_error_reason(&c->parser));
        if (c->req.bad && !c->req.why)
            reply_error(c, c->req.bad, "internal"); /* the head could not be built */
        else
            reject(c, c->req.why ? (enum st_reject)c->req.why : st_reqcheck_errno(err));
        return;
    }
}

/* ---- TLS on the client side -------------------------------------------- */

/* Decrypts what OpenSSL holds into rb (as much as fits). Returns the bytes
 * added, UV_EOF on close_notify, or UV_EPROTO after closing on an error. */
static ssize_t tls_pull(st_client_t *c)
{
    ssize_t total = 0;
    for (;;) {
        if (!c->rb.base && st_rbuf_get(&c->w->rpool, &c->rb) != 0) break;
        if (c->rb.filled == c->rb.cap) break; /* the rest waits in OpenSSL (pumped later) */
        long n = st_tls_read(&c->tls, c->rb.base + c->rb.filled, c->rb.cap - c->rb.filled);
        if (n == 0) break;
        if (n < 0) {
            if (!c->tls.failed) return total ? total : UV_EOF;
            ST_INC(c->w->metrics.tls_failures[ST_TLS_LISTENER][ST_TLSFAIL_PROTOCOL]);
            client_close(c, ST_CLOSE_TLS_ERROR);
            return UV_EPROTO;
        }
        c->rb.filled += (size_t)n;
        total += n;
    }
    return total;
}

/* Ciphertext from the socket: handshake, then plaintext into rb. Returns as
 * tls_pull, or 0 while the handshake goes on. */
static ssize_t tls_input(st_client_t *c, const char *data, size_t len)
{
    if (st_tls_feed(&c->tls, data, len) != 0) {
        client_close(c, ST_CLOSE_TLS_ERROR);
        return UV_EPROTO;
    }
    if (!c->tls.handshaken) {
        int rc = st_tls_handshake(&c->tls);
        if (flush(c, DIR_CL) != 0 || rc < 0) { /* a plain-HTTP client lands here */
            char e[256];
            ST_INC(c->w->metrics.tls_failures[ST_TLS_LISTENER][st_tls_failure_reason(&c->tls)]);
            st_debug("msg=\"client TLS handshake failed\" client=%s err=\"%s\"", c->ip,
                     st_tls_last_error(e, sizeof(e)));
            client_close(c, ST_CLOSE_TLS_HANDSHAKE);
            return UV_EPROTO;
        }
        if (rc == 0) return 0;
    }
    ssize_t n = tls_pull(c);
    if (n >= 0 && !c->closing && flush(c, DIR_CL) != 0) { /* e.g. session tickets */
        client_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
        return UV_EPROTO;
    }
    return n;
}

/* ---- reading ------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    st_client_t *c = h->data;
    (void)hint;
    if (c->tls_on) { /* ciphertext to the worker's scratch; st_tls_read fills rb */
        *buf = uv_buf_init(c->w->tls_scratch, ST_RBUF_SIZE);
        return;
    }
    if (!c->rb.base && st_rbuf_get(&c->w->rpool, &c->rb) != 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    if (c->state == C_LINGER) c->rb.filled = c->rb.parsed = 0; /* discard */
    *buf = uv_buf_init(c->rb.base + c->rb.filled, (unsigned)(c->rb.cap - c->rb.filled));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    st_client_t *c = s->data;
    if (nread == 0 || c->closing) return;
    if (nread > 0 && c->tls_on) {
        if (c->state == C_LINGER) return;
        nread = tls_input(c, buf->base, (size_t)nread);
        if (c->closing) return;
        if (nread == 0) {
            if (c->rb.base && c->rb.filled == c->rb.cap && st_tls_has_input(&c->tls)) {
                /* the buffer is full and OpenSSL holds more: as UV_ENOBUFS for plain HTTP */
                if (c->state == C_HEAD || c->state == C_IDLE)
                    reject(c, ST_REJ_HEAD_TOO_LARGE);
                else
                    reading(c, 0); /* client_process pulls and resumes when there is room */
            }
            return;
        }
    }
    if (nread == UV_ENOBUFS) {
        if (c->state == C_HEAD || c->state == C_IDLE)
            reject(c, ST_REJ_HEAD_TOO_LARGE);
        else
            client_close(c, ST_CLOSE_NO_BUFFER);
        return;
    }
    if (nread < 0) {
        if (c->state == C_IDLE || c->state == C_LINGER)
            client_close(c, ST_CLOSE_EOF);
        else if (c->state == C_SENT && c->resp != R_DONE && c->up && nread == UV_EOF) {
            /* half-close after a complete request: keep relaying the answer */
            reading(c, 0);
            c->close_after = 1;
        } else
            client_close(c, nread == UV_EOF ? ST_CLOSE_CLIENT_EOF : ST_CLOSE_CLIENT_RESET);
        return;
    }
    if (c->state == C_LINGER) return;
    if (!c->tls_on) c->rb.filled += (size_t)nread;
    on_request_bytes(c);
    client_process(c);
}

/* Timers and state on new request bytes (plain or decrypted). */
static void on_request_bytes(st_client_t *c)
{
    if (c->state == C_IDLE) {
        c->state = C_HEAD;
        c->t_start = uv_hrtime();
        arm(c, c->w->cfg->client_header_timeout_ms);
    } else if (c->state == C_BODY) {
        arm(c, c->w->cfg->idle_timeout_ms);
    }
}

/* ---- accept and drain --------------------------------------------------- */

void st_client_accept(st_worker_t *w, int fd)
{
    st_client_t *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->w = w;
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    st_sbuf_init(&c->head);
    st_sbuf_init(&c->rhead);
    st_list_init(&c->link);
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        c->closing = 1;
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    strcpy(c->ip, "unknown");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->ip, sizeof(c->ip));
        else
            uv_ip4_name((struct sockaddr_in *)&ss, c->ip, sizeof(c->ip));
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &request_settings);
    c->parser.data = c;
    if (w->tls_server) {
        if (st_tls_accept(&c->tls, w->tls_server) != 0) {
            c->closing = 1;
            uv_close((uv_handle_t *)&c->timer, on_handle_closed);
            uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
            return;
        }
        c->tls_on = 1;
    }
    st_list_push(&w->clients, &c->link);
    w->nclients++;
    ST_ADD(w->metrics.active_connections, 1);
    ST_INC(w->metrics.connections_total);
    c->state = C_IDLE;
    arm(c, w->cfg->client_header_timeout_ms);
    reading(c, 1);
}

void st_client_drain_all(st_worker_t *w, int force)
{
    st_list_t *n = w->clients.next;
    while (n != &w->clients) {
        st_client_t *c = st_list_entry(n, st_client_t, link);
        n = n->next;
        if (force || c->state == C_LINGER) {
            client_close(c, force ? ST_CLOSE_STOP : ST_CLOSE_DRAIN);
        } else if (c->state == C_IDLE) {
            /* an idle keep-alive connection may have a request on its way:
             * closing now would reset it (unread bytes make close() send a
             * RST). It gets a short grace instead: a request in it is
             * answered with Connection: close, else the timer closes it. */
            c->close_after = 1;
            arm(c, drain_grace_ms(w));
        } else {
            c->close_after = 1;
        }
    }
}
