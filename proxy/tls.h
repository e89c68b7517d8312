/*
 * tls: OpenSSL 3 over libuv's non-blocking sockets, with memory BIOs.
 *
 * The socket never touches OpenSSL: ciphertext read from the socket is fed to
 * the read BIO and plaintext comes out of SSL_read into the connection's own
 * read buffer; plaintext to send goes into SSL_write and the ciphertext
 * collected from the write BIO is written with libuv. No call here blocks.
 *
 *   socket --read--> st_tls_feed() --> SSL --> st_tls_read() --> plaintext rbuf
 *   plaintext iovecs --> st_tls_encrypt() --> SSL --> st_tls_take_output() --> socket
 */
#ifndef ST_TLS_H
#define ST_TLS_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stddef.h>
#include <uv.h>

#include "reasons.h"

/* One TLS session on one connection. */
typedef struct {
    SSL *ssl;
    BIO *rbio;      /* network -> SSL (owned by ssl) */
    BIO *wbio;      /* SSL -> network (owned by ssl) */
    int handshaken; /* handshake complete */
    int failed;     /* fatal error seen: the connection must close */
} st_tls_t;

/* Server context for --listen, reloadable (SIGHUP) while connections use it. */
typedef struct {
    pthread_mutex_t lock; /* held only to swap or take a reference to ctx */
    SSL_CTX *ctx;
} st_tls_server_t;

/* Client context settings for one upstream. */
typedef struct {
    const char *ca_file;   /* NULL: the system store */
    const char *cert_file; /* client certificate for mutual TLS, or NULL */
    const char *key_file;
    int insecure; /* skip verification (logged as a warning) */
} st_tls_client_opts_t;

/* Loads certificate and key into a new server context (TLS 1.2+, modern
 * ciphers, ALPN http/1.1). 0, or -1 with a message in err. */
int st_tls_server_init(st_tls_server_t *srv, const char *cert, const char *key, char *err,
                       size_t errlen);
/* Builds a new context from the files and swaps it in; live connections keep
 * the one they started with. 0, or -1 with a message (old context kept). */
int st_tls_server_reload(st_tls_server_t *srv, const char *cert, const char *key, char *err,
                         size_t errlen);
void st_tls_server_deinit(st_tls_server_t *srv);

/* A client context verifying the peer (unless insecure). NULL with err. */
SSL_CTX *st_tls_client_ctx_new(const st_tls_client_opts_t *o, char *err, size_t errlen);

/* Starts a server-side session on an accepted connection. 0 or -1. */
int st_tls_accept(st_tls_t *t, st_tls_server_t *srv);
/* Starts a client-side session: SNI and host name (or IP) verification for
 * host, resuming `session` when not NULL. Writes the ClientHello to the
 * write BIO (take it with st_tls_take_output). 0 or -1. */
int st_tls_connect(st_tls_t *t, SSL_CTX *ctx, const char *host, SSL_SESSION *session);
void st_tls_free(st_tls_t *t);

/* Feeds ciphertext read from the socket. 0 or -1. */
int st_tls_feed(st_tls_t *t, const char *data, size_t len);
/* Advances the handshake. 1 done, 0 needs more input, -1 failed. */
int st_tls_handshake(st_tls_t *t);
/* Decrypts into buf. Returns bytes (> 0), 0 when nothing more is available
 * now, or -1 on a fatal error or a close_notify (t->failed tells which). */
long st_tls_read(st_tls_t *t, char *buf, size_t len);
/* 1 when decrypted or undecrypted input is still waiting inside OpenSSL. */
int st_tls_has_input(const st_tls_t *t);
/* Encrypts plaintext into the write BIO. 0 or -1. */
int st_tls_encrypt(st_tls_t *t, const char *data, size_t len);
#define ST_TLS_RECORD_MAX 16384
/* Encrypts iovecs, coalescing small pieces through scratch (scratch_len
 * bytes) so a head and a short body become one TLS record, not one each. */
int st_tls_encrypt_iov(st_tls_t *t, const uv_buf_t *iov, size_t n, char *scratch,
                       size_t scratch_len);
/* Moves what the write BIO holds into a new malloc'ed buffer the caller owns.
 * Returns its length (0: nothing, *out NULL) or -1 (ENOMEM). */
long st_tls_take_output(st_tls_t *t, char **out);

/* Why the last failure happened (its label: st_tls_fail_labels). */
enum st_tls_fail st_tls_failure_reason(const st_tls_t *t);
/* The text of the last OpenSSL error (for logs), into buf. */
const char *st_tls_last_error(char *buf, size_t len);

#endif
