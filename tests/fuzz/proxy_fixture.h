/*
 * proxy_fixture: one real worker (proxy/worker.c, conn.c, exchange*.c, tee.c, the
 * comparator) driven in-process on the fuzzer's thread, between fake
 * upstreams on the same loop, so a harness runs the request and response
 * paths exactly as the proxy does: real loopback sockets, llhttp with the
 * proxy's callbacks and head model, the pools, the mirror copy and the
 * comparison of the captures.
 *
 *   harness client (a socket pair) --> st_client_accept (the worker's client)
 *                                    |--> fake primary (records, answers)
 *                                    '--> fake shadow  (records, answers)
 *
 * Each fake upstream parses what it receives with a strict llhttp and keeps
 * every complete request (method, target, decoded body), and answers each
 * with its `answer` bytes (then half-closes, when answer_close) or a small
 * 200. fx_exchange() sends the client bytes, half-closes, runs the loop
 * until the worker has no client and no mirror left, and returns what the
 * client received. A run that does not settle within FX_HANG_MS aborts:
 * the proxy did not finish a connection whose client had gone.
 */
#ifndef ST_FUZZ_PROXY_FIXTURE_H
#define ST_FUZZ_PROXY_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#define FX_MAX_REQS 64
#define FX_BODY_CAP (1 << 17)
#define FX_HANG_MS  8000

typedef struct {
    int method; /* llhttp_method_t */
    char url[512];
    size_t url_len;
    unsigned char *body; /* decoded (chunks joined), owned */
    size_t body_len;
    int mirror; /* had x-shadowtee-mirror: 1 */
    int upgrade;
} fx_req_t;

typedef struct {
    fx_req_t reqs[FX_MAX_REQS]; /* complete requests received, in order */
    size_t nreqs;
    int bad;                     /* bytes that a strict parser refused arrived */
    const unsigned char *answer; /* NULL: "200 ok" to each request */
    size_t answer_len;
    int answer_close; /* half-close after writing the answer once */
} fx_upstream_t;

typedef struct {
    fx_upstream_t primary, shadow;
    unsigned char *client_got; /* bytes the client received, owned */
    size_t client_len;
} fx_result_t;

/* Once per process: starts the worker (flags as for shadowtee, --primary and
 * --shadow are added) . Aborts on failure. */
void fx_init(const char *const *flags, int nflags);
/* One exchange: the client bytes are written in pieces ending at cuts[]
 * (the loop runs between pieces, so heads and bodies also arrive cut across
 * reads), then the client half-closes. Set the upstreams' answers in r
 * before (r zeroed otherwise). */
void fx_exchange(fx_result_t *r, const unsigned char *client, size_t len, const size_t *cuts,
                 size_t ncuts);
/* Takes a split plan off the front of a fuzz input: one byte says how many
 * cut offsets follow (two bytes each, big-endian). Returns their number. */
#define FX_MAX_CUTS 4
size_t fx_split(const unsigned char **p, size_t *len, size_t cuts[FX_MAX_CUTS]);
void fx_result_free(fx_result_t *r);

/* A strict llhttp parse of bytes as a sequence of messages of `type`
 * (HTTP_REQUEST / HTTP_RESPONSE). For responses, heads[i] says the request
 * of the i-th final (non-1xx) response was HEAD (no body). Fills at most max
 * messages and returns the number of complete ones; *err_out is llhttp's
 * error where the parse stopped (HPE_OK: all parsed, HPE_PAUSED_UPGRADE: an
 * upgrade). at_eof: the stream ended after the bytes (llhttp_finish). */
typedef struct {
    int method, status;
    unsigned char *body; /* owned */
    size_t body_len;
    char url[512];
    size_t url_len;
    int upgrade;
    int framed; /* Content-Length or chunked: its end is in the bytes, not the close */
} fx_msg_t;
size_t fx_parse(int type, const int *heads, size_t nheads, const unsigned char *p, size_t len,
                int at_eof, fx_msg_t *out, size_t max, int *err_out);
void fx_msgs_free(fx_msg_t *m, size_t n);

#endif
