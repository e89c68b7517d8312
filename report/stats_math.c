/*
 * stats_math.c: the numbers the report derives from raw counters: Wilson
 * score intervals, histogram quantiles and latency ratios, plus the small
 * count tables and time formatting the renderers share.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

rpt_interval_t rpt_wilson(uint64_t x, uint64_t n)
{
    rpt_interval_t r = {0, 1};
    if (n == 0) return r;
    const double z = 1.959963984540054;
    double dn = (double)n, p = (double)x / dn, z2 = z * z;
    double denom = 1 + z2 / dn;
    double center = (p + z2 / (2 * dn)) / denom;
    double half = z * sqrt(p * (1 - p) / dn + z2 / (4 * dn * dn)) / denom;
    r.lo = center - half < 0 ? 0 : center - half;
    r.hi = center + half > 1 ? 1 : center + half;
    if (x == 0) r.lo = 0; /* exact: no rounding residue */
    if (x == n) r.hi = 1;
    return r;
}

uint64_t rpt_hist_total(const rpt_hist_t *h)
{
    uint64_t t = h->inf;
    for (size_t i = 0; i < h->n; i++)
        t += h->counts[i];
    return t;
}

double rpt_hist_quantile(const rpt_hist_t *h, double q)
{
    uint64_t total = rpt_hist_total(h);
    if (total == 0) return -1;
    double rank = q * (double)total;
    double cum = 0, lower = 0;
    for (size_t i = 0; i < h->n; i++) {
        double c = (double)h->counts[i];
        if (c > 0 && cum + c >= rank) {
            double frac = (rank - cum) / c;
            if (frac < 0) frac = 0;
            return lower + (h->bounds[i] - lower) * frac;
        }
        cum += c;
        lower = h->bounds[i];
    }
    return h->n ? h->bounds[h->n - 1] : -1; /* in +Inf: the last finite bound */
}

int rpt_hist_put(rpt_hist_t *h, double bound_ms, uint64_t count)
{
    size_t i = 0;
    while (i < h->n && h->bounds[i] < bound_ms)
        i++;
    if (i < h->n && h->bounds[i] == bound_ms) {
        h->counts[i] += count;
        return 0;
    }
    double *nb = realloc(h->bounds, (h->n + 1) * sizeof(double));
    if (!nb) return -1;
    h->bounds = nb;
    uint64_t *nc = realloc(h->counts, (h->n + 1) * sizeof(uint64_t));
    if (!nc) return -1;
    h->counts = nc;
    memmove(h->bounds + i + 1, h->bounds + i, (h->n - i) * sizeof(double));
    memmove(h->counts + i + 1, h->counts + i, (h->n - i) * sizeof(uint64_t));
    h->bounds[i] = bound_ms;
    h->counts[i] = count;
    h->n++;
    return 0;
}

int rpt_hist_add(rpt_hist_t *dst, const rpt_hist_t *src)
{
    for (size_t i = 0; i < src->n; i++)
        if (rpt_hist_put(dst, src->bounds[i], src->counts[i]) != 0) return -1;
    dst->inf += src->inf;
    dst->count += src->count;
    dst->sum_ms += src->sum_ms;
    return 0;
}

void rpt_hist_free(rpt_hist_t *h)
{
    free(h->bounds);
    free(h->counts);
    memset(h, 0, sizeof(*h));
}

uint64_t rpt_comparable(const rpt_tally_t *t)
{
    return t->compared > t->errors ? t->compared - t->errors : 0;
}

double rpt_ratio(uint64_t x, uint64_t n)
{
    return n ? (double)x / (double)n : 0;
}

double rpt_latency_ratio(const rpt_hist_t *primary, const rpt_hist_t *shadow, double q)
{
    double a = rpt_hist_quantile(primary, q), b = rpt_hist_quantile(shadow, q);
    if (a <= 0 || b < 0) return -1;
    return b / a;
}

int rpt_counts_add(rpt_counts_t *c, const char *name, const char *kind, uint64_t count)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i].name, name) == 0 &&
            ((!kind && !c->v[i].kind) || (kind && c->v[i].kind && !strcmp(kind, c->v[i].kind)))) {
            c->v[i].count += count;
            return 0;
        }
    }
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 8;
        rpt_count_t *nv = realloc(c->v, ncap * sizeof(*nv));
        if (!nv) return -1;
        c->v = nv;
        c->cap = ncap;
    }
    rpt_count_t *e = &c->v[c->n];
    e->name = strdup(name);
    e->kind = kind ? strdup(kind) : NULL;
    e->count = count;
    if (!e->name || (kind && !e->kind)) {
        free(e->name);
        free(e->kind);
        return -1;
    }
    c->n++;
    return 0;
}

static int count_cmp(const void *a, const void *b)
{
    const rpt_count_t *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    int r = strcmp(x->name, y->name);
    if (r || !x->kind || !y->kind) return r;
    return strcmp(x->kind, y->kind);
}

void rpt_counts_sort(rpt_counts_t *c)
{
    if (c->n > 1) qsort(c->v, c->n, sizeof(*c->v), count_cmp);
}

void rpt_counts_free(rpt_counts_t *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].name);
        free(c->v[i].kind);
    }
    free(c->v);
    memset(c, 0, sizeof(*c));
}

void rpt_fmt_time(int64_t ms, char *buf, size_t len)
{
    if (ms <= 0) {
        snprintf(buf, len, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm);
}

void rpt_fmt_duration(int64_t s, char *buf, size_t len)
{
    if (s < 0) s = 0;
    if (s < 60)
        snprintf(buf, len, "%llds", (long long)s);
    else if (s < 3600)
        snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else if (s < 86400)
        snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else
        snprintf(buf, len, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
}
