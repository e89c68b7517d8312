/*
 * listener: listening sockets accepted by hand on one loop (a worker's
 * client listener, the admin listener).
 *
 * libuv's uv_listen() accept loop, when accept(2) fails with EMFILE and its
 * one reserve descriptor is gone (another thread took it), calls back with
 * the error and tries again at once, inside the same callback: the loop
 * thread spins, serves nothing else, and logs a line per try. Here each
 * socket is a uv_poll_t and accept4(2) runs at most ST_ACCEPT_BATCH times
 * per wakeup. On EMFILE, ENFILE, ENOBUFS or ENOMEM the listener pauses: new
 * connections wait in the kernel's accept queue (nothing is refused or
 * reset) while existing ones are served, for a back-off that doubles from
 * ST_ACCEPT_BACKOFF_MIN_MS to ST_ACCEPT_BACKOFF_MAX_MS (back to the minimum
 * after an accept succeeds). With a connection cap (max_conns) it also
 * pauses while the owner holds that many connections, until
 * st_listener_resume() finds it below the cap again, so the descriptors left
 * stay for the connections to the upstreams. nginx (accept events off for
 * accept_mutex_delay, 500 ms) and haproxy (listener paused, retried after
 * 100 ms) back off the same way; closing what arrives instead (libuv's
 * reserve descriptor trick) turns a shortage into client-visible resets.
 */
#ifndef ST_LISTENER_H
#define ST_LISTENER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "metrics.h"

#define ST_LISTENER_MAX          16 /* sockets per listener (more after a handover) */
#define ST_ACCEPT_BATCH          64
#define ST_ACCEPT_BACKOFF_MIN_MS 50
#define ST_ACCEPT_BACKOFF_MAX_MS 500

typedef struct st_listener st_listener_t;

/* A connection accepted: fd is non-blocking and close-on-exec, and the
 * callee's (it closes it, also when it cannot take it). */
typedef void (*st_accept_cb)(st_listener_t *l, int fd);

enum st_listener_pause { ST_PAUSE_BACKOFF = 1, ST_PAUSE_FULL = 2 };

struct st_listener {
    void *data;       /* the owner's */
    const char *name; /* "worker 0", "admin": for logs */
    st_accept_cb on_accept;
    size_t max_conns;                    /* 0: no cap */
    const size_t *nconns;                /* the owner's open connections, compared with max_conns */
    st_metrics_t *metrics;               /* accept_errors counted here, NULL: not counted */
    void (*on_closed)(st_listener_t *l); /* after st_listener_close: all closed, NULL: none */
    struct {
        uv_poll_t poll;
        int fd;
    } socks[ST_LISTENER_MAX];
    int nsocks;
    uv_timer_t timer; /* back-off */
    int paused;       /* enum st_listener_pause bits */
    uint64_t backoff_ms;
    int open;    /* handles initialised and not closing */
    int handles; /* handles not yet closed */
};

/* A non-blocking, close-on-exec TCP socket bound to sa (SO_REUSEPORT when
 * reuseport, SO_REUSEADDR always) and listening. The fd, or a negative libuv
 * error. */
int st_listen_socket(const struct sockaddr *sa, int reuseport, int backlog);

/* 1 when fd is a listening TCP socket bound to exactly sa (address and port). */
int st_listen_socket_matches(int fd, const struct sockaddr *sa);

/* Starts polling fds[0..n) on loop; the listener owns them from now on, also
 * on failure (closed by st_listener_close). Set data, name, on_accept,
 * max_conns, nconns and metrics before. 0 or a negative libuv error. */
int st_listener_start(st_listener_t *l, uv_loop_t *loop, const int *fds, int n);
/* One of the owner's connections closed: accept again if paused at the cap
 * and below it now. */
void st_listener_resume(st_listener_t *l);
/* Stops accepting and closes the sockets once the handles are closed (the
 * loop must run). Connections still in the accept queue are reset by the
 * kernel unless another process holds the same sockets (handover.h). */
void st_listener_close(st_listener_t *l);

#endif
