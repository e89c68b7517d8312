/* http: message spans and head builders (see http.h). */
#include "http.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h" /* enum st_reject */

llhttp_errno_t st_http_execute(llhttp_t *p, st_rbuf_t *rb)
{
    const char *start = rb->base + rb->parsed;
    size_t len = rb->filled - rb->parsed;
    llhttp_errno_t err = llhttp_execute(p, start, len);
    const char *pos = err == HPE_OK ? start + len : llhttp_get_error_pos(p);
    rb->parsed += (size_t)(pos - start);
    if (err == HPE_PAUSED) llhttp_resume(p);
    return err;
}

int st_http_name_eq(const char *a, size_t alen, const char *lower)
{
    size_t n = strlen(lower);
    if (alen != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)a[i]) != lower[i]) return 0;
    return 1;
}

static int span_caseeq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen) return 0;
    for (size_t i = 0; i < alen; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i])) return 0;
    return 1;
}

void st_http_msg_reset(st_http_msg_t *m)
{
    m->url = m->reason = m->authority = NULL;
    m->url_len = m->reason_len = m->authority_len = 0;
    m->nhdr = 0;
    m->in_value = 0;
    m->xrid = m->host = -1;
    m->nhost = 0;
    m->expect_continue = 0;
    m->mirror = 0;
    m->bad = m->why = 0;
}

static int refuse(st_http_msg_t *m, int status, int why)
{
    m->bad = status;
    m->why = why;
    return -1;
}

int st_http_on_url(st_http_msg_t *m, const char *at, size_t len, size_t max_uri)
{
    if (m->url && m->url + m->url_len == at)
        m->url_len += len;
    else if (!m->url)
        m->url = at, m->url_len = len;
    else
        return refuse(m, ST_HTTP_BAD_REQUEST, ST_REJ_MALFORMED);
    if (max_uri && m->url_len > max_uri)
        return refuse(m, ST_HTTP_URI_TOO_LONG, ST_REJ_URI_TOO_LONG);
    return 0;
}

int st_http_on_status(st_http_msg_t *m, const char *at, size_t len)
{
    if (m->reason && m->reason + m->reason_len == at)
        m->reason_len += len;
    else
        m->reason = at, m->reason_len = len;
    return 0;
}

int st_http_on_header_field(st_http_msg_t *m, const char *at, size_t len)
{
    if (m->nhdr > 0 && !m->in_value) {
        st_header_t *h = &m->hdr[m->nhdr - 1];
        if (h->name + h->name_len != at) return refuse(m, ST_HTTP_BAD_REQUEST, ST_REJ_MALFORMED);
        h->name_len += len;
        return 0;
    }
    if (m->nhdr == ST_HTTP_MAX_HEADERS)
        return refuse(m, ST_HTTP_HEAD_TOO_LARGE, ST_REJ_HEAD_TOO_LARGE);
    st_header_t *h = &m->hdr[m->nhdr++];
    h->name = at;
    h->name_len = len;
    h->value = at + len; /* empty until a value arrives */
    h->value_len = 0;
    m->in_value = 0;
    return 0;
}

int st_http_on_header_value(st_http_msg_t *m, const char *at, size_t len)
{
    if (m->nhdr == 0) return refuse(m, ST_HTTP_BAD_REQUEST, ST_REJ_MALFORMED);
    /* CTLs other than HTAB (RFC 9110 5.5) never get here: llhttp 8 rejects
     * them even outside strict mode (HPE_INVALID_HEADER_TOKEN). An obs-fold
     * line is refused by the head scan (reqcheck.c) before llhttp sees it;
     * were it not, it would arrive as a non-adjacent piece, refused below. */
    st_header_t *h = &m->hdr[m->nhdr - 1];
    if (!m->in_value) {
        h->value = at;
        h->value_len = len;
        m->in_value = 1;
        return 0;
    }
    if (h->value + h->value_len != at) return refuse(m, ST_HTTP_BAD_REQUEST, ST_REJ_MALFORMED);
    h->value_len += len;
    return 0;
}

/* Equality of a token (letters, digits, '-') of known length with a lower
 * case literal: OR-ing 0x20 folds ASCII letters and leaves '-' and digits. */
static inline int tok_eq(const char *n, const char *lower, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((n[i] | 0x20) != lower[i]) return 0;
    return 1;
}

/* Classifies a header name by its length first, so most names cost one
 * length switch and at most two case-insensitive compares. */
static enum st_http_hclass classify(const char *n, size_t len)
{
    switch (len) {
    case 2:
        return tok_eq(n, "te", len) ? ST_H_HOP : ST_H_OTHER;
    case 4:
        return tok_eq(n, "host", len) ? ST_H_HOST : ST_H_OTHER;
    case 6:
        return tok_eq(n, "expect", len) ? ST_H_EXPECT : ST_H_OTHER;
    case 7:
        return tok_eq(n, "trailer", len) || tok_eq(n, "upgrade", len) ? ST_H_HOP : ST_H_OTHER;
    case 10:
        return tok_eq(n, "connection", len) || tok_eq(n, "keep-alive", len) ? ST_H_HOP : ST_H_OTHER;
    case 12:
        return tok_eq(n, "x-request-id", len) ? ST_H_XRID : ST_H_OTHER;
    case 14:
        return tok_eq(n, "content-length", len) ? ST_H_CONTENT_LENGTH : ST_H_OTHER;
    case 15:
        return tok_eq(n, "x-forwarded-for", len) ? ST_H_XFF : ST_H_OTHER;
    case 16:
        return tok_eq(n, "proxy-connection", len) ? ST_H_HOP : ST_H_OTHER;
    case 17:
        if (tok_eq(n, "transfer-encoding", len)) return ST_H_HOP;
        return tok_eq(n, "x-forwarded-proto", len) ? ST_H_XFP : ST_H_OTHER;
    case 18:
        return tok_eq(n, "x-shadowtee-mirror", len) ? ST_H_MIRROR : ST_H_OTHER;
    default:
        return ST_H_OTHER;
    }
}

/* Connection is hop-by-hop like the rest of its class, and names more. */
static int is_connection(const st_header_t *h, unsigned char cls)
{
    return cls == ST_H_HOP && h->name_len == 10 && tok_eq(h->name, "connection", 10);
}

void st_http_on_headers_complete(st_http_msg_t *m)
{
    int has_connection = 0;
    for (size_t i = 0; i < m->nhdr; i++) {
        const st_header_t *h = &m->hdr[i];
        enum st_http_hclass c = classify(h->name, h->name_len);
        m->cls[i] = (unsigned char)c;
        if (c == ST_H_HOST && m->nhost++ == 0)
            m->host = (int)i;
        else if (c == ST_H_XRID && m->xrid < 0 && h->value_len > 0)
            m->xrid = (int)i;
        else if (c == ST_H_EXPECT && st_http_name_eq(h->value, h->value_len, "100-continue"))
            m->expect_continue = 1;
        else if (c == ST_H_MIRROR)
            m->mirror = 1;
        else if (is_connection(h, m->cls[i]))
            has_connection = 1;
    }
    if (!has_connection) return;
    /* RFC 9110 7.6.1: headers named by Connection are hop-by-hop too. Walk
     * the tokens once; most are keep-alive/close/upgrade, already hop-by-hop. */
    for (size_t k = 0; k < m->nhdr; k++) {
        const st_header_t *ch = &m->hdr[k];
        if (!is_connection(ch, m->cls[k])) continue;
        const char *p = ch->value, *end = ch->value + ch->value_len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *tok = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            size_t tlen = (size_t)(p - tok);
            if (tlen == 0 || classify(tok, tlen) == ST_H_HOP) continue;
            for (size_t i = 0; i < m->nhdr; i++)
                if (m->cls[i] != ST_H_HOST && m->hdr[i].name_len == tlen &&
                    span_caseeq(m->hdr[i].name, tlen, tok, tlen))
                    m->cls[i] = ST_H_HOP;
        }
    }
}

int st_http_is_hop_by_hop(const char *name, size_t len)
{
    return classify(name, len) == ST_H_HOP; /* one list: the classifier's */
}

const st_header_t *st_http_find(const st_http_msg_t *m, const char *name)
{
    for (size_t i = 0; i < m->nhdr; i++)
        if (st_http_name_eq(m->hdr[i].name, m->hdr[i].name_len, name)) return &m->hdr[i];
    return NULL;
}

int st_http_shadow_host(const char *host, size_t len, char *out, size_t outlen)
{
    size_t name_len = len;
    if (len > 0 && host[0] == '[') { /* IPv6 literal: a suffix would make it invalid */
        if (len + 1 > outlen) return -1;
        memcpy(out, host, len);
        out[len] = '\0';
        return (int)len;
    }
    const char *colon = memchr(host, ':', len);
    if (colon) name_len = (size_t)(colon - host);
    int ip = name_len > 0;
    for (size_t i = 0; i < name_len; i++)
        if (!isdigit((unsigned char)host[i]) && host[i] != '.') ip = 0;
    size_t n = len + (ip ? 0 : 7);
    if (n + 1 > outlen) return -1;
    memcpy(out, host, name_len);
    size_t o = name_len;
    if (!ip) memcpy(out + o, "-shadow", 7), o += 7;
    memcpy(out + o, host + name_len, len - name_len);
    o += len - name_len;
    out[o] = '\0';
    return (int)o;
}

/* One Host line, "-shadow" inserted when the options ask for it. */
static int append_host(st_sbuf_t *out, const char *name, size_t name_len, const char *v,
                       size_t vlen, const st_reqhead_opts_t *o)
{
    char host[300];
    int n = o->host_suffix ? st_http_shadow_host(v, vlen, host, sizeof(host)) : -1;
    int rc = st_sbuf_append(out, name, name_len);
    rc |= ST_SBUF_LIT(out, ": ");
    rc |= n >= 0 ? st_sbuf_append(out, host, (size_t)n) : st_sbuf_append(out, v, vlen);
    rc |= ST_SBUF_LIT(out, "\r\n");
    return rc;
}

int st_http_build_request_head(st_sbuf_t *out, const st_http_msg_t *m, const st_reqhead_opts_t *o)
{
    int rc = 0;
    if (st_sbuf_reserve(out, 512 + m->url_len) != 0) return -1; /* typical heads need no regrowth */
    rc |= st_sbuf_appends(out, o->method);
    rc |= ST_SBUF_LIT(out, " ");
    rc |= st_sbuf_append(out, m->url, m->url_len);
    rc |= ST_SBUF_LIT(out, " HTTP/1.1\r\n");
    if (m->authority) rc |= append_host(out, "Host", 4, m->authority, m->authority_len, o);
    const st_header_t *xfp = NULL;
    for (size_t i = 0; i < m->nhdr; i++) {
        const st_header_t *h = &m->hdr[i];
        switch (m->cls[i]) {
        case ST_H_XFF: /* every line joined below, in order (RFC 9110 5.3) */
            continue;
        case ST_H_XFP:
            if (!xfp) xfp = h;
            continue;
        case ST_H_HOST: /* replaced by an absolute-form target's authority */
            if (!m->authority)
                rc |= append_host(out, h->name, h->name_len, h->value, h->value_len, o);
            continue;
        case ST_H_OTHER:
            break;
        default: /* hop-by-hop, or regenerated below */
            continue;
        }
        rc |= st_sbuf_append(out, h->name, h->name_len);
        rc |= ST_SBUF_LIT(out, ": ");
        rc |= st_sbuf_append(out, h->value, h->value_len);
        rc |= ST_SBUF_LIT(out, "\r\n");
    }
    rc |= ST_SBUF_LIT(out, "X-Forwarded-For: ");
    for (size_t i = 0; i < m->nhdr; i++)
        if (m->cls[i] == ST_H_XFF) {
            rc |= st_sbuf_append(out, m->hdr[i].value, m->hdr[i].value_len);
            rc |= ST_SBUF_LIT(out, ", ");
        }
    rc |= st_sbuf_appends(out, o->client_ip);
    rc |= ST_SBUF_LIT(out, "\r\nX-Forwarded-Proto: ");
    if (xfp && o->keep_forwarded_proto) /* the hop in front (ingress, Envoy) terminated TLS */
        rc |= st_sbuf_append(out, xfp->value, xfp->value_len);
    else
        rc |= st_sbuf_appends(out, o->proto);
    rc |= ST_SBUF_LIT(out, "\r\nx-request-id: ");
    rc |= st_sbuf_appends(out, o->request_id);
    rc |= ST_SBUF_LIT(out, "\r\n");
    if (o->mirror) rc |= st_sbuf_appends(out, "x-shadowtee-mirror: 1\r\n");
    if (o->upgrade) {
        const st_header_t *up = st_http_find(m, "upgrade");
        if (up) {
            rc |= st_sbuf_appends(out, "Connection: upgrade\r\nUpgrade: ");
            rc |= st_sbuf_append(out, up->value, up->value_len);
            rc |= ST_SBUF_LIT(out, "\r\n");
        }
    }
    switch (o->framing) {
    case ST_FRAME_LENGTH:
        rc |= ST_SBUF_LIT(out, "Content-Length: ");
        rc |= st_sbuf_append_u64(out, o->content_length);
        rc |= ST_SBUF_LIT(out, "\r\n\r\n");
        break;
    case ST_FRAME_CHUNKED:
        rc |= st_sbuf_appends(out, "Transfer-Encoding: chunked\r\n\r\n");
        break;
    case ST_FRAME_OPEN:
        break;
    default:
        rc |= ST_SBUF_LIT(out, "\r\n");
        break;
    }
    return rc ? -1 : 0;
}

const char *st_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

int st_http_build_response_head(st_sbuf_t *out, const st_http_msg_t *m, const st_resphead_opts_t *o)
{
    int rc = 0;
    if (st_sbuf_reserve(out, 512) != 0) return -1;
    rc |= ST_SBUF_LIT(out, "HTTP/1.1 ");
    rc |= st_sbuf_append_u64(out, (unsigned)o->status);
    rc |= ST_SBUF_LIT(out, " ");
    if (m->reason_len)
        rc |= st_sbuf_append(out, m->reason, m->reason_len);
    else
        rc |= st_sbuf_appends(out, st_http_reason(o->status));
    rc |= ST_SBUF_LIT(out, "\r\n");
    for (size_t i = 0; i < m->nhdr; i++) {
        const st_header_t *h = &m->hdr[i];
        if (m->cls[i] == ST_H_HOP) continue;
        if (m->cls[i] == ST_H_CONTENT_LENGTH && !o->keep_content_length) continue;
        rc |= st_sbuf_append(out, h->name, h->name_len);
        rc |= ST_SBUF_LIT(out, ": ");
        rc |= st_sbuf_append(out, h->value, h->value_len);
        rc |= ST_SBUF_LIT(out, "\r\n");
    }
    if (o->upgrade) {
        const st_header_t *up = st_http_find(m, "upgrade");
        if (up) rc |= st_sbuf_appendf(out, "Upgrade: %.*s\r\n", (int)up->value_len, up->value);
    }
    if (o->connection) {
        rc |= ST_SBUF_LIT(out, "Connection: ");
        rc |= st_sbuf_appends(out, o->connection);
        rc |= ST_SBUF_LIT(out, "\r\n");
    }
    if (o->framing == ST_FRAME_LENGTH) {
        rc |= ST_SBUF_LIT(out, "Content-Length: ");
        rc |= st_sbuf_append_u64(out, o->content_length);
        rc |= ST_SBUF_LIT(out, "\r\n");
    } else if (o->framing == ST_FRAME_CHUNKED) {
        rc |= ST_SBUF_LIT(out, "Transfer-Encoding: ");
        if (o->te_codings && o->te_codings_len) {
            rc |= st_sbuf_append(out, o->te_codings, o->te_codings_len);
            rc |= ST_SBUF_LIT(out, ", ");
        }
        rc |= ST_SBUF_LIT(out, "chunked\r\n");
    }
    rc |= ST_SBUF_LIT(out, "\r\n");
    return rc ? -1 : 0;
}

int st_http_build_error(st_sbuf_t *out, int status, const char *request_id, int close)
{
    const char *reason = st_http_reason(status);
    char body[128];
    int blen = snprintf(body, sizeof(body), "%d %s\n", status, reason);
    return st_sbuf_appendf(out,
                           "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                           "%s%s%s%s%s\r\n%s",
                           status, reason, blen, request_id ? "x-request-id: " : "",
                           request_id ? request_id : "", request_id ? "\r\n" : "",
                           status == 405 ? "Allow: " ST_HTTP_ALLOW "\r\n" : "",
                           close ? "Connection: close\r\n" : "", body);
}
