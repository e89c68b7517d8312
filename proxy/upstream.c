/* upstream: connection pool and connection lifetimes (see upstream.h). */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker.h"

void st_pool_init(st_pool_t *p, struct st_worker *w, const st_addr_t *addr, const char *name,
                  size_t max_idle, size_t max_conns, uint64_t connect_timeout_ms,
                  uint64_t idle_timeout_ms)
{
    memset(p, 0, sizeof(*p));
    p->w = w;
    p->addr = addr;
    p->name = name;
    st_list_init(&p->idle);
    p->max_idle = max_idle;
    p->max_conns = max_conns;
    p->connect_timeout_ms = connect_timeout_ms;
    p->idle_timeout_ms = idle_timeout_ms;
    if (addr->salen) {
        memcpy(&p->sa, &addr->sa, addr->salen);
        p->salen = addr->salen;
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    st_pool_t *p = req->data;
    p->resolving = 0;
    if (status == 0 && res) {
        memcpy(&p->sa, res->ai_addr, res->ai_addrlen);
        p->salen = res->ai_addrlen;
        st_debug("msg=\"upstream resolved\" pool=%s upstream=%s", p->name, p->addr->authority);
    } else if (status != UV_ECANCELED) {
        st_debug("msg=\"upstream still not resolvable\" pool=%s upstream=%s err=%s", p->name,
                 p->addr->authority, uv_err_name(status));
    }
    if (res) uv_freeaddrinfo(res);
}

void st_pool_resolve(st_pool_t *p)
{
    uint64_t now = uv_now(&p->w->loop);
    if (p->resolving || now < p->next_resolve_ms || p->w->stopping || p->w->draining) return;
    p->next_resolve_ms = now + 5000;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char port[8];
    snprintf(port, sizeof(port), "%d", p->addr->port);
    p->gai.data = p;
    if (uv_getaddrinfo(&p->w->loop, &p->gai, on_resolved, p->addr->host, port, &hints) == 0)
        p->resolving = 1;
}

static void on_handle_closed(uv_handle_t *h)
{
    st_upconn_t *u = h->data;
    if (--u->handles > 0) return;
    st_tls_free(&u->tls);
    st_rbuf_put(&u->pool->w->rpool, &u->rb);
    u->pool->nconns--;
    free(u);
}

void st_upconn_close(st_upconn_t *u)
{
    if (u->state == ST_UP_CLOSING) return;
    if (u->state == ST_UP_IDLE) {
        st_list_remove(&u->link);
        u->pool->nidle--;
    }
    u->state = ST_UP_CLOSING;
    u->owner = NULL;
    u->ops = NULL;
    uv_close((uv_handle_t *)&u->timer, on_handle_closed);
    uv_close((uv_handle_t *)&u->tcp, on_handle_closed);
}

void st_pool_close_idle(st_pool_t *p)
{
    while (!st_list_empty(&p->idle))
        st_upconn_close(st_list_entry(p->idle.next, st_upconn_t, link));
}

static void fail(st_upconn_t *u, enum st_upfail why)
{
    if (u->state == ST_UP_IDLE || !u->owner) {
        st_upconn_close(u);
        return;
    }
    u->deadline = 0;
    u->ops->on_fail(u->owner, u, why);
}

static void on_timer(uv_timer_t *t);

/* Lazy timeout, as for clients: only an earlier deadline touches the timer. */
static void arm(st_upconn_t *u, uint64_t ms)
{
    if (u->state == ST_UP_CLOSING) return;
    u->deadline = uv_now(u->timer.loop) + ms;
    if (!uv_is_active((uv_handle_t *)&u->timer) || u->deadline < u->timer_due) {
        u->timer_due = u->deadline;
        uv_timer_start(&u->timer, on_timer, ms, 0);
    }
}

static void on_timer(uv_timer_t *t)
{
    st_upconn_t *u = t->data;
    uint64_t now = uv_now(t->loop);
    if (u->deadline == 0) return;
    if (now < u->deadline) {
        u->timer_due = u->deadline;
        uv_timer_start(&u->timer, on_timer, u->deadline - now, 0);
        return;
    }
    u->deadline = 0;
    if (u->state == ST_UP_IDLE) {
        st_upconn_close(u);
        return;
    }
    fail(u, u->state == ST_UP_CONNECTING || u->state == ST_UP_HANDSHAKE ? ST_UPFAIL_CONNECT
                                                                        : ST_UPFAIL_TIMEOUT);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    st_upconn_t *u = h->data;
    (void)hint;
    if (u->pool->tls_ctx) { /* ciphertext goes to the worker's scratch, plaintext to rb */
        *buf = uv_buf_init(u->pool->w->tls_scratch, ST_RBUF_SIZE);
        return;
    }
    if (!u->rb.base && st_rbuf_get(&u->pool->w->rpool, &u->rb) != 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(u->rb.base + u->rb.filled, (unsigned)(u->rb.cap - u->rb.filled));
}

static void tls_on_read(st_upconn_t *u, const char *data, size_t len);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    st_upconn_t *u = s->data;
    if (nread > 0 && !u->pool->tls_ctx) u->got_bytes = 1; /* TLS: set when plaintext arrives */
    if (nread > 0 && u->pool->tls_ctx) {
        tls_on_read(u, buf->base, (size_t)nread);
        return;
    }
    if (nread == 0) return;
    if (nread < 0) {
        st_upconn_trim(u);
        /* over TLS only a close_notify ends a close-delimited body (RFC 9112
         * 9.8); a bare FIN is a truncation */
        if (nread == UV_EOF && u->pool->tls_ctx && u->tls.ssl &&
            !(SSL_get_shutdown(u->tls.ssl) & SSL_RECEIVED_SHUTDOWN))
            nread = UV_ECONNRESET;
        fail(u, nread == UV_EOF       ? ST_UPFAIL_EOF
                : nread == UV_ENOBUFS ? ST_UPFAIL_PROTOCOL
                                      : ST_UPFAIL_RESET);
        return;
    }
    if (u->state != ST_UP_ACTIVE) { /* bytes nobody asked for: the connection is unusable */
        st_upconn_close(u);
        return;
    }
    u->rb.filled += (size_t)nread;
    u->ops->on_data(u->owner, u);
}

static void tls_pump(st_upconn_t *u);
static int tls_empty(st_upconn_t *u);

static void start_reading(st_upconn_t *u)
{
    if (u->reading || u->state == ST_UP_CLOSING) return;
    if (uv_read_start((uv_stream_t *)&u->tcp, on_alloc, on_read) == 0) u->reading = 1;
}

void st_upconn_pause(st_upconn_t *u)
{
    if (!u->reading) return;
    uv_read_stop((uv_stream_t *)&u->tcp);
    u->reading = 0;
}

void st_upconn_resume(st_upconn_t *u)
{
    start_reading(u);
    if (u->pool->tls_ctx) tls_pump(u); /* plaintext may wait inside OpenSSL */
}

void st_upconn_trim(st_upconn_t *u)
{
    if (u->rb.base && u->rb.parsed >= u->rb.filled) st_rbuf_put(&u->pool->w->rpool, &u->rb);
}

void st_upconn_set_timeout(st_upconn_t *u, uint64_t ms)
{
    if (u->state == ST_UP_CLOSING) return;
    if (ms)
        arm(u, ms);
    else
        u->deadline = 0;
}

/* ---- TLS upstreams ------------------------------------------------------ */

typedef struct {
    uv_write_t req;
    char *buf;
} tls_out_t;

static void on_tls_out_written(uv_write_t *req, int status)
{
    tls_out_t *o = (tls_out_t *)req;
    (void)status; /* a failed write surfaces as a read error */
    free(o->buf);
    free(o);
}

static int write_now_or_queue(uv_stream_t *s, uv_write_t *req, const uv_buf_t *bufs, unsigned nbufs,
                              uv_write_cb cb);

/* Sends what OpenSSL queued on its own (handshake records, alerts). 0 or -1. */
static int tls_flush(st_upconn_t *u)
{
    char *out;
    long n = st_tls_take_output(&u->tls, &out);
    if (n <= 0) return (int)n;
    tls_out_t *o = malloc(sizeof(*o));
    if (!o) {
        free(out);
        return -1;
    }
    o->buf = out;
    uv_buf_t b = uv_buf_init(out, (unsigned)n);
    int rc = write_now_or_queue((uv_stream_t *)&u->tcp, &o->req, &b, 1, on_tls_out_written);
    if (rc == 0) return 0; /* queued: on_tls_out_written frees both */
    free(out);
    free(o);
    return rc == 1 ? 0 : -1;
}

static void tls_failed(st_upconn_t *u)
{
    char e[256];
    const char *reason = st_tls_failure_reason(&u->tls);
    st_metrics_t *m = &u->pool->w->metrics;
    ST_INC(m->tls_failures[u->pool->tls_side][st_tls_reason_index(reason)]);
    st_warn("msg=\"upstream TLS failed\" upstream=%s pool=%s reason=%s err=\"%s\"",
            u->pool->addr->authority, u->pool->name, reason, st_tls_last_error(e, sizeof(e)));
    fail(u, ST_UPFAIL_TLS);
}

/* Decrypts what OpenSSL holds into rb and hands it to the owner. */
static void tls_pump(st_upconn_t *u)
{
    if (u->pumping || u->state != ST_UP_ACTIVE || !u->reading) return;
    u->pumping = 1;
    while (u->state == ST_UP_ACTIVE && u->reading && st_tls_has_input(&u->tls)) {
        if (!u->rb.base && st_rbuf_get(&u->pool->w->rpool, &u->rb) != 0) break;
        if (u->rb.filled == u->rb.cap) break; /* the owner pauses or fails on a full buffer */
        long n = st_tls_read(&u->tls, u->rb.base + u->rb.filled, u->rb.cap - u->rb.filled);
        if (n == 0) break;
        if (n < 0) {
            u->pumping = 0;
            if (u->tls.failed)
                tls_failed(u);
            else
                fail(u, ST_UPFAIL_EOF); /* close_notify */
            return;
        }
        u->rb.filled += (size_t)n;
        u->got_bytes = 1;
        u->ops->on_data(u->owner, u);
    }
    u->pumping = 0;
}

static void tls_on_read(st_upconn_t *u, const char *data, size_t len)
{
    if (st_tls_feed(&u->tls, data, len) != 0) {
        tls_failed(u);
        return;
    }
    if (u->state == ST_UP_HANDSHAKE) {
        int rc = st_tls_handshake(&u->tls);
        if (tls_flush(u) != 0 || rc < 0) {
            tls_failed(u);
            return;
        }
        if (rc == 0) return;
        if (SSL_session_reused(u->tls.ssl))
            ST_INC(u->pool->w->metrics.tls_resumed[u->pool->tls_side]);
        u->deadline = 0;
        u->state = ST_UP_ACTIVE;
        u->ops->on_ready(u->owner, u);
        if (u->state != ST_UP_ACTIVE) return;
    }
    if (u->state == ST_UP_IDLE) { /* session tickets are fine; application bytes are not */
        char tmp[256];
        long n = st_tls_read(&u->tls, tmp, sizeof(tmp));
        if (n != 0) st_upconn_close(u);
        return;
    }
    tls_pump(u);
    if (u->state == ST_UP_ACTIVE && tls_flush(u) != 0) tls_failed(u);
}

/* uv_try_write, then uv_write for what the socket did not take: 1 when all
 * went out now, 0 when the rest is queued (a socket error, too, reaches cb
 * through uv_write), or a negative libuv error from uv_write. */
static int write_now_or_queue(uv_stream_t *s, uv_write_t *req, const uv_buf_t *bufs, unsigned nbufs,
                              uv_write_cb cb)
{
    enum { MAX_BUFS = 8 };
    if (nbufs > MAX_BUFS) return uv_write(req, s, bufs, nbufs, cb);
    size_t total = 0;
    for (unsigned i = 0; i < nbufs; i++)
        total += bufs[i].len;
    int n = uv_try_write(s, bufs, nbufs);
    if (n < 0) n = 0; /* EAGAIN; an error is left to uv_write, which reports it to cb */
    if ((size_t)n == total) return 1;
    uv_buf_t rest[MAX_BUFS]; /* uv_write copies the array; the bytes stay the caller's */
    unsigned k = 0;
    size_t skip = (size_t)n;
    for (unsigned i = 0; i < nbufs; i++) {
        if (skip >= bufs[i].len) {
            skip -= bufs[i].len;
            continue;
        }
        rest[k++] = uv_buf_init(bufs[i].base + skip, (unsigned)(bufs[i].len - skip));
        skip = 0;
    }
    return uv_write(req, s, rest, k, cb);
}

int st_upconn_write(st_upconn_t *u, uv_write_t *req, const uv_buf_t *bufs, unsigned nbufs,
                    char **owned, uv_write_cb cb)
{
    uv_stream_t *s = (uv_stream_t *)&u->tcp;
    *owned = NULL;
    if (!u->pool->tls_ctx) return write_now_or_queue(s, req, bufs, nbufs, cb);
    if (st_tls_encrypt_iov(&u->tls, bufs, nbufs, u->pool->w->tls_wscratch, ST_TLS_RECORD_MAX) != 0)
        return UV_EPROTO;
    char *out;
    long n = st_tls_take_output(&u->tls, &out);
    if (n < 0) return UV_ENOMEM;
    uv_buf_t b = uv_buf_init(out ? out : "", (unsigned)n);
    int rc = write_now_or_queue(s, req, &b, 1, cb);
    if (rc == 0)
        *owned = out;
    else
        free(out);
    return rc;
}

static void on_connect(uv_connect_t *req, int status)
{
    st_upconn_t *u = req->data;
    if (u->state == ST_UP_CLOSING) return;
    if (status < 0) {
        st_debug("msg=\"upstream connect failed\" upstream=%s err=%s", u->pool->addr->authority,
                 uv_err_name(status));
        fail(u, ST_UPFAIL_CONNECT);
        return;
    }
    uv_tcp_nodelay(&u->tcp, 1);
    if (u->pool->tls_ctx) { /* the connect timeout also covers the handshake */
        st_pool_t *p = u->pool;
        if (st_tls_connect(&u->tls, p->tls_ctx, p->addr->host, p->tls_session) != 0 ||
            tls_flush(u) != 0) {
            tls_failed(u);
            return;
        }
        u->state = ST_UP_HANDSHAKE;
        start_reading(u);
        return;
    }
    u->deadline = 0;
    u->state = ST_UP_ACTIVE;
    start_reading(u);
    u->ops->on_ready(u->owner, u);
}

int st_pool_acquire(st_pool_t *p, void *owner, const st_upstream_ops_t *ops, st_upconn_t **out)
{
    while (!st_list_empty(&p->idle)) {
        st_upconn_t *u = st_list_entry(p->idle.prev, st_upconn_t, link); /* most recent */
        if (p->tls_ctx && !tls_empty(u)) { /* bytes arrived while idle: unusable */
            st_upconn_close(u);
            continue;
        }
        st_list_remove(&u->link);
        p->nidle--;
        u->deadline = 0;
        u->state = ST_UP_ACTIVE;
        u->owner = owner;
        u->ops = ops;
        u->reused = 1;
        u->got_bytes = 0;
        start_reading(u);
        *out = u;
        return 1;
    }
    return st_pool_connect(p, owner, ops, out);
}

int st_pool_connect(st_pool_t *p, void *owner, const st_upstream_ops_t *ops, st_upconn_t **out)
{
    if (p->salen == 0) { /* not resolvable yet: try again in the background */
        st_pool_resolve(p);
        return -1;
    }
    if (p->max_conns && p->nconns >= p->max_conns) return -1;
    st_upconn_t *u = calloc(1, sizeof(*u));
    if (!u) return -1;
    u->pool = p;
    u->owner = owner;
    u->ops = ops;
    u->state = ST_UP_CONNECTING;
    st_list_init(&u->link);
    uv_tcp_init(&p->w->loop, &u->tcp);
    uv_timer_init(&p->w->loop, &u->timer);
    u->tcp.data = u->timer.data = u->creq.data = u;
    u->handles = 2;
    p->nconns++;
    ST_INC(p->w->metrics.upstream_connects[p->tls_side]);
    int rc = uv_tcp_connect(&u->creq, &u->tcp, (const struct sockaddr *)&p->sa, on_connect);
    if (rc != 0) {
        /* synchronous failure: report it asynchronously like a refused connect */
        st_debug("msg=\"upstream connect failed\" upstream=%s err=%s", p->addr->authority,
                 uv_err_name(rc));
        arm(u, 0);
    } else {
        arm(u, p->connect_timeout_ms);
    }
    *out = u;
    return 0;
}

/* 1 when a TLS connection holds no application data inside OpenSSL (what a
 * record past the response's framing would leave): a pooled connection must
 * be empty, or the next client would read this one's bytes. */
static int tls_empty(st_upconn_t *u)
{
    SSL *ssl = u->tls.ssl;
    /* SSL_has_pending also sees a partial record already moved into OpenSSL's
     * record buffer, which SSL_pending does not count */
    if (!SSL_has_pending(ssl) && BIO_ctrl_pending(u->tls.rbio) == 0) return 1;
    char probe;
    if (st_tls_read(&u->tls, &probe, 1) != 0) return 0; /* data, close_notify or error */
    /* session tickets decrypt to nothing and leave both buffers empty; the
     * head of a surplus record does not */
    return !SSL_has_pending(ssl) && BIO_ctrl_pending(u->tls.rbio) == 0;
}

void st_upconn_release(st_upconn_t *u, int reusable)
{
    st_pool_t *p = u->pool;
    if (reusable && p->tls_ctx && u->state == ST_UP_ACTIVE && !tls_empty(u)) reusable = 0;
    if (u->state != ST_UP_ACTIVE || !reusable || p->nidle >= p->max_idle || p->w->stopping ||
        (u->rb.base && u->rb.parsed < u->rb.filled)) {
        st_upconn_close(u);
        return;
    }
    if (p->tls_ctx) { /* the newest session (TLS 1.3 tickets come after the handshake) */
        SSL_SESSION *sess = SSL_get1_session(u->tls.ssl);
        if (sess) {
            if (p->tls_session) SSL_SESSION_free(p->tls_session);
            p->tls_session = sess;
        }
    }
    u->owner = NULL;
    u->ops = NULL;
    u->state = ST_UP_IDLE;
    u->rb.parsed = u->rb.filled = 0;
    st_rbuf_put(&p->w->rpool, &u->rb);
    st_list_push(&p->idle, &u->link);
    p->nidle++;
    start_reading(u);
    arm(u, p->idle_timeout_ms);
}
