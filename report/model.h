/*
 * shadowtee-report: the in-memory model of one service's data, loaded from
 * Redis (load.c, key schema in docs/ARCHITECTURE.md) and rendered by text.c,
 * json.c and html.c; gate.c judges it. Everything in a model is owned by it
 * and freed by rpt_model_free. All module-internal names use `rpt_`.
 */
#ifndef SHADOWTEE_REPORT_MODEL_H
#define SHADOWTEE_REPORT_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "shadowtee/redis_url.h"

/* ---- options ----------------------------------------------------------- */

typedef enum { RPT_TEXT = 0, RPT_JSON, RPT_HTML } rpt_format_t;

/* --redis, parsed by st_redis_url_parse (the proxy's grammar too) */
typedef st_redis_url_t rpt_redis_addr_t;

typedef struct {
    rpt_redis_addr_t redis;
    const char *service;
    const char *endpoint; /* NULL: all */
    int64_t since_s;      /* 0: all time */
    rpt_format_t format;
    const char *output; /* NULL: stdout */
    int gate;
    double max_divergence_pct;    /* < 0: not checked */
    double max_shadow_errors_pct; /* < 0: not checked */
    double max_latency_ratio;     /* < 0: not checked */
    int64_t min_compared;         /* < 0: not checked */
    int64_t now_ms;               /* wall clock at start */
} rpt_options_t;

/* ---- model ------------------------------------------------------------- */

/* A latency histogram: non-cumulative counts per upper bound (ms), ascending;
 * `inf` counts values above the last bound. */
typedef struct {
    double *bounds;
    uint64_t *counts;
    size_t n;
    uint64_t inf;
    uint64_t count; /* the writer's own count (sum of buckets) */
    double sum_ms;
} rpt_hist_t;

typedef struct {
    char *name; /* path (or kind / reason for the small tables) */
    char *kind; /* NULL for kind / reason tables */
    uint64_t count;
} rpt_count_t;

typedef struct {
    rpt_count_t *v;
    size_t n, cap;
} rpt_counts_t;

typedef struct {
    uint64_t compared, matched, diverged, noise, errors, timeouts;
} rpt_tally_t;

/* Compared pairs by how they were mirrored (all time, from the counts'
 * source:* fields; pairs recorded before sources existed count as tee). */
typedef struct {
    uint64_t tee, mesh;
} rpt_sources_t;

typedef struct {
    int64_t minute; /* ms since epoch / 60000 */
    rpt_tally_t t;  /* matched derived: compared - diverged - noise - errors */
} rpt_minute_t;

typedef struct {
    char *name;
    rpt_tally_t t;            /* all time, or the window with --since */
    rpt_counts_t paths;       /* non-noise diffs: name = path, kind */
    rpt_counts_t noise_paths; /* diffs marked noise */
    rpt_counts_t kinds;       /* non-noise diff entries per kind */
    rpt_counts_t noise_kinds; /* noise diff entries per kind (counts' noise_kind:*) */
    rpt_counts_t reasons;     /* shadow errors per reason */
    rpt_hist_t lat_primary, lat_shadow;
    json_t *samples; /* array of sample objects as stored, newest first; owned */
    rpt_sources_t sources;
} rpt_endpoint_t;

typedef struct {
    char *service;
    int schema; /* meta.schema of the data (ST_SCHEMA_MIN..ST_SCHEMA_VERSION); 0: absent */
    int latency_windowed;                /* 1: latency from the minute buckets (--since) */
    int64_t first_seen_ms, last_seen_ms; /* 0: unknown */
    int64_t window_start_ms, window_end_ms;
    int64_t since_s;
    rpt_endpoint_t *eps; /* sorted by divergence rate, highest first */
    size_t neps;
    rpt_tally_t total;
    rpt_hist_t lat_primary, lat_shadow; /* summed over endpoints */
    rpt_minute_t *timeline;             /* ascending minutes in the window */
    size_t ntimeline;
    rpt_sources_t sources; /* summed over endpoints, all time */
    /* mesh mirroring: halves whose partner never came, by side (mesh:orphans),
     * and halves still waiting (mesh:pending); has_mesh when either key exists */
    int has_mesh;
    uint64_t orphans[3]; /* stable, shadow, baseline */
    uint64_t pending;
} rpt_model_t;

/* ---- derived numbers (stats_math.c) ------------------------------------ */

typedef struct {
    double lo, hi;
} rpt_interval_t;

/* Wilson score interval for x successes out of n at 95% (z = 1.96);
 * n == 0 gives [0, 1]. */
rpt_interval_t rpt_wilson(uint64_t x, uint64_t n);
/* Quantile q (0..1) of a histogram by linear interpolation inside the
 * bucket (Prometheus histogram_quantile style); < 0 when empty. A rank in
 * the +Inf bucket returns the last finite bound. */
double rpt_hist_quantile(const rpt_hist_t *h, double q);
/* Adds src's buckets into dst (bounds merged). -1 on ENOMEM. */
int rpt_hist_add(rpt_hist_t *dst, const rpt_hist_t *src);
/* Adds count to bucket `bound_ms` (created if new). -1 on ENOMEM. */
int rpt_hist_put(rpt_hist_t *h, double bound_ms, uint64_t count);
void rpt_hist_free(rpt_hist_t *h);
uint64_t rpt_hist_total(const rpt_hist_t *h);

/* comparable = compared - errors: requests with two responses to diff. */
uint64_t rpt_comparable(const rpt_tally_t *t);
/* x / n, 0 when n == 0. */
double rpt_ratio(uint64_t x, uint64_t n);
/* shadow / primary quantile, < 0 when either is unknown. */
double rpt_latency_ratio(const rpt_hist_t *primary, const rpt_hist_t *shadow, double q);

int rpt_counts_add(rpt_counts_t *c, const char *name, const char *kind, uint64_t count);
void rpt_counts_sort(rpt_counts_t *c); /* count desc, then name */
void rpt_counts_free(rpt_counts_t *c);

/* ---- load.c ------------------------------------------------------------ */

/* Reads the service from Redis into *m. 0; -1 with a message in err (Redis
 * unreachable, AUTH refused, no data for the service, a meta.schema it does
 * not know, unknown endpoint). */
int rpt_load(const rpt_options_t *opt, rpt_model_t *m, char *err, size_t errlen);
/* The same on an open connection (the caller keeps and frees it): AUTH and
 * SELECT as opt->redis says, PING, then the reads. Everything it decodes is
 * checked, whatever the bytes: a reply of an unexpected shape is an error
 * (or skipped), never trusted. */
struct redisContext;
int rpt_load_from(struct redisContext *c, const rpt_options_t *opt, rpt_model_t *m, char *err,
                  size_t errlen);
void rpt_model_free(rpt_model_t *m);

/* ---- gate.c ------------------------------------------------------------ */

/* A check's (and the gate's) outcome; also the order of precedence: one
 * failed check fails the gate, else one inconclusive check makes it
 * inconclusive. */
typedef enum { RPT_PASS = 0, RPT_INCONCLUSIVE, RPT_FAIL } rpt_result_t;
const char *rpt_result_name(rpt_result_t r); /* "pass", "inconclusive", "fail" */

typedef struct {
    const char *name; /* "divergence", "shadow_errors", "latency_ratio", "min_compared" */
    double value, threshold;
    int evaluated; /* 0: no data to compute the value from (the check is inconclusive) */
    int passed;    /* result == RPT_PASS */
    rpt_result_t result;
    int has_ci;        /* rate checks: ci holds the Wilson 95% interval, in percent */
    rpt_interval_t ci; /* pass: ci.hi <= threshold; fail: ci.lo > threshold */
    char text[200];    /* "divergence 12.50% > 1.00% (95% CI 8.10%..18.80%)" */
} rpt_check_t;

typedef struct {
    int enabled;
    int passed; /* result == RPT_PASS */
    rpt_result_t result;
    rpt_check_t checks[4];
    size_t nchecks;
    char verdict[1024]; /* one line */
} rpt_gate_t;

void rpt_gate_eval(const rpt_options_t *opt, const rpt_model_t *m, rpt_gate_t *g);

/* ---- renderers --------------------------------------------------------- */

/* Each writes the whole report; 0, or -1 on a write error. */
int rpt_render_text(FILE *out, const rpt_options_t *opt, const rpt_model_t *m, const rpt_gate_t *g);
int rpt_render_json(FILE *out, const rpt_options_t *opt, const rpt_model_t *m, const rpt_gate_t *g);
int rpt_render_html(FILE *out, const rpt_options_t *opt, const rpt_model_t *m, const rpt_gate_t *g);
/* The JSON document (json.c), also used by html.c for nothing but tests. */
json_t *rpt_to_json(const rpt_options_t *opt, const rpt_model_t *m, const rpt_gate_t *g);

/* Formats ms since epoch as "2026-11-26 07:01:02Z" (UTC). */
void rpt_fmt_time(int64_t ms, char *buf, size_t len);
/* Formats a duration in seconds as "4m08s" / "2h03m" / "12s". */
void rpt_fmt_duration(int64_t s, char *buf, size_t len);

#endif
