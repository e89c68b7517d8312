/*
 * tee: the mirror copy of one sampled request and its legs to the shadow
 * (and the optional noise replica), kept apart from the client connection.
 *
 * A st_mirror_t is created at the client's headers-complete when the request
 * is sampled, fed the request body as it streams to the primary, and sent
 * once the request is complete. It lives in the worker's mirror list and is
 * freed when the primary's response is done (captured or failed) and every
 * leg is done, failed or timed out; its captures are then moved into a job
 * for a comparator thread (cmpthread.h), never compared on the worker loop.
 * The client only ever calls the functions below; none of them can block,
 * fail or delay the client, and a mirror never points back to its client.
 */
#ifndef ST_TEE_H
#define ST_TEE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "http.h"
#include "list.h"

struct st_worker;
typedef struct st_mirror st_mirror_t;

/* The shadow's health as one worker sees it: marked down after a failed
 * connect or a run of response timeouts, for a backoff that doubles (250 ms
 * .. 8 s), then one probe copy decides. Read and written by tee.c only. */
typedef struct {
    uint64_t down_until; /* uv_now before which the shadow is treated as down */
    uint64_t backoff_ms; /* 0: the shadow is up; else its current backoff */
    unsigned timeouts;   /* shadow response timeouts in a row */
    int probing;         /* a probe copy is in flight to a shadow marked down */
} st_shadow_health_t;

/* One worker's tee state, embedded in st_worker_t (worker.h): its mirrors,
 * their caps and the send queue. The worker sets mirrors, cap and mem_cap
 * up (st_worker_init), st_tee_worker_init the queue and its prepare handle;
 * everything else is tee.c's. */
typedef struct {
    st_list_t mirrors; /* st_mirror_t alive (in flight or waiting for the primary) */
    size_t inflight;   /* mirrors in the list */
    size_t mem;        /* bytes of mirror copies held */
    size_t cap;        /* this worker's share of --shadow-max-inflight */
    size_t mem_cap;    /* this worker's share of --mirror-memory-budget */
    st_list_t queue;   /* st_mirror_t complete, sent by prepare before the next poll */
    uv_prepare_t prepare;
    int prepare_open;
    st_shadow_health_t shadow; /* the shadow's health */
} st_tee_t;

/* A captured response (primary, shadow or noise) for the comparator. */
typedef struct {
    int status;
    st_sbuf_t names; /* header bytes: name \0 value \0 ... */
    size_t nheaders;
    st_sbuf_t body;    /* up to compare_max_body bytes */
    int truncated;     /* more body than captured */
    const char *error; /* NULL, or "connect", "timeout", "reset", "protocol" */
    double seconds;    /* response latency */
} st_capture_t;

typedef struct {
    const st_http_msg_t *req; /* spans valid during the call */
    int method;               /* llhttp_method_t */
    const char *method_name;
    const char *request_id;
    const char *client_ip;
    const char *proto; /* X-Forwarded-Proto as sent to the primary */
    int keep_forwarded_proto;
    int has_body;
    int chunked;
    uint64_t content_length; /* with has_body && !chunked */
    int upgrade;             /* Upgrade or CONNECT: never mirrored */
} st_tee_request_t;

/* Decides whether to mirror this request (method, sampling, caps, shadow
 * health, declared body size) and counts the decision. Returns the mirror,
 * or NULL when the request is not mirrored. */
st_mirror_t *st_tee_begin(struct st_worker *w, const st_tee_request_t *r);
/* Appends request body bytes to the mirror copy. Returns 0, or -1 when the
 * copy was dropped (too large, memory budget): it is counted and freed and
 * the caller forgets the pointer. */
int st_tee_body(st_mirror_t *m, const char *data, size_t len);
/* The request is complete: the copy is queued and goes to the shadow (and
 * noise replica) before the loop next waits for I/O, after the client work
 * of this turn. The caller keeps the pointer until st_tee_primary_done. */
void st_tee_request_done(st_mirror_t *m);
/* The client went away before its request was complete: drop the copy. */
void st_tee_abort(st_mirror_t *m);

/* The capture the client fills with the primary's response, or NULL when
 * responses are not compared. */
st_capture_t *st_tee_primary_capture(st_mirror_t *m);
/* The primary's response is complete (ok = 1) or failed (ok = 0). After this
 * the client forgets the pointer. */
void st_tee_primary_done(st_mirror_t *m, int ok, double seconds);

void st_capture_init(st_capture_t *c);
void st_capture_free(st_capture_t *c);
void st_capture_header(st_capture_t *c, const char *name, size_t nlen, const char *value,
                       size_t vlen);
/* The response announced content_length bytes: reserves what will be
 * captured of them (at most max) at once, instead of growing by doubling. */
void st_capture_expect(st_capture_t *c, uint64_t content_length, size_t max);
void st_capture_body(st_capture_t *c, const char *data, size_t len, size_t max);

/* The soft in-flight cap: 1 when a copy is to be skipped with `inflight`
 * copies in flight under `cap`; `random` is a uniform 64-bit draw. Never
 * below half the cap, always at the cap, in between with probability
 * (inflight - cap/2) / (cap - cap/2). */
int st_tee_over_cap(size_t inflight, size_t cap, uint64_t random);

/* The worker's tee state (send queue and its prepare handle): init with the
 * worker's loop, close when the worker finishes. */
int st_tee_worker_init(struct st_worker *w);
void st_tee_worker_close(struct st_worker *w);

/* Wakes the comparator threads pushed to in this turn from the prepare
 * phase, after the turn's client work (what a finished mirror does; the
 * mesh halves of exchange_mesh.c use it too). */
void st_tee_kick_later(struct st_worker *w);

/* Drain support: drops mirrors whose legs have not finished (force stop). */
void st_tee_abort_all(struct st_worker *w);

#endif
