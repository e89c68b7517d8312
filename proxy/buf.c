/* buf: growable strings and pooled read buffers (see buf.h). */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void st_sbuf_init(st_sbuf_t *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
}

void st_sbuf_free(st_sbuf_t *b)
{
    free(b->p);
    st_sbuf_init(b);
}

int st_sbuf_reserve(st_sbuf_t *b, size_t extra)
{
    if (b->cap - b->len > extra) return 0;
    return st_sbuf_grow(b, extra);
}

int st_sbuf_grow(st_sbuf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int st_sbuf_appends(st_sbuf_t *b, const char *s)
{
    return st_sbuf_append(b, s, strlen(s));
}

int st_sbuf_append_u64(st_sbuf_t *b, unsigned long long v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return st_sbuf_append(b, tmp + sizeof(tmp) - n, n);
}

int st_sbuf_appendf(st_sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || st_sbuf_reserve(b, (size_t)n + 1) != 0) return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int st_rpool_init(st_rpool_t *pool, size_t block_size, size_t maxfree)
{
    pool->free = calloc(maxfree ? maxfree : 1, sizeof(void *));
    if (!pool->free) return -1;
    pool->nfree = 0;
    pool->maxfree = maxfree;
    pool->block_size = block_size;
    return 0;
}

void st_rpool_deinit(st_rpool_t *pool)
{
    while (pool->nfree)
        free(pool->free[--pool->nfree]);
    free(pool->free);
    pool->free = NULL;
}

int st_rbuf_get(st_rpool_t *pool, st_rbuf_t *rb)
{
    rb->base = pool->nfree ? pool->free[--pool->nfree] : malloc(pool->block_size);
    if (!rb->base) return -1;
    rb->cap = pool->block_size;
    rb->filled = rb->parsed = 0;
    return 0;
}

void st_rbuf_put(st_rpool_t *pool, st_rbuf_t *rb)
{
    if (!rb->base) return;
    if (pool->nfree < pool->maxfree)
        pool->free[pool->nfree++] = rb->base;
    else
        free(rb->base);
    rb->base = NULL;
    rb->cap = rb->filled = rb->parsed = 0;
}
