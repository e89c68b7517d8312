/*
 * Unit tests of the write batch (proxy/wbatch.c): contiguous spans merged
 * into one iovec but never into a frame, the iovec and frame limits, an
 * inline send, a send that goes to uv_write from a heap batch (frames moved
 * with the copy, the batch back on the free list before the done callback,
 * reused by the next send), and a write error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "../../proxy/wbatch.h"

typedef struct {
    uv_loop_t loop;
    uv_pipe_t pipe; /* our end of the socketpair */
    int peer;       /* the other end, read with read(2) */
    st_wbatch_pool_t pool;
    st_wbatch_t b;
    int done_calls, done_dir, done_status;
    size_t nfree_in_done;
} fixture_t;

static int setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    fixture_t *f = calloc(1, sizeof(*f));
    int sv[2];
    if (!f || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return -1;
    if (uv_loop_init(&f->loop) != 0 || uv_pipe_init(&f->loop, &f->pipe, 0) != 0 ||
        uv_pipe_open(&f->pipe, sv[0]) != 0 || st_wbatch_pool_init(&f->pool) != 0)
        return -1;
    f->peer = sv[1];
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    uv_close((uv_handle_t *)&f->pipe, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_loop_close(&f->loop);
    if (f->peer >= 0) close(f->peer);
    st_wbatch_release(&f->b);
    st_wbatch_pool_free(&f->pool);
    free(f);
    return 0;
}

static void on_done(void *owner, int dir, int status)
{
    fixture_t *f = owner;
    f->done_calls++;
    f->done_dir = dir;
    f->done_status = status;
    f->nfree_in_done = f->pool.nfree;
}

/* Reads exactly n bytes from the peer (they were written already). */
static void expect_peer(fixture_t *f, const char *want, size_t n)
{
    char got[4096];
    size_t have = 0;
    assert_true(n <= sizeof(got));
    while (have < n) {
        ssize_t r = read(f->peer, got + have, n - have);
        assert_true(r > 0);
        have += (size_t)r;
    }
    assert_memory_equal(got, want, n);
}

static void test_contiguous_spans_merge(void **state)
{
    fixture_t *f = *state;
    const char buf[] = "hello world";
    assert_int_equal(st_wbatch_add(&f->b, buf, 5), 0);
    assert_int_equal(st_wbatch_add(&f->b, buf + 5, 6), 0);
    assert_int_equal(f->b.n, 1);
    assert_int_equal(f->b.iov[0].len, 11);
    assert_int_equal(st_wbatch_add(&f->b, buf, 0), 0); /* nothing: no iovec */
    assert_int_equal(f->b.n, 1);
    assert_int_equal(st_wbatch_add(&f->b, buf, 2), 0); /* not contiguous: a new iovec */
    assert_int_equal(f->b.n, 2);
    st_wbatch_clear(&f->b);
    assert_int_equal(f->b.n, 0);
    assert_int_equal(f->b.nframes, 0);
}

static void test_frame_never_extended(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(st_wbatch_add_chunk_size(&f->b, 0x1a2b), 0);
    assert_int_equal(f->b.nframes, 1);
    assert_int_equal(f->b.iov[0].len, 6);
    assert_memory_equal(f->b.iov[0].base, "1a2b\r\n", 6);
    /* bytes that happen to follow the frame in memory are a new iovec */
    const char *after = f->b.iov[0].base + f->b.iov[0].len;
    assert_int_equal(st_wbatch_add(&f->b, after, 1), 0);
    assert_int_equal(f->b.n, 2);
}

static void test_limits(void **state)
{
    fixture_t *f = *state;
    static char spans[2 * ST_WBATCH_IOV];
    for (int i = 0; i < ST_WBATCH_IOV; i++) /* every other byte: never contiguous */
        assert_int_equal(st_wbatch_add(&f->b, spans + 2 * i, 1), 0);
    assert_int_equal(st_wbatch_add(&f->b, spans + 1, 1), ST_WBATCH_FULL);
    assert_int_equal(st_wbatch_add_chunk_size(&f->b, 1), ST_WBATCH_FULL);
    assert_int_equal(f->b.n, ST_WBATCH_IOV);
    /* contiguous with the last iovec still fits: it grows */
    assert_int_equal(st_wbatch_add(&f->b, spans + 2 * ST_WBATCH_IOV - 1, 1), 0);
    assert_int_equal(f->b.iov[ST_WBATCH_IOV - 1].len, 2);
    st_wbatch_clear(&f->b);
    for (int i = 0; i < ST_WBATCH_IOV; i++)
        assert_int_equal(st_wbatch_add_chunk_size(&f->b, (unsigned long long)i), 0);
    assert_int_equal(st_wbatch_add_chunk_size(&f->b, 99), ST_WBATCH_FULL);
    assert_int_equal(f->b.nframes, ST_WBATCH_IOV);
}

static void test_send_inline(void **state)
{
    fixture_t *f = *state;
    const char body[] = "abcdef";
    assert_int_equal(st_wbatch_add_chunk_size(&f->b, 6), 0);
    assert_int_equal(st_wbatch_add(&f->b, body, 6), 0);
    assert_int_equal(st_wbatch_add(&f->b, "\r\n", 2), 0);
    int rc = st_wbatch_send(&f->b, &f->pool, (uv_stream_t *)&f->pipe, 1, on_done, f, 1);
    assert_int_equal(rc, 0);
    assert_int_equal(f->b.n, 0);
    assert_int_equal(f->done_calls, 0); /* nothing in flight */
    expect_peer(f, "6\r\nabcdef\r\n", 11);
    /* an empty batch sends nothing */
    assert_int_equal(st_wbatch_send(&f->b, &f->pool, (uv_stream_t *)&f->pipe, 1, on_done, f, 1), 0);
}

static void test_send_heap_batch_recycled(void **state)
{
    fixture_t *f = *state;
    const char body[] = "xyz";
    for (int round = 0; round < 2; round++) {
        assert_int_equal(st_wbatch_add_chunk_size(&f->b, 3), 0);
        assert_int_equal(st_wbatch_add(&f->b, body, 3), 0);
        /* not first in line: the whole batch goes to uv_write from a heap copy */
        int rc = st_wbatch_send(&f->b, &f->pool, (uv_stream_t *)&f->pipe, 0, on_done, f, 0);
        assert_int_equal(rc, 1);
        assert_int_equal(f->b.n, 0);
        assert_int_equal(f->b.nframes, 0);
        assert_int_equal(f->pool.nfree, 0); /* taken from (or allocated for) the pool */
        /* the batch being filled is reused at once: the heap copy has its own frames */
        assert_int_equal(st_wbatch_add_chunk_size(&f->b, 0xfff), 0);
        st_wbatch_clear(&f->b);
        while (f->done_calls == round)
            assert_true(uv_run(&f->loop, UV_RUN_ONCE) >= 0);
        assert_int_equal(f->done_calls, round + 1);
        assert_int_equal(f->done_dir, 0);
        assert_int_equal(f->done_status, 0);
        assert_int_equal(f->nfree_in_done, 1); /* back on the free list before done runs */
        expect_peer(f, "3\r\nxyz", 6);
    }
}

static void test_send_error(void **state)
{
    fixture_t *f = *state;
    close(f->peer);
    f->peer = -1;
    assert_int_equal(st_wbatch_add(&f->b, "gone", 4), 0);
    int rc = st_wbatch_send(&f->b, &f->pool, (uv_stream_t *)&f->pipe, 1, on_done, f, 1);
    assert_int_equal(rc, -1);
    assert_int_equal(f->b.n, 0);
    assert_null(f->b.owned);
    assert_int_equal(f->done_calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_contiguous_spans_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_never_extended, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_inline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_heap_batch_recycled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
