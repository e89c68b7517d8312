"""A test missing a prerequisite skips with its reason on a user's machine
and fails under CI=true (conftest.require): run on the real Kubernetes
schema test, with kubectl made unfindable ($KUBECTL naming no file)."""
import os
import subprocess

from conftest import PY, ROOT


def run_without_kubectl(ci):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(KUBECTL="/nonexistent/kubectl", **({"CI": ci} if ci is not None else {}))
    return subprocess.run([PY, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "tests/integration/test_k8s.py::test_schemas"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_missing_kubectl_skips_with_its_reason_on_a_users_machine():
    r = run_without_kubectl(None)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 skipped" in r.stdout and "kubectl is not installed" in r.stdout, r.stdout


def test_missing_kubectl_fails_under_ci():
    r = run_without_kubectl("true")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "3 failed" in r.stdout and "CI=true: a missing prerequisite fails CI" in r.stdout, r.stdout
