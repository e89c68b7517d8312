/*
 * redis_sink.c: the Redis sink (include/shadowtee/redis_sink.h). It owns one
 * aggregator (stats.c, which knows nothing of it), connects to Redis (hiredis
 * 0.14 async on the comparator thread's libuv loop) and drains the
 * aggregator's pending deltas in one pipelined batch per flush.
 *
 * States (st_sink_state_t):
 *   OFF         no Redis configured: only in-memory counters.
 *   WAIT        no context; ctl_timer fires the next connect (backoff
 *               100 ms doubling to 5 s, none to the next address), or
 *               the host name is being resolved (resolving).
 *   CONNECTING  redisAsyncConnect issued; ctl_timer is the connect timeout
 *               (hiredis 0.14 has none for async connects).
 *   READY       connected; AUTH/SELECT pipelined first (setup_pending), then
 *               one batch at a time is in flight. A batch without all its
 *               replies after ST_SINK_REPLY_TIMEOUT_MS means Redis is stuck:
 *               the connection is torn down and re-established.
 *   CLOSED      st_sink_close ran its final flush; no more connects.
 *
 * hiredis lifetimes: the context is only ever freed by us from our timers
 * (never inside one of its own callbacks); when hiredis frees it itself (a
 * failed connect, a dropped connection) we learn it in on_connect /
 * on_disconnect and forget the pointer. Replies of a batch still in flight
 * when the connection drops never arrive: their deltas are counted as lost.
 *
 * Addresses: a host name is resolved with uv_getaddrinfo (libuv's thread
 * pool, never the loop thread) at the start and before every reconnect
 * after a connection that worked or a round that failed; hiredis gets one
 * numeric address at a time, so it resolves nothing itself. A failed connect
 * goes on to the next address at once; when every address of the round
 * failed, the backoff applies. The address that connected last is tried
 * first after a re-resolution.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/evp.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "shadowtee/schema.h"
#include "redis_sink_internal.h"

#define ST_SINK_CONNECT_TIMEOUT_MS 2000
#define ST_SINK_REPLY_TIMEOUT_MS   5000
#define ST_SINK_BACKOFF_MIN_MS     100
#define ST_SINK_BACKOFF_MAX_MS     5000
#define ST_SINK_CLOSE_WAIT_MS      1000

static void on_ctl(uv_timer_t *t);
static void send_batch(st_sink_t *s);
static void request_teardown(st_sink_t *s);
static void mesh_sweep(st_sink_t *s);
static void sink_free(st_sink_t *s);

#define ST_MESH_SWEEP_LIMIT   64    /* expired halves swept per script call */
#define ST_MESH_SWEEP_IDLE_MS 1000  /* a sweep-only call after this long without a half */
#define ST_MESH_INFLIGHT_MAX  65536 /* halves sent and not yet answered, per connection */

/* The join script (docs/ARCHITECTURE.md, "Mesh mirroring"). KEYS: halves
 * (hash "side|id" -> half), pending (zset "side|id" scored by arrival, ms on
 * Redis's clock), orphans (hash side -> count). ARGV: side, partner side,
 * id, half, pair TTL ms, sweep limit. Returns {code, partner half or "",
 * join ms, orphans swept: stable, shadow, baseline}; code 0 stored, 1
 * joined, 2 duplicate, 3 sweep only (side ""). */
static const char mesh_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ttl = tonumber(ARGV[5])\n"
    "local swept = {" ST_MESH_SIDE_STABLE " = 0, " ST_MESH_SIDE_SHADOW
    " = 0, " ST_MESH_SIDE_BASELINE " = 0}\n"
    "local function orphan(m)\n"
    "  local side = string.sub(m, 1, (string.find(m, '" ST_F_SEP "', 1, true) or 1) - 1)\n"
    "  redis.call('HINCRBY', KEYS[3], side, 1)\n"
    "  redis.call('HDEL', KEYS[1], m)\n"
    "  redis.call('ZREM', KEYS[2], m)\n"
    "  if swept[side] then swept[side] = swept[side] + 1 end\n"
    "end\n"
    "local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl, 'LIMIT', 0, "
    "tonumber(ARGV[6]))\n"
    "for i = 1, #old do orphan(old[i]) end\n"
    "local function done(code, half, ms)\n"
    "  return {code, half, ms, swept." ST_MESH_SIDE_STABLE ", swept." ST_MESH_SIDE_SHADOW
    ", swept." ST_MESH_SIDE_BASELINE "}\n"
    "end\n"
    "if ARGV[1] == '' then return done(3, '', 0) end\n"
    "local mine, theirs = ARGV[1] .. '" ST_F_SEP "' .. ARGV[3], ARGV[2] .. '" ST_F_SEP
    "' .. ARGV[3]\n"
    "local partner = redis.call('HGET', KEYS[1], theirs)\n"
    "if partner then\n"
    "  local at = tonumber(redis.call('ZSCORE', KEYS[2], theirs) or now)\n"
    "  if at > now - ttl then\n"
    "    redis.call('HDEL', KEYS[1], theirs)\n"
    "    redis.call('ZREM', KEYS[2], theirs)\n"
    "    return done(1, partner, now - at)\n"
    "  end\n"
    "  orphan(theirs)\n"
    "end\n"
    "if redis.call('HEXISTS', KEYS[1], mine) == 1 then return done(2, '', 0) end\n"
    "redis.call('HSET', KEYS[1], mine, ARGV[4])\n"
    "redis.call('ZADD', KEYS[2], now, mine)\n"
    "local keep = ttl * 4 + 600000\n"
    "redis.call('PEXPIRE', KEYS[1], keep)\n"
    "redis.call('PEXPIRE', KEYS[2], keep)\n"
    "return done(0, '', 0)\n";

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void log_line(st_sink_t *s, int is_warning, const char *line)
{
    if (s->cfg.log)
        s->cfg.log(s->cfg.log_arg, is_warning, line);
    else
        fprintf(stderr, "shadowtee stats: %s\n", line);
}

static void closed_line(st_sink_t *s)
{
    uint64_t compared = st_agg_compared(s->agg);
    uint64_t lost = st_agg_lost(s->agg);
    char line[512];
    snprintf(line, sizeof(line),
             "event=stats_closed service=%s comparisons=%llu redis=%s lost_comparisons=%llu "
             "lost_deltas=%llu dropped=%llu",
             s->cfg.service, (unsigned long long)compared, s->cfg.redis_host ? "on" : "off",
             (unsigned long long)lost, (unsigned long long)atomic_load(&s->lost),
             (unsigned long long)atomic_load(&s->agg->dropped));
    log_line(s, 0, line);
}

static void log_down(st_sink_t *s, const char *reason)
{
    if (s->logged_down) return;
    s->logged_down = 1;
    char tried[ST_SINK_ADDR_MAX * (ST_SINK_IP_MAX + 1)] = "";
    for (int i = 0; i < s->naddrs; i++) {
        if (i) strcat(tried, " ");
        strcat(tried, s->addrs[i]);
    }
    char line[512 + sizeof(tried)];
    snprintf(line, sizeof(line),
             "event=redis_down service=%s redis=%s:%d addresses=\"%s\" reason=\"%s\"",
             s->cfg.service, s->cfg.redis_host, s->cfg.redis_port, tried, reason);
    log_line(s, 1, line);
}

static void ctl_arm(st_sink_t *s, uint64_t ms)
{
    uv_timer_start(&s->ctl_timer, on_ctl, ms, 0);
}

static void schedule_reconnect(st_sink_t *s)
{
    s->state = ST_SINK_WAIT;
    ctl_arm(s, s->backoff_ms);
    s->backoff_ms *= 2;
    if (s->backoff_ms > ST_SINK_BACKOFF_MAX_MS) s->backoff_ms = ST_SINK_BACKOFF_MAX_MS;
}

/* The connect to addrs[addr_idx] failed (the context is gone or freed): the
 * next address on the next loop turn, or the backoff once every address of
 * this round was tried (the attempt after it resolves the name again). */
static void connect_failed(st_sink_t *s, const char *reason)
{
    atomic_fetch_add_explicit(&s->redis_errors, 1, memory_order_relaxed);
    if (s->closing) {
        request_teardown(s);
        return;
    }
    if (s->addr_left > 0) {
        s->addr_idx = (s->addr_idx + 1) % s->naddrs;
        s->state = ST_SINK_WAIT;
        ctl_arm(s, 0);
        return;
    }
    log_down(s, reason);
    schedule_reconnect(s);
}

/* Asks ctl_timer to free the context on the next loop turn (safe from any
 * hiredis callback). */
static void request_teardown(st_sink_t *s)
{
    s->teardown = 1;
    ctl_arm(s, 0);
}

/* Forgets the in-flight batch; whatever had no reply is lost. */
static void inflight_drop(st_sink_t *s)
{
    if (s->inflight_deltas)
        atomic_fetch_add_explicit(&s->lost, s->inflight_deltas, memory_order_relaxed);
    st_agg_lose(s->agg, ST_CMP_LOSS_CONNECTION, s->inflight_compared);
    st_batch_free(&s->inflight);
    s->inflight_left = s->inflight_deltas = 0;
    s->inflight_compared = 0;
}

/* ---- hiredis callbacks --------------------------------------------------- */

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    st_sink_t *s = ac->data;
    s->ac = NULL; /* hiredis frees it after this returns */
    atomic_store_explicit(&s->connected, 0, memory_order_relaxed);
    inflight_drop(s);
    if (s->in_free) return; /* our own teardown decides what comes next */
    log_down(s, status == REDIS_OK ? "closed" : ac->errstr);
    if (s->closing) {
        request_teardown(s);
        return;
    }
    atomic_fetch_add_explicit(&s->redis_errors, 1, memory_order_relaxed);
    schedule_reconnect(s);
}

static void finish_if_done(st_sink_t *s)
{
    if (s->closing && s->inflight_left == 0 && s->mesh_inflight == 0) {
        if (st_agg_pending(s->agg) > 0) send_batch(s);
        if (s->inflight_left == 0) request_teardown(s);
    }
}

static void on_setup_reply(redisAsyncContext *ac, void *r, void *priv)
{
    st_sink_t *s = priv;
    redisReply *reply = r;
    if (!reply) return; /* context going away: on_disconnect handles it */
    if (reply->type == REDIS_REPLY_ERROR) {
        atomic_fetch_add_explicit(&s->redis_errors, 1, memory_order_relaxed);
        log_down(s, reply->str);
        request_teardown(s);
        return;
    }
    if (s->setup_pending && --s->setup_pending == 0) {
        atomic_store_explicit(&s->connected, 1, memory_order_relaxed);
        s->backoff_ms = ST_SINK_BACKOFF_MIN_MS;
        if (s->logged_down) {
            char line[300];
            snprintf(line, sizeof(line), "event=redis_up service=%s", s->cfg.service);
            log_line(s, 0, line);
        }
        s->logged_down = 0;
        if (s->closing) finish_if_done(s);
    }
    (void)ac;
}

static void on_batch_reply(redisAsyncContext *ac, void *r, void *priv)
{
    st_sink_t *s = priv;
    redisReply *reply = r;
    if (!reply || s->inflight_left == 0)
        return; /* dropped connection: on_disconnect counts the loss */
    size_t idx = s->inflight.ncmds - s->inflight_left;
    size_t nd = s->inflight.cmds[idx].ndeltas;
    uint64_t nc = s->inflight.cmds[idx].ncompared;
    s->inflight_deltas -= nd;
    s->inflight_compared -= nc;
    if (reply->type == REDIS_REPLY_ERROR) { /* e.g. WRONGTYPE, OOM: not applied */
        atomic_fetch_add_explicit(&s->redis_errors, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->lost, nd, memory_order_relaxed);
        st_agg_lose(s->agg, ST_CMP_LOSS_ERROR, nc);
    }
    if (--s->inflight_left == 0) {
        atomic_fetch_add_explicit(&s->flushes, 1, memory_order_relaxed);
        st_batch_free(&s->inflight);
        finish_if_done(s);
    }
    (void)ac;
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    st_sink_t *s = cac->data;
    redisAsyncContext *ac = s->ac;
    if (s->teardown) { /* close or teardown already queued on ctl_timer: let it run */
        if (status != REDIS_OK) s->ac = NULL; /* hiredis frees it after this returns */
        return;
    }
    uv_timer_stop(&s->ctl_timer);
    if (status != REDIS_OK) { /* hiredis frees the context after this */
        s->ac = NULL;
        connect_failed(s, cac->errstr);
        return;
    }
    snprintf(s->addr_ok, sizeof(s->addr_ok), "%s", s->addrs[s->addr_idx]);
    s->addr_left = 0; /* the next reconnect resolves the name again */
    s->state = ST_SINK_READY;
    s->meta_sent = 0;
    s->setup_pending = 0;
    s->inflight_since = uv_now(s->loop); /* the setup replies share the reply timeout */
    if (s->cfg.redis_password && *s->cfg.redis_password) {
        const char *user = s->cfg.redis_user && *s->cfg.redis_user ? s->cfg.redis_user : NULL;
        const char *argv[] = {"AUTH", user ? user : s->cfg.redis_password, s->cfg.redis_password};
        size_t lens[] = {4, strlen(argv[1]), strlen(argv[2])};
        if (redisAsyncCommandArgv(ac, on_setup_reply, s, user ? 3 : 2, argv, lens) == REDIS_OK)
            s->setup_pending++;
    }
    if (s->cfg.redis_db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", s->cfg.redis_db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        if (redisAsyncCommandArgv(ac, on_setup_reply, s, 2, argv, lens) == REDIS_OK)
            s->setup_pending++;
    }
    if (s->cfg.mesh) { /* once per connection; EVALSHA may follow at once */
        const char *argv[] = {"SCRIPT", "LOAD", mesh_script};
        size_t lens[] = {6, 4, sizeof(mesh_script) - 1};
        if (redisAsyncCommandArgv(ac, on_setup_reply, s, 3, argv, lens) == REDIS_OK)
            s->setup_pending++;
    }
    /* PING confirms the connection even without AUTH/SELECT */
    if (redisAsyncCommand(ac, on_setup_reply, s, "PING") == REDIS_OK) s->setup_pending++;
}

/* ---- connection ------------------------------------------------------- */

static void connect_next(st_sink_t *s);

/* Takes up to ST_SINK_ADDR_MAX stream addresses of res, numeric, without
 * duplicates; the one that connected last goes first in this round. */
static void take_addrs(st_sink_t *s, const struct addrinfo *res)
{
    int n = 0;
    for (const struct addrinfo *ai = res; ai && n < ST_SINK_ADDR_MAX; ai = ai->ai_next) {
        const void *ip = ai->ai_family == AF_INET6
                             ? (const void *)&((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                         : ai->ai_family == AF_INET
                             ? (const void *)&((const struct sockaddr_in *)ai->ai_addr)->sin_addr
                             : NULL;
        if (!ip || !inet_ntop(ai->ai_family, ip, s->addrs[n], sizeof(s->addrs[n]))) continue;
        int dup = 0;
        for (int k = 0; k < n && !dup; k++)
            dup = strcmp(s->addrs[k], s->addrs[n]) == 0;
        if (!dup) n++;
    }
    s->naddrs = n;
    s->addr_idx = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(s->addrs[i], s->addr_ok) == 0) s->addr_idx = i;
    s->addr_left = n;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    st_sink_t *s = req->data;
    s->resolving = 0;
    int had = s->naddrs;
    if (status == 0) take_addrs(s, res);
    if (res) uv_freeaddrinfo(res);
    if (s->closing) {                           /* sink_close came meanwhile */
        if (s->close_stage == 2) ctl_arm(s, 0); /* on_ctl waited for us to close the timers */
        return;
    }
    if (status != 0 || s->naddrs == 0) {
        if (had && status != 0) { /* keep the last addresses: stale beats none */
            s->naddrs = had;
            s->addr_left = had;
            connect_next(s);
            return;
        }
        char why[256];
        snprintf(why, sizeof(why), "cannot resolve %s: %s", s->cfg.redis_host,
                 status ? uv_strerror(status) : "no IPv4 or IPv6 address");
        s->naddrs = 0;
        atomic_fetch_add_explicit(&s->redis_errors, 1, memory_order_relaxed);
        log_down(s, why);
        schedule_reconnect(s);
        return;
    }
    connect_next(s);
}

/* Starts a resolution of cfg.redis_host; an IP literal needs none. */
static void resolve(st_sink_t *s)
{
    unsigned char bin[sizeof(struct in6_addr)];
    const char *h = s->cfg.redis_host;
    if (inet_pton(AF_INET, h, bin) == 1 || inet_pton(AF_INET6, h, bin) == 1) {
        snprintf(s->addrs[0], sizeof(s->addrs[0]), "%s", h);
        s->naddrs = 1;
        s->addr_idx = 0;
        s->addr_left = 1;
        connect_next(s);
        return;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char port[16];
    snprintf(port, sizeof(port), "%d", s->cfg.redis_port);
    s->state = ST_SINK_WAIT;
    s->gai.data = s;
    int rc = uv_getaddrinfo(s->loop, &s->gai, on_resolved, h, port, &hints);
    if (rc == 0) {
        s->resolving = 1;
        return;
    }
    atomic_fetch_add_explicit(&s->redis_errors, 1, memory_order_relaxed);
    log_down(s, uv_strerror(rc));
    schedule_reconnect(s);
}

/* Connects to the next untried address, resolving first when none is left. */
static void connect_next(st_sink_t *s)
{
    if (s->closing) return;
    if (s->addr_left == 0) {
        resolve(s);
        return;
    }
    s->addr_left--;
    redisAsyncContext *ac = redisAsyncConnect(s->addrs[s->addr_idx], s->cfg.redis_port);
    if (!ac || ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        connect_failed(s, why);
        return;
    }
    ac->data = s;
    if (redisLibuvAttach(ac, s->loop) != REDIS_OK) {
        log_down(s, "libuv attach failed");
        redisAsyncFree(ac);
        schedule_reconnect(s);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    s->ac = ac;
    s->state = ST_SINK_CONNECTING;
    ctl_arm(s, ST_SINK_CONNECT_TIMEOUT_MS);
}

/* Frees our context. Only from a timer callback (ctl_timer, or flush_timer on
 * a broken poll), never inside one of the context's own callbacks. */
static void free_context(st_sink_t *s)
{
    if (s->ac) {
        s->in_free = 1;
        redisAsyncFree(s->ac); /* runs on_disconnect when it was connected */
        s->in_free = 0;
        s->ac = NULL;
    }
    inflight_drop(s);
    atomic_store_explicit(&s->connected, 0, memory_order_relaxed);
}

static void on_handle_closed(uv_handle_t *h)
{
    st_sink_t *s = h->data;
    if (--s->handles_open > 0) return;
    void (*cb)(void *) = s->close_cb;
    void *arg = s->close_arg;
    sink_free(s);
    if (cb) cb(arg);
}

static void on_ctl(uv_timer_t *t)
{
    st_sink_t *s = t->data;
    if (s->close_stage == 2) { /* the context's poll handle is closed by now */
        if (s->resolving) {    /* s holds the request: on_resolved arms us again */
            uv_cancel((uv_req_t *)&s->gai);
            return;
        }
        uv_close((uv_handle_t *)&s->flush_timer, on_handle_closed);
        uv_close((uv_handle_t *)&s->ctl_timer, on_handle_closed);
        return;
    }
    if (s->teardown || s->closing) {
        s->teardown = 0;
        free_context(s);
        if (s->closing) {
            s->state = ST_SINK_CLOSED;
            s->close_stage = 2;
            ctl_arm(s, 0);
        } else {
            schedule_reconnect(s);
        }
        return;
    }
    switch (s->state) {
    case ST_SINK_WAIT:
        if (s->addr_left == 0) /* a new round after the backoff, not the next address */
            atomic_fetch_add_explicit(&s->reconnects, 1, memory_order_relaxed);
        connect_next(s);
        break;
    case ST_SINK_CONNECTING:
        free_context(s);
        connect_failed(s, "connect timeout");
        break;
    default:
        break;
    }
}

/* ---- flushing --------------------------------------------------------- */

static void send_batch(st_sink_t *s)
{
    if (!s->ac || s->state != ST_SINK_READY || s->setup_pending || s->inflight_left ||
        st_agg_pending(s->agg) == 0)
        return;
    st_batch_init(&s->inflight);
    st_agg_build_batch(s->agg, &s->inflight, !s->meta_sent, wall_ms());
    s->meta_sent = 1;
    s->inflight_deltas = s->inflight.ndeltas;
    s->inflight_compared = s->inflight.ncompared;
    s->inflight_since = uv_now(s->loop);
    size_t sent = 0;
    for (; sent < s->inflight.ncmds; sent++) {
        st_cmd_t *c = &s->inflight.cmds[sent];
        if (redisAsyncCommandArgv(s->ac, on_batch_reply, s, c->argc, (const char **)c->argv,
                                  c->argvlen) != REDIS_OK)
            break;
    }
    for (size_t i = sent; i < s->inflight.ncmds; i++) { /* refused (disconnecting) */
        atomic_fetch_add_explicit(&s->lost, s->inflight.cmds[i].ndeltas, memory_order_relaxed);
        s->inflight_deltas -= s->inflight.cmds[i].ndeltas;
        s->inflight_compared -= s->inflight.cmds[i].ncompared;
        st_agg_lose(s->agg, ST_CMP_LOSS_CONNECTION, s->inflight.cmds[i].ncompared);
    }
    s->inflight_left = sent;
    if (sent == 0) st_batch_free(&s->inflight);
}

/* The libuv adapter ignores a poll error (libuv reports POLLERR, e.g. a
 * refused connect or a reset, by stopping the handle and passing a status
 * the adapter drops): hiredis would wait forever. A stopped poll handle that
 * still has events wanted means exactly that; the reason is in SO_ERROR. */
static int poll_broken(const st_sink_t *s, char *why, size_t whylen)
{
    if (!s->ac || !s->ac->ev.data) return 0;
    const redisLibuvEvents *p = s->ac->ev.data;
    if (!p->events || uv_is_active((const uv_handle_t *)&p->handle)) return 0;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(s->ac->c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0)
        err = ECONNRESET;
    snprintf(why, whylen, "%s", strerror(err));
    return 1;
}

static void on_flush(uv_timer_t *t)
{
    st_sink_t *s = t->data;
    char why[128];
    if ((s->state == ST_SINK_CONNECTING || s->state == ST_SINK_READY) && !s->teardown &&
        poll_broken(s, why, sizeof(why))) {
        int connecting = s->state == ST_SINK_CONNECTING;
        free_context(s);
        if (connecting) { /* e.g. refused: the next address */
            connect_failed(s, why);
            return;
        }
        atomic_fetch_add_explicit(&s->redis_errors, 1, memory_order_relaxed);
        log_down(s, why);
        schedule_reconnect(s);
        return;
    }
    if (s->state != ST_SINK_READY) return;
    uint64_t now = uv_now(s->loop);
    if (((s->inflight_left || s->setup_pending) && now - s->inflight_since > s->reply_timeout_ms) ||
        (s->mesh_inflight && now - s->mesh_progress > s->reply_timeout_ms)) {
        if (s->teardown) return;
        atomic_fetch_add_explicit(&s->redis_errors, 1, memory_order_relaxed);
        log_down(s, "reply timeout");
        request_teardown(s);
        return;
    }
    send_batch(s);
    if (s->cfg.mesh && now - s->mesh_last_send >= ST_MESH_SWEEP_IDLE_MS) mesh_sweep(s);
}

/* ---- mesh halves ----------------------------------------------------------- */

typedef struct {
    st_sink_t *s;
    st_mesh_cb cb; /* NULL: a sweep */
    void *arg;
    const char *half; /* the caller's, alive until cb */
    size_t len;
    int retried; /* NOSCRIPT: sent again as EVAL */
    char side[16], partner[16];
    char id[160];
} mesh_req_t;

static int mesh_ready(const st_sink_t *s)
{
    return s->cfg.mesh && s->ac && s->state == ST_SINK_READY && !s->setup_pending && !s->teardown &&
           !s->closing;
}

static void on_mesh_reply(redisAsyncContext *ac, void *r, void *priv);

static int mesh_send(st_sink_t *s, mesh_req_t *q)
{
    char ttl[24], limit[16];
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)s->cfg.mesh_pair_ttl_ms);
    snprintf(limit, sizeof(limit), "%d", ST_MESH_SWEEP_LIMIT);
    const char *argv[12] = {q->retried ? "EVAL" : "EVALSHA",
                            q->retried ? mesh_script : s->mesh_sha,
                            "3",
                            s->mesh_keys[0],
                            s->mesh_keys[1],
                            s->mesh_keys[2],
                            q->side,
                            q->partner,
                            q->id,
                            q->half ? q->half : "",
                            ttl,
                            limit};
    size_t lens[12];
    for (int i = 0; i < 12; i++)
        lens[i] = strlen(argv[i]);
    lens[1] = q->retried ? sizeof(mesh_script) - 1 : 40;
    lens[9] = q->len;
    if (redisAsyncCommandArgv(s->ac, on_mesh_reply, q, 12, argv, lens) != REDIS_OK) return -1;
    if (s->mesh_inflight++ == 0) s->mesh_progress = uv_now(s->loop);
    s->mesh_last_send = uv_now(s->loop);
    return 0;
}

static long long reply_int(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (r->type == REDIS_REPLY_STRING) return strtoll(r->str, NULL, 10);
    return 0;
}

static void on_mesh_reply(redisAsyncContext *ac, void *r, void *priv)
{
    mesh_req_t *q = priv;
    st_sink_t *s = q->s;
    redisReply *reply = r;
    (void)ac;
    s->mesh_inflight--;
    s->mesh_progress = uv_now(s->loop);
    st_mesh_reply_t out;
    memset(&out, 0, sizeof(out));
    if (!reply) {
        out.result = ST_MESH_LOST; /* the context is going away: nothing else to do here */
    } else if (reply->type == REDIS_REPLY_ERROR) {
        if (!q->retried && strncmp(reply->str, "NOSCRIPT", 8) == 0 && s->ac && !s->teardown) {
            q->retried = 1; /* the script cache was flushed: once more, with the script */
            if (mesh_send(s, q) == 0) return;
        }
        atomic_fetch_add_explicit(&s->redis_errors, 1, memory_order_relaxed);
        out.result = ST_MESH_ERROR;
    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 6) {
        out.result = ST_MESH_ERROR;
    } else {
        long long code = reply_int(reply->element[0]);
        out.result = code == 0   ? ST_MESH_STORED
                     : code == 1 ? ST_MESH_JOINED
                     : code == 2 ? ST_MESH_DUPLICATE
                                 : ST_MESH_STORED;
        if (code == 1 && reply->element[1]->type == REDIS_REPLY_STRING) {
            out.partner = reply->element[1]->str;
            out.partner_len = reply->element[1]->len;
            out.join_ms = reply_int(reply->element[2]);
        } else if (code == 1) {
            out.result = ST_MESH_ERROR;
        }
        for (int i = 0; i < 3; i++) {
            long long n = reply_int(reply->element[3 + i]);
            out.orphans[i] = n > 0 ? (uint64_t)n : 0;
            atomic_fetch_add_explicit(&s->mesh_orphans[i], out.orphans[i], memory_order_relaxed);
        }
    }
    if (q->cb) q->cb(q->arg, &out);
    free(q);
    if (reply && s->closing) finish_if_done(s);
}

int st_sink_mesh_publish(st_sink_t *s, const char *side, const char *partner, const char *id,
                         const char *half, size_t len, st_mesh_cb cb, void *arg)
{
    if (!mesh_ready(s) || s->mesh_inflight >= ST_MESH_INFLIGHT_MAX || !cb) return -1;
    mesh_req_t *q = calloc(1, sizeof(*q));
    if (!q) return -1;
    q->s = s;
    q->cb = cb;
    q->arg = arg;
    q->half = half;
    q->len = len;
    snprintf(q->side, sizeof(q->side), "%s", side);
    snprintf(q->partner, sizeof(q->partner), "%s", partner);
    snprintf(q->id, sizeof(q->id), "%s", id);
    if (mesh_send(s, q) != 0) {
        free(q);
        return -1;
    }
    return 0;
}

/* Sweep-only call (side ""), when no half went out for a while: halves
 * whose partner never came are counted even when traffic stops. */
static void mesh_sweep(st_sink_t *s)
{
    if (!mesh_ready(s) || s->mesh_inflight) return;
    mesh_req_t *q = calloc(1, sizeof(*q));
    if (!q) return;
    q->s = s;
    if (mesh_send(s, q) != 0) free(q);
}

size_t st_sink_mesh_inflight(const st_sink_t *s)
{
    return s->mesh_inflight;
}

void st_sink_mesh_orphans(const st_sink_t *s, uint64_t out[3])
{
    for (int i = 0; i < 3; i++)
        out[i] = atomic_load_explicit(&s->mesh_orphans[i], memory_order_relaxed);
}

/* The script's SHA-1, what EVALSHA names it by. */
static int mesh_sha(st_sink_t *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD *sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    int ok = sha1 && EVP_Digest(mesh_script, sizeof(mesh_script) - 1, md, &n, sha1, NULL) == 1 &&
             n == 20;
    EVP_MD_free(sha1);
    if (!ok) return -1;
    for (unsigned i = 0; i < 20; i++)
        snprintf(s->mesh_sha + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static int sink_start(st_sink_t *s)
{
    if (s->cfg.mesh && mesh_sha(s) != 0) return -1;
    uv_timer_init(s->loop, &s->flush_timer);
    uv_timer_init(s->loop, &s->ctl_timer);
    s->flush_timer.data = s->ctl_timer.data = s;
    s->handles_open = 2;
    s->backoff_ms = ST_SINK_BACKOFF_MIN_MS;
    s->reply_timeout_ms = ST_SINK_REPLY_TIMEOUT_MS;
    if (!s->cfg.redis_host) {
        s->state = ST_SINK_OFF;
        return 0;
    }
    uv_timer_start(&s->flush_timer, on_flush, s->cfg.flush_interval_ms, s->cfg.flush_interval_ms);
    connect_next(s);
    return 0;
}

static void sink_close(st_sink_t *s)
{
    if (s->closing) return;
    s->closing = 1;
    s->close_stage = 1;
    uv_timer_stop(&s->flush_timer);
    if (s->state == ST_SINK_READY && s->ac) {
        send_batch(s); /* no-op while setup or another batch is in flight */
        if (s->inflight_left || s->setup_pending || s->mesh_inflight) {
            ctl_arm(s, ST_SINK_CLOSE_WAIT_MS); /* bounded wait; replies may finish earlier */
            return;
        }
    }
    request_teardown(s);
}

/* ---- lifetime ---------------------------------------------------------- */

void st_sink_config_init(st_sink_config_t *cfg)
{
    st_agg_config_t a;
    st_agg_config_init(&a);
    memset(cfg, 0, sizeof(*cfg));
    cfg->redis_host = NULL;
    cfg->redis_port = 6379;
    cfg->redis_password = NULL;
    cfg->redis_db = 0;
    cfg->service = a.service;
    cfg->flush_interval_ms = 100;
    cfg->max_backlog = a.max_backlog;
    cfg->samples_per_endpoint = a.samples_per_endpoint;
    cfg->sample_body_max = a.sample_body_max;
    cfg->bucket_ttl_s = a.bucket_ttl_s;
    cfg->max_endpoints = a.max_endpoints;
    cfg->rules = NULL;
}

st_sink_t *st_sink_new(uv_loop_t *loop, const st_sink_config_t *cfg)
{
    st_sink_t *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->loop = loop;
    s->cfg = *cfg;
    if (!s->cfg.service) s->cfg.service = "default";
    if (s->cfg.flush_interval_ms == 0) s->cfg.flush_interval_ms = 100;
    st_agg_config_t ac;
    st_agg_config_init(&ac);
    ac.service = s->cfg.service;
    ac.deltas = s->cfg.redis_host != NULL; /* without Redis, nothing drains them */
    ac.max_backlog = s->cfg.max_backlog;
    ac.samples_per_endpoint = s->cfg.samples_per_endpoint;
    ac.sample_body_max = s->cfg.sample_body_max;
    ac.bucket_ttl_s = s->cfg.bucket_ttl_s;
    ac.max_endpoints = s->cfg.max_endpoints;
    ac.rules = s->cfg.rules;
    s->agg = st_agg_new(&ac);
    if (!s->agg) goto fail;
    if (s->cfg.mesh) {
        static const char *const names[3] = {ST_KEY_MESH_HALVES, ST_KEY_MESH_PENDING,
                                             ST_KEY_MESH_ORPHANS};
        size_t cap = s->agg->prefixlen + 16;
        for (int i = 0; i < 3; i++) {
            s->mesh_keys[i] = malloc(cap);
            if (!s->mesh_keys[i]) goto fail;
            snprintf(s->mesh_keys[i], cap, "%s%s", s->agg->prefix, names[i]);
        }
    }
    if (sink_start(s) != 0) goto fail;
    return s;
fail:
    sink_free(s);
    return NULL;
}

/* Frees the stats (after every handle is closed): what is still pending
 * never reaches Redis. */
static void sink_free(st_sink_t *s)
{
    if (!s) return;
    if (s->agg) {
        st_agg_lose_pending(s->agg, ST_CMP_LOSS_SHUTDOWN); /* never flushed */
        if (s->closing) closed_line(s);
        st_agg_free(s->agg);
    }
    for (int i = 0; i < 3; i++)
        free(s->mesh_keys[i]);
    st_batch_free(&s->inflight);
    free(s);
}

void st_sink_record(st_sink_t *s, const st_agg_record_t *rec)
{
    st_agg_record(s->agg, rec);
}

st_agg_t *st_sink_agg(st_sink_t *s)
{
    return s->agg;
}

void st_sink_close(st_sink_t *s, void (*cb)(void *arg), void *arg)
{
    s->close_cb = cb;
    s->close_arg = arg;
    sink_close(s);
}

/* ---- Prometheus -------------------------------------------------------- */

static uint64_t ld(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void prom_counter(FILE *out, const char *name, const char *help, uint64_t v)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name, name, v);
}

void st_sink_prometheus(st_sink_t *const *all, size_t n, FILE *out)
{
    st_agg_t *few[64];
    st_agg_t **aggs = n <= 64 ? few : calloc(n, sizeof(*aggs));
    if (!aggs) return;
    uint64_t flushes = 0, dropped = 0, lost = 0, reconn = 0, rerr = 0;
    size_t with_redis = 0, connected = 0;
    for (size_t i = 0; i < n; i++) {
        st_sink_t *s = all[i];
        aggs[i] = s ? s->agg : NULL;
        if (!s) continue;
        flushes += ld(&s->flushes);
        dropped += ld(&s->agg->dropped);
        lost += ld(&s->lost);
        reconn += ld(&s->reconnects);
        rerr += ld(&s->redis_errors);
        with_redis += s->cfg.redis_host != NULL;
        connected += atomic_load_explicit(&s->connected, memory_order_relaxed) != 0;
    }
    st_agg_prometheus(aggs, n, out);
    fprintf(
        out,
        "# HELP shadowtee_redis_connected 1 when every comparator thread's connection to Redis is "
        "up.\n"
        "# TYPE shadowtee_redis_connected gauge\nshadowtee_redis_connected %d\n",
        with_redis > 0 && connected == with_redis);
    prom_counter(out, "shadowtee_redis_flushes_total", "Batches of deltas acknowledged by Redis.",
                 flushes);
    prom_counter(out, "shadowtee_redis_dropped_deltas_total",
                 "Deltas and samples dropped because the backlog was full.", dropped);
    prom_counter(out, "shadowtee_redis_lost_deltas_total",
                 "Deltas sent to Redis whose reply never came back (connection lost).", lost);
    fprintf(out, "# HELP shadowtee_redis_lost_comparisons_total Comparisons whose counts never "
                 "reached Redis, by reason (Redis's compared + these = comparisons).\n"
                 "# TYPE shadowtee_redis_lost_comparisons_total counter\n");
    for (int k = 0; k < 4; k++) {
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++)
            if (all[i]) v += ld(&all[i]->agg->cmp_lost[k]);
        fprintf(out, "shadowtee_redis_lost_comparisons_total{reason=\"%s\"} %" PRIu64 "\n",
                st_cmp_loss_names[k], v);
    }
    prom_counter(out, "shadowtee_redis_reconnects_total",
                 "Redis connection attempts after the first.", reconn);
    prom_counter(out, "shadowtee_redis_errors_total",
                 "Error replies and failed connects from Redis.", rerr);
    if (aggs != few) free(aggs);
}
