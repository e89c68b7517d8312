/* wbatch: write batches and their free list (see wbatch.h). */
#include "wbatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int st_wbatch_pool_init(st_wbatch_pool_t *p)
{
    p->nfree = 0;
    p->free = calloc(ST_WBATCH_KEEP, sizeof(*p->free));
    return p->free ? 0 : UV_ENOMEM;
}

void st_wbatch_pool_free(st_wbatch_pool_t *p)
{
    while (p->nfree)
        free(p->free[--p->nfree]);
    free(p->free);
    p->free = NULL;
}

void st_wbatch_release(st_wbatch_t *b)
{
    free(b->owned);
    b->owned = NULL;
}

int st_wbatch_add_chunk_size(st_wbatch_t *b, unsigned long long v)
{
    if (b->n == ST_WBATCH_IOV || b->nframes == ST_WBATCH_IOV) return ST_WBATCH_FULL;
    char *f = b->frames[b->nframes++];
    int n = snprintf(f, ST_WBATCH_FRAME, "%llx\r\n", v);
    b->iov[b->n++] = uv_buf_init(f, (unsigned)n);
    return 0;
}

int st_wbatch_encrypt(st_wbatch_t *b, st_tls_t *tls, char *scratch, size_t scratch_len)
{
    int rc = st_tls_encrypt_iov(tls, b->iov, (size_t)b->n, scratch, scratch_len);
    st_wbatch_clear(b);
    char *out;
    long n = rc == 0 ? st_tls_take_output(tls, &out) : -1;
    if (n <= 0) return (int)n;
    b->iov[0] = uv_buf_init(out, (unsigned)n);
    b->n = 1;
    b->owned = out;
    return 1;
}

static void on_written(uv_write_t *req, int status)
{
    st_wbatch_t *b = (st_wbatch_t *)req;
    st_wbatch_pool_t *pool = b->pool;
    st_wbatch_done_cb done = b->done;
    void *owner = b->owner;
    int dir = b->dir;
    st_wbatch_release(b);
    if (pool->nfree < ST_WBATCH_KEEP)
        pool->free[pool->nfree++] = b;
    else
        free(b);
    done(owner, dir, status);
}

int st_wbatch_send(st_wbatch_t *b, st_wbatch_pool_t *pool, uv_stream_t *s, int try_first,
                   st_wbatch_done_cb done, void *owner, int dir)
{
    if (b->n == 0) return 0;
    int first = 0;
    if (try_first) {
        int rc = uv_try_write(s, b->iov, (unsigned)b->n);
        if (rc < 0 && rc != UV_EAGAIN) {
            st_wbatch_clear(b);
            st_wbatch_release(b);
            return -1;
        }
        size_t left = rc > 0 ? (size_t)rc : 0;
        while (first < b->n && left >= b->iov[first].len)
            left -= b->iov[first++].len;
        if (first < b->n && left) {
            b->iov[first].base += left;
            b->iov[first].len -= left;
        }
    }
    if (first == b->n) {
        st_wbatch_clear(b);
        st_wbatch_release(b);
        return 0;
    }
    st_wbatch_t *h = pool->nfree ? pool->free[--pool->nfree] : malloc(sizeof(*h));
    if (!h) {
        st_wbatch_clear(b);
        st_wbatch_release(b);
        return -1;
    }
    memcpy(h, b, sizeof(*h));
    b->owned = NULL;                 /* now the heap batch's */
    for (int i = 0; i < h->n; i++) { /* frames moved with the copy */
        char *base = h->iov[i].base;
        if (st_wbatch_is_frame(b, base)) h->iov[i].base = h->frames[0] + (base - b->frames[0]);
    }
    h->owner = owner;
    h->pool = pool;
    h->done = done;
    h->dir = dir;
    st_wbatch_clear(b);
    if (uv_write(&h->req, s, h->iov + first, (unsigned)(h->n - first), on_written) != 0) {
        free(h->owned);
        free(h);
        return -1;
    }
    return 1;
}
