/*
 * worker: set-up, the thread body, and drain / stop of one worker (see
 * worker.h). A worker ends when it drained (no client, no mirror left) or
 * was told to stop; its last pairs are handed to the comparator threads,
 * every handle closes and its loop returns, then it tells the main thread
 * through done_async.
 */
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "client.h"
#include "log.h"
#include "tee.h"

static void on_accept(st_listener_t *l, int fd)
{
    st_client_accept(l->data, fd);
}

static void on_closed_noop(uv_handle_t *h)
{
    (void)h;
}

static int finishing(st_worker_t *w)
{
    return w->stopping > 1;
}

void st_worker_maybe_done(st_worker_t *w)
{
    st_listener_resume(&w->listener); /* paused for descriptors or at the cap: one came free */
    if (!(w->draining || w->stopping) || finishing(w)) return;
    if (w->nclients > 0 || !st_list_empty(&w->tee.mirrors)) return;
    w->stopping = 2; /* finishing: released upstream connections close */
    st_pool_t *pools[] = {&w->primary_pool, &w->shadow_pool, &w->noise_pool};
    for (size_t i = 0; i < 3; i++) /* a name lookup must not hold the drain */
        st_addrset_cancel(&pools[i]->addrs);
    if (w->resolve_timer_open) {
        uv_close((uv_handle_t *)&w->resolve_timer, on_closed_noop);
        w->resolve_timer_open = 0;
    }
    st_pool_close_idle(&w->primary_pool);
    st_pool_close_idle(&w->shadow_pool);
    st_pool_close_idle(&w->noise_pool);
    st_listener_close(&w->listener);
    st_tee_worker_close(w);
    st_cmpfeed_kick(&w->cmpfeed); /* pairs of the last turn: their thread must not sleep on them */
    uv_close((uv_handle_t *)&w->wake, on_closed_noop);
}

static void on_wake(uv_async_t *a)
{
    st_worker_t *w = a->data;
    int cmd = atomic_load(&w->cmd);
    if (finishing(w)) return;
    if (cmd >= ST_CMD_DRAIN && !w->draining) {
        w->draining = 1;
        st_listener_close(&w->listener);
        st_pool_close_idle(&w->primary_pool);
        st_client_drain_all(w, 0);
    }
    if (cmd == ST_CMD_STOP && !w->stopping) {
        w->stopping = 1;
        st_client_drain_all(w, 1);
        st_tee_abort_all(w);
    }
    st_worker_maybe_done(w);
}

/* --resolve-interval: every pool whose upstream is a name re-resolves it, so
 * a Service or DNS change is followed without a restart. */
static void on_resolve_tick(uv_timer_t *t)
{
    st_worker_t *w = t->data;
    st_pool_t *pools[] = {&w->primary_pool, &w->shadow_pool, &w->noise_pool};
    for (size_t i = 0; i < 3; i++)
        if (pools[i]->addr->set) st_pool_resolve(pools[i], 0);
}

static int start_resolve_timer(st_worker_t *w)
{
    const st_config_t *cfg = w->cfg;
    int names = !cfg->primary.numeric || (cfg->shadow.set && !cfg->shadow.numeric) ||
                (cfg->noise.set && !cfg->noise.numeric);
    if (!names || cfg->resolve_interval_ms == 0) return 0;
    int rc = uv_timer_init(&w->loop, &w->resolve_timer);
    if (rc) return rc;
    w->resolve_timer.data = w;
    w->resolve_timer_open = 1;
    return uv_timer_start(&w->resolve_timer, on_resolve_tick, cfg->resolve_interval_ms,
                          cfg->resolve_interval_ms);
}

int st_worker_listen(st_worker_t *w, const int *fds, int n)
{
    const st_config_t *cfg = w->cfg;
    int fresh = -1;
    if (n == 0) { /* a socket of our own in the SO_REUSEPORT group of --listen */
        fresh = st_listen_socket((const struct sockaddr *)&cfg->listen.addrs[0].sa, 1, 1024);
        if (fresh < 0) {
            st_error("msg=\"cannot listen\" addr=%s err=\"%s\"", cfg->listen.authority,
                     uv_strerror(fresh));
            return fresh;
        }
        fds = &fresh;
        n = 1;
    }
    snprintf(w->listener_name, sizeof(w->listener_name), "worker %d", w->id);
    w->listener.data = w;
    w->listener.name = w->listener_name;
    w->listener.on_accept = on_accept;
    size_t nw = (size_t)cfg->workers;
    w->listener.max_conns = cfg->max_connections ? ((size_t)cfg->max_connections + nw - 1) / nw : 0;
    w->listener.nconns = &w->nclients;
    w->listener.metrics = &w->metrics;
    int rc = st_listener_start(&w->listener, &w->loop, fds, n);
    if (rc)
        st_error("msg=\"cannot listen\" addr=%s err=\"%s\"", cfg->listen.authority,
                 uv_strerror(rc));
    return rc;
}

int st_worker_init(st_worker_t *w, int id, const st_config_t *cfg, st_cmpthread_t *cmp, size_t ncmp,
                   const st_tls_contexts_t *tls, uv_async_t *done_async)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->cfg = cfg;
    w->done_async = done_async;
    st_list_init(&w->clients);
    st_list_init(&w->tee.mirrors);
    int rc = uv_loop_init(&w->loop);
    if (rc) return rc;
    if (st_rpool_init(&w->rpool, ST_RBUF_SIZE, 64) != 0) return UV_ENOMEM;
    if (st_wbatch_pool_init(&w->wbatch) != 0) return UV_ENOMEM;
    rc = uv_async_init(&w->loop, &w->wake, on_wake);
    if (rc) return rc;
    w->wake.data = w;
    rc = st_tee_worker_init(w);
    if (rc) return rc;
    size_t n = (size_t)cfg->workers;
    w->tee.cap = ((size_t)cfg->shadow_max_inflight + n - 1) / n;
    w->tee.mem_cap = cfg->mirror_memory_budget / n;
    uint64_t idle = cfg->idle_timeout_ms < 30000 ? cfg->idle_timeout_ms : 30000;
    st_pool_init(&w->primary_pool, w, &cfg->primary, "primary", (size_t)cfg->upstream_idle_conns, 0,
                 cfg->upstream_connect_timeout_ms, idle);
    /* a slow shadow keeps up to tee.cap legs in flight: by default keep as
     * many idle, so their connections are reused instead of re-opened */
    size_t shadow_idle = cfg->shadow_idle_conns ? (size_t)cfg->shadow_idle_conns : w->tee.cap;
    st_pool_init(&w->shadow_pool, w, &cfg->shadow, "shadow", shadow_idle, w->tee.cap,
                 cfg->shadow_connect_timeout_ms, idle);
    st_pool_init(&w->noise_pool, w, &cfg->noise, "noise", shadow_idle, w->tee.cap,
                 cfg->shadow_connect_timeout_ms, idle);
    w->primary_pool.tls_ctx = tls->primary;
    w->primary_pool.tls_side = ST_TLS_PRIMARY;
    w->shadow_pool.tls_ctx = tls->shadow;
    w->shadow_pool.tls_side = ST_TLS_SHADOW;
    w->noise_pool.tls_ctx = tls->noise;
    w->noise_pool.tls_side = ST_TLS_NOISE;
    w->tls_server = tls->server;
    rc = start_resolve_timer(w);
    if (rc) return rc;
    if (tls->server || tls->primary || tls->shadow || tls->noise) {
        w->tls_scratch = malloc(ST_RBUF_SIZE);
        w->tls_wscratch = malloc(ST_TLS_RECORD_MAX);
        if (!w->tls_scratch || !w->tls_wscratch) return UV_ENOMEM;
    }
    if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || w->rng == 0)
        w->rng = uv_hrtime() ^ ((uint64_t)(id + 1) << 32) ^ 0x9E3779B97F4A7C15ULL;
    st_cmpfeed_init(&w->cmpfeed, ncmp ? cmp : NULL, ncmp, (size_t)id,
                    ((size_t)cfg->compare_queue + n - 1) / n, cfg->compare_queue_bytes / n);
    if (cfg->mirror_mode == ST_MIRROR_MESH && st_mesh_hash_init(&w->mesh_hash) != 0) {
        st_error("msg=\"no SHA-256 from OpenSSL: mesh sampling impossible\" worker=%d", id);
        return UV_ENOSYS;
    }
    return 0;
}

static void worker_main(void *arg)
{
    st_worker_t *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    atomic_store(&w->finished, 1);
    uv_async_send(w->done_async);
}

int st_worker_start(st_worker_t *w)
{
    return uv_thread_create(&w->thread, worker_main, w);
}

void st_worker_command(st_worker_t *w, enum st_worker_cmd cmd)
{
    atomic_store(&w->cmd, cmd);
    uv_async_send(&w->wake);
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, on_closed_noop);
}

void st_worker_join(st_worker_t *w)
{
    uv_thread_join(&w->thread);
    if (uv_loop_close(&w->loop) != 0) { /* should not happen: close what is left */
        uv_walk(&w->loop, walk_close, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
    }
    st_pool_t *pools[] = {&w->primary_pool, &w->shadow_pool, &w->noise_pool};
    for (size_t i = 0; i < 3; i++)
        if (pools[i]->tls_session) SSL_SESSION_free(pools[i]->tls_session);
    free(w->tls_scratch);
    free(w->tls_wscratch);
    st_wbatch_pool_free(&w->wbatch);
    st_mesh_hash_free(&w->mesh_hash);
    st_rpool_deinit(&w->rpool);
}

/* xorshift64*: fast, per worker, not for secrets. */
uint64_t st_worker_random(st_worker_t *w)
{
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 2685821657736338717ULL;
}

void st_worker_request_id(st_worker_t *w, char out[37])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = st_worker_random(w), b = st_worker_random(w);
    a = (a & ~0xF000ULL) | 0x4000ULL;                        /* version 4 */
    b = (b & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL; /* variant */
    char *o = out;
    for (int i = 0; i < 16; i++) { /* 8-4-4 from a, 4-12 from b */
        *o++ = hex[(a >> (60 - 4 * i)) & 0xF];
        if (i == 7 || i == 11 || i == 15) *o++ = '-';
    }
    for (int i = 0; i < 16; i++) {
        *o++ = hex[(b >> (60 - 4 * i)) & 0xF];
        if (i == 3) *o++ = '-';
    }
    *o = '\0';
}
