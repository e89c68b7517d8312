/*
 * fuzz_request: client bytes through a real worker (proxy_fixture.h): the
 * request head and body framing as the proxy runs them (llhttp with the
 * proxy's callbacks, the head model of proxy/http.c, Content-Length and
 * chunked bodies re-framed, pipelined requests, pieces cut across reads),
 * the mirror copy and its comparison.
 *
 * Input: a split plan (fx_split), then the bytes a client sends.
 * Oracle, besides the sanitizers: what each upstream receives is valid HTTP
 * to a strict parser; the primary's complete requests are, in order, the
 * first requests a strict parser finds in the client bytes, with the same
 * method, target (an absolute-form one as origin-form) and body (nothing
 * smuggled, nothing re-framed wrongly); the shadow's are mirror copies of
 * some of them, in order; and what the client receives is valid HTTP
 * responses.
 */
#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_fixture.h"

static const char *const flags[] = {
    "--client-header-timeout", "2s",  "--idle-timeout",    "2s", "--upstream-timeout", "2s",
    "--shadow-timeout",        "1s",  "--max-header-size", "8K", "--max-body-size",    "32K",
    "--mirror-max-body",       "16K",
};

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_request: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

static int prefix_ci(const char *s, size_t len, const char *p)
{
    size_t n = strlen(p);
    if (len <= n) return 0;
    for (size_t i = 0; i < n; i++)
        if ((s[i] | 0x20) != p[i]) return 0;
    return 1;
}

/* The target an upstream must see for the client's `url` (RFC 9112 3.2.2):
 * an absolute-form http(s) target as origin-form, its path and query, "/"
 * when the path is empty ("*" for OPTIONS without either); any other form
 * as sent. Written independently of proxy/reqcheck.c, which it checks. */
static int same_target(const char *got, size_t got_len, const fx_msg_t *want)
{
    const char *u = want->url;
    size_t len = want->url_len, skip = 0;
    if (prefix_ci(u, len, "http://"))
        skip = 7;
    else if (prefix_ci(u, len, "https://"))
        skip = 8;
    if (!skip) return got_len == len && memcmp(got, u, len) == 0;
    size_t p = skip;
    while (p < len && u[p] != '/' && u[p] != '?')
        p++;
    if (p == len) return got_len == 1 && got[0] == (want->method == HTTP_OPTIONS ? '*' : '/');
    if (u[p] == '/') return got_len == len - p && memcmp(got, u + p, got_len) == 0;
    return got_len == len - p + 1 && got[0] == '/' && memcmp(got + 1, u + p, len - p) == 0;
}

static int same(const fx_req_t *got, const fx_msg_t *want)
{
    return got->method == want->method && same_target(got->url, got->url_len, want) &&
           got->body_len == want->body_len &&
           (got->body_len == 0 || memcmp(got->body, want->body, got->body_len) == 0);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    fx_init(flags, (int)(sizeof(flags) / sizeof(flags[0])));
    size_t cuts[FX_MAX_CUTS], ncuts = fx_split(&data, &size, cuts);
    fx_result_t r;
    memset(&r, 0, sizeof(r));
    fx_exchange(&r, data, size, cuts, ncuts);
    if (r.primary.bad || r.shadow.bad) fail("an upstream received invalid HTTP");

    static fx_msg_t ref[FX_MAX_REQS];
    int err;
    size_t n = fx_parse(HTTP_REQUEST, NULL, 0, data, size, 1, ref, FX_MAX_REQS, &err);
    /* requests after an upgrade or CONNECT are a tunnel's bytes, not requests */
    size_t comparable = 0;
    while (comparable < n && !ref[comparable].upgrade && ref[comparable].method != HTTP_CONNECT)
        comparable++;
    if (comparable < n) comparable++; /* the upgrade request itself is forwarded */

    if (r.primary.nreqs > comparable)
        fail("the primary got %zu requests, the client sent %zu", r.primary.nreqs, comparable);
    for (size_t i = 0; i < r.primary.nreqs; i++)
        if (!same(&r.primary.reqs[i], &ref[i]))
            fail("primary request %zu differs from the client's (method %d/%d, url %zu/%zu bytes, "
                 "body %zu/%zu bytes)",
                 i, r.primary.reqs[i].method, ref[i].method, r.primary.reqs[i].url_len,
                 ref[i].url_len, r.primary.reqs[i].body_len, ref[i].body_len);
    size_t k = 0; /* mirrors: a subsequence of the client's requests */
    for (size_t i = 0; i < r.shadow.nreqs; i++) {
        if (!r.shadow.reqs[i].mirror) fail("shadow request %zu lacks x-shadowtee-mirror", i);
        while (k < comparable && !same(&r.shadow.reqs[i], &ref[k]))
            k++;
        if (k == comparable) fail("shadow request %zu is none of the client's requests", i);
        k++;
    }

    int heads[FX_MAX_REQS];
    for (size_t i = 0; i < FX_MAX_REQS; i++)
        heads[i] = i < n && ref[i].method == HTTP_HEAD;
    static fx_msg_t res[FX_MAX_REQS];
    int rerr;
    size_t nres = fx_parse(HTTP_RESPONSE, heads, FX_MAX_REQS, r.client_got, r.client_len, 1, res,
                           FX_MAX_REQS, &rerr);
    if (rerr != HPE_OK && rerr != HPE_PAUSED_UPGRADE && nres < FX_MAX_REQS)
        fail("the client received invalid HTTP (%s) after %zu responses", llhttp_errno_name(rerr),
             nres);
    size_t ok = 0;
    for (size_t i = 0; i < nres; i++)
        ok += res[i].status == 200;
    if (ok > r.primary.nreqs)
        fail("%zu responses 200 for %zu primary requests", ok, r.primary.nreqs);

    fx_msgs_free(res, nres);
    fx_msgs_free(ref, n);
    fx_result_free(&r);
    return 0;
}
