/* tls: OpenSSL sessions on memory BIOs (see tls.h). */
#include "tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Mozilla "intermediate" TLS 1.2 suites; TLS 1.3 uses OpenSSL's defaults. */
static const char cipher_list[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

const char *st_tls_last_error(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (!e)
        snprintf(buf, len, "unknown error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char protos[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1',
                                           8, 'h', 't', 't', 'p', '/', '1', '.', '0'};
    (void)ssl;
    (void)arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, protos, sizeof(protos), in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* e.g. h2 only: no ALPN, the client decides */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *server_ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
    char e[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS: %s", st_tls_last_error(e, sizeof(e)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, cipher_list) != 1) {
        snprintf(err, errlen, "TLS: %s", st_tls_last_error(e, sizeof(e)));
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "--tls-cert %s: %s", cert, st_tls_last_error(e, sizeof(e)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errlen, "--tls-key %s: %s", key, st_tls_last_error(e, sizeof(e)));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "--tls-key %s does not match --tls-cert %s", key, cert);
        goto fail;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    return ctx;
fail: /* err says why */
    SSL_CTX_free(ctx);
    return NULL;
}

int st_tls_server_init(st_tls_server_t *srv, const char *cert, const char *key, char *err,
                       size_t errlen)
{
    srv->ctx = server_ctx_new(cert, key, err, errlen);
    if (!srv->ctx) return -1;
    pthread_mutex_init(&srv->lock, NULL);
    return 0;
}

int st_tls_server_reload(st_tls_server_t *srv, const char *cert, const char *key, char *err,
                         size_t errlen)
{
    SSL_CTX *ctx = server_ctx_new(cert, key, err, errlen);
    if (!ctx) return -1;
    pthread_mutex_lock(&srv->lock);
    SSL_CTX *old = srv->ctx;
    srv->ctx = ctx;
    pthread_mutex_unlock(&srv->lock);
    SSL_CTX_free(old); /* sessions started with it hold their own reference */
    return 0;
}

void st_tls_server_deinit(st_tls_server_t *srv)
{
    if (!srv->ctx) return;
    SSL_CTX_free(srv->ctx);
    srv->ctx = NULL;
    pthread_mutex_destroy(&srv->lock);
}

SSL_CTX *st_tls_client_ctx_new(const st_tls_client_opts_t *o, char *err, size_t errlen)
{
    char e[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS: %s", st_tls_last_error(e, sizeof(e)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    if (o->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = o->ca_file ? SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL)
                            : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            snprintf(err, errlen, "CA file %s: %s", o->ca_file ? o->ca_file : "(system)",
                     st_tls_last_error(e, sizeof(e)));
            goto fail;
        }
    }
    if (o->cert_file || o->key_file) {
        if (!o->cert_file || !o->key_file) {
            snprintf(err, errlen, "a client certificate needs both a certificate and a key file");
            goto fail;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errlen, "client certificate %s / key %s: %s", o->cert_file, o->key_file,
                     st_tls_last_error(e, sizeof(e)));
            goto fail;
        }
    }
    static const unsigned char h11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(ctx, h11, sizeof(h11));
    return ctx;
fail: /* err says why */
    SSL_CTX_free(ctx);
    return NULL;
}

static int session_init(st_tls_t *t, SSL_CTX *ctx)
{
    memset(t, 0, sizeof(*t));
    t->ssl = SSL_new(ctx);
    if (!t->ssl) return -1;
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        t->ssl = NULL;
        return -1;
    }
    BIO_set_mem_eof_return(t->rbio, -1); /* empty means "more later", not EOF */
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    return 0;
}

int st_tls_accept(st_tls_t *t, st_tls_server_t *srv)
{
    pthread_mutex_lock(&srv->lock);
    SSL_CTX *ctx = srv->ctx;
    SSL_CTX_up_ref(ctx);
    pthread_mutex_unlock(&srv->lock);
    int rc = session_init(t, ctx);
    SSL_CTX_free(ctx); /* the SSL holds its own reference */
    if (rc != 0) return -1;
    SSL_set_accept_state(t->ssl);
    return 0;
}

int st_tls_connect(st_tls_t *t, SSL_CTX *ctx, const char *host, SSL_SESSION *session)
{
    if (session_init(t, ctx) != 0) return -1;
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
    } else {
        SSL_set_tlsext_host_name(t->ssl, host);
        SSL_set1_host(t->ssl, host);
    }
    if (session) SSL_set_session(t->ssl, session);
    SSL_set_connect_state(t->ssl);
    return st_tls_handshake(t) < 0 ? -1 : 0;
}

void st_tls_free(st_tls_t *t)
{
    if (t->ssl) SSL_free(t->ssl); /* frees both BIOs */
    memset(t, 0, sizeof(*t));
}

int st_tls_feed(st_tls_t *t, const char *data, size_t len)
{
    return BIO_write(t->rbio, data, (int)len) == (int)len ? 0 : -1;
}

int st_tls_handshake(st_tls_t *t)
{
    if (t->handshaken) return 1;
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->handshaken = 1;
        return 1;
    }
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    t->failed = 1;
    return -1;
}

long st_tls_read(st_tls_t *t, char *buf, size_t len)
{
    if (len == 0) return 0;
    int rc = SSL_read(t->ssl, buf, len > 0x40000000 ? 0x40000000 : (int)len);
    if (rc > 0) return rc;
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    t->failed = e != SSL_ERROR_ZERO_RETURN;
    return -1;
}

int st_tls_has_input(const st_tls_t *t)
{
    return SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(t->rbio) > 0;
}

int st_tls_encrypt(st_tls_t *t, const char *data, size_t len)
{
    while (len > 0) {
        int n = len > 0x40000000 ? 0x40000000 : (int)len;
        int rc = SSL_write(t->ssl, data, n);
        if (rc <= 0) {
            t->failed = 1;
            return -1;
        }
        data += rc;
        len -= (size_t)rc;
    }
    return 0;
}

int st_tls_encrypt_iov(st_tls_t *t, const uv_buf_t *iov, size_t n, char *scratch,
                       size_t scratch_len)
{
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = iov[i].base;
        size_t len = iov[i].len;
        if (len >= scratch_len) { /* a large piece goes as is, after what is gathered */
            if ((used && st_tls_encrypt(t, scratch, used) != 0) || st_tls_encrypt(t, p, len) != 0)
                return -1;
            used = 0;
            continue;
        }
        if (used + len > scratch_len) {
            if (st_tls_encrypt(t, scratch, used) != 0) return -1;
            used = 0;
        }
        memcpy(scratch + used, p, len);
        used += len;
    }
    return used ? st_tls_encrypt(t, scratch, used) : 0;
}

long st_tls_take_output(st_tls_t *t, char **out)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    *out = NULL;
    if (n == 0) return 0;
    char *buf = malloc(n);
    if (!buf) return -1;
    int got = BIO_read(t->wbio, buf, (int)n);
    if (got <= 0) {
        free(buf);
        return 0;
    }
    *out = buf;
    return got;
}

enum st_tls_fail st_tls_failure_reason(const st_tls_t *t)
{
    if (t->ssl && SSL_get_verify_result(t->ssl) != X509_V_OK) return ST_TLSFAIL_VERIFY;
    return t->handshaken ? ST_TLSFAIL_PROTOCOL : ST_TLSFAIL_HANDSHAKE;
}
