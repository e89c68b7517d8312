/*
 * The Redis key schema shared by the writer (comparator/stats.c,
 * comparator/redis_sink.c, proxy/cmpthread.c) and the reader
 * (shadowtee-report, report/): the schema version, every key suffix, every
 * hash field name and every field of a sample's JSON. docs/ARCHITECTURE.md
 * ("Redis key schema") describes what each holds; this header is the one
 * place that spells them. Pure macros: no libuv, no hiredis, no jansson.
 *
 * Every key of a service is ST_SCHEMA_PREFIX(service) followed by one of the
 * ST_KEY_* suffixes; an endpoint's keys are ST_KEY_EP "<endpoint>:" followed
 * by one of the ST_KEY_EP_* suffixes.
 */
#ifndef SHADOWTEE_SCHEMA_H
#define SHADOWTEE_SCHEMA_H

/* The length of a string literal (a macro below), without its NUL. */
#define ST_SCHEMA_LEN(lit) (sizeof(lit) - 1)

/* ---- version ------------------------------------------------------------ */

/* meta.schema as the writer stores it. 1: the first; 2: per-minute latency
 * fields in minute:M. The report reads ST_SCHEMA_MIN..ST_SCHEMA_VERSION and
 * refuses any other. Bump both numbers (and the text) together. */
#define ST_SCHEMA_VERSION     2
#define ST_SCHEMA_VERSION_STR "2"
#define ST_SCHEMA_MIN         1

/* ---- keys --------------------------------------------------------------- */

/* The prefix of every key of a service: "shadowtee:{NAME}:" (the braces are
 * a Redis Cluster hash tag), as a printf format taking the name. */
#define ST_SCHEMA_PREFIX_FMT  "shadowtee:{%s}:"
#define ST_SCHEMA_PREFIX_HEAD "shadowtee:{" /* before the name */
#define ST_SCHEMA_PREFIX_TAIL "}:"          /* after it */

#define ST_KEY_META      "meta"      /* hash, fields ST_META_* */
#define ST_KEY_ENDPOINTS "endpoints" /* set of endpoint names */
#define ST_KEY_MINUTE    "minute:"   /* + ms since epoch / 60000: hash "<counter>|E" */
#define ST_KEY_EP        "ep:"       /* + endpoint name + ST_KEY_EP_SEP + an ST_KEY_EP_* */
#define ST_KEY_EP_SEP    ":"

#define ST_KEY_EP_COUNTS      "counts"      /* hash, fields ST_F_* */
#define ST_KEY_EP_PATHS       "paths"       /* hash "<kind>|<path>" */
#define ST_KEY_EP_NOISE_PATHS "noise_paths" /* hash "<kind>|<path>", noise entries */
#define ST_KEY_EP_LAT_PRIMARY "lat:primary" /* hash, latency histogram fields ST_HIST_* */
#define ST_KEY_EP_LAT_SHADOW  "lat:shadow"
#define ST_KEY_EP_SAMPLES     "samples" /* list of sample JSON, fields ST_S_* */

/* mesh mirroring (the join script's KEYS) */
#define ST_KEY_MESH_HALVES  "mesh:halves"  /* hash "<side>|<request id>" -> half */
#define ST_KEY_MESH_PENDING "mesh:pending" /* zset of the same members, by arrival */
#define ST_KEY_MESH_ORPHANS "mesh:orphans" /* hash ST_MESH_SIDE_* -> count */

/* ---- fields ------------------------------------------------------------- */

/* Between the two parts of a composed field: "<kind>|<path>" (paths,
 * noise_paths), "<counter>|E" (minute:M), "<side>|<request id>" (mesh). */
#define ST_F_SEP "|"

/* meta */
#define ST_META_FIRST_SEEN_MS        "first_seen_ms"
#define ST_META_LAST_SEEN_MS         "last_seen_ms"
#define ST_META_SCHEMA               "schema"
#define ST_META_SERVICE              "service"
#define ST_META_HIST_BOUNDS_MS       "hist_bounds_ms"
#define ST_META_BUCKET_TTL_S         "bucket_ttl_s"
#define ST_META_SAMPLES_PER_ENDPOINT "samples_per_endpoint"
#define ST_META_WRITER_STARTED_MS    "writer_started_ms"

/* ep:E:counts, and the counters of minute:M ("<counter>|E") */
#define ST_F_COMPARED "compared"
#define ST_F_MATCHED  "matched" /* counts only: a minute's is derived */
#define ST_F_DIVERGED "diverged"
#define ST_F_NOISE    "noise"
#define ST_F_ERRORS   "errors"
#define ST_F_TIMEOUTS "timeouts"
/* ep:E:counts only, each a prefix followed by a name */
#define ST_F_ERROR_PREFIX      "error:"      /* + shadow error reason */
#define ST_F_KIND_PREFIX       "kind:"       /* + diff kind: non-noise entries */
#define ST_F_NOISE_KIND_PREFIX "noise_kind:" /* + diff kind: noise entries */
#define ST_F_SOURCE_PREFIX     "source:"     /* + ST_SOURCE_*: compared pairs by source */
#define ST_F_SOURCE_TEE        ST_F_SOURCE_PREFIX "tee"
#define ST_F_SOURCE_MESH       ST_F_SOURCE_PREFIX "mesh"

/* The shadow error reason counted apart as ST_F_TIMEOUTS. */
#define ST_REASON_TIMEOUT "timeout"

/* How a pair was mirrored: ST_S_SOURCE of a sample, ST_F_SOURCE_* of counts. */
#define ST_SOURCE_TEE  "tee"
#define ST_SOURCE_MESH "mesh"

/* Latency histograms: ep:E:lat:*, one field per bound ("%g" of the bound in
 * ms, then ST_HIST_INF), plus count and sum; in minute:M the same fields
 * after the histogram's key suffix and ST_HIST_SEP ("lat:primary:+Inf|E"). */
#define ST_HIST_COUNT  "count"
#define ST_HIST_SUM_MS "sum_ms"
#define ST_HIST_INF    "+Inf"
#define ST_HIST_SEP    ":"

/* The histogram's upper bounds in ms (1 ms .. 60 s, 9 per decade), as
 * X(bound): a bound's field name is #bound ("1", "1.5", ..., "60000"), the
 * same text as "%g" of it (meta.hist_bounds_ms lists them). */
/* clang-format off */
#define ST_HIST_BOUNDS_MS(X)                                                     \
    X(1)     X(1.5)   X(2)     X(2.5)   X(3)     X(4)     X(5)     X(6)     X(8) \
    X(10)    X(15)    X(20)    X(25)    X(30)    X(40)    X(50)    X(60)    X(80) \
    X(100)   X(150)   X(200)   X(250)   X(300)   X(400)   X(500)   X(600)   X(800) \
    X(1000)  X(1500)  X(2000)  X(2500)  X(3000)  X(4000)  X(5000)  X(6000)  X(8000) \
    X(10000) X(15000) X(20000) X(25000) X(30000) X(40000) X(50000) X(60000)
/* clang-format on */

/* mesh:orphans fields, and the <side> of a mesh:halves member */
#define ST_MESH_SIDE_STABLE   "stable"
#define ST_MESH_SIDE_SHADOW   "shadow"
#define ST_MESH_SIDE_BASELINE "baseline"

/* ---- sample JSON (one ep:E:samples element) ------------------------------ */

#define ST_S_TIME_MS     "time_ms"
#define ST_S_REQUEST_ID  "request_id"
#define ST_S_METHOD      "method"
#define ST_S_PATH        "path"
#define ST_S_ENDPOINT    "endpoint"
#define ST_S_VERDICT     "verdict"
#define ST_S_SOURCE      "source" /* ST_SOURCE_* */
#define ST_S_PRIMARY     "primary"
#define ST_S_SHADOW      "shadow"
#define ST_S_DIFFS       "diffs"
#define ST_S_TOTAL_DIFFS "total_diffs"
/* each of primary, shadow */
#define ST_S_LATENCY_MS     "latency_ms"
#define ST_S_STATUS         "status"
#define ST_S_ERROR          "error"
#define ST_S_HEADERS        "headers" /* [[name, value], ...] */
#define ST_S_BODY           "body"
#define ST_S_BODY_TRUNCATED "body_truncated"
#define ST_S_REDACTED       "[REDACTED]" /* a redacted header's value */
/* each element of diffs */
#define ST_S_DIFF_PATH  "path"
#define ST_S_DIFF_KIND  "kind"
#define ST_S_DIFF_A     "a"
#define ST_S_DIFF_B     "b"
#define ST_S_DIFF_DELTA "delta"
#define ST_S_DIFF_NOISE "noise"

#endif
