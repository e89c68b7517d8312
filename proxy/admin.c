/*
 * admin: the admin listener (GET /healthz, /readyz, /metrics) and the
 * readiness probe of the primary, both on the main thread's loop, so the
 * client path never waits on them. One request per connection.
 */
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addrset.h"
#include "app.h"
#include "list.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"

struct st_admin {
    st_listener_t listener;
    uv_timer_t probe_timer;
    st_app_t *app;
    int closing;
    int handles;          /* open handles of this struct; freed when 0 and no connection is left */
    st_list_t conns;      /* open admin_conn_t */
    struct probe *probe;  /* the readiness probe in flight, or NULL */
    st_addrset_t primary; /* the primary's addresses, re-resolved on this loop */
};

typedef struct {
    uv_tcp_t tcp;
    st_list_t link;   /* in admin->conns */
    uv_timer_t timer; /* the whole exchange must end within 5 s */
    uv_write_t wreq;
    st_admin_t *admin;
    llhttp_t parser;
    char buf[8192];
    size_t len;
    char path[256];
    size_t path_len;
    int method;
    int answered;
    int handles;
    char *out; /* response bytes (heap) */
} admin_conn_t;

typedef struct probe {
    st_sock_t sock;
    uv_connect_t req;
    uv_timer_t timer;
    st_admin_t *admin; /* NULL once the admin is stopping */
    int handles;
    unsigned gen; /* admin->primary.a[idx] at that generation is being tried */
    int idx;
    int tries; /* addresses tried by this round of the probe */
} probe_t;

static void admin_maybe_free(st_admin_t *a)
{
    if (a->closing && a->handles == 0 && st_list_empty(&a->conns) && !a->primary.resolving) free(a);
}

static void conn_closed(uv_handle_t *h)
{
    admin_conn_t *c = h->data;
    if (--c->handles) return;
    st_admin_t *a = c->admin;
    st_list_remove(&c->link);
    free(c->out);
    free(c);
    admin_maybe_free(a);
}

static void conn_close(admin_conn_t *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
    uv_close((uv_handle_t *)&c->timer, conn_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    conn_close(req->data);
}

static void respond(admin_conn_t *c, int status, const char *ctype, const char *body, size_t blen)
{
    if (c->answered) return;
    c->answered = 1;
    const char *reason = status == 200   ? "OK"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 503 ? "Service Unavailable"
                                         : "Bad Request";
    size_t cap = blen + 256;
    c->out = malloc(cap);
    if (!c->out) {
        conn_close(c);
        return;
    }
    int n = snprintf(
        c->out, cap,
        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
        status, reason, ctype, blen);
    memcpy(c->out + n, body, blen);
    uv_buf_t b = uv_buf_init(c->out, (unsigned)(n + blen));
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) conn_close(c);
}

static void serve(admin_conn_t *c)
{
    st_app_t *app = c->admin->app;
    if (c->method != HTTP_GET && c->method != HTTP_HEAD) {
        respond(c, 405, "text/plain", "method not allowed\n", 19);
        return;
    }
    c->path[strcspn(c->path, "?")] = '\0';
    if (strcmp(c->path, "/healthz") == 0) {
        respond(c, 200, "text/plain", "ok\n", 3);
    } else if (strcmp(c->path, "/readyz") == 0) {
        if (atomic_load(&app->draining))
            respond(c, 503, "text/plain", "draining\n", 9);
        else if (!atomic_load(&app->primary_ok))
            respond(c, 503, "text/plain", "primary unreachable\n", 20);
        else
            respond(c, 200, "text/plain", "ready\n", 6);
    } else if (strcmp(c->path, "/metrics") == 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (!f) {
            respond(c, 503, "text/plain", "out of memory\n", 14);
            return;
        }
        st_metrics_t *m[256];
        size_t nm = 0;
        for (int i = 0; i < app->nworkers && i < 256; i++)
            m[nm++] = &app->workers[i].metrics;
        st_metrics_render(m, nm, f);
        fprintf(f,
                "# HELP shadowtee_ready 1 when /readyz answers 200.\n# TYPE shadowtee_ready "
                "gauge\nshadowtee_ready %d\n",
                !atomic_load(&app->draining) && atomic_load(&app->primary_ok));
        /* the comparator threads' statistics stay readable while they drain;
         * each thread unpublishes them under its lock before freeing them */
        if (app->ncomparators) st_cmpthread_render(app->comparators, (size_t)app->ncomparators, f);
        st_cmpthread_render_mesh(app->cfg, m, nm, app->comparators, (size_t)app->ncomparators, f);
        fclose(f);
        respond(c, 200, "text/plain; version=0.0.4", text, len);
        free(text);
    } else {
        respond(c, 404, "text/plain", "not found\n", 10);
    }
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    admin_conn_t *c = p->data;
    if (c->path_len + len >= sizeof(c->path)) return HPE_USER;
    memcpy(c->path + c->path_len, at, len);
    c->path_len += len;
    c->path[c->path_len] = '\0';
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    admin_conn_t *c = p->data;
    c->method = llhttp_get_method(p);
    serve(c);
    return HPE_PAUSED;
}

static const llhttp_settings_t admin_settings = {.on_url = on_url,
                                                 .on_message_complete = on_message_complete};

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    admin_conn_t *c = h->data;
    (void)hint;
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    admin_conn_t *c = s->data;
    (void)buf;
    if (nread < 0) {
        if (!c->answered) conn_close(c);
        return;
    }
    if (nread == 0 || c->answered) return;
    llhttp_errno_t err = llhttp_execute(&c->parser, c->buf + c->len, (size_t)nread);
    c->len += (size_t)nread;
    if (err != HPE_OK && err != HPE_PAUSED)
        respond(c, 400, "text/plain", "bad request\n", 12);
    else if (!c->answered && c->len == sizeof(c->buf))
        respond(c, 400, "text/plain", "request too large\n", 18);
}

static void on_conn_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_accept(st_listener_t *l, int fd)
{
    st_admin_t *a = l->data;
    uv_loop_t *loop = a->app->loop;
    admin_conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->admin = a;
    st_list_push(&a->conns, &c->link);
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    llhttp_init(&c->parser, HTTP_REQUEST, &admin_settings);
    c->parser.data = c;
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_conn_timeout, 5000, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- readiness probe: a connect to the primary every second ------------- */
/* Each round tries the primary's addresses in turn from the one that
 * answered last, like the workers' pools: ready when one accepts. */

static void probe_closed(uv_handle_t *h)
{
    probe_t *p = h->data;
    if (--p->handles == 0) free(p);
}

static void probe_start(st_admin_t *a, int idx, int tries);

static void probe_end(probe_t *p, int status)
{
    if (uv_is_closing(&p->sock.handle)) return;
    st_admin_t *a = p->admin;
    uv_close((uv_handle_t *)&p->timer, probe_closed);
    uv_close(&p->sock.handle, probe_closed);
    if (!a) return; /* the admin stopped: only close */
    a->probe = NULL;
    st_addrset_t *set = &a->primary;
    if (status == 0) {
        st_addrset_worked(set, p->gen, p->idx);
    } else {
        st_addrset_failed(set, p->gen, p->idx);
        if (p->tries < set->n) { /* the next address, now */
            probe_start(a, p->gen == set->gen ? (p->idx + 1) % set->n : set->cur, p->tries + 1);
            return;
        }
        st_addrset_refresh(set, ST_RESOLVE_RETRY_MS); /* the name may point elsewhere by now */
    }
    int ok = status == 0;
    int was = atomic_exchange(&a->app->primary_ok, ok);
    if (was != ok)
        st_info("msg=\"primary %s\" primary=%s%s%s", ok ? "reachable" : "unreachable",
                a->app->cfg->primary.authority, ok ? "" : " err=", ok ? "" : uv_err_name(status));
}

static void on_probe_connect(uv_connect_t *req, int status)
{
    if (status == UV_ECANCELED) return;
    probe_end(req->data, status);
}

static void on_probe_timeout(uv_timer_t *t)
{
    probe_end(t->data, UV_ETIMEDOUT);
}

static void probe_start(st_admin_t *a, int idx, int tries)
{
    probe_t *p = calloc(1, sizeof(*p));
    if (!p) return;
    p->admin = a;
    p->gen = a->primary.gen;
    p->idx = idx;
    p->tries = tries;
    a->probe = p;
    uv_timer_init(a->app->loop, &p->timer);
    p->timer.data = p->req.data = p;
    p->handles = 2;
    int rc = st_addrset_dial(&a->primary, idx, &p->sock, p, &p->req, on_probe_connect);
    if (rc != 0) {
        probe_end(p, rc);
        return;
    }
    uv_timer_start(&p->timer, on_probe_timeout, 1000, 0);
}

static void on_probe_tick(uv_timer_t *t)
{
    st_admin_t *a = t->data;
    if (a->probe) return; /* the previous probe has not ended yet */
    uint64_t every = a->app->cfg->resolve_interval_ms;
    if (every) st_addrset_refresh(&a->primary, every);
    probe_start(a, a->primary.cur, 1);
}

static void on_primary_resolved(st_addrset_t *s, enum st_resolve_result result, void *arg)
{
    st_admin_t *a = arg;
    (void)s;
    (void)result;
    admin_maybe_free(a); /* a resolution in flight holds a stopped admin */
}

static void admin_closed(uv_handle_t *h);

static void listener_closed(st_listener_t *l)
{
    st_admin_t *a = l->data;
    a->handles--;
    admin_maybe_free(a);
}

st_admin_t *st_admin_start(st_app_t *app, const int *fds, int n)
{
    st_admin_t *a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    a->app = app;
    st_list_init(&a->conns);
    st_addrset_init(&a->primary, app->loop, &app->cfg->primary, "probe", on_primary_resolved, a);
    a->primary.quiet = 1; /* the workers' pools log the same changes */
    uv_timer_init(app->loop, &a->probe_timer);
    a->probe_timer.data = a;
    a->listener.data = a;
    a->listener.name = "admin";
    a->listener.on_accept = on_accept;
    a->listener.on_closed = listener_closed;
    int fresh = -1, rc = 0;
    if (n == 0) {
        fresh = st_listen_socket((const struct sockaddr *)&app->cfg->admin.addrs[0].sa, 0, 128);
        rc = fresh < 0 ? fresh : 0;
        fds = &fresh;
        n = 1;
    }
    if (rc == 0) rc = st_listener_start(&a->listener, app->loop, fds, n);
    if (rc != 0) {
        st_error("msg=\"cannot listen on admin address\" addr=%s err=\"%s\"",
                 app->cfg->admin.authority, uv_strerror(rc));
        a->closing = 1;
        st_listener_close(&a->listener);
        uv_close((uv_handle_t *)&a->probe_timer, NULL);
        return NULL; /* the caller exits; the loop is not run again */
    }
    uv_timer_start(&a->probe_timer, on_probe_tick, 0, 1000);
    return a;
}

int st_admin_fds(const st_admin_t *a, int *fds, int max)
{
    int n = 0;
    for (int i = 0; a->listener.open && i < a->listener.nsocks && n < max; i++)
        fds[n++] = a->listener.socks[i].fd;
    return n;
}

void st_admin_unlisten(st_admin_t *a)
{
    if (!a->listener.open) return;
    a->handles++; /* listener_closed takes it back */
    st_listener_close(&a->listener);
}

static void admin_closed(uv_handle_t *h)
{
    st_admin_t *a = h->data;
    a->handles--;
    admin_maybe_free(a); /* after the last of its handles and connections */
}

void st_admin_stop(st_admin_t *a)
{
    if (a->closing) return;
    a->closing = 1;
    if (a->probe) { /* detach and end the probe in flight */
        probe_t *p = a->probe;
        a->probe = NULL;
        p->admin = NULL;
        probe_end(p, UV_ECANCELED);
    }
    st_addrset_cancel(&a->primary);
    for (st_list_t *n = a->conns.next; n != &a->conns; n = n->next)
        conn_close(st_list_entry(n, admin_conn_t, link));
    a->handles += 1 + (a->listener.open ? 1 : 0); /* + an unlisten still closing */
    uv_close((uv_handle_t *)&a->probe_timer, admin_closed);
    st_listener_close(&a->listener); /* listener_closed when its handles are */
}
