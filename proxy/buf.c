/* buf: growable strings and pooled read buffers (see buf.h). */
#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

#if defined(__SSE2__)
/* dst 16-byte aligned, n a multiple of 64: streaming stores, 64 bytes a turn. */
static void copy_stream(char *dst, const char *src, size_t n)
{
    for (; n; n -= 64, src += 64, dst += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)src);
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(src + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(const void *)(src + 48));
        _mm_stream_si128((__m128i *)(void *)dst, a);
        _mm_stream_si128((__m128i *)(void *)(dst + 16), b);
        _mm_stream_si128((__m128i *)(void *)(dst + 32), c);
        _mm_stream_si128((__m128i *)(void *)(dst + 48), d);
    }
    _mm_sfence(); /* the stores are ordered before whatever publishes the buffer */
}
#endif

int st_sbuf_append_nt(st_sbuf_t *b, const void *data, size_t n)
{
#if defined(__SSE2__)
    if (n >= ST_SBUF_NT_MIN) {
        if (st_sbuf_reserve(b, n) != 0) return -1;
        char *dst = b->p + b->len;
        const char *src = data;
        size_t head = (16 - ((uintptr_t)dst & 15)) & 15; /* up to dst's alignment */
        size_t body = (n - head) & ~(size_t)63;
        memcpy(dst, src, head);
        copy_stream(dst + head, src + head, body);
        memcpy(dst + head + body, src + head + body, n - head - body);
        b->len += n;
        b->p[b->len] = '\0';
        return 0;
    }
#endif
    return st_sbuf_append(b, data, n);
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
