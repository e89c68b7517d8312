/*
 * buf: the two buffer types of the proxy.
 *
 * st_sbuf_t, a growable byte string owned by whoever embeds it (heads we
 * build, captured bodies, mirror copies):
 *
 *     p                      p+len              p+cap
 *     |----- bytes ----------|------ free --------|
 *
 * st_rbuf_t, a fixed-size read buffer borrowed from a per-worker free list
 * (st_rpool_t) while a connection has unparsed or in-flight bytes, returned
 * as soon as it is empty, so idle keep-alive connections hold no buffer:
 *
 *     base          base+parsed        base+filled       base+cap
 *     |-- parsed ---|--- not parsed ----|------ free ------|
 *
 * Bytes in [0, parsed) may still be referenced by pending writes (zero-copy
 * forwarding); the owner resets parsed = filled = 0 only when none are.
 */
#ifndef ST_BUF_H
#define ST_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct {
    char *p;
    size_t len;
    size_t cap;
} st_sbuf_t;

void st_sbuf_init(st_sbuf_t *b);
void st_sbuf_free(st_sbuf_t *b);                 /* releases the memory, leaves an empty buffer */
int st_sbuf_reserve(st_sbuf_t *b, size_t extra); /* 0 or -1 (ENOMEM) */
int st_sbuf_grow(st_sbuf_t *b, size_t extra);    /* reserve's slow path */
/* Appends n bytes: 0 or -1. Inline: heads are built from many small pieces. */
static inline int st_sbuf_append(st_sbuf_t *b, const void *data, size_t n)
{
    if (b->cap - b->len <= n && st_sbuf_grow(b, n) != 0) return -1;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}
/* Appends n bytes like st_sbuf_append, but writes runs of ST_SBUF_NT_MIN
 * bytes or more with non-temporal stores (x86 SSE2; elsewhere a memcpy):
 * for bytes another thread reads next, which would only evict this core's
 * working set (a capture the comparator parses). 0 or -1. */
#define ST_SBUF_NT_MIN 4096
int st_sbuf_append_nt(st_sbuf_t *b, const void *data, size_t n);
int st_sbuf_appends(st_sbuf_t *b, const char *s); /* NUL-terminated */
/* Appends a string literal (length known at compile time). */
#define ST_SBUF_LIT(b, lit) st_sbuf_append((b), (lit), sizeof(lit) - 1)
int st_sbuf_append_u64(st_sbuf_t *b, unsigned long long v); /* decimal, no printf */
int st_sbuf_appendf(st_sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef struct {
    char *base;
    size_t cap;
    size_t filled;
    size_t parsed;
} st_rbuf_t;

/* Free list of equally sized blocks, one per worker (no locking). */
typedef struct {
    void **free; /* stack of free blocks */
    size_t nfree;
    size_t maxfree; /* blocks kept beyond this are released to malloc */
    size_t block_size;
} st_rpool_t;

int st_rpool_init(st_rpool_t *pool, size_t block_size, size_t maxfree);
void st_rpool_deinit(st_rpool_t *pool);
/* Gives rb a block (rb->base == NULL before). 0 or -1. */
int st_rbuf_get(st_rpool_t *pool, st_rbuf_t *rb);
/* Returns rb's block to the pool; rb becomes empty. */
void st_rbuf_put(st_rpool_t *pool, st_rbuf_t *rb);

#endif
