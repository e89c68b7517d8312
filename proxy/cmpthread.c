/*
 * cmpthread: comparator threads and the workers' producer end (see
 * cmpthread.h).
 *
 * Waking without a lost wake-up and without a syscall per job: a thread
 * that finds every ring empty stores sleeping = 1, then (after a full fence)
 * looks at the rings once more before it stops its work handle; a producer
 * stores its tail, then (after a full fence) loads sleeping. Of the two
 * stores at least one is seen by the other side's load, so either the
 * thread sees the new job or the producer sees that it sleeps and sends
 * the wake (the exchange lets one producer of several send it). While a
 * thread works, producers only push.
 */
#include "cmpthread.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "shadowtee/schema.h"

#define SLICE_NS (2 * 1000000ULL) /* work per loop turn before Redis and timers get a turn */
/* Lingering: a thread whose rings run empty within LINGER_MS of its last job
 * does not go to sleep (which makes the next push cost its worker an
 * eventfd write and a cross-CPU wake-up, one per pair at a few hundred
 * pairs per second) but looks at its rings again every POLL_MS, as long as
 * jobs keep coming; sleeping stays 0 meanwhile, so workers only push. A pair
 * then waits at most POLL_MS longer to be compared; an idle process stops
 * polling LINGER_MS after its last pair. */
#define POLL_MS   2
#define LINGER_NS (100 * 1000000ULL)

/* ---- the thread ----------------------------------------------------------- */

/* The test build's slow comparator (--test-compare-delay): burns CPU like a
 * slow diff would, so priorities and the drop path are exercised for real. */
static void test_delay(const st_cmpthread_t *ct)
{
    uint64_t ms = ct->cfg->test_compare_delay_ms;
    if (!ms) return;
    uint64_t until = uv_hrtime() + ms * 1000000ULL;
    while (uv_hrtime() < until) {
    }
}

/* ---- mesh halves ------------------------------------------------------------- */

static const char *role_name(int role)
{
    return role == ST_ROLE_STABLE   ? ST_MESH_SIDE_STABLE
           : role == ST_ROLE_SHADOW ? ST_MESH_SIDE_SHADOW
                                    : ST_MESH_SIDE_BASELINE;
}

/* The half is done with (answered, or never sent): freed, and only now
 * free again for the queue's caps. */
static void half_done(st_cmpjob_t *job, int shutdown)
{
    st_cmpq_t *q = job->from;
    size_t bytes = job->bytes;
    st_cmpjob_free(job);
    st_cmpq_release(q, bytes, shutdown);
}

static void half_drop(st_cmpthread_t *ct, st_cmpjob_t *job, enum st_mesh_drop why)
{
    ST_INC(ct->mesh_dropped[why]);
    half_done(job, why == ST_MDROP_SHUTDOWN);
}

/* The partner's half came back: the pair (stable in primary, shadow in
 * shadow) is compared and recorded like a tee'd pair. */
static void half_join(st_cmpthread_t *ct, st_cmpjob_t *job, const st_mesh_reply_t *r)
{
    st_capture_t partner;
    st_capture_init(&partner);
    int64_t partner_ms = 0;
    ST_INC(ct->mesh_joined);
    st_hist_observe(&ct->mesh_join, (double)(r->join_ms > 0 ? r->join_ms : 0) / 1e3);
    if (st_mesh_decode(r->partner, r->partner_len, &partner, &partner_ms) != 0) {
        ST_INC(ct->mesh_pairs[2]);
        st_warn("msg=\"mesh: partner half unreadable\" request_id=%s bytes=%zu", job->request_id,
                r->partner_len);
        return;
    }
    if (job->role == ST_ROLE_STABLE) {
        job->shadow = partner;
    } else { /* ours is the shadow's: the partner is the stable answer */
        job->shadow = job->primary;
        job->primary = partner;
        job->wall_ms = partner_ms;
    }
    if (job->primary.error) { /* the stable pod did not answer: nothing to compare with */
        ST_INC(ct->mesh_pairs[1]);
        st_debug("msg=\"mesh: stable half failed\" request_id=%s reason=%s", job->request_id,
                 job->primary.error);
        return;
    }
    test_delay(ct);
    uint64_t t0 = uv_hrtime();
    if (st_cmpjob_compare(job, &ct->sink) == 0) {
        ST_INC(ct->compared);
        ST_INC(ct->mesh_pairs[0]);
    }
    st_hist_observe(&ct->duration, (double)(uv_hrtime() - t0) / 1e9);
}

static void on_half_reply(void *arg, const st_mesh_reply_t *r)
{
    st_cmpjob_t *job = arg;
    st_cmpthread_t *ct = job->owner;
    switch (r->result) {
    case ST_MESH_STORED:
        ST_INC(ct->mesh_published);
        break;
    case ST_MESH_JOINED:
        half_join(ct, job, r);
        break;
    case ST_MESH_DUPLICATE:
        ST_INC(ct->mesh_dropped[ST_MDROP_DUPLICATE]);
        break;
    case ST_MESH_LOST:
        ST_INC(ct->mesh_dropped[ST_MDROP_CONNECTION_LOST]);
        break;
    case ST_MESH_ERROR:
        ST_INC(ct->mesh_dropped[ST_MDROP_ERROR_REPLY]);
        break;
    }
    half_done(job, 0);
}

/* Publishes one half popped from q (the job stays alive until Redis
 * answered); a half that cannot go out now is dropped and counted: the
 * client was served long ago, nothing waits. */
static void half_publish(st_cmpthread_t *ct, st_cmpq_t *q, st_cmpjob_t *job, int drop)
{
    job->from = q;
    job->owner = ct;
    if (drop) {
        half_drop(ct, job, ST_MDROP_SHUTDOWN);
        return;
    }
    if (st_mesh_digest_headers(&ct->mesh_hash, &job->primary, ct->sink.rules) != 0 ||
        st_mesh_encode(&job->wire, &job->primary, job->wall_ms) != 0) {
        half_drop(ct, job, ST_MDROP_QUEUE_BYTES);
        return;
    }
    int partner = job->role == ST_ROLE_STABLE ? ST_ROLE_SHADOW : ST_ROLE_STABLE;
    if (st_sink_mesh_publish(ct->sink.stats, role_name(job->role), role_name(partner),
                             job->request_id, job->wire.p, job->wire.len, on_half_reply, job) != 0)
        half_drop(ct, job, ST_MDROP_REDIS_DOWN);
}

/* Compares (or, when stopping, drops) one job popped from q and frees it. */
static void run_job(st_cmpthread_t *ct, st_cmpq_t *q, st_cmpjob_t *job, int drop)
{
    if (job->kind == ST_CMPJOB_HALF) {
        half_publish(ct, q, job, drop);
        return;
    }
    if (!drop) {
        test_delay(ct);
        uint64_t t0 = uv_hrtime();
        if (st_cmpjob_compare(job, &ct->sink) == 0) ST_INC(ct->compared);
        st_hist_observe(&ct->duration, (double)(uv_hrtime() - t0) / 1e9);
    }
    size_t bytes = job->bytes;
    st_cmpjob_free(job); /* the bodies go now, before the queue counts them as free */
    st_cmpq_release(q, bytes, drop);
}

/* The next job, round robin over the rings (one job per ring in turn, so
 * one busy worker cannot starve another's pairs). */
static st_cmpjob_t *next_job(st_cmpthread_t *ct, st_cmpq_t **from)
{
    for (size_t i = 0; i < ct->nrings; i++) {
        st_cmpq_t *q = ct->rings[(ct->next + i) % ct->nrings];
        st_cmpjob_t *job = st_cmpq_pop(q);
        if (job) {
            ct->next = (ct->next + i + 1) % ct->nrings;
            *from = q;
            return job;
        }
    }
    return NULL;
}

static int rings_empty(const st_cmpthread_t *ct)
{
    for (size_t i = 0; i < ct->nrings; i++)
        if (!st_cmpq_empty(ct->rings[i])) return 0;
    return 1;
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_stats_closed(void *arg)
{
    st_cmpthread_t *ct = arg;
    ct->sink.stats = NULL;
    uv_close((uv_handle_t *)&ct->work, on_closed);
    uv_close((uv_handle_t *)&ct->pause, on_closed);
    uv_close((uv_handle_t *)&ct->linger, on_closed);
    uv_close((uv_handle_t *)&ct->wake, on_closed);
}

/* Every producer is gone and every ring empty: the final flush, then the
 * handles close and the loop returns. */
static void begin_close(st_cmpthread_t *ct)
{
    ct->closing = 1;
    uv_idle_stop(&ct->work);
    uv_timer_stop(&ct->pause);
    uv_timer_stop(&ct->linger);
    pthread_mutex_lock(&ct->pub_lock);
    ct->stats_pub = NULL; /* /metrics stops reading them before they are freed */
    pthread_mutex_unlock(&ct->pub_lock);
    uint64_t dropped = 0;
    for (size_t i = 0; i < ct->nrings; i++)
        dropped += st_cmpq_skipped(ct->rings[i], ST_CMPSKIP_SHUTDOWN);
    if (dropped)
        st_warn("msg=\"comparisons dropped at shutdown\" thread=%d count=%" PRIu64, ct->id,
                dropped);
    st_info("msg=\"comparator finished\" thread=%d compared=%" PRIu64 " dropped_shutdown=%" PRIu64,
            ct->id, atomic_load(&ct->compared), dropped);
    st_sink_close(ct->sink.stats, on_stats_closed, ct);
}

/* ---- the CPU budget --------------------------------------------------------- */

static void on_work(uv_idle_t *h);
static void on_linger(uv_timer_t *t);

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void on_pause_end(uv_timer_t *t)
{
    st_cmpthread_t *ct = t->data;
    ct->paused = 0;
    if (!ct->closing) uv_idle_start(&ct->work, on_work);
}

/* Charges the CPU used since the last check and refills the bucket for the
 * wall time passed. Returns 1 when the thread must pause (it then did). */
static int over_budget(st_cmpthread_t *ct)
{
    uint64_t cpu = thread_cpu_ns(), wall = uv_hrtime();
    uint64_t used = cpu - ct->cpu_last;
    ST_ADD(ct->cpu_ns, used);
    if (ct->cpu_rate <= 0 || atomic_load_explicit(&ct->producers_done, memory_order_relaxed) ||
        atomic_load_explicit(&ct->stop, memory_order_relaxed)) {
        ct->cpu_last = cpu; /* no budget, or no client path left to protect */
        ct->wall_last = wall;
        return 0;
    }
    ct->cpu_tokens += (double)(wall - ct->wall_last) * ct->cpu_rate - (double)used;
    if (ct->cpu_tokens > ct->cpu_burst) ct->cpu_tokens = ct->cpu_burst;
    ct->cpu_last = cpu;
    ct->wall_last = wall;
    if (ct->cpu_tokens >= 0) return 0;
    uint64_t wait_ns = (uint64_t)(-ct->cpu_tokens / ct->cpu_rate);
    uint64_t wait_ms = (wait_ns + 999999) / 1000000;
    ST_ADD(ct->paused_ns, wait_ms * 1000000);
    ct->paused = 1;
    uv_idle_stop(&ct->work);
    uv_timer_start(&ct->pause, on_pause_end, wait_ms, 0);
    return 1;
}

static void on_work(uv_idle_t *h)
{
    st_cmpthread_t *ct = h->data;
    int drop = atomic_load_explicit(&ct->stop, memory_order_relaxed);
    uint64_t t0 = uv_hrtime();
    st_cmpq_t *q;
    st_cmpjob_t *job;
    while ((job = next_job(ct, &q)) != NULL) {
        run_job(ct, q, job, drop);
        ct->last_job = uv_hrtime();
        if (over_budget(ct)) return;               /* on_pause_end resumes */
        if (ct->last_job - t0 >= SLICE_NS) return; /* the rest after this loop turn */
    }
    if (!drop && !atomic_load(&ct->producers_done) && uv_hrtime() - ct->last_job < LINGER_NS) {
        uv_idle_stop(&ct->work); /* sleeping stays 0: on_linger looks again */
        uv_timer_start(&ct->linger, on_linger, POLL_MS, 0);
        return;
    }
    atomic_store_explicit(&ct->sleeping, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst); /* pairs with st_cmpfeed_kick's fence */
    if (!rings_empty(ct)) {
        atomic_store_explicit(&ct->sleeping, 0, memory_order_relaxed);
        return;
    }
    uv_idle_stop(&ct->work);
    if (atomic_load(&ct->producers_done)) begin_close(ct);
}

static void on_linger(uv_timer_t *t)
{
    st_cmpthread_t *ct = t->data;
    if (ct->closing || ct->paused) return; /* paused: on_pause_end resumes */
    if (!uv_is_active((uv_handle_t *)&ct->work)) uv_idle_start(&ct->work, on_work);
}

static void on_wake(uv_async_t *a)
{
    st_cmpthread_t *ct = a->data;
    if (ct->closing) return;
    atomic_store_explicit(&ct->sleeping, 0, memory_order_relaxed);
    if (ct->paused) { /* stop or finish: the budget no longer applies */
        if (!atomic_load(&ct->stop) && !atomic_load(&ct->producers_done)) return;
        uv_timer_stop(&ct->pause);
        ct->paused = 0;
    }
    if (!uv_is_active((uv_handle_t *)&ct->work)) uv_idle_start(&ct->work, on_work);
}

/* Below the workers, which run SCHED_OTHER at the process's nice. SCHED_IDLE
 * (the default): the thread only gets CPU that nothing else wants, and a
 * worker that wakes up preempts it at once. SCHED_BATCH, --compare-nice
 * nicer than the workers: it gets a small share even when the workers are
 * busy, and a woken comparator does not preempt a running worker. Both are
 * allowed to an unprivileged thread; a refusal is logged, not fatal. */
static void lower_priority(const st_cmpthread_t *ct)
{
    struct sched_param sp;
    memset(&sp, 0, sizeof(sp));
    int idle = ct->cfg->compare_sched == ST_COMPARE_SCHED_IDLE;
    int rc = pthread_setschedparam(pthread_self(), idle ? SCHED_IDLE : SCHED_BATCH, &sp);
    if (rc != 0)
        st_warn("msg=\"comparator thread: scheduling policy refused\" thread=%d policy=%s "
                "err=\"%s\"",
                ct->id, idle ? "idle" : "batch", strerror(rc));
    if (idle) return;
    /* --compare-nice counts from the workers' nice (the one the process was
     * started with, which this thread inherited): set absolutely, it would
     * put the comparator above workers started under `nice -n 10`. */
    errno = 0;
    int base = getpriority(PRIO_PROCESS, (id_t)gettid());
    if (base == -1 && errno != 0) base = 0;
    int nice = base + ct->cfg->compare_nice > 19 ? 19 : base + ct->cfg->compare_nice;
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), nice) != 0)
        st_warn("msg=\"comparator thread: nice refused\" thread=%d nice=%d err=\"%s\"", ct->id,
                nice, strerror(errno));
}

static void thread_main(void *arg)
{
    st_cmpthread_t *ct = arg;
    ct->cpu_last = thread_cpu_ns();
    ct->wall_last = uv_hrtime();
    char name[16];
    snprintf(name, sizeof(name), "st-compare-%d", ct->id); /* as top -H and /proc show it */
    pthread_setname_np(pthread_self(), name);
    lower_priority(ct);
    uv_run(&ct->loop, UV_RUN_DEFAULT);
    atomic_store(&ct->finished, 1);
    uv_async_send(ct->done_async);
}

/* The stats' lines (Redis down / up once per outage, the totals at close),
 * through the non-blocking logger; not rate-limited: each comparator
 * thread's matter. */
static void stats_log(void *arg, int is_warning, const char *line)
{
    int level = is_warning ? ST_LOG_WARN : ST_LOG_INFO;
    (void)arg;
    if (level >= st_log_min_level) st_log_write_always(level, "msg=stats %s", line);
}

int st_cmpthread_init(st_cmpthread_t *ct, int id, const st_config_t *cfg, const st_rules_t *rules,
                      size_t nworkers, uv_async_t *done_async)
{
    memset(ct, 0, sizeof(*ct));
    ct->id = id;
    ct->cfg = cfg;
    ct->done_async = done_async;
    atomic_store(&ct->sleeping, 1); /* no work yet: the first push wakes it */
    int rc = uv_loop_init(&ct->loop);
    if (rc) return rc;
    if (pthread_mutex_init(&ct->pub_lock, NULL) != 0) return UV_ENOMEM;
    rc = uv_async_init(&ct->loop, &ct->wake, on_wake);
    if (rc) return rc;
    ct->wake.data = ct;
    uv_idle_init(&ct->loop, &ct->work);
    ct->work.data = ct;
    uv_timer_init(&ct->loop, &ct->pause);
    ct->pause.data = ct;
    uv_timer_init(&ct->loop, &ct->linger);
    ct->linger.data = ct;
    ct->cpu_rate = cfg->compare_cpu / (double)cfg->compare_threads; /* CPU ns per wall ns */
    ct->cpu_burst = ct->cpu_rate * 50e6;                            /* 50 ms of wall time's worth */
    ct->cpu_tokens = ct->cpu_burst;
    /* a ring holds the worker's whole share, however the worker spreads it */
    size_t share = ((size_t)cfg->compare_queue + nworkers - 1) / nworkers;
    ct->rings = calloc(nworkers, sizeof(*ct->rings));
    if (!ct->rings) return UV_ENOMEM;
    ct->nrings = nworkers;
    for (size_t i = 0; i < nworkers; i++)
        if (!(ct->rings[i] = st_cmpq_new(share))) return UV_ENOMEM;
    ct->sink.rules = rules;
    ct->sink.endpoints = st_endpoint_set_new((size_t)cfg->max_endpoints);
    st_sink_config_t sc;
    st_sink_config_init(&sc);
    sc.redis_host = cfg->redis_set ? cfg->redis_host : NULL; /* resolved by the sink */
    sc.redis_port = cfg->redis_port;
    sc.redis_user = cfg->redis_user[0] ? cfg->redis_user : NULL;
    sc.redis_password = cfg->redis_password[0] ? cfg->redis_password : NULL;
    sc.redis_db = cfg->redis_db;
    sc.service = cfg->service;
    sc.flush_interval_ms = cfg->redis_flush_interval_ms;
    sc.samples_per_endpoint = (size_t)cfg->samples_per_endpoint;
    sc.max_endpoints = (size_t)cfg->max_endpoints;
    sc.rules = rules;
    sc.log = stats_log;
    sc.mesh = cfg->mirror_mode == ST_MIRROR_MESH;
    sc.mesh_pair_ttl_ms = cfg->mesh_pair_ttl_ms;
    if (sc.mesh && st_mesh_hash_init(&ct->mesh_hash) != 0) return UV_ENOSYS;
    ct->sink.stats = st_sink_new(&ct->loop, &sc);
    if (!ct->sink.endpoints || !ct->sink.stats) return UV_ENOMEM;
    ct->stats_pub = ct->sink.stats;
    return 0;
}

int st_cmpthread_start(st_cmpthread_t *ct)
{
    return uv_thread_create(&ct->thread, thread_main, ct);
}

void st_cmpthread_stop(st_cmpthread_t *ct)
{
    atomic_store(&ct->stop, 1);
    /* a thread that already returned has closed its wake handle; one that is
     * closing it does no harm: its loop (and the loop's eventfd) lives on
     * until st_cmpthread_join, after the main loop has ended */
    if (!atomic_load(&ct->finished)) uv_async_send(&ct->wake);
}

void st_cmpthread_finish(st_cmpthread_t *ct)
{
    atomic_store(&ct->producers_done, 1);
    uv_async_send(&ct->wake); /* on_wake starts a slice, which closes when all is empty */
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, on_closed);
}

void st_cmpthread_join(st_cmpthread_t *ct)
{
    uv_thread_join(&ct->thread);
    if (uv_loop_close(&ct->loop) != 0) { /* should not happen: close what is left */
        uv_walk(&ct->loop, walk_close, NULL);
        uv_run(&ct->loop, UV_RUN_DEFAULT);
        uv_loop_close(&ct->loop);
    }
    for (size_t i = 0; i < ct->nrings; i++) {
        st_cmpjob_t *job;
        while ((job = st_cmpq_pop(ct->rings[i])) != NULL) /* none after a clean close */
            st_cmpjob_free(job);
        st_cmpq_free(ct->rings[i]);
    }
    free(ct->rings);
    if (ct->sink.endpoints) st_endpoint_set_free(ct->sink.endpoints);
    st_mesh_hash_free(&ct->mesh_hash);
    pthread_mutex_destroy(&ct->pub_lock);
}

/* One histogram summed over the comparator threads: the st_hist_t at `off`
 * in each (at most 64). */
static void render_hist(FILE *out, st_cmpthread_t *all, size_t n, size_t off, const char *name,
                        const char *help)
{
    const st_hist_t *h[64];
    size_t nh = 0;
    for (size_t t = 0; t < n && nh < 64; t++)
        h[nh++] = (const st_hist_t *)((const char *)&all[t] + off);
    st_hist_render(out, name, help, h, nh);
}

/* ---- metrics --------------------------------------------------------------- */

void st_cmpthread_render(st_cmpthread_t *all, size_t n, FILE *out)
{
    uint64_t skipped[ST_CMPSKIP_COUNT] = {0}, queued = 0, held_bytes = 0;
    size_t held_jobs = 0;
    for (size_t t = 0; t < n; t++) {
        for (size_t i = 0; i < all[t].nrings; i++) {
            st_cmpq_t *q = all[t].rings[i];
            size_t j;
            uint64_t b;
            st_cmpq_held(q, &j, &b);
            held_jobs += j;
            held_bytes += b;
            queued += atomic_load_explicit(&q->tail, memory_order_relaxed);
            for (int r = 0; r < ST_CMPSKIP_COUNT; r++)
                skipped[r] += st_cmpq_skipped(q, (enum st_cmpskip)r);
        }
    }
    fprintf(out, "# HELP shadowtee_comparisons_skipped_total Finished pairs not compared, by "
                 "reason.\n# TYPE shadowtee_comparisons_skipped_total counter\n");
    for (int r = 0; r < ST_CMPSKIP_COUNT; r++)
        fprintf(out, "shadowtee_comparisons_skipped_total{reason=\"%s\"} %" PRIu64 "\n",
                st_cmpskip_labels[r], skipped[r]);
    fprintf(out,
            "# HELP shadowtee_compare_queued_total Finished pairs handed to a comparator thread.\n"
            "# TYPE shadowtee_compare_queued_total counter\nshadowtee_compare_queued_total "
            "%" PRIu64 "\n",
            queued);
    fprintf(out,
            "# HELP shadowtee_compare_queue_length Pairs queued or being compared.\n"
            "# TYPE shadowtee_compare_queue_length gauge\nshadowtee_compare_queue_length %zu\n",
            held_jobs);
    fprintf(out,
            "# HELP shadowtee_compare_queue_bytes Memory held by queued pairs.\n"
            "# TYPE shadowtee_compare_queue_bytes gauge\nshadowtee_compare_queue_bytes %" PRIu64
            "\n",
            held_bytes);
    uint64_t cpu = 0, paused = 0;
    for (size_t t = 0; t < n; t++) {
        cpu += atomic_load_explicit(&all[t].cpu_ns, memory_order_relaxed);
        paused += atomic_load_explicit(&all[t].paused_ns, memory_order_relaxed);
    }
    fprintf(out,
            "# HELP shadowtee_compare_cpu_seconds_total CPU the comparator threads spent on "
            "pairs.\n# TYPE shadowtee_compare_cpu_seconds_total counter\n"
            "shadowtee_compare_cpu_seconds_total %.6f\n"
            "# HELP shadowtee_compare_paused_seconds_total Time comparator threads paused to stay "
            "within --compare-cpu.\n# TYPE shadowtee_compare_paused_seconds_total counter\n"
            "shadowtee_compare_paused_seconds_total %.6f\n",
            (double)cpu / 1e9, (double)paused / 1e9);
    render_hist(out, all, n, offsetof(st_cmpthread_t, duration),
                "shadowtee_compare_duration_seconds",
                "Time a comparator thread spent on one comparison.");
    st_sink_t *s[64];
    size_t ns = 0;
    for (size_t t = 0; t < n && t < 64; t++) /* held until rendered: none is freed meanwhile */
        pthread_mutex_lock(&all[t].pub_lock);
    for (size_t t = 0; t < n && t < 64; t++)
        if (all[t].stats_pub) s[ns++] = all[t].stats_pub;
    if (ns) st_sink_prometheus(s, ns, out);
    for (size_t t = 0; t < n && t < 64; t++)
        pthread_mutex_unlock(&all[t].pub_lock);
}

void st_cmpthread_render_mesh(const st_config_t *cfg, st_metrics_t *const *workers, size_t nw,
                              st_cmpthread_t *all, size_t n, FILE *out)
{
    if (cfg->mirror_mode != ST_MIRROR_MESH) return;
    const char *role = role_name(cfg->mesh_role);
#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
    uint64_t published = 0, joined = 0, dropped[ST_MDROP_COUNT] = {0}, pairs[3] = {0};
    uint64_t sampled = 0, unsampled = 0, noid = 0, orphans[3] = {0};
    for (size_t i = 0; i < nw; i++) {
        sampled += LD(workers[i]->mesh_sampled);
        unsampled += LD(workers[i]->mesh_unsampled);
        noid += LD(workers[i]->mesh_no_request_id);
        for (int r = 0; r < ST_MDROP_COUNT; r++)
            dropped[r] += LD(workers[i]->mesh_dropped[r]);
    }
    for (size_t t = 0; t < n; t++) {
        published += LD(all[t].mesh_published);
        joined += LD(all[t].mesh_joined);
        for (int r = 0; r < ST_MDROP_COUNT; r++)
            dropped[r] += LD(all[t].mesh_dropped[r]);
        for (int r = 0; r < 3; r++)
            pairs[r] += LD(all[t].mesh_pairs[r]);
    }
    for (size_t t = 0; t < n && t < 64; t++)
        pthread_mutex_lock(&all[t].pub_lock);
    for (size_t t = 0; t < n && t < 64; t++) {
        uint64_t o[3] = {0};
        if (all[t].stats_pub) st_sink_mesh_orphans(all[t].stats_pub, o);
        for (int r = 0; r < 3; r++)
            orphans[r] += o[r];
    }
    for (size_t t = 0; t < n && t < 64; t++)
        pthread_mutex_unlock(&all[t].pub_lock);
#undef LD
    fprintf(out,
            "# HELP shadowtee_mesh_halves_total Mesh halves of this sidecar, by outcome: "
            "published (stored, waiting for the partner), joined (completed a pair here), "
            "dropped (by reason).\n# TYPE shadowtee_mesh_halves_total counter\n"
            "shadowtee_mesh_halves_total{role=\"%s\",outcome=\"published\"} %" PRIu64 "\n"
            "shadowtee_mesh_halves_total{role=\"%s\",outcome=\"joined\"} %" PRIu64 "\n",
            role, published, role, joined);
    for (int r = 0; r < ST_MDROP_COUNT; r++)
        fprintf(out,
                "shadowtee_mesh_halves_total{role=\"%s\",outcome=\"dropped\",reason=\"%s\"} "
                "%" PRIu64 "\n",
                role, st_mesh_drop_labels[r], dropped[r]);
    fprintf(out,
            "# HELP shadowtee_mesh_sampled_total Requests in the sampled share (a half captured).\n"
            "# TYPE shadowtee_mesh_sampled_total counter\n"
            "shadowtee_mesh_sampled_total{role=\"%s\"} %" PRIu64 "\n"
            "# HELP shadowtee_mesh_unsampled_total Requests outside the sampled share (the shadow "
            "role answers them itself, 204).\n# TYPE shadowtee_mesh_unsampled_total counter\n"
            "shadowtee_mesh_unsampled_total{role=\"%s\"} %" PRIu64 "\n"
            "# HELP shadowtee_mesh_no_request_id_total Requests without x-request-id (never "
            "sampled).\n# TYPE shadowtee_mesh_no_request_id_total counter\n"
            "shadowtee_mesh_no_request_id_total %" PRIu64 "\n",
            role, sampled, role, unsampled, noid);
    static const char *const pair_results[3] = {"compared", "primary_failed", "invalid"};
    fprintf(out, "# HELP shadowtee_mesh_pairs_total Pairs joined here, by result.\n"
                 "# TYPE shadowtee_mesh_pairs_total counter\n");
    for (int r = 0; r < 3; r++)
        fprintf(out, "shadowtee_mesh_pairs_total{result=\"%s\"} %" PRIu64 "\n", pair_results[r],
                pairs[r]);
    static const char *const sides[3] = {ST_MESH_SIDE_STABLE, ST_MESH_SIDE_SHADOW,
                                         ST_MESH_SIDE_BASELINE}; /* mesh:orphans' fields */
    fprintf(out, "# HELP shadowtee_mesh_orphans_swept_total Halves whose partner never came, "
                 "swept (and counted in Redis) by this sidecar's calls, by side.\n"
                 "# TYPE shadowtee_mesh_orphans_swept_total counter\n");
    for (int r = 0; r < 3; r++)
        fprintf(out, "shadowtee_mesh_orphans_swept_total{side=\"%s\"} %" PRIu64 "\n", sides[r],
                orphans[r]);
    render_hist(out, all, n, offsetof(st_cmpthread_t, mesh_join), "shadowtee_mesh_join_seconds",
                "Arrival of a pair's second half minus its first's (Redis clock).");
}

/* ---- the producer end ------------------------------------------------------ */

void st_cmpfeed_init(st_cmpfeed_t *f, st_cmpthread_t *threads, size_t nthreads, size_t ring,
                     size_t len_cap, uint64_t bytes_cap)
{
    memset(f, 0, sizeof(*f));
    f->threads = threads;
    f->nthreads = threads ? nthreads : 0;
    f->ring = ring;
    f->len_cap = len_cap ? len_cap : 1;
    f->bytes_cap = bytes_cap;
}

/* What this worker's rings hold in all, and the thread whose ring holds the
 * fewest jobs (ties: round robin from f->rr). */
static size_t feed_held(st_cmpfeed_t *f, size_t *total_jobs, uint64_t *total_bytes)
{
    size_t best = f->rr % f->nthreads, best_jobs = SIZE_MAX;
    *total_jobs = 0;
    *total_bytes = 0;
    for (size_t k = 0; k < f->nthreads; k++) {
        size_t t = (f->rr + k) % f->nthreads, jobs;
        uint64_t bytes;
        st_cmpq_held(f->threads[t].rings[f->ring], &jobs, &bytes);
        *total_jobs += jobs;
        *total_bytes += bytes;
        if (jobs < best_jobs) {
            best_jobs = jobs;
            best = t;
        }
    }
    return best;
}

int st_cmpfeed_admit(st_cmpfeed_t *f)
{
    size_t jobs;
    uint64_t bytes;
    size_t best = feed_held(f, &jobs, &bytes);
    int why = jobs >= f->len_cap ? ST_CMPSKIP_BUSY : bytes >= f->bytes_cap ? ST_CMPSKIP_BYTES : -1;
    if (why < 0) return 1;
    f->last_skip = why;
    st_cmpq_count_skip(f->threads[best].rings[f->ring], (enum st_cmpskip)why);
    return 0;
}

int st_cmpfeed_reserve(st_cmpfeed_t *f)
{
    size_t jobs;
    uint64_t bytes;
    size_t best = feed_held(f, &jobs, &bytes);
    /* nothing held nor reserved: admitted whatever the estimate says (the
     * estimate only moves when pairs get submitted) */
    uint64_t promised = jobs + f->reserved ? (uint64_t)(f->reserved + 1) * f->est_bytes : 0;
    int why = jobs + f->reserved >= f->len_cap                           ? ST_CMPSKIP_BUSY
              : bytes >= f->bytes_cap || promised > f->bytes_cap - bytes ? ST_CMPSKIP_BYTES
                                                                         : -1;
    if (why < 0) {
        f->reserved++;
        return 1;
    }
    f->last_skip = why;
    st_cmpq_count_skip(f->threads[best].rings[f->ring], (enum st_cmpskip)why);
    return 0;
}

void st_cmpfeed_unreserve(st_cmpfeed_t *f)
{
    if (f->reserved) f->reserved--;
}

int st_cmpfeed_submit(st_cmpfeed_t *f, st_cmpjob_t *job)
{
    /* what a pair holds, for st_cmpfeed_reserve: a running average (1/8) */
    f->est_bytes = f->est_bytes ? f->est_bytes - f->est_bytes / 8 + job->bytes / 8 : job->bytes;
    size_t jobs;
    uint64_t bytes;
    size_t best = feed_held(f, &jobs, &bytes);
    f->rr++;
    st_cmpq_t *q = f->threads[best].rings[f->ring];
    int why = -1;
    if (jobs >= f->len_cap)
        why = ST_CMPSKIP_BUSY;
    else if (bytes + job->bytes > f->bytes_cap)
        why = ST_CMPSKIP_BYTES;
    else if (st_cmpq_push(q, job, job->bytes) != 0)
        why = ST_CMPSKIP_BUSY; /* cannot happen: the ring holds the whole share */
    if (why >= 0) {
        f->last_skip = why;
        st_cmpq_count_skip(q, (enum st_cmpskip)why);
        st_cmpjob_free(job);
        return -1;
    }
    f->kick |= 1ULL << best;
    return 0;
}

void st_cmpfeed_kick(st_cmpfeed_t *f)
{
    if (!f->kick) return;
    atomic_thread_fence(memory_order_seq_cst); /* the pushes before the loads of sleeping */
    for (size_t t = 0; t < f->nthreads; t++) {
        if (!(f->kick & (1ULL << t))) continue;
        st_cmpthread_t *ct = &f->threads[t];
        if (atomic_load_explicit(&ct->sleeping, memory_order_relaxed) &&
            atomic_exchange(&ct->sleeping, 0))
            uv_async_send(&ct->wake);
    }
    f->kick = 0;
}
