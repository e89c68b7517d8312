/*
 * Unit tests of the report's decoding of what Redis answers (report/load.c,
 * rpt_load_from), fed by bytes on a socket pair instead of a server: a
 * normal service loads with the right totals; replies of the wrong shape
 * (integers where strings belong, nil members, SCAN keys the pattern did
 * not ask for, samples that are not strings) are refused or skipped, never
 * dereferenced; an array reply declaring a billion elements is refused
 * instead of being allocated. fuzz_report found the integer in meta (a
 * NULL strcmp) and the billion-element array (an 8 GB calloc); the others
 * were found reading the code while fixing those.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../report/load.c"
#include "../../report/stats_math.c"

typedef struct {
    int fd;
} drain_t;

static void *drain(void *arg)
{
    char buf[4096];
    while (read(((drain_t *)arg)->fd, buf, sizeof(buf)) > 0)
        ;
    return NULL;
}

/* Runs rpt_load_from for service "svc" with `bytes` as everything Redis says. */
static int load_bytes(const char *bytes, size_t len, rpt_model_t *m, char *err, size_t errlen)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(write(sv[1], bytes, len), (ssize_t)len);
    shutdown(sv[1], SHUT_WR);
    drain_t d = {sv[1]};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drain, &d), 0);
    rpt_options_t opt;
    memset(&opt, 0, sizeof(opt));
    snprintf(opt.redis.host, sizeof(opt.redis.host), "test");
    opt.redis.port = 6379;
    opt.service = "svc";
    opt.now_ms = 1764700000000LL;
    redisContext *c = redisConnectFd(sv[0]);
    assert_non_null(c);
    err[0] = '\0';
    int rc = rpt_load_from(c, &opt, m, err, errlen);
    redisFree(c);
    pthread_join(t, NULL);
    close(sv[1]);
    return rc;
}

#define PING    "+PONG\r\n"
#define META    "*4\r\n$6\r\nschema\r\n$1\r\n1\r\n$13\r\nfirst_seen_ms\r\n$13\r\n1764690000000\r\n"
#define MEMBERS "*1\r\n$7\r\nPOST /x\r\n"
/* HGETALL mesh:orphans, ZCARD mesh:pending: no mesh data */
#define NOMESH "*0\r\n:0\r\n"
#define COUNTS                                                                                     \
    "*6\r\n$8\r\ncompared\r\n$2\r\n10\r\n$7\r\nmatched\r\n$1\r\n8\r\n$8\r\ndiverged\r\n$"          \
    "1\r\n2\r\n"
#define EMPTY5 "*0\r\n*0\r\n*0\r\n*0\r\n"
#define NOSAMP "*0\r\n"
#define NOSCAN "*2\r\n$1\r\n0\r\n*0\r\n"

static void test_normal_service(void **state)
{
    (void)state;
    static const char in[] = PING META MEMBERS NOMESH COUNTS EMPTY5 NOSAMP NOSCAN;
    rpt_model_t m;
    char err[512];
    assert_int_equal(load_bytes(in, sizeof(in) - 1, &m, err, sizeof(err)), 0);
    assert_int_equal(m.neps, 1);
    assert_string_equal(m.eps[0].name, "POST /x");
    assert_int_equal(m.total.compared, 10);
    assert_int_equal(m.total.diverged, 2);
    assert_int_equal(m.first_seen_ms, 1764690000000LL);
    assert_int_equal(m.sources.tee, 10); /* no source fields: written before mesh mode */
    assert_int_equal(m.sources.mesh, 0);
    assert_int_equal(m.has_mesh, 0);
    rpt_model_free(&m);
}

/* Mesh data: orphans by side and halves waiting; source:mesh of the counts. */
static void test_mesh_keys_and_sources(void **state)
{
    (void)state;
    static const char in[] = PING META MEMBERS
        "*6\r\n$6\r\nstable\r\n$1\r\n7\r\n$6\r\nshadow\r\n$1\r\n4\r\n$5\r\nother\r\n$1\r\n9\r\n"
        ":3\r\n"
        "*6\r\n$8\r\ncompared\r\n$2\r\n10\r\n$11\r\nsource:mesh\r\n$1\r\n6\r\n$10\r\nsource:"
        "tee\r\n$1\r\n4\r\n" EMPTY5 NOSAMP NOSCAN;
    rpt_model_t m;
    char err[512];
    assert_int_equal(load_bytes(in, sizeof(in) - 1, &m, err, sizeof(err)), 0);
    assert_int_equal(m.has_mesh, 1);
    assert_int_equal(m.orphans[0], 7);
    assert_int_equal(m.orphans[1], 4);
    assert_int_equal(m.orphans[2], 0); /* "other" is no side: ignored */
    assert_int_equal(m.pending, 3);
    assert_int_equal(m.sources.mesh, 6);
    assert_int_equal(m.sources.tee, 4);
    assert_int_equal(m.eps[0].sources.mesh, 6);
    rpt_model_free(&m);
}

/* Only mesh keys (every half an orphan, nothing compared yet): loaded, not "no data". */
static void test_mesh_only_service_loads(void **state)
{
    (void)state;
    static const char in[] = PING "*0\r\n*0\r\n"
                                  "*2\r\n$6\r\nstable\r\n$1\r\n2\r\n:0\r\n" NOSCAN;
    rpt_model_t m;
    char err[512];
    assert_int_equal(load_bytes(in, sizeof(in) - 1, &m, err, sizeof(err)), 0);
    assert_int_equal(m.neps, 0);
    assert_int_equal(m.orphans[0], 2);
    rpt_model_free(&m);
}

/* meta.schema of a writer newer than this report (3), or not a number: the
 * load fails with a message naming the schema, before any endpoint is read. */
static void test_unknown_schema_is_refused(void **state)
{
    (void)state;
    static const char *const metas[] = {
        "*2\r\n$6\r\nschema\r\n$1\r\n3\r\n",
        "*2\r\n$6\r\nschema\r\n$1\r\n0\r\n",
        "*2\r\n$6\r\nschema\r\n$2\r\n2x\r\n",
        "*2\r\n$6\r\nschema\r\n$0\r\n\r\n",
    };
    const char *shown[] = {"schema '3'", "schema '0'", "schema '2x'", "schema ''"};
    for (size_t i = 0; i < sizeof(metas) / sizeof(metas[0]); i++) {
        char in[512];
        int n = snprintf(in, sizeof(in), PING "%s" MEMBERS NOMESH, metas[i]);
        rpt_model_t m;
        char err[512];
        assert_int_equal(load_bytes(in, (size_t)n, &m, err, sizeof(err)), -1);
        assert_non_null(strstr(err, shown[i]));
        assert_non_null(strstr(err, "reads schema 1 to 2"));
        assert_int_equal(m.neps, 0);
        rpt_model_free(&m);
    }
}

/* Each schema the report knows loads, and says which it was. */
static void test_known_schemas_load(void **state)
{
    (void)state;
    for (int v = 1; v <= 2; v++) {
        char in[512];
        int n = snprintf(
            in, sizeof(in),
            PING "*2\r\n$6\r\nschema\r\n$1\r\n%d\r\n" MEMBERS NOMESH COUNTS EMPTY5 NOSAMP NOSCAN,
            v);
        rpt_model_t m;
        char err[512];
        assert_int_equal(load_bytes(in, (size_t)n, &m, err, sizeof(err)), 0);
        assert_int_equal(m.schema, v);
        assert_int_equal(m.total.compared, 10);
        rpt_model_free(&m);
    }
}

/* counts' noise_kind:* fields are loaded apart from kind:*, sorted by count. */
static void test_noise_kinds_are_loaded(void **state)
{
    (void)state;
    static const char in[] = PING META MEMBERS NOMESH
        "*8\r\n$8\r\ncompared\r\n$1\r\n9\r\n$10\r\nkind:value\r\n$1\r\n2\r\n"
        "$16\r\nnoise_kind:value\r\n$1\r\n3\r\n$15\r\nnoise_kind:type\r\n$1\r\n5\r\n" EMPTY5 NOSAMP
            NOSCAN;
    rpt_model_t m;
    char err[512];
    assert_int_equal(load_bytes(in, sizeof(in) - 1, &m, err, sizeof(err)), 0);
    assert_int_equal(m.eps[0].kinds.n, 1);
    assert_string_equal(m.eps[0].kinds.v[0].name, "value");
    assert_int_equal(m.eps[0].kinds.v[0].count, 2);
    assert_int_equal(m.eps[0].noise_kinds.n, 2);
    assert_string_equal(m.eps[0].noise_kinds.v[0].name, "type");
    assert_int_equal(m.eps[0].noise_kinds.v[0].count, 5);
    assert_string_equal(m.eps[0].noise_kinds.v[1].name, "value");
    assert_int_equal(m.eps[0].noise_kinds.v[1].count, 3);
    rpt_model_free(&m);
}

static void test_meta_with_an_integer_is_refused(void **state)
{
    (void)state;
    static const char in[] = PING "*2\r\n:1\r\n$1\r\nx\r\n" MEMBERS;
    rpt_model_t m;
    char err[512];
    assert_int_equal(load_bytes(in, sizeof(in) - 1, &m, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "meta: unexpected reply"));
    rpt_model_free(&m);
}

static void test_nil_member_is_refused(void **state)
{
    (void)state;
    static const char in[] = PING META "*2\r\n$7\r\nPOST /x\r\n$-1\r\n";
    rpt_model_t m;
    char err[512];
    assert_int_equal(load_bytes(in, sizeof(in) - 1, &m, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "endpoints: unexpected reply"));
    rpt_model_free(&m);
}

static void test_scan_keys_outside_the_pattern_are_skipped(void **state)
{
    (void)state;
    /* "x" is shorter than the prefix: it used to be read past its end */
    static const char in[] = PING META MEMBERS NOMESH COUNTS EMPTY5 NOSAMP
        "*2\r\n$1\r\n0\r\n*3\r\n$1\r\nx\r\n$26\r\nshadowtee:{svc}:minute:abc\r\n"
        "$28\r\nshadowtee:{svc}:minute:29411\r\n"
        "*4\r\n$16\r\ncompared|POST /x\r\n$1\r\n3\r\n$16\r\ndiverged|POST /x\r\n$1\r\n1\r\n";
    rpt_model_t m;
    char err[512];
    assert_int_equal(load_bytes(in, sizeof(in) - 1, &m, err, sizeof(err)), 0);
    assert_int_equal(m.ntimeline, 1);
    assert_int_equal(m.timeline[0].minute, 29411);
    assert_int_equal(m.timeline[0].t.compared, 3);
    rpt_model_free(&m);
}

static void test_samples_that_are_not_strings_are_skipped(void **state)
{
    (void)state;
    static const char in[] =
        PING META MEMBERS NOMESH COUNTS EMPTY5 "*2\r\n:5\r\n$2\r\n{}\r\n" NOSCAN;
    rpt_model_t m;
    char err[512];
    assert_int_equal(load_bytes(in, sizeof(in) - 1, &m, err, sizeof(err)), 0);
    assert_int_equal(json_array_size(m.eps[0].samples), 0);
    rpt_model_free(&m);
}

static void test_a_billion_element_array_is_not_allocated(void **state)
{
    (void)state;
    static const char in[] = PING "*1000000000\r\n$1\r\nx\r\n";
    rpt_model_t m;
    char err[512];
    assert_int_equal(load_bytes(in, sizeof(in) - 1, &m, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "meta"));
    rpt_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normal_service),
        cmocka_unit_test(test_mesh_keys_and_sources),
        cmocka_unit_test(test_mesh_only_service_loads),
        cmocka_unit_test(test_unknown_schema_is_refused),
        cmocka_unit_test(test_known_schemas_load),
        cmocka_unit_test(test_noise_kinds_are_loaded),
        cmocka_unit_test(test_meta_with_an_integer_is_refused),
        cmocka_unit_test(test_nil_member_is_refused),
        cmocka_unit_test(test_scan_keys_outside_the_pattern_are_skipped),
        cmocka_unit_test(test_samples_that_are_not_strings_are_skipped),
        cmocka_unit_test(test_a_billion_element_array_is_not_allocated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
