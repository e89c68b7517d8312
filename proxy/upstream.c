/* upstream: connection pool and connection lifetimes (see upstream.h). */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker.h"

_Static_assert(ST_RESOLVE_COUNT == 3, "st_metrics_t.upstream_resolves has 3 results");

/* After each re-resolution: counted; when the addresses changed, idle
 * connections to an address the name no longer has are closed (busy ones
 * are closed when released). */
static void on_pool_resolved(st_addrset_t *s, enum st_resolve_result result, void *arg)
{
    st_pool_t *p = arg;
    if (result == ST_RESOLVE_CANCELED) return;
    ST_INC(p->w->metrics.upstream_resolves[p->tls_side][result]);
    if (result != ST_RESOLVE_CHANGED) return;
    st_list_t *n = p->idle.next;
    while (n != &p->idle) {
        st_upconn_t *u = st_list_entry(n, st_upconn_t, link);
        n = n->next;
        if (st_addrset_find(s, &u->peer) < 0)
            st_upconn_close(u);
        else
            u->gen = s->gen;
    }
}

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
    st_addrset_init(&p->addrs, &w->loop, addr, name, on_pool_resolved, p);
}

void st_pool_resolve(st_pool_t *p, uint64_t min_gap_ms)
{
    if (p->w->stopping || p->w->draining) return;
    st_addrset_refresh(&p->addrs, min_gap_ms);
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
    if (!u->redialing) /* else the socket is closing already: on_redial_closed counts it */
        uv_close(&u->sock.handle, on_handle_closed);
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
static void connect_failed(st_upconn_t *u, int err);

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
    if (u->state == ST_UP_CONNECTING) { /* timed out, or failed at once (dial_err) */
        connect_failed(u, u->dial_err ? u->dial_err : UV_ETIMEDOUT);
        return;
    }
    fail(u, u->state == ST_UP_HANDSHAKE ? ST_UPFAIL_CONNECT : ST_UPFAIL_TIMEOUT);
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
    if (uv_read_start(&u->sock.stream, on_alloc, on_read) == 0) u->reading = 1;
}

void st_upconn_pause(st_upconn_t *u)
{
    if (!u->reading) return;
    uv_read_stop(&u->sock.stream);
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
    int rc = write_now_or_queue(&u->sock.stream, &o->req, &b, 1, on_tls_out_written);
    if (rc == 0) return 0; /* queued: on_tls_out_written frees both */
    free(out);
    free(o);
    return rc == 1 ? 0 : -1;
}

static void tls_failed(st_upconn_t *u)
{
    char e[256];
    enum st_tls_fail reason = st_tls_failure_reason(&u->tls);
    st_metrics_t *m = &u->pool->w->metrics;
    ST_INC(m->tls_failures[u->pool->tls_side][reason]);
    st_warn("msg=\"upstream TLS failed\" upstream=%s pool=%s reason=%s err=\"%s\"",
            u->pool->addr->authority, u->pool->name, st_tls_fail_labels[reason],
            st_tls_last_error(e, sizeof(e)));
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
    uv_stream_t *s = &u->sock.stream;
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

/* One line per pool and second at most when every address failed (a dead
 * upstream under load would otherwise log each request twice). */
static void log_unreachable(st_upconn_t *u)
{
    st_pool_t *p = u->pool;
    uint64_t now = uv_now(&p->w->loop);
    if (p->unreachable_log_ms && now - p->unreachable_log_ms < 1000) {
        p->unreachable_quiet++;
        return;
    }
    char list[1024];
    size_t used = 0;
    list[0] = '\0';
    for (int i = 0; i < p->addrs.n && used + 1 < sizeof(list); i++) {
        char one[128];
        st_sockaddr_format(&p->addrs.a[i], one, sizeof(one));
        int e = u->errs[i];
        int w = snprintf(list + used, sizeof(list) - used, "%s%s %s%s%s", i ? ", " : "", one,
                         e ? uv_err_name(e) : "not tried", e ? ": " : "", e ? uv_strerror(e) : "");
        if (w < 0) break;
        used += (size_t)w < sizeof(list) - used ? (size_t)w : sizeof(list) - used - 1;
    }
    st_warn("msg=\"upstream unreachable: every address failed\" pool=%s upstream=%s tried=\"%s\" "
            "unlogged_since=%u",
            p->name, p->addr->authority, list, p->unreachable_quiet);
    p->unreachable_log_ms = now;
    p->unreachable_quiet = 0;
}

static void on_connect(uv_connect_t *req, int status);

/* Starts connecting to pool->addrs.a[u->idx] with a fresh socket. */
static void dial(st_upconn_t *u)
{
    st_pool_t *p = u->pool;
    u->tries++;
    u->dial_err = 0;
    u->peer = p->addrs.a[u->idx];
    u->creq.data = u;
    ST_INC(p->w->metrics.upstream_connects[p->tls_side]);
    int rc = st_addrset_dial(&p->addrs, u->idx, &u->sock, u, &u->creq, on_connect);
    if (rc != 0) {
        u->dial_err = rc; /* reported by the timer, like a refused connect */
        arm(u, 0);
    } else {
        arm(u, p->connect_timeout_ms);
    }
}

static void on_redial_closed(uv_handle_t *h)
{
    st_upconn_t *u = h->data;
    u->redialing = 0;
    if (u->state == ST_UP_CLOSING) { /* the owner gave up meanwhile */
        on_handle_closed(h);
        return;
    }
    st_pool_t *p = u->pool;
    if (u->gen != p->addrs.gen) { /* re-resolved meanwhile: go on from its preferred address */
        u->gen = p->addrs.gen;
        u->idx = p->addrs.cur;
        memset(u->errs, 0, sizeof(u->errs));
    } else {
        u->idx = (u->idx + 1) % p->addrs.n;
    }
    dial(u);
}

/* A connect to the current address failed: the next address, or, when each
 * was tried once, the owner's on_fail (and a re-resolution: the name may
 * point elsewhere by now). */
static void connect_failed(st_upconn_t *u, int err)
{
    st_pool_t *p = u->pool;
    char where[128];
    st_sockaddr_format(&u->peer, where, sizeof(where));
    st_debug("msg=\"upstream connect failed\" pool=%s upstream=%s addr=%s err=%s", p->name,
             p->addr->authority, where, uv_err_name(err));
    if (u->idx < ST_ADDR_MAX) u->errs[u->idx] = err;
    st_addrset_failed(&p->addrs, u->gen, u->idx);
    if (u->tries < p->addrs.n && !p->w->stopping) {
        ST_INC(p->w->metrics.upstream_failovers[p->tls_side]);
        u->deadline = 0;
        u->redialing = 1;
        uv_close(&u->sock.handle, on_redial_closed);
        return;
    }
    log_unreachable(u);
    st_pool_resolve(p, ST_RESOLVE_RETRY_MS);
    fail(u, ST_UPFAIL_CONNECT);
}

static void on_connect(uv_connect_t *req, int status)
{
    st_upconn_t *u = req->data;
    if (u->state == ST_UP_CLOSING || u->redialing || status == UV_ECANCELED) return;
    if (status < 0) {
        connect_failed(u, status);
        return;
    }
    st_addrset_worked(&u->pool->addrs, u->gen, u->idx);
    if (u->sock.handle.type == UV_TCP) uv_tcp_nodelay(&u->sock.tcp, 1);
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
    if (p->addrs.n == 0) { /* not resolvable yet: try again in the background */
        st_pool_resolve(p, ST_RESOLVE_RETRY_MS);
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
    uv_timer_init(&p->w->loop, &u->timer);
    u->timer.data = u;
    u->handles = 2; /* the timer and the socket dial() initialises */
    p->nconns++;
    u->gen = p->addrs.gen;
    u->idx = p->addrs.cur;
    dial(u);
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
    if (u->gen != p->addrs.gen) { /* re-resolved since: keep it only if the name still has it */
        if (st_addrset_find(&p->addrs, &u->peer) < 0)
            reusable = 0;
        else
            u->gen = p->addrs.gen;
    }
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
