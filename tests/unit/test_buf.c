/*
 * Unit tests of proxy/buf.c: the growable string st_sbuf_t (appends, the
 * terminating NUL, growth by doubling from 256, reserve, decimal and printf
 * appends, the non-temporal append for captures: the same bytes as memcpy
 * at every alignment and size around its threshold) and the read-buffer pool st_rpool_t (a block is
 * reused LIFO, at most maxfree blocks are kept, put empties the buffer, a put of an empty buffer is
 * a no-op, deinit frees the free list).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../proxy/buf.h"

static void test_sbuf_append_keeps_a_nul(void **state)
{
    (void)state;
    st_sbuf_t b;
    st_sbuf_init(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(st_sbuf_append(&b, "abc", 3), 0);
    assert_int_equal(b.len, 3);
    assert_int_equal(b.cap, 256); /* the first allocation */
    assert_string_equal(b.p, "abc");
    assert_int_equal(st_sbuf_appends(&b, "def"), 0);
    assert_int_equal(ST_SBUF_LIT(&b, "-gh"), 0);
    assert_int_equal(b.len, 9);
    assert_string_equal(b.p, "abcdef-gh");
    /* an empty append still terminates, and changes nothing else */
    assert_int_equal(st_sbuf_append(&b, NULL, 0), 0);
    assert_int_equal(b.len, 9);
    assert_int_equal(b.p[9], '\0');
    /* bytes with NULs inside are kept as they are */
    assert_int_equal(st_sbuf_append(&b, "x\0y", 3), 0);
    assert_int_equal(b.len, 12);
    assert_memory_equal(b.p + 9, "x\0y", 3);
    st_sbuf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void test_sbuf_grows_by_doubling(void **state)
{
    (void)state;
    st_sbuf_t b;
    st_sbuf_init(&b);
    char block[100];
    memset(block, 'q', sizeof(block));
    size_t caps_seen = 0, last_cap = 0;
    for (int i = 0; i < 50; i++) { /* 5000 bytes */
        assert_int_equal(st_sbuf_append(&b, block, sizeof(block)), 0);
        assert_true(b.cap > b.len); /* room for the NUL, always */
        assert_int_equal(b.p[b.len], '\0');
        if (b.cap != last_cap) {
            /* 256, 512, ... 8192: powers of two from 256 */
            assert_true(b.cap >= 256 && (b.cap & (b.cap - 1)) == 0);
            assert_true(last_cap == 0 || b.cap == 2 * last_cap);
            last_cap = b.cap;
            caps_seen++;
        }
    }
    assert_int_equal(b.len, 5000);
    assert_int_equal(b.cap, 8192);
    assert_int_equal(caps_seen, 6); /* 256 512 1024 2048 4096 8192 */
    for (size_t i = 0; i < b.len; i++)
        assert_int_equal(b.p[i], 'q');
    st_sbuf_free(&b);
}

static void test_sbuf_reserve(void **state)
{
    (void)state;
    st_sbuf_t b;
    st_sbuf_init(&b);
    assert_int_equal(st_sbuf_reserve(&b, 1000), 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 1024); /* > 1000 + NUL, a power of two from 256 */
    char *p = b.p;
    /* what was reserved is appended without moving the bytes */
    char block[1000];
    memset(block, 'r', sizeof(block));
    assert_int_equal(st_sbuf_append(&b, block, 1000), 0);
    assert_ptr_equal(b.p, p);
    assert_int_equal(b.cap, 1024);
    /* enough room already: reserve does nothing */
    assert_int_equal(st_sbuf_reserve(&b, 23), 0);
    assert_int_equal(b.cap, 1024);
    /* one byte more than the room (the NUL needs one): it grows */
    assert_int_equal(st_sbuf_reserve(&b, 24), 0);
    assert_int_equal(b.cap, 2048);
    assert_int_equal(b.len, 1000);
    st_sbuf_free(&b);
}

static void test_sbuf_append_u64(void **state)
{
    (void)state;
    st_sbuf_t b;
    st_sbuf_init(&b);
    const unsigned long long v[] = {0, 7, 10, 99, 100, 1234567890ULL, 18446744073709551615ULL};
    const char *want = "0,7,10,99,100,1234567890,18446744073709551615,";
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_int_equal(st_sbuf_append_u64(&b, v[i]), 0);
        assert_int_equal(ST_SBUF_LIT(&b, ","), 0);
    }
    assert_string_equal(b.p, want);
    assert_int_equal(b.len, strlen(want));
    st_sbuf_free(&b);
}

static void test_sbuf_appendf(void **state)
{
    (void)state;
    st_sbuf_t b;
    st_sbuf_init(&b);
    assert_int_equal(st_sbuf_appendf(&b, "%s=%d;", "a", 42), 0);
    assert_int_equal(st_sbuf_appendf(&b, "%.3f", 1.5), 0);
    assert_string_equal(b.p, "a=42;1.500");
    assert_int_equal(b.len, 10);
    /* an expansion longer than the first allocation */
    char big[600];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(st_sbuf_appendf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 10 + 2 + 599);
    assert_true(b.cap > b.len);
    assert_int_equal(b.p[10], '[');
    assert_int_equal(b.p[b.len - 1], ']');
    assert_int_equal(b.p[b.len], '\0');
    assert_int_equal(b.p[300], 'z');
    /* an empty expansion */
    size_t len = b.len;
    assert_int_equal(st_sbuf_appendf(&b, "%s", ""), 0);
    assert_int_equal(b.len, len);
    st_sbuf_free(&b);
}

/* st_sbuf_append_nt must give exactly what st_sbuf_append gives: every
 * source offset, destination misalignment (a prefix already in the buffer)
 * and size around ST_SBUF_NT_MIN and the 64-byte streaming step. */
static void test_sbuf_append_nt_equals_append(void **state)
{
    (void)state;
    static char src[3 * ST_SBUF_NT_MIN + 256];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (char)(i * 131u + (i >> 8));
    const size_t sizes[] = {0,
                            1,
                            63,
                            ST_SBUF_NT_MIN - 1,
                            ST_SBUF_NT_MIN,
                            ST_SBUF_NT_MIN + 1,
                            ST_SBUF_NT_MIN + 63,
                            ST_SBUF_NT_MIN + 64,
                            2 * ST_SBUF_NT_MIN + 17,
                            3 * ST_SBUF_NT_MIN};
    const size_t prefixes[] = {0, 1, 3, 15, 16, 17, 255};
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        for (size_t off = 0; off < 19; off += 3) {
            for (size_t pi = 0; pi < sizeof(prefixes) / sizeof(prefixes[0]); pi++) {
                st_sbuf_t nt, ref;
                st_sbuf_init(&nt);
                st_sbuf_init(&ref);
                assert_int_equal(st_sbuf_append(&nt, src + 100, prefixes[pi]), 0);
                assert_int_equal(st_sbuf_append(&ref, src + 100, prefixes[pi]), 0);
                assert_int_equal(st_sbuf_append_nt(&nt, src + off, sizes[si]), 0);
                assert_int_equal(st_sbuf_append(&ref, src + off, sizes[si]), 0);
                /* a second append lands after the first, also when not aligned */
                assert_int_equal(st_sbuf_append_nt(&nt, src + 7, sizes[si]), 0);
                assert_int_equal(st_sbuf_append(&ref, src + 7, sizes[si]), 0);
                assert_int_equal(nt.len, ref.len);
                assert_int_equal(nt.len, prefixes[pi] + 2 * sizes[si]);
                if (nt.len) {
                    assert_memory_equal(nt.p, ref.p, ref.len + 1); /* with the NUL */
                    assert_int_equal(nt.p[nt.len], '\0');
                }
                st_sbuf_free(&nt);
                st_sbuf_free(&ref);
            }
        }
    }
}

static void test_rpool_reuses_blocks_lifo(void **state)
{
    (void)state;
    st_rpool_t pool;
    assert_int_equal(st_rpool_init(&pool, 4096, 4), 0);
    assert_int_equal(pool.nfree, 0);
    assert_int_equal(pool.maxfree, 4);
    assert_int_equal(pool.block_size, 4096);

    st_rbuf_t a = {0}, b = {0};
    assert_int_equal(st_rbuf_get(&pool, &a), 0);
    assert_non_null(a.base);
    assert_int_equal(a.cap, 4096);
    assert_int_equal(a.filled, 0);
    assert_int_equal(a.parsed, 0);
    memset(a.base, 0xab, a.cap); /* the whole block is writable */
    assert_int_equal(st_rbuf_get(&pool, &b), 0);
    assert_ptr_not_equal(a.base, b.base);
    char *pa = a.base, *pb = b.base;

    a.filled = 100;
    a.parsed = 40;
    st_rbuf_put(&pool, &a);
    assert_null(a.base);
    assert_int_equal(a.cap, 0);
    assert_int_equal(a.filled, 0);
    assert_int_equal(a.parsed, 0);
    assert_int_equal(pool.nfree, 1);
    st_rbuf_put(&pool, &b);
    assert_int_equal(pool.nfree, 2);

    /* the last one returned is the first one given out again, reset */
    st_rbuf_t c = {0}, d = {0};
    assert_int_equal(st_rbuf_get(&pool, &c), 0);
    assert_ptr_equal(c.base, pb);
    assert_int_equal(pool.nfree, 1);
    assert_int_equal(st_rbuf_get(&pool, &d), 0);
    assert_ptr_equal(d.base, pa);
    assert_int_equal(d.cap, 4096);
    assert_int_equal(d.filled, 0);
    assert_int_equal(d.parsed, 0);
    assert_int_equal(pool.nfree, 0);

    st_rbuf_put(&pool, &c);
    st_rbuf_put(&pool, &d);
    st_rpool_deinit(&pool);
    assert_null(pool.free);
    assert_int_equal(pool.nfree, 0);
}

static void test_rpool_keeps_at_most_maxfree(void **state)
{
    (void)state;
    st_rpool_t pool;
    assert_int_equal(st_rpool_init(&pool, 512, 2), 0);
    st_rbuf_t r[5];
    char *base[5];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(st_rbuf_get(&pool, &r[i]), 0);
        base[i] = r[i].base;
    }
    for (int i = 0; i < 5; i++) {
        st_rbuf_put(&pool, &r[i]);
        assert_null(r[i].base); /* freed or kept: either way the buffer is empty */
        assert_int_equal(pool.nfree, i < 2 ? (size_t)i + 1 : 2);
    }
    /* the two kept are r[1] then r[0] (LIFO); the next get mallocs */
    st_rbuf_t x = {0}, x2 = {0}, y = {0};
    assert_int_equal(st_rbuf_get(&pool, &x), 0);
    assert_ptr_equal(x.base, base[1]);
    assert_int_equal(st_rbuf_get(&pool, &x2), 0);
    assert_ptr_equal(x2.base, base[0]);
    assert_int_equal(pool.nfree, 0);
    assert_int_equal(st_rbuf_get(&pool, &y), 0); /* a fresh block */
    assert_non_null(y.base);
    assert_int_equal(y.cap, 512);
    assert_int_equal(pool.nfree, 0);
    st_rbuf_put(&pool, &y);
    st_rbuf_put(&pool, &x);
    st_rbuf_put(&pool, &x2);
    assert_int_equal(pool.nfree, 2);
    st_rpool_deinit(&pool);
}

static void test_rpool_put_of_an_empty_buffer_is_a_no_op(void **state)
{
    (void)state;
    st_rpool_t pool;
    assert_int_equal(st_rpool_init(&pool, 256, 3), 0);
    st_rbuf_t e = {0};
    st_rbuf_put(&pool, &e);
    assert_int_equal(pool.nfree, 0);
    st_rbuf_t a = {0};
    assert_int_equal(st_rbuf_get(&pool, &a), 0);
    st_rbuf_put(&pool, &a);
    st_rbuf_put(&pool, &a); /* a second put of the same (now empty) buffer */
    assert_int_equal(pool.nfree, 1);
    st_rpool_deinit(&pool);
}

static void test_rpool_maxfree_zero_keeps_none(void **state)
{
    (void)state;
    st_rpool_t pool;
    assert_int_equal(st_rpool_init(&pool, 256, 0), 0);
    assert_non_null(pool.free);
    st_rbuf_t a = {0};
    assert_int_equal(st_rbuf_get(&pool, &a), 0);
    assert_non_null(a.base);
    st_rbuf_put(&pool, &a); /* released to malloc at once */
    assert_null(a.base);
    assert_int_equal(pool.nfree, 0);
    st_rpool_deinit(&pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sbuf_append_keeps_a_nul),
        cmocka_unit_test(test_sbuf_grows_by_doubling),
        cmocka_unit_test(test_sbuf_reserve),
        cmocka_unit_test(test_sbuf_append_u64),
        cmocka_unit_test(test_sbuf_appendf),
        cmocka_unit_test(test_sbuf_append_nt_equals_append),
        cmocka_unit_test(test_rpool_reuses_blocks_lifo),
        cmocka_unit_test(test_rpool_keeps_at_most_maxfree),
        cmocka_unit_test(test_rpool_put_of_an_empty_buffer_is_a_no_op),
        cmocka_unit_test(test_rpool_maxfree_zero_keeps_none),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
