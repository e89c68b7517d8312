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

#define ST_REASON_ENUM_UPFAIL(id, label)  ST_UPFAIL_##id,
#define ST_REASON_ENUM_TLSFAIL(id, label) ST_TLSFAIL_##id,
#define ST_REASON_ENUM_CLOSE(id, label)   ST_CLOSE_##id,

enum st_upfail { ST_UPFAIL_TABLE(ST_REASON_ENUM_UPFAIL) ST_UPFAIL_COUNT };
/* The reasons the counters keep: all but EOF. */
#define ST_UPFAIL_NCOUNTED ST_UPFAIL_EOF
enum st_tls_fail { ST_TLSFAIL_TABLE(ST_REASON_ENUM_TLSFAIL) ST_TLSFAIL_COUNT };
enum st_close { ST_CLOSE_TABLE(ST_REASON_ENUM_CLOSE) ST_CLOSE_COUNT };

extern const char *const st_upfail_names[ST_UPFAIL_COUNT];
extern const char *const st_upfail_labels[ST_UPFAIL_COUNT];
extern const char *const st_tls_fail_names[ST_TLSFAIL_COUNT];
extern const char *const st_tls_fail_labels[ST_TLSFAIL_COUNT];
extern const char *const st_close_names[ST_CLOSE_COUNT];
extern const char *const st_close_labels[ST_CLOSE_COUNT];

/* The reason a failure is counted as: EOF (the peer closed) is a reset. */
static inline enum st_upfail st_upfail_counted(enum st_upfail why)
{
    return why == ST_UPFAIL_EOF ? ST_UPFAIL_RESET : why;
}

/* Index of the label s[0..len) among labels[0..n), or -1. */
int st_reason_find(const char *const *labels, int n, const char *s, size_t len);

#endif
