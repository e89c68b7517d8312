/*
 * Unit tests of the worker -> comparator queue: the SPSC ring (proxy/cmpq.c:
 * order, full and empty, wrap-around, what is held until released, and a
 * producer and a consumer thread racing over a million jobs) and the
 * producer end (st_cmpfeed_*: the length cap, the byte budget, the least
 * loaded ring, the admission asked before capturing, and a wake sent only
 * to a thread that sleeps).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <uv.h>

#include "../../proxy/cmpq.h"
#include "../../proxy/cmpthread.h"

#define JOB(n) ((void *)(uintptr_t)(n))

static void test_capacity_rounds_up(void **state)
{
    (void)state;
    size_t want[] = {1, 2, 3, 5, 64, 100};
    size_t got[] = {1, 2, 4, 8, 64, 128};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        st_cmpq_t *q = st_cmpq_new(want[i]);
        assert_non_null(q);
        assert_int_equal(st_cmpq_capacity(q), got[i]);
        st_cmpq_free(q);
    }
}

static void test_fifo_full_and_empty(void **state)
{
    (void)state;
    st_cmpq_t *q = st_cmpq_new(4);
    assert_true(st_cmpq_empty(q));
    assert_null(st_cmpq_pop(q));
    for (uintptr_t i = 1; i <= 4; i++)
        assert_int_equal(st_cmpq_push(q, JOB(i), 10), 0);
    assert_int_equal(st_cmpq_push(q, JOB(5), 10), -1); /* every slot taken */
    assert_false(st_cmpq_empty(q));
    for (uintptr_t i = 1; i <= 4; i++)
        assert_ptr_equal(st_cmpq_pop(q), JOB(i));
    assert_null(st_cmpq_pop(q));
    assert_true(st_cmpq_empty(q));
    assert_int_equal(st_cmpq_push(q, JOB(6), 10), 0); /* slots free again once popped */
    assert_ptr_equal(st_cmpq_pop(q), JOB(6));
    st_cmpq_free(q);
}

static void test_wraps_around(void **state)
{
    (void)state;
    st_cmpq_t *q = st_cmpq_new(8);
    uintptr_t next_in = 1, next_out = 1;
    for (int round = 0; round < 1000; round++) { /* indices pass the capacity many times */
        int k = 1 + round % 8;
        for (int i = 0; i < k; i++)
            assert_int_equal(st_cmpq_push(q, JOB(next_in++), 1), 0);
        for (int i = 0; i < k; i++) {
            assert_ptr_equal(st_cmpq_pop(q), JOB(next_out++));
            st_cmpq_release(q, 1, 0);
        }
    }
    size_t jobs;
    uint64_t bytes;
    st_cmpq_held(q, &jobs, &bytes);
    assert_int_equal(jobs, 0);
    assert_int_equal(bytes, 0);
    st_cmpq_free(q);
}

static void test_held_until_released(void **state)
{
    (void)state;
    st_cmpq_t *q = st_cmpq_new(8);
    size_t jobs;
    uint64_t bytes;
    st_cmpq_push(q, JOB(1), 10);
    st_cmpq_push(q, JOB(2), 20);
    st_cmpq_push(q, JOB(3), 30);
    st_cmpq_held(q, &jobs, &bytes);
    assert_int_equal(jobs, 3);
    assert_int_equal(bytes, 60);
    st_cmpq_pop(q); /* being compared: still held */
    st_cmpq_held(q, &jobs, &bytes);
    assert_int_equal(jobs, 3);
    assert_int_equal(bytes, 60);
    st_cmpq_release(q, 10, 0);
    st_cmpq_held(q, &jobs, &bytes);
    assert_int_equal(jobs, 2);
    assert_int_equal(bytes, 50);
    st_cmpq_pop(q);
    st_cmpq_pop(q);
    st_cmpq_release(q, 20, 1); /* dropped at shutdown */
    st_cmpq_release(q, 30, 1);
    st_cmpq_held(q, &jobs, &bytes);
    assert_int_equal(jobs, 0);
    assert_int_equal(bytes, 0);
    assert_int_equal(st_cmpq_skipped(q, ST_CMPSKIP_SHUTDOWN), 2);
    assert_int_equal(atomic_load(&q->tail), 3);
    st_cmpq_count_skip(q, ST_CMPSKIP_BUSY);
    st_cmpq_count_skip(q, ST_CMPSKIP_BYTES);
    st_cmpq_count_skip(q, ST_CMPSKIP_BYTES);
    assert_int_equal(st_cmpq_skipped(q, ST_CMPSKIP_BUSY), 1);
    assert_int_equal(st_cmpq_skipped(q, ST_CMPSKIP_BYTES), 2);
    st_cmpq_free(q);
}

/* ---- two threads ---------------------------------------------------------- */

#define RACE_JOBS 1000000

typedef struct {
    st_cmpq_t *q;
    uint64_t bytes_pushed;
    unsigned full; /* pushes refused (every slot taken), then retried */
} race_t;

static void *producer(void *arg)
{
    race_t *r = arg;
    for (uintptr_t i = 1; i <= RACE_JOBS; i++) {
        size_t b = i % 7;
        while (st_cmpq_push(r->q, JOB(i), b) != 0) {
            r->full++;
            sched_yield();
        }
        r->bytes_pushed += b;
    }
    return NULL;
}

static void test_producer_and_consumer_threads(void **state)
{
    (void)state;
    race_t r = {st_cmpq_new(64), 0, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, producer, &r), 0);
    uintptr_t want = 1;
    uint64_t bytes = 0;
    while (want <= RACE_JOBS) {
        void *j = st_cmpq_pop(r.q);
        if (!j) {
            sched_yield();
            continue;
        }
        assert_ptr_equal(j, JOB(want)); /* every job, once, in order */
        bytes += want % 7;
        st_cmpq_release(r.q, want % 7, 0);
        want++;
    }
    pthread_join(t, NULL);
    assert_null(st_cmpq_pop(r.q));
    assert_int_equal(bytes, r.bytes_pushed);
    size_t jobs;
    uint64_t held;
    st_cmpq_held(r.q, &jobs, &held);
    assert_int_equal(jobs, 0);
    assert_int_equal(held, 0);
    st_cmpq_free(r.q);
}

/* ---- the producer end ----------------------------------------------------- */

typedef struct {
    uv_loop_t loop;
    st_cmpthread_t ct[2];
    int wakes[2];
} feed_env_t;

static void on_test_wake(uv_async_t *a)
{
    int *n = a->data;
    (*n)++;
}

static feed_env_t *env_new(void)
{
    feed_env_t *e = calloc(1, sizeof(*e));
    uv_loop_init(&e->loop);
    for (int t = 0; t < 2; t++) {
        e->ct[t].rings = calloc(1, sizeof(st_cmpq_t *));
        e->ct[t].rings[0] = st_cmpq_new(16);
        e->ct[t].nrings = 1;
        uv_async_init(&e->loop, &e->ct[t].wake, on_test_wake);
        e->ct[t].wake.data = &e->wakes[t];
    }
    return e;
}

static void env_free(feed_env_t *e)
{
    for (int t = 0; t < 2; t++) {
        void *j;
        while ((j = st_cmpq_pop(e->ct[t].rings[0])) != NULL)
            st_cmpjob_free(j);
        st_cmpq_free(e->ct[t].rings[0]);
        free(e->ct[t].rings);
        uv_close((uv_handle_t *)&e->ct[t].wake, NULL);
    }
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    free(e);
}

static st_cmpjob_t *job_of(size_t bytes)
{
    st_cmpjob_t *j = st_cmpjob_new(ST_CMPJOB_PAIR);
    assert_non_null(j);
    j->bytes = bytes;
    return j;
}

static size_t held_jobs(st_cmpthread_t *ct)
{
    size_t jobs;
    uint64_t bytes;
    st_cmpq_held(ct->rings[0], &jobs, &bytes);
    return jobs;
}

static uint64_t skipped(feed_env_t *e, enum st_cmpskip why)
{
    return st_cmpq_skipped(e->ct[0].rings[0], why) + st_cmpq_skipped(e->ct[1].rings[0], why);
}

static void test_feed_length_cap_and_least_loaded(void **state)
{
    (void)state;
    feed_env_t *e = env_new();
    st_cmpfeed_t f;
    st_cmpfeed_init(&f, e->ct, 2, 0, 3, 1 << 20);
    for (int i = 0; i < 3; i++)
        assert_int_equal(st_cmpfeed_submit(&f, job_of(100)), 0);
    /* spread over both threads: 2 + 1 */
    assert_int_equal(held_jobs(&e->ct[0]) + held_jobs(&e->ct[1]), 3);
    assert_true(held_jobs(&e->ct[0]) >= 1 && held_jobs(&e->ct[1]) >= 1);
    assert_int_equal(st_cmpfeed_submit(&f, job_of(100)), -1); /* the 4th: over the cap, freed */
    assert_int_equal(skipped(e, ST_CMPSKIP_BUSY), 1);
    assert_int_equal(skipped(e, ST_CMPSKIP_BYTES), 0);
    /* a thread that finished one has room again, and gets the next job */
    st_cmpthread_t *lighter = held_jobs(&e->ct[0]) == 1 ? &e->ct[0] : &e->ct[1];
    st_cmpthread_t *heavier = lighter == &e->ct[0] ? &e->ct[1] : &e->ct[0];
    void *j = st_cmpq_pop(heavier->rings[0]);
    st_cmpq_release(heavier->rings[0], ((st_cmpjob_t *)j)->bytes, 0);
    st_cmpjob_free(j);
    assert_int_equal(held_jobs(heavier), 1);
    assert_int_equal(st_cmpfeed_submit(&f, job_of(100)), 0);
    assert_int_equal(held_jobs(&e->ct[0]) + held_jobs(&e->ct[1]), 3);
    env_free(e);
}

static void test_feed_byte_budget(void **state)
{
    (void)state;
    feed_env_t *e = env_new();
    st_cmpfeed_t f;
    st_cmpfeed_init(&f, e->ct, 2, 0, 100, 250);
    assert_int_equal(st_cmpfeed_submit(&f, job_of(100)), 0);
    assert_int_equal(st_cmpfeed_submit(&f, job_of(100)), 0);
    assert_int_equal(st_cmpfeed_submit(&f, job_of(100)), -1); /* 300 > 250 */
    assert_int_equal(st_cmpfeed_submit(&f, job_of(50)), 0);   /* 250: fits exactly */
    assert_int_equal(st_cmpfeed_submit(&f, job_of(1)), -1);
    assert_int_equal(skipped(e, ST_CMPSKIP_BYTES), 2);
    assert_int_equal(skipped(e, ST_CMPSKIP_BUSY), 0);
    assert_int_equal(st_cmpfeed_submit(&f, job_of(1000)), -1); /* larger than the budget */
    assert_int_equal(skipped(e, ST_CMPSKIP_BYTES), 3);
    env_free(e);
}

static void test_feed_admit_before_capturing(void **state)
{
    (void)state;
    feed_env_t *e = env_new();
    st_cmpfeed_t f;
    st_cmpfeed_init(&f, e->ct, 2, 0, 2, 250);
    assert_int_equal(st_cmpfeed_admit(&f), 1);
    assert_int_equal(st_cmpfeed_submit(&f, job_of(100)), 0);
    assert_int_equal(st_cmpfeed_admit(&f), 1);
    assert_int_equal(st_cmpfeed_submit(&f, job_of(100)), 0);
    assert_int_equal(st_cmpfeed_admit(&f), 0); /* 2 held: the length cap */
    assert_int_equal(skipped(e, ST_CMPSKIP_BUSY), 1);
    assert_int_equal(skipped(e, ST_CMPSKIP_BYTES), 0);
    st_cmpfeed_init(&f, e->ct, 2, 0, 100, 200);
    assert_int_equal(st_cmpfeed_admit(&f), 0); /* 200 bytes held: the byte budget */
    assert_int_equal(skipped(e, ST_CMPSKIP_BYTES), 1);
    assert_int_equal(skipped(e, ST_CMPSKIP_BUSY), 1);
    env_free(e);
}

/* Pairs admitted and still in flight count against the caps before their
 * bodies are copied: at the running average size of a submitted job. */
static void test_feed_reserve_counts_pairs_in_flight(void **state)
{
    (void)state;
    feed_env_t *e = env_new();
    st_cmpfeed_t f;
    st_cmpfeed_init(&f, e->ct, 2, 0, 3, 1000);
    assert_int_equal(st_cmpfeed_reserve(&f), 1); /* empty: admitted, no estimate yet */
    assert_int_equal(st_cmpfeed_reserve(&f), 1);
    assert_int_equal(st_cmpfeed_reserve(&f), 1);
    assert_int_equal(st_cmpfeed_reserve(&f), 0); /* 3 in flight: the length cap */
    assert_int_equal(skipped(e, ST_CMPSKIP_BUSY), 1);
    assert_int_equal(st_cmpfeed_submit(&f, job_of(300)), 0); /* estimate now 300 */
    st_cmpfeed_unreserve(&f);
    assert_int_equal(held_jobs(&e->ct[0]) + held_jobs(&e->ct[1]), 1);
    assert_int_equal(st_cmpfeed_reserve(&f), 0); /* 1 held + 2 in flight: still 3 */
    assert_int_equal(skipped(e, ST_CMPSKIP_BUSY), 2);
    st_cmpfeed_unreserve(&f); /* one abandoned (never submitted) */
    /* 300 held, 1 in flight (300), this one (300): 900 <= 1000 */
    assert_int_equal(st_cmpfeed_reserve(&f), 1);
    assert_int_equal(skipped(e, ST_CMPSKIP_BYTES), 0);
    st_cmpfeed_unreserve(&f);
    st_cmpfeed_unreserve(&f);
    assert_int_equal(f.reserved, 0);
    st_cmpfeed_init(&f, e->ct, 2, 0, 100, 1000); /* the 300 still held */
    f.est_bytes = 400;
    assert_int_equal(st_cmpfeed_reserve(&f), 1); /* 300 + 400 */
    assert_int_equal(st_cmpfeed_reserve(&f), 0); /* 300 + 2 * 400 > 1000 */
    assert_int_equal(skipped(e, ST_CMPSKIP_BYTES), 1);
    st_cmpfeed_unreserve(&f);
    st_cmpfeed_unreserve(&f); /* one more than reserved: no underflow */
    assert_int_equal(f.reserved, 0);
    env_free(e);
}

static void test_feed_wakes_only_a_sleeping_thread(void **state)
{
    (void)state;
    feed_env_t *e = env_new();
    st_cmpfeed_t f;
    st_cmpfeed_init(&f, e->ct, 2, 0, 100, 1 << 20);
    atomic_store(&e->ct[0].sleeping, 1);
    atomic_store(&e->ct[1].sleeping, 0); /* busy: it will see the job itself */
    assert_int_equal(st_cmpfeed_submit(&f, job_of(1)), 0);
    assert_int_equal(st_cmpfeed_submit(&f, job_of(1)), 0);
    assert_int_equal(held_jobs(&e->ct[0]), 1);
    assert_int_equal(held_jobs(&e->ct[1]), 1);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_int_equal(e->wakes[0] + e->wakes[1], 0); /* nothing before the kick */
    st_cmpfeed_kick(&f);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_int_equal(e->wakes[0], 1);
    assert_int_equal(e->wakes[1], 0);
    assert_int_equal(atomic_load(&e->ct[0].sleeping), 0); /* woken: one wake per sleep */
    st_cmpfeed_kick(&f);                                  /* nothing pushed since */
    atomic_store(&e->ct[1].sleeping, 1);
    st_cmpfeed_kick(&f); /* still nothing pushed: a sleeping thread is not woken for nothing */
    uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_int_equal(e->wakes[0], 1);
    assert_int_equal(e->wakes[1], 0);
    env_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capacity_rounds_up),
        cmocka_unit_test(test_fifo_full_and_empty),
        cmocka_unit_test(test_wraps_around),
        cmocka_unit_test(test_held_until_released),
        cmocka_unit_test(test_producer_and_consumer_threads),
        cmocka_unit_test(test_feed_length_cap_and_least_loaded),
        cmocka_unit_test(test_feed_byte_budget),
        cmocka_unit_test(test_feed_admit_before_capturing),
        cmocka_unit_test(test_feed_reserve_counts_pairs_in_flight),
        cmocka_unit_test(test_feed_wakes_only_a_sleeping_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
