/*
 * fuzz_report: shadowtee-report's decoding of what it reads from Redis
 * (report/load.c) and its rendering, fed by bytes instead of a server.
 *
 * The input's first byte picks options (bit 0: AUTH with a user, bit 1:
 * SELECT 3, bit 2: --since 1h, bit 3: --endpoint "POST /x"); the rest is the
 * byte stream "Redis" answers with: a socket pair's far end holds it, and
 * rpt_load_from() runs on the near end through hiredis's own reader, so
 * every command gets the next reply in the stream, whatever its shape. A
 * thread discards the commands the report sends. On success the model is
 * judged (gate) and rendered as text, JSON and HTML.
 * Oracle, besides the sanitizers: a load either succeeds or fails with a
 * message; a successful one renders.
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../report/model.h"

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_report: %s\n", why);
    abort();
}

static void *drain(void *arg)
{
    int fd = *(int *)arg;
    char buf[65536];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    return NULL;
}

static void render_all(const rpt_options_t *opt, const rpt_model_t *m)
{
    rpt_gate_t g;
    rpt_gate_eval(opt, m, &g);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out) return;
    if (rpt_render_text(out, opt, m, &g) != 0 || rpt_render_json(out, opt, m, &g) != 0 ||
        rpt_render_html(out, opt, m, &g) != 0)
        fail("rendering a loaded model failed");
    fclose(out);
    free(text);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1 || size > (1 << 17)) return 0;
    unsigned flags = data[0];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
    int big = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    size_t off = 1;
    while (off < size) { /* the whole "server" answer, then its end */
        ssize_t w = write(sv[1], data + off, size - off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    shutdown(sv[1], SHUT_WR);
    pthread_t t;
    if (pthread_create(&t, NULL, drain, &sv[1]) != 0) abort();

    rpt_options_t opt;
    memset(&opt, 0, sizeof(opt));
    snprintf(opt.redis.host, sizeof(opt.redis.host), "fuzz");
    opt.redis.port = 6379;
    snprintf(opt.redis.user, sizeof(opt.redis.user), "%s", (flags & 1) ? "reporter" : "");
    snprintf(opt.redis.password, sizeof(opt.redis.password), "%s", (flags & 1) ? "secret" : "");
    opt.redis.db = (flags & 2) ? 3 : 0;
    opt.service = "svc";
    opt.endpoint = (flags & 8) ? "POST /x" : NULL;
    opt.since_s = (flags & 4) ? 3600 : 0;
    opt.now_ms = 1764700000000LL;
    opt.gate = 1;
    opt.max_divergence_pct = 1;
    opt.max_shadow_errors_pct = 5;
    opt.max_latency_ratio = 1.5;
    opt.min_compared = 10;

    redisContext *c = redisConnectFd(sv[0]);
    if (!c) abort();
    struct timeval tv = {5, 0};
    redisSetTimeout(c, tv);
    rpt_model_t m;
    char err[1024] = "";
    if (rpt_load_from(c, &opt, &m, err, sizeof(err)) == 0)
        render_all(&opt, &m);
    else if (!err[0])
        fail("a failed load without a message");
    rpt_model_free(&m);
    redisFree(c); /* closes sv[0]: the drain thread sees the end */
    pthread_join(t, NULL);
    close(sv[1]);
    return 0;
}
