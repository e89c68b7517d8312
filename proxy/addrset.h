/*
 * addrset: the addresses one upstream name stands for, the one a new
 * connection tries first, and their asynchronous re-resolution.
 *
 * A connection tries the addresses in turn on a failed connect, starting at
 * `cur` (the one that connected last), as curl and nginx do: a name whose
 * first address is dead (localhost is ::1 and 127.0.0.1, the app listens on
 * 127.0.0.1 only) costs one refused connect, once. Names are re-resolved in
 * libuv's thread pool (uv_getaddrinfo), never on the loop thread; a failed
 * resolution keeps the last list, and a list that only changed its order is
 * kept as it is. Each loop owns its own sets: nothing is shared or locked.
 */
#ifndef ST_ADDRSET_H
#define ST_ADDRSET_H

#include <stdint.h>
#include <uv.h>

#include "config.h"

/* A stream handle that is a TCP socket or a Unix-domain socket (unix:). */
typedef union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} st_sock_t;

/* Outcome of one resolution, also the index of its metric label. */
enum st_resolve_result {
    ST_RESOLVE_UNCHANGED = 0,
    ST_RESOLVE_CHANGED,
    ST_RESOLVE_FAILED,
    ST_RESOLVE_COUNT,
    ST_RESOLVE_CANCELED = ST_RESOLVE_COUNT /* st_addrset_cancel: not a result, never counted */
};
extern const char *const st_resolve_result_names[ST_RESOLVE_COUNT];

typedef struct st_addrset st_addrset_t;
typedef void (*st_addrset_cb)(st_addrset_t *s, enum st_resolve_result result, void *arg);

struct st_addrset {
    const st_addr_t *addr; /* name and port, borrowed from the configuration */
    const char *name;      /* "primary", "shadow", "noise", "probe": for logs */
    uv_loop_t *loop;
    st_sockaddr_t a[ST_ADDR_MAX];
    int n;                  /* 0: nothing resolved (yet) */
    int cur;                /* the address new connections try first */
    unsigned gen;           /* changes whenever a[] changes */
    int resolving;          /* a uv_getaddrinfo is in flight */
    int failing;            /* the last resolution failed (logged once per outage) */
    int started;            /* a resolution was started at least once */
    uint64_t last_start_ms; /* loop time the last resolution started */
    uv_getaddrinfo_t gai;
    int quiet;        /* log changes at debug level (the probe's twin of the workers' sets) */
    st_addrset_cb cb; /* after each resolution, canceled ones too; may be NULL */
    void *cb_arg;
};

/* Starts with the addresses resolved at start-up (addr->addrs). */
void st_addrset_init(st_addrset_t *s, uv_loop_t *loop, const st_addr_t *addr, const char *name,
                     st_addrset_cb cb, void *cb_arg);
/* 1 when the name can resolve differently later (not an IP literal or a path). */
static inline int st_addrset_dynamic(const st_addrset_t *s)
{
    return !s->addr->numeric;
}
/* Starts a re-resolution unless one is in flight, the name is an IP literal
 * or a path, or the last one started less than min_gap_ms ago. */
void st_addrset_refresh(st_addrset_t *s, uint64_t min_gap_ms);
/* Cancels a resolution still queued (drain); one already running ends by
 * itself, and the loop waits for it. */
void st_addrset_cancel(st_addrset_t *s);
/* A connection to a[idx] (picked at generation gen) connected: new ones start there. */
void st_addrset_worked(st_addrset_t *s, unsigned gen, int idx);
/* A connect to a[idx] failed: new connections start at the next address. */
void st_addrset_failed(st_addrset_t *s, unsigned gen, int idx);
/* Index of sa in the set, or -1. */
int st_addrset_find(const st_addrset_t *s, const st_sockaddr_t *sa);
/* Initialises h for a[idx] (a TCP or a pipe handle, h->handle.data = data)
 * and starts connecting it; cb follows. 0, or a negative libuv error from a
 * connect that failed at once (h is initialised: close it; cb never runs). */
int st_addrset_dial(const st_addrset_t *s, int idx, st_sock_t *h, void *data, uv_connect_t *req,
                    uv_connect_cb cb);
/* "a b c" of the addresses, for logs. */
void st_addrset_format(const st_addrset_t *s, char *out, size_t outlen);

#endif
