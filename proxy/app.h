/*
 * app: what the main thread owns: the configuration, the workers, and the
 * process-wide state the admin endpoints report (readiness, draining).
 * Workers never read this struct; the admin thread reads worker metrics, the
 * comparator queues and statistics only through their thread-safe render
 * functions.
 */
#ifndef ST_APP_H
#define ST_APP_H

#include <stdatomic.h>
#include <uv.h>

#include "config.h"
#include "worker.h"

typedef struct st_app {
    const st_config_t *cfg;
    uv_loop_t *loop; /* the main thread's loop: admin, signals, probe */
    st_worker_t *workers;
    int nworkers;
    st_cmpthread_t
        *comparators; /* --compare-threads, none without --shadow or with --compare off */
    int ncomparators;
    _Atomic int draining;   /* 1 after SIGTERM / SIGINT */
    _Atomic int primary_ok; /* last readiness probe of the primary succeeded */
    int handed_over;        /* a successor took the listening sockets (main thread only) */
} st_app_t;

typedef struct st_admin st_admin_t;

/* Starts the admin listener on app->loop: on fds[0..n) (handed over by a
 * predecessor, owned by the admin now), or n = 0: on a new socket bound to
 * --admin. NULL with a message logged on error. */
st_admin_t *st_admin_start(st_app_t *app, const int *fds, int n);
/* The admin's listening sockets (for a handover); their number. */
int st_admin_fds(const st_admin_t *a, int *fds, int max);
/* Stops accepting admin connections (a successor answers them now). */
void st_admin_unlisten(st_admin_t *a);
/* Stops listening and closes open admin connections; frees on the loop. */
void st_admin_stop(st_admin_t *admin);

#endif
