"""Kubernetes manifests: every environment rendered with `kubectl kustomize`,
alone and with the optional components of k8s/components (monitoring,
flagger, argo-rollouts), validated strictly against k8s/schemas and checked
for consistency (scripts/validate_k8s.py), plus negative tests that break a
copy of the tree and expect the validator to say what is wrong. Also the
Dockerfile, checked statically (no Docker engine here)."""
import base64
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import BUILD, PY, ROOT, require

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import validate_k8s as vk  # noqa: E402

ENVS = {"development": 100, "staging": 50, "production": 10}
LOG_LEVEL = {"development": "debug", "staging": "info", "production": "warn"}
RULES = os.path.join(ROOT, "examples", "flask-inference", "rules.json")
VALIDATOR = os.path.join(ROOT, "scripts", "validate_k8s.py")


def need_kubectl():
    require(vk.kubectl_path(), "kubectl is not installed (it is in no Debian archive: install kubectl 1.32 from "
            "Kubernetes' own packages): cannot render the kustomizations, NOT validated")


def need_schemas():
    """The repo's k8s/schemas (or $SHADOWTEE_K8S_SCHEMAS): the repo carries
    them, so not finding them fails."""
    d = vk.default_schemas_dir()
    assert os.path.isfile(os.path.join(d, "index.json")), "no JSON schemas at %s (index.json missing)" % d
    return vk.Schemas(d)


_rendered = {}


def rendered(env, k8s_dir=os.path.join(ROOT, "k8s")):
    key = (env, k8s_dir)
    if key not in _rendered:
        need_kubectl()
        _rendered[key] = vk.load_documents(vk.render(os.path.join(k8s_dir, "environments", env)), env)
    return _rendered[key]


def find(docs, kind, name):
    (d,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return d


def sidecar(docs):
    stable = find(docs, "Deployment", "flask-inference-server-stable")
    (c,) = [c for c in stable["spec"]["template"]["spec"]["containers"] if c["name"] == "shadowtee"]
    return c


# ---- the real tree, per environment ----------------------------------------


@pytest.mark.parametrize("env", list(ENVS))
def test_render_has_the_whole_set(env):
    docs = rendered(env)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for version in ("stable", "canary", "blue", "green", "shadow"):
        assert ("Deployment", "flask-inference-server-" + version) in names
    for kind, name in [("Service", "flask-inference-server"), ("Service", "flask-inference-server-shadow"),
                       ("HorizontalPodAutoscaler", "flask-inference-server-stable"),
                       ("PodDisruptionBudget", "flask-inference-server-stable"),
                       ("VirtualService", "flask-inference-server"), ("DestinationRule", "flask-inference-server"),
                       ("Deployment", "flask-inference-redis"), ("Service", "flask-inference-redis")]:
        assert (kind, name) in names
    assert any(k == "ConfigMap" and n.startswith("shadowtee-rules") for k, n in names)


@pytest.mark.parametrize("env", list(ENVS))
def test_schemas(env):
    schemas = need_schemas()
    docs = rendered(env)
    assert vk.schema_problems(docs, schemas) == []
    assert len(docs) >= 15


@pytest.mark.parametrize("env", list(ENVS))
def test_consistency(env):
    assert vk.consistency_problems(rendered(env), RULES, env) == []


@pytest.mark.parametrize("env,pct", list(ENVS.items()))
def test_mirror_percentage_and_log_level_per_environment(env, pct):
    docs = rendered(env)
    vs = find(docs, "VirtualService", "flask-inference-server")
    (route,) = [r for r in vs["spec"]["http"] if r.get("mirror")]
    assert route["mirrorPercentage"]["value"] == pct
    flags = vk.parse_args(sidecar(docs)["args"])
    assert flags["--mirror-percent"] == str(pct)
    assert flags["--log-level"] == LOG_LEVEL[env]
    assert flags["--shadow"] == "%s:%d" % (route["mirror"]["host"], route["mirror"]["port"]["number"])


def test_production_secret_is_not_the_placeholder():
    prod = [d for d in rendered("production") if d["kind"] == "Secret"]
    assert prod == []  # created out of band, checked by scripts/deploy
    (dev,) = [d for d in rendered("development") if d["kind"] == "Secret"]
    assert b"placeholder" in base64.b64decode(dev["data"]["password"])


def test_validator_cli_passes_on_the_repo():
    need_kubectl()
    need_schemas()
    r = subprocess.run([PY, VALIDATOR], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for env in ENVS:
        assert re.search(r"^ok +%s: \d+ objects valid" % env, r.stdout, re.M)
        for c in ["monitoring", "flagger", "argo-rollouts"]:
            assert re.search(r"^ok +%s\+%s: \d+ objects valid" % (env, c), r.stdout, re.M)
        assert re.search(r"^ok +%s\+argo-rollouts\+flagger\+monitoring: " % env, r.stdout, re.M)


def test_the_repo_carries_its_schemas(monkeypatch):
    """k8s/schemas holds every file its index names, each named in its
    README (the provenance) with the license beside them, and is what the
    validator uses by default: a clone needs nothing outside the repo."""
    monkeypatch.delenv("SHADOWTEE_K8S_SCHEMAS", raising=False)
    d = os.path.join(ROOT, "k8s", "schemas")
    assert vk.default_schemas_dir() == d
    with open(os.path.join(d, "index.json")) as fh:
        index = json.load(fh)
    with open(os.path.join(d, "README.md")) as fh:
        readme = fh.read()
    assert {"apps/v1/Deployment", "networking.istio.io/v1/VirtualService", "flagger.app/v1beta1/Canary",
            "argoproj.io/v1alpha1/Rollout", "monitoring.coreos.com/v1/PrometheusRule"} <= set(index)
    for key, name in index.items():
        with open(os.path.join(d, name)) as fh:
            schema = json.load(fh)
        assert schema["properties"]["kind"]["enum"] == [key.rsplit("/", 1)[1]], name
        assert "`%s`" % name in readme, name
    assert os.path.getsize(os.path.join(d, "LICENSE-Apache-2.0.txt")) > 10000


def test_validator_cli_without_schemas_says_so(tmp_path):
    r = subprocess.run([PY, VALIDATOR, "--schemas", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "no JSON schemas at %s" % tmp_path in r.stderr


@pytest.mark.parametrize("env", list(ENVS))
def test_sidecar_args_are_accepted_by_the_binary(env, procs, tmp_path):
    """The rendered sidecar args start the real build/shadowtee (addresses
    moved to loopback ports, the shadow Service name to localhost since it
    only resolves in the cluster, the app's socket into a temp dir, the
    rules path to the repo's file): flag names and value formats are the
    binary's, not a guess."""
    import urllib.request
    from conftest import free_port
    binary = os.path.join(BUILD, "shadowtee")
    require(os.path.exists(binary), "%s is not built (make): sidecar args NOT checked against the binary" % binary)
    args = list(sidecar(rendered(env))["args"])
    flags = vk.parse_args(args)
    port, admin = free_port(), free_port()
    swap = {flags["--listen"]: "127.0.0.1:%d" % port, flags["--admin"]: "127.0.0.1:%d" % admin,
            flags["--shadow"]: "localhost:%s" % flags["--shadow"].rsplit(":", 1)[1],
            flags["--compare-rules"]: RULES}
    assert flags["--primary"].startswith("unix:/")
    # The socket does not exist: the proxy starts all the same (a missing
    # socket is a 502 per request, not a start-up error).
    swap[flags["--primary"]] = "unix:%s" % (tmp_path / "app.sock")
    argv = [binary] + [swap.get(a, a) for a in args]
    p = procs(argv, wait_ports=(port, admin), ours=True)
    with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % admin, timeout=5) as r:
        assert r.status == 200
    assert p.stop() == 0


# ---- the optional components ------------------------------------------------

COMPONENTS = ["monitoring", "flagger", "argo-rollouts"]


def rendered_with(env, components, k8s_dir=os.path.join(ROOT, "k8s")):
    key = (env, tuple(components), k8s_dir)
    if key not in _rendered:
        need_kubectl()
        _rendered[key] = vk.load_documents(vk.render_with_components(k8s_dir, env, list(components)), env)
    return _rendered[key]


def test_components_are_the_ones_documented():
    assert vk.components_of(os.path.join(ROOT, "k8s")) == sorted(COMPONENTS)


@pytest.mark.parametrize("env", list(ENVS))
@pytest.mark.parametrize("components", [[c] for c in COMPONENTS] + [COMPONENTS])
def test_components_valid_and_consistent(env, components):
    schemas = need_schemas()
    docs = rendered_with(env, components)
    assert vk.schema_problems(docs, schemas) == []
    assert vk.consistency_problems(docs, RULES, env) == []
    ns = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    assert all(d["metadata"].get("namespace") == ns[0] for d in docs if d["kind"] != "Namespace")


def test_components_are_opt_in():
    """No environment enables a component by itself: a cluster without the
    Prometheus Operator, Flagger or Argo Rollouts must still apply -k."""
    for env in ENVS:
        kinds = {d["kind"] for d in rendered(env)}
        assert not kinds & {"PrometheusRule", "ServiceMonitor", "Canary", "MetricTemplate", "AnalysisTemplate"}


def test_flagger_component_hands_routing_to_flagger():
    docs = rendered_with("production", ["flagger"])
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for gone in [("Service", "flask-inference-server"), ("VirtualService", "flask-inference-server"),
                 ("DestinationRule", "flask-inference-server"), ("Deployment", "flask-inference-server-canary"),
                 ("Deployment", "flask-inference-server-blue"), ("Deployment", "flask-inference-server-green")]:
        assert gone not in names
    canary = find(docs, "Canary", "flask-inference-server")
    assert canary["spec"]["targetRef"]["name"] == "flask-inference-server-stable"
    assert canary["spec"]["service"]["targetPort"] == 8080
    (metric,) = canary["spec"]["analysis"]["metrics"]
    assert metric["thresholdRange"] == {"max": 1}  # percent, as scripts/promote's --max-divergence
    pdb = find(docs, "PodDisruptionBudget", "flask-inference-server-stable")
    assert "app" not in pdb["spec"]["selector"]["matchLabels"]  # Flagger renames it on its primary pods
    # the sidecar still tees to the shadow, which still exists
    assert vk.parse_args(sidecar(docs)["args"])["--shadow"] == "flask-inference-server-shadow:80"
    assert ("Service", "flask-inference-server-shadow") in names


def test_argo_component_only_adds_the_template():
    base = {(d["kind"], d["metadata"]["name"]) for d in rendered("staging")}
    docs = rendered_with("staging", ["argo-rollouts"])
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} - base == {("AnalysisTemplate", "shadowtee-promotion")}
    at = find(docs, "AnalysisTemplate", "shadowtee-promotion")
    kinds = sorted(next(iter(m["provider"])) for m in at["spec"]["metrics"])
    assert kinds == ["job", "prometheus"]


def test_validator_cli_names_an_unknown_component():
    r = subprocess.run([PY, VALIDATOR, "production+nosuch"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no component nosuch" in r.stderr, r


# ---- the strict loader -----------------------------------------------------


def test_loader_rejects_duplicate_keys():
    with pytest.raises(vk.RenderError, match=r"x\.yml: .*duplicate key 'replicas'"):
        vk.load_documents("kind: Deployment\nspec:\n  replicas: 1\n  replicas: 2\n", "x.yml")


def test_loader_keeps_dates_as_strings():
    (doc,) = vk.load_documents("metadata:\n  annotations:\n    released: 2024-01-02\n")
    assert doc["metadata"]["annotations"]["released"] == "2024-01-02"


# ---- negative tests: a broken copy must fail with the right message --------


@pytest.fixture
def k8s_copy(tmp_path):
    """A copy of k8s/ and an edit(path, old, new) that insists `old` exists,
    so a negative test cannot pass by failing to break anything."""
    need_kubectl()
    dst = tmp_path / "k8s"
    shutil.copytree(os.path.join(ROOT, "k8s"), dst, ignore=shutil.ignore_patterns("schemas"))

    def edit(rel, old, new, count=1):
        p = dst / rel
        text = p.read_text()
        assert text.count(old) >= count, "%r not in %s" % (old, rel)
        p.write_text(text.replace(old, new, count))

    edit.root = str(dst)
    return edit


def problems_for(k8s_copy, env="production", schemas=True):
    s = need_schemas() if schemas else None
    _, problems = vk.validate_env(os.path.join(k8s_copy.root, "environments", env), s, RULES)
    return problems


def assert_problem(problems, pattern):
    assert any(re.search(pattern, p) for p in problems), "no problem matching %r in:\n%s" % (pattern, "\n".join(problems))


def test_broken_typo_field_fails_schema(k8s_copy):
    k8s_copy("inference/stable-deployment.yml", "          readinessProbe:\n            httpGet",
             "          readinesProbe:\n            httpGet")
    assert_problem(problems_for(k8s_copy), r"Deployment/flask-inference-server-stable: spec\.template\.spec\.containers\[1\]: "
                   r"Additional properties are not allowed \('readinesProbe' was unexpected\)")


def test_broken_quantity_fails_schema(k8s_copy):
    k8s_copy("environments/production/manifest.yml", "memory: 512Mi", "memory: 512MB")
    assert_problem(problems_for(k8s_copy), r"containers\[0\]\.resources\.limits\.memory")


def test_broken_mirror_percentage_mismatch(k8s_copy):
    k8s_copy("environments/production/kustomization.yaml",
             "path: /spec/http/2/mirrorPercentage/value\n        value: 10", "path: /spec/http/2/mirrorPercentage/value\n        value: 25")
    assert_problem(problems_for(k8s_copy, schemas=False),
                   r"mirror percentage mismatch: VirtualService/flask-inference-server: spec\.http\[2\] mirrorPercentage 25 "
                   r"!= sidecar --mirror-percent 10")


def test_broken_mirror_host_mismatch(k8s_copy):
    k8s_copy("inference/stable-deployment.yml", "- flask-inference-server-shadow:80", "- flask-inference-server-shadow:8080")
    assert_problem(problems_for(k8s_copy, "staging", schemas=False),
                   r"mirror host mismatch: .* mirrors to flask-inference-server-shadow:80 but sidecar --shadow is "
                   r"flask-inference-server-shadow:8080")


def test_broken_deprecated_mirror_percent(k8s_copy):
    k8s_copy("inference/virtual-service.yml", "      mirrorPercentage:\n        value: 10.0",
             "      mirrorPercentage:\n        value: 10.0\n      mirrorPercent: 10")
    assert_problem(problems_for(k8s_copy), r"spec\.http\[2\]\.mirrorPercent is deprecated")


def test_broken_service_target_port(k8s_copy):
    k8s_copy("inference/service.yml", "targetPort: 8080", "targetPort: 8081")
    problems = problems_for(k8s_copy, schemas=False)
    assert_problem(problems, r"Service/flask-inference-server: targetPort 8081 is not a container port of "
                             r"Deployment/flask-inference-server-stable")


def test_broken_service_selector(k8s_copy):
    k8s_copy("inference/service.yml", "    app: flask-inference-server-shadow\n    version: shadow",
             "    app: flask-inference-server-shadow\n    version: shadw")
    assert_problem(problems_for(k8s_copy, schemas=False), r"Service/flask-inference-server-shadow: selector .* matches no pod")


def test_broken_hpa_target(k8s_copy):
    k8s_copy("inference/hpa.yml", "    name: flask-inference-server-stable", "    name: flask-inference-server-stabel")
    assert_problem(problems_for(k8s_copy, schemas=False),
                   r"HorizontalPodAutoscaler/flask-inference-server-stable: scaleTargetRef Deployment/flask-inference-server-stabel "
                   r"does not exist")


def test_broken_pdb_selector(k8s_copy):
    k8s_copy("inference/pdb.yml", "      version: stable", "      version: stabel")
    assert_problem(problems_for(k8s_copy, schemas=False), r"PodDisruptionBudget/flask-inference-server-stable: selector")


def test_broken_destination_rule_missing_subset(k8s_copy):
    k8s_copy("inference/destination-rule.yml", "    - name: green\n      labels:\n        version: green\n", "")
    problems = problems_for(k8s_copy, schemas=False)
    assert_problem(problems, r"DestinationRule/flask-inference-server: no subset for version label 'green'")
    assert_problem(problems, r"subset green of host flask-inference-server is not defined by a DestinationRule")


def test_broken_sidecar_drain_timing(k8s_copy):
    k8s_copy("inference/stable-deployment.yml", "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 20")
    assert_problem(problems_for(k8s_copy, schemas=False),
                   r"terminationGracePeriodSeconds 20 <= preStop 5s \+ --drain-timeout 25s")


def test_broken_admin_on_loopback(k8s_copy):
    k8s_copy("inference/stable-deployment.yml", "- 0.0.0.0:9901", "- 127.0.0.1:9901")
    assert_problem(problems_for(k8s_copy, schemas=False), r"--admin must listen on 0\.0\.0\.0")


def test_broken_security_context(k8s_copy):
    k8s_copy("inference/canary-deployment.yml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
    assert_problem(problems_for(k8s_copy, schemas=False),
                   r"Deployment/flask-inference-server-canary container flask-inference: readOnlyRootFilesystem is not true")


def test_broken_unpinned_image(k8s_copy):
    k8s_copy("inference/green-deployment.yml", "flask-inference:v2", "flask-inference:latest")
    assert_problem(problems_for(k8s_copy, schemas=False),
                   r"Deployment/flask-inference-server-green container flask-inference: image .* needs a pinned tag")


def test_broken_rules_copy_drifts(k8s_copy):
    k8s_copy("inference/rules.json", '"relative": 1e-4', '"relative": 1e-2')
    assert_problem(problems_for(k8s_copy, schemas=False),
                   r"ConfigMap/shadowtee-rules-\w+: rules\.json differs from examples/flask-inference/rules\.json")


def test_broken_unknown_kind_has_no_schema(k8s_copy):
    k8s_copy("inference/virtual-service.yml", "apiVersion: networking.istio.io/v1\n", "apiVersion: networking.istio.io/v1alpha3\n")
    assert_problem(problems_for(k8s_copy),
                   r"VirtualService/flask-inference-server: no schema for networking.istio.io/v1alpha3 VirtualService")


def test_broken_json6902_guard_fails_render(k8s_copy):
    # Reordered sidecar args: the overlay's "test" op catches it at render time.
    k8s_copy("inference/stable-deployment.yml", "- --mirror-percent\n            - \"10\"", "- --mirror-pct\n            - \"10\"")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"kubectl kustomize .* failed: .*testing value /spec/template/spec/containers/1/args/12 failed")


SOCK = "unix:/run/flask-inference/app.sock"


def test_stable_app_is_reached_through_a_unix_socket_only():
    """The target design: gunicorn binds a socket in an emptyDir shared with
    the sidecar (read-only there), the sidecar's --primary points at it, the
    app has no port, its probes exec the socket check."""
    for env in ENVS:
        docs = rendered(env)
        spec = find(docs, "Deployment", "flask-inference-server-stable")["spec"]["template"]["spec"]
        app, side = spec["containers"]
        assert vk.parse_args(side["args"])["--primary"] == SOCK
        assert {e["name"]: e["value"] for e in app["env"]}["BIND"] == SOCK
        assert "ports" not in app
        for probe in ("readinessProbe", "livenessProbe"):
            assert app[probe]["exec"]["command"] == ["/usr/bin/python3", "/app/healthcheck.py", SOCK]
        vol = {v["name"]: v for v in spec["volumes"]}["app-socket"]
        assert vol["emptyDir"]["medium"] == "Memory"
        assert vk.mount_of(app, "/run/flask-inference")["name"] == "app-socket"
        assert vk.mount_of(side, "/run/flask-inference") == {"name": "app-socket", "mountPath": "/run/flask-inference",
                                                             "readOnly": True}


def test_broken_primary_socket_drifts_from_bind(k8s_copy):
    k8s_copy("inference/stable-deployment.yml", "- unix:/run/flask-inference/app.sock", "- unix:/run/flask-inference/api.sock")
    problems = problems_for(k8s_copy, schemas=False)
    assert_problem(problems, r"container flask-inference: BIND unix:/run/flask-inference/app\.sock != the sidecar's "
                             r"--primary unix:/run/flask-inference/api\.sock")
    assert_problem(problems, r"readinessProbe must exec a check of unix:/run/flask-inference/api\.sock")


def test_broken_socket_dir_not_shared(k8s_copy):
    k8s_copy("inference/stable-deployment.yml", "            - name: app-socket\n              mountPath: /run/flask-inference\n"
             "              readOnly: true\n", "")
    assert_problem(problems_for(k8s_copy, schemas=False),
                   r"the socket directory /run/flask-inference is not one volume mounted in both flask-inference and shadowtee")


def test_broken_socket_volume_not_empty_dir(k8s_copy):
    k8s_copy("inference/stable-deployment.yml", "        - name: app-socket\n          emptyDir:\n            medium: Memory\n"
             "            sizeLimit: 1Mi", "        - name: app-socket\n          hostPath:\n            path: /run/flask-inference")
    assert_problem(problems_for(k8s_copy, schemas=False), r"volume app-socket holding the socket is not an emptyDir")


def test_broken_app_exposes_a_port_beside_the_socket(k8s_copy):
    k8s_copy("inference/stable-deployment.yml", "          # No ports: the socket is the only way in, so the probes exec.\n",
             "          ports:\n            - containerPort: 5000\n")
    assert_problem(problems_for(k8s_copy, schemas=False),
                   r"container flask-inference: declares container ports \[5000\]: with a Unix socket upstream nothing")


def test_broken_app_probe_is_http_on_the_socket(k8s_copy):
    k8s_copy("inference/stable-deployment.yml", "          livenessProbe:\n            exec:\n              command: "
             "[\"/usr/bin/python3\", \"/app/healthcheck.py\", \"unix:/run/flask-inference/app.sock\"]",
             "          livenessProbe:\n            httpGet:\n              path: /health\n              port: 5000")
    assert_problem(problems_for(k8s_copy, schemas=False),
                   r"livenessProbe must exec a check of unix:/run/flask-inference/app\.sock \(a httpGet probe cannot")


def test_broken_primary_on_tcp_not_loopback(k8s_copy):
    k8s_copy("inference/stable-deployment.yml", "- unix:/run/flask-inference/app.sock", "- 0.0.0.0:5000")
    k8s_copy("inference/stable-deployment.yml", "value: unix:/run/flask-inference/app.sock", "value: 0.0.0.0:5000")
    assert_problem(problems_for(k8s_copy, schemas=False), r"--primary 0\.0\.0\.0:5000 is not loopback")


def test_broken_canary_bind_port(k8s_copy):
    k8s_copy("inference/canary-deployment.yml", "value: 0.0.0.0:8080", "value: 0.0.0.0:5000")
    assert_problem(problems_for(k8s_copy, schemas=False),
                   r"Deployment/flask-inference-server-canary container flask-inference: BIND 0\.0\.0\.0:5000 is not "
                   r"0\.0\.0\.0 on one of its container ports")


def test_broken_copy_fails_the_cli(k8s_copy):
    need_schemas()
    k8s_copy("environments/staging/kustomization.yaml", 'value: "50"', 'value: "5"')
    r = subprocess.run([PY, VALIDATOR, "--k8s", k8s_copy.root], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "staging: mirror percentage mismatch" in r.stdout and "FAIL staging: 1 problem(s)" in r.stdout
    assert re.search(r"^ok +production", r.stdout, re.M)


def component_problems(k8s_copy, components, env="production", schemas=False):
    s = need_schemas() if schemas else None
    _, problems = vk.validate_env(os.path.join(k8s_copy.root, "environments", env), s, RULES, components)
    return problems


def test_broken_canary_field_fails_schema(k8s_copy):
    k8s_copy("components/flagger/canary.yml", "    iterations: 10", "    iteration: 10")
    assert_problem(component_problems(k8s_copy, ["flagger"], schemas=True),
                   r"Canary/flask-inference-server: spec\.analysis: Additional properties are not allowed "
                   r"\('iteration' was unexpected\)")


def test_broken_canary_template_ref(k8s_copy):
    k8s_copy("components/flagger/canary.yml", "        templateRef:\n          name: shadowtee-divergence",
             "        templateRef:\n          name: shadowtee-divergense")
    assert_problem(component_problems(k8s_copy, ["flagger"]),
                   r"Canary/flask-inference-server: metric shadowtee-divergence: MetricTemplate/shadowtee-divergense "
                   r"does not exist")


def test_broken_canary_template_variable(k8s_copy):
    k8s_copy("components/flagger/canary.yml", "          minComparable: \"100\"", "          minCompared: \"100\"")
    assert_problem(component_problems(k8s_copy, ["flagger"]),
                   r"uses variables\.minComparable, not in templateVariables")


def test_broken_canary_target_port(k8s_copy):
    k8s_copy("components/flagger/canary.yml", "    targetPort: 8080", "    targetPort: 5000")
    assert_problem(component_problems(k8s_copy, ["flagger"]),
                   r"service\.targetPort 5000 is not the sidecar's --listen port 8080")


def test_broken_flagger_component_keeps_the_virtual_service(k8s_copy):
    k8s_copy("components/flagger/kustomization.yaml",
             "      $patch: delete\n      apiVersion: networking.istio.io/v1\n      kind: VirtualService",
             "      $patch: replace\n      apiVersion: networking.istio.io/v1\n      kind: VirtualService")
    assert_problem(component_problems(k8s_copy, ["flagger"]),
                   r"VirtualService/flask-inference-server is generated by Flagger from spec\.service")


def test_broken_analysis_without_failure_condition(k8s_copy):
    k8s_copy("components/argo-rollouts/analysis-template.yml",
             "      failureCondition: result[0] > {{args.max-divergence-pct}}\n", "")
    assert_problem(component_problems(k8s_copy, ["argo-rollouts"]),
                   r"metric shadow-divergence needs both successCondition and failureCondition")


def test_broken_analysis_undeclared_arg(k8s_copy):
    k8s_copy("components/argo-rollouts/analysis-template.yml", "    - name: gate-since\n", "    - name: gate-window\n")
    assert_problem(component_problems(k8s_copy, ["argo-rollouts"]),
                   r"\{\{args\.gate-since\}\} is used but not declared")


def test_broken_analysis_job_security_and_image(k8s_copy):
    k8s_copy("components/argo-rollouts/analysis-template.yml", "image: ghcr.io/shadowtee/shadowtee:0.1.0",
             "image: ghcr.io/shadowtee/shadowtee:0.0.9")
    k8s_copy("components/argo-rollouts/analysis-template.yml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
    problems = component_problems(k8s_copy, ["argo-rollouts"], env="development")
    assert_problem(problems, r"metric shadowtee-gate: runs \['ghcr\.io/shadowtee/shadowtee:0\.0\.9'\], not the sidecar's image")
    assert_problem(problems, r"metric shadowtee-gate container gate: readOnlyRootFilesystem is not true")


def test_broken_service_monitor_without_honor_labels(k8s_copy):
    k8s_copy("components/monitoring/servicemonitor.yml", "honorLabels: true", "honorLabels: false")
    assert_problem(component_problems(k8s_copy, ["monitoring"]), r"ServiceMonitor/shadowtee: endpoints port admin needs honorLabels")


def test_broken_metrics_service_port(k8s_copy):
    k8s_copy("components/monitoring/metrics-service.yml", "      targetPort: 9901", "      targetPort: 8080")
    assert_problem(component_problems(k8s_copy, ["monitoring"]),
                   r"port admin of Service/flask-inference-server-metrics targets 8080, not the sidecar's --admin port 9901")


def test_broken_prometheusrule_drifts_from_the_rules(k8s_copy):
    k8s_copy("components/monitoring/prometheusrule.yml", "        for: 15m", "        for: 5m")
    assert_problem(component_problems(k8s_copy, ["monitoring"]),
                   r"PrometheusRule/shadowtee: spec\.groups differ from monitoring/shadowtee-rules\.yml")


# ---- Dockerfile (static: no Docker engine here) ----------------------------


def dockerfile_stages():
    with open(os.path.join(ROOT, "Dockerfile")) as fh:
        text = fh.read()
    stages, cur = [], None
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            cur = {"from": rest.split()[0], "name": rest.split()[-1] if " AS " in rest.upper() else None, "lines": []}
            stages.append(cur)
        elif cur is not None:
            cur["lines"].append((word.upper(), rest.strip()))
    return stages


def runtime_packages(stage):
    pkgs = set()
    for word, rest in stage["lines"]:
        if word == "RUN" and "apt-get install" in rest:
            seg = rest.split("apt-get install", 1)[1].split("&&")[0]
            pkgs |= {w for w in seg.split() if not w.startswith("-")}
    return pkgs


def test_dockerfile_is_multistage_non_root():
    stages = dockerfile_stages()
    assert len(stages) == 2
    build, run = stages
    assert build["from"] == "debian:12" and build["name"]
    assert run["from"] == "debian:12-slim"
    build_runs = " ".join(r for w, r in build["lines"] if w == "RUN")
    assert "scripts/deps.sh" in build_runs and re.search(r"\bmake\b", build_runs)
    users = [r for w, r in run["lines"] if w == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    assert ("ENTRYPOINT", '["shadowtee"]') in run["lines"]
    copies = [r for w, r in run["lines"] if w == "COPY"]
    assert any("--from=%s" % build["name"] in c and "shadowtee-report" in c for c in copies)
    assert any("--from=%s" % build["name"] in c and "build/shadowtee " in c + " " for c in copies)


def linked_packages(binary):
    """Debian packages owning the shared libraries `binary` links, minus the
    base image's; skips for a sanitizer build (never shipped)."""
    require(os.path.exists(binary), "%s is not built (make): cannot compare its libraries with the Dockerfile" % binary)
    require(shutil.which("ldd") and shutil.which("dpkg"), "ldd/dpkg missing: cannot map libraries to packages")
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    if re.search(r"lib(a|ub|t)san\.so", ldd):
        pytest.skip("%s is a sanitizer build (make asan / make tsan), not what the image ships: runtime packages "
                    "NOT checked" % binary)
    libs = re.findall(r"=> (/\S+)", ldd)
    needed = set()
    for lib in libs:
        r = subprocess.run(["dpkg", "-S", os.path.realpath(lib)], capture_output=True, text=True)
        if r.returncode != 0:
            r = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True)
        assert r.returncode == 0, "no package owns %s" % lib
        needed.add(r.stdout.split(":")[0])
    return needed - {"libc6", "libgcc-s1"}  # in every Debian image


def declared_runtime_packages():
    return runtime_packages(dockerfile_stages()[1]) - {"ca-certificates"}


def test_dockerfile_installs_what_shadowtee_links():
    needed = linked_packages(os.path.join(BUILD, "shadowtee"))
    missing = needed - declared_runtime_packages()
    assert not missing, "build/shadowtee links libraries of %s, not installed in the runtime stage" % sorted(missing)


def test_dockerfile_runtime_packages_match_the_binaries():
    """Exactly the packages both shipped binaries link: nothing missing
    (the image would not start), nothing extra (slim stage)."""
    needed = linked_packages(os.path.join(BUILD, "shadowtee")) | linked_packages(os.path.join(BUILD, "shadowtee-report"))
    declared = declared_runtime_packages()
    assert needed == declared, "binaries link %s, Dockerfile installs %s" % (sorted(needed), sorted(declared))


def test_dockerignore_keeps_builds_out():
    with open(os.path.join(ROOT, ".dockerignore")) as fh:
        lines = {ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")}
    assert {"build", "build-asan", ".git"} <= lines
