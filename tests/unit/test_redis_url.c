/*
 * Unit tests of the one Redis address grammar (comparator/redis_url.c) that
 * shadowtee --redis and shadowtee-report --redis share: every form either
 * program accepted before parses to the same host, port, credentials and
 * db; each malformed one is refused with a reason and leaves nothing behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "shadowtee/redis_url.h"

typedef struct {
    const char *text, *host;
    int port;
    const char *user, *password;
    int db;
} good_t;

static void test_accepted_forms(void **state)
{
    (void)state;
    static const good_t cases[] = {
        /* both programs: HOST:PORT, HOST */
        {"127.0.0.1:6380", "127.0.0.1", 6380, "", "", 0},
        {"localhost", "localhost", 6379, "", "", 0},
        {"redis-master.prod.svc:7000", "redis-master.prod.svc", 7000, "", "", 0},
        /* the proxy's: HOST:PORT/DB without a scheme, [IPv6]:PORT */
        {"127.0.0.1:6379/4", "127.0.0.1", 6379, "", "", 4},
        {"[::1]:6390", "::1", 6390, "", "", 0},
        {"[fe80::1%lo]", "fe80::1%lo", 6379, "", "", 0},
        /* redis:// with password, user and password, password alone */
        {"redis://:s3cret@127.0.0.1:6390/2", "127.0.0.1", 6390, "", "s3cret", 2},
        {"redis://alice:pw@cache", "cache", 6379, "alice", "pw", 0},
        {"redis://pw@cache:1", "cache", 1, "", "pw", 0},
        {"redis://:p%40ss:w@h:7000/3", "h", 7000, "", "p%40ss:w", 3}, /* no percent-decoding */
        {"redis://:a@b/c@h:6379/1", "h", 6379, "", "a@b/c", 1},       /* the last '@' ends it */
        {"redis://h/", "h", 6379, "", "", 0},
        {"redis://h:65535/1000000", "h", 65535, "", "", 1000000},
        {"redis://[::1]:6379/0", "::1", 6379, "", "", 0},
        {"redis://:@h", "h", 6379, "", "", 0}, /* empty password: no AUTH */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        st_redis_url_t u;
        char err[128] = "";
        int rc = st_redis_url_parse(cases[i].text, &u, err, sizeof(err));
        if (rc != 0) fail_msg("'%s' refused: %s", cases[i].text, err);
        assert_string_equal(u.host, cases[i].host);
        assert_int_equal(u.port, cases[i].port);
        assert_string_equal(u.user, cases[i].user);
        assert_string_equal(u.password, cases[i].password);
        assert_int_equal(u.db, cases[i].db);
    }
}

static void test_refused_forms(void **state)
{
    (void)state;
    static const struct {
        const char *text, *why;
    } cases[] = {
        {"h:0", "bad port '0'"},
        {"h:65536", "bad port '65536'"},
        {"127.0.0.1:99999", "bad port"},
        {"h:", "bad port ''"},
        {"h:6379x", "bad port '6379x'"},
        {"h: 1", "bad port"},
        {"redis://:pw@:0", "bad port"},
        {"redis://h/x", "bad database number 'x'"},
        {"redis://h/-1", "bad database number"},
        {"redis://h/1000001", "bad database number"},
        {"h:6379/2x", "bad database number"},
        {":6379", "missing host"},
        {"", "missing host"},
        {"redis://", "missing host"},
        {"redis://:pw@", "missing host"},
        {"http://h:1", "only redis:// URLs"},
        {"rediss://h:6379", "only redis:// URLs"},
        {"unix:/tmp/redis.sock", "unix: sockets are not supported"},
        {"::1:6379", "IPv6 address needs brackets"},
        {"[::1", "bad host"},
        {"[::1]6379", "bad host"},
        {"ho st:1", "bad host"},
        {"h\n:1", "bad host"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        st_redis_url_t u;
        char err[128] = "";
        memset(&u, 0x5a, sizeof(u));
        if (st_redis_url_parse(cases[i].text, &u, err, sizeof(err)) != -1)
            fail_msg("'%s' accepted", cases[i].text);
        if (!strstr(err, cases[i].why))
            fail_msg("'%s': '%s' does not say '%s'", cases[i].text, err, cases[i].why);
        assert_string_equal(u.host, ""); /* nothing half-parsed is left behind */
        assert_string_equal(u.password, "");
        assert_string_equal(u.user, "");
        assert_int_equal(u.port, 6379);
    }
}

/* Lengths: what fits is kept whole, one byte more is refused, never cut. */
static void test_length_limits(void **state)
{
    (void)state;
    char text[2048], err[128];
    st_redis_url_t u;
    char host[ST_REDIS_HOST_MAX + 1];
    memset(host, 'a', sizeof(host));
    host[ST_REDIS_HOST_MAX - 1] = '\0'; /* 255 bytes */
    snprintf(text, sizeof(text), "%s:1", host);
    assert_int_equal(st_redis_url_parse(text, &u, err, sizeof(err)), 0);
    assert_int_equal(strlen(u.host), ST_REDIS_HOST_MAX - 1);
    host[ST_REDIS_HOST_MAX - 1] = 'a';
    host[ST_REDIS_HOST_MAX] = '\0'; /* 256 */
    snprintf(text, sizeof(text), "%s:1", host);
    assert_int_equal(st_redis_url_parse(text, &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bad host"));

    char pw[ST_REDIS_PASSWORD_MAX + 1];
    memset(pw, 'p', sizeof(pw));
    pw[ST_REDIS_PASSWORD_MAX - 1] = '\0';
    snprintf(text, sizeof(text), "redis://:%s@h", pw);
    assert_int_equal(st_redis_url_parse(text, &u, err, sizeof(err)), 0);
    assert_int_equal(strlen(u.password), ST_REDIS_PASSWORD_MAX - 1);
    pw[ST_REDIS_PASSWORD_MAX - 1] = 'p';
    pw[ST_REDIS_PASSWORD_MAX] = '\0';
    snprintf(text, sizeof(text), "redis://:%s@h", pw);
    assert_int_equal(st_redis_url_parse(text, &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "password longer than"));
    assert_string_equal(u.password, "");

    char user[ST_REDIS_USER_MAX + 1];
    memset(user, 'u', sizeof(user));
    user[ST_REDIS_USER_MAX] = '\0';
    snprintf(text, sizeof(text), "redis://%s:pw@h", user);
    assert_int_equal(st_redis_url_parse(text, &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "user name longer than"));
    assert_string_equal(u.user, "");
}

/* NULL text is refused like an empty one; a NULL or zero-size err is allowed. */
static void test_null_and_no_err_buffer(void **state)
{
    (void)state;
    st_redis_url_t u;
    char err[64];
    assert_int_equal(st_redis_url_parse(NULL, &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "missing host"));
    assert_int_equal(st_redis_url_parse("h:0", &u, NULL, 0), -1);
    assert_int_equal(st_redis_url_parse("h:1", &u, NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted_forms),
        cmocka_unit_test(test_refused_forms),
        cmocka_unit_test(test_length_limits),
        cmocka_unit_test(test_null_and_no_err_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
