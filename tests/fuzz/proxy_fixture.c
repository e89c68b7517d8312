/* proxy_fixture: a real worker between fake upstreams, in-process (see .h). */
#include "proxy_fixture.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "../../proxy/client.h"
#include "../../proxy/config.h"
#include "../../proxy/log.h"
#include "../../proxy/worker.h"

/* ---- strict parse of a byte stream -------------------------------------- */

typedef struct {
    fx_msg_t *out;
    size_t max, n, done;
    const int *heads; /* responses: per final response, the request was HEAD */
    size_t nheads;
    size_t finals; /* final responses begun */
    int is_response;
    /* requests: the current message's Upgrade headers, for the proxy's
     * policy (only websocket upgrades; see upgrade_allowed) */
    int in_upgrade, upgrade_bad;
    size_t upgrade_hdrs;
    char field[16];
    size_t field_len;
    char upgrade[8192];
    size_t upgrade_len;
} parse_ctx_t;

static fx_msg_t *cur_msg(llhttp_t *p)
{
    parse_ctx_t *c = p->data;
    return c->n > 0 && c->n <= c->max ? &c->out[c->n - 1] : NULL;
}

static int pm_begin(llhttp_t *p)
{
    parse_ctx_t *c = p->data;
    if (c->n < c->max) memset(&c->out[c->n], 0, sizeof(fx_msg_t));
    c->n++;
    return 0;
}

static int pm_field(llhttp_t *p, const char *at, size_t len)
{
    parse_ctx_t *c = p->data;
    for (size_t i = 0; i < len; i++, c->field_len++)
        if (c->field_len < sizeof(c->field))
            c->field[c->field_len] = (char)tolower((unsigned char)at[i]);
    return 0;
}

static int pm_field_done(llhttp_t *p)
{
    parse_ctx_t *c = p->data;
    c->in_upgrade = c->field_len == 7 && memcmp(c->field, "upgrade", 7) == 0;
    c->field_len = 0;
    if (!c->in_upgrade) return 0;
    if (c->upgrade_hdrs++ && c->upgrade_len < sizeof(c->upgrade)) /* one line per header */
        c->upgrade[c->upgrade_len++] = '\n';
    return 0;
}

static int pm_value(llhttp_t *p, const char *at, size_t len)
{
    parse_ctx_t *c = p->data;
    if (!c->in_upgrade) return 0;
    if (len > sizeof(c->upgrade) - c->upgrade_len) {
        c->upgrade_bad = 1; /* more than the proxy's head limit holds anyway */
        return 0;
    }
    memcpy(c->upgrade + c->upgrade_len, at, len);
    c->upgrade_len += len;
    return 0;
}

static int pm_value_done(llhttp_t *p)
{
    parse_ctx_t *c = p->data;
    c->in_upgrade = 0;
    return 0;
}

static int tchar(int ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* The proxy's upgrade policy with its default --allow-upgrade websocket,
 * written apart from proxy/reqcheck.c: every Upgrade header holds at least
 * one protocol, each "websocket" or "websocket/<token>" (any case),
 * separated by commas, spaces or tabs. Otherwise the proxy forwards the
 * request without its Upgrade and the bytes after it stay HTTP. */
static int upgrade_allowed(const parse_ctx_t *c)
{
    if (c->upgrade_bad || c->upgrade_hdrs == 0) return 0;
    size_t i = 0, pieces = 0;
    const char *v = c->upgrade;
    for (;;) { /* one header value per '\n'-separated line */
        size_t in_line = 0;
        while (i < c->upgrade_len && v[i] != '\n') {
            if (v[i] == ',' || v[i] == ' ' || v[i] == '\t') {
                i++;
                continue;
            }
            size_t t = i;
            while (i < c->upgrade_len && tchar((unsigned char)v[i]))
                i++;
            if (i - t != 9 || strncasecmp(v + t, "websocket", 9) != 0) return 0;
            if (i < c->upgrade_len && v[i] == '/') {
                size_t ver = ++i;
                while (i < c->upgrade_len && tchar((unsigned char)v[i]))
                    i++;
                if (i == ver) return 0;
            }
            if (i < c->upgrade_len && v[i] != ',' && v[i] != ' ' && v[i] != '\t' && v[i] != '\n')
                return 0;
            in_line++;
        }
        if (in_line == 0) return 0;
        pieces += in_line;
        if (i >= c->upgrade_len) break;
        i++; /* the '\n' */
    }
    return pieces > 0;
}

static int pm_url(llhttp_t *p, const char *at, size_t len)
{
    fx_msg_t *m = cur_msg(p);
    if (!m) return 0;
    size_t room = sizeof(m->url) - 1 - m->url_len;
    size_t k = len < room ? len : room;
    memcpy(m->url + m->url_len, at, k);
    m->url_len += k;
    return 0;
}

static int pm_headers_complete(llhttp_t *p)
{
    parse_ctx_t *c = p->data;
    fx_msg_t *m = cur_msg(p);
    if (m) {
        m->method = llhttp_get_method(p);
        m->status = llhttp_get_status_code(p);
        m->upgrade = llhttp_get_upgrade(p);
        m->framed = (p->flags & (F_CONTENT_LENGTH | F_CHUNKED)) != 0;
        if (!c->is_response && m->upgrade && m->method != HTTP_CONNECT && !upgrade_allowed(c))
            m->upgrade = p->upgrade = 0; /* as the proxy forwards it: a plain request */
    }
    c->in_upgrade = c->upgrade_bad = 0;
    c->upgrade_hdrs = c->field_len = c->upgrade_len = 0;
    if (!c->is_response) return 0;
    int status = llhttp_get_status_code(p);
    /* RFC 9112 6.3: a 1xx ends at its empty line whatever its headers say
     * (llhttp would read a Content-Length body after it), as does any
     * response to HEAD and a 204 or 304 */
    if (status >= 100 && status < 200 && status != 101) return 1;
    size_t i = c->finals++;
    return (i < c->nheads && c->heads[i]) || status == 204 || status == 304 ? 1 : 0;
}

static int pm_body(llhttp_t *p, const char *at, size_t len)
{
    fx_msg_t *m = cur_msg(p);
    if (!m) return 0;
    if (m->body_len + len > FX_BODY_CAP) len = FX_BODY_CAP - m->body_len;
    if (!m->body) m->body = malloc(FX_BODY_CAP);
    memcpy(m->body + m->body_len, at, len);
    m->body_len += len;
    return 0;
}

static int pm_complete(llhttp_t *p)
{
    parse_ctx_t *c = p->data;
    c->done = c->n;
    return 0;
}

size_t fx_parse(int type, const int *heads, size_t nheads, const unsigned char *p, size_t len,
                int at_eof, fx_msg_t *out, size_t max, int *err_out)
{
    static llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = pm_begin;
    s.on_url = pm_url;
    s.on_header_field = pm_field;
    s.on_header_field_complete = pm_field_done;
    s.on_header_value = pm_value;
    s.on_header_value_complete = pm_value_done;
    s.on_headers_complete = pm_headers_complete;
    s.on_body = pm_body;
    s.on_message_complete = pm_complete;
    parse_ctx_t c = {.out = out,
                     .max = max,
                     .is_response = type == HTTP_RESPONSE,
                     .heads = heads,
                     .nheads = nheads};
    llhttp_t parser;
    llhttp_init(&parser, (llhttp_type_t)type, &s);
    parser.data = &c;
    llhttp_errno_t err = llhttp_execute(&parser, (const char *)p, len);
    if (err == HPE_OK && at_eof) err = llhttp_finish(&parser);
    *err_out = err;
    size_t n = c.done < max ? c.done : max;
    for (size_t i = n; i < (c.n < max ? c.n : max); i++) { /* incomplete ones */
        free(out[i].body);
        out[i].body = NULL;
    }
    return n;
}

void fx_msgs_free(fx_msg_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].body);
}

/* ---- fake upstreams ------------------------------------------------------ */

typedef struct fake_srv {
    uv_tcp_t listener;
    st_list_t conns;    /* fake_conn_t */
    fx_upstream_t *rec; /* this exchange's record */
    int nconns;
} fake_srv_t;

typedef struct {
    uv_tcp_t tcp;
    fake_srv_t *srv;
    st_list_t link;
    llhttp_t parser;
    fx_req_t cur;
    char hname[32];
    size_t hname_len;
    int in_value, mirror_hdr;
    int upgraded, answered, closing;
    char rbuf[65536];
} fake_conn_t;

static const char OK_BODY[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
static const char OK_HEAD[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";

static void fc_closed(uv_handle_t *h)
{
    fake_conn_t *fc = h->data;
    fc->srv->nconns--;
    st_list_remove(&fc->link);
    free(fc->cur.body);
    free(fc);
}

/* Closes with a reset (SO_LINGER 0): no TIME_WAIT is left behind, so a long
 * run does not fill the loopback port space. */
static void fc_close(fake_conn_t *fc)
{
    if (fc->closing) return;
    fc->closing = 1;
    uv_os_fd_t fd;
    struct linger lg = {1, 0};
    if (uv_fileno((uv_handle_t *)&fc->tcp, &fd) == 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    uv_close((uv_handle_t *)&fc->tcp, fc_closed);
}

static void on_fc_written(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void on_fc_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    free(req);
}

static void fc_write(fake_conn_t *fc, const void *p, size_t n)
{
    uv_write_t *req = malloc(sizeof(*req));
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n); /* static, or the input: lives past the run */
    if (uv_write(req, (uv_stream_t *)&fc->tcp, &b, 1, on_fc_written) != 0) free(req);
}

static int fc_begin(llhttp_t *p)
{
    fake_conn_t *fc = p->data;
    free(fc->cur.body);
    memset(&fc->cur, 0, sizeof(fc->cur));
    fc->hname_len = 0;
    fc->in_value = 0;
    fc->mirror_hdr = 0;
    return 0;
}

static int fc_url(llhttp_t *p, const char *at, size_t len)
{
    fake_conn_t *fc = p->data;
    size_t room = sizeof(fc->cur.url) - 1 - fc->cur.url_len;
    size_t k = len < room ? len : room;
    memcpy(fc->cur.url + fc->cur.url_len, at, k);
    fc->cur.url_len += k;
    return 0;
}

static int fc_field(llhttp_t *p, const char *at, size_t len)
{
    fake_conn_t *fc = p->data;
    if (fc->in_value) fc->hname_len = 0;
    fc->in_value = 0;
    size_t room = sizeof(fc->hname) - fc->hname_len;
    size_t k = len < room ? len : room;
    memcpy(fc->hname + fc->hname_len, at, k);
    fc->hname_len += k;
    return 0;
}

static int fc_value(llhttp_t *p, const char *at, size_t len)
{
    fake_conn_t *fc = p->data;
    (void)at;
    (void)len;
    if (!fc->in_value && fc->hname_len == 18 &&
        strncasecmp(fc->hname, "x-shadowtee-mirror", 18) == 0)
        fc->mirror_hdr = 1;
    fc->in_value = 1;
    return 0;
}

static int fc_body(llhttp_t *p, const char *at, size_t len)
{
    fake_conn_t *fc = p->data;
    if (fc->cur.body_len + len > FX_BODY_CAP) len = FX_BODY_CAP - fc->cur.body_len;
    if (!fc->cur.body) fc->cur.body = malloc(FX_BODY_CAP);
    memcpy(fc->cur.body + fc->cur.body_len, at, len);
    fc->cur.body_len += len;
    return 0;
}

static int fc_complete(llhttp_t *p)
{
    fake_conn_t *fc = p->data;
    fx_upstream_t *rec = fc->srv->rec;
    fc->cur.method = llhttp_get_method(p);
    fc->cur.mirror = fc->mirror_hdr;
    fc->cur.upgrade = llhttp_get_upgrade(p);
    if (rec && rec->nreqs < FX_MAX_REQS) {
        rec->reqs[rec->nreqs++] = fc->cur;
        memset(&fc->cur, 0, sizeof(fc->cur)); /* the body moved to the record */
    }
    if (rec && rec->answer) {
        if (!fc->answered) fc_write(fc, rec->answer, rec->answer_len);
        fc->answered = 1;
        if (rec->answer_close) {
            uv_shutdown_t *req = malloc(sizeof(*req));
            if (uv_shutdown(req, (uv_stream_t *)&fc->tcp, on_fc_shutdown) != 0) free(req);
        }
    } else if (llhttp_get_method(p) == HTTP_HEAD) {
        fc_write(fc, OK_HEAD, sizeof(OK_HEAD) - 1);
    } else {
        fc_write(fc, OK_BODY, sizeof(OK_BODY) - 1);
    }
    return 0;
}

static llhttp_settings_t fc_settings;

static void fc_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    fake_conn_t *fc = h->data;
    (void)hint;
    *buf = uv_buf_init(fc->rbuf, sizeof(fc->rbuf));
}

static void fc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    fake_conn_t *fc = s->data;
    if (n < 0) {
        fc_close(fc);
        return;
    }
    if (n == 0 || fc->upgraded) return; /* a tunnel's raw bytes are not HTTP */
    llhttp_errno_t err = llhttp_execute(&fc->parser, buf->base, (size_t)n);
    if (err == HPE_PAUSED_UPGRADE) {
        fc->upgraded = 1;
    } else if (err != HPE_OK) {
        fprintf(stderr, "fake upstream: invalid HTTP from the proxy: %s (%s)\n",
                llhttp_errno_name(err), llhttp_get_error_reason(&fc->parser));
        if (fc->srv->rec) fc->srv->rec->bad = 1;
        fc_close(fc);
    }
}

static void fake_reset_all(fake_srv_t *srv)
{
    for (st_list_t *n = srv->conns.next; n != &srv->conns; n = n->next)
        fc_close(st_list_entry(n, fake_conn_t, link));
}

static void on_fake_conn(uv_stream_t *server, int status)
{
    fake_srv_t *srv = server->data;
    if (status < 0) return;
    fake_conn_t *fc = calloc(1, sizeof(*fc));
    fc->srv = srv;
    uv_tcp_init(server->loop, &fc->tcp);
    fc->tcp.data = fc;
    srv->nconns++;
    st_list_push(&srv->conns, &fc->link);
    if (uv_accept(server, (uv_stream_t *)&fc->tcp) != 0) {
        fc_close(fc);
        return;
    }
    llhttp_init(&fc->parser, HTTP_REQUEST, &fc_settings);
    fc->parser.data = fc;
    uv_read_start((uv_stream_t *)&fc->tcp, fc_alloc, fc_read);
}

/* ---- the worker ---------------------------------------------------------- */

static struct {
    st_config_t cfg;
    st_rules_t *rules;
    st_worker_t w;
    st_cmpthread_t cmp; /* a real comparator thread: the mirrored pairs are compared there */
    uv_async_t done; /* st_worker_init keeps the pointer; the thread that would use it never runs */
    fake_srv_t primary, shadow;
    int ready;
} fx;

/* The harness's end of the client connection, polled on the same loop. */
typedef struct {
    uv_poll_t poll;
    int fd;
    int eof;
    unsigned char *got;
    size_t len, cap;
    int closed;
} client_end_t;

static void on_client_readable(uv_poll_t *p, int status, int events)
{
    client_end_t *ce = p->data;
    (void)events;
    for (;;) {
        if (ce->len + 65536 > ce->cap) {
            ce->cap = ce->cap ? ce->cap * 2 : 1 << 17;
            ce->got = realloc(ce->got, ce->cap);
        }
        ssize_t n = read(ce->fd, ce->got + ce->len, ce->cap - ce->len);
        if (n > 0) {
            ce->len += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR) && status == 0) return;
        ce->eof = 1; /* EOF, or a reset */
        uv_poll_stop(p);
        return;
    }
}

static void on_client_poll_closed(uv_handle_t *h)
{
    client_end_t *ce = h->data;
    ce->closed = 1;
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void run_until(int (*settled)(void *), void *arg, const char *what)
{
    uint64_t start = now_ms();
    while (!settled(arg)) {
        uv_run(&fx.w.loop, UV_RUN_ONCE);
        if (now_ms() - start > FX_HANG_MS) {
            fprintf(stderr, "fixture: the proxy did not settle within %d ms: %s (clients %zu)\n",
                    FX_HANG_MS, what, fx.w.nclients);
            abort();
        }
    }
}

static int exchange_settled(void *arg)
{
    client_end_t *ce = arg;
    return ce->eof && fx.w.nclients == 0 && st_list_empty(&fx.w.tee.mirrors) &&
           st_list_empty(&fx.w.tee.queue);
}

static int upstreams_idle(void *arg)
{
    (void)arg;
    return fx.primary.nconns == 0 && fx.shadow.nconns == 0 && fx.w.primary_pool.nconns == 0 &&
           fx.w.shadow_pool.nconns == 0;
}

static int poll_closed(void *arg)
{
    return ((client_end_t *)arg)->closed;
}

void fx_init(const char *const *flags, int nflags)
{
    if (fx.ready) return;
    signal(SIGPIPE, SIG_IGN);
    st_log_min_level = ST_LOG_ERROR + 1; /* quiet: the fuzzer's output is its own */
    llhttp_settings_init(&fc_settings);
    fc_settings.on_message_begin = fc_begin;
    fc_settings.on_url = fc_url;
    fc_settings.on_header_field = fc_field;
    fc_settings.on_header_value = fc_value;
    fc_settings.on_body = fc_body;
    fc_settings.on_message_complete = fc_complete;

    /* the config names the fake upstreams' ports before the worker (and its
     * loop) exists: bound sockets now, listening on that loop after init */
    int probe[2];
    char pa[64], sa[64];
    for (int i = 0; i < 2; i++) {
        probe[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t l = sizeof(a);
        if (bind(probe[i], (struct sockaddr *)&a, sizeof(a)) != 0 ||
            getsockname(probe[i], (struct sockaddr *)&a, &l) != 0)
            abort();
        snprintf(i ? sa : pa, 64, "127.0.0.1:%d", ntohs(a.sin_port));
    }
    /* batch, not idle: the fuzzing thread never sleeps, and an idle-class
     * comparator would then never run */
    const char *argv[64] = {"shadowtee", "--primary",       pa,     "--shadow", sa, "--workers",
                            "1",         "--compare-sched", "batch"};
    int argc = 9;
    for (int i = 0; i < nflags && argc < 63; i++)
        argv[argc++] = flags[i];
    char err[512];
    if (st_config_load(&fx.cfg, argc, (char **)argv, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "fixture: config: %s\n", err);
        abort();
    }
    fx.rules = st_rules_default();
    st_tls_contexts_t tls;
    memset(&tls, 0, sizeof(tls));
    if (st_cmpthread_init(&fx.cmp, 0, &fx.cfg, fx.rules, 1, &fx.done) != 0 ||
        st_cmpthread_start(&fx.cmp) != 0)
        abort();
    if (st_worker_init(&fx.w, 0, &fx.cfg, &fx.cmp, 1, &tls, &fx.done) != 0) abort();
    for (int i = 0; i < 2; i++) {
        fake_srv_t *srv = i ? &fx.shadow : &fx.primary;
        st_list_init(&srv->conns);
        uv_tcp_init(&fx.w.loop, &srv->listener);
        srv->listener.data = srv;
        if (uv_tcp_open(&srv->listener, probe[i]) != 0 ||
            uv_listen((uv_stream_t *)&srv->listener, 128, on_fake_conn) != 0)
            abort();
    }
    fx.ready = 1;
}

size_t fx_split(const unsigned char **p, size_t *len, size_t cuts[FX_MAX_CUTS])
{
    size_t n = 0;
    if (*len == 0) return 0;
    size_t k = (*p)[0] % (FX_MAX_CUTS + 1);
    (*p)++, (*len)--;
    for (size_t i = 0; i < k && *len >= 2; i++) {
        cuts[n++] = ((size_t)(*p)[0] << 8 | (*p)[1]);
        *p += 2, *len -= 2;
    }
    return n;
}

void fx_exchange(fx_result_t *r, const unsigned char *client, size_t len, const size_t *cuts,
                 size_t ncuts)
{
    fx.primary.rec = &r->primary;
    fx.shadow.rec = &r->shadow;
    int sv[2]; /* a stream pair: the proxy's client code only sees a stream, and a long run
                  leaves no TIME_WAIT ports behind */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) abort();
    int cs = sv[0];
    st_client_accept(&fx.w, sv[1]);
    client_end_t ce = {.fd = cs};
    uv_poll_init(&fx.w.loop, &ce.poll, cs);
    ce.poll.data = &ce;
    uv_poll_start(&ce.poll, UV_READABLE | UV_DISCONNECT, on_client_readable);

    size_t off = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts && cuts[i] < len ? cuts[i] : len;
        while (off < end) {
            ssize_t w = write(cs, client + off, end - off);
            if (w > 0) {
                off += (size_t)w;
            } else if (w < 0 && errno == EAGAIN) {
                uv_run(&fx.w.loop, UV_RUN_NOWAIT); /* the proxy reads; room comes back */
            } else {
                off = len; /* reset by the proxy (it refused): the rest is moot */
                break;
            }
        }
        for (int k = 0; k < 4; k++) /* let the proxy read this piece on its own */
            uv_run(&fx.w.loop, UV_RUN_NOWAIT);
    }
    shutdown(cs, SHUT_WR);
    run_until(exchange_settled, &ce, "client exchange");
    fake_reset_all(&fx.primary); /* the pooled connections see the reset and go */
    fake_reset_all(&fx.shadow);
    run_until(upstreams_idle, NULL, "upstream connections");
    uv_close((uv_handle_t *)&ce.poll, on_client_poll_closed);
    run_until(poll_closed, &ce, "client poll");
    close(cs);
    r->client_got = ce.got;
    r->client_len = ce.len;
    fx.primary.rec = fx.shadow.rec = NULL;
}

void fx_result_free(fx_result_t *r)
{
    fx_upstream_t *u[] = {&r->primary, &r->shadow};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < u[k]->nreqs; i++)
            free(u[k]->reqs[i].body);
    free(r->client_got);
}
