"""Kubernetes manifests: every environment rendered with `kubectl kustomize`,
alone and with the optional components of k8s/components (monitoring,
flagger, argo-rollouts), validated strictly against k8s/schemas and checked
for consistency (scripts/validate_k8s.py), plus negative tests that break a
copy of the tree and expect the validator to say what is wrong: among them
each way the one mirroring mechanism per environment (k8s/mirroring/tee or
k8s/mirroring/mesh) can be broken. The rendered sidecar args are checked
against the option table in proxy/config.c and run by the real binary. Also
the Dockerfile, checked statically (no Docker engine here)."""
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
MODE = {"development": "mesh", "staging": "tee", "production": "tee"}
SHADOW = "flask-inference-server-shadow"
MESH_FLAGS = {"mirror-mode", "mesh-role", "mesh-pair-ttl"}  # the mesh branch's (notes/mesh-contract.md)
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


def sidecar(docs, deployment="flask-inference-server-stable"):
    d = find(docs, "Deployment", deployment)
    (c,) = [c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "shadowtee"]
    return c


def has_sidecar(docs, deployment):
    d = find(docs, "Deployment", deployment)
    return any(c["name"] == "shadowtee" for c in d["spec"]["template"]["spec"]["containers"])


def flags_of(docs, deployment="flask-inference-server-stable"):
    """The sidecar's flags as the binary gets them ($(VAR) expanded by the
    validator as the kubelet does); a problem doing so fails."""
    problems = []
    flags = vk.sidecar_flags(vk.Render(docs), sidecar(docs, deployment), problems, deployment)
    assert problems == []
    return flags


def mirrors(docs):
    vs = find(docs, "VirtualService", "flask-inference-server")
    return [(i, r) for i, r in enumerate(vs["spec"]["http"]) if r.get("mirror") or r.get("mirrors")]


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
def test_one_mirroring_mechanism_per_environment(env, pct):
    """tee: the stable sidecar tees P% and the VirtualService mirrors
    nothing, the shadow runs no sidecar. mesh: the VirtualService mirrors
    100% of the primary route to the shadow Service, the stable sidecar
    does not tee, the shadow pods' sidecar (role shadow) samples the same P%."""
    docs = rendered(env)
    flags = flags_of(docs)
    assert flags["--mirror-percent"] == str(pct)
    assert flags["--log-level"] == LOG_LEVEL[env]
    assert vk.mirroring_mode_of(os.path.join(ROOT, "k8s", "environments", env)) == MODE[env]
    if MODE[env] == "tee":
        assert flags.get("--mirror-mode", "tee") == "tee" and "--mesh-role" not in flags
        assert flags["--shadow"] == SHADOW + ":80"
        assert mirrors(docs) == []
        assert not has_sidecar(docs, SHADOW)
    else:
        assert flags["--mirror-mode"] == "mesh" and flags["--mesh-role"] == "stable"
        assert "--shadow" not in flags and flags["--redis"].startswith("redis://")
        ((i, route),) = mirrors(docs)
        assert route["name"] == "primary"
        assert route["mirror"] == {"host": SHADOW, "subset": "shadow", "port": {"number": 80}}
        assert route["mirrorPercentage"]["value"] == 100
        shadow = flags_of(docs, SHADOW)
        assert (shadow["--mirror-mode"], shadow["--mesh-role"]) == ("mesh", "shadow")
        for flag in ("--mirror-percent", "--log-level", "--service", "--compare-rules", "--redis"):
            assert shadow[flag] == flags[flag], flag
        svc = find(docs, "Service", SHADOW)
        assert svc["spec"]["ports"][0]["targetPort"] == int(shadow["--listen"].rsplit(":", 1)[1])
        stable_side, shadow_side = sidecar(docs), sidecar(docs, SHADOW)
        for field in ("image", "readinessProbe", "livenessProbe", "resources", "securityContext"):
            assert shadow_side[field] == stable_side[field], field


@pytest.mark.parametrize("env", list(ENVS))
def test_the_percentage_has_one_source(env):
    """Every sidecar reads P and the log level from the environment's one
    ConfigMap (args $(MIRROR_PERCENT) / $(LOG_LEVEL)), not from a literal."""
    docs = rendered(env)
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("shadowtee-mirroring-")]
    assert cm["data"] == {"mirror-percent": str(ENVS[env]), "log-level": LOG_LEVEL[env]}
    deployments = ["flask-inference-server-stable"] + ([SHADOW] if MODE[env] == "mesh" else [])
    for d in deployments:
        c = sidecar(docs, d)
        args = vk.parse_args(c["args"])
        assert (args["--mirror-percent"], args["--log-level"]) == ("$(MIRROR_PERCENT)", "$(LOG_LEVEL)"), d
        refs = {e["name"]: e["valueFrom"]["configMapKeyRef"] for e in c["env"] if "configMapKeyRef" in e.get("valueFrom", {})}
        assert refs == {"MIRROR_PERCENT": {"name": cm["metadata"]["name"], "key": "mirror-percent"},
                        "LOG_LEVEL": {"name": cm["metadata"]["name"], "key": "log-level"}}, d


def test_switching_the_mode_is_one_edit(k8s_copy):
    """staging from tee to mesh, by its one components: line: the render is
    valid and consistent, Istio now mirrors 100% and the shadow pods got the
    sidecar at staging's 50%."""
    k8s_copy("environments/staging/kustomization.yaml", "  - ../../mirroring/tee\n", "  - ../../mirroring/mesh\n")
    assert problems_for(k8s_copy, "staging") == []
    docs = rendered("staging", k8s_copy.root)
    ((_, route),) = mirrors(docs)
    assert route["mirrorPercentage"]["value"] == 100
    assert flags_of(docs, SHADOW)["--mirror-percent"] == flags_of(docs)["--mirror-percent"] == "50"


def test_changing_the_percentage_is_one_edit(k8s_copy):
    k8s_copy("environments/development/kustomization.yaml", "mirror-percent=100", "mirror-percent=25")
    assert problems_for(k8s_copy, "development") == []
    docs = rendered("development", k8s_copy.root)
    assert flags_of(docs)["--mirror-percent"] == flags_of(docs, SHADOW)["--mirror-percent"] == "25"
    ((_, route),) = mirrors(docs)
    assert route["mirrorPercentage"]["value"] == 100  # Istio still mirrors all; the sidecars sample


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
        usable = ["monitoring", "argo-rollouts"] + (["flagger"] if MODE[env] == "tee" else [])
        for c in usable:
            assert re.search(r"^ok +%s\+%s: \d+ objects valid" % (env, c), r.stdout, re.M)
        assert re.search(r"^ok +%s: " % re.escape("+".join([env] + sorted(usable))), r.stdout, re.M)
        if MODE[env] == "mesh":  # said, not silently left out
            assert re.search(r"^n/a +%s\+flagger: the flagger component works with the mirroring mode tee only" % env,
                             r.stdout, re.M)
            assert "%s+flagger:" % env not in r.stdout.replace("n/a  %s+flagger:" % env, "")


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


def sidecars_of(env):
    """[(deployment, container)] of every rendered sidecar of env."""
    docs = rendered(env)
    return [(d["metadata"]["name"], c) for d in docs if d["kind"] == "Deployment"
            for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "shadowtee"]


def option_table():
    """The flags proxy/config.c defines ({"flag", OPT_... entries)."""
    with open(os.path.join(ROOT, "proxy", "config.c")) as fh:
        return set(re.findall(r'^\s*\{"([a-z0-9-]+)",\s*OPT_', fh.read(), re.M))


def require_mesh_flags(used, known, what):
    """The mesh mode's flags come with branch `mesh` (notes/mesh-contract.md):
    until it is merged they are not in this tree, and what uses them is NOT
    checked (a skip, a failure under CI=true), never passed."""
    missing = used & MESH_FLAGS - known
    require(not missing, "%s uses --%s, not in this tree's shadowtee (the mesh flags of branch mesh are not "
            "merged): NOT checked" % (what, ", --".join(sorted(missing))))


@pytest.mark.parametrize("env", list(ENVS))
def test_sidecar_flags_are_in_the_option_table(env):
    """Every flag of every rendered sidecar (args, and SHADOWTEE_<FLAG> env)
    is one proxy/config.c defines: a misspelt or renamed flag fails here,
    without a build."""
    known = option_table()
    assert {"listen", "primary", "mirror-percent", "redis"} <= known  # the parse found the table
    for name, c in sidecars_of(env):
        used = {a[2:].split("=", 1)[0] for a in c["args"] if str(a).startswith("--")}
        used |= {e["name"][len("SHADOWTEE_"):].lower().replace("_", "-") for e in c.get("env", [])
                 if e["name"].startswith("SHADOWTEE_")}
        require_mesh_flags(used, known, "%s's %s sidecar" % (env, name))
        assert used - known == set(), "%s: %s" % (name, sorted(used - known))


@pytest.mark.parametrize("env", list(ENVS))
def test_sidecar_args_are_accepted_by_the_binary(env, procs, redis_server, tmp_path):
    """Each rendered sidecar (the stable one; in mesh mode the shadow's too)
    starts the real build/shadowtee with its args expanded as the kubelet
    does ($(MIRROR_PERCENT) from the ConfigMap), the addresses moved to
    loopback ports, the shadow Service name to localhost (it only resolves
    in the cluster), the app's socket into a temp dir, the rules path to the
    repo's file and SHADOWTEE_REDIS to a real redis-server: flag names, value
    formats and the mode's flag combination are the binary's, not a guess."""
    import urllib.request
    from conftest import free_port
    binary = os.path.join(BUILD, "shadowtee")
    require(os.path.exists(binary), "%s is not built (make): sidecar args NOT checked against the binary" % binary)
    helptext = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10).stdout
    known = set(re.findall(r"^  --([a-z0-9-]+)", helptext, re.M))
    assert "primary" in known, helptext
    r = vk.Render(rendered(env))
    started = 0
    for name, c in sidecars_of(env):
        env_vars = vk.container_env(r, c)
        args = [vk.expand(a, env_vars)[0] for a in c["args"]]
        assert not [a for a in args if "$(" in a], args
        flags = vk.parse_args(args)
        require_mesh_flags({a[2:] for a in args if a.startswith("--")}, known, "%s's %s sidecar" % (env, name))
        port, admin = free_port(), free_port()
        swap = {flags["--listen"]: "127.0.0.1:%d" % port, flags["--admin"]: "127.0.0.1:%d" % admin,
                flags["--compare-rules"]: RULES}
        if "--shadow" in flags:
            swap[flags["--shadow"]] = "localhost:%s" % flags["--shadow"].rsplit(":", 1)[1]
        assert flags["--primary"].startswith("unix:/")
        # The socket does not exist: the proxy starts all the same (a missing
        # socket is a 502 per request, not a start-up error).
        swap[flags["--primary"]] = "unix:%s" % (tmp_path / ("%s.sock" % name))
        assert env_vars["SHADOWTEE_REDIS"].endswith("@flask-inference-redis:6379/0")
        argv = [binary] + [swap.get(a, a) for a in args]
        p = procs(argv, env={"SHADOWTEE_REDIS": "redis://127.0.0.1:%d/0" % redis_server.port},
                  wait_ports=(port, admin), ours=True)
        with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % admin, timeout=5) as resp:
            assert resp.status == 200
        assert p.stop() == 0
        started += 1
    assert started == (2 if MODE[env] == "mesh" else 1)


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


def usable_components(env):
    """The components an environment's mirroring mode allows: all but
    flagger in mesh mode (test_flagger_refused_with_the_mesh_mode)."""
    return [c for c in COMPONENTS if c != "flagger" or MODE[env] == "tee"]


@pytest.mark.parametrize("env,components", [(e, [c]) for e in ENVS for c in usable_components(e)] +
                         [(e, usable_components(e)) for e in ENVS])
def test_components_valid_and_consistent(env, components):
    schemas = need_schemas()
    docs = rendered_with(env, components)
    assert vk.schema_problems(docs, schemas) == []
    assert vk.consistency_problems(docs, RULES, env) == []
    ns = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    assert all(d["metadata"].get("namespace") == ns[0] for d in docs if d["kind"] != "Namespace")


def test_flagger_refused_with_the_mesh_mode():
    """Flagger generates the live VirtualService (the component deletes the
    hand-written one), without the 100% mirror the mesh mode lives on: the
    combination is refused, by name, not validated as if it worked."""
    assert MODE["development"] == "mesh"
    docs = rendered_with("development", ["flagger"])
    assert ("VirtualService", "flask-inference-server") not in {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert_problem(vk.consistency_problems(docs, RULES, "development"),
                   r"^mesh mode with the flagger component: Flagger generates the VirtualService without the mirror")
    r = subprocess.run([PY, VALIDATOR, "development+flagger"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "FAIL development+flagger: 1 problem(s)" in r.stdout, r.stdout + r.stderr


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


def test_validator_cli_names_a_typo_before_asking_for_kubectl(tmp_path):
    """Without kubectl (a user's machine: it is in no Debian archive) a wrong
    name is still told as such, and a right one says kubectl is missing."""
    env = dict(os.environ, KUBECTL=str(tmp_path / "no-such-kubectl"))
    r = subprocess.run([PY, VALIDATOR, "production+nosuch"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and "no component nosuch" in r.stderr, r
    r = subprocess.run([PY, VALIDATOR, "production"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and "kubectl not found" in r.stderr and r.stdout == "", r


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
    # mesh: Istio sampling at random on top of the sidecars' hash would
    # leave most halves without a partner
    k8s_copy("mirroring/mesh/virtual-service.yml", "  value:\n    value: 100", "  value:\n    value: 50")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"mirror percentage mismatch: VirtualService/flask-inference-server: spec\.http\[2\] mirrorPercentage 50, "
                   r"but in mesh mode Istio must mirror 100% and the sidecars sample \(--mirror-percent 100\)")


def test_broken_mirror_percentage_differs_between_the_sidecars(k8s_copy):
    k8s_copy("mirroring/mesh/shadow-sidecar.yml", "      - --mirror-percent\n      - $(MIRROR_PERCENT)",
             "      - --mirror-percent\n      - \"50\"")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"mirror percentage mismatch: Deployment/flask-inference-server-shadow container shadowtee --mirror-percent "
                   r"50 != Deployment/flask-inference-server-stable container shadowtee --mirror-percent 100")


def test_broken_mirror_host_mismatch_tee(k8s_copy):
    k8s_copy("mirroring/tee/kustomization.yaml", "value: flask-inference-server-shadow:80", "value: flask-inference-server-shadow:8080")
    assert_problem(problems_for(k8s_copy, "staging", schemas=False),
                   r"mirror host mismatch: .*: --shadow flask-inference-server-shadow:8080 is not a port of a Service")


def test_broken_mirror_host_mismatch_mesh(k8s_copy):
    k8s_copy("mirroring/mesh/virtual-service.yml", "    port:\n      number: 80", "    port:\n      number: 8080")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"mirror host mismatch: VirtualService/flask-inference-server: spec\.http\[2\] mirrors to "
                   r"flask-inference-server-shadow:8080, not a port of a Service")


def test_broken_mesh_mirror_port_misses_the_shadow_sidecar(k8s_copy):
    k8s_copy("inference/service.yml", "    version: shadow\n  ports:\n    - name: http\n      port: 80\n      targetPort: 8080",
             "    version: shadow\n  ports:\n    - name: http\n      port: 80\n      targetPort: 9901")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"mirror host mismatch: .* mirrors to flask-inference-server-shadow:80, whose targetPort 9901 is not the "
                   r"--listen port 8080 of Deployment/flask-inference-server-shadow container shadowtee")


def test_broken_both_mechanisms_tee_and_a_virtualservice_mirror(k8s_copy):
    k8s_copy("inference/virtual-service.yml", "      timeout: 10s\n",
             "      timeout: 10s\n      mirror:\n        host: flask-inference-server-shadow\n        port:\n"
             "          number: 80\n      mirrorPercentage:\n        value: 50\n")
    assert_problem(problems_for(k8s_copy, "staging", schemas=False),
                   r"both mechanisms active: VirtualService/flask-inference-server: spec\.http\[2\] mirrors 50% to "
                   r"flask-inference-server-shadow and the stable sidecar tees 50% to flask-inference-server-shadow:80")
    assert problems_for(k8s_copy, "development", schemas=False) == []  # mesh replaces that mirror with its own


def test_broken_both_mechanisms_mesh_sidecar_still_tees(k8s_copy):
    add = "      - op: add\n        path: /spec/template/spec/containers/1/args/-\n        value: %s\n"
    k8s_copy("mirroring/mesh/kustomization.yaml", add % "stable",
             add % "stable" + add % "--shadow" + add % "flask-inference-server-shadow:80")
    docs = rendered("development", k8s_copy.root)
    assert vk.parse_args(sidecar(docs)["args"])["--shadow"] == "flask-inference-server-shadow:80"  # the edit took
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"both mechanisms active: Deployment/flask-inference-server-stable container shadowtee: --shadow with "
                   r"--mirror-mode mesh")


def test_broken_both_mode_components(k8s_copy):
    k8s_copy("environments/staging/kustomization.yaml", "  - ../../mirroring/tee\n",
             "  - ../../mirroring/tee\n  - ../../mirroring/mesh\n")
    problems = problems_for(k8s_copy, "staging", schemas=False)
    assert_problem(problems, r"both mechanisms active: .*: --shadow with --mirror-mode mesh")
    assert vk.mirroring_mode_of(os.path.join(k8s_copy.root, "environments", "staging")) == "tee+mesh"


def test_broken_no_mode_component(k8s_copy):
    k8s_copy("environments/staging/kustomization.yaml", "components:\n  - ../../mirroring/tee\n", "")
    assert_problem(problems_for(k8s_copy, "staging", schemas=False),
                   r"Deployment/flask-inference-server-stable container shadowtee: no mirroring mode: tee \(the default\) "
                   r"without --shadow mirrors nothing")


def test_broken_mesh_shadow_without_the_sidecar(k8s_copy):
    # the mesh component without its shadow pod patches: Istio mirrors to
    # the plain (tee-mode) shadow Deployment
    k8s_copy("mirroring/mesh/kustomization.yaml", "  - path: shadow-pod.yml\n  - path: shadow-sidecar.yml\n    target:\n"
             "      group: apps\n      version: v1\n      kind: Deployment\n      name: flask-inference-server-shadow\n", "")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"mesh mode: Deployment/flask-inference-server-shadow \(the pods VirtualService/flask-inference-server: "
                   r"spec\.http\[2\] mirrors to\) has no shadowtee sidecar")


def test_broken_mesh_shadow_sidecar_in_the_wrong_role(k8s_copy):
    k8s_copy("mirroring/mesh/shadow-sidecar.yml", "      - --mesh-role\n      - shadow\n", "      - --mesh-role\n      - stable\n")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"mode mismatch: Deployment/flask-inference-server-shadow container shadowtee runs --mirror-mode mesh "
                   r"--mesh-role stable; the mirror's pods need mesh / shadow")


def test_broken_mesh_shadow_sidecar_in_tee_mode(k8s_copy):
    k8s_copy("mirroring/mesh/shadow-sidecar.yml", "      - --mirror-mode\n      - mesh\n      - --mesh-role\n      - shadow\n", "")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"mode mismatch: Deployment/flask-inference-server-shadow container shadowtee runs --mirror-mode tee")


def test_broken_mesh_sidecars_disagree_on_the_service(k8s_copy):
    k8s_copy("mirroring/mesh/shadow-sidecar.yml", "      - --service\n      - flask-inference\n",
             "      - --service\n      - flask-inference-v2\n")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"mesh mode: Deployment/flask-inference-server-shadow container shadowtee --service 'flask-inference-v2' "
                   r"!= Deployment/flask-inference-server-stable container shadowtee --service 'flask-inference'")


def test_broken_mesh_shadow_sidecar_probe_differs(k8s_copy):
    k8s_copy("mirroring/mesh/shadow-sidecar.yml", "      failureThreshold: 2\n", "      failureThreshold: 5\n")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"Deployment/flask-inference-server-shadow container shadowtee: readinessProbe differs from the stable "
                   r"pods' sidecar")


def test_broken_mesh_shadow_misses_the_environments_sidecar_resources(k8s_copy):
    # without the label the environment's sidecar patch skips the shadow:
    # its sidecar keeps the base's resources, not development's
    k8s_copy("mirroring/mesh/shadow-pod.yml", "  labels:\n    shadowtee-sidecar: \"true\"\nspec:", "spec:")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"Deployment/flask-inference-server-shadow container shadowtee: resources differs from the stable pods' "
                   r"sidecar")


def test_broken_mesh_shadow_timeout_outlives_the_pair_ttl(k8s_copy):
    k8s_copy("mirroring/mesh/shadow-sidecar.yml", "      - --upstream-timeout\n      - 10s\n",
             "      - --upstream-timeout\n      - 30s\n")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"container shadowtee: --upstream-timeout 30s >= --mesh-pair-ttl 30s")


def test_broken_mesh_mirror_on_a_route_without_the_stable_pods(k8s_copy):
    k8s_copy("mirroring/mesh/virtual-service.yml", "- op: test\n  path: /spec/http/2/name\n  value: primary",
             "- op: test\n  path: /spec/http/0/name\n  value: canary-pinned")
    k8s_copy("mirroring/mesh/virtual-service.yml", "path: /spec/http/2/mirror\n", "path: /spec/http/0/mirror\n")
    k8s_copy("mirroring/mesh/virtual-service.yml", "path: /spec/http/2/mirrorPercentage\n", "path: /spec/http/0/mirrorPercentage\n")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"mesh mode: VirtualService/flask-inference-server: spec\.http\[0\] mirrors a route that does not reach "
                   r"the stable pods")


def test_broken_tee_shadow_runs_the_sidecar(k8s_copy):
    # the mesh component's shadow pod in a tee environment: its sidecar
    # would answer the tee'd copies itself
    tee = os.path.join(k8s_copy.root, "mirroring", "tee")
    for f in ("shadow-pod.yml", "shadow-sidecar.yml"):
        shutil.copy(os.path.join(k8s_copy.root, "mirroring", "mesh", f), tee)
    k8s_copy("mirroring/tee/kustomization.yaml", "patches:\n",
             "patches:\n  - path: shadow-pod.yml\n  - path: shadow-sidecar.yml\n    target:\n      kind: Deployment\n"
             "      name: flask-inference-server-shadow\n")
    assert_problem(problems_for(k8s_copy, "staging", schemas=False),
                   r"Deployment/flask-inference-server-shadow: the tee's shadow pods run a shadowtee sidecar, but the stable "
                   r"sidecar is in tee mode")


def test_broken_percentage_var_unresolved(k8s_copy):
    k8s_copy("environments/development/kustomization.yaml", "- mirror-percent=100", "- mirror-pct=100")
    problems = problems_for(k8s_copy, "development", schemas=False)
    assert_problem(problems, r"Deployment/flask-inference-server-stable container shadowtee: env MIRROR_PERCENT: ConfigMap "
                             r"shadowtee-mirroring-\w+ has no key mirror-percent")
    assert_problem(problems, r"Deployment/flask-inference-server-shadow container shadowtee: args use \$\(MIRROR_PERCENT\), "
                             r"which is not an env var")


def test_broken_percentage_out_of_range(k8s_copy):
    k8s_copy("environments/production/kustomization.yaml", "- mirror-percent=10", "- mirror-percent=110")
    assert_problem(problems_for(k8s_copy, schemas=False),
                   r"Deployment/flask-inference-server-stable container shadowtee: --mirror-percent 110 is not within 0\.\.100")


def test_broken_deprecated_mirror_percent(k8s_copy):
    k8s_copy("mirroring/mesh/virtual-service.yml", "  value:\n    value: 100", "  value:\n    value: 100\n"
             "- op: add\n  path: /spec/http/2/mirrorPercent\n  value: 100")
    assert_problem(problems_for(k8s_copy, "development"), r"spec\.http\[2\]\.mirrorPercent is deprecated")


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
    # A renamed route: the mesh component's "test" op catches it at render
    # time instead of mirroring another route.
    k8s_copy("inference/virtual-service.yml", "    - name: primary\n", "    - name: main\n")
    assert_problem(problems_for(k8s_copy, "development", schemas=False),
                   r"kubectl kustomize .* failed: .*testing value /spec/http/2/name failed")


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
    k8s_copy("environments/staging/kustomization.yaml", "  - ../../mirroring/tee\n",
             "  - ../../mirroring/tee\n  - ../../mirroring/mesh\n")
    r = subprocess.run([PY, VALIDATOR, "--k8s", k8s_copy.root], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert re.search(r"^staging: both mechanisms active: ", r.stdout, re.M) and "FAIL staging: " in r.stdout, r.stdout
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


def test_broken_metrics_service_skips_the_mesh_shadow(k8s_copy):
    # the shadow's sidecar compares too in mesh mode: a scrape of the stable
    # pods only would miss its comparisons and halves
    k8s_copy("components/monitoring/metrics-service.yml", "  selector:\n    shadowtee-sidecar: \"true\"",
             "  selector:\n    shadowtee-sidecar: \"true\"\n    version: stable")
    assert component_problems(k8s_copy, ["monitoring"]) == []  # production: tee, only the stable pods compare
    assert_problem(component_problems(k8s_copy, ["monitoring"], env="development"),
                   r"ServiceMonitor/shadowtee: Deployment/flask-inference-server-shadow runs the shadowtee sidecar but no "
                   r"Service it scrapes selects its pods")


def test_broken_analysis_pods_miss_the_mesh_shadow(k8s_copy):
    k8s_copy("components/argo-rollouts/analysis-template.yml", "flask-inference-server-(stable|shadow)-[a-z0-9]+",
             "flask-inference-server-stable-[a-z0-9]+")
    assert component_problems(k8s_copy, ["argo-rollouts"]) == []  # production: tee
    assert_problem(component_problems(k8s_copy, ["argo-rollouts"], env="development"),
                   r"AnalysisTemplate/shadowtee-promotion: stable-pods .* does not match the pods of "
                   r"Deployment/flask-inference-server-shadow")


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
