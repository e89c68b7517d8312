/*
 * conn: the client connection (see conn.h for its states): socket I/O and
 * its one timer, the write batches it fills and flushes, TLS on the client
 * side, closing, accept and drain. The exchange it carries is exchange.c.
 */
#include "conn.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "http.h"
#include "metrics.h"
#include "worker.h"

#define ST_DRAIN_IDLE_GRACE_MS 1000

const char *const st_conn_state_names[] = {"idle", "exchange", "tunnel", "linger", "closed"};

/* ---- small helpers ------------------------------------------------------ */

static uv_stream_t *dst_stream(st_conn_t *c, int dir)
{
    return dir == DIR_UP ? st_upconn_stream(c->x.up) : (uv_stream_t *)&c->tcp;
}

static void maybe_free(st_conn_t *c)
{
    if (c->handles > 0 || c->pending[0] || c->pending[1]) return;
    st_worker_t *w = c->w;
    for (int i = 0; i < 2; i++)
        st_wbatch_release(&c->wb[i]);
    st_tls_free(&c->tls);
    st_sbuf_free(&c->x.head);
    st_sbuf_free(&c->x.rhead);
    free(c);
    st_worker_maybe_done(w);
}

static void on_handle_closed(uv_handle_t *h)
{
    st_conn_t *c = h->data;
    c->handles--;
    maybe_free(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static ssize_t tls_input(st_conn_t *c, const char *data, size_t len);

void st_conn_reading(st_conn_t *c, int on)
{
    if (st_conn_closed(c) || on == c->reading) return;
    if (on) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void on_timer(uv_timer_t *t);
/* Timeouts are lazy: st_conn_arm() only records the deadline and touches the
 * libuv timer when it must fire earlier than it is set to; on_timer() re-arms
 * for the rest when the deadline moved. Most requests cost no timer operation. */
void st_conn_arm(st_conn_t *c, uint64_t ms)
{
    if (st_conn_closed(c)) return;
    c->deadline = uv_now(&c->w->loop) + ms;
    if (!uv_is_active((uv_handle_t *)&c->timer) || c->deadline < c->timer_due) {
        c->timer_due = c->deadline;
        uv_timer_start(&c->timer, on_timer, ms, 0);
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    free(req);
}

/* Half-closes after an error answer, so the client reads it before EOF. */
void st_conn_shutdown_write(st_conn_t *c)
{
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req && uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) free(req);
}

/* ---- write batches ------------------------------------------------------ */

/* st_conn_add's slow path: the batch is full, sent first. */
int st_conn_add_full(st_conn_t *c, int dir, const char *p, size_t n)
{
    st_wbatch_t *b = &c->wb[dir];
    if (st_conn_flush(c, dir) != 0) {
        c->write_failed |= 1 << dir;
        return -1;
    }
    return st_wbatch_add(b, p, n);
}

/* Queues a chunk-size line for dir, as st_conn_add(). */
int st_conn_add_chunk_size(st_conn_t *c, int dir, unsigned long long v)
{
    st_wbatch_t *b = &c->wb[dir];
    if (st_wbatch_add_chunk_size(b, v) == 0) return 0;
    if (st_conn_flush(c, dir) != 0) {
        c->write_failed |= 1 << dir;
        return -1;
    }
    return st_wbatch_add_chunk_size(b, v);
}

static void on_batch_written(void *owner, int dir, int status)
{
    st_conn_t *c = owner;
    c->pending[dir]--;
    if (st_conn_closed(c)) {
        maybe_free(c);
        return;
    }
    if (status < 0) {
        if (dir == DIR_CL)
            st_conn_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
        else if (c->x.up && status != UV_ECANCELED)
            st_exch_upstream_failed(c, ST_UPFAIL_RESET);
        else if (c->state != ST_CONN_LINGER && c->x.resp == ST_RESP_DONE && !c->pending[0] &&
                 !c->pending[1])
            st_exch_finish(c); /* the cancelled write of a connection we closed ourselves */
        return;
    }
    if (c->pending[dir] > 0) return;
    if (dir == DIR_UP || c->state == ST_CONN_TUNNEL) {
        if (dir == DIR_CL)
            st_exch_up_resume(c);
        else
            st_exch_process(c);
        return;
    }
    /* DIR_CL drained */
    if (c->state == ST_CONN_LINGER) {
        st_conn_shutdown_write(c);
        return;
    }
    if (c->x.resp == ST_RESP_DONE)
        st_exch_finish(c);
    else if (c->x.up) {
        if (c->x.state == ST_EXCH_BODY)
            st_conn_arm(c, c->w->cfg->idle_timeout_ms); /* back to the body deadline */
        else
            st_conn_disarm(c); /* SENT: the primary's timer governs */
        st_exch_up_resume(c);
    }
}

/* Sends what the batch holds: inline when the socket takes it all, else the
 * rest goes to uv_write in a heap copy. Returns 0 or -1 (write error). */
int st_conn_flush(st_conn_t *c, int dir)
{
    st_wbatch_t *b = &c->wb[dir];
    st_tls_t *tls =
        dir == DIR_UP ? (c->x.up ? st_upconn_tls(c->x.up) : NULL) : (c->tls_on ? &c->tls : NULL);
    if (tls) { /* encrypt: the plaintext sources are free again right away */
        int rc = st_wbatch_encrypt(b, tls, c->w->tls_wscratch, ST_TLS_RECORD_MAX);
        if (rc <= 0) return rc;
    }
    if (b->n == 0) return 0;
    if (dir == DIR_CL && c->x.resp != ST_RESP_NONE) c->x.resp_sent = 1;
    int *pending = &c->pending[dir & 1]; /* & 1: GCC 12 -Warray-bounds, dir is 0 or 1 */
    int rc = st_wbatch_send(b, &c->w->wbatch, dst_stream(c, dir), *pending == 0, on_batch_written,
                            c, dir);
    if (rc <= 0) return rc;
    (*pending)++;
    if (dir == DIR_CL && !st_conn_closed(c)) { /* a client that does not read: send timeout */
        if (c->x.up && c->state != ST_CONN_TUNNEL) {
            st_upconn_pause(c->x.up);
            st_upconn_set_timeout(c->x.up, 0); /* our client is slow, not the primary */
        }
        st_conn_arm(c, c->w->cfg->idle_timeout_ms);
    }
    return 0;
}

/* ---- closing and timeouts ----------------------------------------------- */

/* TLS: queue a close_notify and hand it to the socket if it takes it now
 * (best effort, never blocks), so a close is not mistaken for a truncation. */
static void tls_close_notify(st_conn_t *c)
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

void st_conn_close(st_conn_t *c, enum st_close why)
{
    if (st_conn_closed(c)) return;
    if (c->x.resp != ST_RESP_BODY)
        tls_close_notify(c); /* never for a cut response: it would look complete */
    ST_INC(c->w->metrics.client_closes[why]);
    st_debug("msg=\"client closed\" reason=%s state=%s", st_close_labels[why],
             st_conn_state_name(c));
    st_exch_drop(c);
    st_conn_set_state(c, ST_CONN_CLOSED);
    c->reading = 0;
    st_list_remove(&c->link);
    c->w->nclients--;
    ST_ADD(c->w->metrics.active_connections, -1);
    st_rbuf_put(&c->w->rpool, &c->rb);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* The close that follows sends a RST instead of a FIN (SO_LINGER 0). */
void st_conn_reset_on_close(st_conn_t *c)
{
    uv_os_fd_t fd;
    struct linger lg = {1, 0};
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void on_timer(uv_timer_t *t)
{
    st_conn_t *c = t->data;
    uint64_t now = uv_now(&c->w->loop);
    if (c->deadline == 0) return;
    if (now < c->deadline) { /* the deadline moved later since the timer was set */
        c->timer_due = c->deadline;
        uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
        return;
    }
    c->deadline = 0;
    switch (c->x.state) { /* HEAD, BODY: only while the connection carries an exchange */
    case ST_EXCH_HEAD:
        st_exch_reject(c, ST_REJ_TIMEOUT); /* slowloris */
        break;
    case ST_EXCH_BODY:
        if (c->pending[DIR_UP]) { /* the primary stopped reading the body: its fault */
            st_exch_upstream_failed(c, ST_UPFAIL_TIMEOUT);
            break;
        }
        if (c->x.resp == ST_RESP_NONE)
            st_exch_reject(c, ST_REJ_TIMEOUT);
        else
            st_conn_close(c, ST_CLOSE_BODY_TIMEOUT);
        break;
    default: /* idle keep-alive, linger, send timeout, tunnel idle */
        st_conn_close(c, ST_CLOSE_TIMEOUT);
        break;
    }
}

/* ---- drain and tunnel --------------------------------------------------- */

/* How long an idle keep-alive connection stays open once draining. */
uint64_t st_conn_drain_grace_ms(const st_worker_t *w)
{
    uint64_t idle = w->cfg->idle_timeout_ms;
    return idle < ST_DRAIN_IDLE_GRACE_MS ? idle : ST_DRAIN_IDLE_GRACE_MS;
}

void st_conn_tunnel_process(st_conn_t *c)
{
    if (c->pending[DIR_UP]) {
        st_conn_reading(c, 0);
        return;
    }
    c->rb.parsed = c->rb.filled = 0;
    if (c->x.up == NULL) return;
    if (c->tls_on && st_tls_has_input(&c->tls)) { /* decrypted bytes still inside OpenSSL */
        ssize_t n = st_conn_tls_pull(c);
        if (st_conn_closed(c)) return;
        if (n > 0) {
            st_exch_process(c); /* forwards them and comes back here */
            return;
        }
    }
    st_conn_reading(c, 1);
}

/* ---- TLS on the client side -------------------------------------------- */

/* Decrypts what OpenSSL holds into rb (as much as fits). Returns the bytes
 * added, UV_EOF on close_notify, or UV_EPROTO after closing on an error. */
ssize_t st_conn_tls_pull(st_conn_t *c)
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
            st_conn_close(c, ST_CLOSE_TLS_ERROR);
            return UV_EPROTO;
        }
        c->rb.filled += (size_t)n;
        total += n;
    }
    return total;
}

/* Ciphertext from the socket: handshake, then plaintext into rb. Returns as
 * st_conn_tls_pull, or 0 while the handshake goes on. */
static ssize_t tls_input(st_conn_t *c, const char *data, size_t len)
{
    if (st_tls_feed(&c->tls, data, len) != 0) {
        st_conn_close(c, ST_CLOSE_TLS_ERROR);
        return UV_EPROTO;
    }
    if (!c->tls.handshaken) {
        int rc = st_tls_handshake(&c->tls);
        if (st_conn_flush(c, DIR_CL) != 0 || rc < 0) { /* a plain-HTTP client lands here */
            char e[256];
            ST_INC(c->w->metrics.tls_failures[ST_TLS_LISTENER][st_tls_failure_reason(&c->tls)]);
            st_debug("msg=\"client TLS handshake failed\" client=%s err=\"%s\"", c->ip,
                     st_tls_last_error(e, sizeof(e)));
            st_conn_close(c, ST_CLOSE_TLS_HANDSHAKE);
            return UV_EPROTO;
        }
        if (rc == 0) return 0;
    }
    ssize_t n = st_conn_tls_pull(c);
    if (n >= 0 && !st_conn_closed(c) && st_conn_flush(c, DIR_CL) != 0) { /* e.g. session tickets */
        st_conn_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
        return UV_EPROTO;
    }
    return n;
}

/* ---- reading ------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    st_conn_t *c = h->data;
    (void)hint;
    if (c->tls_on) { /* ciphertext to the worker's scratch; st_tls_read fills rb */
        *buf = uv_buf_init(c->w->tls_scratch, ST_RBUF_SIZE);
        return;
    }
    if (!c->rb.base && st_rbuf_get(&c->w->rpool, &c->rb) != 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    if (c->state == ST_CONN_LINGER) c->rb.filled = c->rb.parsed = 0; /* discard */
    *buf = uv_buf_init(c->rb.base + c->rb.filled, (unsigned)(c->rb.cap - c->rb.filled));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    st_conn_t *c = s->data;
    if (nread == 0 || st_conn_closed(c)) return;
    if (nread > 0 && c->tls_on) {
        if (c->state == ST_CONN_LINGER) return;
        nread = tls_input(c, buf->base, (size_t)nread);
        if (st_conn_closed(c)) return;
        if (nread == 0) {
            if (c->rb.base && c->rb.filled == c->rb.cap && st_tls_has_input(&c->tls)) {
                /* the buffer is full and OpenSSL holds more: as UV_ENOBUFS for plain HTTP */
                if (c->x.state == ST_EXCH_HEAD || c->state == ST_CONN_IDLE)
                    st_exch_reject(c, ST_REJ_HEAD_TOO_LARGE);
                else
                    st_conn_reading(c,
                                    0); /* st_exch_process pulls and resumes when there is room */
            }
            return;
        }
    }
    if (nread == UV_ENOBUFS) {
        if (c->x.state == ST_EXCH_HEAD || c->state == ST_CONN_IDLE)
            st_exch_reject(c, ST_REJ_HEAD_TOO_LARGE);
        else
            st_conn_close(c, ST_CLOSE_NO_BUFFER);
        return;
    }
    if (nread < 0) {
        if (c->state == ST_CONN_IDLE || c->state == ST_CONN_LINGER)
            st_conn_close(c, ST_CLOSE_EOF);
        else if (c->x.state == ST_EXCH_SENT && c->x.resp != ST_RESP_DONE && c->x.up &&
                 nread == UV_EOF) {
            /* half-close after a complete request: keep relaying the answer */
            st_conn_reading(c, 0);
            c->close_after = 1;
        } else
            st_conn_close(c, nread == UV_EOF ? ST_CLOSE_CLIENT_EOF : ST_CLOSE_CLIENT_RESET);
        return;
    }
    if (c->state == ST_CONN_LINGER) return;
    if (!c->tls_on) c->rb.filled += (size_t)nread;
    st_conn_request_bytes(c);
    st_exch_process(c);
}

/* Timers and state on new request bytes (plain or decrypted). */
void st_conn_request_bytes(st_conn_t *c)
{
    if (c->state == ST_CONN_IDLE) {
        st_conn_set_state(c, ST_CONN_EXCHANGE);
        st_exch_set_state(&c->x, ST_EXCH_HEAD);
        c->x.t_start = uv_hrtime();
        st_conn_arm(c, c->w->cfg->client_header_timeout_ms);
    } else if (c->x.state == ST_EXCH_BODY) {
        st_conn_arm(c, c->w->cfg->idle_timeout_ms);
    }
}

/* ---- accept and drain --------------------------------------------------- */

void st_client_accept(st_worker_t *w, int fd)
{
    st_conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->w = w;
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    st_sbuf_init(&c->x.head);
    st_sbuf_init(&c->x.rhead);
    st_list_init(&c->link);
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        st_conn_set_state(c, ST_CONN_CLOSED);
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
    llhttp_init(&c->parser, HTTP_REQUEST, &st_exch_request_settings);
    c->parser.data = c;
    if (w->tls_server) {
        if (st_tls_accept(&c->tls, w->tls_server) != 0) {
            st_conn_set_state(c, ST_CONN_CLOSED);
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
    st_conn_set_state(c, ST_CONN_IDLE);
    st_conn_arm(c, w->cfg->client_header_timeout_ms);
    st_conn_reading(c, 1);
}

void st_client_drain_all(st_worker_t *w, int force)
{
    st_list_t *n = w->clients.next;
    while (n != &w->clients) {
        st_conn_t *c = st_list_entry(n, st_conn_t, link);
        n = n->next;
        if (force || c->state == ST_CONN_LINGER) {
            st_conn_close(c, force ? ST_CLOSE_STOP : ST_CLOSE_DRAIN);
        } else if (c->state == ST_CONN_IDLE) {
            /* an idle keep-alive connection may have a request on its way:
             * closing now would reset it (unread bytes make close() send a
             * RST). It gets a short grace instead: a request in it is
             * answered with Connection: close, else the timer closes it. */
            c->close_after = 1;
            st_conn_arm(c, st_conn_drain_grace_ms(w));
        } else {
            c->close_after = 1;
        }
    }
}
