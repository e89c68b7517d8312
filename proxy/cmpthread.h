/*
 * cmpthread: the comparator threads (--compare-threads N, default 1), off
 * the loops that serve clients. Each has its own uv loop, runs at a lower
 * scheduling priority than the workers (--compare-sched: SCHED_IDLE, or
 * SCHED_BATCH at nice --compare-nice) and owns the comparison statistics
 * with their Redis sink, the endpoint set and a borrowed pointer to the
 * (immutable) rules.
 *
 *   worker k ──st_cmpfeed_submit──▶ ring (k, t) ──pop──▶ comparator t
 *     (job moved in, no copy)      st_cmpq_t SPSC        st_cmpjob_compare,
 *   st_cmpfeed_kick at the end ──uv_async_send──▶ wake   st_sink_record, free
 *     of the loop turn, only to a thread that sleeps
 *     (one that found its rings empty within LINGER_MS of its last job does
 *     not sleep: it looks again every POLL_MS, so a steady stream of pairs
 *     costs the workers no wake-up syscall)
 *
 * Every worker has one ring into every comparator thread, so each ring has
 * one producer and one consumer and the client path takes no lock. A worker
 * gets a share of the queue's length cap (--compare-queue) and byte budget
 * (--compare-queue-bytes); a pair beyond either is dropped, freed and
 * counted, never waited for. A thread works in slices of about 2 ms, one per
 * loop turn, so its Redis flushes and replies are served between them, and
 * within a CPU budget (--compare-cpu cores for all threads together): the
 * CPU it burns counts against the container's quota and its cgroup's share
 * like the workers' own, whatever its scheduling class, so it pauses when
 * over budget and the pairs that pile up meanwhile are dropped and counted.
 *
 * Shutdown (main thread): st_cmpthread_stop() after --drain-timeout makes the
 * thread drop instead of compare; st_cmpthread_finish() once every worker
 * has finished (no producer is left) makes it close when its rings are
 * empty: a final Redis flush (st_sink_close), then its loop returns and it
 * signals done_async.
 */
#ifndef ST_CMPTHREAD_H
#define ST_CMPTHREAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "cmpjob.h"
#include "cmpq.h"
#include "config.h"
#include "mesh.h"
#include "metrics.h"

typedef struct st_cmpthread {
    int id;
    const st_config_t *cfg;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;            /* workers and main -> this thread */
    uv_idle_t work;             /* active while jobs wait: one slice per loop turn */
    _Atomic int sleeping;       /* 1: every ring was found empty; the next push must wake */
    uv_timer_t linger;          /* rings empty, a job seen lately: look again soon, no wake */
    uint64_t last_job;          /* uv_hrtime of the last job popped */
    _Atomic int stop;           /* main: drop what is queued instead of comparing it */
    _Atomic int producers_done; /* main: every worker finished; close once the rings are empty */
    _Atomic int finished;       /* set by this thread once its loop has returned */
    uv_async_t *done_async;     /* this thread -> main: finished */
    st_cmpq_t **rings;          /* one per worker; owned */
    size_t nrings;
    size_t next;              /* ring looked at first (round robin) */
    st_cmpjob_sink_t sink;    /* rules borrowed; endpoints and stats owned (this loop only) */
    pthread_mutex_t pub_lock; /* guards stats_pub against the admin thread */
    st_sink_t *stats_pub;     /* sink.stats while /metrics may read it, NULL once closing */
    st_hist_t duration;       /* seconds per comparison (one writer: this thread) */
    _Atomic uint64_t compared;
    int closing;
    /* CPU budget (--compare-cpu, this thread's share): a token bucket of CPU
     * nanoseconds refilled at `cpu_rate` per wall nanosecond, at most
     * `cpu_burst`; below zero the thread pauses on `pause` until it is
     * refilled. 0 rate: no budget. Lifted once no producer is left. */
    double cpu_rate;
    double cpu_tokens, cpu_burst;
    uint64_t cpu_last, wall_last; /* CLOCK_THREAD_CPUTIME_ID and uv_hrtime at the last check */
    uv_timer_t pause;
    int paused;
    _Atomic uint64_t cpu_ns;    /* CPU this thread spent comparing (and dropping) */
    _Atomic uint64_t paused_ns; /* wall time spent paused by the budget */
    /* mesh mode: halves published through sink.stats (st_sink_mesh_publish) */
    st_mesh_hash_t mesh_hash;        /* digests of redacted header values */
    _Atomic uint64_t mesh_published; /* stored in Redis, waiting for the partner */
    _Atomic uint64_t mesh_joined;    /* completed a pair here */
    _Atomic uint64_t mesh_dropped[ST_MDROP_COUNT];
    _Atomic uint64_t mesh_pairs[3]; /* joined pairs: compared, primary_failed, invalid */
    st_hist_t mesh_join;            /* second half's arrival minus the first's (Redis clock) */
} st_cmpthread_t;

/* Sets the thread up on the calling (main) thread: loop, one ring per
 * worker, statistics (starts connecting to Redis on this loop). 0 or a
 * negative libuv error. */
int st_cmpthread_init(st_cmpthread_t *ct, int id, const st_config_t *cfg, const st_rules_t *rules,
                      size_t nworkers, uv_async_t *done_async);
/* Runs the loop on a new thread at the lower priority. */
int st_cmpthread_start(st_cmpthread_t *ct);
/* Main thread: drop the queued jobs (counted as "shutdown") from now on. */
void st_cmpthread_stop(st_cmpthread_t *ct);
/* Main thread: no worker will push any more; close once the rings are empty. */
void st_cmpthread_finish(st_cmpthread_t *ct);
/* Joins the thread and frees everything (after it reported finished). */
void st_cmpthread_join(st_cmpthread_t *ct);

/* Prometheus text of the comparator queue (skips by reason, pairs queued,
 * queue length and bytes, comparison duration), summed over n threads, and
 * the statistics of each (st_sink_prometheus). Admin thread. */
void st_cmpthread_render(st_cmpthread_t *all, size_t n, FILE *out);
/* Prometheus text of mesh mode (shadowtee_mesh_*): the workers' counters
 * and the comparator threads', for this process's --mesh-role. */
void st_cmpthread_render_mesh(const st_config_t *cfg, st_metrics_t *const *workers, size_t nw,
                              st_cmpthread_t *all, size_t n, FILE *out);

/* ---- the producer end, one per worker ------------------------------------ */

typedef struct {
    st_cmpthread_t *threads; /* NULL: nothing is compared */
    size_t nthreads;
    size_t ring;        /* this worker's ring in each thread */
    size_t len_cap;     /* this worker's share of --compare-queue */
    uint64_t bytes_cap; /* this worker's share of --compare-queue-bytes */
    size_t rr;          /* round robin start among equally loaded threads */
    uint64_t kick;      /* bit per thread pushed to since the last st_cmpfeed_kick */
    int last_skip;      /* enum st_cmpskip of the last refusal (admit or submit) */
    size_t reserved;    /* tee pairs admitted by st_cmpfeed_reserve, not yet unreserved */
    uint64_t est_bytes; /* running average of the jobs submitted (what a reserved pair will hold) */
} st_cmpfeed_t;

void st_cmpfeed_init(st_cmpfeed_t *f, st_cmpthread_t *threads, size_t nthreads, size_t ring,
                     size_t len_cap, uint64_t bytes_cap);
/* Asked when a request is about to be mirrored: 1 when the comparator
 * queue has room now, so the responses are worth capturing; 0 when it is
 * full (by length or bytes): the pair is counted as dropped at once and its
 * responses are not captured (no copy made for a pair that would be dropped). */
int st_cmpfeed_admit(st_cmpfeed_t *f);
/* st_cmpfeed_admit for a tee'd pair, counting the pairs admitted and not
 * yet handed over: 1 (the pair reserved its room: call st_cmpfeed_unreserve
 * once it is submitted or abandoned) when the held jobs and bytes plus those
 * of every reserved pair (at the running average size of a job) plus this
 * one stay within the caps; else 0, counted as dropped at once. Without the
 * reservations, a worker with many pairs in flight admits them all while
 * the queue is just below a cap, copies their bodies and drops most at
 * st_cmpfeed_submit. */
int st_cmpfeed_reserve(st_cmpfeed_t *f);
void st_cmpfeed_unreserve(st_cmpfeed_t *f);
/* Hands job over to the least loaded thread. 0: queued, the thread owns the
 * job now; -1: over the length cap or the byte budget: counted and freed.
 * Never blocks; the thread is woken by the next st_cmpfeed_kick. */
int st_cmpfeed_submit(st_cmpfeed_t *f, st_cmpjob_t *job);
/* Wakes each thread pushed to since the last call that went to sleep
 * (a uv_async_send only then). The worker calls it once per loop turn,
 * after the client work of the turn, and before its loop ends. */
void st_cmpfeed_kick(st_cmpfeed_t *f);

#endif
