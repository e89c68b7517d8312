/*
 * head_bench: what the edge checks cost per request head, as a ratio to
 * llhttp parsing the same head in the same run (the baseline every request
 * pays anyway). Three heads: the smallest valid one, an inference client's
 * POST head, a browser-like GET head. For each, best of ROUNDS rounds:
 * llhttp with our span callbacks, the head scan (st_reqcheck_scan), the
 * bare-LF scan it replaced ("before"), and st_reqcheck_head.
 *
 *   make build/head_bench && flock /work/.bench.lock build/head_bench
 *
 * Wall-clock ns are noisy on a shared machine; instructions are not. The
 * same binary under callgrind (HEAD_BENCH_ITERS / HEAD_BENCH_ROUNDS shrink
 * the loops) gives instructions per call of each stage's function:
 *
 *   HEAD_BENCH_ITERS=2000 HEAD_BENCH_ROUNDS=1 valgrind --tool=callgrind \
 *       --callgrind-out-file=hb.out build/head_bench HEAD   (HEAD: 0, 1 or 2)
 *   callgrind_annotate --inclusive=yes hb.out | grep -E \
 *       'llhttp_execute|st_reqcheck_scan|old_bare_lf_scan|st_reqcheck_head'
 *
 * and divide by the calls, ITERS x ROUNDS (+1 parse for st_reqcheck_head).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../proxy/reqcheck.h"

static int ITERS = 200000, ROUNDS = 7;

static const char *const heads[] = {
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /v1/models/sentiment:predict?version=3 HTTP/1.1\r\n"
    "Host: flask-inference.default.svc.cluster.local:5000\r\n"
    "User-Agent: python-requests/2.31.0\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\n"
    "Connection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: 24576\r\n"
    "X-Request-Id: 3f2c9a4e-8d1b-4c7a-9e2f-5b6a7c8d9e0f\r\n"
    "Authorization: Bearer "
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzdmMtY2xpZW50In0.c2ln\r\n"
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n",
    "GET /static/app.js?v=20240101 HTTP/1.1\r\nHost: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36\r\n"
    "Accept: "
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.9,de;q=0.8\r\nAccept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.example.com/dashboard/overview?tab=metrics&range=24h\r\n"
    "Cookie: session=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08; "
    "theme=dark; consent=1; _ga=GA1.2.1234567890.1700000000\r\n"
    "sec-ch-ua: \"Not_A Brand\";v=\"8\", \"Chromium\";v=\"120\"\r\nsec-ch-ua-mobile: ?0\r\n"
    "sec-ch-ua-platform: \"Linux\"\r\nSec-Fetch-Dest: script\r\nSec-Fetch-Mode: no-cors\r\n"
    "Sec-Fetch-Site: same-origin\r\nIf-None-Match: W/\"5e-18c5f3a9b2d\"\r\n"
    "Cache-Control: max-age=0\r\nConnection: keep-alive\r\n\r\n",
};

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    return st_http_on_url(p->data, at, len, 0) ? HPE_USER : 0;
}
static int on_field(llhttp_t *p, const char *at, size_t len)
{
    return st_http_on_header_field(p->data, at, len) ? HPE_USER : 0;
}
static int on_value(llhttp_t *p, const char *at, size_t len)
{
    return st_http_on_header_value(p->data, at, len) ? HPE_USER : 0;
}
static int on_done(llhttp_t *p)
{
    st_http_on_headers_complete(p->data);
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile int sink;

/* The bare-LF scan the client ran over each head before st_reqcheck_scan
 * replaced it (kept here only as the "before" of the comparison). */
__attribute__((noinline)) static int old_bare_lf_scan(const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (b[i] != '\n') continue;
        if (i == 0 || b[i - 1] != '\r') return 1;
        if (i >= 3 && b[i - 2] == '\n' && b[i - 3] == '\r') return 0;
    }
    return 0;
}

enum stage { LLHTTP, SCAN, BEFORE, HEAD_CHECK };

/* Parses head as the proxy does: llhttp with spans into our message model. */
static void parse(const char *head, size_t len, char *buf, st_http_msg_t *m,
                  const llhttp_settings_t *s)
{
    llhttp_t p;
    memcpy(buf, head, len);
    st_http_msg_reset(m);
    llhttp_init(&p, HTTP_REQUEST, s);
    p.data = m;
    sink += llhttp_execute(&p, buf, len);
}

/* Best per-head time (ns) of one stage over ROUNDS rounds of ITERS heads. */
static double run(const char *head, size_t len, enum stage stage, const llhttp_settings_t *s)
{
    static char buf[4096];
    static st_http_msg_t m;
    double best = 1e30;
    if (stage == HEAD_CHECK) parse(head, len, buf, &m, s); /* once: origin-form is not rewritten */
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now();
        for (int i = 0; i < ITERS; i++) {
            if (stage == LLHTTP) {
                parse(head, len, buf, &m, s);
            } else if (stage == SCAN) {
                st_reqcheck_scan_t sc = {0};
                sink += st_reqcheck_scan(&sc, head, len) + sc.done;
            } else if (stage == BEFORE) {
                sink += old_bare_lf_scan(head, len);
            } else {
                sink += st_reqcheck_head(&m, HTTP_GET, 1, 0);
            }
        }
        double ns = (now() - t0) / ITERS * 1e9;
        if (ns < best) best = ns;
    }
    return best;
}

int main(int argc, char **argv)
{
    const char *e;
    if ((e = getenv("HEAD_BENCH_ITERS"))) ITERS = atoi(e);
    if ((e = getenv("HEAD_BENCH_ROUNDS"))) ROUNDS = atoi(e);
    size_t only = argc > 1 ? (size_t)atoi(argv[1]) : (size_t)-1;
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_url = on_url;
    s.on_header_field = on_field;
    s.on_header_value = on_value;
    s.on_headers_complete = on_done;
    printf("%-4s %5s %10s %8s %11s %13s %14s\n", "head", "bytes", "llhttp_ns", "scan_ns",
           "scan/llhttp", "before/llhttp", "headchk/llhttp");
    for (size_t h = 0; h < sizeof(heads) / sizeof(heads[0]); h++) {
        if (only != (size_t)-1 && h != only) continue;
        size_t len = strlen(heads[h]);
        double base = run(heads[h], len, LLHTTP, &s);
        double scan = run(heads[h], len, SCAN, &s);
        double before = run(heads[h], len, BEFORE, &s);
        double check = run(heads[h], len, HEAD_CHECK, &s);
        printf("%-4zu %5zu %10.1f %8.1f %11.3f %13.3f %14.3f\n", h, len, base, scan, scan / base,
               before / base, check / base);
    }
    return 0;
}
