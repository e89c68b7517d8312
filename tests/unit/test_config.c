/* Unit tests of proxy/config.c: defaults, environment, flags, validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "../../proxy/config.h"
#include "../../proxy/log.h"

static int load(st_config_t *cfg, char **envp, char *err, size_t errlen, ...)
{
    char *argv[64] = {"shadowtee"};
    int argc = 1;
    va_list ap;
    va_start(ap, errlen);
    for (char *a = va_arg(ap, char *); a && argc < 63; a = va_arg(ap, char *))
        argv[argc++] = a;
    va_end(ap);
    return st_config_load(cfg, argc, argv, envp, err, errlen);
}

static void test_defaults(void **state)
{
    st_config_t cfg;
    char err[256] = "";
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:5000", NULL), 0);
    assert_string_equal(cfg.primary.host, "127.0.0.1");
    assert_int_equal(cfg.primary.port, 5000);
    assert_string_equal(cfg.listen.authority, "0.0.0.0:8080");
    assert_string_equal(cfg.admin.authority, "127.0.0.1:9901");
    assert_true(cfg.workers >= 1);
    assert_int_equal(cfg.max_header_size, 16 * 1024);
    assert_int_equal(cfg.client_header_timeout_ms, 10000);
    assert_int_equal(cfg.mirror_max_body, 8 * 1024 * 1024);
    assert_true(cfg.mirror_percent == 0.0); /* no shadow: no mirroring */
    assert_int_equal(cfg.log_level, ST_LOG_INFO);
    assert_string_equal(cfg.service, "default");
}

static void test_shadow_defaults_to_100_percent(void **state)
{
    st_config_t cfg;
    char err[256] = "";
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:5000", "--shadow",
                          "http://127.0.0.1:6000", NULL),
                     0);
    assert_true(cfg.mirror_percent == 100.0);
    assert_int_equal(cfg.shadow.port, 6000);
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:5000", "--shadow",
                          "127.0.0.1:6000", "--mirror-percent", "12.5", NULL),
                     0);
    assert_true(cfg.mirror_percent == 12.5);
    assert_int_equal(cfg.shadow_eject_timeouts, 5);
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:5000", "--shadow",
                          "127.0.0.1:6000", "--shadow-eject-timeouts", "0", NULL),
                     0);
    assert_int_equal(cfg.shadow_eject_timeouts, 0);
}

static void test_env_and_flag_precedence(void **state)
{
    st_config_t cfg;
    char err[256] = "";
    char *env[] = {"SHADOWTEE_PRIMARY=127.0.0.1:7000", "SHADOWTEE_WORKERS=3",
                   "SHADOWTEE_LOG_LEVEL=debug", "SHADOWTEE_ACCESS_LOG=true", NULL};
    assert_int_equal(load(&cfg, env, err, sizeof(err), "--workers", "2", NULL), 0);
    assert_int_equal(cfg.primary.port, 7000);
    assert_int_equal(cfg.workers, 2); /* the flag wins */
    assert_int_equal(cfg.log_level, ST_LOG_DEBUG);
    assert_int_equal(cfg.access_log, 1);
}

static void test_durations_and_sizes(void **state)
{
    uint64_t ms;
    size_t b;
    const struct {
        const char *in;
        int ok;
        uint64_t ms;
    } durs[] = {{"250ms", 1, 250}, {"10s", 1, 10000}, {"1m", 1, 60000}, {"1h", 1, 3600000},
                {"5", 1, 5000},    {"1.5s", 1, 1500}, {"", 0, 0},       {"abc", 0, 0},
                {"-1s", 0, 0},     {"10x", 0, 0}};
    for (size_t i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
        int rc = st_config_parse_duration(durs[i].in, &ms);
        assert_int_equal(rc == 0, durs[i].ok);
        if (durs[i].ok) assert_int_equal(ms, durs[i].ms);
    }
    const struct {
        const char *in;
        int ok;
        size_t b;
    } sizes[] = {{"512", 1, 512},    {"16K", 1, 16384},   {"8M", 1, 8 << 20},
                 {"1G", 1, 1 << 30}, {"8MB", 1, 8 << 20}, {"", 0, 0},
                 {"-5", 0, 0},       {"1T", 0, 0},        {"K", 0, 0}};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int rc = st_config_parse_size(sizes[i].in, &b);
        assert_int_equal(rc == 0, sizes[i].ok);
        if (sizes[i].ok) assert_int_equal(b, sizes[i].b);
    }
}

static void test_addresses(void **state)
{
    st_addr_t a;
    assert_int_equal(st_config_parse_addr("api:8080", &a, 0), 0);
    assert_string_equal(a.host, "api");
    assert_int_equal(a.port, 8080);
    assert_int_equal(st_config_parse_addr("[::1]:9000", &a, 0), 0);
    assert_string_equal(a.host, "::1");
    assert_string_equal(a.authority, "[::1]:9000");
    assert_int_equal(st_config_parse_addr("http://shadow.ns.svc", &a, 0), 0);
    assert_int_equal(a.port, 80);
    assert_int_equal(st_config_parse_addr("https://x:8443", &a, 0), 0);
    assert_int_equal(a.tls, 1);
    const char *bad[] = {"",           "host",     ":80",    "host:0",
                         "host:70000", "host:abc", "::1:80", "http://h:1/path",
                         "h o:1",      "unix:"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(st_config_parse_addr(bad[i], &a, 0), -1);
}

/* Which addresses are IP literals (never re-resolved), and unix: paths. */
static void test_numeric_and_unix_addresses(void **state)
{
    st_addr_t a;
    const struct {
        const char *in;
        int numeric;
    } cases[] = {{"127.0.0.1:5000", 1}, {"[::1]:5000", 1}, {"localhost:5000", 0},
                 {"http://api:80", 0},  {"10.1.2.3:1", 1}, {"app.ns.svc:8080", 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(st_config_parse_addr(cases[i].in, &a, 0), 0);
        assert_int_equal(a.numeric, cases[i].numeric);
        assert_int_equal(a.is_unix, 0);
    }
    assert_int_equal(st_config_parse_addr("unix:/run/app/gunicorn.sock", &a, 0), 0);
    assert_int_equal(a.is_unix, 1);
    assert_int_equal(a.numeric, 1);
    assert_string_equal(a.host, "/run/app/gunicorn.sock");
    assert_string_equal(a.authority, "unix:/run/app/gunicorn.sock");
}

/* A unix: path resolves to one AF_UNIX address; one that does not fit in
 * sun_path is refused with a message naming the flag (libuv would cut it). */
static void test_unix_paths(void **state)
{
    st_config_t cfg;
    char err[256];
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "unix:/tmp/st-none.sock",
                          "--shadow", "unix:/tmp/st-shadow.sock", NULL),
                     0);
    assert_int_equal(cfg.primary.naddrs, 1);
    assert_int_equal(cfg.primary.addrs[0].sa.ss_family, AF_UNIX);
    assert_int_equal(cfg.shadow.naddrs, 1);
    char path[200] = "/tmp/";
    memset(path + 5, 'x', 120);
    path[125] = '\0';
    char arg[210];
    snprintf(arg, sizeof(arg), "unix:%s", path);
    const char *flags[] = {"--primary", "--shadow", "--noise-upstream"};
    for (size_t i = 0; i < 3; i++) {
        const char *primary = i == 0 ? arg : "127.0.0.1:1";
        const char *shadow = i == 1 ? arg : "127.0.0.1:2";
        const char *noise = i == 2 ? arg : "127.0.0.1:3";
        err[0] = '\0';
        assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", primary, "--shadow",
                              shadow, "--noise-upstream", noise, NULL),
                         -1);
        assert_non_null(strstr(err, flags[i]));
        assert_non_null(strstr(err, "sun_path"));
    }
    path[5 + 102] = '\0'; /* 107 bytes: the longest that fits */
    snprintf(arg, sizeof(arg), "unix:%s", path);
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", arg, NULL), 0);
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:1", "--listen",
                          "unix:/tmp/l.sock", NULL),
                     -1);
    assert_non_null(strstr(err, "--listen"));
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:1", "--redis",
                          "unix:/tmp/redis.sock", NULL),
                     -1);
    assert_non_null(strstr(err, "Redis"));
}

static void test_invalid_values_give_one_message(void **state)
{
    st_config_t cfg;
    char err[256];
    const struct {
        const char *flag, *value, *expect;
    } cases[] = {
        {"--mirror-percent", "101", "--mirror-percent"},
        {"--mirror-percent", "-1", "--mirror-percent"},
        {"--mirror-percent", "abc", "--mirror-percent"},
        {"--workers", "-2", "--workers"},
        {"--log-level", "loud", "log level"},
        {"--shadow-host-suffix", "prepend", "off or append"},
        {"--mirror-methods", "GET,FOO", "method list"},
        {"--idle-timeout", "0", "--idle-timeout"},
        {"--max-header-size", "1", "--max-header-size"},
        {"--redis", "redis://:pw@:0", "Redis"},
        {"--service", "a b", "--service"},
        {"--shadow-eject-timeouts", "-1", "--shadow-eject-timeouts"},
        {"--shadow-eject-timeouts", "x", "--shadow-eject-timeouts"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        int rc = load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:5000", "--shadow",
                      "127.0.0.1:6000", cases[i].flag, cases[i].value, NULL);
        assert_int_equal(rc, -1);
        assert_non_null(strstr(err, cases[i].expect));
    }
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--listen", "127.0.0.1:1", NULL), -1);
    assert_non_null(strstr(err, "--primary is required"));
    assert_int_equal(
        load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:1", "--bogus", "1", NULL), -1);
    assert_non_null(strstr(err, "unknown flag '--bogus'"));
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", NULL), -1);
    assert_non_null(strstr(err, "needs a value"));
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:1",
                          "--mirror-percent", "5", NULL),
                     -1);
    assert_non_null(strstr(err, "needs --shadow"));
    char *env[] = {"SHADOWTEE_WORKERS=many", NULL};
    assert_int_equal(load(&cfg, env, err, sizeof(err), "--primary", "127.0.0.1:1", NULL), -1);
    assert_non_null(strstr(err, "SHADOWTEE_WORKERS"));
}

#define P     "--primary", "127.0.0.1:5000"
#define MESH  "--mirror-mode", "mesh"
#define REDIS "--redis", "127.0.0.1:6379"

static void test_mesh_mode_flags(void **state)
{
    st_config_t cfg;
    char err[256] = "";
    /* tee is the default: nothing of mesh mode is on */
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), P, NULL), 0);
    assert_int_equal(cfg.mirror_mode, ST_MIRROR_TEE);
    assert_int_equal(cfg.mesh_role, ST_ROLE_NONE);
    assert_int_equal(cfg.mesh_pair_ttl_ms, 30000);
    /* mesh: a role, Redis; the percentage defaults to 100 without --shadow */
    assert_int_equal(
        load(&cfg, NULL, err, sizeof(err), P, MESH, "--mesh-role", "stable", REDIS, NULL), 0);
    assert_int_equal(cfg.mirror_mode, ST_MIRROR_MESH);
    assert_int_equal(cfg.mesh_role, ST_ROLE_STABLE);
    assert_true(cfg.mirror_percent == 100.0);
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), P, MESH, "--mesh-role", "shadow", REDIS,
                          "--mirror-percent", "7.5", "--mesh-pair-ttl", "2m", NULL),
                     0);
    assert_int_equal(cfg.mesh_role, ST_ROLE_SHADOW);
    assert_true(cfg.mirror_percent == 7.5);
    assert_int_equal(cfg.mesh_pair_ttl_ms, 120000);
    /* from the environment, like every flag */
    char *env[] = {"SHADOWTEE_MIRROR_MODE=mesh", "SHADOWTEE_MESH_ROLE=shadow",
                   "SHADOWTEE_REDIS=127.0.0.1:1", "SHADOWTEE_MESH_PAIR_TTL=5s", NULL};
    assert_int_equal(load(&cfg, env, err, sizeof(err), P, NULL), 0);
    assert_int_equal(cfg.mesh_role, ST_ROLE_SHADOW);
    assert_int_equal(cfg.mesh_pair_ttl_ms, 5000);
    /* x-request-id is what mesh samples by anyway */
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), P, MESH, "--mesh-role", "stable", REDIS,
                          "--mirror-sample-by", "X-Request-Id", NULL),
                     0);
}

static void test_mesh_mode_refusals(void **state)
{
    st_config_t cfg;
    char err[256];
    const struct {
        const char *argv[12];
        const char *expect;
    } cases[] = {
        {{P, MESH, REDIS}, "--mirror-mode mesh needs --mesh-role stable|shadow"},
        {{P, MESH, "--mesh-role", "stable"}, "--mirror-mode mesh needs --redis"},
        {{P, MESH, "--mesh-role", "stable", REDIS, "--shadow", "127.0.0.1:6000"},
         "--mirror-mode mesh does not tee: remove --shadow"},
        {{P, MESH, "--mesh-role", "stable", REDIS, "--noise-upstream", "127.0.0.1:6000"},
         "--mirror-mode mesh does not take --noise-upstream"},
        {{P, MESH, "--mesh-role", "shadow", REDIS, "--compare", "off"}, "needs --compare on"},
        {{P, MESH, "--mesh-role", "shadow", REDIS, "--mirror-sample-by", "x-user"},
         "samples by x-request-id only"},
        {{P, "--mesh-role", "stable"}, "--mesh-role needs --mirror-mode mesh"},
        {{P, "--mirror-mode", "tee", "--mesh-pair-ttl", "10s"},
         "--mesh-pair-ttl needs --mirror-mode mesh"},
        {{P, "--mirror-mode", "istio"}, "want tee or mesh"},
        {{P, MESH, "--mesh-role", "canary", REDIS}, "want stable or shadow"},
        {{P, MESH, "--mesh-role", "baseline", REDIS}, "baseline role is not implemented"},
        {{P, MESH, "--mesh-role", "stable", REDIS, "--mesh-pair-ttl", "10ms"}, "--mesh-pair-ttl"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[16] = {"shadowtee"};
        int argc = 1;
        for (int k = 0; cases[i].argv[k]; k++)
            argv[argc++] = (char *)cases[i].argv[k];
        err[0] = '\0';
        assert_int_equal(st_config_load(&cfg, argc, argv, NULL, err, sizeof(err)), -1);
        if (!strstr(err, cases[i].expect)) fail_msg("case %zu: got '%s'", i, err);
        assert_null(strchr(err, '\n')); /* one line */
    }
}

static void test_redis_url(void **state)
{
    st_config_t cfg;
    char err[256];
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:1", "--redis",
                          "redis://:s3cret@127.0.0.1:6390/2", NULL),
                     0);
    assert_string_equal(cfg.redis_host, "127.0.0.1");
    assert_int_equal(cfg.redis_port, 6390);
    assert_string_equal(cfg.redis_password, "s3cret");
    assert_int_equal(cfg.redis_db, 2);
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:1", "--redis",
                          "localhost", NULL),
                     0);
    assert_int_equal(cfg.redis_port, 6379);
    assert_int_equal(cfg.redis_db, 0);
    /* the grammar shadowtee-report shares (comparator/redis_url.c): a user, and its reason */
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:1", "--redis",
                          "redis://alice:pw@[::1]:6391/7", NULL),
                     0);
    assert_string_equal(cfg.redis_host, "::1");
    assert_int_equal(cfg.redis_port, 6391);
    assert_string_equal(cfg.redis_user, "alice");
    assert_string_equal(cfg.redis_password, "pw");
    assert_int_equal(cfg.redis_db, 7);
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:1", "--redis",
                          "http://127.0.0.1:6379", NULL),
                     -1);
    assert_non_null(strstr(err, "invalid Redis address 'http://127.0.0.1:6379': only redis://"));
}

static void test_methods_mask(void **state)
{
    st_config_t cfg;
    char err[256];
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:1", "--shadow",
                          "127.0.0.1:2", "--mirror-methods", "get, POST", NULL),
                     0);
    assert_true(cfg.mirror_methods & (1ULL << 1));  /* HTTP_GET */
    assert_true(cfg.mirror_methods & (1ULL << 3));  /* HTTP_POST */
    assert_false(cfg.mirror_methods & (1ULL << 0)); /* HTTP_DELETE */
}

/* Safe by default: no CONNECT, only websocket may upgrade; both opt-in. */
static void test_edge_defaults_and_opt_ins(void **state)
{
    st_config_t cfg;
    char err[256] = "";
    char *env[] = {"SHADOWTEE_ALLOW_UPGRADE=websocket,h2c", NULL};
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:5000", NULL), 0);
    assert_int_equal(cfg.allow_connect, 0);
    assert_string_equal(cfg.allow_upgrade, "websocket");
    assert_int_equal(
        load(&cfg, env, err, sizeof(err), "--primary", "127.0.0.1:5000", "--allow-connect", NULL),
        0);
    assert_int_equal(cfg.allow_connect, 1);
    assert_string_equal(cfg.allow_upgrade, "websocket,h2c");
    assert_int_equal(
        load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:5000", "--allow-upgrade=", NULL),
        0);
    assert_string_equal(cfg.allow_upgrade, "");
    assert_int_equal(load(&cfg, NULL, err, sizeof(err), "--primary", "127.0.0.1:5000",
                          "--allow-upgrade", "web/socket", NULL),
                     -1);
    assert_string_equal(err,
                        "--allow-upgrade: invalid protocol list 'web/socket' (e.g. websocket)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_shadow_defaults_to_100_percent),
        cmocka_unit_test(test_env_and_flag_precedence),
        cmocka_unit_test(test_durations_and_sizes),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_numeric_and_unix_addresses),
        cmocka_unit_test(test_unix_paths),
        cmocka_unit_test(test_invalid_values_give_one_message),
        cmocka_unit_test(test_mesh_mode_flags),
        cmocka_unit_test(test_mesh_mode_refusals),
        cmocka_unit_test(test_redis_url),
        cmocka_unit_test(test_methods_mask),
        cmocka_unit_test(test_edge_defaults_and_opt_ins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
