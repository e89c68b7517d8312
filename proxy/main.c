/*
 * shadowtee: process start-up and shutdown. The main thread parses the
 * configuration, starts the workers (one loop each), and runs its own loop
 * for the admin endpoints, the readiness probe and signals:
 *
 *   SIGTERM / SIGINT: /readyz turns 503, workers stop accepting and finish
 *   in-flight exchanges and mirrors; once every worker has finished, the
 *   comparator threads compare what is queued, flush to Redis and finish.
 *   After --drain-timeout (counted from the signal) workers are stopped and
 *   comparators drop what is still queued (counted). A second signal stops
 *   at once. Exit 0 once every worker and comparator thread has finished.
 *
 * With --handover PATH it first takes the listening sockets of the instance
 * serving PATH, if any, then serves PATH for its own successor (handover.h).
 * Log lines go through the log writer thread from start-up to exit (log.h).
 */
#include <signal.h>
#include <stdio.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/resource.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "app.h"
#include "config.h"
#include "handover.h"
#include "listener.h"
#include "log.h"
#include "shadowtee/comparator.h"
#include "worker.h"

extern char **environ;

typedef struct {
    st_app_t app;
    st_admin_t *admin;
    st_handover_t *handover;
    uv_signal_t sigterm, sigint, sighup;
    st_tls_server_t tls_server; /* --tls-cert, reloaded on SIGHUP */
    st_tls_contexts_t tls;
    uv_timer_t drain_timer;
    uv_async_t done_async; /* <- a worker or a comparator thread finished */
    int producers_done;    /* the comparators were told that every worker finished */
    int finished;
} st_main_t;

static void command_all(st_main_t *m, enum st_worker_cmd cmd)
{
    for (int i = 0; i < m->app.nworkers; i++)
        st_worker_command(&m->app.workers[i], cmd);
    if (cmd == ST_CMD_STOP) /* queued comparisons are dropped (counted), not waited for */
        for (int i = 0; i < m->app.ncomparators; i++)
            st_cmpthread_stop(&m->app.comparators[i]);
}

static void on_drain_timeout(uv_timer_t *t)
{
    st_main_t *m = t->data;
    st_warn("msg=\"drain timeout: stopping in-flight work\" timeout_ms=%llu",
            (unsigned long long)m->app.cfg->drain_timeout_ms);
    command_all(m, ST_CMD_STOP);
}

static void on_sighup(uv_signal_t *s, int signum)
{
    st_main_t *m = s->data;
    char err[512];
    (void)signum;
    if (!m->tls.server) return;
    if (st_tls_server_reload(&m->tls_server, m->app.cfg->tls_cert, m->app.cfg->tls_key, err,
                             sizeof(err)) != 0)
        st_error("msg=\"TLS reload failed, keeping the current certificate\" err=\"%s\"", err);
    else
        st_info("msg=\"TLS certificate reloaded\" cert=%s", m->app.cfg->tls_cert);
}

/* Client contexts for https upstreams; 0 or -1 with a message on stderr. */
static int tls_setup(st_main_t *m, const st_config_t *cfg)
{
    char err[512];
    if (cfg->tls_cert[0]) {
        if (st_tls_server_init(&m->tls_server, cfg->tls_cert, cfg->tls_key, err, sizeof(err)) !=
            0) {
            fprintf(stderr, "shadowtee: %s\n", err);
            return -1;
        }
        m->tls.server = &m->tls_server;
    }
    st_tls_client_opts_t po = {cfg->primary_ca[0] ? cfg->primary_ca : NULL,
                               cfg->primary_client_cert[0] ? cfg->primary_client_cert : NULL,
                               cfg->primary_client_key[0] ? cfg->primary_client_key : NULL,
                               cfg->primary_insecure};
    st_tls_client_opts_t so = {cfg->shadow_ca[0] ? cfg->shadow_ca : NULL,
                               cfg->shadow_client_cert[0] ? cfg->shadow_client_cert : NULL,
                               cfg->shadow_client_key[0] ? cfg->shadow_client_key : NULL,
                               cfg->shadow_insecure};
    struct {
        const st_addr_t *a;
        const st_tls_client_opts_t *o;
        SSL_CTX **ctx;
        const char *name;
    } ups[] = {{&cfg->primary, &po, &m->tls.primary, "primary"},
               {&cfg->shadow, &so, &m->tls.shadow, "shadow"},
               {&cfg->noise, &po, &m->tls.noise, "noise-upstream"}};
    for (size_t i = 0; i < 3; i++) {
        if (!ups[i].a->set || !ups[i].a->tls) continue;
        *ups[i].ctx = st_tls_client_ctx_new(ups[i].o, err, sizeof(err));
        if (!*ups[i].ctx) {
            fprintf(stderr, "shadowtee: --%s: %s\n", ups[i].name, err);
            return -1;
        }
        if (ups[i].o->insecure)
            st_warn("msg=\"TLS certificate verification is OFF\" upstream=%s", ups[i].a->authority);
    }
    return 0;
}

static void tls_teardown(st_main_t *m)
{
    SSL_CTX *c[] = {m->tls.primary, m->tls.shadow, m->tls.noise};
    for (size_t i = 0; i < 3; i++)
        if (c[i]) SSL_CTX_free(c[i]);
    if (m->tls.server) st_tls_server_deinit(&m->tls_server);
}

static void on_signal(uv_signal_t *s, int signum)
{
    st_main_t *m = s->data;
    if (atomic_exchange(&m->app.draining, 1)) {
        st_warn("msg=\"second signal: stopping now\" signal=%d", signum);
        command_all(m, ST_CMD_STOP);
        return;
    }
    st_info("msg=\"draining\" signal=%d drain_timeout_ms=%llu", signum,
            (unsigned long long)m->app.cfg->drain_timeout_ms);
    if (m->app.handed_over && m->admin) st_admin_unlisten(m->admin); /* the successor answers */
    command_all(m, ST_CMD_DRAIN);
    uv_timer_start(&m->drain_timer, on_drain_timeout, m->app.cfg->drain_timeout_ms, 0);
}

/* A worker's or a comparator's loop returned. Once every worker has, no
 * pair will be queued any more: the comparators finish what is queued and
 * return too; then the main loop winds down. */
static void on_worker_done(uv_async_t *a)
{
    st_main_t *m = a->data;
    int done = 0;
    for (int i = 0; i < m->app.nworkers; i++) {
        /* a worker signals after its loop returned; its wake handle is closed then */
        if (atomic_load(&m->app.workers[i].finished)) done++;
    }
    if (done < m->app.nworkers || m->finished) return;
    if (!m->producers_done) {
        m->producers_done = 1;
        for (int i = 0; i < m->app.ncomparators; i++)
            st_cmpthread_finish(&m->app.comparators[i]);
    }
    for (int i = 0; i < m->app.ncomparators; i++)
        if (!atomic_load(&m->app.comparators[i].finished)) return;
    m->finished = 1;
    if (m->admin) st_admin_stop(m->admin);
    if (m->handover) st_handover_stop(m->handover);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sighup, NULL);
    uv_close((uv_handle_t *)&m->drain_timer, NULL);
    uv_close((uv_handle_t *)&m->done_async, NULL);
}

/* The soft descriptor limit raised to the hard one (as Go and haproxy do):
 * a low default soft limit (1024) should not be what caps the proxy. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* --heap-retain: fixed allocator thresholds instead of glibc's adaptive ones.
 * A compared pair's bodies are malloc'd by a worker and freed by a comparator
 * thread; with the defaults glibc gave the freed top of the heap back to the
 * OS (or unmapped the block) after nearly every pair, so the next pair's
 * capture faulted its pages in again on the worker, on the client's path:
 * ~50 minor faults per request with 200 KiB bodies, and a paced p99 1.7-1.9x
 * that of --compare off (bench/README.md, payload). Memory kept this way is
 * what the budgets (--mirror-memory-budget, --compare-queue-bytes) already
 * allowed at the peak; it is reused, not grown. */
static void tune_heap(size_t retain)
{
    if (retain == 0) return;
#ifdef __GLIBC__
    size_t mmap_min = retain / 2; /* glibc's own default and cap: 128K and 32M */
    if (mmap_min < ((size_t)128 << 10)) mmap_min = (size_t)128 << 10;
    if (mmap_min > ((size_t)32 << 20)) mmap_min = (size_t)32 << 20;
    if (mallopt(M_MMAP_THRESHOLD, (int)mmap_min) != 1 ||
        mallopt(M_TRIM_THRESHOLD, (int)retain) != 1)
        st_debug("msg=\"--heap-retain: the allocator refused mallopt(); its thresholds are left as "
                 "they are\"");
#else
    st_debug("msg=\"--heap-retain: not glibc's allocator; its thresholds are left as they are\"");
#endif
}

/* --max-connections 0: as many client connections as the descriptor limit
 * leaves room for with one descriptor per client, one per upstream
 * connection it needs (primary, shadow, noise) and a reserve per worker for
 * the loop, the stats connection and the admin side. */
static int auto_max_connections(const st_config_t *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 10000000;
    long long reserve = 32 + 8LL * cfg->workers; /* ~23 in use at 2 workers with shadow, Redis */
    long long per = 2 + (cfg->shadow.set ? 1 : 0) + (cfg->noise.set ? 1 : 0);
    long long n = ((long long)rl.rlim_cur - reserve) / per;
    if (n < cfg->workers) n = cfg->workers; /* one each at least */
    return n > 10000000 ? 10000000 : (int)n;
}

/* Takes a predecessor's sockets (--handover) and checks they listen where
 * our flags say. 0, or -1 with a message on stderr. */
static int take_sockets(const st_config_t *cfg, int *fds, int *nl, int *na)
{
    char err[512];
    *nl = *na = 0;
    if (!cfg->handover[0]) return 0;
    if (st_handover_take(cfg->handover, fds, ST_HANDOVER_MAX_FDS, nl, na, err, sizeof(err)) != 0) {
        fprintf(stderr, "shadowtee: %s\n", err);
        return -1;
    }
    for (int i = 0; i < *nl + *na; i++) {
        const st_addr_t *a = i < *nl ? &cfg->listen : &cfg->admin;
        if (!st_listen_socket_matches(fds[i], (const struct sockaddr *)&a->addrs[0].sa)) {
            fprintf(stderr,
                    "shadowtee: --handover %s: the running instance does not listen on "
                    "--%s %s\n",
                    cfg->handover, i < *nl ? "listen" : "admin", a->authority);
            for (int k = 0; k < *nl + *na; k++)
                close(fds[k]);
            return -1;
        }
    }
    if (*nl > cfg->workers * ST_LISTENER_MAX || *na > ST_LISTENER_MAX) {
        fprintf(stderr, "shadowtee: --handover: too many sockets offered (%d)\n", *nl + *na);
        for (int k = 0; k < *nl + *na; k++)
            close(fds[k]);
        return -1;
    }
    if (*nl + *na)
        st_info("msg=\"took over listening sockets\" path=%s listen=%d admin=%d", cfg->handover,
                *nl, *na);
    return 0;
}

/* The sockets the workers, the admin listener and --handover serve, taken
 * over from a predecessor or opened here. All of it happens before any
 * loop, handle or thread exists, so an address in use or a bad --handover
 * path exits 2 with nothing but these descriptors to close. */
typedef struct {
    int listen[ST_HANDOVER_MAX_FDS + 256]; /* client listeners: taken over, or one per worker */
    int admin[ST_HANDOVER_MAX_FDS];
    int nlisten, nadmin;
    int handover; /* --handover's own listening socket, -1: none */
} st_sockets_t;

static void sockets_close(st_sockets_t *s, const st_config_t *cfg)
{
    for (int i = 0; i < s->nlisten; i++)
        close(s->listen[i]);
    for (int i = 0; i < s->nadmin; i++)
        close(s->admin[i]);
    s->nlisten = s->nadmin = 0;
    if (s->handover >= 0) {
        close(s->handover);
        unlink(cfg->handover);
        s->handover = -1;
    }
}

static int open_sockets(const st_config_t *cfg, st_sockets_t *s)
{
    int hfds[ST_HANDOVER_MAX_FDS], hnl, hna;
    s->nlisten = s->nadmin = 0;
    s->handover = -1;
    if (take_sockets(cfg, hfds, &hnl, &hna) != 0) return -1;
    for (int i = 0; i < hnl; i++)
        s->listen[s->nlisten++] = hfds[i];
    for (int i = 0; i < hna; i++)
        s->admin[s->nadmin++] = hfds[hnl + i];
    for (int i = 0; hnl == 0 && i < cfg->workers; i++) { /* one per worker: SO_REUSEPORT */
        int fd = st_listen_socket((const struct sockaddr *)&cfg->listen.addrs[0].sa, 1, 1024);
        if (fd < 0) {
            fprintf(stderr, "shadowtee: cannot listen on --listen %s: %s\n", cfg->listen.authority,
                    uv_strerror(fd));
            goto fail;
        }
        s->listen[s->nlisten++] = fd;
    }
    if (hna == 0) {
        int fd = st_listen_socket((const struct sockaddr *)&cfg->admin.addrs[0].sa, 0, 128);
        if (fd < 0) {
            fprintf(stderr, "shadowtee: cannot listen on --admin %s: %s\n", cfg->admin.authority,
                    uv_strerror(fd));
            goto fail;
        }
        s->admin[s->nadmin++] = fd;
    }
    if (cfg->handover[0]) {
        s->handover = st_handover_listen(cfg->handover);
        if (s->handover < 0) {
            fprintf(stderr, "shadowtee: cannot serve --handover %s\n", cfg->handover);
            goto fail;
        }
    }
    return 0;
fail:
    sockets_close(s, cfg);
    return -1;
}

int main(int argc, char **argv)
{
    static st_config_t cfg;
    char err[512];
    signal(SIGPIPE, SIG_IGN);
    int rc = st_config_load(&cfg, argc, argv, environ, err, sizeof(err));
    if (rc == 1) return 0;
    if (rc != 0) {
        fprintf(stderr, "shadowtee: %s\n", err);
        return 2;
    }
    st_log_min_level = cfg.log_level;
    raise_nofile();
    tune_heap(cfg.heap_retain);
    if (cfg.max_connections == 0) cfg.max_connections = auto_max_connections(&cfg);

    st_rules_t *rules = NULL;
    if (cfg.compare_rules[0]) {
        if (st_rules_load(cfg.compare_rules, &rules, err, sizeof(err)) != 0) {
            fprintf(stderr, "shadowtee: --compare-rules: %s\n", err);
            return 2;
        }
    } else {
        rules = st_rules_default();
        if (!rules) {
            fprintf(stderr, "shadowtee: out of memory\n");
            return 1;
        }
    }

    st_main_t m;
    memset(&m, 0, sizeof(m));
    if (tls_setup(&m, &cfg) != 0) { /* before anything else is allocated */
        tls_teardown(&m);
        st_rules_free(rules);
        return 2;
    }
    st_sockets_t socks;
    if (open_sockets(&cfg, &socks) != 0) {
        tls_teardown(&m);
        st_rules_free(rules);
        return 2;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    m.app.cfg = &cfg;
    m.app.loop = &loop;
    m.app.nworkers = cfg.workers;
    m.app.workers = calloc((size_t)cfg.workers, sizeof(st_worker_t));
    uv_async_init(&loop, &m.done_async, on_worker_done);
    m.done_async.data = &m;
    if (!m.app.workers) {
        fprintf(stderr, "shadowtee: out of memory\n");
        return 1;
    }
    if ((cfg.shadow.set || cfg.mirror_mode == ST_MIRROR_MESH) && cfg.compare) {
        m.app.ncomparators = cfg.compare_threads;
        m.app.comparators = calloc((size_t)cfg.compare_threads, sizeof(st_cmpthread_t));
        if (!m.app.comparators) {
            fprintf(stderr, "shadowtee: out of memory\n");
            return 1;
        }
    }
    for (int i = 0; i < m.app.ncomparators; i++) {
        rc = st_cmpthread_init(&m.app.comparators[i], i, &cfg, rules, (size_t)cfg.workers,
                               &m.done_async);
        if (rc != 0) {
            fprintf(stderr, "shadowtee: comparator thread %d: %s\n", i, uv_strerror(rc));
            return 1;
        }
    }
    for (int i = 0; i < cfg.workers; i++) {
        int mine[ST_LISTENER_MAX], n = 0; /* the sockets, round-robin over the workers */
        for (int k = i; k < socks.nlisten; k += cfg.workers)
            mine[n++] = socks.listen[k];
        rc = st_worker_init(&m.app.workers[i], i, &cfg, m.app.comparators,
                            (size_t)m.app.ncomparators, &m.tls, &m.done_async);
        if (rc == 0) rc = st_worker_listen(&m.app.workers[i], mine, n);
        if (rc != 0) {
            fprintf(stderr, "shadowtee: worker %d: %s\n", i, uv_strerror(rc));
            return 1;
        }
    }
    m.admin = st_admin_start(&m.app, socks.admin, socks.nadmin);
    if (!m.admin) {
        fprintf(stderr, "shadowtee: cannot listen on --admin %s\n", cfg.admin.authority);
        return 1;
    }
    if (cfg.handover[0]) {
        m.handover = st_handover_serve(&m.app, &m.admin, cfg.handover, socks.handover);
        if (!m.handover) {
            fprintf(stderr, "shadowtee: cannot serve --handover %s\n", cfg.handover);
            return 1;
        }
    }
    uv_signal_init(&loop, &m.sigterm);
    uv_signal_init(&loop, &m.sigint);
    uv_signal_init(&loop, &m.sighup);
    m.sighup.data = &m;
    uv_signal_start(&m.sighup, on_sighup, SIGHUP);
    uv_timer_init(&loop, &m.drain_timer);
    m.sigterm.data = m.sigint.data = m.drain_timer.data = &m;
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    if (st_log_start() != 0) st_warn("msg=\"no log writer thread: stderr written directly\"");
    for (int i = 0; i < m.app.ncomparators; i++) {
        if (st_cmpthread_start(&m.app.comparators[i]) != 0) {
            fprintf(stderr, "shadowtee: cannot start comparator thread %d\n", i);
            return 1;
        }
    }
    for (int i = 0; i < cfg.workers; i++) {
        if (st_worker_start(&m.app.workers[i]) != 0) {
            fprintf(stderr, "shadowtee: cannot start worker thread %d\n", i);
            return 1;
        }
    }
    st_info("msg=started version=%s listen=%s primary=%s admin=%s workers=%d "
            "comparator_threads=%d mirror_mode=%s mesh_role=%s shadow=%s mirror_percent=%g "
            "redis=%s service=%s max_connections=%d",
            ST_VERSION, cfg.listen.authority, cfg.primary.authority, cfg.admin.authority,
            cfg.workers, m.app.ncomparators, cfg.mirror_mode == ST_MIRROR_MESH ? "mesh" : "tee",
            cfg.mesh_role == ST_ROLE_STABLE   ? "stable"
            : cfg.mesh_role == ST_ROLE_SHADOW ? "shadow"
                                              : "none",
            cfg.shadow.set ? cfg.shadow.authority : "none", cfg.mirror_percent,
            cfg.redis_set ? cfg.redis_host : "none", cfg.service, cfg.max_connections);

    uv_run(&loop, UV_RUN_DEFAULT);

    uint64_t answered = 0, mirrored = 0;
    for (int i = 0; i < cfg.workers; i++) {
        st_worker_join(&m.app.workers[i]);
        const st_metrics_t *wm = &m.app.workers[i].metrics;
        for (int k = 0; k < 6; k++)
            answered += atomic_load(&wm->requests[k]);
        mirrored += atomic_load(&wm->mirror_requests);
    }
    for (int i = 0; i < m.app.ncomparators; i++) /* after the workers: they held the rings */
        st_cmpthread_join(&m.app.comparators[i]);
    free(m.app.workers);
    free(m.app.comparators);
    uv_loop_close(&loop);
    st_rules_free(rules);
    tls_teardown(&m);
    st_info("msg=stopped requests=%llu mirrored=%llu", (unsigned long long)answered,
            (unsigned long long)mirrored);
    st_log_stop();
    return 0;
}
