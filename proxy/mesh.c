/* mesh: sampling by request id and the wire form of a half (see mesh.h). */
#include "mesh.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "metrics.h"

int st_mesh_hash_init(st_mesh_hash_t *h)
{
    h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    h->ctx = EVP_MD_CTX_new();
    if (h->md && h->ctx) return 0;
    st_mesh_hash_free(h);
    return -1;
}

void st_mesh_hash_free(st_mesh_hash_t *h)
{
    EVP_MD_CTX_free(h->ctx);
    EVP_MD_free(h->md);
    h->ctx = NULL;
    h->md = NULL;
}

int st_mesh_sha256(st_mesh_hash_t *h, const void *p, size_t n, unsigned char out[32])
{
    unsigned int len = 0;
    if (!h->ctx || !h->md || EVP_DigestInit_ex(h->ctx, h->md, NULL) != 1 ||
        EVP_DigestUpdate(h->ctx, p, n) != 1 || EVP_DigestFinal_ex(h->ctx, out, &len) != 1 ||
        len != 32)
        return -1;
    return 0;
}

uint32_t st_mesh_point(st_mesh_hash_t *h, const char *id, size_t len)
{
    unsigned char md[32];
    if (st_mesh_sha256(h, id, len, md) != 0) return ST_MESH_POINTS;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | md[i];
    return (uint32_t)(v % ST_MESH_POINTS);
}

int st_mesh_in_share(uint32_t point, double percent)
{
    if (!(percent > 0)) return 0;
    double t = percent >= 100 ? (double)ST_MESH_POINTS : floor(percent * 10000.0 + 0.5);
    return (double)point < t;
}

int st_mesh_host_is_mirror(const char *host, size_t len)
{
    if (len && host[0] == '[') return 0; /* an IPv6 literal names no service */
    const char *colon = memchr(host, ':', len);
    size_t n = colon ? (size_t)(colon - host) : len;
    return n > 7 && strncasecmp(host + n - 7, "-shadow", 7) == 0;
}

int st_mesh_is_mirror(const st_http_msg_t *m)
{
    if (m->mirror) return 1;
    if (m->authority) return st_mesh_host_is_mirror(m->authority, m->authority_len);
    if (m->host >= 0)
        return st_mesh_host_is_mirror(m->hdr[m->host].value, m->hdr[m->host].value_len);
    return 0;
}

/* ---- redacted headers ------------------------------------------------------ */

int st_mesh_digest_headers(st_mesh_hash_t *h, st_capture_t *c, const st_rules_t *rules)
{
    const char *p = c->names.p;
    int any = 0;
    for (size_t i = 0; i < c->nheaders && !any; i++) {
        size_t nl = strlen(p);
        any = st_redact_header(rules, p, nl);
        p += nl + 1;
        p += strlen(p) + 1;
    }
    if (!any) return 0;
    st_sbuf_t out;
    st_sbuf_init(&out);
    if (st_sbuf_reserve(&out, c->names.len + 80) != 0) return -1;
    p = c->names.p;
    for (size_t i = 0; i < c->nheaders; i++) {
        size_t nl = strlen(p);
        const char *v = p + nl + 1;
        size_t vl = strlen(v);
        int rc = st_sbuf_append(&out, p, nl + 1);
        if (st_redact_header(rules, p, nl)) {
            unsigned char md[32];
            char hex[7 + 64 + 1] = "sha256:";
            if (st_mesh_sha256(h, v, vl, md) != 0) rc = -1;
            for (int k = 0; k < 32; k++) {
                hex[7 + 2 * k] = "0123456789abcdef"[md[k] >> 4];
                hex[8 + 2 * k] = "0123456789abcdef"[md[k] & 15];
            }
            rc |= st_sbuf_append(&out, hex, sizeof(hex)); /* with its NUL */
        } else {
            rc |= st_sbuf_append(&out, v, vl + 1);
        }
        if (rc) {
            st_sbuf_free(&out);
            return -1;
        }
        p = v + vl + 1;
    }
    st_sbuf_free(&c->names);
    c->names = out;
    return 0;
}

/* ---- wire form --------------------------------------------------------------- */

static void put_be(unsigned char *o, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        o[i] = (unsigned char)(v & 0xff);
}

static uint64_t get_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int st_mesh_encode(st_sbuf_t *out, const st_capture_t *c, int64_t wall_ms)
{
    const char *err = c->error ? c->error : "";
    size_t elen = strlen(err);
    if (elen > 255) elen = 255;
    double us = c->seconds > 0 ? c->seconds * 1e6 : 0;
    unsigned char fixed[3 + 2 + 1 + 8 + 8 + 1];
    memcpy(fixed, "SH1", 3);
    put_be(fixed + 3, (uint64_t)(c->status & 0xffff), 2);
    fixed[5] = (unsigned char)((c->truncated ? 1 : 0) | (c->error ? 2 : 0));
    put_be(fixed + 6, (uint64_t)us, 8);
    put_be(fixed + 14, (uint64_t)wall_ms, 8);
    fixed[22] = (unsigned char)elen;
    unsigned char n3[12];
    put_be(n3, c->nheaders, 4);
    put_be(n3 + 4, c->names.len, 4);
    put_be(n3 + 8, c->body.len, 4);
    if (c->names.len > UINT32_MAX || c->body.len > UINT32_MAX) return -1;
    int rc = st_sbuf_reserve(out, sizeof(fixed) + elen + 12 + c->names.len + c->body.len);
    rc |= st_sbuf_append(out, fixed, sizeof(fixed));
    rc |= st_sbuf_append(out, err, elen);
    rc |= st_sbuf_append(out, n3, 8);
    rc |= st_sbuf_append(out, c->names.p ? c->names.p : "", c->names.len);
    rc |= st_sbuf_append(out, n3 + 8, 4);
    rc |= st_sbuf_append(out, c->body.p ? c->body.p : "", c->body.len);
    return rc ? -1 : 0;
}

/* The error names a capture may carry (static strings, as the tee sets them). */
static const char *error_name(const char *p, size_t n)
{
    int i = st_reason_find(st_upfail_labels, ST_UPFAIL_NCOUNTED, p, n);
    return st_upfail_labels[i >= 0 ? i : ST_UPFAIL_PROTOCOL];
}

int st_mesh_decode(const char *p, size_t n, st_capture_t *c, int64_t *wall_ms)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t off = 23;
    if (n < off || memcmp(p, "SH1", 3) != 0) return -1;
    int flags = u[5];
    size_t elen = u[22];
    if (n - off < elen + 8) return -1;
    const char *err = p + off;
    off += elen;
    uint64_t nh = get_be(u + off, 4), nlen = get_be(u + off + 4, 4);
    off += 8;
    if (n - off < nlen + 4) return -1;
    const char *names = p + off;
    off += nlen;
    uint64_t blen = get_be(u + off, 4);
    off += 4;
    if (n - off != blen) return -1;
    /* the names block must hold exactly nh NUL-terminated pairs */
    size_t k = 0, pairs = 0;
    while (k < nlen) {
        const char *z1 = memchr(names + k, '\0', nlen - k);
        if (!z1) return -1;
        k = (size_t)(z1 - names) + 1;
        const char *z2 = k < nlen ? memchr(names + k, '\0', nlen - k) : NULL;
        if (!z2) return -1;
        k = (size_t)(z2 - names) + 1;
        pairs++;
    }
    if (pairs != nh) return -1;
    if (st_sbuf_append(&c->names, names, nlen) != 0 ||
        st_sbuf_append(&c->body, p + off, blen) != 0) {
        st_capture_free(c);
        st_capture_init(c);
        return -1;
    }
    c->nheaders = nh;
    c->status = (int)get_be(u + 3, 2);
    c->truncated = flags & 1;
    c->error = flags & 2 ? error_name(err, elen) : NULL;
    c->seconds = (double)get_be(u + 6, 8) / 1e6;
    if (wall_ms) *wall_ms = (int64_t)get_be(u + 14, 8);
    return 0;
}
