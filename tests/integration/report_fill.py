"""Helpers for the shadowtee-report tests.

- fill(): writes comparisons into a real Redis through the real stats module
  (the driver binary build/tests/test_stats_fill, tests/unit/test_stats_fill.c)
  from a spec:
    {"service": NAME, "password": PW?, "db": N?, "samples_per_endpoint": N?,
     "records": [{"endpoint", "method", "path", "request_id",
                  "verdict": "match|diverged|noise|error", "shadow_error",
                  "primary_ms", "shadow_ms", "ago_s", "repeat",
                  "diffs": [{"path", "kind", "a", "b", "delta", "noise"}],
                  "primary": {"status", "headers": [[n, v]], "body"},
                  "shadow": {...}}]}
- report(): runs build/shadowtee-report, checks for sanitizer reports.
- wilson(): the reference Wilson interval.
- REPORT_SCHEMA: JSON Schema of --format json (docs/REPORT.md).
- chromium helpers: headless DOM dump and screenshot of a file.
"""
import json
import math
import os
import shutil
import subprocess
import tempfile

from conftest import BUILD

REPORT = os.path.join(BUILD, "shadowtee-report")
FILL = os.path.join(BUILD, "tests", "test_stats_fill")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def _wrap(argv):
    if os.environ.get("SHADOWTEE_VALGRIND") == "1":
        return ["valgrind", "-q", "--leak-check=full", "--errors-for-leak-kinds=definite",
                "--error-exitcode=99"] + argv
    return argv


def fill(redis_port, spec):
    assert os.path.exists(FILL), "%s is not built (make unit)" % FILL
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        path = f.name
    try:
        env = dict(os.environ, ST_FILL_SPEC=path, ST_TEST_REDIS_PORT=str(redis_port))
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        p = subprocess.run(_wrap([FILL]), env=env, capture_output=True, text=True, timeout=120)
    finally:
        os.unlink(path)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "FILLED" in out and "SKIPPED" not in out, out
    return out


class Result:
    def __init__(self, p):
        self.rc = p.returncode
        self.out = p.stdout
        self.err = p.stderr

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return "rc=%s\nstdout:\n%s\nstderr:\n%s" % (self.rc, self.out, self.err)


def report(*args, timeout=60):
    assert os.path.exists(REPORT), "%s is not built (make)" % REPORT
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    p = subprocess.run(_wrap([REPORT] + [str(a) for a in args]), capture_output=True, text=True,
                       timeout=timeout, env=env)
    r = Result(p)
    for m in SANITIZER_MARKERS:
        assert m not in r.err, "sanitizer report from shadowtee-report:\n%r" % r
    assert r.rc != 99, "valgrind report from shadowtee-report:\n%r" % r
    return r


def wilson(x, n, z=1.959963984540054):
    if n == 0:
        return (0.0, 1.0)
    p = x / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (0.0 if x == 0 else max(0.0, center - half), 1.0 if x == n else min(1.0, center + half))


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium_argv(exe, profile):
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--user-data-dir=" + profile]


def chromium_dump_dom(exe, html_path):
    profile = tempfile.mkdtemp(prefix="st-chromium-")
    try:
        p = subprocess.run(_chromium_argv(exe, profile) + ["--dump-dom", "file://" + html_path],
                           capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def chromium_screenshot(exe, html_path, png_path, size="1200,2000"):
    profile = tempfile.mkdtemp(prefix="st-chromium-")
    try:
        p = subprocess.run(_chromium_argv(exe, profile) +
                           ["--window-size=" + size, "--screenshot=" + png_path,
                            "file://" + html_path],
                           capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert p.returncode == 0, p.stderr[-2000:]
    return png_path


_NUM = {"type": "number"}
_INT = {"type": "integer", "minimum": 0}
_RATE = {"type": "number", "minimum": 0, "maximum": 1}
_CI = {"oneOf": [{"type": "null"},
                 {"type": "array", "items": _RATE, "minItems": 2, "maxItems": 2}]}
_MS = {"type": ["number", "null"]}
_HIST = {"type": "object", "required": ["count", "mean_ms", "p50_ms", "p99_ms"],
         "properties": {"count": _INT, "mean_ms": _MS, "p50_ms": _MS, "p99_ms": _MS}}
_LAT = {"type": "object", "required": ["stable", "shadow", "p50_ratio", "p99_ratio"],
        "properties": {"stable": _HIST, "shadow": _HIST, "p50_ratio": _MS, "p99_ratio": _MS}}
_PATHS = {"type": "array", "items": {
    "type": "object", "required": ["path", "kind", "count"],
    "properties": {"path": {"type": "string"}, "kind": {"type": "string"}, "count": _INT}}}
_TALLY = {"compared": _INT, "comparable": _INT, "matched": _INT, "diverged": _INT, "noise": _INT,
          "shadow_errors": _INT, "shadow_timeouts": _INT, "divergence_rate": _RATE,
          "divergence_ci95": _CI, "noise_rate": _RATE, "shadow_error_rate": _RATE,
          "shadow_timeout_rate": _RATE}

_SOURCES = {"type": "object", "required": ["tee", "mesh"],
            "properties": {"tee": {"type": "integer", "minimum": 0},
                           "mesh": {"type": "integer", "minimum": 0}}, "additionalProperties": False}

REPORT_SCHEMA = {
    "type": "object",
    "required": ["schema", "service", "generated_ms", "data_schema", "endpoint_filter", "window", "latency",
                 "endpoints", "samples", "timeline", "gate", "sources", "mesh"] + list(_TALLY),
    "properties": dict(_TALLY, **{
        "schema": {"const": 1},
        "service": {"type": "string"},
        "generated_ms": _INT,
        "endpoint_filter": {"type": ["string", "null"]},
        "window": {"type": "object",
                   "required": ["since_s", "latency_windowed", "start_ms", "end_ms", "duration_s",
                                "first_seen_ms", "last_seen_ms"],
                   "properties": {"since_s": {"type": ["integer", "null"]},
                                  "latency_windowed": {"type": "boolean"}, "start_ms": _INT,
                                  "end_ms": _INT, "duration_s": _INT, "first_seen_ms": _INT,
                                  "last_seen_ms": _INT}},
        "latency": _LAT,
        "sources": _SOURCES,
        "mesh": {"oneOf": [{"type": "null"}, {
            "type": "object", "required": ["orphans", "pending"],
            "properties": {"pending": _INT, "orphans": {
                "type": "object", "required": ["stable", "shadow", "baseline"],
                "additionalProperties": _INT}}}]},
        "endpoints": {"type": "array", "items": {
            "type": "object",
            "required": ["endpoint", "paths", "noise_paths", "kinds", "errors_by_reason",
                         "latency", "samples", "sources"] + list(_TALLY),
            "properties": dict(_TALLY, **{
                "endpoint": {"type": "string"}, "paths": _PATHS, "noise_paths": _PATHS,
                "kinds": {"type": "object", "additionalProperties": _INT},
                # only in endpoints with noise entries (counts' noise_kind:*)
                "noise_kinds": {"type": "object", "minProperties": 1,
                                "additionalProperties": _INT},
                "errors_by_reason": {"type": "object", "additionalProperties": _INT},
                "latency": _LAT, "samples": _INT, "sources": _SOURCES})}},
        "samples": {"type": "array", "items": {
            "type": "object",
            "required": ["endpoint", "time_ms", "request_id", "method", "path", "primary",
                         "shadow", "diffs", "source"],
            "properties": {"source": {"enum": ["tee", "mesh"]}, "diffs": {"type": "array", "items": {
                "type": "object", "required": ["path", "kind", "a", "b", "delta", "noise"]}}}}},
        "timeline": {"type": "array", "items": {
            "type": "object",
            "required": ["minute_ms", "compared", "diverged", "noise", "shadow_errors",
                         "shadow_timeouts", "divergence_rate"]}},
        "data_schema": {"type": ["integer", "null"]},
        "gate": {"oneOf": [{"type": "null"}, {
            "type": "object", "required": ["passed", "result", "verdict", "checks"],
            "properties": {"passed": {"type": "boolean"}, "verdict": {"type": "string"},
                           "result": {"enum": ["pass", "fail", "inconclusive"]},
                           "checks": {"type": "array", "items": {
                               "type": "object",
                               "required": ["name", "value", "threshold", "evaluated", "passed",
                                            "result", "ci95_pct", "text"],
                               "properties": {
                                   "result": {"enum": ["pass", "fail", "inconclusive"]},
                                   "ci95_pct": {"oneOf": [{"type": "null"}, {
                                       "type": "array", "minItems": 2, "maxItems": 2,
                                       "items": {"type": "number", "minimum": 0,
                                                 "maximum": 100}}]}}}}}}]},
    }),
}
