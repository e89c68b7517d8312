"""scripts/deploy, scripts/promote, scripts/rollback with stand-in kubectl and
shadowtee-report commands (written by the test into a temp dir on PATH) that
record their argv: the exact commands, the refusal on a failing gate, and
--dry-run running nothing. The blue/green JSON patches are also applied with
the real kubectl (`patch --local`, offline) to the rendered VirtualService."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, require

SCRIPTS = os.path.join(ROOT, "scripts")
STABLE = "deployment/flask-inference-server-stable"
NS = {"development": "shadowtee-dev", "staging": "shadowtee-staging", "production": "shadowtee-production"}
ROLLOUT_ORDER = ["flask-inference-redis", "flask-inference-server-shadow", "flask-inference-server-stable",
                 "flask-inference-server-canary", "flask-inference-server-blue", "flask-inference-server-green"]

STANDIN = """#!/usr/bin/python3
import json, os, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["STANDIN_LOG"], "a") as fh:
    fh.write(json.dumps([name] + sys.argv[1:]) + "\\n")
fail = os.environ.get("STANDIN_FAIL_%s" % name.upper().replace("-", "_"), "")
if fail and fail in " ".join(sys.argv[1:]):
    sys.exit(int(os.environ.get("STANDIN_FAIL_RC", "1")))
sys.exit(0)
"""


class Tools:
    """A temp bin dir with stand-in kubectl and shadowtee-report."""

    def __init__(self, tmp_path):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.log = tmp_path / "calls.jsonl"
        for name in ("kubectl", "shadowtee-report"):
            p = self.bin / name
            p.write_text(STANDIN)
            p.chmod(0o755)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SHADOWTEE_", "STANDIN_")) and k != "KUBECTL"}
        self.env.update(PATH="%s:%s" % (self.bin, os.environ["PATH"]), STANDIN_LOG=str(self.log),
                        SHADOWTEE_BUILD=str(tmp_path / "no-build"))

    def run(self, script, *args, **env):
        e = dict(self.env, **env)
        return subprocess.run([os.path.join(SCRIPTS, script)] + list(args), env=e, capture_output=True,
                              text=True, timeout=60)

    def calls(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def tools(tmp_path):
    return Tools(tmp_path)


def printed(stdout):
    return [line for line in stdout.splitlines() if line.startswith("+ ")]


def gate_argv(redis="redis://127.0.0.1:6379/0"):
    return ["shadowtee-report", "--redis", redis, "--service", "flask-inference", "--format", "text", "--gate",
            "--max-divergence", "1", "--max-shadow-errors", "1", "--max-latency-ratio", "1.5", "--min-compared", "100"]


def test_scripts_pass_shellcheck():
    require(shutil.which("shellcheck"), "shellcheck is not installed (make deps): lint NOT run")
    names = ["deploy", "promote", "rollback", "demo.sh", "deps.sh", "fresh-root-check.sh"]
    files = [os.path.join(SCRIPTS, n) for n in names] + [os.path.join(ROOT, ".ci", "run")]
    r = subprocess.run(["shellcheck"] + files, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout


# ---- deploy -----------------------------------------------------------------


def test_deploy_development(tools):
    r = tools.run("deploy", "development")
    assert r.returncode == 0, r.stderr
    env_dir = os.path.join(ROOT, "k8s", "environments", "development")
    want = [["kubectl", "apply", "-k", env_dir]]
    want += [["kubectl", "-n", "shadowtee-dev", "rollout", "status", "deployment/" + d, "--timeout=300s"] for d in ROLLOUT_ORDER]
    assert tools.calls() == want
    assert printed(r.stdout) == ["+ " + " ".join(c) for c in want]


@pytest.mark.parametrize("env", ["staging", "production"])
def test_deploy_checks_the_secret_first(tools, env):
    r = tools.run("deploy", env, "--timeout", "2m")
    assert r.returncode == 0, r.stderr
    calls = tools.calls()
    assert calls[0] == ["kubectl", "-n", NS[env], "get", "secret", "flask-inference-redis", "-o", "name"]
    assert calls[1] == ["kubectl", "apply", "-k", os.path.join(ROOT, "k8s", "environments", env)]
    assert calls[2:] == [["kubectl", "-n", NS[env], "rollout", "status", "deployment/" + d, "--timeout=2m"]
                         for d in ROLLOUT_ORDER]


def test_deploy_refuses_without_the_secret(tools):
    r = tools.run("deploy", "production", STANDIN_FAIL_KUBECTL="get secret")
    assert r.returncode == 1
    assert "Secret flask-inference-redis missing in namespace shadowtee-production" in r.stderr
    assert [c[1:3] for c in tools.calls()] == [["-n", "shadowtee-production"]]  # only the get, no apply


def test_deploy_stops_on_a_failed_rollout(tools):
    r = tools.run("deploy", "staging", STANDIN_FAIL_KUBECTL="flask-inference-server-stable")
    assert r.returncode == 1
    assert "deployment/flask-inference-server-stable did not become ready in shadowtee-staging" in r.stderr
    assert tools.calls()[-1][5] == "deployment/flask-inference-server-stable"  # canary etc. not waited on


def test_deploy_dry_run_runs_nothing(tools):
    r = tools.run("deploy", "production", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert tools.calls() == []
    lines = printed(r.stdout)
    assert lines[0] == "+ kubectl -n shadowtee-production get secret flask-inference-redis -o name"
    assert lines[1] == "+ kubectl apply -k " + os.path.join(ROOT, "k8s", "environments", "production")
    assert len(lines) == 2 + len(ROLLOUT_ORDER)
    assert "dry run" in r.stdout


@pytest.mark.parametrize("script", ["deploy", "promote", "rollback"])
@pytest.mark.parametrize("args,message", [
    ([], "missing environment"),
    (["qa"], "unknown environment 'qa'"),
    (["staging", "--bogus"], "unknown option --bogus"),
    (["staging", "production"], "one environment only"),
    (["staging", "--timeout", "soon"], "--timeout must look like 300s"),
])
def test_usage_errors_exit_2(tools, script, args, message):
    r = tools.run(script, *args)
    assert r.returncode == 2
    assert message in r.stderr and "usage: scripts/%s" % script in r.stderr
    assert tools.calls() == []


def test_missing_kubectl_exits_2(tools):
    r = tools.run("deploy", "development", KUBECTL="no-such-kubectl")
    assert r.returncode == 2 and "no-such-kubectl not found" in r.stderr


# ---- promote ----------------------------------------------------------------


def test_promote_image_after_passing_gate(tools):
    r = tools.run("promote", "staging", "--image", "ghcr.io/shadowtee/flask-inference:v2")
    assert r.returncode == 0, r.stderr
    assert tools.calls() == [
        gate_argv(),
        ["kubectl", "-n", "shadowtee-staging", "set", "image", STABLE, "flask-inference=ghcr.io/shadowtee/flask-inference:v2"],
        ["kubectl", "-n", "shadowtee-staging", "rollout", "status", STABLE, "--timeout=300s"],
    ]
    assert "undo: scripts/rollback staging" in r.stdout


def test_promote_gate_settings_from_environment(tools):
    r = tools.run("promote", "production", "--image", "img:2", SHADOWTEE_REDIS_URL="redis://:hunter2@127.0.0.1:6390/1",
                  SHADOWTEE_SERVICE="svc-x", SHADOWTEE_MAX_DIVERGENCE="0.5", SHADOWTEE_MAX_SHADOW_ERRORS="2",
                  SHADOWTEE_MAX_LATENCY_RATIO="1.2", SHADOWTEE_MIN_COMPARED="500")
    assert r.returncode == 0, r.stderr
    assert tools.calls()[0] == ["shadowtee-report", "--redis", "redis://:hunter2@127.0.0.1:6390/1", "--service", "svc-x",
                                "--format", "text", "--gate", "--max-divergence", "0.5", "--max-shadow-errors", "2",
                                "--max-latency-ratio", "1.2", "--min-compared", "500"]
    assert "hunter2" not in r.stdout and "redis://:***@127.0.0.1:6390/1" in r.stdout


@pytest.mark.parametrize("rc,message", [(1, "gate FAILED for production"), (2, "gate could not be evaluated (report exit 2)")])
def test_promote_refuses_when_gate_does_not_pass(tools, rc, message):
    r = tools.run("promote", "production", "--image", "img:2", STANDIN_FAIL_SHADOWTEE_REPORT="--gate",
                  STANDIN_FAIL_RC=str(rc))
    assert r.returncode == 1
    assert message in r.stderr and "refusing to promote" in r.stderr
    assert tools.calls() == [gate_argv()]  # no kubectl at all


@pytest.mark.parametrize("strategy", [["--image", "img:2"], ["--strategy", "bluegreen"]])
def test_promote_inconclusive_gate_is_not_yet(tools, strategy):
    """Exit 3 from the gate (too few comparisons to decide) is "not yet":
    its own exit code and message, never a promotion, never a "FAILED"."""
    r = tools.run("promote", "staging", *strategy, STANDIN_FAIL_SHADOWTEE_REPORT="--gate",
                  STANDIN_FAIL_RC="3")
    assert r.returncode == 3, r.stderr
    assert "gate INCONCLUSIVE for staging: too few comparisons to decide yet" in r.stderr
    assert "not promoting now (nothing changed)" in r.stderr
    assert "FAILED" not in r.stderr and "could not be evaluated" not in r.stderr
    assert [c[0] for c in tools.calls()] == ["shadowtee-report"]  # no kubectl at all


def test_promote_since_windows_the_gate(tools):
    r = tools.run("promote", "development", "--image", "img:2", SHADOWTEE_SINCE="30m")
    assert r.returncode == 0, r.stderr
    assert tools.calls()[0] == gate_argv() + ["--since", "30m"]


def test_promote_bluegreen_refuses_on_failing_gate(tools):
    r = tools.run("promote", "development", "--strategy", "bluegreen", STANDIN_FAIL_SHADOWTEE_REPORT="--gate")
    assert r.returncode == 1 and [c[0] for c in tools.calls()] == ["shadowtee-report"]


def test_promote_report_command_is_configurable(tools, tmp_path):
    custom = tmp_path / "my-report"
    shutil.copy(tools.bin / "shadowtee-report", custom)
    r = tools.run("promote", "development", "--image", "img:2", SHADOWTEE_REPORT=str(custom))
    assert r.returncode == 0, r.stderr
    assert tools.calls()[0][0] == "my-report"
    # SHADOWTEE_BUILD/shadowtee-report wins over PATH when it is built
    build = tmp_path / "no-build"
    build.mkdir()
    shutil.copy(tools.bin / "shadowtee-report", build / "shadowtee-report")
    tools.log.unlink()
    r = tools.run("promote", "development", "--image", "img:2")
    assert r.returncode == 0 and ("+ %s --redis" % (build / "shadowtee-report")) in r.stdout


def test_promote_missing_report_exits_2(tools):
    r = tools.run("promote", "development", "--image", "img:2", SHADOWTEE_REPORT="no-such-report")
    assert r.returncode == 2 and "report command 'no-such-report' not found" in r.stderr
    assert tools.calls() == []


def test_promote_dry_run_runs_nothing(tools):
    r = tools.run("promote", "production", "--image", "img:2", "--dry-run", STANDIN_FAIL_SHADOWTEE_REPORT="--gate")
    assert r.returncode == 0, r.stderr
    assert tools.calls() == []
    assert printed(r.stdout) == ["+ " + " ".join(gate_argv()),
                                 "+ kubectl -n shadowtee-production set image %s flask-inference=img:2" % STABLE,
                                 "+ kubectl -n shadowtee-production rollout status %s --timeout=300s" % STABLE]


@pytest.mark.parametrize("args,message", [
    (["staging"], "--strategy image needs --image IMAGE"),
    (["staging", "--strategy", "bluegreen", "--image", "x"], "--image does not apply to --strategy bluegreen"),
    (["staging", "--strategy", "yolo"], "--strategy must be image or bluegreen"),
])
def test_promote_usage(tools, args, message):
    r = tools.run("promote", *args)
    assert r.returncode == 2 and message in r.stderr and tools.calls() == []


# ---- rollback ---------------------------------------------------------------


def test_rollback_undoes_stable(tools):
    r = tools.run("rollback", "production")
    assert r.returncode == 0, r.stderr
    assert tools.calls() == [["kubectl", "-n", "shadowtee-production", "rollout", "undo", STABLE],
                             ["kubectl", "-n", "shadowtee-production", "rollout", "status", STABLE, "--timeout=300s"]]


def test_rollback_to_revision(tools):
    r = tools.run("rollback", "staging", "--to-revision", "3")
    assert r.returncode == 0
    assert tools.calls()[0] == ["kubectl", "-n", "shadowtee-staging", "rollout", "undo", STABLE, "--to-revision=3"]
    r = tools.run("rollback", "staging", "--to-revision", "0")
    assert r.returncode == 2 and "--to-revision must be a positive integer" in r.stderr


def test_rollback_failure_is_reported(tools):
    r = tools.run("rollback", "staging", STANDIN_FAIL_KUBECTL="rollout undo")
    assert r.returncode == 1 and "rollout undo failed" in r.stderr
    assert len(tools.calls()) == 1


def test_rollback_dry_run_runs_nothing(tools):
    for args in (["development", "--dry-run"], ["development", "--strategy", "bluegreen", "--dry-run"]):
        r = tools.run("rollback", *args)
        assert r.returncode == 0, r.stderr
        assert len(printed(r.stdout)) >= 1
    assert tools.calls() == []


# ---- blue/green: the recorded patches work on the real VirtualService --------


def bluegreen_patches(tools):
    assert tools.run("promote", "staging", "--strategy", "bluegreen").returncode == 0
    assert tools.run("rollback", "staging", "--strategy", "bluegreen").returncode == 0
    calls = [c for c in tools.calls() if c[0] == "kubectl"]
    assert [c[:6] for c in calls] == [["kubectl", "-n", "shadowtee-staging", "patch", "virtualservice/flask-inference-server",
                                       "--type=json"]] * 2
    assert [c[6] for c in calls] == ["-p", "-p"]
    return calls[0][7], calls[1][7]


def kubectl_patch_local(path, patch):
    return subprocess.run(["kubectl", "patch", "--local", "-f", str(path), "--type=json", "-p", patch, "-o", "json"],
                          capture_output=True, text=True, timeout=60)


def test_bluegreen_patches_flip_the_rendered_route(tools, tmp_path):
    require(shutil.which("kubectl", path=os.environ["PATH"]),
            "kubectl is not installed (in no Debian archive): the patches NOT applied offline")
    to_green, to_blue = bluegreen_patches(tools)
    out = subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, "k8s", "environments", "staging")],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    (vs,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "VirtualService"]
    f = tmp_path / "vs.yaml"
    f.write_text(yaml.safe_dump(vs))

    def weights(doc):
        return {d["destination"]["subset"]: d["weight"] for d in doc["spec"]["http"][1]["route"]}

    assert weights(vs) == {"blue": 100, "green": 0}
    assert kubectl_patch_local(f, to_blue).returncode != 0  # already on blue: the test op refuses
    r = kubectl_patch_local(f, to_green)
    assert r.returncode == 0, r.stderr
    green = json.loads(r.stdout)
    assert weights(green) == {"blue": 0, "green": 100}
    assert green["spec"]["http"][2] == vs["spec"]["http"][2]  # primary route (mirror) untouched
    f.write_text(json.dumps(green))
    assert kubectl_patch_local(f, to_green).returncode != 0  # promoting twice fails
    r = kubectl_patch_local(f, to_blue)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["spec"] == vs["spec"]


# ---- make demo ---------------------------------------------------------------


def test_demo_runs_end_to_end(tmp_path):
    """scripts/demo.sh with the real binaries, the models trained into a
    fresh directory and served by gunicorn: every held-out row compared,
    the gate fails, the HTML and JSON reports are written, nothing it
    started is left running, and the report's divergence equals exactly
    what the oracle computes offline from the saved pickles for those rows
    (total and path by path)."""
    from conftest import BUILD
    import model_oracle as oracle
    for name in ("shadowtee", "shadowtee-report"):
        require(os.path.exists(os.path.join(BUILD, name)), "%s/%s is not built (make): demo NOT run" % (BUILD, name))
    html, report_file, models = tmp_path / "demo.html", tmp_path / "demo.json", tmp_path / "models"
    env = dict(os.environ, SHADOWTEE_BUILD=BUILD, DEMO_HTML=str(html), DEMO_JSON=str(report_file),
               DEMO_MODEL_DIR=str(models))
    env.pop("DEMO_REQUESTS", None)  # the default: every held-out row
    r = subprocess.run(["bash", os.path.join(SCRIPTS, "demo.sh")], env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^demo: train: v1 trained in .* -> %s/v1\.joblib$" % re.escape(str(models)), r.stdout, re.M)
    assert "demo: 450 of 450 requests compared" in r.stdout
    assert "GATE FAIL service=flask-inference: failed: divergence" in r.stdout
    assert html.read_text().lstrip().lower().startswith("<!doctype html")

    sys.path.insert(0, oracle.EXAMPLE)
    import model
    rows = [[f] for f, _ in model.heldout()]  # one row per request, as the demo sends them
    want_diverged, want_paths, flips = oracle.expected(str(models), rows)
    assert 0 < flips < want_diverged < len(rows) // 4  # label flips, score moves beyond tolerance, most match
    report = json.loads(report_file.read_text())
    assert report["compared"] == len(rows) and report["shadow_errors"] == 0 and report["noise"] == 0
    assert report["diverged"] == want_diverged
    assert oracle.report_paths(report) == want_paths
    assert re.search(r"^diverged: +%d +rate " % want_diverged, r.stdout, re.M)  # the text report says the same
    assert "demo: the report's divergence (%d of %d, every path count) equals the offline disagreement" % (
        want_diverged, len(rows)) in r.stdout
    servers = {v for smp in report["samples"] for side in ("primary", "shadow")
               for k, v in smp[side]["headers"] if k.lower() == "server"}
    assert servers == {"gunicorn"}

    started = r.stdout.split("demo: redis", 1)[1].splitlines()[0]
    ports = [int(x) for x in re.findall(r":(\d+)", started)]
    assert len(ports) == 5  # redis, shadow, noise, proxy, admin
    (sock,) = re.findall(r"stable v1 unix:(\S+),", started)  # the stable app on a socket, as in the pod
    assert not os.path.exists(sock)
    import socket
    for port in ports:  # everything the demo started is gone
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "port %d still answers" % port
    again = subprocess.run(["bash", os.path.join(SCRIPTS, "demo.sh")], env=dict(env, DEMO_REQUESTS="20"),
                           capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "demo: train: v1 cached: " in again.stdout and "demo: train: v2 cached: " in again.stdout
    assert "demo: 20 of 20 requests compared" in again.stdout


@pytest.mark.parametrize("value", ["9", "451", "x"])
def test_demo_rejects_a_bad_request_count(value):
    r = subprocess.run(["bash", os.path.join(SCRIPTS, "demo.sh")], env=dict(os.environ, DEMO_REQUESTS=value),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "DEMO_REQUESTS must be 10..450 (the held-out rows), got '%s'" % value in r.stderr
