/*
 * wbatch: a write batch, the iovecs queued for one destination socket and
 * sent together. Frames (chunk sizes) are formatted inside the batch; the
 * bytes of the other iovecs belong to the caller's read buffers, which it
 * must not reuse while a batch holding them is in flight.
 *
 * An owner (a client connection) fills one batch per destination with
 * st_wbatch_add / st_wbatch_add_chunk_size and sends it with
 * st_wbatch_send: inline (uv_try_write) when the socket takes it all, else
 * the rest is copied into a heap batch handed to uv_write. A heap batch
 * comes from the worker's st_wbatch_pool_t free list and goes back to it when
 * the write completes, just before the owner's done callback runs; no
 * allocation per request once the pool is warm.
 */
#ifndef ST_WBATCH_H
#define ST_WBATCH_H

#include <stddef.h>
#include <uv.h>

#include "tls.h"

#define ST_WBATCH_IOV   16
#define ST_WBATCH_FRAME 24  /* bytes of one formatted frame */
#define ST_WBATCH_KEEP  256 /* heap batches kept on a pool's free list at most */

/* st_wbatch_add / st_wbatch_add_chunk_size: no room left, send the batch first */
#define ST_WBATCH_FULL 1

typedef struct st_wbatch st_wbatch_t;
typedef struct st_wbatch_pool st_wbatch_pool_t;

/* A heap batch's write finished (status: libuv's). The batch is back in its
 * pool already. */
typedef void (*st_wbatch_done_cb)(void *owner, int dir, int status);

struct st_wbatch {
    uv_write_t req;
    void *owner;            /* heap batch: whose write it is */
    st_wbatch_pool_t *pool; /* heap batch: the pool it goes back to */
    st_wbatch_done_cb done; /* heap batch: called when the write finished */
    int dir;                /* heap batch: the owner's destination index */
    int n;
    uv_buf_t iov[ST_WBATCH_IOV];
    int nframes;
    char frames[ST_WBATCH_IOV][ST_WBATCH_FRAME];
    char *owned; /* TLS: the ciphertext buffer this batch sends, freed after */
};

/* The free list of heap batches a worker embeds (one per loop, no lock). */
struct st_wbatch_pool {
    st_wbatch_t **free;
    size_t nfree;
};

/* 0 or UV_ENOMEM. */
int st_wbatch_pool_init(st_wbatch_pool_t *p);
/* Frees the batches on the free list and the list (none may be in flight). */
void st_wbatch_pool_free(st_wbatch_pool_t *p);

/* An empty batch (a batch being filled lives in its owner, zeroed). */
static inline void st_wbatch_clear(st_wbatch_t *b)
{
    b->n = b->nframes = 0;
}
/* Frees what a batch being filled owns (its TLS output, if any). */
void st_wbatch_release(st_wbatch_t *b);

static inline int st_wbatch_is_frame(const st_wbatch_t *b, const char *base)
{
    return base >= b->frames[0] && base < b->frames[ST_WBATCH_IOV - 1] + ST_WBATCH_FRAME;
}

/* Queues p[0..n): extends the last iovec when contiguous with it. 0, or
 * ST_WBATCH_FULL when no iovec is left (nothing queued). Inline: the hot
 * path of every relayed span. */
static inline int st_wbatch_add(st_wbatch_t *b, const char *p, size_t n)
{
    if (n == 0) return 0;
    if (b->n > 0) { /* extend the previous iovec when contiguous */
        uv_buf_t *last = &b->iov[b->n - 1];
        if (!st_wbatch_is_frame(b, last->base) && last->base + last->len == p) {
            last->len += n;
            return 0;
        }
    }
    if (b->n == ST_WBATCH_IOV) return ST_WBATCH_FULL;
    b->iov[b->n++] = uv_buf_init((char *)p, (unsigned)n);
    return 0;
}
/* Queues a chunk-size line ("%llx\r\n"). 0, or ST_WBATCH_FULL. */
int st_wbatch_add_chunk_size(st_wbatch_t *b, unsigned long long v);

/* TLS: encrypts the batch into one ciphertext iovec the batch owns (the
 * plaintext sources are free again right away). 1: ciphertext queued, 0:
 * nothing to send, -1: error (the batch is empty in every case but 1). */
int st_wbatch_encrypt(st_wbatch_t *b, st_tls_t *tls, char *scratch, size_t scratch_len);

/* Sends the batch to s: first with uv_try_write when try_first (nothing of
 * the owner's is in flight to s), the rest with uv_write from a heap batch of
 * pool whose completion calls done(owner, dir, status). The batch is empty
 * afterwards. 0: all written inline, 1: a heap batch in flight, -1: error. */
int st_wbatch_send(st_wbatch_t *b, st_wbatch_pool_t *pool, uv_stream_t *s, int try_first,
                   st_wbatch_done_cb done, void *owner, int dir);

#endif
