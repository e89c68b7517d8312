/*
 * reasons: every failure and close reason the proxy names, one X-macro table
 * per family. Each entry gives the enum value (ST_<FAMILY>_<ID>), its name
 * (the enum constant's spelling, st_<family>_names) and its label (the
 * string in logs and in the metric's reason label, st_<family>_labels).
 * The counters in st_metrics_t are indexed by these enums directly, and the
 * render lists every label from zero.
 *
 *   upfail  why an upstream connection (primary, shadow, noise) failed:
 *           shadowtee_upstream_errors_total, shadowtee_shadow_errors_total
 *           (EOF last: not a label of its own, counted as reset)
 *   tlsfail why a TLS session failed: shadowtee_tls_handshake_failures_total
 *   close   why a client connection closed: shadowtee_client_closes_total
 *   skip    why a request was not mirrored: shadowtee_mirror_skipped_total
 *   mdrop   why a mesh half was dropped: shadowtee_mesh_halves_total{outcome="dropped"}
 *   cmpskip why a finished pair was not compared: shadowtee_comparisons_skipped_total
 *   rej     why the proxy answered a request itself: shadowtee_requests_rejected_total
 *   accept  why accept(2) failed: shadowtee_accept_errors_total
 */
#ifndef ST_REASONS_H
#define ST_REASONS_H

#include <stddef.h>

/* X(ID, label) */
#define ST_UPFAIL_TABLE(X)                                                                         \
    X(CONNECT, "connect")                                                                          \
    X(TIMEOUT, "timeout")                                                                          \
    X(RESET, "reset")                                                                              \
    X(PROTOCOL, "protocol")                                                                        \
    X(TLS, "tls")                                                                                  \
    X(EOF, "eof") /* the peer closed: counted as reset (ST_UPFAIL_NCOUNTED) */

#define ST_TLSFAIL_TABLE(X)                                                                        \
    X(VERIFY, "verify")       /* the peer's certificate did not verify */                          \
    X(HANDSHAKE, "handshake") /* the handshake failed otherwise (a plain-HTTP client) */           \
    X(PROTOCOL, "protocol")   /* after the handshake: a bad record, an alert */

#define ST_CLOSE_TABLE(X)                                                                          \
    X(EXCHANGE_DONE, "exchange_done") /* Connection: close, an early answer, or draining */        \
    X(EOF, "eof")                     /* the client closed while idle or lingering */              \
    X(CLIENT_EOF, "client_eof")       /* the client closed mid-exchange */                         \
    X(CLIENT_RESET, "client_reset")   /* a read error mid-exchange */                              \
    X(TIMEOUT, "timeout")             /* idle keep-alive, linger, send or tunnel idle timeout */   \
    X(BODY_TIMEOUT, "body_timeout")   /* the request body stalled after the answer began */        \
    X(CLIENT_WRITE_ERROR, "client_write_error")     /* a write to the client failed */             \
    X(ERROR_WRITE, "error_write")                   /* the error answer could not be written */    \
    X(REFUSED_MID_RESPONSE, "refused_mid_response") /* a bad body once the answer began */         \
    X(UPSTREAM_FAILED_MID_RESPONSE, "upstream_failed_mid_response")                                \
    X(TUNNEL_WRITE, "tunnel_write")   /* a tunnel write failed */                                  \
    X(TUNNEL_CLOSED, "tunnel_closed") /* the upstream end of a tunnel went */                      \
    X(NO_BUFFER, "no_buffer")         /* no read buffer mid-exchange */                            \
    X(TLS_ERROR, "tls_error")         /* a TLS error after the handshake */                        \
    X(TLS_HANDSHAKE, "tls_handshake") /* the client's TLS handshake failed */                      \
    X(DRAIN, "drain")                 /* closed by a drain while lingering */                      \
    X(STOP, "stop")                   /* closed by a forced stop */

#define ST_SKIP_TABLE(X)                                                                           \
    X(SAMPLING, "sampling")                     /* outside --mirror-percent */                     \
    X(METHOD, "method")                         /* not a --mirror-methods method */                \
    X(BODY_TOO_LARGE, "body_too_large")         /* over --mirror-max-body */                       \
    X(INFLIGHT_CAP, "inflight_cap")             /* --shadow-max-inflight */                        \
    X(MEMORY_BUDGET, "memory_budget")           /* --mirror-memory-budget */                       \
    X(SHADOW_UNAVAILABLE, "shadow_unavailable") /* the shadow is marked down */                    \
    X(LOOP_GUARD, "loop_guard") /* a mirror already (x-shadowtee-mirror, Host *-shadow) */

/* The first three are counted by the worker, the rest by the comparator thread. */
#define ST_MDROP_TABLE(X)                                                                          \
    X(COMPARATOR_BUSY, "comparator_busy") /* the comparator queue's length cap */                  \
    X(QUEUE_BYTES, "queue_bytes")         /* its byte budget, or an allocation failed */           \
    X(ABORTED, "aborted")                 /* the client went away before the exchange ended */     \
    X(REDIS_DOWN, "redis_down")           /* not connected to Redis (or too many in flight) */     \
    X(CONNECTION_LOST, "connection_lost") /* sent, the connection went before the reply */         \
    X(ERROR_REPLY, "error_reply")         /* Redis answered an error */                            \
    X(DUPLICATE, "duplicate")             /* this side already published this request id */        \
    X(SHUTDOWN, "shutdown")               /* still queued when the drain timeout ran out */

/* The first two are counted by the worker (cmpq.c), SHUTDOWN by the
 * comparator thread. */
#define ST_CMPSKIP_TABLE(X)                                                                        \
    X(BUSY, "comparator_busy") /* the length cap was reached */                                    \
    X(BYTES, "queue_bytes")    /* the byte budget was reached (or malloc failed) */                \
    X(SHUTDOWN, "shutdown")    /* still queued when the drain timeout ran out */

/* Each with one status (st_reqcheck_status()); NONE is not a label the
 * render lists, UPGRADE counts removals (the request is forwarded without). */
#define ST_REJ_TABLE(X)                                                                            \
    X(NONE, "none")                                                                                \
    X(CONNECT, "connect")                   /* 405: CONNECT without --allow-connect */             \
    X(UPGRADE, "upgrade")                   /* Upgrade removed, the request forwarded */           \
    X(HTTP09, "http09")                     /* 400: a request line without an HTTP-version */      \
    X(BAD_REQUEST_LINE, "bad_request_line") /* 400: not method SP target SP version */             \
    X(BAD_HEADER_NAME, "bad_header_name")   /* 400: empty, non-token, space-trailed, obs-fold */   \
    X(BAD_HEADER_VALUE, "bad_header_value") /* 400: a control byte in a field value */             \
    X(BAD_HOST, "bad_host")                 /* 400: Host missing (1.1), repeated, invalid */       \
    X(BARE_LF, "bare_lf")                   /* 400: a head line ended by LF alone */               \
    X(BARE_CR, "bare_cr")                   /* 400: a CR not followed by LF in the head */         \
    X(BAD_FRAMING, "bad_framing")           /* 400: Content-Length / Transfer-Encoding / chunk */  \
    X(MALFORMED, "malformed")               /* 400: anything else llhttp refuses */                \
    X(UNKNOWN_METHOD, "unknown_method")     /* 501: a method llhttp does not know */               \
    X(TRANSFER_CODING, "transfer_coding")   /* 501: a transfer coding other than chunked */        \
    X(VERSION, "version")                   /* 505: HTTP major version other than 1 */             \
    X(HEAD_TOO_LARGE, "head_too_large")     /* 431 */                                              \
    X(URI_TOO_LONG, "uri_too_long")         /* 414 */                                              \
    X(BODY_TOO_LARGE, "body_too_large")     /* 413 */                                              \
    X(TIMEOUT, "timeout")                   /* 408: head or body not sent in time */

/* accept(2) failures of a client listener (listener.c). */
#define ST_ACCEPT_TABLE(X)                                                                         \
    X(EMFILE, "emfile")   /* the process's descriptor limit */                                     \
    X(ENFILE, "enfile")   /* the system's descriptor limit */                                      \
    X(ENOBUFS, "enobufs") /* ENOBUFS / ENOMEM: socket memory */                                    \
    X(OTHER, "other")

#define ST_REASON_ENUM_UPFAIL(id, label)  ST_UPFAIL_##id,
#define ST_REASON_ENUM_TLSFAIL(id, label) ST_TLSFAIL_##id,
#define ST_REASON_ENUM_CLOSE(id, label)   ST_CLOSE_##id,
#define ST_REASON_ENUM_SKIP(id, label)    ST_SKIP_##id,
#define ST_REASON_ENUM_MDROP(id, label)   ST_MDROP_##id,
#define ST_REASON_ENUM_CMPSKIP(id, label) ST_CMPSKIP_##id,
#define ST_REASON_ENUM_REJ(id, label)     ST_REJ_##id,
#define ST_REASON_ENUM_ACCEPT(id, label)  ST_ACCEPT_##id,

enum st_upfail { ST_UPFAIL_TABLE(ST_REASON_ENUM_UPFAIL) ST_UPFAIL_COUNT };
/* The reasons the counters keep: all but EOF. */
#define ST_UPFAIL_NCOUNTED ST_UPFAIL_EOF
enum st_tls_fail { ST_TLSFAIL_TABLE(ST_REASON_ENUM_TLSFAIL) ST_TLSFAIL_COUNT };
enum st_close { ST_CLOSE_TABLE(ST_REASON_ENUM_CLOSE) ST_CLOSE_COUNT };
enum st_skip { ST_SKIP_TABLE(ST_REASON_ENUM_SKIP) ST_SKIP_COUNT };
enum st_mesh_drop { ST_MDROP_TABLE(ST_REASON_ENUM_MDROP) ST_MDROP_COUNT };
enum st_cmpskip { ST_CMPSKIP_TABLE(ST_REASON_ENUM_CMPSKIP) ST_CMPSKIP_COUNT };
enum st_reject { ST_REJ_TABLE(ST_REASON_ENUM_REJ) ST_REJ_COUNT };
enum st_accept_err { ST_ACCEPT_TABLE(ST_REASON_ENUM_ACCEPT) ST_ACCEPT_ERR_COUNT };

extern const char *const st_upfail_names[ST_UPFAIL_COUNT];
extern const char *const st_upfail_labels[ST_UPFAIL_COUNT];
extern const char *const st_tls_fail_names[ST_TLSFAIL_COUNT];
extern const char *const st_tls_fail_labels[ST_TLSFAIL_COUNT];
extern const char *const st_close_names[ST_CLOSE_COUNT];
extern const char *const st_close_labels[ST_CLOSE_COUNT];
extern const char *const st_skip_names[ST_SKIP_COUNT];
extern const char *const st_skip_labels[ST_SKIP_COUNT];
extern const char *const st_mesh_drop_names[ST_MDROP_COUNT];
extern const char *const st_mesh_drop_labels[ST_MDROP_COUNT];
extern const char *const st_cmpskip_names[ST_CMPSKIP_COUNT];
extern const char *const st_cmpskip_labels[ST_CMPSKIP_COUNT];
extern const char *const st_reject_names[ST_REJ_COUNT];
extern const char *const st_reject_labels[ST_REJ_COUNT];
extern const char *const st_accept_err_names[ST_ACCEPT_ERR_COUNT];
extern const char *const st_accept_err_labels[ST_ACCEPT_ERR_COUNT];

/* The reason a failure is counted as: EOF (the peer closed) is a reset. */
static inline enum st_upfail st_upfail_counted(enum st_upfail why)
{
    return why == ST_UPFAIL_EOF ? ST_UPFAIL_RESET : why;
}

/* Index of the label s[0..len) among labels[0..n), or -1. */
int st_reason_find(const char *const *labels, int n, const char *s, size_t len);

#endif
