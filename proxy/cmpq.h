/*
 * cmpq: a bounded, lock-free, single-producer / single-consumer ring of
 * comparison jobs from one worker loop (the producer) to one comparator
 * thread (the consumer), with the counters its caps and metrics need.
 *
 *                 slot[]  (capacity a power of two, indices run freely)
 *     head ──▶ [ j ][ j ][ j ][   ][   ] ◀── tail
 *     consumer pops at head               producer pushes at tail
 *
 *   producer: st_cmpq_push()  writes slot[tail], then tail (release)
 *   consumer: st_cmpq_pop()   reads tail (acquire), slot[head], then head
 *             st_cmpq_release() once the popped job is freed
 *
 * A job is *held* from its push until the consumer releases it (compared or
 * dropped, and freed): held jobs and bytes are what the queue's length cap
 * and byte budget bound, so a job being compared still counts. Every
 * counter has exactly one writer (the producer or the consumer, as marked),
 * so no read-modify-write is ever needed: each side stores its own
 * counters and loads the other side's. Nothing here blocks or allocates
 * after st_cmpq_new().
 */
#ifndef ST_CMPQ_H
#define ST_CMPQ_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "reasons.h" /* enum st_cmpskip: why a finished pair was not compared */

typedef struct st_cmpq {
    /* producer side: written by the worker only */
    _Alignas(64) _Atomic size_t tail; /* jobs pushed so far */
    _Atomic uint64_t bytes_in;        /* bytes pushed so far */
    _Atomic uint64_t skipped[2];      /* [ST_CMPSKIP_BUSY], [ST_CMPSKIP_BYTES] */
    /* consumer side: written by the comparator thread only */
    _Alignas(64) _Atomic size_t head;  /* jobs popped so far */
    _Atomic size_t released;           /* jobs released so far (<= head) */
    _Atomic uint64_t bytes_out;        /* bytes released so far */
    _Atomic uint64_t dropped_shutdown; /* ST_CMPSKIP_SHUTDOWN */
    /* fixed after st_cmpq_new */
    _Alignas(64) size_t mask; /* capacity - 1 */
    void **slot;
} st_cmpq_t;

/* the producer's counters are indexed by reason: these two must fit */
_Static_assert(ST_CMPSKIP_BUSY < 2 && ST_CMPSKIP_BYTES < 2 && ST_CMPSKIP_SHUTDOWN >= 2,
               "st_cmpq_t.skipped[] holds ST_CMPSKIP_BUSY and ST_CMPSKIP_BYTES");

/* A ring of at least `capacity` slots (rounded up to a power of two).
 * NULL on allocation failure. */
st_cmpq_t *st_cmpq_new(size_t capacity);
/* Frees the ring. Jobs still in it are the caller's: pop them first. */
void st_cmpq_free(st_cmpq_t *q);
size_t st_cmpq_capacity(const st_cmpq_t *q);

/* ---- producer ---- */

/* Appends job (never NULL) holding `bytes`. 0, or -1 when every slot is
 * taken (the job stays the caller's). */
int st_cmpq_push(st_cmpq_t *q, void *job, size_t bytes);
/* Jobs and bytes held (pushed and not yet released). Exact from the
 * producer; from any other thread a snapshot that may lag either side. */
void st_cmpq_held(const st_cmpq_t *q, size_t *jobs, uint64_t *bytes);
/* Counts a pair the producer dropped instead of pushing here. */
void st_cmpq_count_skip(st_cmpq_t *q, enum st_cmpskip why);
/* Pairs skipped for `why` on this ring so far; any thread (relaxed). */
uint64_t st_cmpq_skipped(const st_cmpq_t *q, enum st_cmpskip why);

/* ---- consumer ---- */

/* The oldest job, or NULL when the ring is empty. */
void *st_cmpq_pop(st_cmpq_t *q);
/* 1 when nothing waits to be popped. */
int st_cmpq_empty(const st_cmpq_t *q);
/* The consumer freed one popped job that held `bytes`; `dropped` counts it
 * as ST_CMPSKIP_SHUTDOWN. */
void st_cmpq_release(st_cmpq_t *q, size_t bytes, int dropped);

#endif
