/*
 * tee: mirror copies, their legs to the shadow and the noise replica, and
 * the hand-off of finished pairs to the comparator (see tee.h).
 *
 * Isolation rules, each enforced here and counted when it drops a copy:
 * a cap on mirrors in flight, a memory budget for buffered copies, a body
 * size limit, a shadow marked down after a failed connect or a run of
 * response timeouts (with backoff and one probe copy), a bounded shadow
 * pool, and a response timeout per leg. Shadow requests are never retried.
 * Nothing here writes to or waits on the client, and a complete copy is
 * sent from the loop's prepare phase, after the client work of the turn
 * that completed it: the shadow's socket writes and connects (and any
 * reschedule they cause) come after the client's.
 */
#include "tee.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cmpjob.h"
#include "log.h"
#include "mesh.h"
#include "metrics.h"
#include "upstream.h"
#include "worker.h"

enum { LEG_SHADOW = 0, LEG_NOISE = 1 };

static void on_tee_prepare(uv_prepare_t *h);

typedef struct st_leg {
    struct st_mirror *m;
    int kind;   /* LEG_SHADOW or LEG_NOISE */
    int active; /* the leg exists for this mirror */
    int done;
    int writing; /* wreq in flight: the mirror is not freed before its callback */
    int in_body; /* response head seen */
    int close_delim;
    uv_write_t wreq;
    char *wbuf; /* TLS: ciphertext of the request, owned until wreq completes */
    st_upconn_t *up;
    st_http_msg_t *res; /* response head spans into up->rb; allocated when the leg starts */
    st_capture_t cap;
    uint64_t t0; /* uv_hrtime at dispatch */
} st_leg_t;

struct st_mirror {
    st_worker_t *w;
    st_list_t link;  /* in w->tee.mirrors */
    st_list_t qlink; /* in w->tee.queue while queued */
    st_sbuf_t head;  /* mirror request head, completed at dispatch */
    st_sbuf_t body;  /* copy of the request body */
    int has_body;
    int method;
    int queued;     /* request complete, waiting in w->tee.queue to be sent */
    int dispatched; /* the shadow leg was started */
    int probe;      /* this copy probes a shadow marked down (see shadow_down) */
    int primary_done;
    int primary_ok;
    int compare;  /* capture and compare responses */
    int finished; /* compared; freed once no write is pending */
    int starting; /* inside st_tee_request_done: do not finish yet */
    st_capture_t primary;
    st_leg_t legs[2];
    size_t mem; /* bytes accounted in w->tee.mem */
    char rid[129];
    char method_name[24];
    char *path; /* request target, NUL-terminated */
};

/* ---- captures ------------------------------------------------------------ */

void st_capture_init(st_capture_t *c)
{
    memset(c, 0, sizeof(*c));
    st_sbuf_init(&c->names);
    st_sbuf_init(&c->body);
}

void st_capture_free(st_capture_t *c)
{
    st_sbuf_free(&c->names);
    st_sbuf_free(&c->body);
}

void st_capture_header(st_capture_t *c, const char *name, size_t nlen, const char *value,
                       size_t vlen)
{
    if (st_sbuf_append(&c->names, name, nlen) || st_sbuf_append(&c->names, "", 1) ||
        st_sbuf_append(&c->names, value, vlen) || st_sbuf_append(&c->names, "", 1))
        return;
    c->nheaders++;
}

void st_capture_expect(st_capture_t *c, uint64_t content_length, size_t max)
{
    size_t want = content_length < max ? (size_t)content_length : max;
    if (want > c->body.cap - c->body.len) st_sbuf_reserve(&c->body, want); /* else: grows later */
}

void st_capture_body(st_capture_t *c, const char *data, size_t len, size_t max)
{
    size_t room = c->body.len < max ? max - c->body.len : 0;
    if (len > room) {
        c->truncated = 1;
        len = room;
    }
    if (len) st_sbuf_append_nt(&c->body, data, len); /* the comparator reads it, not us */
}

/* ---- accounting ---------------------------------------------------------- */

static void skip(st_worker_t *w, enum st_skip why)
{
    ST_INC(w->metrics.mirror_skipped[why]);
}

static void account(st_mirror_t *m, size_t add)
{
    m->mem += add;
    m->w->tee.mem += add;
    ST_ADD(m->w->metrics.mirror_bytes, add);
}

/* A probe copy's slot (see shadow_down) is free again once its shadow leg
 * ended or the copy is dropped. */
static void end_probe(st_mirror_t *m)
{
    if (!m->probe) return;
    m->probe = 0;
    m->w->tee.shadow.probing = 0;
}

static void mirror_free(st_mirror_t *m)
{
    st_worker_t *w = m->w;
    if (m->compare) { /* handed over just before, or abandoned: its room is free */
        st_cmpfeed_unreserve(&w->cmpfeed);
        m->compare = 0;
    }
    for (int i = 0; i < 2; i++)
        if (m->legs[i].writing) return; /* on_leg_written frees */
    st_list_remove(&m->link);
    if (m->queued) st_list_remove(&m->qlink);
    end_probe(m);
    w->tee.inflight--;
    w->tee.mem -= m->mem;
    ST_ADD(w->metrics.mirror_bytes, -(uint64_t)m->mem);
    ST_ADD(w->metrics.mirror_inflight, -1);
    st_sbuf_free(&m->head);
    st_sbuf_free(&m->body);
    st_capture_free(&m->primary);
    for (int i = 0; i < 2; i++) {
        st_capture_free(&m->legs[i].cap);
        free(m->legs[i].res);
    }
    free(m->path);
    free(m);
    st_worker_maybe_done(w);
}

/* ---- shadow health --------------------------------------------------------
 * The shadow is marked down after a failed connect or TLS handshake, or
 * after --shadow-eject-timeouts response timeouts in a row (a blackhole holds
 * a connection and an in-flight slot per copy until its timeout, and each
 * timed-out connection is closed and re-opened). While it is down copies are
 * skipped as shadow_unavailable; once the backoff (250 ms, doubling to 8 s)
 * has passed, one copy at a time probes it, and any shadow answer brings it
 * back. Per worker, like everything else on the loop. */

static int shadow_admits(st_worker_t *w, int *probe)
{
    *probe = 0;
    if (w->tee.shadow.backoff_ms == 0) return 1;
    if (uv_now(&w->loop) < w->tee.shadow.down_until || w->tee.shadow.probing) return 0;
    *probe = 1;
    return 1;
}

static void shadow_down(st_worker_t *w, enum st_upfail why)
{
    uint64_t now = uv_now(&w->loop);
    if (now < w->tee.shadow.down_until) return; /* copies sent before it went down count once */
    w->tee.shadow.backoff_ms = w->tee.shadow.backoff_ms ? w->tee.shadow.backoff_ms * 2 : 250;
    if (w->tee.shadow.backoff_ms > 8000) w->tee.shadow.backoff_ms = 8000;
    w->tee.shadow.down_until = now + w->tee.shadow.backoff_ms;
    st_info("msg=\"shadow marked down\" worker=%d reason=%s backoff_ms=%llu", w->id,
            st_upfail_labels[why], (unsigned long long)w->tee.shadow.backoff_ms);
}

static void shadow_answered(st_worker_t *w)
{
    w->tee.shadow.timeouts = 0;
    if (w->tee.shadow.backoff_ms == 0) return;
    w->tee.shadow.backoff_ms = 0;
    w->tee.shadow.down_until = 0;
    st_info("msg=\"shadow up again\" worker=%d", w->id);
}

/* ---- decision ------------------------------------------------------------ */

/* The in-flight cap, soft in its upper half: above half the cap a copy is
 * skipped with a probability growing linearly to 1 at the cap. A hard cap
 * lets a shadow with a steady latency synchronise the mirrors: each answer
 * frees a slot that the next request takes at once, so the copies go out in
 * the same bursts for as long as the load lasts (a burst of answers, then a
 * burst of copies, each one shadow latency apart). Random early skips spread
 * them over time at the same average rate. */
int st_tee_over_cap(size_t inflight, size_t cap, uint64_t random)
{
    size_t half = cap / 2;
    if (inflight >= cap) return 1;
    if (inflight <= half) return 0;
    return random % (cap - half) < inflight - half;
}

static int over_inflight_cap(st_worker_t *w)
{
    return st_tee_over_cap(w->tee.inflight, w->tee.cap, st_worker_random(w));
}

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* A point in [0, 100): from the sampling header's hash when configured and
 * present (every replica agrees), else random. */
static double sample_point(st_worker_t *w, const st_tee_request_t *r)
{
    const char *name = w->cfg->mirror_sample_by;
    if (name[0]) {
        if (strcasecmp(name, "x-request-id") == 0)
            return (double)(fnv1a(r->request_id, strlen(r->request_id)) % 1000000) / 10000.0;
        char lower[128];
        size_t n = strlen(name);
        for (size_t i = 0; i <= n; i++)
            lower[i] = (char)tolower((unsigned char)name[i]);
        const st_header_t *h = st_http_find(r->req, lower);
        if (h) return (double)(fnv1a(h->value, h->value_len) % 1000000) / 10000.0;
    }
    return (double)(st_worker_random(w) % 1000000) / 10000.0;
}

st_mirror_t *st_tee_begin(st_worker_t *w, const st_tee_request_t *r)
{
    const st_config_t *cfg = w->cfg;
    if (r->upgrade) return NULL;     /* CONNECT and Upgrade pass through, never mirrored */
    if (st_mesh_is_mirror(r->req)) { /* the loop guard: a copy is never copied again */
        skip(w, ST_SKIP_LOOP_GUARD);
        return NULL;
    }
    if (r->method < 64 && !(cfg->mirror_methods & (1ULL << r->method))) {
        skip(w, ST_SKIP_METHOD);
        return NULL;
    }
    if (cfg->mirror_percent <= 0 ||
        (cfg->mirror_percent < 100 && sample_point(w, r) >= cfg->mirror_percent)) {
        skip(w, ST_SKIP_SAMPLING);
        return NULL;
    }
    int probe;
    if (w->draining || !shadow_admits(w, &probe)) {
        skip(w, ST_SKIP_SHADOW_UNAVAILABLE);
        return NULL;
    }
    if (over_inflight_cap(w)) {
        skip(w, ST_SKIP_INFLIGHT_CAP);
        return NULL;
    }
    if (r->has_body && !r->chunked && r->content_length > cfg->mirror_max_body) {
        skip(w, ST_SKIP_BODY_TOO_LARGE);
        return NULL;
    }
    size_t want = 1024 + (r->has_body && !r->chunked ? (size_t)r->content_length : 0);
    if (w->tee.mem + want > w->tee.mem_cap) {
        skip(w, ST_SKIP_MEMORY_BUDGET);
        return NULL;
    }
    st_mirror_t *m = calloc(1, sizeof(*m)); /* small: the legs' response heads come later */
    if (!m) {
        skip(w, ST_SKIP_MEMORY_BUDGET);
        return NULL;
    }
    m->w = w;
    m->probe = probe;
    w->tee.shadow.probing |= probe;
    m->method = r->method;
    m->has_body = r->has_body;
    /* a full comparator queue now: the pair is dropped (counted) before any
     * response byte is copied for it */
    m->compare = w->cmpfeed.nthreads > 0 && st_cmpfeed_reserve(&w->cmpfeed);
    st_sbuf_init(&m->head);
    st_sbuf_init(&m->body);
    st_capture_init(&m->primary);
    for (int i = 0; i < 2; i++) {
        m->legs[i].m = m;
        m->legs[i].kind = i;
        st_capture_init(&m->legs[i].cap);
    }
    size_t rl = strlen(r->request_id), ml = strlen(r->method_name);
    if (rl >= sizeof(m->rid)) rl = sizeof(m->rid) - 1;
    if (ml >= sizeof(m->method_name)) ml = sizeof(m->method_name) - 1;
    memcpy(m->rid, r->request_id, rl);
    memcpy(m->method_name, r->method_name, ml);
    m->path = strndup(r->req->url ? r->req->url : "/", r->req->url ? r->req->url_len : 1);
    st_reqhead_opts_t o = {
        .method = r->method_name,
        .client_ip = r->client_ip,
        .proto = r->proto,
        .keep_forwarded_proto = r->keep_forwarded_proto,
        .request_id = r->request_id,
        .mirror = 1,
        .host_suffix = cfg->shadow_host_suffix == ST_HOST_SUFFIX_APPEND,
        .framing = ST_FRAME_OPEN,
    };
    st_list_push(&w->tee.mirrors, &m->link);
    w->tee.inflight++;
    ST_ADD(w->metrics.mirror_inflight, 1);
    if (!m->path || st_http_build_request_head(&m->head, r->req, &o) != 0 ||
        (r->has_body && !r->chunked && st_sbuf_reserve(&m->body, (size_t)r->content_length) != 0)) {
        skip(w, ST_SKIP_MEMORY_BUDGET);
        mirror_free(m);
        return NULL;
    }
    account(m, m->head.cap + m->body.cap);
    return m;
}

int st_tee_body(st_mirror_t *m, const char *data, size_t len)
{
    st_worker_t *w = m->w;
    if (m->body.len + len > w->cfg->mirror_max_body) {
        skip(w, ST_SKIP_BODY_TOO_LARGE);
        mirror_free(m);
        return -1;
    }
    size_t before = m->body.cap;
    if (m->body.len + len + 1 > m->body.cap && w->tee.mem + len > w->tee.mem_cap) {
        skip(w, ST_SKIP_MEMORY_BUDGET);
        mirror_free(m);
        return -1;
    }
    if (st_sbuf_append(&m->body, data, len) != 0) {
        skip(w, ST_SKIP_MEMORY_BUDGET);
        mirror_free(m);
        return -1;
    }
    account(m, m->body.cap - before);
    return 0;
}

void st_tee_abort(st_mirror_t *m)
{
    mirror_free(m);
}

st_capture_t *st_tee_primary_capture(st_mirror_t *m)
{
    return m->compare ? &m->primary : NULL;
}

/* ---- hand-off to the comparator -------------------------------------------- */

static void arm_prepare(st_worker_t *w)
{
    if (w->tee.prepare_open && !uv_is_active((uv_handle_t *)&w->tee.prepare))
        uv_prepare_start(&w->tee.prepare, on_tee_prepare);
}

void st_tee_kick_later(st_worker_t *w)
{
    arm_prepare(w);
}

/* Moves the captures of a finished pair into a job for a comparator thread
 * (pointers change hands, the bytes stay where they are; the mirror keeps
 * empty captures) and submits it. Dropped and counted when the comparator's
 * queue is full; the thread is woken from the prepare phase, after this
 * turn's client work. */
static void hand_off(st_mirror_t *m)
{
    st_worker_t *w = m->w;
    st_leg_t *n = &m->legs[LEG_NOISE];
    st_cmpjob_t *job = st_cmpjob_new(ST_CMPJOB_PAIR);
    if (!job) {
        st_cmpq_count_skip(w->cmpfeed.threads[0].rings[w->cmpfeed.ring], ST_CMPSKIP_BYTES);
        return;
    }
    job->primary = m->primary;
    st_capture_init(&m->primary);
    job->shadow = m->legs[LEG_SHADOW].cap;
    st_capture_init(&m->legs[LEG_SHADOW].cap);
    job->has_noise = n->active && !n->cap.error;
    if (job->has_noise) {
        job->noise = n->cap;
        st_capture_init(&n->cap);
    }
    job->path = m->path;
    m->path = NULL;
    memcpy(job->request_id, m->rid, sizeof(job->request_id));
    memcpy(job->method, m->method_name, sizeof(job->method));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    job->wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    job->bytes = st_cmpjob_size(job);
    if (st_cmpfeed_submit(&w->cmpfeed, job) == 0) arm_prepare(w);
}

static void maybe_finish(st_mirror_t *m)
{
    if (m->finished || m->starting || m->queued || !m->primary_done) return;
    for (int i = 0; i < 2; i++)
        if (m->legs[i].active && !m->legs[i].done) return;
    m->finished = 1;
    if (m->compare && m->primary_ok && m->dispatched) hand_off(m);
    mirror_free(m);
}

void st_tee_primary_done(st_mirror_t *m, int ok, double seconds)
{
    m->primary_done = 1;
    m->primary_ok = ok;
    m->primary.seconds = seconds;
    if (!m->dispatched && !m->queued) { /* nothing was sent, nor will be */
        m->finished = 1;
        mirror_free(m);
        return;
    }
    maybe_finish(m);
}

/* ---- legs ---------------------------------------------------------------- */

static void leg_done(st_leg_t *leg, const char *error, int reusable)
{
    st_mirror_t *m = leg->m;
    st_worker_t *w = m->w;
    if (leg->done) return;
    leg->done = 1;
    leg->cap.error = error;
    leg->cap.seconds = (double)(uv_hrtime() - leg->t0) / 1e9;
    if (leg->up) {
        st_upconn_set_timeout(leg->up, 0);
        if (reusable && !leg->writing)
            st_upconn_release(leg->up, 1);
        else
            st_upconn_close(leg->up);
        leg->up = NULL;
    }
    if (leg->kind == LEG_SHADOW) {
        end_probe(m);
        if (!error) {
            shadow_answered(w);
            ST_INC(w->metrics.shadow_responses[st_status_class(leg->cap.status)]);
            st_hist_observe(&w->metrics.shadow_duration, leg->cap.seconds);
        }
    }
    maybe_finish(m);
}

static void leg_fail(st_leg_t *leg, enum st_upfail why)
{
    st_worker_t *w = leg->m->w;
    if (why == ST_UPFAIL_EOF && leg->in_body && leg->close_delim && leg->up) {
        llhttp_finish(&leg->up->parser);
        leg_done(leg, NULL, 0);
        return;
    }
    enum st_upfail reason = st_upfail_counted(why);
    if (leg->kind == LEG_SHADOW) {
        ST_INC(w->metrics.shadow_errors[reason]);
        unsigned eject = (unsigned)w->cfg->shadow_eject_timeouts;
        if (why == ST_UPFAIL_CONNECT || why == ST_UPFAIL_TLS) {
            shadow_down(w, why);
        } else if (why == ST_UPFAIL_TIMEOUT) {
            w->tee.shadow.timeouts++;
            if (leg->m->probe || (eject && w->tee.shadow.timeouts >= eject)) shadow_down(w, why);
        } else {
            shadow_answered(w); /* it answered, wrongly: compared as an error, not ejected */
        }
    }
    st_debug("msg=\"mirror leg failed\" leg=%s reason=%s request_id=%s",
             leg->kind ? "noise" : "shadow", st_upfail_labels[reason], leg->m->rid);
    leg_done(leg, st_upfail_labels[reason], 0);
}

static int leg_on_message_begin(llhttp_t *p)
{
    st_leg_t *leg = p->data;
    st_http_msg_reset(leg->res);
    return 0;
}

static int leg_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    st_leg_t *leg = p->data;
    if (leg->in_body) return 0;
    return st_http_on_header_field(leg->res, at, len) ? HPE_USER : 0;
}

static int leg_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    st_leg_t *leg = p->data;
    if (leg->in_body) return 0;
    return st_http_on_header_value(leg->res, at, len) ? HPE_USER : 0;
}

static int leg_on_headers_complete(llhttp_t *p)
{
    st_leg_t *leg = p->data;
    int status = llhttp_get_status_code(p);
    if (status == 101) return -1; /* a mirror never asks for an upgrade: protocol error */
    if (status >= 100 && status < 200) return 1; /* interim: no body */
    leg->in_body = 1;
    leg->cap.status = status;
    leg->close_delim = !(p->flags & (F_CONTENT_LENGTH | F_CHUNKED));
    int no_body = leg->m->method == HTTP_HEAD || status == 204 || status == 304;
    if (leg->m->compare) {
        for (size_t i = 0; i < leg->res->nhdr; i++)
            st_capture_header(&leg->cap, leg->res->hdr[i].name, leg->res->hdr[i].name_len,
                              leg->res->hdr[i].value, leg->res->hdr[i].value_len);
        if (!no_body && (p->flags & F_CONTENT_LENGTH))
            st_capture_expect(&leg->cap, p->content_length, leg->m->w->cfg->compare_max_body);
    }
    return no_body ? 1 : 0;
}

static int leg_on_body(llhttp_t *p, const char *at, size_t len)
{
    st_leg_t *leg = p->data;
    if (leg->m->compare) st_capture_body(&leg->cap, at, len, leg->m->w->cfg->compare_max_body);
    return 0;
}

static int leg_on_message_complete(llhttp_t *p)
{
    st_leg_t *leg = p->data;
    if (!leg->in_body) return 0; /* interim response */
    return HPE_PAUSED;
}

static const llhttp_settings_t leg_settings = {
    .on_message_begin = leg_on_message_begin,
    .on_header_field = leg_on_header_field,
    .on_header_value = leg_on_header_value,
    .on_headers_complete = leg_on_headers_complete,
    .on_body = leg_on_body,
    .on_message_complete = leg_on_message_complete,
};

static void leg_on_data(void *owner, st_upconn_t *u)
{
    st_leg_t *leg = owner;
    llhttp_errno_t err = st_http_execute(&u->parser, &u->rb);
    if (err == HPE_PAUSED) {
        leg_done(leg, NULL, llhttp_should_keep_alive(&u->parser));
        return;
    }
    if (err != HPE_OK) {
        leg_fail(leg, ST_UPFAIL_PROTOCOL);
        return;
    }
    if (leg->in_body)
        u->rb.parsed = u->rb.filled = 0; /* body bytes were copied */
    else if (u->rb.filled == u->rb.cap)
        leg_fail(leg, ST_UPFAIL_PROTOCOL);
}

static void leg_on_fail(void *owner, st_upconn_t *u, enum st_upfail why)
{
    (void)u;
    leg_fail(owner, why);
}

static void on_leg_written(uv_write_t *req, int status)
{
    st_leg_t *leg = req->data;
    st_mirror_t *m = leg->m;
    leg->writing = 0;
    free(leg->wbuf);
    leg->wbuf = NULL;
    if (m->finished) {
        mirror_free(m);
        return;
    }
    if (status < 0 && !leg->done) leg_fail(leg, ST_UPFAIL_RESET);
}

static void leg_send(st_leg_t *leg)
{
    st_mirror_t *m = leg->m;
    st_upconn_t *u = leg->up;
    uint64_t timeout = m->w->cfg->shadow_timeout_ms;
    uint64_t spent = (uv_hrtime() - leg->t0) / 1000000;
    llhttp_init(&u->parser, HTTP_RESPONSE, &leg_settings);
    u->parser.data = leg;
    st_http_msg_reset(leg->res);
    st_upconn_set_timeout(u, spent < timeout ? timeout - spent : 1);
    uv_buf_t bufs[2] = {uv_buf_init(m->head.p, (unsigned)m->head.len),
                        uv_buf_init(m->body.p ? m->body.p : "", (unsigned)m->body.len)};
    leg->wreq.data = leg;
    int rc = st_upconn_write(u, &leg->wreq, bufs, m->body.len ? 2 : 1, &leg->wbuf, on_leg_written);
    if (rc < 0) {
        leg_fail(leg, ST_UPFAIL_RESET);
        return;
    }
    leg->writing = rc == 0; /* 1: all sent now, no callback */
}

static void leg_on_ready(void *owner, st_upconn_t *u)
{
    st_leg_t *leg = owner;
    leg_send(leg);
}

static const st_upstream_ops_t leg_ops = {
    .on_ready = leg_on_ready,
    .on_data = leg_on_data,
    .on_fail = leg_on_fail,
};

/* Starts one leg. Returns -1 when its pool has no room. */
static int leg_start(st_leg_t *leg, st_pool_t *pool)
{
    leg->active = 1;
    leg->t0 = uv_hrtime();
    leg->res = malloc(sizeof(*leg->res)); /* not zeroed: st_http_msg_reset sets what is read */
    if (!leg->res) return -1;
    st_http_msg_reset(leg->res);
    int rc = st_pool_acquire(pool, leg, &leg_ops, &leg->up);
    if (rc < 0) {
        leg->up = NULL;
        return -1;
    }
    if (rc == 1) leg_send(leg);
    return 0;
}

/* Starts the legs of one complete copy. */
static void dispatch(st_mirror_t *m)
{
    st_worker_t *w = m->w;
    st_list_remove(&m->qlink);
    m->queued = 0;
    m->starting = 1; /* a leg failing synchronously must not free m under us */
    st_leg_t *s = &m->legs[LEG_SHADOW];
    if (leg_start(s, &w->shadow_pool) != 0) {
        s->active = 0;
        skip(w, ST_SKIP_SHADOW_UNAVAILABLE);
        m->starting = 0;
        if (m->primary_done) { /* else st_tee_primary_done frees it */
            m->finished = 1;
            mirror_free(m);
        }
        return;
    }
    m->dispatched = 1;
    ST_INC(w->metrics.mirror_requests);
    if (w->cfg->noise.set) {
        st_leg_t *n = &m->legs[LEG_NOISE];
        if (leg_start(n, &w->noise_pool) != 0) {
            n->done = 1;
            n->cap.error = "connect";
        } else {
            ST_INC(w->metrics.noise_requests);
        }
    }
    m->starting = 0;
    maybe_finish(m); /* an early primary answer already came: m may be gone */
}

static void on_tee_prepare(uv_prepare_t *h)
{
    st_worker_t *w = h->data;
    while (!st_list_empty(&w->tee.queue))
        dispatch(st_list_entry(w->tee.queue.next, st_mirror_t, qlink));
    st_cmpfeed_kick(&w->cmpfeed);
    uv_prepare_stop(h);
}

void st_tee_request_done(st_mirror_t *m)
{
    st_worker_t *w = m->w;
    if (m->has_body)
        st_sbuf_appendf(&m->head, "Content-Length: %zu\r\n\r\n", m->body.len);
    else
        st_sbuf_append(&m->head, "\r\n", 2);
    m->queued = 1;
    st_list_push(&w->tee.queue, &m->qlink);
    arm_prepare(w);
}

int st_tee_worker_init(st_worker_t *w)
{
    st_list_init(&w->tee.queue);
    int rc = uv_prepare_init(&w->loop, &w->tee.prepare);
    if (rc) return rc;
    w->tee.prepare.data = w;
    w->tee.prepare_open = 1;
    return 0;
}

void st_tee_worker_close(st_worker_t *w)
{
    if (!w->tee.prepare_open) return;
    w->tee.prepare_open = 0;
    uv_close((uv_handle_t *)&w->tee.prepare, NULL); /* nothing to free */
}

void st_tee_abort_all(st_worker_t *w)
{
    st_list_t *n = w->tee.mirrors.next;
    while (n != &w->tee.mirrors) {
        st_mirror_t *m = st_list_entry(n, st_mirror_t, link);
        n = n->next;
        if (m->finished) continue;
        m->primary_done = 1;
        m->primary_ok = 0;
        for (int i = 0; i < 2; i++)
            if (m->legs[i].active && !m->legs[i].done) {
                m->legs[i].done = 1;
                if (m->legs[i].up) st_upconn_close(m->legs[i].up);
                m->legs[i].up = NULL;
            }
        m->finished = 1;
        mirror_free(m);
    }
}
