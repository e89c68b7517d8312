/*
 * Unit tests of proxy/mesh.c: the sampling point of a request id (SHA-256 as
 * docs/ARCHITECTURE.md specifies it, checked against the FIPS 180-2 "abc"
 * vector), the share boundaries, the wire form of a half (round trip, and
 * every malformed form refused), the digests of redacted header values and
 * the loop guard's Host test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../proxy/mesh.h"
#include "../../proxy/metrics.h"

static uint32_t point_of_hex(const char *hex)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = hex[i];
        v = v << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return (uint32_t)(v % ST_MESH_POINTS);
}

static void test_point_is_sha256_of_the_id(void **state)
{
    (void)state;
    st_mesh_hash_t h;
    assert_int_equal(st_mesh_hash_init(&h), 0);
    /* FIPS 180-2, appendix B.1: SHA-256("abc") */
    const char *abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_int_equal(st_mesh_point(&h, "abc", 3), point_of_hex(abc));
    /* the empty string's digest (FIPS 180-4 examples) */
    const char *empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_int_equal(st_mesh_point(&h, "", 0), point_of_hex(empty));
    /* the same id gives the same point every time (the context is reused) */
    uint32_t p = st_mesh_point(&h, "0f8fad5b-d9cb-469f-a165-70867728950e", 36);
    for (int i = 0; i < 100; i++)
        assert_int_equal(st_mesh_point(&h, "0f8fad5b-d9cb-469f-a165-70867728950e", 36), p);
    assert_true(p < ST_MESH_POINTS);
    st_mesh_hash_free(&h);
}

static void test_share_boundaries(void **state)
{
    (void)state;
    assert_false(st_mesh_in_share(0, 0));
    assert_true(st_mesh_in_share(ST_MESH_POINTS - 1, 100));
    assert_true(st_mesh_in_share(499999, 50));
    assert_false(st_mesh_in_share(500000, 50));
    assert_true(st_mesh_in_share(0, 0.0001)); /* the resolution: one point in a million */
    assert_false(st_mesh_in_share(1, 0.0001));
    assert_false(st_mesh_in_share(ST_MESH_POINTS, 100)); /* "no point": never sampled */
}

/* Ids that differ in one character spread uniformly: about P% are in. */
static void test_share_fraction(void **state)
{
    (void)state;
    st_mesh_hash_t h;
    assert_int_equal(st_mesh_hash_init(&h), 0);
    int in = 0, n = 100000;
    for (int i = 0; i < n; i++) {
        char id[32];
        int len = snprintf(id, sizeof(id), "req-%08d", i);
        in += st_mesh_in_share(st_mesh_point(&h, id, (size_t)len), 25);
    }
    assert_true(in > 24000 && in < 26000);
    st_mesh_hash_free(&h);
}

static void fill(st_capture_t *c)
{
    st_capture_init(c);
    c->status = 503;
    st_capture_header(c, "content-type", 12, "application/json", 16);
    st_capture_header(c, "x-empty", 7, "", 0);
    st_capture_body(c, "{\"a\":1}\0tail", 12, 1 << 20); /* a NUL inside the body survives */
    c->truncated = 1;
    c->error = "timeout";
    c->seconds = 0.012345;
}

static void test_wire_round_trip(void **state)
{
    (void)state;
    st_capture_t c, d;
    fill(&c);
    st_sbuf_t w;
    st_sbuf_init(&w);
    assert_int_equal(st_mesh_encode(&w, &c, 1764700000123LL), 0);
    st_capture_init(&d);
    int64_t ms = 0;
    assert_int_equal(st_mesh_decode(w.p, w.len, &d, &ms), 0);
    assert_int_equal(ms, 1764700000123LL);
    assert_int_equal(d.status, 503);
    assert_int_equal(d.nheaders, 2);
    assert_int_equal(d.names.len, c.names.len);
    assert_memory_equal(d.names.p, c.names.p, c.names.len);
    assert_int_equal(d.body.len, 12);
    assert_memory_equal(d.body.p, c.body.p, 12);
    assert_int_equal(d.truncated, 1);
    assert_string_equal(d.error, "timeout");
    assert_true(d.seconds > 0.012344 && d.seconds < 0.012346);
    st_capture_free(&d);
    /* no error, no headers, no body */
    st_capture_t e, f;
    st_capture_init(&e);
    e.status = 204;
    st_sbuf_t w2;
    st_sbuf_init(&w2);
    assert_int_equal(st_mesh_encode(&w2, &e, 5), 0);
    st_capture_init(&f);
    assert_int_equal(st_mesh_decode(w2.p, w2.len, &f, NULL), 0);
    assert_int_equal(f.status, 204);
    assert_null(f.error);
    assert_int_equal(f.nheaders, 0);
    assert_int_equal(f.body.len, 0);
    assert_int_equal(f.truncated, 0);
    st_capture_free(&f);
    st_sbuf_free(&w2);
    st_sbuf_free(&w);
    st_capture_free(&c);
}

static void test_malformed_wire_is_refused(void **state)
{
    (void)state;
    st_capture_t c, d;
    fill(&c);
    st_sbuf_t w;
    st_sbuf_init(&w);
    assert_int_equal(st_mesh_encode(&w, &c, 1), 0);
    /* every prefix of a valid half, and the half with one byte more */
    for (size_t n = 0; n < w.len; n++) {
        st_capture_init(&d);
        assert_int_equal(st_mesh_decode(w.p, n, &d, NULL), -1);
        assert_int_equal(d.names.len + d.body.len, 0); /* nothing kept */
        st_capture_free(&d);
    }
    char *longer = malloc(w.len + 1);
    memcpy(longer, w.p, w.len);
    longer[w.len] = 'x';
    st_capture_init(&d);
    assert_int_equal(st_mesh_decode(longer, w.len + 1, &d, NULL), -1);
    st_capture_free(&d);
    /* bad magic */
    memcpy(longer, w.p, w.len);
    longer[0] = 'X';
    st_capture_init(&d);
    assert_int_equal(st_mesh_decode(longer, w.len, &d, NULL), -1);
    st_capture_free(&d);
    /* a header count that does not match the names block (offset: 23 + "timeout") */
    memcpy(longer, w.p, w.len);
    longer[23 + 7 + 3] = 3;
    st_capture_init(&d);
    assert_int_equal(st_mesh_decode(longer, w.len, &d, NULL), -1);
    st_capture_free(&d);
    /* a names block whose last value lost its NUL */
    memcpy(longer, w.p, w.len);
    size_t names_at = 23 + 7 + 8;
    longer[names_at + c.names.len - 1] = 'z';
    st_capture_init(&d);
    assert_int_equal(st_mesh_decode(longer, w.len, &d, NULL), -1);
    st_capture_free(&d);
    /* an unknown error name decodes to a known one, never a pointer into the bytes */
    memcpy(longer, w.p, w.len);
    memcpy(longer + 23, "bogusxx", 7);
    st_capture_init(&d);
    assert_int_equal(st_mesh_decode(longer, w.len, &d, NULL), 0);
    assert_string_equal(d.error, "protocol");
    st_capture_free(&d);
    free(longer);
    st_sbuf_free(&w);
    st_capture_free(&c);
}

static const char *header_value(const st_capture_t *c, const char *name)
{
    const char *p = c->names.p;
    for (size_t i = 0; i < c->nheaders; i++) {
        const char *v = p + strlen(p) + 1;
        if (strcmp(p, name) == 0) return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

static void test_redacted_values_become_digests(void **state)
{
    (void)state;
    st_mesh_hash_t h;
    assert_int_equal(st_mesh_hash_init(&h), 0);
    st_rules_t *rules = st_rules_default();
    st_capture_t a, b, c;
    st_capture_init(&a);
    st_capture_init(&b);
    st_capture_init(&c);
    st_capture_header(&a, "content-type", 12, "text/plain", 10);
    st_capture_header(&a, "Set-Cookie", 10, "session=secret", 14);
    st_capture_header(&b, "Set-Cookie", 10, "session=secret", 14);
    st_capture_header(&c, "Set-Cookie", 10, "session=other", 13);
    assert_int_equal(st_mesh_digest_headers(&h, &a, rules), 0);
    assert_int_equal(st_mesh_digest_headers(&h, &b, rules), 0);
    assert_int_equal(st_mesh_digest_headers(&h, &c, rules), 0);
    const char *va = header_value(&a, "Set-Cookie");
    assert_non_null(va);
    assert_int_equal(strncmp(va, "sha256:", 7), 0);
    assert_int_equal(strlen(va), 7 + 64);
    assert_null(strstr(a.names.p + 0, "secret"));
    assert_string_equal(header_value(&a, "content-type"), "text/plain"); /* untouched */
    assert_string_equal(va, header_value(&b, "Set-Cookie")); /* equal values: equal digests */
    assert_string_not_equal(va, header_value(&c, "Set-Cookie"));
    assert_int_equal(a.nheaders, 2);
    /* nothing to redact: the block is left as it is */
    st_capture_t e;
    st_capture_init(&e);
    st_capture_header(&e, "x-a", 3, "1", 1);
    char *before = e.names.p;
    assert_int_equal(st_mesh_digest_headers(&h, &e, rules), 0);
    assert_ptr_equal(e.names.p, before);
    st_capture_free(&a);
    st_capture_free(&b);
    st_capture_free(&c);
    st_capture_free(&e);
    st_rules_free(rules);
    st_mesh_hash_free(&h);
}

static void test_host_names_a_mirror(void **state)
{
    (void)state;
    assert_true(st_mesh_host_is_mirror("app-shadow", 10));
    assert_true(st_mesh_host_is_mirror("app-SHADOW:8080", 15));
    assert_true(st_mesh_host_is_mirror("app.ns.svc-shadow:80", 20));
    assert_false(st_mesh_host_is_mirror("app", 3));
    assert_false(st_mesh_host_is_mirror("-shadow", 7)); /* a name before the suffix */
    assert_false(st_mesh_host_is_mirror("app-shadow.example", 18));
    assert_false(st_mesh_host_is_mirror("[::1]:80", 8));
    st_http_msg_t m;
    st_http_msg_reset(&m);
    assert_false(st_mesh_is_mirror(&m));
    m.mirror = 1;
    assert_true(st_mesh_is_mirror(&m));
    st_http_msg_reset(&m);
    m.authority = "svc-shadow:9000";
    m.authority_len = 15;
    assert_true(st_mesh_is_mirror(&m));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_point_is_sha256_of_the_id),
        cmocka_unit_test(test_share_boundaries),
        cmocka_unit_test(test_share_fraction),
        cmocka_unit_test(test_wire_round_trip),
        cmocka_unit_test(test_malformed_wire_is_refused),
        cmocka_unit_test(test_redacted_values_become_digests),
        cmocka_unit_test(test_host_names_a_mirror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
