/*
 * exchange_mesh: the mesh mode's part of an exchange (--mirror-mode mesh):
 * the half captured for the comparator, and the shadow role's own answer to
 * a request outside the share.
 */
#include "exchange.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "mesh.h"
#include "worker.h"

/* The comparator feed refused a half (full queue or byte budget): counted by
 * the reason the feed gave. */
static void half_refused(st_worker_t *w)
{
    enum st_mesh_drop why =
        w->cmpfeed.last_skip == ST_CMPSKIP_BUSY ? ST_MDROP_COMPARATOR_BUSY : ST_MDROP_QUEUE_BYTES;
    ST_INC(w->metrics.mesh_dropped[why]);
}

/* ---- mesh mode (--mirror-mode mesh) ---------------------------------------
 * The mesh mirrors; this sidecar only decides from the request id whether
 * the request is in the compared share (mesh.h) and, when it is, captures
 * its own pod's answer into a half (a job of kind ST_CMPJOB_HALF) that the
 * comparator thread publishes. The stable role always proxies; the shadow
 * role answers requests outside the share itself (204), so its app only
 * sees the share. */

void st_exch_mesh_begin(st_conn_t *c)
{
    st_worker_t *w = c->w;
    const st_config_t *cfg = w->cfg;
    int role = cfg->mesh_role;
    if (role == ST_ROLE_STABLE && st_mesh_is_mirror(&c->x.req)) {
        /* a copy reaching a stable pod: the loop guard, never a half */
        ST_INC(w->metrics.mirror_skipped[ST_SKIP_LOOP_GUARD]);
        return;
    }
    int in_share = 0;
    if (!c->x.rid_given) {
        ST_INC(w->metrics.mesh_no_request_id);
    } else if (c->x.method < 64 && !(cfg->mirror_methods & (1ULL << c->x.method))) {
        ST_INC(w->metrics.mirror_skipped[ST_SKIP_METHOD]);
    } else {
        uint32_t point = st_mesh_point(&w->mesh_hash, c->x.rid, strlen(c->x.rid));
        in_share = st_mesh_in_share(point, cfg->mirror_percent);
        if (!in_share) ST_INC(w->metrics.mesh_unsampled);
    }
    if (!in_share) {
        if (role == ST_ROLE_SHADOW) c->x.local = 1;
        return;
    }
    ST_INC(w->metrics.mesh_sampled);
    if (c->x.upgrade) return; /* passes through, never compared (as in tee mode) */
    if (w->cmpfeed.nthreads == 0) return;
    if (!st_cmpfeed_admit(&w->cmpfeed)) { /* no copy made for a half that would be dropped */
        half_refused(w);
        return;
    }
    st_cmpjob_t *j = st_cmpjob_new(ST_CMPJOB_HALF);
    if (j)
        j->path = strndup(c->x.req.url ? c->x.req.url : "/", c->x.req.url ? c->x.req.url_len : 1);
    if (!j || !j->path) {
        st_cmpjob_free(j);
        ST_INC(w->metrics.mesh_dropped[ST_MDROP_QUEUE_BYTES]);
        return;
    }
    j->role = role;
    snprintf(j->request_id, sizeof(j->request_id), "%s", c->x.rid);
    snprintf(j->method, sizeof(j->method), "%s", llhttp_method_name((llhttp_method_t)c->x.method));
    c->x.half = j;
    c->x.cap = &j->primary; /* filled like the tee's primary capture */
}

/* The exchange ended: the half (error NULL: the answer captured; else why
 * there was none) goes to a comparator thread, woken after this turn. */
void st_exch_mesh_finish(st_conn_t *c, const char *error, double seconds)
{
    st_worker_t *w = c->w;
    st_cmpjob_t *j = c->x.half;
    c->x.half = NULL;
    c->x.cap = NULL;
    j->primary.error = error;
    j->primary.seconds = seconds;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    j->wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    j->bytes = st_cmpjob_size(j);
    if (st_cmpfeed_submit(&w->cmpfeed, j) == 0) {
        st_tee_kick_later(w);
        return;
    }
    half_refused(w);
}

/* Shadow role, a request outside the share: no upstream; its body is read
 * and dropped (BODY without an upstream), then local_answer. */
void st_exch_start_local(st_conn_t *c)
{
    st_exch_set_state(&c->x, ST_EXCH_BODY);
    st_conn_arm(c, c->w->cfg->idle_timeout_ms);
    st_exch_body_begins(c);
}

/* The request is complete: 204 with x-shadowtee-mesh: unsampled. */
void st_exch_local_answer(st_conn_t *c)
{
    c->x.status = 204;
    st_exch_set_resp(&c->x, ST_RESP_DONE);
    if (!c->x.keep_alive || c->w->draining || c->x.upgrade) c->close_after = 1;
    c->x.resp_close = c->close_after;
    c->x.rhead.len = 0;
    int rc = ST_SBUF_LIT(&c->x.rhead, "HTTP/1.1 204 No Content\r\nx-shadowtee-mesh: unsampled\r\n");
    rc |= ST_SBUF_LIT(&c->x.rhead, "x-request-id: ");
    rc |= st_sbuf_appends(&c->x.rhead, c->x.rid);
    if (c->close_after)
        rc |= ST_SBUF_LIT(&c->x.rhead, "\r\nConnection: close\r\n\r\n");
    else if (c->x.minor == 0)
        rc |= ST_SBUF_LIT(&c->x.rhead, "\r\nConnection: keep-alive\r\n\r\n");
    else
        rc |= ST_SBUF_LIT(&c->x.rhead, "\r\n\r\n");
    if (rc || st_conn_add(c, DIR_CL, c->x.rhead.p, c->x.rhead.len) != 0 ||
        st_conn_flush(c, DIR_CL) != 0) {
        st_conn_close(c, ST_CLOSE_CLIENT_WRITE_ERROR);
        return;
    }
    st_exch_finish(c);
}
