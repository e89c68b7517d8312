/* cmpjob: comparison jobs and their comparison (see cmpjob.h). */
#include "cmpjob.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "shadowtee/schema.h"

st_cmpjob_t *st_cmpjob_new(st_cmpjob_kind_t kind)
{
    st_cmpjob_t *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    j->kind = kind;
    st_capture_init(&j->primary);
    st_capture_init(&j->shadow);
    st_capture_init(&j->noise);
    st_sbuf_init(&j->wire);
    return j;
}

void st_cmpjob_free(st_cmpjob_t *j)
{
    if (!j) return;
    st_capture_free(&j->primary);
    st_capture_free(&j->shadow);
    st_capture_free(&j->noise);
    st_sbuf_free(&j->wire);
    free(j->path);
    free(j);
}

static size_t capture_size(const st_capture_t *c)
{
    return c->names.cap + c->body.cap;
}

size_t st_cmpjob_size(const st_cmpjob_t *j)
{
    return sizeof(*j) + (j->path ? strlen(j->path) + 1 : 0) + capture_size(&j->primary) +
           capture_size(&j->shadow) + capture_size(&j->noise) + j->wire.cap;
}

/* The capture's "name\0value\0..." bytes as an st_header_t array (spans
 * into the capture); NULL on allocation failure. */
static st_header_t *capture_headers(const st_capture_t *c)
{
    st_header_t *h = calloc(c->nheaders ? c->nheaders : 1, sizeof(*h));
    if (!h) return NULL;
    const char *p = c->names.p;
    for (size_t i = 0; i < c->nheaders; i++) {
        h[i].name = p;
        h[i].name_len = strlen(p);
        p += h[i].name_len + 1;
        h[i].value = p;
        h[i].value_len = strlen(p);
        p += h[i].value_len + 1;
    }
    return h;
}

static void to_response(const st_capture_t *c, const st_header_t *h, st_response_t *r)
{
    r->status = c->status;
    r->headers = h;
    r->nheaders = c->nheaders;
    r->body = c->body.p ? c->body.p : "";
    r->body_len = c->body.len;
    r->body_truncated = c->truncated;
    r->error = c->error;
}

int st_cmpjob_compare(const st_cmpjob_t *j, st_cmpjob_sink_t *sink)
{
    int rc = -1;
    st_response_t rp, rs, rn;
    st_header_t *hp = capture_headers(&j->primary), *hs = capture_headers(&j->shadow);
    st_header_t *hn = j->has_noise ? capture_headers(&j->noise) : NULL;
    st_diff_result_t res;
    st_cmp_bodies_t *bodies = NULL;
    memset(&res, 0, sizeof(res));
    if (!hp || !hs || (j->has_noise && !hn)) goto out;
    to_response(&j->primary, hp, &rp);
    to_response(&j->shadow, hs, &rs);
    if (j->has_noise) to_response(&j->noise, hn, &rn);
    char key[512];
    const char *path = j->path ? j->path : "/";
    st_endpoint_key(sink->rules, j->method, strlen(j->method), path, strlen(path), key,
                    sizeof(key));
    const char *ep = st_endpoint_set_intern(sink->endpoints, key);
    /* rules by the real key, statistics by the interned one (maybe {other});
     * the rules are asked once per pair: the comparison and the sample's
     * redaction both read this policy */
    st_policy_t pol;
    st_policy_resolve(sink->rules, key, &pol);
    /* a divergent pair's parsed bodies come back for its sample (ours, freed
     * below after the record, which only borrows them) */
    if (st_compare_policy_keep(&pol, &rp, &rs, j->has_noise ? &rn : NULL, &res, &bodies) != 0)
        goto out;
    st_agg_record_t rec = {
        .endpoint = ep,
        .method = j->method,
        .path = path,
        .request_id = j->request_id,
        .verdict = res.verdict,
        .diff = res.verdict == ST_VERDICT_ERROR ? NULL : &res,
        .shadow_error = j->shadow.error,
        .primary_seconds = j->primary.seconds,
        .shadow_seconds = j->shadow.error ? -1 : j->shadow.seconds,
        .primary = &rp,
        .shadow = &rs,
        .now_ms = j->wall_ms,
        .source = j->kind == ST_CMPJOB_HALF ? ST_SOURCE_MESH : ST_SOURCE_TEE,
        .policy = &pol,
        .bodies = bodies,
    };
    st_sink_record(sink->stats, &rec);
    st_debug("msg=compared request_id=%s endpoint=\"%s\" verdict=%s differences=%zu", j->request_id,
             ep, st_verdict_name(res.verdict), res.total);
    rc = 0;
out:
    st_cmp_bodies_free(bodies);
    st_diff_result_free(&res);
    free(hp);
    free(hs);
    free(hn);
    return rc;
}
