/* metrics: histogram buckets and Prometheus rendering (see metrics.h). */
#include "metrics.h"

#include <string.h>

#include "log.h"

static const char *const tls_sides[4] = {"listener", "primary", "shadow", "noise"};

static const double bounds[ST_HIST_BUCKETS - 1] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                   0.1,    0.25,  0.5,    1,     2.5,  5};
static const char *const class_names[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};

void st_hist_observe(st_hist_t *h, double seconds)
{
    if (!(seconds >= 0)) seconds = 0; /* NaN or negative: a bug upstream must not wrap the sums */
    if (seconds > 1e6) seconds = 1e6;
    int i = 0;
    while (i < ST_HIST_BUCKETS - 1 && seconds > bounds[i])
        i++;
    ST_INC(h->bucket[i]);
    ST_INC(h->count);
    ST_ADD(h->sum_us, (uint64_t)(seconds * 1e6));
}

int st_status_class(int status)
{
    return status >= 100 && status < 600 ? status / 100 : 0;
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define SUM(expr)                                                                                  \
    ({                                                                                             \
        uint64_t s_ = 0;                                                                           \
        for (size_t w_ = 0; w_ < n; w_++)                                                          \
            s_ += LOAD(all[w_]->expr);                                                             \
        s_;                                                                                        \
    })

void st_hist_render(FILE *out, const char *name, const char *help, const st_hist_t *const *h,
                    size_t n)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0, count = 0, sum_us = 0;
    for (int b = 0; b < ST_HIST_BUCKETS; b++) {
        for (size_t i = 0; i < n; i++)
            cum += LOAD(h[i]->bucket[b]);
        if (b < ST_HIST_BUCKETS - 1)
            fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[b], (unsigned long long)cum);
        else
            fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    }
    for (size_t i = 0; i < n; i++) {
        count += LOAD(h[i]->count);
        sum_us += LOAD(h[i]->sum_us);
    }
    fprintf(out, "%s_sum %.6f\n%s_count %llu\n", name, (double)sum_us / 1e6, name,
            (unsigned long long)count);
}

/* The histogram at `offset` in each worker's st_metrics_t, summed. */
static void render_hist(FILE *out, const char *name, const char *help, st_metrics_t *const *all,
                        size_t n, size_t offset)
{
    const st_hist_t *h[256];
    size_t nh = 0;
    for (size_t w = 0; w < n && nh < 256; w++)
        h[nh++] = (const st_hist_t *)((const char *)all[w] + offset);
    st_hist_render(out, name, help, h, nh);
}

/* A counter labelled `label`, one line per values[first..last], each the
 * workers' sum of the uint64_t array at `offset` in st_metrics_t. */
static void render_counters(FILE *out, const char *name, const char *help, const char *label,
                            const char *const *values, int first, int last,
                            st_metrics_t *const *all, size_t n, size_t offset)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (int i = first; i <= last; i++) {
        uint64_t sum = 0;
        for (size_t w = 0; w < n; w++)
            sum += LOAD(((_Atomic uint64_t *)((char *)all[w] + offset))[i]);
        fprintf(out, "%s{%s=\"%s\"} %llu\n", name, label, values[i], (unsigned long long)sum);
    }
}

void st_metrics_render(st_metrics_t *const *all, size_t n, FILE *out)
{
    render_counters(out, "shadowtee_requests_total", "Client requests answered, by status class.",
                    "code", class_names, 1, 5, all, n, offsetof(st_metrics_t, requests));
    render_counters(out, "shadowtee_upstream_errors_total", "Primary upstream failures, by reason.",
                    "reason", st_upfail_labels, 0, ST_UPFAIL_NCOUNTED - 1, all, n,
                    offsetof(st_metrics_t, upstream_errors));
    render_counters(out, "shadowtee_requests_rejected_total",
                    "Requests the proxy refused and answered itself, by reason (upgrade: forwarded "
                    "without their Upgrade). A refused head reaches no upstream.",
                    "reason", st_reject_labels, 1, ST_REJ_COUNT - 1, all, n,
                    offsetof(st_metrics_t, rejected));
    int64_t active = 0;
    for (size_t w = 0; w < n; w++)
        active += LOAD(all[w]->active_connections);
    fprintf(out,
            "# HELP shadowtee_active_connections Open client connections.\n"
            "# TYPE shadowtee_active_connections gauge\nshadowtee_active_connections %lld\n",
            (long long)active);
    fprintf(out,
            "# HELP shadowtee_connections_total Client connections accepted.\n"
            "# TYPE shadowtee_connections_total counter\nshadowtee_connections_total %llu\n",
            (unsigned long long)SUM(connections_total));
    render_counters(out, "shadowtee_client_closes_total",
                    "Client connections closed, by reason (exchange_done: after an answer, eof: "
                    "by the client while idle).",
                    "reason", st_close_labels, 0, ST_CLOSE_COUNT - 1, all, n,
                    offsetof(st_metrics_t, client_closes));
    render_hist(out, "shadowtee_request_duration_seconds",
                "Client request latency through the proxy.", all, n,
                offsetof(st_metrics_t, request_duration));
    fprintf(
        out,
        "# HELP shadowtee_mirror_requests_total Requests mirrored to the shadow.\n"
        "# TYPE shadowtee_mirror_requests_total counter\nshadowtee_mirror_requests_total %llu\n",
        (unsigned long long)SUM(mirror_requests));
    render_counters(out, "shadowtee_mirror_skipped_total", "Requests not mirrored, by reason.",
                    "reason", st_skip_labels, 0, ST_SKIP_COUNT - 1, all, n,
                    offsetof(st_metrics_t, mirror_skipped));
    render_counters(out, "shadowtee_shadow_responses_total", "Shadow responses, by status class.",
                    "code", class_names, 1, 5, all, n, offsetof(st_metrics_t, shadow_responses));
    render_counters(out, "shadowtee_shadow_errors_total", "Shadow failures, by reason.", "reason",
                    st_upfail_labels, 0, ST_UPFAIL_NCOUNTED - 1, all, n,
                    offsetof(st_metrics_t, shadow_errors));
    render_hist(out, "shadowtee_shadow_duration_seconds", "Shadow response latency.", all, n,
                offsetof(st_metrics_t, shadow_duration));
    fprintf(out,
            "# HELP shadowtee_mirror_inflight Shadow requests in flight.\n"
            "# TYPE shadowtee_mirror_inflight gauge\nshadowtee_mirror_inflight %llu\n",
            (unsigned long long)SUM(mirror_inflight));
    fprintf(out,
            "# HELP shadowtee_mirror_buffered_bytes Bytes of mirror copies held.\n"
            "# TYPE shadowtee_mirror_buffered_bytes gauge\nshadowtee_mirror_buffered_bytes %llu\n",
            (unsigned long long)SUM(mirror_bytes));
    fprintf(out,
            "# HELP shadowtee_noise_requests_total Requests also sent to the noise replica.\n"
            "# TYPE shadowtee_noise_requests_total counter\nshadowtee_noise_requests_total %llu\n",
            (unsigned long long)SUM(noise_requests));
    fprintf(out, "# HELP shadowtee_tls_handshake_failures_total TLS failures, by side and reason.\n"
                 "# TYPE shadowtee_tls_handshake_failures_total counter\n");
    for (int side = 0; side < 4; side++)
        for (int r = 0; r < ST_TLSFAIL_COUNT; r++)
            fprintf(out, "shadowtee_tls_handshake_failures_total{side=\"%s\",reason=\"%s\"} %llu\n",
                    tls_sides[side], st_tls_fail_labels[r],
                    (unsigned long long)SUM(tls_failures[side][r]));
    render_counters(out, "shadowtee_tls_sessions_resumed_total",
                    "Upstream TLS handshakes that resumed a session.", "side", tls_sides, 1, 3, all,
                    n, offsetof(st_metrics_t, tls_resumed));
    render_counters(out, "shadowtee_upstream_connects_total",
                    "Connections opened to each upstream (pool reuse: few per worker under steady "
                    "keep-alive load).",
                    "pool", tls_sides, 1, 3, all, n, offsetof(st_metrics_t, upstream_connects));
    render_counters(out, "shadowtee_upstream_failovers_total",
                    "Connects that failed on one address of an upstream and went on to its next.",
                    "pool", tls_sides, 1, 3, all, n, offsetof(st_metrics_t, upstream_failovers));
    static const char *const results[3] = {"unchanged", "changed", "failed"};
    fprintf(out, "# HELP shadowtee_upstream_resolutions_total Re-resolutions of upstream names, by "
                 "pool and result.\n# TYPE shadowtee_upstream_resolutions_total counter\n");
    for (int side = 1; side < 4; side++)
        for (int r = 0; r < 3; r++)
            fprintf(out, "shadowtee_upstream_resolutions_total{pool=\"%s\",result=\"%s\"} %llu\n",
                    tls_sides[side], results[r],
                    (unsigned long long)SUM(upstream_resolves[side][r]));
    render_counters(out, "shadowtee_accept_errors_total",
                    "Failed accepts of client connections, by reason (the listener pauses).",
                    "reason", st_accept_err_labels, 0, ST_ACCEPT_ERR_COUNT - 1, all, n,
                    offsetof(st_metrics_t, accept_errors));
    fprintf(
        out,
        "# HELP shadowtee_accept_paused Workers not accepting now (descriptor shortage or "
        "connection cap).\n# TYPE shadowtee_accept_paused gauge\nshadowtee_accept_paused %llu\n",
        (unsigned long long)SUM(accept_paused));
    fprintf(out,
            "# HELP shadowtee_max_connections Client connections accepted at most (all workers).\n"
            "# TYPE shadowtee_max_connections gauge\nshadowtee_max_connections %llu\n",
            (unsigned long long)SUM(max_connections));
    st_log_stats_t ls;
    st_log_get_stats(&ls);
    fprintf(out,
            "# HELP shadowtee_log_lines_dropped_total Log lines lost: stderr full or failing.\n"
            "# TYPE shadowtee_log_lines_dropped_total counter\nshadowtee_log_lines_dropped_total "
            "%llu\n",
            (unsigned long long)ls.dropped);
    fprintf(out,
            "# HELP shadowtee_log_lines_suppressed_total Repeated log lines counted in a summary "
            "instead of written.\n# TYPE shadowtee_log_lines_suppressed_total counter\n"
            "shadowtee_log_lines_suppressed_total %llu\n",
            (unsigned long long)ls.suppressed);
}
