#!/usr/bin/python3
"""Validates the Kubernetes manifests of every environment, offline.

For each k8s/environments/<env>, alone and with the optional components of
k8s/components (each one, then all together, as an environment would list
them under `components:`): render with `kubectl kustomize`, load the output
with a strict YAML loader (duplicate keys fail, dates stay strings),
validate every object against the pinned JSON Schemas in k8s/schemas (or
$SHADOWTEE_K8S_SCHEMAS; a kind without a schema fails), then run the
project's consistency checks (consistency_problems below): exactly one
mirroring mechanism (the stable sidecar's tee, or Istio's mirror with the
sidecars of the mesh mode on both sides) and the VirtualService, the
sidecars and the Services agreeing on it (check_mirroring), selectors, ports,
HPA/PDB targets, DestinationRule subsets, security context, drain timing,
the app's address (BIND == --primary; a Unix socket in a shared emptyDir),
the rules ConfigMap, no deprecated mirror fields; with the components, the
Flagger Canary and its MetricTemplate, the Argo Rollouts AnalysisTemplate,
the ServiceMonitor and the PrometheusRule (equal to monitoring/shadowtee-rules.yml).

By default every environment is validated alone, with each component and
with all of them, except the combinations its mirroring mode rules out
(printed as "n/a", e.g. flagger with the mesh mode); naming one on the
command line validates it all the same.

Usage: validate_k8s.py [--k8s DIR] [--schemas DIR] [--rules FILE] [ENV[+COMPONENT...] ...]
Exit status: 0 all valid, 1 problems found (one line each), 2 cannot run
(kubectl or the schemas missing, bad arguments).
"""
import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import jsonschema
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ENVIRONMENTS = ("development", "staging", "production")
PROM_RULES = os.path.join(ROOT, "monitoring", "shadowtee-rules.yml")
SIDECAR = "shadowtee"
STABLE = "flask-inference-server-stable"
MODES = ("tee", "mesh")
DEFAULT_PAIR_TTL_S = 30.0
# components that only work with one mirroring mode (why: check_mirroring)
COMPONENT_MODES = {"flagger": ("tee",)}
# what both sidecars of the mesh mode must agree on (flag: default), or the
# halves of a pair would not be chosen alike, meet or be compared alike
MESH_SHARED = {"--mirror-percent": None, "--service": "default", "--compare-rules": "", "--compare-max-body": "1M",
               "--mesh-pair-ttl": "30s", "--redis": None}
DEFAULT_DRAIN_S = 25.0
DEV_ONLY_ENVS = ("development",)
PLACEHOLDER_MARK = "placeholder"
UNIX_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the final NUL


class SetupError(Exception):
    """The validation cannot run (exit 2): kubectl or schemas missing."""


class RenderError(Exception):
    """kubectl kustomize failed or produced YAML we refuse to load."""


# ---- strict YAML -----------------------------------------------------------


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and keeps dates as strings."""


StrictLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, "duplicate key %r" % (key,), key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_documents(text, source="<input>"):
    """Returns the non-empty documents of a YAML stream; RenderError on
    duplicate keys or bad YAML, naming the source and line."""
    try:
        docs = list(yaml.load_all(text, Loader=StrictLoader))
    except yaml.YAMLError as exc:
        raise RenderError("%s: %s" % (source, str(exc).replace("\n", " "))) from None
    out = [d for d in docs if d is not None]
    for d in out:
        if not isinstance(d, dict):
            raise RenderError("%s: a document is not a mapping" % source)
    return out


# ---- rendering and schemas -------------------------------------------------


def kubectl_path():
    """$KUBECTL or kubectl on PATH, if executable; else None."""
    return shutil.which(os.environ.get("KUBECTL") or "kubectl")


def render(env_dir):
    """Returns `kubectl kustomize env_dir` output; SetupError without
    kubectl, RenderError when kustomize fails."""
    kubectl = kubectl_path()
    if not kubectl:
        raise SetupError("kubectl not found on PATH (needed to render kustomizations)")
    r = subprocess.run([kubectl, "kustomize", env_dir], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RenderError("kubectl kustomize %s failed: %s" % (env_dir, r.stderr.strip()))
    return r.stdout


def default_schemas_dir():
    return os.environ.get("SHADOWTEE_K8S_SCHEMAS") or os.path.join(ROOT, "k8s", "schemas")


def components_of(k8s_dir):
    """The optional kustomize components: names of k8s_dir/components/* dirs."""
    d = os.path.join(k8s_dir, "components")
    if not os.path.isdir(d):
        return []
    return sorted(n for n in os.listdir(d) if os.path.isfile(os.path.join(d, n, "kustomization.yaml")))


def render_with_components(k8s_dir, env, components):
    """`kubectl kustomize` of environment `env` with `components` added to its
    kustomization.yaml, as a user enables them: done on a temporary copy of
    k8s_dir (the schemas left out), the tree itself is not touched."""
    if not components:
        return render(os.path.join(k8s_dir, "environments", env))
    with tempfile.TemporaryDirectory(prefix="st-k8s-") as tmp:
        copy = os.path.join(tmp, "k8s")
        shutil.copytree(k8s_dir, copy, ignore=shutil.ignore_patterns("schemas"))
        kust = os.path.join(copy, "environments", env, "kustomization.yaml")
        with open(kust) as fh:
            doc = yaml.safe_load(fh) or {}
        # after the environment's own (its mirroring mode comes first)
        doc["components"] = list(doc.get("components") or []) + ["../../components/%s" % c for c in components]
        with open(kust, "w") as fh:
            yaml.safe_dump(doc, fh, sort_keys=False)
        return render(os.path.join(copy, "environments", env))


def mirroring_mode_of(env_dir):
    """The mode an environment's kustomization.yaml picks: "tee" or "mesh"
    from its `components:` entries .../mirroring/<mode>, None for none,
    "tee+mesh" when it lists both (the checks then say what is wrong)."""
    with open(os.path.join(env_dir, "kustomization.yaml")) as fh:
        doc = yaml.safe_load(fh) or {}
    found = [os.path.basename(os.path.normpath(c)) for c in doc.get("components") or []
             if os.path.basename(os.path.dirname(os.path.normpath(c))) == "mirroring"]
    return "+".join(found) or None


class Schemas:
    """index.json + lazily loaded schema files of one directory."""

    def __init__(self, directory):
        index = os.path.join(directory, "index.json")
        if not os.path.isfile(index):
            raise SetupError("no JSON schemas at %s (index.json missing); set SHADOWTEE_K8S_SCHEMAS" % directory)
        self.dir = directory
        with open(index) as fh:
            self.index = json.load(fh)
        self.validators = {}

    def validator(self, api_version, kind):
        key = "%s/%s" % (api_version, kind)
        if key not in self.validators:
            name = self.index.get(key)
            if name is None:
                return None
            with open(os.path.join(self.dir, name)) as fh:
                self.validators[key] = jsonschema.Draft7Validator(json.load(fh))
        return self.validators[key]


def obj_id(doc):
    return "%s/%s" % (doc.get("kind", "?"), (doc.get("metadata") or {}).get("name", "?"))


def json_path(parts):
    out = ""
    for p in parts:
        out += "[%d]" % p if isinstance(p, int) else ("." + str(p) if out else str(p))
    return out or "(root)"


def schema_problems(docs, schemas):
    """One line per schema violation; a kind without a schema is one."""
    problems = []
    for doc in docs:
        v = schemas.validator(doc.get("apiVersion"), doc.get("kind"))
        if v is None:
            problems.append("%s: no schema for %s %s in %s (strict: unknown kinds fail)" %
                            (obj_id(doc), doc.get("apiVersion"), doc.get("kind"), schemas.dir))
            continue
        for err in sorted(v.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
            problems.append("%s: %s: %s" % (obj_id(doc), json_path(err.absolute_path), err.message))
    return problems


# ---- consistency helpers ---------------------------------------------------


def parse_args(args, duplicates=None):
    """Sidecar args -> {flag: value}; a flag without a value maps to True.
    A flag given twice keeps the last value (as the binary does) and, when
    `duplicates` is a list, is appended to it."""
    out, i = {}, 0
    while i < len(args):
        a = str(args[i])
        if a.startswith("--") and "=" in a:
            k, v = a.split("=", 1)
        elif a.startswith("--") and i + 1 < len(args) and not str(args[i + 1]).startswith("--"):
            k, v = a, str(args[i + 1])
            i += 1
        else:
            k, v = a, True
        if k in out and duplicates is not None:
            duplicates.append(k)
        out[k] = v
        i += 1
    return out


VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text, env):
    """The kubelet's $(VAR) expansion: $(NAME) -> env[NAME] when defined,
    else left as written; $$ -> $. Returns (text, unresolved names)."""
    missing = []

    def one(m):
        if m.group(0) == "$$":
            return "$"
        if m.group(1) in env:
            return env[m.group(1)]
        missing.append(m.group(1))
        return m.group(0)

    return VAR_REF.sub(one, str(text)), missing


def container_env(r, c, out=None, where=""):
    """{name: value} of a container's env as the kubelet makes it: values
    expanded with the variables defined before them, configMapKeyRef read
    from the ConfigMap of this render (a missing one or key is a problem),
    a secret kept as the placeholder "$(secret:NAME/KEY)"."""
    env = {}
    for e in c.get("env") or []:
        name, ref = e.get("name"), e.get("valueFrom") or {}
        if "value" in e:
            env[name] = expand(e.get("value"), env)[0]
        elif "configMapKeyRef" in ref:
            cref = ref["configMapKeyRef"]
            cm = r.get("ConfigMap", cref.get("name"))
            val = None if cm is None else (cm.get("data") or {}).get(cref.get("key"))
            if val is None:
                if out is not None:
                    out.append("%s: env %s: ConfigMap %s has no key %s in this render" %
                               (where, name, cref.get("name"), cref.get("key")))
                continue
            env[name] = str(val)
        elif "secretKeyRef" in ref:
            sref = ref["secretKeyRef"]
            env[name] = "$(secret:%s/%s)" % (sref.get("name"), sref.get("key"))
    return env


def sidecar_flags(r, c, out=None, where=""):
    """The flags a sidecar container runs with: its args after the kubelet's
    $(VAR) expansion (a reference it cannot resolve is a problem: the binary
    would get "$(NAME)" literally), plus SHADOWTEE_<FLAG> variables of its
    env for flags the args do not give (the binary reads those; flags win)."""
    env = container_env(r, c, out, where)
    args = []
    for a in c.get("args") or []:
        text, missing = expand(a, env)
        for name in missing:
            if out is not None:
                out.append("%s: args use $(%s), which is not an env var of the container (the kubelet would pass it "
                           "as written)" % (where, name))
        args.append(text)
    dups = []
    flags = parse_args(args, dups)
    for k in sorted(set(dups)):
        if out is not None:
            out.append("%s: %s is given more than once in args (two mirroring components?)" % (where, k))
    for name, value in env.items():
        if name.startswith("SHADOWTEE_"):
            flags.setdefault("--" + name[len("SHADOWTEE_"):].lower().replace("_", "-"), value)
    return flags


def duration_s(text):
    """Go-style duration ("25s", "1m30s", "500ms") -> seconds, or None."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def host_port(text):
    host, _, port = str(text).rpartition(":")
    return (host, int(port)) if host and port.isdigit() else (None, None)


def short_host(host, namespace):
    """Istio short name: "svc", "svc.ns", "svc.ns.svc.cluster.local" -> "svc"
    when ns is this namespace (or absent)."""
    parts = host.split(".")
    if len(parts) == 1 or (parts[1] == namespace and (len(parts) == 2 or parts[2:] == ["svc", "cluster", "local"])):
        return parts[0]
    return host


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def prestop_sleep(container):
    cmd = (((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
    sleep = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep")
    if sleep:
        return float(sleep.get("seconds", 0))
    if len(cmd) == 2 and os.path.basename(cmd[0]) == "sleep" and re.fullmatch(r"\d+", str(cmd[1])):
        return float(cmd[1])
    return 0.0


class Render:
    """The objects of one rendered environment, indexed for the checks."""

    def __init__(self, docs):
        self.docs = docs
        self.by_kind = {}
        for d in docs:
            self.by_kind.setdefault(d.get("kind"), []).append(d)
        self.workloads = self.by_kind.get("Deployment", []) + self.by_kind.get("StatefulSet", [])
        ns = [d["metadata"]["name"] for d in self.by_kind.get("Namespace", [])]
        self.namespace = ns[0] if len(ns) == 1 else None

    def get(self, kind, name):
        for d in self.by_kind.get(kind, []):
            if d["metadata"].get("name") == name:
                return d
        return None

    @staticmethod
    def pod_labels(w):
        return ((w.get("spec") or {}).get("template", {}).get("metadata") or {}).get("labels") or {}

    @staticmethod
    def pod_spec(w):
        return (w.get("spec") or {}).get("template", {}).get("spec") or {}

    def selected(self, selector):
        return [w for w in self.workloads if matches(selector, self.pod_labels(w))]


# ---- consistency checks ----------------------------------------------------


def check_workloads(r, out):
    for w in r.workloads:
        sel = ((w["spec"].get("selector") or {}).get("matchLabels")) or {}
        if not matches(sel, r.pod_labels(w)):
            out.append("%s: spec.selector.matchLabels %s does not match the pod template labels" % (obj_id(w), sel))
        check_containers(obj_id(w), r.pod_spec(w), out)


def check_containers(owner, spec, out):
    """Security context, pinned image, requests and limits of every container
    of a pod spec (a workload's, or an analysis Job's)."""
    psc = spec.get("securityContext") or {}
    for c in spec.get("containers", []):
        sc = c.get("securityContext") or {}
        where = "%s container %s" % (owner, c.get("name"))
        if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
            out.append("%s: runAsNonRoot is not true" % where)
        if ((sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")) != "RuntimeDefault":
            out.append("%s: seccompProfile is not RuntimeDefault" % where)
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append("%s: allowPrivilegeEscalation is not false" % where)
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append("%s: readOnlyRootFilesystem is not true" % where)
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            out.append("%s: capabilities.drop does not contain ALL" % where)
        image = c.get("image") or ""
        tag = image.rsplit("/", 1)[-1].partition(":")[2] if "@" not in image else "digest"
        if tag in ("", "latest"):
            out.append("%s: image %r needs a pinned tag (not latest)" % (where, image))
        res = c.get("resources") or {}
        if not (res.get("requests") and res.get("limits")):
            out.append("%s: resources.requests and resources.limits are required" % where)


def check_app_binds(r, out):
    """A container with a TCP BIND (gunicorn) in a pod without the sidecar
    binds all interfaces on one of its container ports, so its Service
    reaches it; the app behind a sidecar is checked by check_sidecar."""
    for w in r.workloads:
        if sidecar_of(r, w) is not None:
            continue
        for c in r.pod_spec(w).get("containers", []):
            bind = {e.get("name"): e.get("value") for e in c.get("env") or []}.get("BIND")
            if bind is None or str(bind).startswith("unix:"):
                continue
            host, port = host_port(bind)
            if host != "0.0.0.0" or port not in [p.get("containerPort") for p in c.get("ports") or []]:
                out.append("%s container %s: BIND %s is not 0.0.0.0 on one of its container ports" %
                           (obj_id(w), c.get("name"), bind))


def check_services(r, out):
    for svc in r.by_kind.get("Service", []):
        sel = svc["spec"].get("selector") or {}
        pods = r.selected(sel)
        if not pods:
            out.append("%s: selector %s matches no pod template" % (obj_id(svc), sel))
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port.get("port"))
            for w in pods:
                owners = [c for c in r.pod_spec(w).get("containers", [])
                          for p in c.get("ports") or []
                          if p.get("containerPort") == target or (p.get("name") == target and isinstance(target, str))]
                if not owners:
                    out.append("%s: targetPort %s is not a container port of %s" % (obj_id(svc), target, obj_id(w)))
                    continue
                names = [c.get("name") for c in r.pod_spec(w).get("containers", [])]
                if SIDECAR in names and owners[0].get("name") != SIDECAR:
                    out.append("%s: targetPort %s reaches container %s of %s, not the %s sidecar" %
                               (obj_id(svc), target, owners[0].get("name"), obj_id(w), SIDECAR))


def check_autoscaling(r, out):
    for hpa in r.by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"].get("scaleTargetRef") or {}
        target = r.get(ref.get("kind"), ref.get("name"))
        if target is None:
            out.append("%s: scaleTargetRef %s/%s does not exist" % (obj_id(hpa), ref.get("kind"), ref.get("name")))
            continue
        lo, hi = hpa["spec"].get("minReplicas", 1), hpa["spec"].get("maxReplicas")
        if hi is not None and lo > hi:
            out.append("%s: minReplicas %s > maxReplicas %s" % (obj_id(hpa), lo, hi))
        reps = target["spec"].get("replicas", 1)
        if hi is not None and not lo <= reps <= hi:
            out.append("%s: %s replicas %s outside [%s, %s]" % (obj_id(hpa), obj_id(target), reps, lo, hi))
        for m in hpa["spec"].get("metrics") or []:
            name = (m.get("resource") or {}).get("name")
            for c in r.pod_spec(target).get("containers", []):
                if name and name not in ((c.get("resources") or {}).get("requests") or {}):
                    out.append("%s: scales on %s but container %s has no %s request" % (obj_id(hpa), name, c.get("name"), name))
    for pdb in r.by_kind.get("PodDisruptionBudget", []):
        sel = (pdb["spec"].get("selector") or {}).get("matchLabels") or {}
        if not r.selected(sel):
            out.append("%s: selector %s matches no Deployment pod labels" % (obj_id(pdb), sel))
        if "minAvailable" in pdb["spec"] and "maxUnavailable" in pdb["spec"]:
            out.append("%s: set minAvailable or maxUnavailable, not both" % obj_id(pdb))


def check_destination_rules(r, out):
    subsets_by_host = {}
    for dr in r.by_kind.get("DestinationRule", []):
        host = short_host(dr["spec"].get("host", ""), r.namespace)
        svc = r.get("Service", host)
        if svc is None:
            out.append("%s: host %s is not a Service in this render" % (obj_id(dr), host))
            continue
        pods = r.selected(svc["spec"].get("selector") or {})
        names = set()
        for s in dr["spec"].get("subsets") or []:
            if s["name"] in names:
                out.append("%s: subset %s defined twice" % (obj_id(dr), s["name"]))
            names.add(s["name"])
            if not any(matches(s.get("labels") or {}, r.pod_labels(w)) for w in pods):
                out.append("%s: subset %s labels %s match no pod of Service %s" % (obj_id(dr), s["name"], s.get("labels"), host))
        subsets_by_host.setdefault(host, set()).update(names)
        versions = {r.pod_labels(w).get("version") for w in pods} - {None}
        covered = {(s.get("labels") or {}).get("version") for s in dr["spec"].get("subsets") or []}
        for v in sorted(versions - covered):
            out.append("%s: no subset for version label %r of Service %s" % (obj_id(dr), v, host))
    return subsets_by_host


def mirrors_of(route):
    """[(destination, percent)] of one VirtualService http route."""
    found = []
    if route.get("mirror"):
        pct = route.get("mirrorPercentage")
        found.append((route["mirror"], 100.0 if pct is None else float(pct.get("value", 0))))
    for m in route.get("mirrors") or []:
        pct = m.get("percentage")
        found.append((m.get("destination") or {}, 100.0 if pct is None else float(pct.get("value", 0))))
    return found


def check_virtual_services(r, subsets_by_host, out):
    """Route and mirror destinations exist, weights sum to 100, no
    deprecated mirror fields. Returns [(where, route, destination, percent)]
    of every mirror (check_mirroring decides whether one is wanted)."""
    mirrors = []
    for vs in r.by_kind.get("VirtualService", []):
        for i, route in enumerate(vs["spec"].get("http") or []):
            where = "%s: spec.http[%d]" % (obj_id(vs), i)
            for bad in ("mirrorPercent", "mirror_percent"):
                if bad in route:
                    out.append("%s.%s is deprecated; use mirrorPercentage.value" % (where, bad))
            dests = [d.get("destination") or {} for d in route.get("route") or []]
            for dest, pct in mirrors_of(route):
                dests.append(dest)
                mirrors.append((where, route, dest, pct))
            for d in dests:
                host = short_host(d.get("host", ""), r.namespace)
                if r.get("Service", host) is None:
                    out.append("%s: destination host %s is not a Service in this render" % (where, host))
                elif d.get("subset") and d["subset"] not in subsets_by_host.get(host, set()):
                    out.append("%s: subset %s of host %s is not defined by a DestinationRule" % (where, d["subset"], host))
            weights = [d.get("weight") for d in route.get("route") or []]
            if len(weights) > 1 and sum(w or 0 for w in weights) != 100:
                out.append("%s: route weights %s do not sum to 100" % (where, weights))
    return mirrors


def sidecar_of(r, w):
    """The shadowtee container of workload w, or None."""
    return next((c for c in r.pod_spec(w).get("containers", []) if c.get("name") == SIDECAR), None)


def subset_labels(r, host, subset):
    """The labels of `subset` of `host` in this render's DestinationRules."""
    for dr in r.by_kind.get("DestinationRule", []):
        if short_host(dr["spec"].get("host", ""), r.namespace) == host:
            for s in dr["spec"].get("subsets") or []:
                if s.get("name") == subset:
                    return s.get("labels") or {}
    return None


def service_target(r, host, port):
    """(Service, its port entry) for host:port, port None meaning its only
    port; (None, None) when there is no such Service or port."""
    svc = r.get("Service", host)
    ports = ((svc or {}).get("spec") or {}).get("ports") or []
    if port is None:
        return (svc, ports[0]) if len(ports) == 1 else (svc, None)
    return svc, next((p for p in ports if p.get("port") == port), None)


def container_port_number(c, target):
    """A targetPort (number or name) as a containerPort of c, or None."""
    for p in c.get("ports") or []:
        if p.get("containerPort") == target or (isinstance(target, str) and p.get("name") == target):
            return p.get("containerPort")
    return None


def percent_of(flags, where, out):
    text = flags.get("--mirror-percent", "100")  # the binary's default with a shadow
    try:
        pct = float(text)
    except (TypeError, ValueError):
        out.append("%s: --mirror-percent %r is not a number" % (where, text))
        return None
    if not 0 <= pct <= 100:
        out.append("%s: --mirror-percent %g is not within 0..100" % (where, pct))
    return pct


def check_mirroring(r, stable_flags, mirrors, rules_file, out, checked):
    """Exactly one mirroring mechanism, and everything agreeing on it.

    tee:  the stable sidecar tees (--shadow, --mirror-percent P) and no
          VirtualService route mirrors (else the shadow gets every copy
          twice and Istio's are never compared); --shadow is a port of a
          Service; the shadow pods run no sidecar.
    mesh: no tee (--shadow / --noise-upstream refused), --mesh-role stable
          and Redis on the stable sidecar; exactly one route mirrors, the
          one that reaches the stable pods, at 100% (Istio samples at random
          and cannot tell the stable side which requests it copied, so the
          sidecars sample P% by x-request-id); its host:port is a Service
          port whose targetPort is the --listen port of a shadowtee sidecar
          in every pod it selects, in --mirror-mode mesh --mesh-role shadow,
          agreeing with the stable one on what pairs the halves (percent,
          service, rules, body limit, pair TTL, Redis), with the stable
          sidecar's image, probes, lifecycle, resources and security
          context; the pod checks of the stable pod (check_sidecar) apply
          (the workloads so checked are appended to `checked`).
    Returns the mode, or None when it cannot be told."""
    where = "Deployment/%s container %s" % (STABLE, SIDECAR)
    mode = stable_flags.get("--mirror-mode", "tee")
    if mode not in MODES:
        out.append("%s: --mirror-mode %r is neither tee nor mesh" % (where, mode))
        return None
    pct = percent_of(stable_flags, where, out)
    flagger = STABLE in flagger_targets(r)
    if mode == "tee":
        if "--shadow" not in stable_flags:
            out.append("%s: no mirroring mode: tee (the default) without --shadow mirrors nothing; list "
                       "../../mirroring/tee or ../../mirroring/mesh in the environment's components" % where)
            return mode
        for flag in sorted(f for f in stable_flags if f.startswith("--mesh-")):
            out.append("%s: %s with --mirror-mode tee (the binary refuses it)" % (where, flag))
        host, port = host_port(stable_flags["--shadow"])
        host = short_host(host or "", r.namespace)
        svc, sport = service_target(r, host, port)
        if sport is None:
            out.append("mirror host mismatch: %s: --shadow %s is not a port of a Service in this render" %
                       (where, stable_flags["--shadow"]))
        for mwhere, _, dest, mpct in mirrors:
            out.append("both mechanisms active: %s mirrors %g%% to %s and the stable sidecar tees %s%% to %s "
                       "(--mirror-mode tee): in tee mode the VirtualService must not mirror" %
                       (mwhere, mpct, short_host(dest.get("host", ""), r.namespace),
                        "?" if pct is None else "%g" % pct, stable_flags["--shadow"]))
        if svc is not None:
            for w in r.selected(svc["spec"].get("selector") or {}):
                if sidecar_of(r, w) is not None:
                    out.append("%s: the tee's shadow pods run a %s sidecar, but the stable sidecar is in tee mode "
                               "(it would answer the tee'd copies itself): drop it or use the mesh mode" %
                               (obj_id(w), SIDECAR))
        return mode
    # ---- mesh
    if flagger:
        out.append("mesh mode with the flagger component: Flagger generates the VirtualService without the mirror "
                   "the mesh mode needs (the hand-written one is removed); use ../../mirroring/tee with Flagger")
        return mode
    for flag in ("--shadow", "--noise-upstream"):
        if flag in stable_flags:
            out.append("both mechanisms active: %s: %s with --mirror-mode mesh (Istio mirrors; the sidecar must not "
                       "tee as well)" % (where, flag))
    if stable_flags.get("--mesh-role") != "stable":
        out.append("%s: --mesh-role must be stable in the stable pods, got %r" % (where, stable_flags.get("--mesh-role")))
    if not stable_flags.get("--redis"):
        out.append("%s: --mirror-mode mesh needs --redis (or SHADOWTEE_REDIS): the halves meet there" % where)
    if len(mirrors) != 1:
        out.append("mesh mode: expected exactly one VirtualService route mirroring to the shadow, found %d" % len(mirrors))
        return mode
    mwhere, route, dest, mpct = mirrors[0]
    if abs(mpct - 100.0) > 1e-9:
        out.append("mirror percentage mismatch: %s mirrorPercentage %g, but in mesh mode Istio must mirror 100%% and the "
                   "sidecars sample (--mirror-percent %s): Istio's random %g%% would leave most halves without a partner" %
                   (mwhere, mpct, "?" if pct is None else "%g" % pct, mpct))
    stable = r.get("Deployment", STABLE)
    reaches_stable = False
    for d in route.get("route") or []:
        d = d.get("destination") or {}
        labels = subset_labels(r, short_host(d.get("host", ""), r.namespace), d.get("subset")) if d.get("subset") else {}
        svc = r.get("Service", short_host(d.get("host", ""), r.namespace))
        if svc is not None and labels is not None and matches(dict(svc["spec"].get("selector") or {}, **labels),
                                                               r.pod_labels(stable)):
            reaches_stable = True
    if not reaches_stable:
        out.append("mesh mode: %s mirrors a route that does not reach the stable pods: no stable half for its copies" %
                   mwhere)
    host = short_host(dest.get("host", ""), r.namespace)
    svc, sport = service_target(r, host, (dest.get("port") or {}).get("number"))
    if sport is None:
        out.append("mirror host mismatch: %s mirrors to %s:%s, not a port of a Service in this render" %
                   (mwhere, host, (dest.get("port") or {}).get("number")))
        return mode
    selector = dict(svc["spec"].get("selector") or {})
    if dest.get("subset"):
        selector.update(subset_labels(r, host, dest["subset"]) or {})
    shadows = r.selected(selector)
    if not shadows:
        out.append("mesh mode: %s mirrors to %s, which selects no pods" % (mwhere, host))
    stable_side = sidecar_of(r, stable)
    target = sport.get("targetPort", sport.get("port"))
    for w in shadows:
        side = sidecar_of(r, w)
        if side is None:
            out.append("mesh mode: %s (the pods %s mirrors to) has no %s sidecar: the copies reach the app unsampled "
                       "and no shadow half is ever published" % (obj_id(w), mwhere, SIDECAR))
            continue
        swhere = "%s container %s" % (obj_id(w), SIDECAR)
        flags = check_sidecar(r, w, rules_file, out)
        checked.append(w)
        if flags.get("--mirror-mode") != "mesh" or flags.get("--mesh-role") != "shadow":
            out.append("mode mismatch: %s runs --mirror-mode %s --mesh-role %s; the mirror's pods need mesh / shadow" %
                       (swhere, flags.get("--mirror-mode", "tee"), flags.get("--mesh-role")))
        for flag in ("--shadow", "--noise-upstream"):
            if flag in flags:
                out.append("%s: %s in the shadow pods: the shadow side must not tee" % (swhere, flag))
        if container_port_number(side, target) != host_port(flags.get("--listen", ""))[1]:
            out.append("mirror host mismatch: %s mirrors to %s:%s, whose targetPort %s is not the --listen port %s of %s"
                       % (mwhere, host, sport.get("port"), target, host_port(flags.get("--listen", ""))[1], swhere))
        spct = percent_of(flags, swhere, out)
        if pct is not None and spct is not None and abs(pct - spct) > 1e-9:
            out.append("mirror percentage mismatch: %s --mirror-percent %g != %s --mirror-percent %g (the two sides "
                       "would sample different requests)" % (swhere, spct, where, pct))
        for flag, default in sorted(MESH_SHARED.items()):
            if flag == "--mirror-percent":
                continue
            a, b = stable_flags.get(flag, default), flags.get(flag, default)
            if a != b:
                out.append("mesh mode: %s %s %r != %s %s %r (the halves would not meet or be compared alike)" %
                           (swhere, flag, b, where, flag, a))
        for field in ("image", "readinessProbe", "livenessProbe", "lifecycle", "resources", "securityContext"):
            if side.get(field) != stable_side.get(field):
                out.append("%s: %s differs from the stable pods' sidecar (%s vs %s)" %
                           (swhere, field, json.dumps(side.get(field), sort_keys=True),
                            json.dumps(stable_side.get(field), sort_keys=True)))
        if r.pod_spec(w).get("securityContext") != r.pod_spec(stable).get("securityContext"):
            out.append("%s: pod securityContext differs from the stable pods'" % obj_id(w))
        ttl = duration_s(flags.get("--mesh-pair-ttl", "30s"))
        up = duration_s(flags.get("--upstream-timeout", "60s"))
        if ttl is not None and up is not None and up >= ttl:
            out.append("%s: --upstream-timeout %gs >= --mesh-pair-ttl %gs: a slow shadow answer would come after its "
                       "stable half expired (an orphan)" % (swhere, up, ttl))
    return mode


def check_sidecar(r, w, rules_file, out):
    """Checks the sidecar of workload w (its pod wiring: ports, probes,
    annotations, the app behind it, drain timing, rules); returns its
    flags ({} without the sidecar, reported)."""
    name = w["metadata"]["name"]
    spec = r.pod_spec(w)
    containers = {c.get("name"): c for c in spec.get("containers", [])}
    side = containers.get(SIDECAR)
    if side is None:
        out.append("Deployment/%s: no %s sidecar container" % (name, SIDECAR))
        return {}
    where = "Deployment/%s container %s" % (name, SIDECAR)
    flags = sidecar_flags(r, side, out, where)
    ports = {p.get("containerPort"): p for p in side.get("ports") or []}
    for flag in ("--listen", "--primary", "--admin"):
        if flag not in flags:
            out.append("%s: %s is missing from args" % (where, flag))
    admin_host, admin_port = host_port(flags.get("--admin", "127.0.0.1:9901"))
    if admin_host != "0.0.0.0":
        out.append("%s: --admin must listen on 0.0.0.0 for the kubelet probes, not %s" % (where, admin_host))
    listen_port = host_port(flags.get("--listen", ""))[1]
    for port in (listen_port, admin_port):
        if port not in ports:
            out.append("%s: port %s from args is not a containerPort" % (where, port))
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = (side.get(probe) or {}).get("httpGet") or {}
        port = get.get("port")
        port = next((p.get("containerPort") for p in side.get("ports") or [] if p.get("name") == port), port)
        if get.get("path") != path or port != admin_port:
            out.append("%s: %s must be GET %s on the admin port %s" % (where, probe, path, admin_port))
    ann = (w["spec"]["template"].get("metadata") or {}).get("annotations") or {}
    want = {"prometheus.io/scrape": "true", "prometheus.io/port": str(admin_port), "prometheus.io/path": "/metrics"}
    for k, v in want.items():
        if ann.get(k) != v:
            out.append("Deployment/%s: pod annotation %s must be %r, got %r" % (name, k, v, ann.get(k)))
    app = [c for n, c in containers.items() if n != SIDECAR]
    check_app_address(name, spec, side, app, flags.get("--primary", ""), out)
    strategy = w["spec"].get("strategy") or {}
    if (strategy.get("rollingUpdate") or {}).get("maxUnavailable") not in (0, "0%"):
        out.append("Deployment/%s: rolling update must use maxUnavailable 0" % name)
    drain = duration_s(flags.get("--drain-timeout", "%gs" % DEFAULT_DRAIN_S))
    if drain is None:
        out.append("%s: --drain-timeout %r is not a duration" % (where, flags.get("--drain-timeout")))
        drain = DEFAULT_DRAIN_S
    sleep = prestop_sleep(side)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if sleep <= 0:
        out.append("%s: preStop sleep missing (endpoints must deregister before the drain)" % where)
    if grace <= sleep + drain:
        out.append("Deployment/%s: terminationGracePeriodSeconds %s <= preStop %gs + --drain-timeout %gs" %
                   (name, grace, sleep, drain))
    for c in app:
        if prestop_sleep(c) < sleep + drain:
            out.append("Deployment/%s container %s: preStop sleep %gs ends before the sidecar's drain (%gs + %gs)" %
                       (name, c.get("name"), prestop_sleep(c), sleep, drain))
    check_rules_config(r, name, spec, side, flags.get("--compare-rules"), rules_file, out)
    return flags


def mount_of(container, directory):
    """The volumeMount of `container` at exactly `directory`, or None."""
    return next((m for m in container.get("volumeMounts") or []
                 if m.get("mountPath", "").rstrip("/") == directory.rstrip("/")), None)


def probe_commands(container):
    """{probe name: the probe's handler kind and exec command}."""
    out = {}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        p = container.get(probe)
        if p:
            kinds = [k for k in ("exec", "httpGet", "tcpSocket", "grpc") if k in p]
            out[probe] = (kinds[0] if kinds else None, [str(a) for a in (p.get("exec") or {}).get("command") or []])
    return out


def check_app_address(name, spec, side, app, primary, out):
    """The app container serves where the sidecar's --primary points: its
    BIND (gunicorn) equals it. For unix:PATH, PATH lies directly in an
    emptyDir mounted in the app and in the sidecar, the app declares no
    container port (nothing on the pod network reaches it) and its probes
    exec a check of that socket (the kubelet cannot httpGet a socket). For
    HOST:PORT, the app binds loopback only."""
    if len(app) != 1:
        out.append("Deployment/%s: expected one app container beside the sidecar, found %d" % (name, len(app)))
        return
    (c,) = app
    where = "Deployment/%s container %s" % (name, c.get("name"))
    bind = {e.get("name"): e.get("value") for e in c.get("env") or []}.get("BIND")
    if bind != primary:
        out.append("%s: BIND %s != the sidecar's --primary %s" % (where, bind, primary))
    if not primary.startswith("unix:"):
        if host_port(primary)[0] not in ("127.0.0.1", "localhost", "[::1]"):
            out.append("Deployment/%s: --primary %s is not loopback: the app would be reachable on the pod network" %
                       (name, primary))
        return
    path = primary[len("unix:"):]
    if not path.startswith("/") or len(path.encode()) > UNIX_PATH_MAX:
        out.append("Deployment/%s: --primary %s: the socket path must be absolute and at most %d bytes" %
                   (name, primary, UNIX_PATH_MAX))
        return
    directory = os.path.dirname(path)
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    mounts = [mount_of(c, directory), mount_of(side, directory)]
    if None in mounts or mounts[0].get("name") != mounts[1].get("name"):
        out.append("Deployment/%s: the socket directory %s is not one volume mounted in both %s and %s" %
                   (name, directory, c.get("name"), SIDECAR))
    elif "emptyDir" not in volumes.get(mounts[0].get("name"), {}):
        out.append("Deployment/%s: volume %s holding the socket is not an emptyDir" % (name, mounts[0].get("name")))
    elif mounts[0].get("readOnly"):
        out.append("%s: the socket directory %s is mounted read-only: gunicorn cannot create the socket" %
                   (where, directory))
    if c.get("ports"):
        out.append("%s: declares container ports %s: with a Unix socket upstream nothing should listen on the pod "
                   "network" % (where, [p.get("containerPort") for p in c["ports"]]))
    for probe, (kind, cmd) in sorted(probe_commands(c).items()):
        if kind != "exec" or primary not in cmd:
            out.append("%s: %s must exec a check of %s (a %s probe cannot reach a Unix socket)" %
                       (where, probe, primary, kind))


def check_rules_config(r, name, spec, side, rules_path, rules_file, out):
    """The --compare-rules file comes from a ConfigMap equal to rules_file."""
    if not rules_path:
        out.append("Deployment/%s: sidecar has no --compare-rules" % name)
        return
    mount = next((m for m in side.get("volumeMounts") or [] if rules_path.startswith(m["mountPath"].rstrip("/") + "/")), None)
    vol = next((v for v in spec.get("volumes") or [] if mount and v.get("name") == mount.get("name")), None)
    cm = r.get("ConfigMap", ((vol or {}).get("configMap") or {}).get("name"))
    if cm is None:
        out.append("Deployment/%s: --compare-rules %s is not mounted from a ConfigMap in this render" % (name, rules_path))
        return
    key = rules_path[len(mount["mountPath"].rstrip("/")) + 1:]
    text = (cm.get("data") or {}).get(key)
    if text is None:
        out.append("%s: has no key %s for --compare-rules" % (obj_id(cm), key))
        return
    with open(rules_file) as fh:
        want = json.load(fh)
    try:
        got = json.loads(text)
    except ValueError as exc:
        out.append("%s: %s is not valid JSON: %s" % (obj_id(cm), key, exc))
        return
    if got != want:
        out.append("%s: %s differs from %s (copy it to k8s/inference/rules.json)" %
                   (obj_id(cm), key, os.path.relpath(rules_file, ROOT)))


# ---- the optional components (k8s/components) ------------------------------


def flagger_targets(r):
    """Names of the Deployments a Flagger Canary promotes (it owns their routing)."""
    return {((c.get("spec") or {}).get("targetRef") or {}).get("name") for c in r.by_kind.get("Canary", [])}


def check_flagger(r, flags, out):
    for can in r.by_kind.get("Canary", []):
        spec, where = can["spec"], obj_id(can)
        ref = spec.get("targetRef") or {}
        if r.get(ref.get("kind"), ref.get("name")) is None:
            out.append("%s: targetRef %s/%s does not exist" % (where, ref.get("kind"), ref.get("name")))
        a = spec.get("autoscalerRef")
        if a:
            hpa = r.get(a.get("kind"), a.get("name"))
            if hpa is None:
                out.append("%s: autoscalerRef %s/%s does not exist" % (where, a.get("kind"), a.get("name")))
            elif (hpa["spec"].get("scaleTargetRef") or {}).get("name") != ref.get("name"):
                out.append("%s: autoscalerRef %s does not scale %s" % (where, obj_id(hpa), ref.get("name")))
        svc = spec.get("service") or {}
        name = svc.get("name") or ref.get("name")
        for kind in ("Service", "VirtualService", "DestinationRule"):
            if r.get(kind, name) is not None:
                out.append("%s: %s/%s is generated by Flagger from spec.service; the hand-written one must go"
                           % (where, kind, name))
        if ref.get("name") == STABLE and flags is not None:
            listen = host_port(flags.get("--listen", ""))[1]
            if svc.get("targetPort", svc.get("port")) != listen:
                out.append("%s: service.targetPort %s is not the sidecar's --listen port %s"
                           % (where, svc.get("targetPort", svc.get("port")), listen))
        for m in (spec.get("analysis") or {}).get("metrics") or []:
            t = m.get("templateRef")
            if not t:
                continue
            mt = r.get("MetricTemplate", t.get("name"))
            if mt is None:
                out.append("%s: metric %s: MetricTemplate/%s does not exist" % (where, m.get("name"), t.get("name")))
                continue
            given = set((m.get("templateVariables") or {}))
            for var in sorted(set(re.findall(r"{{\s*variables\.([A-Za-z0-9_]+)\s*}}", mt["spec"].get("query", ""))) - given):
                out.append("%s: metric %s: %s uses variables.%s, not in templateVariables" % (where, m.get("name"), obj_id(mt), var))


def check_argo(r, env_name, out):
    secrets = {s["metadata"]["name"] for s in r.by_kind.get("Secret", [])}
    for at in r.by_kind.get("AnalysisTemplate", []):
        spec, where = at["spec"], obj_id(at)
        names = {a.get("name") for a in spec.get("args") or []}
        for arg in sorted(set(re.findall(r"{{\s*args\.([A-Za-z0-9_.-]+?)\s*}}", json.dumps(spec))) - names):
            out.append("%s: {{args.%s}} is used but not declared in spec.args" % (where, arg))
        # the Prometheus metric counts the comparisons of every pod with the
        # sidecar (in mesh mode the shadow's sidecar compares too)
        pods = next((a.get("value") for a in spec.get("args") or [] if a.get("name") == "stable-pods"), None)
        for w in r.workloads:
            sample = "%s-5d8c7b9f4-x2x7k" % w["metadata"]["name"]  # <deployment>-<hash>-<id>
            if pods and sidecar_of(r, w) is not None and not re.fullmatch(pods, sample):
                out.append("%s: stable-pods %r does not match the pods of %s (%s), whose sidecar compares too" %
                           (where, pods, obj_id(w), sample))
        for m in spec.get("metrics") or []:
            prov = m.get("provider") or {}
            if "prometheus" in prov and not (m.get("successCondition") and m.get("failureCondition")):
                out.append("%s: metric %s needs both successCondition and failureCondition (with one alone, Argo "
                           "makes every result a pass or a fail: an under-sampled window could not be inconclusive)"
                           % (where, m.get("name")))
            job = prov.get("job")
            if not job:
                continue
            pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
            owner = "%s metric %s" % (where, m.get("name"))
            check_containers(owner, pod, out)
            for c in pod.get("containers", []):
                for e in c.get("env") or []:
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref and env_name in DEV_ONLY_ENVS and ref.get("name") not in secrets:
                        out.append("%s: Secret/%s is referenced but not rendered" % (owner, ref.get("name")))
            stable = r.get("Deployment", STABLE)
            side = [c for c in r.pod_spec(stable).get("containers", []) if c.get("name") == SIDECAR] if stable else []
            images = {c.get("image") for c in pod.get("containers", [])}
            if side and side[0].get("image") not in images:
                out.append("%s: runs %s, not the sidecar's image %s (the gate must read the schema the sidecars write)"
                           % (owner, sorted(images), side[0].get("image")))


def check_monitoring(r, flags, rules_groups, out):
    admin_port = host_port((flags or {}).get("--admin", "127.0.0.1:9901"))[1]
    for sm in r.by_kind.get("ServiceMonitor", []):
        sel = ((sm["spec"].get("selector") or {}).get("matchLabels")) or {}
        svcs = [s for s in r.by_kind.get("Service", []) if matches(sel, s["metadata"].get("labels") or {})]
        if not svcs:
            out.append("%s: selector %s matches no Service" % (obj_id(sm), sel))
        # every pod with the sidecar counts comparisons (in mesh mode the
        # shadow's too: either side of a pair may compare it)
        scraped = [w for s in svcs for w in r.selected(s["spec"].get("selector") or {})]
        for w in r.workloads:
            if sidecar_of(r, w) is not None and not any(w is x for x in scraped):
                out.append("%s: %s runs the %s sidecar but no Service it scrapes selects its pods (their "
                           "comparisons and mesh halves would be missing)" % (obj_id(sm), obj_id(w), SIDECAR))
        for ep in sm["spec"].get("endpoints") or []:
            if ep.get("honorLabels") is not True:
                out.append("%s: endpoints port %s needs honorLabels: true (else the operator's target label "
                           "`endpoint` renames shadowtee's endpoint label)" % (obj_id(sm), ep.get("port")))
            for svc in svcs:
                ports = [p for p in svc["spec"].get("ports") or [] if p.get("name") == ep.get("port")]
                if not ports:
                    out.append("%s: %s has no port named %s" % (obj_id(sm), obj_id(svc), ep.get("port")))
                elif ports[0].get("targetPort", ports[0].get("port")) != admin_port:
                    out.append("%s: port %s of %s targets %s, not the sidecar's --admin port %s (/metrics)"
                               % (obj_id(sm), ep.get("port"), obj_id(svc), ports[0].get("targetPort"), admin_port))
    for pr in r.by_kind.get("PrometheusRule", []):
        if rules_groups is not None and (pr.get("spec") or {}).get("groups") != rules_groups:
            out.append("%s: spec.groups differ from monitoring/shadowtee-rules.yml (run scripts/sync_prometheusrule.py)"
                       % obj_id(pr))


def prometheus_rule_groups(path=PROM_RULES):
    with open(path) as fh:
        return yaml.safe_load(fh).get("groups")


def check_secrets(r, env_name, out):
    refs = set()
    for w in r.workloads:
        for c in r.pod_spec(w).get("containers", []):
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.add(ref.get("name"))
    for s in r.by_kind.get("Secret", []):
        if env_name in DEV_ONLY_ENVS:
            continue
        for k, v in (s.get("data") or {}).items():
            if PLACEHOLDER_MARK in base64.b64decode(v).decode("utf-8", "replace"):
                out.append("%s: key %s holds the dev placeholder in %s" % (obj_id(s), k, env_name))
    if env_name in DEV_ONLY_ENVS:
        for name in sorted(refs - {s["metadata"]["name"] for s in r.by_kind.get("Secret", [])}):
            out.append("Secret/%s is referenced but not rendered in %s" % (name, env_name))


def check_namespace(r, out):
    if r.namespace is None:
        out.append("expected exactly one Namespace object in the render")
        return
    for d in r.docs:
        if d.get("kind") != "Namespace" and (d["metadata"].get("namespace") != r.namespace):
            out.append("%s: namespace %r, expected %r" % (obj_id(d), d["metadata"].get("namespace"), r.namespace))


def consistency_problems(docs, rules_file, env_name=""):
    """The project's cross-object checks on one rendered environment; one
    line per problem, empty when consistent."""
    r, out = Render(docs), []
    env_name = env_name.split("+")[0]  # "production+flagger": the environment's rules
    check_namespace(r, out)
    check_workloads(r, out)
    check_app_binds(r, out)
    check_services(r, out)
    check_autoscaling(r, out)
    stable = r.get("Deployment", STABLE)
    if stable is None:
        out.append("Deployment/%s is missing (scripts/rollback undoes it)" % STABLE)
        flags = None
    else:
        flags = check_sidecar(r, stable, rules_file, out) if sidecar_of(r, stable) else None
        if flags is None:
            out.append("Deployment/%s: no %s sidecar container" % (STABLE, SIDECAR))
    subsets = check_destination_rules(r, out)
    mirrors = check_virtual_services(r, subsets, out)
    checked = [stable]
    if flags is not None:
        check_mirroring(r, flags, mirrors, rules_file, out, checked)
    for w in r.workloads:  # a sidecar no mirror reaches is still checked as a pod
        if sidecar_of(r, w) is not None and not any(w is x for x in checked):
            check_sidecar(r, w, rules_file, out)
    check_secrets(r, env_name, out)
    check_flagger(r, flags, out)
    check_argo(r, env_name, out)
    check_monitoring(r, flags, prometheus_rule_groups() if r.by_kind.get("PrometheusRule") else None, out)
    return out


def validate_env(env_dir, schemas, rules_file, components=()):
    """Renders and checks one environment, with `components` (names under
    k8s/components) enabled; returns (objects, problems). schemas may be
    None to skip the schema pass (the caller says so)."""
    env = os.path.basename(os.path.normpath(env_dir))
    k8s_dir = os.path.dirname(os.path.dirname(os.path.normpath(env_dir)))
    name = "+".join((env,) + tuple(components))
    try:
        docs = load_documents(render_with_components(k8s_dir, env, list(components)), "kubectl kustomize " + name)
    except RenderError as exc:
        return [], [str(exc)]
    problems = schema_problems(docs, schemas) if schemas is not None else []
    problems += consistency_problems(docs, rules_file, name)
    return docs, problems


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k8s", default=os.path.join(ROOT, "k8s"), help="directory holding environments/")
    ap.add_argument("--schemas", default=None, help="JSON schema dir (default $SHADOWTEE_K8S_SCHEMAS or k8s/schemas)")
    ap.add_argument("--rules", default=os.path.join(ROOT, "examples", "flask-inference", "rules.json"))
    ap.add_argument("envs", nargs="*", metavar="ENV[+COMPONENT...]",
                    help="default: each of %s alone, with each component and with all of them" % " ".join(ENVIRONMENTS))
    args = ap.parse_args(argv)
    try:
        schemas = Schemas(args.schemas or default_schemas_dir())
    except SetupError as exc:
        print("validate_k8s: cannot run: %s" % exc, file=sys.stderr)
        return 2
    comps = components_of(args.k8s)
    targets = args.envs
    if not targets:
        targets = []
        for e in ENVIRONMENTS:
            mode = mirroring_mode_of(os.path.join(args.k8s, "environments", e))
            # no mode or two: validate everything, the checks say what is wrong
            ok = [n for n in comps if mode not in MODES or mode in COMPONENT_MODES.get(n, MODES)]
            for n in sorted(set(comps) - set(ok)):
                print("n/a  %s+%s: the %s component works with the mirroring mode %s only; %s uses %s" %
                      (e, n, n, " or ".join(COMPONENT_MODES[n]), e, mode))
            targets += ["+".join([e] + c) for c in [[]] + [[n] for n in ok] + ([ok] if len(ok) > 1 else [])]
    # every name first: a typo is told as such, with or without kubectl
    for target in targets:
        env, *with_components = target.split("+")
        env_dir = os.path.join(args.k8s, "environments", env)
        if not os.path.isdir(env_dir):
            print("validate_k8s: no environment %s at %s" % (env, env_dir), file=sys.stderr)
            return 2
        unknown = [c for c in with_components if c not in comps]
        if unknown:
            print("validate_k8s: no component %s in %s (have: %s)" % (unknown[0], os.path.join(args.k8s, "components"),
                                                                    ", ".join(comps) or "none"), file=sys.stderr)
            return 2
    if not kubectl_path():
        print("validate_k8s: cannot run: kubectl not found on PATH (needed to render kustomizations)", file=sys.stderr)
        return 2
    failed = False
    for target in targets:
        env, *with_components = target.split("+")
        env_dir = os.path.join(args.k8s, "environments", env)
        docs, problems = validate_env(env_dir, schemas, args.rules, with_components)
        for p in problems:
            print("%s: %s" % (target, p))
        if problems:
            failed = True
            print("FAIL %s: %d problem(s)" % (target, len(problems)))
        else:
            print("ok   %s: %d objects valid against %s, consistent" % (target, len(docs), schemas.dir))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
