/*
 * mesh: what the sidecars of mesh mirroring (--mirror-mode mesh, issue 16)
 * share besides Redis: the sampling decision and the wire form of a half.
 *
 * Sampling. Istio (or nginx, Envoy) mirrors every request of the route to
 * the shadow pods; each sidecar decides on its own, from the request's
 * x-request-id only, whether the request is in the compared share, so the
 * stable and the shadow side pick the same requests without talking:
 *
 *     point(id) = first 8 bytes of SHA-256(id), big-endian, mod 1,000,000
 *     sampled   = point(id) < round(P * 10,000)        (P = --mirror-percent)
 *
 * SHA-256 (OpenSSL's, already linked for TLS) rather than the tee's FNV-1a:
 * it is specified everywhere, so an operator, a test or another tool (a
 * Lua filter, Python's hashlib) can tell which ids are in the share, and
 * its output is uniform for ids that differ in a single character. It costs
 * ~130 ns per request with a reused digest context (one per worker, no
 * allocation per call).
 *
 * A half on the wire (the value stored in Redis), all integers big-endian:
 *
 *     "SH1"  u16 status  u8 flags (1: body truncated, 2: error)  u64 latency_us
 *     i64 wall_ms  u8 len + error name  u32 nheaders  u32 len + names  u32 len + body
 *
 * names is the capture's "name\0value\0..." block. Before a half leaves
 * the process, the value of every header the samples would redact
 * (Authorization, Cookie, Set-Cookie, the rules' redact_headers) is
 * replaced by "sha256:" and the hex digest of the value: the comparison
 * of two halves still sees whether the values are equal, Redis never holds
 * the credential. Decoding checks every length against the bytes there.
 */
#ifndef ST_MESH_H
#define ST_MESH_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "http.h"
#include "tee.h"
#include "shadowtee/comparator.h"

typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_md_st EVP_MD;

/* A reusable SHA-256 context, one per thread that samples or publishes. */
typedef struct {
    EVP_MD_CTX *ctx;
    EVP_MD *md;
} st_mesh_hash_t;

/* 0, or -1 when OpenSSL cannot give a SHA-256 (then nothing is sampled). */
int st_mesh_hash_init(st_mesh_hash_t *h);
void st_mesh_hash_free(st_mesh_hash_t *h);
/* SHA-256 of p[0..n) into out[32]; 0 or -1. */
int st_mesh_sha256(st_mesh_hash_t *h, const void *p, size_t n, unsigned char out[32]);

#define ST_MESH_POINTS 1000000u
/* The request id's point in [0, ST_MESH_POINTS), as above; ST_MESH_POINTS
 * when it cannot be computed (never sampled). */
uint32_t st_mesh_point(st_mesh_hash_t *h, const char *id, size_t len);
/* 1 when an id with this point is in the share of `percent` (0..100). */
int st_mesh_in_share(uint32_t point, double percent);

/* Replaces the value of each redacted header of c (st_redact_header) by its
 * digest, in place. 0 or -1 (allocation). */
int st_mesh_digest_headers(st_mesh_hash_t *h, st_capture_t *c, const st_rules_t *rules);

/* Appends the wire form of c to out. 0 or -1 (allocation). */
int st_mesh_encode(st_sbuf_t *out, const st_capture_t *c, int64_t wall_ms);
/* Fills c (initialised, empty) from the wire form in p[0..n). 0, or -1 when
 * the bytes are not a well-formed half (c is then freed and empty again). */
int st_mesh_decode(const char *p, size_t n, st_capture_t *c, int64_t *wall_ms);

/* 1 when the Host (value, port allowed) names a mirror: ends in "-shadow",
 * which Istio/Envoy (and the tee's --shadow-host-suffix) append. */
int st_mesh_host_is_mirror(const char *host, size_t len);
/* The loop guard: 1 when the request (head parsed, st_http_on_headers_complete
 * run, absolute-form resolved) is already a mirror: it carries
 * x-shadowtee-mirror (what the tee adds to its copies) or its Host (or
 * absolute-form authority) ends in "-shadow". */
int st_mesh_is_mirror(const st_http_msg_t *m);

#endif
