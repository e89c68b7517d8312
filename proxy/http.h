/*
 * http: the message model the proxy fills from llhttp callbacks, and the
 * builders of the heads it sends (request to the primary and the shadow,
 * response to the client). Pure functions over spans: no I/O, no loop.
 *
 * A st_http_msg_t holds spans (pointer + length) into the read buffer the
 * head was parsed from; they are valid only until that buffer is reused,
 * which the owner does only after the outgoing head has been built.
 */
#ifndef ST_HTTP_H
#define ST_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "buf.h"
#include "shadowtee/comparator.h" /* st_header_t */

#define ST_HTTP_MAX_HEADERS 128
/* The Allow of the proxy's own 405 (CONNECT refused): the methods an app
 * behind a sidecar is addressed with. Others are still forwarded. */
#define ST_HTTP_ALLOW "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

/* Why a head is refused: the status the client gets. */
enum st_http_err {
    ST_HTTP_OK = 0,
    ST_HTTP_BAD_REQUEST = 400,
    ST_HTTP_TOO_LARGE = 413,
    ST_HTTP_URI_TOO_LONG = 414,
    ST_HTTP_HEAD_TOO_LARGE = 431,
};

typedef struct {
    const char *url; /* request target (requests); origin-form after st_reqcheck_head() */
    size_t url_len;
    const char *authority; /* an absolute-form target's authority: sent as the Host, or NULL */
    size_t authority_len;
    const char *reason; /* reason phrase (responses) */
    size_t reason_len;
    st_header_t hdr[ST_HTTP_MAX_HEADERS];
    size_t nhdr;
    int in_value;        /* last callback was a value (a new field starts a header) */
    int xrid;            /* index of x-request-id, -1 */
    int host;            /* index of Host, -1 */
    int nhost;           /* Host headers seen */
    int expect_continue; /* Expect: 100-continue seen */
    int mirror;          /* x-shadowtee-mirror seen: the request is a tee'd copy */
    int bad;             /* enum st_http_err when a callback refused the head */
    int why;             /* with bad: enum st_reject (metrics.h), 0 when not a refusal */
    unsigned char
        cls[ST_HTTP_MAX_HEADERS]; /* enum st_http_hclass per header, set at headers-complete */
} st_http_msg_t;

/* What a header is to the proxy, decided once per head. */
enum st_http_hclass {
    ST_H_OTHER = 0, /* end-to-end: forwarded as is */
    ST_H_HOP,       /* hop-by-hop, or named by Connection: never forwarded */
    ST_H_CONTENT_LENGTH,
    ST_H_EXPECT,
    ST_H_XFF,
    ST_H_XFP,
    ST_H_XRID,
    ST_H_MIRROR,
    ST_H_HOST,
};

void st_http_msg_reset(st_http_msg_t *m);
/* llhttp span callbacks, called by the owner's own callbacks. Each returns 0,
 * or -1 with m->bad set (the owner returns HPE_USER to llhttp). Adjacent
 * pieces of one span (a head split across reads of the same buffer) are
 * merged. max_uri = 0 disables the URI limit. */
int st_http_on_url(st_http_msg_t *m, const char *at, size_t len, size_t max_uri);
int st_http_on_status(st_http_msg_t *m, const char *at, size_t len);
int st_http_on_header_field(st_http_msg_t *m, const char *at, size_t len);
int st_http_on_header_value(st_http_msg_t *m, const char *at, size_t len);
/* Call at headers-complete: classifies every header (cls) and indexes Host,
 * x-request-id and Expect. The head builders below rely on it. */
void st_http_on_headers_complete(st_http_msg_t *m);

/* 1 when the header is hop-by-hop per RFC 9110 7.6.1 (fixed list). */
int st_http_is_hop_by_hop(const char *name, size_t len);
/* Value of the first header called name, or NULL. */
const st_header_t *st_http_find(const st_http_msg_t *m, const char *name);

enum st_framing {
    ST_FRAME_NONE = 0, /* no body headers (no body) */
    ST_FRAME_LENGTH,   /* Content-Length: content_length */
    ST_FRAME_CHUNKED,  /* Transfer-Encoding: chunked */
    ST_FRAME_OPEN,     /* leave the head open: the caller adds framing and the blank line */
    ST_FRAME_CLOSE,    /* response delimited by closing the connection */
};

typedef struct {
    const char *method;       /* "GET" ... */
    int http_minor;           /* client's minor version, for the request line we keep 1.1 */
    const char *client_ip;    /* appended to X-Forwarded-For */
    const char *proto;        /* X-Forwarded-Proto value */
    int keep_forwarded_proto; /* forward an incoming X-Forwarded-Proto instead (we did not terminate
                                 TLS) */
    const char *request_id;   /* x-request-id value to send */
    int upgrade;              /* keep Upgrade and send Connection: upgrade */
    int mirror;               /* add x-shadowtee-mirror: 1 */
    int host_suffix;          /* append "-shadow" to the Host name */
    enum st_framing framing;
    uint64_t content_length;
} st_reqhead_opts_t;

/* Appends the request head to send upstream. With m->authority set, it is
 * the Host (first after the request line) and every Host header is dropped.
 * 0 or -1 (ENOMEM). */
int st_http_build_request_head(st_sbuf_t *out, const st_http_msg_t *m, const st_reqhead_opts_t *o);

typedef struct {
    int status;
    int http_minor;         /* client's: 0 for HTTP/1.0 clients */
    const char *connection; /* "close", "keep-alive", "upgrade" or NULL (none) */
    enum st_framing framing;
    uint64_t content_length;
    int keep_content_length; /* HEAD/304: pass the upstream's Content-Length through */
    int upgrade;             /* 101: keep Upgrade */
    const char *te_codings;  /* with ST_FRAME_CHUNKED: codings before chunked ("gzip"), or NULL */
    size_t te_codings_len;
} st_resphead_opts_t;

/* Appends the response head for the client. 0 or -1. */
int st_http_build_response_head(st_sbuf_t *out, const st_http_msg_t *m,
                                const st_resphead_opts_t *o);

/* Appends a complete small response the proxy answers itself (errors); a
 * 405 carries the Allow header RFC 9110 15.5.6 requires. */
int st_http_build_error(st_sbuf_t *out, int status, const char *request_id, int close);
const char *st_http_reason(int status);

/* Host with "-shadow" inserted before any port; IP literals unchanged.
 * Writes into out (NUL-terminated), returns the length or -1 if too long. */
int st_http_shadow_host(const char *host, size_t len, char *out, size_t outlen);

/* Runs the parser over rb's unparsed bytes, advances rb->parsed to where it
 * stopped, and resumes it when a callback paused it (the caller acts on the
 * pause; the next call goes on from there). Returns llhttp's errno. */
llhttp_errno_t st_http_execute(llhttp_t *p, st_rbuf_t *rb);

/* Case-insensitive equality of a span and a NUL-terminated lower-case name. */
int st_http_name_eq(const char *a, size_t alen, const char *lower);

#endif
