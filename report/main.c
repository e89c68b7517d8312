/*
 * shadowtee-report: reads a service's shadow-comparison data from Redis and
 * prints the divergence report (text, JSON or HTML) and, with --gate, the
 * promotion verdict.
 *
 * Exit codes: 0 report written (gate passed), 1 gate failed, 2 error (bad
 * flags, Redis unreachable, no data for the service; one message on stderr),
 * 3 gate inconclusive (too few comparisons to decide either way).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

#ifndef ST_VERSION
#define ST_VERSION "dev"
#endif

#define EXIT_GATE_FAIL         1
#define EXIT_ERROR             2
#define EXIT_GATE_INCONCLUSIVE 3

static const char USAGE[] =
    "usage: shadowtee-report --redis HOST:PORT|redis://[[user]:password@]host[:port][/db]\n"
    "                        --service NAME [--since DURATION] [--endpoint KEY]\n"
    "                        [--format text|json|html] [--output FILE]\n"
    "                        [--gate --max-divergence PCT --max-shadow-errors PCT\n"
    "                                --max-latency-ratio R --min-compared N]\n"
    "                        [--help] [--version]\n"
    "\n"
    "  --redis ADDR            Redis holding the shadowtee keys (default port 6379)\n"
    "  --service NAME          service name given to shadowtee (--service)\n"
    "  --since DURATION        only the last DURATION (e.g. 90s, 15m, 2h, 1d) for counts,\n"
    "                          rates, latency, timeline and samples (per-minute\n"
    "                          buckets): every gate input; paths stay all-time\n"
    "  --endpoint KEY          one endpoint only, e.g. 'POST /v1/predict'\n"
    "  --format FMT            text (default), json (docs/REPORT.md) or html (one file)\n"
    "  --output FILE           write the report to FILE instead of stdout\n"
    "  --gate                  evaluate the thresholds below: pass, fail or inconclusive\n"
    "                          (rates decided on their Wilson 95% interval)\n"
    "  --max-divergence PCT    max diverged / comparable, in percent\n"
    "  --max-shadow-errors PCT max shadow errors (incl. timeouts) / compared, in percent\n"
    "  --max-latency-ratio R   max shadow p99 / stable p99 latency\n"
    "  --min-compared N        min number of compared requests\n"
    "\n"
    "Exit: 0 ok / gate passed, 1 gate failed, 2 error, 3 gate inconclusive (too few\n"
    "comparisons to decide: not yet). The one-line gate verdict ends the text report;\n"
    "with json/html on stdout it goes to stderr, with --output to stdout.\n";

static int bad(const char *fmt, const char *arg)
{
    fprintf(stderr, "shadowtee-report: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see shadowtee-report --help)\n");
    return EXIT_ERROR;
}

/* "90", "90s", "15m", "2h", "1d" -> seconds; -1 when malformed. */
static int64_t parse_duration(const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0) || !isfinite(v)) return -1;
    double mult = 1;
    if (!strcmp(end, "") || !strcmp(end, "s"))
        mult = 1;
    else if (!strcmp(end, "m"))
        mult = 60;
    else if (!strcmp(end, "h"))
        mult = 3600;
    else if (!strcmp(end, "d"))
        mult = 86400;
    else
        return -1;
    double sec = v * mult;
    return sec >= 1 && sec < 1e10 ? (int64_t)sec : -1;
}

static int parse_nonneg(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

enum {
    OPT_REDIS = 256,
    OPT_SERVICE,
    OPT_SINCE,
    OPT_ENDPOINT,
    OPT_FORMAT,
    OPT_OUTPUT,
    OPT_GATE,
    OPT_MAXDIV,
    OPT_MAXERR,
    OPT_MAXLAT,
    OPT_MINCMP,
    OPT_HELP,
    OPT_VERSION
};

static const struct option OPTIONS[] = {
    {"redis", required_argument, NULL, OPT_REDIS},
    {"service", required_argument, NULL, OPT_SERVICE},
    {"since", required_argument, NULL, OPT_SINCE},
    {"endpoint", required_argument, NULL, OPT_ENDPOINT},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"output", required_argument, NULL, OPT_OUTPUT},
    {"gate", no_argument, NULL, OPT_GATE},
    {"max-divergence", required_argument, NULL, OPT_MAXDIV},
    {"max-shadow-errors", required_argument, NULL, OPT_MAXERR},
    {"max-latency-ratio", required_argument, NULL, OPT_MAXLAT},
    {"min-compared", required_argument, NULL, OPT_MINCMP},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* Parses argv into opt. Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, rpt_options_t *opt, const char **redis)
{
    char err[512];
    opterr = 0;
    int c;
    double v;
    while ((c = getopt_long(argc, argv, ":", OPTIONS, NULL)) != -1) {
        switch (c) {
        case OPT_REDIS:
            *redis = optarg;
            break;
        case OPT_SERVICE:
            opt->service = optarg;
            break;
        case OPT_ENDPOINT:
            opt->endpoint = optarg;
            break;
        case OPT_OUTPUT:
            opt->output = optarg;
            break;
        case OPT_GATE:
            opt->gate = 1;
            break;
        case OPT_SINCE:
            opt->since_s = parse_duration(optarg);
            if (opt->since_s < 0)
                return bad("--since %s: expected a duration like 90s, 15m, 2h or 1d", optarg);
            break;
        case OPT_FORMAT:
            if (!strcmp(optarg, "text"))
                opt->format = RPT_TEXT;
            else if (!strcmp(optarg, "json"))
                opt->format = RPT_JSON;
            else if (!strcmp(optarg, "html"))
                opt->format = RPT_HTML;
            else
                return bad("--format %s: expected text, json or html", optarg);
            break;
        case OPT_MAXDIV:
            if (parse_nonneg(optarg, &v) || v > 100)
                return bad("--max-divergence %s: expected a percentage 0..100", optarg);
            opt->max_divergence_pct = v;
            break;
        case OPT_MAXERR:
            if (parse_nonneg(optarg, &v) || v > 100)
                return bad("--max-shadow-errors %s: expected a percentage 0..100", optarg);
            opt->max_shadow_errors_pct = v;
            break;
        case OPT_MAXLAT:
            if (parse_nonneg(optarg, &v) || v == 0)
                return bad("--max-latency-ratio %s: expected a ratio > 0, e.g. 1.5", optarg);
            opt->max_latency_ratio = v;
            break;
        case OPT_MINCMP:
            if (parse_nonneg(optarg, &v) || v != floor(v) || v > 1e15)
                return bad("--min-compared %s: expected a whole number >= 0", optarg);
            opt->min_compared = (int64_t)v;
            break;
        case OPT_HELP:
            fputs(USAGE, stdout);
            return 0;
        case OPT_VERSION:
            printf("shadowtee-report %s\n", ST_VERSION);
            return 0;
        case ':':
            return bad("%s: missing value", argv[optind - 1]);
        default:
            return bad("unknown flag %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return bad("unexpected argument '%s'", argv[optind]);
    if (!*redis) return bad("%s", "--redis is required");
    if (!opt->service || !*opt->service) return bad("%s", "--service is required");
    if (strchr(opt->service, '}') || strchr(opt->service, '{'))
        return bad("--service %s: braces are not allowed in a service name", opt->service);
    int thresholds = opt->max_divergence_pct >= 0 || opt->max_shadow_errors_pct >= 0 ||
                     opt->max_latency_ratio >= 0 || opt->min_compared >= 0;
    if (thresholds) opt->gate = 1; /* a threshold implies --gate */
    if (opt->gate && !thresholds)
        return bad("%s", "--gate needs at least one of --max-divergence, --max-shadow-errors, "
                         "--max-latency-ratio, --min-compared");
    char why[256];
    if (st_redis_url_parse(*redis, &opt->redis, why, sizeof(why)) != 0) {
        snprintf(err, sizeof(err), "--redis %.200s: %.250s", *redis, why);
        return bad("%s", err);
    }
    return -1;
}

int main(int argc, char **argv)
{
    rpt_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.max_divergence_pct = opt.max_shadow_errors_pct = opt.max_latency_ratio = -1;
    opt.min_compared = -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    opt.now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    const char *redis = NULL;
    int rc = parse_args(argc, argv, &opt, &redis);
    if (rc >= 0) return rc;

    char err[1024];
    rpt_model_t m;
    rpt_gate_t g;
    FILE *out = stdout;
    rc = EXIT_ERROR;
    if (rpt_load(&opt, &m, err, sizeof(err)) != 0) {
        fprintf(stderr, "shadowtee-report: %s\n", err);
        goto done;
    }
    rpt_gate_eval(&opt, &m, &g);
    if (opt.output) {
        out = fopen(opt.output, "w");
        if (!out) {
            fprintf(stderr, "shadowtee-report: --output %s: %s\n", opt.output, strerror(errno));
            out = stdout;
            goto done;
        }
    }
    int wr = opt.format == RPT_JSON   ? rpt_render_json(out, &opt, &m, &g)
             : opt.format == RPT_HTML ? rpt_render_html(out, &opt, &m, &g)
                                      : rpt_render_text(out, &opt, &m, &g);
    if (g.enabled) {
        FILE *vout = opt.output || opt.format == RPT_TEXT ? stdout : stderr;
        if (vout == out) fputc('\n', vout);
        fprintf(vout, "%s\n", g.verdict);
    }
    if (out != stdout && fclose(out) != 0) wr = -1;
    out = stdout;
    if (wr != 0 || fflush(stdout) != 0) {
        fprintf(stderr, "shadowtee-report: writing the report failed: %s\n", strerror(errno));
        goto done;
    }
    rc = !g.enabled || g.result == RPT_PASS ? 0
         : g.result == RPT_FAIL             ? EXIT_GATE_FAIL
                                            : EXIT_GATE_INCONCLUSIVE;
done:
    rpt_model_free(&m);
    return rc;
}
