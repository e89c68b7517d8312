/*
 * reqcheck: what a sidecar in front of an app refuses in a request head
 * before anything is forwarded. Pure functions over bytes and spans: no I/O,
 * no loop, no allocation.
 *
 * Two stages, both on the head only:
 *  - the scanner walks each head byte once as it arrives, before llhttp
 *    parses it, and checks the grammar llhttp 8.1 is lenient about: the
 *    request line is exactly method SP request-target SP HTTP-version CRLF
 *    (RFC 9112 3), every field line starts with a non-empty token followed
 *    by ':' (RFC 9110 5.1, RFC 9112 5.1), every line ends in CRLF (RFC 9112
 *    2.2). It decides on the first bad byte, so an HTTP/0.9 line ("GET /"
 *    CRLF) is answered at once and the verdict never depends on how the
 *    bytes were split into reads. It replaces the bare-LF scan the client
 *    did before (the same single pass, more checks per byte).
 *  - st_reqcheck_head() runs at headers-complete on what llhttp parsed: the
 *    request-target form against the method (RFC 9112 3.2), the CONNECT
 *    policy, and Host (RFC 9112 3.2, RFC 3986 3.2.2); an absolute-form
 *    target is rewritten to origin-form with its authority as the Host.
 */
#ifndef ST_REQCHECK_H
#define ST_REQCHECK_H

#include <stddef.h>

#include <llhttp.h>

#include "http.h"
#include "metrics.h" /* enum st_reject */

typedef struct {
    size_t pos;          /* next head byte to scan (offset from the head's first byte) */
    size_t mark;         /* offset of the HTTP-version (request line) */
    unsigned char state; /* reqcheck.c's scan state; 0: before the request line */
    unsigned char done;  /* 1: the head's empty line was seen; nothing more is scanned */
} st_reqcheck_scan_t;

/* Scans head[s->pos, len): head is the request's first byte (leading empty
 * lines included), len how many bytes of it have arrived. Returns
 * ST_REJ_NONE while the bytes are fine (s->done once the head is complete;
 * later calls return at once), or the first violation's reason. */
enum st_reject st_reqcheck_scan(st_reqcheck_scan_t *s, const char *head, size_t len);

/* At headers-complete, with llhttp's method and minor version. Checks, in
 * this order: CONNECT (refused unless allow_connect), the request-target
 * form (origin-form; "*" for OPTIONS only; authority-form with a port for
 * CONNECT only; absolute-form with an http or https scheme), then Host:
 * exactly one in HTTP/1.1, at most one in 1.0, a valid uri-host [":" port].
 * An absolute-form target is rewritten: m->url becomes its path and query
 * (origin-form; "/" or, for OPTIONS, "*" when empty) and m->authority its
 * authority, which the head builders send as the Host (RFC 9112 3.2.2: the
 * target's authority wins). The rewrite may move the target's bytes in the
 * buffer the spans point into, which must be the caller's and writable.
 * Returns ST_REJ_NONE or the reason. */
enum st_reject st_reqcheck_head(st_http_msg_t *m, int method, int http_minor, int allow_connect);

/* 1 when s[0, len) is uri-host [":" port] (RFC 3986 3.2.2-3.2.3): an
 * IP-literal ([IPv6] or [vX.future]), or a non-empty reg-name (IPv4
 * addresses are reg-names) of unreserved, pct-encoded and sub-delims; port
 * 1 to 5 digits up to 65535, required when need_port. Trailing OWS ignored. */
int st_reqcheck_authority(const char *s, size_t len, int need_port);

/* 1 when value[0, len) is a non-empty list of protocols (RFC 9110 7.8:
 * protocol-name ["/" protocol-version]) whose names are all in allow, a
 * comma- or space-separated list of names compared case-insensitively. */
int st_reqcheck_protocols_allowed(const char *value, size_t len, const char *allow);

/* 1 when m has an Upgrade header and every protocol in every Upgrade
 * header is allowed (st_reqcheck_protocols_allowed). */
int st_reqcheck_upgrade_allowed(const st_http_msg_t *m, const char *allow);

/* 1 when allow is a valid --allow-upgrade value (tokens, commas, spaces). */
int st_reqcheck_allow_list_valid(const char *allow);

/* The status a refusal is answered with (400, 405, 408, 413, 414, 431, 501, 505). */
int st_reqcheck_status(enum st_reject why);

/* The reason for a head or body llhttp refused (our own checks set theirs). */
enum st_reject st_reqcheck_errno(llhttp_errno_t err);

#endif
