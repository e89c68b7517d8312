"""Promotion through Prometheus, Flagger and Argo Rollouts.

- The rules (monitoring/shadowtee-rules.yml) pass `promtool check rules` and
  their unit tests (`promtool test rules monitoring/tests/*.yml`: passing,
  failing, under-sampled, noise-subtracted cases), and those tests fail when
  a threshold or the sample guard is changed in a copy.
- The PrometheusRule of k8s/components/monitoring is generated from them and
  stays so (scripts/sync_prometheusrule.py --check).
- The Flagger MetricTemplate and Argo Rollouts AnalysisTemplate queries, as
  rendered by kustomize, evaluated by promtool on the rule tests' series:
  the right value, nothing (Flagger) or -1 (Argo: neither condition, so
  inconclusive) when under-sampled.
- The AnalysisTemplate's gate Job script: exit codes, retries on
  inconclusive, the gate's arguments; once against the real report.
- The real proxy's /metrics passes `promtool check metrics`, and its
  endpoint label is bounded by --max-endpoints.

promtool comes with Debian's `prometheus` package (scripts/deps.sh); without
it these tests skip saying so (and fail under CI=true).
"""
import http.client
import http.server
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import sys

import pytest
import yaml

from conftest import ROOT, require
from report_fill import REPORT, fill
from upstreams import http_role_servers, send_json

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import validate_k8s as vk  # noqa: E402

RULES = os.path.join(ROOT, "monitoring", "shadowtee-rules.yml")
RULE_TESTS = os.path.join(ROOT, "monitoring", "tests", "shadowtee-rules.test.yml")
SYNC = os.path.join(ROOT, "scripts", "sync_prometheusrule.py")
PROMETHEUSRULE = os.path.join(ROOT, "k8s", "components", "monitoring", "prometheusrule.yml")
PY = "/usr/bin/python3"


def promtool():
    return require(shutil.which("promtool"),
                   "promtool is not installed (Debian package prometheus, scripts/deps.sh): rule tests NOT run")


def run_promtool(*args, timeout=120):
    return subprocess.run([promtool()] + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


def load_yaml(path):
    with open(path) as fh:
        return yaml.safe_load(fh)


# ---- the rule file and its unit tests ---------------------------------------


def test_rules_pass_promtool_check():
    n = sum(len(g["rules"]) for g in load_yaml(RULES)["groups"])
    r = run_promtool("check", "rules", RULES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: %d rules found" % n in r.stdout, r.stdout


def test_rule_unit_tests_pass():
    r = run_promtool("test", "rules", RULE_TESTS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout, r.stdout
    names = [t["name"] for t in load_yaml(RULE_TESTS)["tests"]]
    for case in ("passing", "failing", "under-sampled", "noise-subtracted", "noise-subtracted-failing"):
        assert case in names


def _mutated_run(tmp_path, old, new):
    """promtool test rules on a copy whose rule file has `old` replaced."""
    mon = tmp_path / "monitoring"
    (mon / "tests").mkdir(parents=True)
    text = open(RULES).read()
    assert text.count(old) >= 1, old
    (mon / "shadowtee-rules.yml").write_text(text.replace(old, new))
    shutil.copy(RULE_TESTS, mon / "tests")
    return run_promtool("test", "rules", mon / "tests" / os.path.basename(RULE_TESTS))


@pytest.mark.parametrize("old,new,failing_case", [
    ("namespace:shadowtee_divergence_sampled:ratio5m > 0.01", "namespace:shadowtee_divergence_sampled:ratio5m > 0.1",
     "alertname: ShadowteeDivergenceHigh"),                     # the 5% case must fire
    ("namespace:shadowtee_comparable:increase5m >= 100\n", "namespace:shadowtee_comparable:increase5m >= 10\n",
     "namespace:shadowtee_divergence_sampled:ratio5m"),          # the guard lets 25 comparisons through
    ("(namespace:shadowtee_difference:ratio5m - namespace:shadowtee_noise_replica_difference:ratio5m)",
     "(namespace:shadowtee_divergence:ratio5m)", "ShadowteeDivergenceExcessHigh"),  # no subtraction
])
def test_rule_unit_tests_catch_a_changed_rule(tmp_path, old, new, failing_case):
    r = _mutated_run(tmp_path, old, new)
    assert r.returncode != 0, r.stdout
    assert "FAILED" in r.stdout + r.stderr and failing_case in r.stdout + r.stderr, r.stdout + r.stderr


# ---- the PrometheusRule: generated from the rule file -----------------------


def test_prometheusrule_is_generated_from_the_rules(tmp_path):
    r = subprocess.run([PY, SYNC, "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert load_yaml(PROMETHEUSRULE)["spec"] == load_yaml(RULES)
    # its spec is a valid rule file for promtool too
    spec = tmp_path / "spec.yml"
    spec.write_text(yaml.safe_dump(load_yaml(PROMETHEUSRULE)["spec"]))
    c = run_promtool("check", "rules", spec)
    assert c.returncode == 0, c.stdout + c.stderr
    # a rule edited without regenerating is caught, and regenerating fixes it
    rules, out = tmp_path / "rules.yml", tmp_path / "pr.yml"
    rules.write_text(open(RULES).read().replace("> 0.01", "> 0.02", 1))
    shutil.copy(PROMETHEUSRULE, out)
    r = subprocess.run([PY, SYNC, "--check", "--rules", rules, "--out", out], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "out of date" in r.stderr, r
    r = subprocess.run([PY, SYNC, "--rules", rules, "--out", out], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert load_yaml(out)["spec"] == load_yaml(rules) and "> 0.02" in out.read_text()
    r = subprocess.run([PY, SYNC, "--check", "--rules", rules, "--out", out], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_sync_refuses_a_rule_file_with_more_than_groups(tmp_path):
    bad = tmp_path / "rules.yml"
    bad.write_text(open(RULES).read() + "extra: 1\n")
    r = subprocess.run([PY, SYNC, "--rules", bad, "--out", tmp_path / "o.yml"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "only 'groups:'" in r.stderr, r
    assert not (tmp_path / "o.yml").exists()


# ---- the Flagger and Argo Rollouts queries, on the same series ---------------


def _rendered(component):
    require(vk.kubectl_path(), "kubectl is not installed: cannot render the components (not a pass)")
    return vk.load_documents(vk.render_with_components(os.path.join(ROOT, "k8s"), "production", [component]))


def _one(docs, kind):
    (d,) = [d for d in docs if d["kind"] == kind]
    return d


def _flagger_query(ns):
    docs = _rendered("flagger")
    canary, mt = _one(docs, "Canary"), _one(docs, "MetricTemplate")
    (metric,) = canary["spec"]["analysis"]["metrics"]
    q = mt["spec"]["query"]
    values = {"namespace": ns, "target": canary["spec"]["targetRef"]["name"], "interval": metric["interval"]}
    values.update({"variables." + k: v for k, v in metric["templateVariables"].items()})
    q = re.sub(r"{{\s*([A-Za-z0-9_.]+)\s*}}", lambda m: values[m.group(1)], q)
    return " ".join(q.split()), metric  # Flagger collapses whitespace


def _argo(ns):
    at = _one(_rendered("argo-rollouts"), "AnalysisTemplate")
    args = {a["name"]: a.get("value") for a in at["spec"]["args"]}
    args["namespace"] = ns  # valueFrom fieldRef metadata.namespace: the Rollout's namespace

    def sub(text):
        return re.sub(r"{{\s*args\.([A-Za-z0-9_.-]+?)\s*}}", lambda m: args[m.group(1)], text)

    (metric,) = [m for m in at["spec"]["metrics"] if "prometheus" in m["provider"]]
    return sub(metric["provider"]["prometheus"]["query"]), sub(metric["successCondition"]), \
        sub(metric["failureCondition"]), metric, at


def _argo_phase(success, failure, value):
    """Argo's verdict for one measurement from its two conditions (expr:
    `result[0] >= 0 && result[0] <= 1` evaluated on [value])."""
    def ev(cond):
        expr = cond.replace("&&", " and ").replace("||", " or ")
        assert re.fullmatch(r"[\sresult\[\]0-9.<>=!andor-]+", expr), cond
        return eval(expr, {"__builtins__": {}}, {"result": [value]})
    if ev(failure):
        return "Failed"
    return "Successful" if ev(success) else "Inconclusive"


# case of monitoring/tests/shadowtee-rules.test.yml -> (Flagger %, Argo %).
# The cases' pods are named as a Deployment's or a Rollout's
# (<name>-<hash>-<id>): what the AnalysisTemplate's stable-pods selects. For
# Flagger the same series are renamed as its primary's pods
# (<name>-primary-<hash>-<id>), except in the case that has both kinds.
# None: no sample (Flagger: "no values found", a failed check); -1: the
# Argo query's under-sampled answer.
EXPECTED = {
    "passing": (0.5, 0.5),
    "failing": (5, 5),
    "under-sampled": (None, -1),
    "noise-subtracted": (3, 3),
    "flagger-primary-and-canary-pods": (0.5, 50),  # Flagger: primary only; Argo: not "-primary-"
}
STABLE_POD = "flask-inference-server-stable-5d8c7b9f4-x2x7k"


def test_flagger_and_argo_queries_on_the_rule_test_series(tmp_path):
    promtool()
    cases = {t["name"]: t for t in load_yaml(RULE_TESTS)["tests"]}
    tests = []
    for name, (flg, argo) in EXPECTED.items():
        case = cases[name]
        ns = re.search(r'namespace="([^"]+)"', case["input_series"][0]["series"]).group(1)
        fq, canary_metric = _flagger_query(ns)
        aq, success, failure, argo_metric, _ = _argo(ns)
        flagger_series = [dict(s, series=s["series"].replace(STABLE_POD, STABLE_POD.replace("-stable-", "-stable-primary-")))
                          for s in case["input_series"]]
        for who, series, expr, v in (("flagger", flagger_series, fq, flg), ("argo", case["input_series"], aq, argo)):
            tests.append({"name": "%s: %s" % (who, name), "interval": case["interval"], "input_series": series,
                          "promql_expr_test": [{"expr": "round(%s, 0.001)" % expr, "eval_time": "20m",
                                                "exp_samples": [] if v is None else [{"labels": "{}", "value": v}]}]})
        # what Flagger and Argo make of those values
        lo, hi = canary_metric["thresholdRange"].get("min"), canary_metric["thresholdRange"]["max"]
        want_flagger = {"passing": "ok", "failing": "halt", "under-sampled": "halt (no values)",
                        "noise-subtracted": "halt", "flagger-primary-and-canary-pods": "ok"}[name]
        got_flagger = "halt (no values)" if flg is None else ("ok" if (lo is None or flg >= lo) and flg <= hi else "halt")
        assert got_flagger == want_flagger, name
        want_argo = {"passing": "Successful", "failing": "Failed", "under-sampled": "Inconclusive",
                     "noise-subtracted": "Failed", "flagger-primary-and-canary-pods": "Failed"}[name]
        assert _argo_phase(success, failure, argo) == want_argo, (name, success, failure, argo)
    assert argo_metric["inconclusiveLimit"] == 0  # one inconclusive measurement pauses, never passes
    f = tmp_path / "queries.test.yml"
    f.write_text(yaml.safe_dump({"evaluation_interval": "1m", "tests": tests}))
    r = run_promtool("test", "rules", f)
    assert r.returncode == 0, r.stdout + r.stderr + f.read_text()


# ---- the gate Job of the AnalysisTemplate -----------------------------------

STANDIN = """#!/usr/bin/python3
import json, os, sys
with open(os.environ["STANDIN_LOG"], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
codes = open(os.environ["STANDIN_CODES"]).read().split()
n = sum(1 for _ in open(os.environ["STANDIN_LOG"]))
sys.exit(int(codes[min(n, len(codes)) - 1]))
"""


def _gate_job():
    _, _, _, _, at = _argo("ns")
    (metric,) = [m for m in at["spec"]["metrics"] if "job" in m["provider"]]
    job = metric["provider"]["job"]
    (c,) = job["spec"]["template"]["spec"]["containers"]
    args = {a["name"]: a.get("value") for a in at["spec"]["args"]}
    sub = lambda t: re.sub(r"{{\s*args\.([A-Za-z0-9_.-]+?)\s*}}", lambda m: args[m.group(1)], t)  # noqa: E731
    env = {}
    for e in c["env"]:  # the kubelet's $(VAR) expansion, in order
        env[e["name"]] = "pw0rd" if "valueFrom" in e else \
            re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), sub(e["value"]))
    return c["command"] + [sub(a) for a in c["args"]], env, args, job


def _run_gate(tmp_path, codes, **over):
    argv, env, args, _ = _gate_job()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "shadowtee-report").write_text(STANDIN)
    (bin_dir / "shadowtee-report").chmod(0o755)
    log, codes_file = tmp_path / "calls.jsonl", tmp_path / "codes"
    if log.exists():
        log.unlink()
    codes_file.write_text(" ".join(map(str, codes)))
    env.update(PATH="%s:/usr/bin:/bin" % bin_dir, STANDIN_LOG=str(log), STANDIN_CODES=str(codes_file),
               GATE_RETRY_SECONDS="0", **over)
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return p, calls, args


@pytest.mark.parametrize("codes,rc,ncalls", [
    ([0], 0, 1),            # pass
    ([1], 1, 1),            # fail: at once, no retry
    ([2], 2, 1),            # error (Redis unreachable, ...): the Job fails
    ([3, 3, 0], 0, 3),      # inconclusive twice, then enough comparisons: pass
    ([3, 1], 1, 2),         # inconclusive, then fail
])
def test_gate_job_exit_codes(tmp_path, codes, rc, ncalls):
    p, calls, args = _run_gate(tmp_path, codes)
    assert p.returncode == rc, p.stderr
    assert len(calls) == ncalls
    want = ["--redis", "redis://:pw0rd@flask-inference-redis:6379/0", "--service", args["service"],
            "--since", args["gate-since"], "--format", "text", "--gate",
            "--max-divergence", args["max-divergence-pct"], "--max-shadow-errors", args["max-shadow-errors-pct"],
            "--max-latency-ratio", args["max-latency-ratio"], "--min-compared", args["min-compared"]]
    assert calls[0] == want


def test_gate_job_gives_up_inconclusive_after_its_tries(tmp_path):
    p, calls, args = _run_gate(tmp_path, [3])
    assert p.returncode == 3  # the Job fails: no evidence by the deadline is no promotion
    assert len(calls) == int(args["gate-tries"])
    assert "still inconclusive after %s tries: not promoting" % args["gate-tries"] in p.stderr
    _, _, _, job = _gate_job()
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] > int(args["gate-tries"]) * int(args["gate-retry-seconds"])


def test_gate_job_with_the_real_report(tmp_path, redis_server):
    """The Job's script with the real shadowtee-report: a shadow that was bad
    ten minutes ago fails a 30m window; a 2m window passes."""
    from test_report import _window_spec
    fill(redis_server.port, _window_spec("flask-inference"))
    argv, env, _, _ = _gate_job()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(REPORT, bin_dir / "shadowtee-report")
    env.update(PATH="%s:/usr/bin:/bin" % bin_dir, GATE_RETRY_SECONDS="0", GATE_MAX_LATENCY_RATIO="2",
               SHADOWTEE_REDIS="redis://127.0.0.1:%d/0" % redis_server.port)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "GATE FAIL service=flask-inference" in p.stdout, p.stdout + p.stderr
    p = subprocess.run(argv, env=dict(env, GATE_SINCE="2m"), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "GATE PASS service=flask-inference" in p.stdout, p.stdout + p.stderr
    p = subprocess.run(argv, env=dict(env, GATE_SINCE="2m", GATE_MIN_COMPARED="5000", GATE_TRIES="2"),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3 and p.stdout.count("GATE INCONCLUSIVE") == 2, p.stdout + p.stderr


# ---- /metrics of the real proxy ----------------------------------------------


class _Json(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    role = "primary"

    def log_message(self, *a):
        pass

    def do_GET(self):
        doc = {"path": self.path, "label": "dog" if self.role == "shadow" and self.path == "/b" else "cat",
               "nonce": self.role == "noise"}  # the noise replica always differs here
        body = json.dumps(doc).encode()
        send_json(self, body)


@pytest.fixture
def json_apps():
    yield from http_role_servers(_Json)


def _metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


def _series(text, name):
    out = {}
    for line in text.splitlines():
        m = re.match(r"^%s(\{.*\})? (\S+)$" % re.escape(name), line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def test_metrics_exposition_valid_and_endpoints_bounded(shadowtee, json_apps):
    st = shadowtee(primary=json_apps("primary"), workers=2, shadow=json_apps("shadow"),
                   noise_upstream=json_apps("noise"), mirror_percent=100, max_endpoints=2)
    paths = ["/a", "/b", "/c", "/d", "/e"]
    for i, path in enumerate(paths):  # one after the other: the order they are first seen
        conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
        for _ in range(3):
            conn.request("GET", path)
            assert conn.getresponse().read()
        conn.close()
        deadline = time.monotonic() + 10
        while sum(_series(_metrics(st.admin_port), "shadowtee_comparisons_total").values()) < 3 * (i + 1):
            assert time.monotonic() < deadline, _metrics(st.admin_port)
            time.sleep(0.02)
    text = _metrics(st.admin_port)
    r = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    eps = _series(text, "shadowtee_endpoint_comparisons_total")
    assert eps == {'{endpoint="GET /a"}': 3, '{endpoint="GET /b"}': 3, '{endpoint="{other}"}': 9}, eps
    for fam in ("shadowtee_endpoint_divergences_total", "shadowtee_endpoint_noise_total",
                "shadowtee_endpoint_shadow_errors_total"):
        assert set(_series(text, fam)) == set(eps), fam
    assert _series(text, "shadowtee_endpoint_divergences_total")['{endpoint="GET /b"}'] == 3
    res = _series(text, "shadowtee_comparisons_total")
    assert sum(res.values()) == sum(eps.values()) == 15
    base = _series(text, "shadowtee_noise_replica_comparisons_total")
    assert base == {'{result="match"}': 0, '{result="diverged"}': 15}, base
    # the label set stays: more traffic on the folded endpoints moves nothing
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    for _ in range(10):
        conn.request("GET", "/e")
        assert conn.getresponse().read()
    conn.close()
    deadline = time.monotonic() + 10
    while sum(_series(_metrics(st.admin_port), "shadowtee_comparisons_total").values()) < 25:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    eps2 = _series(_metrics(st.admin_port), "shadowtee_endpoint_comparisons_total")
    assert eps2 == {'{endpoint="GET /a"}': 3, '{endpoint="GET /b"}': 3, '{endpoint="{other}"}': 19}, eps2
