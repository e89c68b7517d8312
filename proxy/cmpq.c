/* cmpq: the worker -> comparator ring (see cmpq.h). */
#include "cmpq.h"

#include <stdlib.h>
#include <string.h>

/* A counter with one writer: a relaxed load and store, no lock prefix. */
#define ONE_WRITER_ADD(field, n)                                                                   \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n),    \
                          memory_order_relaxed)

st_cmpq_t *st_cmpq_new(size_t capacity)
{
    size_t cap = 1;
    while (cap < capacity)
        cap <<= 1;
    st_cmpq_t *q = aligned_alloc(64, (sizeof(*q) + 63) / 64 * 64);
    if (!q) return NULL;
    memset(q, 0, sizeof(*q));
    q->slot = calloc(cap, sizeof(*q->slot));
    if (!q->slot) {
        free(q);
        return NULL;
    }
    q->mask = cap - 1;
    return q;
}

void st_cmpq_free(st_cmpq_t *q)
{
    if (!q) return;
    free(q->slot);
    free(q);
}

size_t st_cmpq_capacity(const st_cmpq_t *q)
{
    return q->mask + 1;
}

int st_cmpq_push(st_cmpq_t *q, void *job, size_t bytes)
{
    size_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    /* acquire: the consumer's read of the slot we are about to reuse
     * happened before it moved head past it */
    size_t head = atomic_load_explicit(&q->head, memory_order_acquire);
    if (tail - head > q->mask) return -1;
    q->slot[tail & q->mask] = job;
    ONE_WRITER_ADD(q->bytes_in, bytes);
    /* release: the job's contents and the slot are visible before the tail */
    atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
    return 0;
}

void st_cmpq_held(const st_cmpq_t *q, size_t *jobs, uint64_t *bytes)
{
    /* the releases first (acquire): every push they follow is then visible
     * too, so tail >= released and in >= out from any thread; clamped anyway */
    size_t rel = atomic_load_explicit(&q->released, memory_order_acquire);
    uint64_t out = atomic_load_explicit(&q->bytes_out, memory_order_acquire);
    size_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
    uint64_t in = atomic_load_explicit(&q->bytes_in, memory_order_relaxed);
    *jobs = tail > rel ? tail - rel : 0;
    *bytes = in > out ? in - out : 0;
}

void st_cmpq_count_skip(st_cmpq_t *q, enum st_cmpskip why)
{
    if (why == ST_CMPSKIP_BUSY || why == ST_CMPSKIP_BYTES) ONE_WRITER_ADD(q->skipped[why], 1);
}

uint64_t st_cmpq_skipped(const st_cmpq_t *q, enum st_cmpskip why)
{
    if (why == ST_CMPSKIP_SHUTDOWN)
        return atomic_load_explicit(&q->dropped_shutdown, memory_order_relaxed);
    if (why == ST_CMPSKIP_BUSY || why == ST_CMPSKIP_BYTES)
        return atomic_load_explicit(&q->skipped[why], memory_order_relaxed);
    return 0;
}

void *st_cmpq_pop(st_cmpq_t *q)
{
    size_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
    if (head == tail) return NULL;
    void *job = q->slot[head & q->mask];
    atomic_store_explicit(&q->head, head + 1, memory_order_release);
    return job;
}

int st_cmpq_empty(const st_cmpq_t *q)
{
    return atomic_load_explicit(&q->head, memory_order_relaxed) ==
           atomic_load_explicit(&q->tail, memory_order_acquire);
}

void st_cmpq_release(st_cmpq_t *q, size_t bytes, int dropped)
{
    if (dropped) ONE_WRITER_ADD(q->dropped_shutdown, 1);
    atomic_store_explicit(&q->bytes_out,
                          atomic_load_explicit(&q->bytes_out, memory_order_relaxed) + bytes,
                          memory_order_release);
    atomic_store_explicit(&q->released,
                          atomic_load_explicit(&q->released, memory_order_relaxed) + 1,
                          memory_order_release);
}
