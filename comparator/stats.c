/*
 * stats.c: one comparator thread's aggregation of comparison results (no I/O).
 *
 * st_sink_record() adds one comparison to atomics (for Prometheus) and to a
 * table of pending Redis deltas keyed by (key, field); the Redis sink
 * (redis_sink.c) turns that table into one pipelined batch per flush with
 * st_agg_build_batch(). Every key and field written here is spelled in
 * include/shadowtee/schema.h and described in docs/ARCHITECTURE.md ("Redis
 * key schema").
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "shadowtee/schema.h"
#include "stats_internal.h"

#define EP_NAME_MAX      256 /* longer endpoint keys are cut */
#define SAMPLE_MAX_DIFFS 50  /* differing entries kept in one sample */
#define SAMPLE_MAX_HDRS  64  /* headers kept per side in one sample */
#define SAMPLE_HDR_MAX   256 /* bytes of one header value kept */

/* 1 ms .. 60 s, 9 bounds per decade (shadowtee/schema.h). */
#define BOUND_VALUE(b) b,
#define BOUND_FIELD(b) #b,
const double st_agg_hist_bounds_ms[ST_HIST_NBOUNDS] = {ST_HIST_BOUNDS_MS(BOUND_VALUE)};
const char *const st_agg_hist_fields[ST_HIST_NBOUNDS + 1] = {ST_HIST_BOUNDS_MS(BOUND_FIELD)
                                                                 ST_HIST_INF};
#define BOUND_ONE(b) +1
_Static_assert(0 ST_HIST_BOUNDS_MS(BOUND_ONE) == ST_HIST_NBOUNDS,
               "ST_HIST_NBOUNDS is the bound count");
#undef BOUND_VALUE
#undef BOUND_FIELD
#undef BOUND_ONE

void st_agg_config_init(st_agg_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->service = "default";
    cfg->deltas = 0;
    cfg->max_backlog = 100000;
    cfg->samples_per_endpoint = 20;
    cfg->sample_body_max = 4096;
    cfg->bucket_ttl_s = 7 * 24 * 3600;
    cfg->max_endpoints = 200;
    cfg->rules = NULL;
}

/* What mono_ns() reads on Linux: the monotonic clock, in ns. */
static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

size_t st_agg_hist_bucket(double ms)
{
    size_t lo = 0, hi = ST_HIST_NBOUNDS; /* first bound >= ms */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (st_agg_hist_bounds_ms[mid] < ms)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* A fast 64-bit hash of n bytes, 8 at a time, chained through h. */
static uint64_t hash_bytes(uint64_t h, const char *p, size_t n)
{
    const uint64_t k = 0x9E3779B97F4A7C15ULL;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * k;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t v = n;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | (unsigned char)p[i];
    h = (h ^ v) * k;
    return h ^ (h >> 32);
}

/* ---- batch ------------------------------------------------------------- */

void st_batch_init(st_batch_t *b)
{
    memset(b, 0, sizeof(*b));
}

void st_batch_free(st_batch_t *b)
{
    for (size_t i = 0; i < b->ncmds; i++) {
        for (int j = 0; j < b->cmds[i].argc; j++)
            free(b->cmds[i].argv[j]);
        free(b->cmds[i].argv);
        free(b->cmds[i].argvlen);
    }
    free(b->cmds);
    st_batch_init(b);
}

int st_batch_add(st_batch_t *b, size_t ndeltas, int argc, const char *const *argv)
{
    if (b->ncmds == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 32;
        st_cmd_t *n = realloc(b->cmds, ncap * sizeof(*n));
        if (!n) return -1;
        b->cmds = n;
        b->cap = ncap;
    }
    st_cmd_t *c = &b->cmds[b->ncmds];
    c->argc = 0;
    c->ndeltas = ndeltas;
    c->ncompared = 0;
    c->argv = calloc((size_t)argc, sizeof(char *));
    c->argvlen = calloc((size_t)argc, sizeof(size_t));
    if (!c->argv || !c->argvlen) goto fail;
    for (int i = 0; i < argc; i++) {
        c->argvlen[i] = strlen(argv[i]);
        c->argv[i] = strdup(argv[i]);
        if (!c->argv[i]) goto fail;
        c->argc++;
    }
    b->ncmds++;
    b->ndeltas += ndeltas;
    return 0;
fail:
    for (int i = 0; i < c->argc; i++)
        free(c->argv[i]);
    free(c->argv);
    free(c->argvlen);
    return -1;
}

/* ---- pending deltas ---------------------------------------------------- */

size_t st_agg_pending(const st_agg_t *s)
{
    return s->norder + s->npending_samples;
}

/* Doubles the delta hash table (best effort: stays as is on ENOMEM). */
static void buckets_grow(st_agg_t *s)
{
    size_t n = s->nbuckets * 2;
    st_delta_t **b = calloc(n, sizeof(*b));
    if (!b) return;
    for (size_t i = 0; i < s->norder; i++) {
        st_delta_t *d = s->order[i];
        size_t bi = (size_t)(d->hash & (n - 1));
        d->next = b[bi];
        b[bi] = d;
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

/* Adds `ival` (or `fval` when is_float) to key/field. A new entry beyond
 * max_backlog is dropped and counted; merging into an existing one never is. */
static int delta_add(st_agg_t *s, const char *key, size_t keylen, const char *field,
                     size_t fieldlen, int64_t ival, double fval, int is_float)
{
    uint64_t h = hash_bytes(hash_bytes(keylen, key, keylen), field, fieldlen);
    size_t bi = (size_t)(h & (s->nbuckets - 1));
    for (st_delta_t *d = s->buckets[bi]; d; d = d->next) {
        if (d->hash == h && d->keylen == keylen && d->fieldlen == fieldlen &&
            memcmp(d->data, key, keylen) == 0 &&
            memcmp(d->data + keylen + 1, field, fieldlen) == 0) {
            d->ival += ival;
            d->fval += fval;
            return 0;
        }
    }
    if (st_agg_pending(s) >= s->cfg.max_backlog) goto drop;
    if (s->norder == s->ordercap) {
        size_t ncap = s->ordercap ? s->ordercap * 2 : 256;
        st_delta_t **n = realloc(s->order, ncap * sizeof(*n));
        if (!n) goto drop;
        s->order = n;
        s->ordercap = ncap;
    }
    if (s->norder >= s->nbuckets) /* keep chains short: load factor <= 1 */
        buckets_grow(s);
    bi = (size_t)(h & (s->nbuckets - 1));
    st_delta_t *d = malloc(sizeof(*d) + keylen + fieldlen + 2);
    if (!d) goto drop;
    d->hash = h;
    d->ival = ival;
    d->fval = fval;
    d->is_float = is_float;
    d->keylen = keylen;
    d->fieldlen = fieldlen;
    memcpy(d->data, key, keylen);
    d->data[keylen] = '\0';
    memcpy(d->data + keylen + 1, field, fieldlen);
    d->data[keylen + 1 + fieldlen] = '\0';
    d->next = s->buckets[bi];
    s->buckets[bi] = d;
    s->order[s->norder++] = d;
    return 0;
drop:
    atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
    return -1;
}

/* key = ep->key + suffix (built in s->kbuf); field as given. */
static int ep_delta(st_agg_t *s, st_agg_ep_t *ep, const char *suffix, const char *field,
                    int64_t ival, double fval, int is_float)
{
    size_t sl = strlen(suffix);
    if (ep->keylen + sl > s->kbufcap) return -1;
    memcpy(s->kbuf, ep->key, ep->keylen);
    memcpy(s->kbuf + ep->keylen, suffix, sl);
    return delta_add(s, s->kbuf, ep->keylen + sl, field, strlen(field), ival, fval, is_float);
}

/* 0, or -1 when the increment was dropped (backlog full). */
static int ep_incr(st_agg_t *s, st_agg_ep_t *ep, const char *suffix, const char *field, int64_t by)
{
    return ep_delta(s, ep, suffix, field, by, 0, 0);
}

/* ---- endpoints --------------------------------------------------------- */

static void ep_free(const st_agg_t *s, st_agg_ep_t *ep)
{
    if (!ep) return;
    size_t cap = s->cfg.samples_per_endpoint;
    for (size_t i = 0; i < ep->nsamples; i++)
        free(ep->samples[(ep->sample_head + i) % cap]);
    free(ep->samples);
    free(ep->name);
    free(ep->key);
    free(ep);
}

static st_agg_ep_t *ep_new(st_agg_t *s, const char *name, size_t len, uint64_t h)
{
    st_agg_ep_t *ep = calloc(1, sizeof(*ep));
    if (!ep) return NULL;
    ep->hash = h;
    ep->name = strndup(name, len);
    ep->keylen = s->prefixlen + ST_SCHEMA_LEN(ST_KEY_EP) + len + ST_SCHEMA_LEN(ST_KEY_EP_SEP);
    ep->key = malloc(ep->keylen + 1);
    if (s->cfg.samples_per_endpoint)
        ep->samples = calloc(s->cfg.samples_per_endpoint, sizeof(char *));
    if (!ep->name || !ep->key || (s->cfg.samples_per_endpoint && !ep->samples)) goto fail;
    snprintf(ep->key, ep->keylen + 1, "%s" ST_KEY_EP "%.*s" ST_KEY_EP_SEP, s->prefix, (int)len,
             name);
    if (s->neps == s->epcap) {
        size_t ncap = s->epcap ? s->epcap * 2 : 16;
        pthread_mutex_lock(&s->lock);
        st_agg_ep_t **n = realloc(s->eps, ncap * sizeof(*n));
        if (n) {
            s->eps = n;
            s->epcap = ncap;
        }
        pthread_mutex_unlock(&s->lock);
        if (!n) goto fail;
    }
    pthread_mutex_lock(&s->lock);
    ep->born_ns = mono_ns();
    s->eps[s->neps++] = ep;
    pthread_mutex_unlock(&s->lock);
    size_t bi = (size_t)(h & (s->nephash - 1));
    ep->hnext = s->ephash[bi];
    s->ephash[bi] = ep;
    return ep;
fail:
    ep_free(s, ep);
    return NULL;
}

/* The endpoint for `name`, created on first use; "{other}" once max_endpoints
 * distinct names exist. NULL only on allocation failure. */
static st_agg_ep_t *ep_get(st_agg_t *s, const char *name)
{
    if (!name || !*name) name = ST_ENDPOINT_OTHER;
    size_t len = strnlen(name, EP_NAME_MAX);
    uint64_t h = hash_bytes(0, name, len);
    for (st_agg_ep_t *ep = s->ephash[h & (s->nephash - 1)]; ep; ep = ep->hnext)
        if (ep->hash == h && strlen(ep->name) == len && memcmp(ep->name, name, len) == 0) return ep;
    size_t named = s->neps - (s->other ? 1 : 0);
    if (named >= s->cfg.max_endpoints || strcmp(name, ST_ENDPOINT_OTHER) == 0) {
        if (!s->other) {
            uint64_t oh = hash_bytes(0, ST_ENDPOINT_OTHER, strlen(ST_ENDPOINT_OTHER));
            s->other = ep_new(s, ST_ENDPOINT_OTHER, strlen(ST_ENDPOINT_OTHER), oh);
        }
        return s->other;
    }
    return ep_new(s, name, len, h);
}

/* ---- samples ----------------------------------------------------------- */

/* A JSON string from arbitrary bytes: invalid UTF-8 becomes U+FFFD. */
static json_t *json_bytes(const char *p, size_t n)
{
    json_t *j = json_stringn(p, n);
    if (j) return j;
    char *buf = malloc(n * 3 + 1);
    if (!buf) return NULL;
    size_t o = 0;
    const unsigned char *u = (const unsigned char *)p;
    for (size_t i = 0; i < n;) {
        size_t len = u[i] < 0x80         ? 1
                     : (u[i] >> 5) == 6  ? 2
                     : (u[i] >> 4) == 14 ? 3
                     : (u[i] >> 3) == 30 ? 4
                                         : 0;
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (u[i + k] & 0xC0) == 0x80;
        if (ok && len > 1 && json_stringn(p + i, len) == NULL) ok = 0;
        if (ok) {
            memcpy(buf + o, p + i, len);
            o += len;
            i += len;
        } else {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    j = json_stringn(buf, o);
    free(buf);
    return j;
}

static json_t *sample_side(const st_agg_t *s, const st_policy_t *pol, const st_cmp_bodies_t *bodies,
                           const st_response_t *r, double seconds)
{
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, ST_S_LATENCY_MS,
                        seconds >= 0 ? json_real(seconds * 1000.0) : json_null());
    if (!r) {
        json_object_set_new(o, ST_S_STATUS, json_null());
        return o;
    }
    json_object_set_new(o, ST_S_STATUS, json_integer(r->status));
    json_object_set_new(o, ST_S_ERROR, r->error ? json_string(r->error) : json_null());
    json_t *hdrs = json_array();
    for (size_t i = 0; hdrs && i < r->nheaders && i < SAMPLE_MAX_HDRS; i++) {
        const st_header_t *h = &r->headers[i];
        json_t *pair = json_array();
        json_array_append_new(pair, json_bytes(h->name, h->name_len));
        if (st_policy_redact_header(pol, h->name, h->name_len))
            json_array_append_new(pair, json_string(ST_S_REDACTED));
        else
            json_array_append_new(pair, json_bytes(h->value, h->value_len < SAMPLE_HDR_MAX
                                                                 ? h->value_len
                                                                 : SAMPLE_HDR_MAX));
        json_array_append_new(hdrs, pair);
    }
    json_object_set_new(o, ST_S_HEADERS, hdrs);
    size_t blen = 0;
    char *body = r->body ? st_policy_redact_body_parsed(pol, bodies, r->body, r->body_len,
                                                        s->cfg.sample_body_max, &blen)
                         : NULL;
    json_object_set_new(o, ST_S_BODY, body ? json_bytes(body, blen) : json_string(""));
    free(body);
    json_object_set_new(o, ST_S_BODY_TRUNCATED,
                        json_boolean(r->body_truncated || r->body_len > s->cfg.sample_body_max));
    return o;
}

/* The sample JSON of one divergent comparison (malloc'ed), or NULL. */
static char *sample_json(const st_agg_t *s, const st_agg_record_t *rec)
{
    st_policy_t own;
    const st_policy_t *pol = rec->policy;
    if (!pol) { /* redaction reads only the rules' unions: any endpoint key will do */
        st_policy_resolve(s->cfg.rules ? s->cfg.rules : s->own_rules, rec->endpoint, &own);
        pol = &own;
    }
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, ST_S_TIME_MS, json_integer(rec->now_ms));
    json_object_set_new(o, ST_S_REQUEST_ID, json_string(rec->request_id ? rec->request_id : ""));
    json_object_set_new(o, ST_S_METHOD, json_string(rec->method ? rec->method : ""));
    const char *path = rec->path ? rec->path : "";
    json_object_set_new(o, ST_S_PATH, json_bytes(path, strnlen(path, 2048)));
    json_object_set_new(o, ST_S_ENDPOINT, json_string(rec->endpoint ? rec->endpoint : ""));
    json_object_set_new(o, ST_S_VERDICT, json_string(st_verdict_name(rec->verdict)));
    json_object_set_new(o, ST_S_SOURCE, json_string(rec->source ? rec->source : ST_SOURCE_TEE));
    json_object_set_new(o, ST_S_PRIMARY,
                        sample_side(s, pol, rec->bodies, rec->primary, rec->primary_seconds));
    json_object_set_new(o, ST_S_SHADOW,
                        sample_side(s, pol, rec->bodies, rec->shadow, rec->shadow_seconds));
    json_t *diffs = json_array();
    size_t n = rec->diff ? rec->diff->nentries : 0;
    for (size_t i = 0; diffs && i < n && i < SAMPLE_MAX_DIFFS; i++) {
        const st_diff_entry_t *e = &rec->diff->entries[i];
        json_t *d = json_object();
        const char *p = e->path ? e->path : "";
        json_object_set_new(d, ST_S_DIFF_PATH, json_bytes(p, strlen(p)));
        json_object_set_new(d, ST_S_DIFF_KIND, json_string(st_diff_kind_name(e->kind)));
        json_object_set_new(d, ST_S_DIFF_A, e->a ? json_bytes(e->a, strlen(e->a)) : json_null());
        json_object_set_new(d, ST_S_DIFF_B, e->b ? json_bytes(e->b, strlen(e->b)) : json_null());
        json_object_set_new(d, ST_S_DIFF_DELTA, json_real(isfinite(e->delta) ? e->delta : 0));
        json_object_set_new(d, ST_S_DIFF_NOISE, json_boolean(e->noise));
        json_array_append_new(diffs, d);
    }
    json_object_set_new(o, ST_S_DIFFS, diffs);
    json_object_set_new(o, ST_S_TOTAL_DIFFS,
                        json_integer(rec->diff ? (json_int_t)rec->diff->total : 0));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

/* Keeps at most samples_per_endpoint samples per endpoint per wall second and
 * the newest samples_per_endpoint pending (older pending ones are dropped). */
static void sample_take(st_agg_t *s, st_agg_ep_t *ep, const st_agg_record_t *rec)
{
    size_t cap = s->cfg.samples_per_endpoint;
    if (cap == 0) return;
    int64_t sec = rec->now_ms / 1000;
    if (sec != ep->sample_second) {
        ep->sample_second = sec;
        ep->samples_in_second = 0;
    }
    if (ep->samples_in_second >= cap) return;
    if (ep->nsamples < cap && st_agg_pending(s) >= s->cfg.max_backlog) {
        atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
        return;
    }
    char *js = sample_json(s, rec);
    if (!js) return;
    ep->samples_in_second++;
    if (ep->nsamples == cap) { /* replace the oldest pending sample */
        free(ep->samples[ep->sample_head]);
        ep->samples[ep->sample_head] = js;
        ep->sample_head = (ep->sample_head + 1) % cap;
        atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
        return;
    }
    ep->samples[(ep->sample_head + ep->nsamples) % cap] = js;
    ep->nsamples++;
    s->npending_samples++;
}

/* ---- record ------------------------------------------------------------ */

static void minute_touch(st_agg_t *s, int64_t minute)
{
    for (size_t i = s->nminutes; i > 0; i--)
        if (s->minutes[i - 1] == minute) return;
    if (s->nminutes == s->minutecap) {
        size_t ncap = s->minutecap ? s->minutecap * 2 : 8;
        int64_t *n = realloc(s->minutes, ncap * sizeof(*n));
        if (!n) return;
        s->minutes = n;
        s->minutecap = ncap;
    }
    s->minutes[s->nminutes++] = minute;
}

/* Adds to field "<counter>|<endpoint>" of minute:M. */
static void minute_delta(st_agg_t *s, st_agg_ep_t *ep, int64_t minute, const char *counter,
                         int64_t ival, double fval, int is_float)
{
    if (minute != s->mkey_minute || !s->mkeylen) {
        s->mkeylen = (size_t)snprintf(s->mkey, s->prefixlen + 32, "%s" ST_KEY_MINUTE "%" PRId64,
                                      s->prefix, minute);
        s->mkey_minute = minute;
    }
    size_t cl = strlen(counter), nl = strlen(ep->name);
    if (cl + 1 + nl > s->fbufcap) return;
    memcpy(s->fbuf, counter, cl);
    s->fbuf[cl] = ST_F_SEP[0];
    memcpy(s->fbuf + cl + 1, ep->name, nl);
    delta_add(s, s->mkey, s->mkeylen, s->fbuf, cl + 1 + nl, ival, fval, is_float);
}

static void minute_incr(st_agg_t *s, st_agg_ep_t *ep, int64_t minute, const char *counter)
{
    minute_delta(s, ep, minute, counter, 1, 0, 0);
}

/* One latency into the endpoint's all-time histogram `side` ("lat:primary",
 * "lat:shadow") and into the minute's (fields "<side>:<bound>|E" and
 * "<side>:sum_ms|E", schema 2), so that --since windows latency too. */
static void latency_add(st_agg_t *s, st_agg_ep_t *ep, int64_t minute, const char *side,
                        double seconds)
{
    if (!(seconds >= 0) || !isfinite(seconds)) return;
    double ms = seconds * 1000.0;
    size_t b = st_agg_hist_bucket(ms);
    ep_incr(s, ep, side, st_agg_hist_fields[b], 1);
    ep_incr(s, ep, side, ST_HIST_COUNT, 1);
    ep_delta(s, ep, side, ST_HIST_SUM_MS, 0, ms, 1);
    char counter[32];
    snprintf(counter, sizeof(counter), "%s" ST_HIST_SEP "%s", side, st_agg_hist_fields[b]);
    minute_incr(s, ep, minute, counter);
    snprintf(counter, sizeof(counter), "%s" ST_HIST_SEP ST_HIST_SUM_MS, side);
    minute_delta(s, ep, minute, counter, 0, ms, 1);
}

static void diff_paths_add(st_agg_t *s, st_agg_ep_t *ep, const st_diff_result_t *diff)
{
    char field[ST_STATS_MAX_FIELD + 1];
    for (size_t i = 0; diff && i < diff->nentries; i++) {
        const st_diff_entry_t *e = &diff->entries[i];
        const char *kind = st_diff_kind_name(e->kind);
        snprintf(field, sizeof(field), "%s" ST_F_SEP "%s", kind, e->path ? e->path : "");
        ep_incr(s, ep, e->noise ? ST_KEY_EP_NOISE_PATHS : ST_KEY_EP_PATHS, field, 1);
        snprintf(field, sizeof(field), "%s%s", e->noise ? ST_F_NOISE_KIND_PREFIX : ST_F_KIND_PREFIX,
                 kind);
        ep_incr(s, ep, ST_KEY_EP_COUNTS, field, 1);
    }
}

void st_agg_record(st_agg_t *s, const st_agg_record_t *rec)
{
    st_agg_ep_t *ep = ep_get(s, rec->endpoint);
    if (!ep) {
        atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
        if (s->cfg.deltas) st_agg_lose(s, ST_CMP_LOSS_BACKLOG, 1);
        return;
    }
    int64_t minute = rec->now_ms / 60000;
    const char *counter;
    atomic_fetch_add_explicit(&ep->compared, 1, memory_order_relaxed);
    switch (rec->verdict) {
    case ST_VERDICT_MATCH:
        atomic_fetch_add_explicit(&ep->matched, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->n_match, 1, memory_order_relaxed);
        counter = ST_F_MATCHED;
        break;
    case ST_VERDICT_DIVERGED:
        atomic_fetch_add_explicit(&ep->diverged, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->n_diverged, 1, memory_order_relaxed);
        counter = ST_F_DIVERGED;
        break;
    case ST_VERDICT_NOISE:
        atomic_fetch_add_explicit(&ep->noise, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->n_noise, 1, memory_order_relaxed);
        counter = ST_F_NOISE;
        break;
    default:
        atomic_fetch_add_explicit(&ep->errors, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->n_error, 1, memory_order_relaxed);
        counter = ST_F_ERRORS;
        break;
    }
    if (rec->verdict == ST_VERDICT_ERROR && rec->shadow_error &&
        strcmp(rec->shadow_error, ST_REASON_TIMEOUT) == 0)
        atomic_fetch_add_explicit(&ep->timeouts, 1, memory_order_relaxed);
    if (rec->diff && rec->diff->noise_compared)
        atomic_fetch_add_explicit(rec->diff->noise_total ? &s->n_noise_diverged : &s->n_noise_match,
                                  1, memory_order_relaxed);
    if (!s->cfg.deltas) return; /* metrics only: nothing to flush */
    ep->touched = 1;
    if (ep_incr(s, ep, ST_KEY_EP_COUNTS, ST_F_COMPARED, 1) != 0)
        st_agg_lose(s, ST_CMP_LOSS_BACKLOG, 1);
    ep_incr(s, ep, ST_KEY_EP_COUNTS, counter, 1);
    ep_incr(s, ep, ST_KEY_EP_COUNTS,
            rec->source && strcmp(rec->source, ST_SOURCE_MESH) == 0 ? ST_F_SOURCE_MESH
                                                                    : ST_F_SOURCE_TEE,
            1);
    minute_touch(s, minute);
    minute_incr(s, ep, minute, ST_F_COMPARED);
    if (rec->verdict != ST_VERDICT_MATCH) minute_incr(s, ep, minute, counter);
    if (rec->verdict == ST_VERDICT_ERROR) {
        const char *why = rec->shadow_error ? rec->shadow_error : "unknown";
        char field[96];
        snprintf(field, sizeof(field), ST_F_ERROR_PREFIX "%.80s", why);
        ep_incr(s, ep, ST_KEY_EP_COUNTS, field, 1);
        if (strcmp(why, ST_REASON_TIMEOUT) == 0) {
            ep_incr(s, ep, ST_KEY_EP_COUNTS, ST_F_TIMEOUTS, 1);
            minute_incr(s, ep, minute, ST_F_TIMEOUTS);
        }
    }
    latency_add(s, ep, minute, ST_KEY_EP_LAT_PRIMARY, rec->primary_seconds);
    if (rec->verdict != ST_VERDICT_ERROR)
        latency_add(s, ep, minute, ST_KEY_EP_LAT_SHADOW, rec->shadow_seconds);
    diff_paths_add(s, ep, rec->diff);
    if (rec->verdict == ST_VERDICT_DIVERGED) sample_take(s, ep, rec);
    if (s->batch_first_ms == 0 || rec->now_ms < s->batch_first_ms) s->batch_first_ms = rec->now_ms;
    if (rec->now_ms > s->batch_last_ms) s->batch_last_ms = rec->now_ms;
}

/* ---- batch building ---------------------------------------------------- */

/* The delta counting comparisons: field "compared" of "<prefix>ep:<name>:counts". */
static int is_compared(const st_delta_t *d)
{
    static const char sfx[] = ST_KEY_EP_SEP ST_KEY_EP_COUNTS;
    return !d->is_float && d->fieldlen == ST_SCHEMA_LEN(ST_F_COMPARED) &&
           memcmp(d->data + d->keylen + 1, ST_F_COMPARED, ST_SCHEMA_LEN(ST_F_COMPARED)) == 0 &&
           d->keylen > ST_SCHEMA_LEN(sfx) &&
           memcmp(d->data + d->keylen - ST_SCHEMA_LEN(sfx), sfx, ST_SCHEMA_LEN(sfx)) == 0;
}

const char *const st_cmp_loss_names[4] = {"backlog_full", "connection_lost", "error_reply",
                                          "shutdown"};

void st_agg_lose(st_agg_t *s, enum st_cmp_loss why, uint64_t n)
{
    if (n) atomic_fetch_add_explicit(&s->cmp_lost[why], n, memory_order_relaxed);
}

static int add_cmd(st_batch_t *b, size_t ndeltas, int argc, const char *const *argv, int *err)
{
    if (st_batch_add(b, ndeltas, argc, argv) != 0) *err = -1;
    return *err;
}

static void deltas_clear(st_agg_t *s)
{
    for (size_t i = 0; i < s->norder; i++)
        free(s->order[i]);
    s->norder = 0;
    if (s->buckets) memset(s->buckets, 0, s->nbuckets * sizeof(*s->buckets));
}

void st_agg_pending_clear(st_agg_t *s)
{
    deltas_clear(s);
    for (size_t i = 0; i < s->neps; i++) {
        st_agg_ep_t *ep = s->eps[i];
        size_t cap = s->cfg.samples_per_endpoint;
        for (size_t k = 0; k < ep->nsamples; k++)
            free(ep->samples[(ep->sample_head + k) % cap]);
        ep->nsamples = ep->sample_head = 0;
        ep->touched = 0;
    }
    s->npending_samples = 0;
    s->nminutes = 0;
    s->batch_first_ms = s->batch_last_ms = 0;
}

int st_agg_build_batch(st_agg_t *s, st_batch_t *out, int with_meta, int64_t now_ms)
{
    int err = 0;
    char *key = s->kbuf, num[64], num2[64];
    size_t keycap = s->kbufcap;
    size_t ntouched = 0;
    for (size_t i = 0; i < s->neps; i++)
        ntouched += s->eps[i]->touched;
    if (ntouched) { /* SADD <prefix>endpoints e1 e2 ... */
        const char **argv = calloc(ntouched + 2, sizeof(char *));
        if (!argv) return -1;
        snprintf(key, keycap, "%s" ST_KEY_ENDPOINTS, s->prefix);
        argv[0] = "SADD";
        argv[1] = key;
        int argc = 2;
        for (size_t i = 0; i < s->neps; i++)
            if (s->eps[i]->touched) argv[argc++] = s->eps[i]->name;
        add_cmd(out, 0, argc, argv, &err);
        free(argv);
    }
    size_t di = 0;
    for (; di < s->norder && !err; di++) {
        st_delta_t *d = s->order[di];
        if (d->is_float)
            snprintf(num, sizeof(num), "%.6f", d->fval);
        else
            snprintf(num, sizeof(num), "%" PRId64, d->ival);
        const char *argv[] = {d->is_float ? "HINCRBYFLOAT" : "HINCRBY", d->data,
                              d->data + d->keylen + 1, num};
        if (add_cmd(out, 1, 4, argv, &err) == 0 && is_compared(d)) {
            out->cmds[out->ncmds - 1].ncompared = (uint64_t)d->ival;
            out->ncompared += (uint64_t)d->ival;
        } else if (err && is_compared(d)) {
            st_agg_lose(s, ST_CMP_LOSS_CONNECTION, (uint64_t)d->ival); /* never sent */
        }
    }
    for (; di < s->norder; di++) /* out of memory: the rest is freed below, never sent */
        if (is_compared(s->order[di]))
            st_agg_lose(s, ST_CMP_LOSS_CONNECTION, (uint64_t)s->order[di]->ival);
    snprintf(num2, sizeof(num2), "%" PRIu64, s->cfg.bucket_ttl_s);
    for (size_t i = 0; i < s->nminutes && !err; i++) {
        snprintf(key, keycap, "%s" ST_KEY_MINUTE "%" PRId64, s->prefix, s->minutes[i]);
        const char *argv[] = {"EXPIRE", key, num2};
        add_cmd(out, 0, 3, argv, &err);
    }
    size_t cap = s->cfg.samples_per_endpoint;
    for (size_t i = 0; i < s->neps && !err; i++) {
        st_agg_ep_t *ep = s->eps[i];
        if (ep->nsamples == 0) continue;
        const char **argv = calloc(ep->nsamples + 2, sizeof(char *));
        if (!argv) return -1;
        snprintf(key, keycap, "%s" ST_KEY_EP_SAMPLES, ep->key);
        argv[0] = "LPUSH";
        argv[1] = key;
        for (size_t k = 0; k < ep->nsamples; k++) /* oldest first: newest ends at the head */
            argv[2 + k] = ep->samples[(ep->sample_head + k) % cap];
        add_cmd(out, ep->nsamples, (int)ep->nsamples + 2, argv, &err);
        free(argv);
        snprintf(num, sizeof(num), "%zu", cap - 1);
        const char *trim[] = {"LTRIM", key, "0", num};
        add_cmd(out, 0, 4, trim, &err);
    }
    snprintf(key, keycap, "%s" ST_KEY_META, s->prefix);
    if (s->batch_first_ms && !err) {
        snprintf(num, sizeof(num), "%" PRId64, s->batch_first_ms);
        const char *nx[] = {"HSETNX", key, ST_META_FIRST_SEEN_MS, num};
        add_cmd(out, 0, 4, nx, &err);
        snprintf(num, sizeof(num), "%" PRId64, s->batch_last_ms);
        const char *hs[] = {"HSET", key, ST_META_LAST_SEEN_MS, num};
        add_cmd(out, 0, 4, hs, &err);
    }
    if (with_meta && !err) {
        char bounds[ST_HIST_NBOUNDS * 8 + 8];
        size_t o = 0;
        for (size_t i = 0; i < ST_HIST_NBOUNDS; i++)
            o += (size_t)snprintf(bounds + o, sizeof(bounds) - o, "%s%g", i ? "," : "",
                                  st_agg_hist_bounds_ms[i]);
        char spe[32], started[32];
        snprintf(spe, sizeof(spe), "%zu", cap);
        snprintf(started, sizeof(started), "%" PRId64, now_ms);
        const char *argv[] = {"HSET",
                              key,
                              ST_META_SCHEMA,
                              ST_SCHEMA_VERSION_STR,
                              ST_META_SERVICE,
                              s->cfg.service,
                              ST_META_HIST_BOUNDS_MS,
                              bounds,
                              ST_META_BUCKET_TTL_S,
                              num2,
                              ST_META_SAMPLES_PER_ENDPOINT,
                              spe,
                              ST_META_WRITER_STARTED_MS,
                              started};
        add_cmd(out, 0, 14, argv, &err);
    }
    st_agg_pending_clear(s);
    return err;
}

/* ---- Prometheus -------------------------------------------------------- */

/* One endpoint row of the Prometheus text: one endpoint summed over the
 * workers that know it. */
typedef struct {
    const char *name;
    uint64_t born_ns; /* the earliest creation among those workers */
    uint64_t compared, diverged, noise, errors;
} prom_ep_t;

static int prom_ep_by_name(const void *a, const void *b)
{
    return strcmp(((const prom_ep_t *)a)->name, ((const prom_ep_t *)b)->name);
}

static int prom_ep_by_birth(const void *a, const void *b)
{
    const prom_ep_t *x = a, *y = b;
    if (x->born_ns != y->born_ns) return x->born_ns < y->born_ns ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void prom_ep_add(prom_ep_t *dst, const prom_ep_t *src)
{
    dst->compared += src->compared;
    dst->diverged += src->diverged;
    dst->noise += src->noise;
    dst->errors += src->errors;
}

static uint64_t ld(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* The endpoint rows, sorted by name, with "{other}" last when present;
 * *nrows of them (malloc'ed), NULL when there is none (or on ENOMEM).
 *
 * The label set must be bounded and stable, so that every series is a
 * counter that only grows: at most max_endpoints named rows, the ones
 * created first (earliest born_ns over the workers); every later name is
 * folded into "{other}" for good. Only endpoints born before `cutoff` (taken
 * before any worker is read) count, so a scrape sees exactly the endpoints
 * created before it, and a later one can never displace an earlier one. */
static prom_ep_t *prom_ep_rows(st_agg_t *const *all, size_t n, size_t maxeps, size_t *nrows)
{
    uint64_t cutoff = mono_ns();
    size_t cap = 0, neps = 0;
    *nrows = 0;
    for (size_t i = 0; i < n; i++) {
        if (!all[i]) continue;
        pthread_mutex_lock(&all[i]->lock);
        cap += all[i]->neps;
        pthread_mutex_unlock(&all[i]->lock);
    }
    prom_ep_t *eps = cap ? calloc(cap + 1, sizeof(*eps)) : NULL;
    for (size_t i = 0; eps && i < n; i++) {
        st_agg_t *s = all[i];
        if (!s) continue;
        pthread_mutex_lock(&s->lock);
        for (size_t k = 0; k < s->neps && neps < cap; k++) {
            st_agg_ep_t *ep = s->eps[k];
            if (ep->born_ns > cutoff) continue;
            eps[neps++] = (prom_ep_t){.name = ep->name,
                                      .born_ns = ep->born_ns,
                                      .compared = ld(&ep->compared),
                                      .diverged = ld(&ep->diverged),
                                      .noise = ld(&ep->noise),
                                      .errors = ld(&ep->errors)};
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (neps == 0) {
        free(eps);
        return NULL;
    }
    qsort(eps, neps, sizeof(*eps), prom_ep_by_name);
    size_t m = 0;
    prom_ep_t other = {ST_ENDPOINT_OTHER, 0, 0, 0, 0, 0};
    int has_other = 0;
    for (size_t i = 0; i < neps; i++) {
        if (strcmp(eps[i].name, ST_ENDPOINT_OTHER) == 0) {
            prom_ep_add(&other, &eps[i]);
            has_other = 1;
        } else if (m && strcmp(eps[m - 1].name, eps[i].name) == 0) {
            prom_ep_add(&eps[m - 1], &eps[i]);
            if (eps[i].born_ns < eps[m - 1].born_ns) eps[m - 1].born_ns = eps[i].born_ns;
        } else {
            eps[m++] = eps[i];
        }
    }
    if (m > maxeps) { /* the first-born max_endpoints keep their own row */
        qsort(eps, m, sizeof(*eps), prom_ep_by_birth);
        for (size_t i = maxeps; i < m; i++)
            prom_ep_add(&other, &eps[i]);
        m = maxeps;
        has_other = 1;
        qsort(eps, m, sizeof(*eps), prom_ep_by_name);
    }
    if (has_other) eps[m++] = other; /* room: at most neps rows of neps + 1 */
    *nrows = m;
    return eps;
}

/* Writes a label value escaped per the text format: \\, \" and \n. */
static void prom_label(FILE *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            fputs("\\\\", out);
        else if (*v == '"')
            fputs("\\\"", out);
        else if (*v == '\n')
            fputs("\\n", out);
        else
            fputc(*v, out);
    }
}

/* A per-endpoint counter: one line per row, the uint64_t at `offset`. */
static void prom_ep_family(FILE *out, const char *name, const char *help, const prom_ep_t *rows,
                           size_t nrows, size_t offset)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (size_t i = 0; i < nrows; i++) {
        fprintf(out, "%s{endpoint=\"", name);
        prom_label(out, rows[i].name);
        fprintf(out, "\"} %" PRIu64 "\n", *(const uint64_t *)((const char *)&rows[i] + offset));
    }
}

void st_agg_prometheus(st_agg_t *const *all, size_t n, FILE *out)
{
    uint64_t res[4] = {0}, base[2] = {0};
    size_t maxeps = 0;
    for (size_t i = 0; i < n; i++) {
        st_agg_t *s = all[i];
        if (!s) continue;
        res[0] += ld(&s->n_match);
        res[1] += ld(&s->n_diverged);
        res[2] += ld(&s->n_noise);
        res[3] += ld(&s->n_error);
        base[0] += ld(&s->n_noise_match);
        base[1] += ld(&s->n_noise_diverged);
        if (s->cfg.max_endpoints > maxeps) maxeps = s->cfg.max_endpoints;
    }
    fprintf(out, "# HELP shadowtee_comparisons_total Mirrored requests compared, by result.\n"
                 "# TYPE shadowtee_comparisons_total counter\n");
    const char *names[4] = {"match", "diverged", "noise", "error"};
    for (int i = 0; i < 4; i++)
        fprintf(out, "shadowtee_comparisons_total{result=\"%s\"} %" PRIu64 "\n", names[i], res[i]);
    fprintf(out, "# HELP shadowtee_noise_replica_comparisons_total The noise replica's answers "
                 "compared with the primary's (the A/A baseline), by result.\n"
                 "# TYPE shadowtee_noise_replica_comparisons_total counter\n");
    for (int i = 0; i < 2; i++)
        fprintf(out, "shadowtee_noise_replica_comparisons_total{result=\"%s\"} %" PRIu64 "\n",
                names[i], base[i]);

    size_t nrows = 0;
    prom_ep_t *rows = prom_ep_rows(all, n, maxeps, &nrows);
    prom_ep_family(out, "shadowtee_endpoint_comparisons_total", "Comparisons per endpoint.", rows,
                   nrows, offsetof(prom_ep_t, compared));
    prom_ep_family(out, "shadowtee_endpoint_divergences_total",
                   "Diverged comparisons per endpoint.", rows, nrows,
                   offsetof(prom_ep_t, diverged));
    prom_ep_family(out, "shadowtee_endpoint_noise_total",
                   "Noise-only comparisons per endpoint (every difference also between the "
                   "primary and the noise replica).",
                   rows, nrows, offsetof(prom_ep_t, noise));
    prom_ep_family(out, "shadowtee_endpoint_shadow_errors_total",
                   "Comparisons per endpoint without a shadow answer to diff.", rows, nrows,
                   offsetof(prom_ep_t, errors));
    free(rows);
}

/* ---- lifetime ---------------------------------------------------------- */

uint64_t st_agg_compared(const st_agg_t *s)
{
    return atomic_load(&s->n_match) + atomic_load(&s->n_diverged) + atomic_load(&s->n_noise) +
           atomic_load(&s->n_error);
}

uint64_t st_agg_lost(const st_agg_t *s)
{
    uint64_t lost = 0;
    for (int i = 0; i < 4; i++)
        lost += atomic_load(&s->cmp_lost[i]);
    return lost;
}

st_agg_t *st_agg_new(const st_agg_config_t *cfg)
{
    st_agg_t *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->cfg = *cfg;
    if (!s->cfg.service) s->cfg.service = "default";
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    s->nbuckets = 1024;
    s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    s->nephash = 64;
    while (s->nephash < s->cfg.max_endpoints * 2 && s->nephash < (1u << 16))
        s->nephash *= 2;
    s->ephash = calloc(s->nephash, sizeof(*s->ephash));
    size_t plen = strlen(s->cfg.service) + 16;
    s->prefix = malloc(plen);
    if (!s->cfg.rules) s->own_rules = st_rules_default();
    if (!s->buckets || !s->ephash || !s->prefix || (!s->cfg.rules && !s->own_rules)) goto fail;
    s->prefixlen = (size_t)snprintf(s->prefix, plen, ST_SCHEMA_PREFIX_FMT, s->cfg.service);
    s->kbufcap = s->prefixlen + EP_NAME_MAX + 64;
    s->fbufcap = ST_STATS_MAX_FIELD + EP_NAME_MAX + 64;
    s->kbuf = malloc(s->kbufcap);
    s->fbuf = malloc(s->fbufcap);
    s->mkey = malloc(s->prefixlen + 32);
    if (!s->kbuf || !s->fbuf || !s->mkey) goto fail;
    return s;
fail:
    st_agg_free(s);
    return NULL;
}

void st_agg_lose_pending(st_agg_t *s, enum st_cmp_loss why)
{
    for (size_t i = 0; i < s->norder; i++)
        if (is_compared(s->order[i])) st_agg_lose(s, why, (uint64_t)s->order[i]->ival);
}

void st_agg_free(st_agg_t *s)
{
    if (!s) return;
    st_agg_pending_clear(s);
    for (size_t i = 0; i < s->neps; i++)
        ep_free(s, s->eps[i]);
    free(s->eps);
    free(s->ephash);
    free(s->buckets);
    free(s->order);
    free(s->minutes);
    free(s->prefix);
    free(s->kbuf);
    free(s->fbuf);
    free(s->mkey);
    if (s->own_rules) st_rules_free(s->own_rules);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
