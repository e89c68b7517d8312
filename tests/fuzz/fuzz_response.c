/*
 * fuzz_response: primary response bytes through a real worker
 * (proxy_fixture.h): the response head path (llhttp with the proxy's
 * callbacks, hop-by-hop removal, re-framing to Content-Length, chunked or
 * close for the client's version, 1xx dropped, HEAD/204/304), the capture
 * for the comparator and the comparison with the shadow's answer.
 *
 * Input: one byte of flags (bit 0: the client asks HEAD, bit 1: HTTP/1.0
 * client, bit 2: the shadow answers a fixed JSON instead of the same
 * bytes), then the bytes the primary answers with before closing.
 * Oracle, besides the sanitizers: the client receives valid HTTP; when a
 * strict parser finds a complete final response in the primary's bytes,
 * the client gets that status and exactly that body, or a 502 the proxy
 * made itself; a response the proxy cannot relay whole is never presented
 * as complete (a cut ends in a close a strict parser sees as incomplete).
 */
#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_fixture.h"

static const char *const flags[] = {"--upstream-timeout", "2s", "--shadow-timeout",   "1s",
                                    "--idle-timeout",     "2s", "--compare-max-body", "64K"};

static const char SHADOW_JSON[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 38\r\n\r\n"
    "{\"predictions\":[0.1,0.9],\"model\":\"v2\"}";

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_response: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* The first non-1xx message among the first n, or NULL. */
static const fx_msg_t *first_final(const fx_msg_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (m[i].status >= 200 || m[i].status == 101) return &m[i];
    return NULL;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    fx_init(flags, (int)(sizeof(flags) / sizeof(flags[0])));
    if (size < 1) return 0;
    int head = data[0] & 1, http10 = (data[0] >> 1) & 1, shadow_json = (data[0] >> 2) & 1;
    const unsigned char *answer = data + 1;
    size_t alen = size - 1;
    char req[128];
    int rlen =
        snprintf(req, sizeof(req), "%s /r HTTP/1.%d\r\nHost: a\r\n%s\r\n", head ? "HEAD" : "GET",
                 http10 ? 0 : 1, http10 ? "Connection: keep-alive\r\n" : "");
    fx_result_t r;
    memset(&r, 0, sizeof(r));
    r.primary.answer = answer;
    r.primary.answer_len = alen;
    r.primary.answer_close = 1;
    r.shadow.answer = shadow_json ? (const unsigned char *)SHADOW_JSON : answer;
    r.shadow.answer_len = shadow_json ? sizeof(SHADOW_JSON) - 1 : alen;
    r.shadow.answer_close = 1;
    fx_exchange(&r, (const unsigned char *)req, (size_t)rlen, NULL, 0);
    if (r.primary.bad || r.shadow.bad) fail("an upstream received invalid HTTP");
    if (r.primary.nreqs != 1) fail("the primary got %zu requests, not 1", r.primary.nreqs);

    int heads[1] = {head};
    static fx_msg_t ref[8], got[8];
    int rerr, gerr;
    size_t nref = fx_parse(HTTP_RESPONSE, heads, 1, answer, alen, 1, ref, 8, &rerr);
    size_t ngot = fx_parse(HTTP_RESPONSE, heads, 1, r.client_got, r.client_len, 1, got, 8, &gerr);
    const fx_msg_t *want = first_final(ref, nref), *have = first_final(got, ngot);
    for (size_t i = 0; i < ngot; i++)
        if (got[i].status < 200 && got[i].status != 101)
            fail("the client got an interim %d it did not ask for", got[i].status);
    if (!have) {
        /* nothing complete: only a close, or a cut response that a strict
         * parser sees as incomplete (never a malformed one) */
        if (gerr != HPE_OK && gerr != HPE_INVALID_EOF_STATE)
            fail("the client received invalid HTTP: %s", llhttp_errno_name(gerr));
        if (r.client_len == 0 && want && want->status >= 200 && want->status < 600)
            fail("a complete %d from the primary reached the client as nothing", want->status);
    } else if (have->status == 502 && (!want || want->status != 502)) {
        /* the proxy's own answer to a response it refused */
    } else if (!want && http10 && !have->framed && !head) {
        /* an HTTP/1.0 client's close-delimited body: the proxy ends a cut one
         * with a RST (test_fuzz_regressions.py checks it over TCP), which the
         * fixture's socket pair shows as an ordinary end */
    } else {
        if (!want) fail("the client got a complete %d the primary never sent whole", have->status);
        if (have->status != want->status)
            fail("status %d reached the client as %d", want->status, have->status);
        if (have->body_len != want->body_len ||
            (have->body_len && memcmp(have->body, want->body, have->body_len) != 0))
            fail("the body (%zu bytes) reached the client as %zu other bytes", want->body_len,
                 have->body_len);
    }
    fx_msgs_free(ref, nref);
    fx_msgs_free(got, ngot);
    fx_result_free(&r);
    return 0;
}
