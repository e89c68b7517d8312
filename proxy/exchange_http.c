/*
 * exchange_http: the llhttp callbacks of an exchange: the request parser
 * (the connection's, over its read buffer) and the response parser (the
 * primary connection's). Bytes to forward are queued in the connection's
 * write batches; a callback that pauses hands over to st_exch_process.
 */
#include "exchange.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "worker.h"

/* ---- request parser callbacks ------------------------------------------ */

static int on_message_begin(llhttp_t *p)
{
    st_conn_t *c = p->data;
    st_http_msg_reset(&c->x.req);
    c->write_failed = c->x.retried = c->x.retrying = 0;
    c->x.t_sent = c->x.t_resp_done = 0;
    c->x.body_seen = 0;
    c->x.last_chunk = 0;
    c->x.rid[0] = '\0';
    c->x.url[0] = '\0';
    c->x.local = 0;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    st_conn_t *c = p->data;
    return st_http_on_url(&c->x.req, at, len, c->w->cfg->max_uri_size) ? HPE_USER : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    st_conn_t *c = p->data;
    if (c->x.state != ST_EXCH_HEAD)
        return 0; /* trailers are dropped; names were scanned (reqcheck) */
    return st_http_on_header_field(&c->x.req, at, len) ? HPE_USER : 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    st_conn_t *c = p->data;
    if (c->x.state != ST_EXCH_HEAD) return 0;
    return st_http_on_header_value(&c->x.req, at, len) ? HPE_USER : 0;
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
static int refuse_head(st_conn_t *c, enum st_reject why)
{
    c->x.req.bad = st_reqcheck_status(why);
    c->x.req.why = why;
    return HPE_USER;
}

static int on_headers_complete(llhttp_t *p)
{
    st_conn_t *c = p->data;
    const st_config_t *cfg = c->w->cfg;
    st_http_on_headers_complete(&c->x.req);
    c->x.method = llhttp_get_method(p);
    if (llhttp_get_http_major(p) != 1) /* HTTP/2.0 in text framing */
        return refuse_head(c, ST_REJ_VERSION);
    c->x.minor = llhttp_get_http_minor(p);
    c->x.keep_alive = llhttp_should_keep_alive(p);
    c->x.upgrade = llhttp_get_upgrade(p);
    c->x.chunked_in = (p->flags & F_CHUNKED) != 0;
    c->x.has_body = c->x.chunked_in || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    c->x.expect = c->x.req.expect_continue && c->x.minor >= 1 && c->x.has_body;
    if (c->x.req.xrid >= 0 && c->x.req.hdr[c->x.req.xrid].value_len < sizeof(c->x.rid) &&
        rid_is_safe(c->x.req.hdr[c->x.req.xrid].value, c->x.req.hdr[c->x.req.xrid].value_len)) {
        const st_header_t *h = &c->x.req.hdr[c->x.req.xrid];
        memcpy(c->x.rid, h->value, h->value_len);
        c->x.rid[h->value_len] = '\0';
        c->x.rid_given = 1;
    } else {
        st_worker_request_id(c->w, c->x.rid);
        c->x.rid_given = 0;
    }
    size_t ulen = c->x.req.url_len < sizeof(c->x.url) ? c->x.req.url_len : sizeof(c->x.url) - 1;
    for (size_t i = 0; i < ulen; i++) /* as the client sent it, for the access log */
        c->x.url[i] = c->x.req.url[i] == '"' ? '\'' : c->x.req.url[i];
    c->x.url[ulen] = '\0';
    /* CONNECT, the target's form, Host; an absolute-form target becomes origin-form */
    enum st_reject why = st_reqcheck_head(&c->x.req, c->x.method, c->x.minor, cfg->allow_connect);
    if (why) return refuse_head(c, why);
    if ((p->flags & F_TRANSFER_ENCODING) && c->x.minor == 0) /* RFC 9112 6.1: faulty framing */
        return refuse_head(c, ST_REJ_BAD_FRAMING);
    if ((p->flags & F_TRANSFER_ENCODING) && !te_is_chunked(&c->x.req))
        return refuse_head(c, ST_REJ_TRANSFER_CODING); /* a coding we cannot re-frame */
    if (cfg->max_body_size && (p->flags & F_CONTENT_LENGTH) &&
        p->content_length > cfg->max_body_size)
        return refuse_head(c, ST_REJ_BODY_TOO_LARGE);
    if (c->x.upgrade && c->x.method != HTTP_CONNECT &&
        !st_reqcheck_upgrade_allowed(&c->x.req, cfg->allow_upgrade)) {
        /* as nginx does: the request goes on without its Upgrade (and the
         * Connection: upgrade the builder would add). llhttp 8 reads
         * p->upgrade after this callback: cleared, the bytes that follow the
         * request stay HTTP/1.1 instead of "another protocol". */
        c->x.upgrade = 0;
        p->upgrade = 0;
        ST_INC(c->w->metrics.rejected[ST_REJ_UPGRADE]);
    }
    st_reqhead_opts_t o = {
        .method = llhttp_method_name((llhttp_method_t)c->x.method),
        .http_minor = c->x.minor,
        .client_ip = c->ip,
        .proto = c->tls_on ? "https" : "http",
        .keep_forwarded_proto = !c->tls_on,
        .request_id = c->x.rid,
        .upgrade = c->x.upgrade,
        .framing = c->x.chunked_in                 ? ST_FRAME_CHUNKED
                   : (p->flags & F_CONTENT_LENGTH) ? ST_FRAME_LENGTH
                                                   : ST_FRAME_NONE,
        .content_length = p->content_length,
    };
    c->x.head.len = 0;
    if (st_http_build_request_head(&c->x.head, &c->x.req, &o) != 0) {
        c->x.req.bad = 500;
        return HPE_USER;
    }
    if (cfg->mirror_mode == ST_MIRROR_MESH) {
        st_exch_mesh_begin(c);
    } else if (cfg->shadow.set) {
        st_tee_request_t r = {
            .req = &c->x.req,
            .method = c->x.method,
            .method_name = o.method,
            .request_id = c->x.rid,
            .client_ip = c->ip,
            .proto = o.proto,
            .keep_forwarded_proto = o.keep_forwarded_proto,
            .has_body = o.framing != ST_FRAME_NONE,
            .chunked = c->x.chunked_in,
            .content_length = p->content_length,
            .upgrade = c->x.upgrade,
        };
        c->x.mirror = st_tee_begin(c->w, &r);
        c->x.cap = c->x.mirror ? st_tee_primary_capture(c->x.mirror) : NULL;
    }
    c->x.pause_why = ST_PAUSE_HEADERS;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    st_conn_t *c = p->data;
    c->x.body_seen += len;
    if (c->w->cfg->max_body_size && c->x.body_seen > c->w->cfg->max_body_size)
        return refuse_head(c, ST_REJ_BODY_TOO_LARGE); /* a chunked body past the limit */
    if (c->x.mirror && st_tee_body(c->x.mirror, at, len) != 0) {
        c->x.mirror = NULL;
        c->x.cap = NULL;
    }
    if (c->x.local) return 0; /* answered here: the body is read and dropped */
    return st_conn_add(c, DIR_UP, at, len) ? HPE_USER : 0;
}

static int on_chunk_header(llhttp_t *p)
{
    st_conn_t *c = p->data;
    if (c->x.local) return 0;
    if (c->x.head_pending) {
        c->x.head_pending = 0;
        if (st_conn_add(c, DIR_UP, c->x.head.p, c->x.head.len) != 0) return HPE_USER;
    }
    if (p->content_length == 0) {
        /* the last chunk goes out at message-complete, once the trailer
         * section parsed: a bad trailer must not leave the primary with a
         * request that looks complete (found by fuzz_request) */
        c->x.last_chunk = 1;
        return 0;
    }
    return st_conn_add_chunk_size(c, DIR_UP, (unsigned long long)p->content_length) ? HPE_USER : 0;
}

static int on_chunk_complete(llhttp_t *p)
{
    st_conn_t *c = p->data;
    if (c->x.last_chunk || c->x.local) return 0;
    return st_conn_add(c, DIR_UP, "\r\n", 2) ? HPE_USER : 0;
}

static int on_message_complete(llhttp_t *p)
{
    st_conn_t *c = p->data;
    if (c->x.chunked_in && c->x.last_chunk && !c->x.local &&
        st_conn_add(c, DIR_UP, "0\r\n\r\n", 5) != 0)
        return HPE_USER;
    c->x.pause_why = ST_PAUSE_DONE;
    return HPE_PAUSED;
}

const llhttp_settings_t st_exch_request_settings = {
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
    st_conn_t *c = p->data;
    return st_http_on_status(&c->x.res, at, len) ? HPE_USER : 0;
}

static int on_res_header_field(llhttp_t *p, const char *at, size_t len)
{
    st_conn_t *c = p->data;
    if (c->x.resp != ST_RESP_NONE) return 0; /* trailers */
    return st_http_on_header_field(&c->x.res, at, len) ? HPE_USER : 0;
}

static int on_res_header_value(llhttp_t *p, const char *at, size_t len)
{
    st_conn_t *c = p->data;
    if (c->x.resp != ST_RESP_NONE) return 0;
    return st_http_on_header_value(&c->x.res, at, len) ? HPE_USER : 0;
}

static int on_res_message_begin(llhttp_t *p)
{
    st_conn_t *c = p->data;
    st_http_msg_reset(&c->x.res);
    return 0;
}

static int on_res_headers_complete(llhttp_t *p)
{
    st_conn_t *c = p->data;
    int status = llhttp_get_status_code(p);
    if (status < 100 || status > 599) return HPE_USER;   /* not a 3-digit code: 502 */
    if (status == 101 && !c->x.upgrade) return HPE_USER; /* a switch nobody asked for: 502 */
    /* a switch to a protocol not on --allow-upgrade: 502, never a tunnel */
    if (status == 101 && !st_reqcheck_upgrade_allowed(&c->x.res, c->w->cfg->allow_upgrade))
        return HPE_USER;
    const char *codings = NULL; /* transfer codings besides chunked, kept for the client */
    size_t codings_len = 0;
    if ((p->flags & F_TRANSFER_ENCODING) && !te_is_chunked(&c->x.res)) {
        const st_header_t *te = st_http_find(&c->x.res, "transfer-encoding");
        if (c->x.minor == 0 || !te) return HPE_USER; /* cannot be delivered to HTTP/1.0: 502 */
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
    c->x.status = status;
    st_http_on_headers_complete(&c->x.res);
    int connect_ok = c->x.method == HTTP_CONNECT && status >= 200 && status < 300;
    int tunnel = (status == 101 && c->x.upgrade) || connect_ok;
    c->x.tunnel = tunnel;
    int no_body = c->x.method == HTTP_HEAD || status == 204 || status == 304 || tunnel;
    st_resphead_opts_t o = {.status = status, .http_minor = c->x.minor};
    if (tunnel) {
        o.upgrade = status == 101;
        o.connection = status == 101 ? "upgrade" : NULL;
    } else {
        if (no_body) {
            o.framing = ST_FRAME_NONE;
            o.keep_content_length = c->x.method == HTTP_HEAD || status == 304;
        } else if (p->flags & F_CONTENT_LENGTH) {
            o.framing = ST_FRAME_LENGTH;
            o.content_length = p->content_length;
        } else if (c->x.minor >= 1) {
            o.framing = ST_FRAME_CHUNKED;
            o.te_codings = codings;
            o.te_codings_len = codings_len;
            c->x.rechunk = 1;
            c->x.resp_until_eof = !(p->flags & F_CHUNKED);
        } else {
            c->x.resp_until_eof = !(p->flags & F_CHUNKED);
            o.framing = ST_FRAME_CLOSE;
            c->x.close_delim = 1;
        }
        if (c->x.state != ST_EXCH_SENT || c->x.upgrade)
            c->close_after = 1; /* early answer, or a refused upgrade */
        if (!c->x.keep_alive || c->w->draining || c->x.close_delim) c->close_after = 1;
        c->x.resp_close = c->close_after;
        if (c->close_after)
            o.connection = "close";
        else if (c->x.minor == 0)
            o.connection = "keep-alive";
    }
    c->x.rhead.len = 0;
    if (st_http_build_response_head(&c->x.rhead, &c->x.res, &o) != 0) return HPE_USER;
    if (c->x.cap) {
        c->x.cap->status = status;
        for (size_t i = 0; i < c->x.res.nhdr; i++)
            st_capture_header(c->x.cap, c->x.res.hdr[i].name, c->x.res.hdr[i].name_len,
                              c->x.res.hdr[i].value, c->x.res.hdr[i].value_len);
        if (!no_body && (p->flags & F_CONTENT_LENGTH))
            st_capture_expect(c->x.cap, p->content_length, c->w->cfg->compare_max_body);
    }
    st_exch_set_resp(&c->x, ST_RESP_BODY);
    if (st_conn_add(c, DIR_CL, c->x.rhead.p, c->x.rhead.len) != 0) return HPE_USER;
    if (tunnel) return 2;
    return no_body ? 1 : 0; /* HEAD, 204, 304: no body whatever the headers say (RFC 9112 6.3) */
}

static int on_res_body(llhttp_t *p, const char *at, size_t len)
{
    st_conn_t *c = p->data;
    if (c->x.cap) st_capture_body(c->x.cap, at, len, c->w->cfg->compare_max_body);
    if (c->x.rechunk && st_conn_add_chunk_size(c, DIR_CL, (unsigned long long)len) != 0)
        return HPE_USER;
    if (st_conn_add(c, DIR_CL, at, len) != 0) return HPE_USER;
    if (c->x.rechunk && st_conn_add(c, DIR_CL, "\r\n", 2) != 0) return HPE_USER;
    return 0;
}

static int on_res_message_complete(llhttp_t *p)
{
    st_conn_t *c = p->data;
    if (c->x.resp == ST_RESP_NONE || c->x.tunnel)
        return 0; /* interim response, or llhttp pauses for the upgrade */
    if (c->x.rechunk && st_conn_add(c, DIR_CL, "0\r\n\r\n", 5) != 0) return HPE_USER;
    st_exch_set_resp(&c->x, ST_RESP_DONE);
    c->x.t_resp_done = uv_hrtime();
    return HPE_PAUSED;
}

const llhttp_settings_t st_exch_response_settings = {
    .on_message_begin = on_res_message_begin,
    .on_status = on_status,
    .on_header_field = on_res_header_field,
    .on_header_value = on_res_header_value,
    .on_headers_complete = on_res_headers_complete,
    .on_body = on_res_body,
    .on_message_complete = on_res_message_complete,
};
