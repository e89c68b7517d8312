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
} st_app_t;

typedef struct st_admin st_admin_t;

/* Starts the admin listener on app->loop. NULL with a message logged on error. */
st_admin_t *st_admin_start(st_app_t *app);
/* Stops listening and closes open admin connections; frees on the loop. */
void st_admin_stop(st_admin_t *admin);

#endif
