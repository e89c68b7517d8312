/*
 * load.c: reads one service's keys from Redis (synchronous hiredis, bounded
 * timeouts) into an rpt_model_t. rpt_load connects; rpt_load_from does the
 * rest on any connection, so tests/fuzz/fuzz_report.c drives it with bytes. The keys and fields are
 * include/shadowtee/schema.h (described in docs/ARCHITECTURE.md, "Redis key schema"), written by
 * comparator/stats.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "model.h"
#include "shadowtee/schema.h"

#define CONNECT_TIMEOUT_S 3
#define COMMAND_TIMEOUT_S 10
#define SCAN_MAX_ROUNDS   100000    /* SCAN iterations before giving up */
#define MAX_REPLY_ITEMS   (4 << 20) /* elements of one array reply; real data stays far below */

static int set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- helpers ----------------------------------------------------------- */

/* An error reply's text ("?" when it has none). */
static const char *reply_text(const redisReply *r)
{
    return r && r->str ? r->str : "?";
}

static uint64_t to_u64(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_STRING) return 0;
    long long v = atoll(r->str);
    return v > 0 ? (uint64_t)v : 0;
}

/* An array of strings only (what HGETALL, SMEMBERS, LRANGE and a SCAN page
 * are): a reply of another shape is not ours and is never indexed into. */
static int is_strings(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY) return 0;
    for (size_t i = 0; i < r->elements; i++)
        if (!r->element[i] || r->element[i]->type != REDIS_REPLY_STRING || !r->element[i]->str)
            return 0;
    return 1;
}

/* A reply of HGETALL: strings in pairs. */
static int is_pairs(const redisReply *r)
{
    return is_strings(r) && r->elements % 2 == 0;
}

/* A SCAN reply: [cursor, [keys...]]; the cursor in *cursor. */
static int scan_page(const redisReply *r, unsigned long long *cursor, const redisReply **keys)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !r->element[0] ||
        r->element[0]->type != REDIS_REPLY_STRING || !r->element[0]->str ||
        !is_strings(r->element[1]))
        return 0;
    char *end;
    *cursor = strtoull(r->element[0]->str, &end, 10);
    *keys = r->element[1];
    return *end == '\0';
}

static void tally_field(rpt_tally_t *t, const char *f, uint64_t v)
{
    if (!strcmp(f, ST_F_COMPARED))
        t->compared += v;
    else if (!strcmp(f, ST_F_MATCHED))
        t->matched += v;
    else if (!strcmp(f, ST_F_DIVERGED))
        t->diverged += v;
    else if (!strcmp(f, ST_F_NOISE))
        t->noise += v;
    else if (!strcmp(f, ST_F_ERRORS))
        t->errors += v;
    else if (!strcmp(f, ST_F_TIMEOUTS))
        t->timeouts += v;
}

static int load_counts(rpt_endpoint_t *ep, const redisReply *r)
{
    uint64_t compared = 0, mesh = 0;
    for (size_t i = 0; is_pairs(r) && i < r->elements; i += 2) {
        const char *f = r->element[i]->str;
        uint64_t v = to_u64(r->element[i + 1]);
        tally_field(&ep->t, f, v);
        if (!strcmp(f, ST_F_COMPARED)) compared = v;
        if (!strcmp(f, ST_F_SOURCE_MESH)) mesh = v;
        int rc = 0;
        if (!strncmp(f, ST_F_KIND_PREFIX, ST_SCHEMA_LEN(ST_F_KIND_PREFIX)))
            rc = rpt_counts_add(&ep->kinds, f + ST_SCHEMA_LEN(ST_F_KIND_PREFIX), NULL, v);
        else if (!strncmp(f, ST_F_NOISE_KIND_PREFIX, ST_SCHEMA_LEN(ST_F_NOISE_KIND_PREFIX)))
            rc = rpt_counts_add(&ep->noise_kinds, f + ST_SCHEMA_LEN(ST_F_NOISE_KIND_PREFIX), NULL,
                                v);
        else if (!strncmp(f, ST_F_ERROR_PREFIX, ST_SCHEMA_LEN(ST_F_ERROR_PREFIX)))
            rc = rpt_counts_add(&ep->reasons, f + ST_SCHEMA_LEN(ST_F_ERROR_PREFIX), NULL, v);
        if (rc) return -1;
    }
    ep->sources.mesh = mesh; /* every other pair was tee'd (also those before sources) */
    ep->sources.tee = compared > mesh ? compared - mesh : 0;
    return 0;
}

/* Mesh mirroring's keys: orphans by side, halves waiting. */
static int load_mesh(redisContext *c, const char *prefix, rpt_model_t *m)
{
    static const char *const sides[3] = {ST_MESH_SIDE_STABLE, ST_MESH_SIDE_SHADOW,
                                         ST_MESH_SIDE_BASELINE};
    redisReply *o = redisCommand(c, "HGETALL %s" ST_KEY_MESH_ORPHANS, prefix);
    redisReply *p = redisCommand(c, "ZCARD %s" ST_KEY_MESH_PENDING, prefix);
    int rc = -1;
    if (!is_pairs(o) || !p || p->type != REDIS_REPLY_INTEGER) goto out;
    for (size_t i = 0; i < o->elements; i += 2)
        for (int k = 0; k < 3; k++)
            if (!strcmp(o->element[i]->str, sides[k])) m->orphans[k] = to_u64(o->element[i + 1]);
    m->pending = p->integer > 0 ? (uint64_t)p->integer : 0;
    m->has_mesh = o->elements > 0 || m->pending > 0;
    rc = 0;
out:
    freeReplyObject(o);
    freeReplyObject(p);
    return rc;
}

/* "<kind>|<path>" fields. */
static int load_paths(rpt_counts_t *c, const redisReply *r)
{
    for (size_t i = 0; is_pairs(r) && i < r->elements; i += 2) {
        const char *f = r->element[i]->str, *bar = strchr(f, ST_F_SEP[0]);
        if (!bar) continue;
        char kind[64];
        snprintf(kind, sizeof(kind), "%.*s", (int)(bar - f), f);
        if (rpt_counts_add(c, bar + 1, kind, to_u64(r->element[i + 1])) != 0) return -1;
    }
    rpt_counts_sort(c);
    return 0;
}

static int load_hist(rpt_hist_t *h, const redisReply *r)
{
    for (size_t i = 0; is_pairs(r) && i < r->elements; i += 2) {
        const char *f = r->element[i]->str, *v = r->element[i + 1]->str;
        if (!strcmp(f, ST_HIST_COUNT))
            h->count = (uint64_t)atoll(v);
        else if (!strcmp(f, ST_HIST_SUM_MS))
            h->sum_ms = atof(v);
        else if (!strcmp(f, ST_HIST_INF))
            h->inf += (uint64_t)atoll(v);
        else {
            char *end;
            double b = strtod(f, &end);
            if (*end == '\0' && b > 0 && rpt_hist_put(h, b, (uint64_t)atoll(v)) != 0) return -1;
        }
    }
    return 0;
}

static int load_samples(rpt_endpoint_t *ep, const redisReply *r, int64_t since_ms)
{
    ep->samples = json_array();
    if (!ep->samples) return -1;
    for (size_t i = 0; is_strings(r) && i < r->elements; i++) {
        json_t *s = json_loadb(r->element[i]->str, r->element[i]->len, 0, NULL);
        if (!json_is_object(s)) {
            json_decref(s);
            continue; /* not ours: skipped rather than trusted */
        }
        json_int_t t = json_integer_value(json_object_get(s, ST_S_TIME_MS));
        if (since_ms && t < since_ms) {
            json_decref(s);
            continue;
        }
        json_object_set_new(s, ST_S_ENDPOINT, json_string(ep->name));
        if (!json_is_string(json_object_get(s, ST_S_SOURCE))) /* written before mesh mode */
            json_object_set_new(s, ST_S_SOURCE, json_string(ST_SOURCE_TEE));
        json_array_append_new(ep->samples, s);
    }
    return 0;
}

static void endpoint_free(rpt_endpoint_t *ep)
{
    free(ep->name);
    rpt_counts_free(&ep->paths);
    rpt_counts_free(&ep->noise_paths);
    rpt_counts_free(&ep->kinds);
    rpt_counts_free(&ep->noise_kinds);
    rpt_counts_free(&ep->reasons);
    rpt_hist_free(&ep->lat_primary);
    rpt_hist_free(&ep->lat_shadow);
    json_decref(ep->samples);
}

void rpt_model_free(rpt_model_t *m)
{
    for (size_t i = 0; i < m->neps; i++)
        endpoint_free(&m->eps[i]);
    free(m->eps);
    free(m->service);
    free(m->timeline);
    rpt_hist_free(&m->lat_primary);
    rpt_hist_free(&m->lat_shadow);
    memset(m, 0, sizeof(*m));
}

/* Escapes glob characters for SCAN MATCH. */
static void glob_escape(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *in && o + 3 < outlen; in++) {
        if (strchr("*?[]\\", *in)) out[o++] = '\\';
        out[o++] = *in;
    }
    out[o] = '\0';
}

/* Collects up to `max` service names that have a meta key (for hints). */
static void known_services(redisContext *c, char *out, size_t outlen)
{
    out[0] = '\0';
    unsigned long long cursor = 0;
    size_t found = 0, used = 0;
    for (int round = 0; round < 1000; round++) {
        redisReply *r = redisCommand(c,
                                     "SCAN %llu MATCH " ST_SCHEMA_PREFIX_HEAD
                                     "*" ST_SCHEMA_PREFIX_TAIL ST_KEY_META " COUNT 1000",
                                     cursor);
        const redisReply *keys;
        if (!scan_page(r, &cursor, &keys)) {
            freeReplyObject(r);
            return;
        }
        for (size_t i = 0; i < keys->elements && found < 10; i++) {
            const char *k = keys->element[i]->str, *open = strchr(k, '{');
            const char *close = strstr(k, ST_SCHEMA_PREFIX_TAIL ST_KEY_META);
            if (!open || !close || close < open) continue;
            int n = snprintf(out + used, outlen - used, "%s'%.*s'", found ? ", " : "",
                             (int)(close - open - 1), open + 1);
            if (n > 0 && (size_t)n < outlen - used) used += (size_t)n;
            found++;
        }
        freeReplyObject(r);
        if (cursor == 0 || found >= 10) return;
    }
}

/* ---- minute buckets ---------------------------------------------------- */

static int minute_cmp(const void *a, const void *b)
{
    const rpt_minute_t *x = a, *y = b;
    return x->minute < y->minute ? -1 : x->minute > y->minute;
}

static rpt_endpoint_t *find_ep(rpt_model_t *m, const char *name)
{
    for (size_t i = 0; i < m->neps; i++)
        if (!strcmp(m->eps[i].name, name)) return &m->eps[i];
    return NULL;
}

/* A latency field of a minute bucket (schema 2): counter "lat:primary:<bound>",
 * "lat:shadow:+Inf", "lat:primary:sum_ms", ... into the endpoint's window
 * histograms. 0 when it is not a latency field or was added; -1 on ENOMEM. */
static int minute_latency(rpt_endpoint_t *ep, const char *counter, const char *value)
{
    rpt_hist_t *h = NULL;
    static const char primary[] = ST_KEY_EP_LAT_PRIMARY ST_HIST_SEP;
    static const char shadow[] = ST_KEY_EP_LAT_SHADOW ST_HIST_SEP;
    if (!strncmp(counter, primary, ST_SCHEMA_LEN(primary))) {
        h = &ep->lat_primary;
        counter += ST_SCHEMA_LEN(primary);
    } else if (!strncmp(counter, shadow, ST_SCHEMA_LEN(shadow))) {
        h = &ep->lat_shadow;
        counter += ST_SCHEMA_LEN(shadow);
    }
    if (!h) return 0;
    if (!strcmp(counter, ST_HIST_SUM_MS)) {
        h->sum_ms += atof(value);
        return 0;
    }
    long long v = atoll(value);
    if (v <= 0) return 0;
    if (!strcmp(counter, ST_HIST_INF)) {
        h->inf += (uint64_t)v;
    } else {
        char *end;
        double b = strtod(counter, &end);
        if (*end != '\0' || !(b > 0)) return 0; /* not ours: skipped */
        if (rpt_hist_put(h, b, (uint64_t)v) != 0) return -1;
    }
    h->count += (uint64_t)v;
    return 0;
}

/* Loads every "minute:M" key in the window (SCAN, then pipelined HGETALL):
 * builds the timeline and, with --since, the endpoints' window tallies and
 * latency histograms. */
static int load_minutes(redisContext *c, const char *prefix, int64_t since_min, rpt_model_t *m,
                        char *err, size_t errlen)
{
    char pat[1200];
    glob_escape(prefix, pat, sizeof(pat) - 16);
    strcat(pat, ST_KEY_MINUTE "*");
    int64_t *mins = NULL;
    size_t nmins = 0, cap = 0;
    unsigned long long cursor = 0;
    int rc = -1, rounds = 0;
    do {
        redisReply *r = redisCommand(c, "SCAN %llu MATCH %s COUNT 1000", cursor, pat);
        const redisReply *keys;
        if (!scan_page(r, &cursor, &keys)) {
            set_err(err, errlen, "redis SCAN failed: %s", r ? reply_text(r) : c->errstr);
            freeReplyObject(r);
            goto done;
        }
        size_t plen = strlen(prefix);
        for (size_t i = 0; i < keys->elements; i++) {
            const char *k = keys->element[i]->str;
            if (strncmp(k, prefix, plen) != 0 ||
                strncmp(k + plen, ST_KEY_MINUTE, ST_SCHEMA_LEN(ST_KEY_MINUTE)) != 0)
                continue; /* not a key the pattern asked for */
            k += plen + ST_SCHEMA_LEN(ST_KEY_MINUTE);
            char *end;
            errno = 0;
            long long mn = strtoll(k, &end, 10);
            if (end == k || *end || errno || mn < since_min) continue;
            if (nmins == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                int64_t *n = realloc(mins, ncap * sizeof(*n));
                if (!n) {
                    freeReplyObject(r);
                    goto done;
                }
                mins = n;
                cap = ncap;
            }
            mins[nmins++] = mn;
        }
        freeReplyObject(r);
    } while (cursor != 0 && ++rounds < SCAN_MAX_ROUNDS);

    m->timeline = calloc(nmins ? nmins : 1, sizeof(*m->timeline));
    if (!m->timeline) goto done;
    for (size_t i = 0; i < nmins; i++)
        redisAppendCommand(c, "HGETALL %s" ST_KEY_MINUTE "%lld", prefix, (long long)mins[i]);
    for (size_t i = 0; i < nmins; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            set_err(err, errlen, "redis: %s", c->errstr);
            goto done;
        }
        rpt_minute_t *mt = &m->timeline[m->ntimeline++];
        mt->minute = mins[i];
        for (size_t k = 0; is_pairs(r) && k < r->elements; k += 2) {
            const char *f = r->element[k]->str, *bar = strchr(f, ST_F_SEP[0]);
            if (!bar) continue;
            rpt_endpoint_t *ep = find_ep(m, bar + 1);
            if (!ep) continue; /* filtered out by --endpoint */
            char counter[64];
            snprintf(counter, sizeof(counter), "%.*s", (int)(bar - f), f);
            if (!strncmp(counter, ST_KEY_EP_LAT_PRIMARY ST_HIST_SEP,
                         ST_SCHEMA_LEN(ST_KEY_EP_LAT_PRIMARY ST_HIST_SEP)) ||
                !strncmp(counter, ST_KEY_EP_LAT_SHADOW ST_HIST_SEP,
                         ST_SCHEMA_LEN(ST_KEY_EP_LAT_SHADOW ST_HIST_SEP))) {
                if (since_min && minute_latency(ep, counter, r->element[k + 1]->str) != 0) {
                    freeReplyObject(r);
                    goto done;
                }
                continue;
            }
            uint64_t v = to_u64(r->element[k + 1]);
            tally_field(&mt->t, counter, v);
            if (since_min) tally_field(&ep->t, counter, v);
        }
        freeReplyObject(r);
    }
    qsort(m->timeline, m->ntimeline, sizeof(*m->timeline), minute_cmp);
    for (size_t i = 0; i < m->ntimeline; i++) {
        rpt_tally_t *t = &m->timeline[i].t;
        uint64_t other = t->diverged + t->noise + t->errors;
        t->matched = t->compared > other ? t->compared - other : 0;
    }
    rc = 0;
done:
    free(mins);
    return rc;
}

/* ---- main load --------------------------------------------------------- */

/* meta.schema: a whole number the report knows (ST_SCHEMA_MIN ..
 * ST_SCHEMA_VERSION) into *out; -1 for anything else (a newer writer's
 * schema, or not a number). */
static int check_schema(const char *text, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < ST_SCHEMA_MIN || v > ST_SCHEMA_VERSION) return -1;
    *out = (int)v;
    return 0;
}

static int ep_rank(const void *a, const void *b)
{
    const rpt_endpoint_t *x = a, *y = b;
    double rx = rpt_ratio(x->t.diverged, rpt_comparable(&x->t));
    double ry = rpt_ratio(y->t.diverged, rpt_comparable(&y->t));
    if (rx != ry) return rx < ry ? 1 : -1;
    if (x->t.compared != y->t.compared) return x->t.compared < y->t.compared ? 1 : -1;
    return strcmp(x->name, y->name);
}

static redisContext *connect_redis(const rpt_redis_addr_t *a, char *err, size_t errlen)
{
    struct timeval tv = {CONNECT_TIMEOUT_S, 0};
    redisContext *c = redisConnectWithTimeout(a->host, a->port, tv);
    if (!c || c->err) {
        set_err(err, errlen, "cannot connect to Redis at %s:%d: %s", a->host, a->port,
                c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    struct timeval ctv = {COMMAND_TIMEOUT_S, 0};
    redisSetTimeout(c, ctv);
    return c;
}

/* AUTH and SELECT as the address says, then PING. 0 or -1 with err set. */
static int setup_session(redisContext *c, const rpt_redis_addr_t *a, char *err, size_t errlen)
{
    redisReply *r = NULL;
    if (a->password[0]) {
        r = a->user[0] ? redisCommand(c, "AUTH %s %s", a->user, a->password)
                       : redisCommand(c, "AUTH %s", a->password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            set_err(err, errlen, "Redis at %s:%d refused AUTH: %s", a->host, a->port,
                    r ? reply_text(r) : c->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    if (a->db) {
        r = redisCommand(c, "SELECT %d", a->db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            set_err(err, errlen, "Redis at %s:%d: SELECT %d failed: %s", a->host, a->port, a->db,
                    r ? reply_text(r) : c->errstr);
            goto fail;
        }
        freeReplyObject(r);
    }
    r = redisCommand(c, "PING");
    if (!r || r->type == REDIS_REPLY_ERROR) {
        set_err(err, errlen, "Redis at %s:%d: %s", a->host, a->port, r ? reply_text(r) : c->errstr);
        goto fail;
    }
    freeReplyObject(r);
    return 0;
fail:
    freeReplyObject(r);
    return -1;
}

/* hiredis 0.14 allocates an array reply by the length the server declares
 * ("*1000000000" is a 8 GB calloc): arrays beyond MAX_REPLY_ITEMS are refused
 * (hiredis then fails the read with "Out of memory"). The reader's own
 * functions are kept in its privdata. Found by fuzz_report. */
static void *create_array_bounded(const redisReadTask *task, int elements)
{
    const redisReplyObjectFunctions *dflt = task->privdata;
    if (elements > MAX_REPLY_ITEMS) return NULL;
    return dflt->createArray(task, elements);
}

int rpt_load(const rpt_options_t *opt, rpt_model_t *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    redisContext *c = connect_redis(&opt->redis, err, errlen);
    if (!c) return -1;
    int rc = rpt_load_from(c, opt, m, err, errlen);
    redisFree(c);
    return rc;
}

static int load_session(redisContext *c, const rpt_options_t *opt, rpt_model_t *m, char *err,
                        size_t errlen);

int rpt_load_from(redisContext *c, const rpt_options_t *opt, rpt_model_t *m, char *err,
                  size_t errlen)
{
    memset(m, 0, sizeof(*m));
    redisReplyObjectFunctions bounded = *c->reader->fn;
    redisReplyObjectFunctions *own_fn = c->reader->fn;
    void *own_priv = c->reader->privdata;
    bounded.createArray = create_array_bounded;
    c->reader->privdata = own_fn;
    c->reader->fn = &bounded;
    int rc = load_session(c, opt, m, err, errlen);
    c->reader->fn = own_fn; /* `bounded` ends with this frame */
    c->reader->privdata = own_priv;
    return rc;
}

static int load_session(redisContext *c, const rpt_options_t *opt, rpt_model_t *m, char *err,
                        size_t errlen)
{
    if (setup_session(c, &opt->redis, err, errlen) != 0) return -1;
    int rc = -1;
    redisReply *meta = NULL, *members = NULL;
    char prefix[1024];
    snprintf(prefix, sizeof(prefix), ST_SCHEMA_PREFIX_FMT, opt->service);
    m->service = strdup(opt->service);
    m->since_s = opt->since_s;
    m->latency_windowed = opt->since_s != 0;
    meta = redisCommand(c, "HGETALL %s" ST_KEY_META, prefix);
    members = redisCommand(c, "SMEMBERS %s" ST_KEY_ENDPOINTS, prefix);
    if (!is_pairs(meta) || !is_strings(members)) {
        const redisReply *bad = !is_pairs(meta) ? meta : members;
        set_err(err, errlen, "redis: cannot read %s%s: %s", prefix,
                bad == meta ? ST_KEY_META : ST_KEY_ENDPOINTS,
                !bad                             ? c->errstr
                : bad->type == REDIS_REPLY_ERROR ? reply_text(bad)
                                                 : "unexpected reply");
        goto done;
    }
    if (load_mesh(c, prefix, m) != 0) {
        set_err(err, errlen,
                "redis: cannot read %s" ST_KEY_MESH_ORPHANS " / " ST_KEY_MESH_PENDING ": %s",
                prefix, c->err ? c->errstr : "unexpected reply");
        goto done;
    }
    if (meta->elements == 0 && members->elements == 0 && !m->has_mesh) {
        char hint[600];
        known_services(c, hint, sizeof(hint));
        set_err(err, errlen,
                "no data for service '%s' in Redis %s:%d db %d (no key %s" ST_KEY_META ")%s%s",
                opt->service, opt->redis.host, opt->redis.port, opt->redis.db, prefix,
                hint[0] ? "; services with data: " : "; no shadowtee data in this database", hint);
        goto done;
    }
    const char *bounds = NULL, *schema = NULL;
    for (size_t i = 0; i < meta->elements; i += 2) {
        const char *f = meta->element[i]->str;
        if (!strcmp(f, ST_META_HIST_BOUNDS_MS))
            bounds = meta->element[i + 1]->str;
        else if (!strcmp(f, ST_META_FIRST_SEEN_MS))
            m->first_seen_ms = atoll(meta->element[i + 1]->str);
        else if (!strcmp(f, ST_META_LAST_SEEN_MS))
            m->last_seen_ms = atoll(meta->element[i + 1]->str);
        else if (!strcmp(f, ST_META_SCHEMA))
            schema = meta->element[i + 1]->str;
    }
    if (schema && check_schema(schema, &m->schema) != 0) {
        set_err(err, errlen,
                "service '%s' has data of schema '%.40s' (%s" ST_KEY_META " " ST_META_SCHEMA
                "), which this shadowtee-report does not know (it reads schema %d to %d): use the "
                "shadowtee-report of the proxies that wrote it",
                opt->service, schema, prefix, ST_SCHEMA_MIN, ST_SCHEMA_VERSION);
        goto done;
    }
    m->eps = calloc(members->elements ? members->elements : 1, sizeof(*m->eps));
    if (!m->eps) goto done;
    for (size_t i = 0; i < members->elements; i++) {
        const char *name = members->element[i]->str;
        if (opt->endpoint && strcmp(opt->endpoint, name) != 0) continue;
        m->eps[m->neps++].name = strdup(name);
    }
    if (opt->endpoint && m->neps == 0) {
        char list[800];
        size_t used = 0;
        list[0] = '\0';
        for (size_t i = 0; i < members->elements && used + 4 < sizeof(list); i++) {
            int n = snprintf(list + used, sizeof(list) - used, "%s'%s'", i ? ", " : "",
                             members->element[i]->str);
            if (n > 0)
                used += (size_t)n < sizeof(list) - used ? (size_t)n : sizeof(list) - used - 1;
        }
        set_err(err, errlen, "endpoint '%s' has no data for service '%s'; known endpoints: %s",
                opt->endpoint, opt->service, list);
        goto done;
    }
    int64_t since_ms = opt->since_s ? opt->now_ms - opt->since_s * 1000 : 0;
    static const char *const sfx[] = {ST_KEY_EP_COUNTS, ST_KEY_EP_PATHS, ST_KEY_EP_NOISE_PATHS,
                                      ST_KEY_EP_LAT_PRIMARY, ST_KEY_EP_LAT_SHADOW};
    for (size_t i = 0; i < m->neps; i++) {
        const char *n = m->eps[i].name;
        for (size_t k = 0; k < 5; k++)
            redisAppendCommand(c, "HGETALL %s" ST_KEY_EP "%s" ST_KEY_EP_SEP "%s", prefix, n,
                               sfx[k]);
        redisAppendCommand(c, "LRANGE %s" ST_KEY_EP "%s" ST_KEY_EP_SEP ST_KEY_EP_SAMPLES " 0 -1",
                           prefix, n);
    }
    for (size_t i = 0; i < m->neps; i++) {
        rpt_endpoint_t *ep = &m->eps[i];
        redisReply *r[6] = {0};
        int ok = 1;
        for (size_t k = 0; k < 6; k++)
            if (redisGetReply(c, (void **)&r[k]) != REDIS_OK) ok = 0;
        /* every bound of the writer's histogram, so a bucket's lower edge is
         * the previous bound even when that bucket is empty */
        for (const char *b = bounds; ok && b && *b;) {
            char *end;
            double v = strtod(b, &end);
            if (end == b) break;
            if (v > 0 &&
                (rpt_hist_put(&ep->lat_primary, v, 0) || rpt_hist_put(&ep->lat_shadow, v, 0)))
                ok = 0;
            b = *end == ',' ? end + 1 : end;
        }
        if (ok) {
            rpt_tally_t all_time = {0};
            /* with --since, counts and latency come from the minute buckets */
            ok = load_counts(ep, r[0]) == 0 && load_paths(&ep->paths, r[1]) == 0 &&
                 load_paths(&ep->noise_paths, r[2]) == 0 &&
                 (since_ms || (load_hist(&ep->lat_primary, r[3]) == 0 &&
                               load_hist(&ep->lat_shadow, r[4]) == 0)) &&
                 load_samples(ep, r[5], since_ms) == 0;
            rpt_counts_sort(&ep->kinds);
            rpt_counts_sort(&ep->noise_kinds);
            rpt_counts_sort(&ep->reasons);
            if (since_ms) ep->t = all_time;
        }
        for (size_t k = 0; k < 6; k++)
            freeReplyObject(r[k]);
        if (!ok) {
            set_err(err, errlen, "redis: reading endpoint '%s' failed: %s", ep->name,
                    c->err ? c->errstr : "bad reply");
            goto done;
        }
    }
    if (load_minutes(c, prefix, since_ms ? since_ms / 60000 : 0, m, err, errlen) != 0) goto done;
    for (size_t i = 0; i < m->neps; i++) {
        rpt_endpoint_t *ep = &m->eps[i];
        if (since_ms) {
            uint64_t other = ep->t.diverged + ep->t.noise + ep->t.errors;
            ep->t.matched = ep->t.compared > other ? ep->t.compared - other : 0;
        }
        m->total.compared += ep->t.compared;
        m->total.matched += ep->t.matched;
        m->total.diverged += ep->t.diverged;
        m->total.noise += ep->t.noise;
        m->total.errors += ep->t.errors;
        m->total.timeouts += ep->t.timeouts;
        m->sources.tee += ep->sources.tee;
        m->sources.mesh += ep->sources.mesh;
        if (rpt_hist_add(&m->lat_primary, &ep->lat_primary) != 0 ||
            rpt_hist_add(&m->lat_shadow, &ep->lat_shadow) != 0)
            goto done;
    }
    /* a mesh service whose halves all joined has no orphan and nothing
     * waiting, yet it is one: say "0 orphans", not "no mesh" */
    if (m->sources.mesh > 0) m->has_mesh = 1;
    qsort(m->eps, m->neps, sizeof(*m->eps), ep_rank);
    m->window_start_ms = m->first_seen_ms;
    m->window_end_ms = m->last_seen_ms;
    if (since_ms) {
        if (since_ms > m->window_start_ms) m->window_start_ms = since_ms;
        if (m->window_end_ms < m->window_start_ms) m->window_end_ms = m->window_start_ms;
    }
    rc = 0;
done:
    freeReplyObject(meta);
    freeReplyObject(members);
    return rc;
}
