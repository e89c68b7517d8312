#!/usr/bin/python3
"""Prints the markdown report of one bench run.

    report.py RESULTS_DIR
    report.py --instr INSTR_DIR

RESULTS_DIR is what bench/run.sh wrote: results.tsv (one row per measured
wrk run: section, shape, target, shadow, conns, wrk output file, proxy CPU
us/request, note), skipped.tsv (section, reason), notes.txt and, when it
ran, cmp_bench.txt and instr/ (the instr section). Ratios are computed here,
between rows of the same run.

INSTR_DIR is what bench/callgrind.sh wrote: instr.tsv (one row per case:
case, program, job, requests, how they were counted, wrk's count, wrk req/s,
wrk errors, instructions between the two callgrind dumps, mirrored requests
by shadowtee's count, requests the shadow received, note, instructions in
glibc's memset/memcpy/memmove, client connections the proxy accepted between
the dumps) and notes.txt.
"""
import json
import os
import re
import statistics
import sys

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
P99_GOAL = 1.10  # client p99 with a slow/blackholed shadow vs no mirroring
TEE_GOAL = 2.0   # shadowtee mirroring req/s vs nginx + mirror
TLS_GOAL = 1.0   # shadowtee terminating TLS req/s vs nginx terminating TLS
CORE_GOAL = 1.2  # shadowtee req/s vs nginx as a keep-alive reverse proxy (p99 at or below nginx's)
PAYLOAD_P99_GOAL = 1.3       # paced: client p99 with --compare on vs --compare off, 100% mirrored
PAYLOAD_COMPARED_GOAL = 0.95  # paced: share of the mirrored pairs compared (none dropped as busy)
PAYLOAD_RPS_GOAL = 0.75      # saturated: req/s with --compare on vs --compare off

SHADOW_NAMES = {"-": "", "none": "no mirroring", "twin": "no mirroring, twin (A/A)",
                "fast": "fast", "slow": "slow (200 ms)",
                "blackhole": "blackhole", "mirror": "fast, mirror only",
                "compare": "fast, mirror + compare", "redis": "fast, mirror + compare + Redis",
                "off": "100% mirrored, --compare off", "on": "100% mirrored, --compare on + Redis",
                "batch": "100% mirrored, --compare on + Redis, --compare-sched batch",
                "nolimit": "100% mirrored, --compare on + Redis, --compare-cpu 0",
                "tiny": "tiny, saturation", "tiny-paced": "tiny, paced", "24k": "24 KiB, saturation",
                "24k-paced": "24 KiB, paced",
                "tee": "sidecar tee, --compare on + Redis",
                "mesh": "mesh: nginx mirror + stable and shadow sidecars, joined in Redis"}
UNIX_KINDS = ("tiny", "tiny-paced", "24k", "24k-paced")
COMPARE_SKIPS = ("comparator_busy", "queue_bytes", "shutdown")


def parse_wrk(path):
    """Returns a dict with rps, requests, p50/p99 (ms), errors; missing
    figures are None (e.g. wrk failed)."""
    out = {"rps": None, "requests": None, "p50": None, "p99": None, "errors": 0}
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return out
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
    for pct, value, unit in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M):
        out["p" + pct] = float(value) * UNIT_MS[unit]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["errors"] += int(m.group(1))
    return out


def parse_metrics(path):
    """Returns {series: value} of a Prometheus text file ({} if missing)."""
    out = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                name, _, value = line.rstrip("\n").rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
    except OSError:
        pass
    return out


def mirror_share(d, base):
    """From shadowtee's /metrics before/after the measured run: the share of
    requests that were mirrored, and of those skipped by reason, and shadow
    errors per request (a leg that fails in the window may have been sent
    before it, so this is not a share of the mirrored ones). None when the
    metrics are missing."""
    m0 = parse_metrics(os.path.join(d, base + "0"))
    m1 = parse_metrics(os.path.join(d, base + "1"))
    if not m0 or not m1:
        return None

    def delta(pred):
        return sum(v - m0.get(k, 0.0) for k, v in m1.items() if pred(k))

    reqs = delta(lambda k: k.startswith("shadowtee_requests_total"))
    mirrored = delta(lambda k: k == "shadowtee_mirror_requests_total")
    if reqs <= 0:
        return None
    skipped = {}
    for k in m1:
        m = re.match(r'shadowtee_mirror_skipped_total\{reason="([^"]+)"\}', k)
        if m:
            n = m1[k] - m0.get(k, 0.0)
            if n > 0:
                skipped[m.group(1)] = n / reqs
    errors = delta(lambda k: k.startswith("shadowtee_shadow_errors_total"))
    # the comparator's side (absent with --compare off): pairs compared and
    # pairs dropped by the comparator queue, per request
    compared = delta(lambda k: k.startswith("shadowtee_comparisons_total{"))
    cmp_skipped = {}
    for reason in COMPARE_SKIPS:
        k = 'shadowtee_comparisons_skipped_total{reason="%s"}' % reason
        if k in m1:
            cmp_skipped[reason] = (m1[k] - m0.get(k, 0.0)) / reqs
    return {"mirrored": mirrored / reqs, "skipped": skipped, "shadow_errors": errors / reqs,
            "compared": compared / reqs if "shadowtee_compare_queued_total" in m1 else None,
            "cmp_skipped": cmp_skipped}


# tee kinds without a shadow: the baseline and its twin, a second identical
# instance measured in the same rounds whose p99 ratio to the baseline is the
# run's noise floor (an A/A comparison)
NO_MIRROR = ("none", "twin", "-")


def read_rows(d):
    rows = []
    with open(os.path.join(d, "results.tsv")) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 8:
                continue
            section, shape, target, shadow, conns, wrk, cpu, note = parts[:8]
            metrics = parts[8] if len(parts) > 8 else "-"
            faults = parts[9] if len(parts) > 9 else "-"
            row = {"section": section, "shape": shape, "target": target, "shadow": shadow,
                   "conns": int(conns), "cpu": None if cpu == "-" else float(cpu), "note": note,
                   "faults": None if faults == "-" else float(faults),
                   "mirror": None if metrics == "-" else mirror_share(d, metrics)}
            row.update(parse_wrk(os.path.join(d, wrk)))
            if section == "mesh":
                kind = shadow.split("/")[0]
                row["mesh_window"] = mesh_window(d, os.path.basename(wrk)[:-4], kind)
            if row["requests"] is not None and row["requests"] < 2 * row["conns"]:
                # wrk only reports requests that finished: a stalled target
                # shows few requests and flattering percentiles
                row["note"] = "; ".join(x for x in (note, "< 2 requests per connection: stalled?") if x)
            rows.append(row)
    return merge_rounds(rows)


# ---- mesh (bench/mesh.sh) ---------------------------------------------------

MESH_GOAL_COMMANDS = 3  # Redis commands the sidecars send per compared pair (issue 16)


def parse_info(path):
    """Redis INFO text: {field: number}, and "cmdstat_X" -> calls of X."""
    out = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                k, sep, v = line.strip().partition(":")
                if not sep:
                    continue
                if k.startswith("cmdstat_"):
                    m = re.match(r"calls=(\d+)", v)
                    if m:
                        out[k] = float(m.group(1))
                    continue
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
    except OSError:
        pass
    return out


def hist_buckets(metrics, name):
    """{le: cumulative count} of histogram `name` summed over its label sets."""
    out = {}
    for k, v in metrics.items():
        m = re.match(r"%s_bucket\{(.*)\}$" % re.escape(name), k)
        if not m:
            continue
        le = re.search(r'le="([^"]+)"', m.group(1))
        if le:
            b = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
            out[b] = out.get(b, 0.0) + v
    return out


def hist_quantile(buckets, q):
    """Prometheus-style quantile (linear inside the bucket) of {le: cumulative
    count}; None when empty."""
    items = sorted(buckets.items())
    if not items or items[-1][1] <= 0:
        return None
    rank, prev_le, prev_n = q * items[-1][1], 0.0, 0.0
    for le, n in items:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_n) / (n - prev_n) if n > prev_n else 1.0)
        prev_le, prev_n = le, n
    return prev_le


JOIN_HIST = "shadowtee_mesh_join_seconds"


def mesh_window(d, label, kind):
    """What one measured mesh-section run cost in Redis: pairs compared (the
    sidecars' shadowtee_comparisons_total), Redis commands processed (calls
    inside scripts included; the bench's INFO left out), bytes received,
    calls by command, and the join-delay histogram when the core has one.
    None for "none" or when a snapshot is missing."""
    if kind == "none":
        return None
    base = os.path.join(d, "mesh", label)
    i0, i1 = parse_info(base + ".redis0"), parse_info(base + ".redis1")
    sides = ("tee",) if kind == "tee" else ("stable", "shadow")
    m0 = [parse_metrics(base + "." + s + "0") for s in sides]
    m1 = [parse_metrics(base + "." + s + "1") for s in sides]
    if not i0 or not i1 or not all(m0) or not all(m1):
        return None
    pairs = 0.0
    join = {}
    for a, b in zip(m0, m1):
        pairs += sum(v - a.get(k, 0.0) for k, v in b.items() if k.startswith("shadowtee_comparisons_total{"))
        h0, h1 = hist_buckets(a, JOIN_HIST), hist_buckets(b, JOIN_HIST)
        for le, n in h1.items():
            join[le] = join.get(le, 0.0) + n - h0.get(le, 0.0)
    cmds = {k[8:]: v - i0.get(k, 0.0) for k, v in i1.items() if k.startswith("cmdstat_")}
    info_calls = cmds.pop("info", 0.0)
    cmds = {k: v for k, v in cmds.items() if v > 0}
    return {"pairs": pairs, "bytes_in": i1.get("total_net_input_bytes", 0.0) - i0.get("total_net_input_bytes", 0.0),
            "commands": (i1.get("total_commands_processed", 0.0) - i0.get("total_commands_processed", 0.0)
                         - info_calls),
            "cmd": cmds, "join": join or None}


def merge_windows(ws):
    if any(w is None for w in ws) or not ws:
        return None
    out = {"pairs": 0.0, "bytes_in": 0.0, "commands": 0.0, "cmd": {}, "join": None}
    for w in ws:
        for k in ("pairs", "bytes_in", "commands"):
            out[k] += w[k]
        for c, v in w["cmd"].items():
            out["cmd"][c] = out["cmd"].get(c, 0.0) + v
        if w["join"]:
            out["join"] = out["join"] or {}
            for le, n in w["join"].items():
                out["join"][le] = out["join"].get(le, 0.0) + n
    return out


def per_pair(w, key):
    return None if not w or not w["pairs"] else w[key] / w["pairs"]


def fmt_cmds(cmd, pairs, top=5):
    if not pairs:
        return "—"
    items = sorted(cmd.items(), key=lambda x: -x[1])[:top]
    return ", ".join("%s %.2f" % (k, v / pairs) for k, v in items) or "—"


def pctl(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def mesh_tables(d, rows):
    """The mesh section's own tables: Redis per compared pair in the measured
    runs, and the MONITOR accounting runs (commands sent vs calls inside
    scripts, join latency), with the goal line on commands per pair."""
    out = []
    mrows = [r for r in rows if r["section"] == "mesh" and r["shadow"] in ("tee", "mesh")]
    if mrows:
        head = ["load", "body", "kind", "conns", "pairs compared", "Redis commands / pair (script calls included)",
                "bytes to Redis / pair", "commands / pair by name", "join p50 ms", "join p99 ms"]
        out += ["### mesh: Redis per compared pair in the measured runs", "",
                "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in mrows:
            w = r.get("mesh_window")
            join = w and w["join"]
            p50 = hist_quantile(join, 0.5) if join else None
            p99 = hist_quantile(join, 0.99) if join else None
            out.append("| " + " | ".join([
                r["shape"], r["target"], r["shadow"], str(r["conns"]), fmt(w and w["pairs"], "%.0f"),
                fmt(per_pair(w, "commands"), "%.2f"), fmt(per_pair(w, "bytes_in"), "%.0f"),
                fmt_cmds(w["cmd"], w["pairs"]) if w else "—",
                fmt(p50 * 1000 if p50 is not None else None, "%.3f"),
                fmt(p99 * 1000 if p99 is not None else None, "%.3f")]) + " |")
        if not any(r.get("mesh_window") and r["mesh_window"]["join"] for r in mrows if r["shadow"] == "mesh"):
            out += ["", "(no %s histogram in the sidecars' /metrics: join latency from the accounting runs below)"
                    % JOIN_HIST]
    acct = []
    for line in read_lines(os.path.join(d, "mesh", "acct.tsv")):
        p = line.split("\t")
        if len(p) < 4:
            continue
        label, kind, payload, conns = p[:4]
        w = mesh_window(d, label, kind)
        try:
            with open(os.path.join(d, "mesh", label + ".monitor.json")) as f:
                mon = json.load(f)
        except (OSError, ValueError):
            mon = None
        wrk = parse_wrk(os.path.join(d, "mesh", label + ".wrk"))
        acct.append((label, kind, payload, conns, w, mon, wrk))
    if acct:
        head = ["body", "kind", "conns", "requests", "client p99 ms", "pairs compared",
                "commands sent / pair", "by name", "calls inside scripts / pair", "bytes to Redis / pair",
                "join p50 ms", "join p99 ms", "joins seen", "unpaired"]
        out += ["", "### mesh: accounting runs (MONITOR attached; not used for latency)", "",
                "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, kind, payload, conns, w, mon, wrk in acct:
            pairs = w and w["pairs"]
            top = sum(mon["top"].values()) if mon else None
            inner = sum(mon["inner"].values()) if mon else None
            joins = mon["join_ms"] if mon else []
            out.append("| " + " | ".join([
                payload, kind, conns, fmt(wrk["requests"], "%d"), fmt(wrk["p99"], "%.3f"), fmt(pairs, "%.0f"),
                fmt(top / pairs if mon and pairs else None, "%.2f"),
                fmt_cmds(mon["top"], pairs) if mon else "—",
                fmt(inner / pairs if mon and pairs else None, "%.2f"),
                fmt(per_pair(w, "bytes_in"), "%.0f"),
                fmt(pctl(joins, 0.5) if kind == "mesh" else None, "%.3f"),
                fmt(pctl(joins, 0.99) if kind == "mesh" else None, "%.3f"),
                str(len(joins)) if kind == "mesh" and mon else "—",
                str(mon["unpaired"]) if kind == "mesh" and mon else "—"]) + " |")
    return out


def mesh_goals(d, rows):
    out = []
    for line in read_lines(os.path.join(d, "mesh", "acct.tsv")):
        p = line.split("\t")
        if len(p) < 4 or p[1] != "mesh":
            continue
        w = mesh_window(d, p[0], "mesh")
        try:
            with open(os.path.join(d, "mesh", p[0] + ".monitor.json")) as f:
                mon = json.load(f)
        except (OSError, ValueError):
            mon = None
        if not (w and w["pairs"] and mon):
            out.append("- mesh %s: Redis commands per pair: FAIL (no measurement)" % p[2])
            continue
        v = sum(mon["top"].values()) / w["pairs"]
        join = sum(mon["top"].get(k, 0) for k in ("evalsha", "eval", "script")) / w["pairs"]
        out.append("- mesh %s: Redis commands the sidecars sent per compared pair = %.2f: join script %.2f "
                   "(EVALSHA, EVAL, SCRIPT; goal ≤ %d: %s) + statistics %.2f (their flush every 100 ms "
                   "costs the same whatever the rate, so less per pair as it grows; all in: %s) "
                   "(%.0f pairs at c%s; calls inside scripts %.2f per pair)"
                   % (p[2], v, join, MESH_GOAL_COMMANDS, "PASS" if join <= MESH_GOAL_COMMANDS else "FAIL",
                      v - join, "PASS" if v <= MESH_GOAL_COMMANDS else "over 3", w["pairs"], p[3],
                      sum(mon["inner"].values()) / w["pairs"]))
    for target in ("tiny", "24k"):
        for shape in ("paced", "saturated"):
            same = dict(section="mesh", target=target, shape=shape)
            none = find(rows, shadow="none", **same)
            for kind in ("tee", "mesh"):
                r = find(rows, shadow=kind, **same)
                if not (r and none):
                    continue
                v, p = rps_ratio(r, none), p99_ratio(r, none)
                if v is None or p is None:
                    out.append("- mesh %s %s, %s: no figure (%s)" % (target, shape, kind, r["note"] or none["note"]
                                                                     or "wrk gave no figure"))
                    continue
                out.append("- mesh %s %s c%d, %s vs no mirroring: req/s %.2f%s, client p99 %.3f vs %.3f ms = %.2f%s "
                           "(no fixed goal)%s" % (target, shape, r["conns"], kind, v, per_round(r, none, "rps"),
                                                  r["p99"], none["p99"], p, per_round(r, none, "p99"),
                                                  "" if clean(r) and clean(none) else " (a run had errors)"))
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def merge_mirror(rounds):
    """The mirror shares of a group of rounds, weighted by each round's
    requests (None when a round has none)."""
    rs = list(rounds.values())
    if any(x["mirror"] is None or not x["requests"] for x in rs):
        return None
    total = sum(x["requests"] for x in rs)
    mirrored = sum(x["mirror"]["mirrored"] * x["requests"] for x in rs)
    skipped = {}
    for x in rs:
        for reason, share in x["mirror"]["skipped"].items():
            skipped[reason] = skipped.get(reason, 0.0) + share * x["requests"] / total
    errors = sum(x["mirror"]["shadow_errors"] * x["requests"] for x in rs)
    compared = None
    if all(x["mirror"]["compared"] is not None for x in rs):
        compared = sum(x["mirror"]["compared"] * x["requests"] for x in rs) / total
    cmp_skipped = {}
    for x in rs:
        for reason, share in x["mirror"]["cmp_skipped"].items():
            cmp_skipped[reason] = cmp_skipped.get(reason, 0.0) + share * x["requests"] / total
    return {"mirrored": mirrored / total, "skipped": skipped, "shadow_errors": errors / total,
            "compared": compared, "cmp_skipped": cmp_skipped}


def merge_rounds(rows):
    """core, tls and tee measure their targets in rounds, back to back in
    each round (shadow column "rN", or "KIND/rN" in tee). Returns rows with
    each (section, shape, target, kind, conns) group of rounds merged into
    one row at the place of its first round: medians of req/s, p50, p99 and
    CPU µs/req, errors and requests summed, mirror shares weighted by
    requests, notes joined, and "rounds" {round number: the round's row} for
    paired ratios."""
    out, groups = [], {}
    for r in rows:
        m = re.fullmatch(r"(?:([a-z0-9-]+)/)?r(\d+)", r["shadow"])
        if not m:
            out.append(r)
            continue
        key = (r["section"], r["shape"], r["target"], m.group(1) or "-", r["conns"])
        if key not in groups:
            groups[key] = {}
            out.append(key)
        groups[key][int(m.group(2))] = r
    merged = []
    for r in out:
        if not isinstance(r, tuple):
            merged.append(r)
            continue
        rounds = groups[r]
        first = rounds[min(rounds)]
        row = dict(first, shadow=r[3], rounds=rounds, mirror=merge_mirror(rounds))
        for k in ("rps", "p50", "p99", "cpu", "faults"):
            row[k] = median(x[k] for x in rounds.values())
        row["errors"] = sum(x["errors"] for x in rounds.values())
        if "mesh_window" in first:
            row["mesh_window"] = merge_windows([x.get("mesh_window") for x in rounds.values()])
        reqs = [x["requests"] for x in rounds.values()]
        row["requests"] = None if None in reqs else sum(reqs)
        notes = []
        for n, x in sorted(rounds.items()):
            if x["note"]:
                notes.append("round %d: %s" % (n, x["note"]))
        row["note"] = "; ".join(notes)
        merged.append(row)
    return merged


def round_ratios(r, ref, key):
    """r's `key` over ref's, round by round, when both were measured in the
    same rounds (each round's pair ran back to back); None otherwise."""
    a, b = r.get("rounds"), ref.get("rounds")
    if not (a and b):
        return None
    return [ratio(a[n][key], b[n][key]) for n in sorted(set(a) & set(b))]


def paired_ratio(r, ref, key):
    """The median of the per-round ratios of paired rows, else the plain ratio."""
    rounds = round_ratios(r, ref, key)
    return ratio(r[key], ref[key]) if rounds is None else median(rounds)


def rps_ratio(r, ref):
    return paired_ratio(r, ref, "rps")


def p99_ratio(r, ref):
    return paired_ratio(r, ref, "p99")


def per_round(r, ref, key, spec="%.2f"):
    """" (median of N rounds: a, b, c)" for paired rows, else ""."""
    rounds = round_ratios(r, ref, key)
    if rounds is None:
        return ""
    return " (median of %d rounds: %s)" % (len(rounds), ", ".join(fmt(v, spec) for v in rounds))


def within_noise(v, aa):
    """1 when ratio v is no further from 1 than the A/A ratio aa, either way
    (0.90 and 1.11 are as far from 1 as each other)."""
    return max(v, 1 / v) <= max(aa, 1 / aa)


def find(rows, **key):
    for r in rows:
        if all(r[k] == v for k, v in key.items()):
            return r
    return None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(value, label):
    return None if value is None else "%.2f× %s" % (value, label)


def fmt(v, spec):
    return "—" if v is None else spec % v


def references(rows, r):
    """Returns [(row, label)] that row r is compared with."""
    refs = []
    if r["section"] == "core":
        same = dict(section="core", shape=r["shape"], conns=r["conns"])
        if r["target"] != "direct":
            refs.append((find(rows, target="direct", **same), "direct"))
        if r["target"] == "shadowtee":
            refs.append((find(rows, target="nginx", **same), "nginx"))
    elif r["section"] == "tls":
        same = dict(shape=r["shape"], conns=r["conns"])
        if r["target"] == "shadowtee":
            refs.append((find(rows, section="tls", target="nginx", **same), "nginx TLS"))
        # the same proxy over plain HTTP in core (when core ran): TLS's cost
        refs.append((find(rows, section="core", target=r["target"], **same), "plain HTTP"))
    elif r["section"] == "tee":
        base = find(rows, section="tee", target="shadowtee", shadow="none", conns=r["conns"])
        if r["target"] == "shadowtee" and r["shadow"] != "none":
            refs.append((base, "shadowtee no-mirror"))
            refs.append((find(rows, section="tee", target="nginx-mirror", shadow=r["shadow"],
                              conns=r["conns"]), "nginx+mirror"))
        elif r["target"] == "nginx-mirror":
            refs.append((base, "shadowtee no-mirror"))
    elif r["section"] == "payload" and r["shadow"] in ("off", "on", "batch", "nolimit"):
        same = dict(section="payload", shape=r["shape"], target=r["target"], conns=r["conns"])
        if r["shadow"] in ("on", "batch", "nolimit"):
            refs.append((find(rows, shadow="off", **same), "compare off"))
        refs.append((find(rows, shadow="none", **same), "no mirroring"))
    elif r["section"] == "unix":
        same = dict(section="unix", shadow=r["shadow"], conns=r["conns"])
        proxy, _, via = r["target"].partition("-")
        if via == "unix":
            refs.append((find(rows, target=proxy + "-tcp", **same), proxy + " TCP"))
        if via and proxy == "shadowtee":
            refs.append((find(rows, target="nginx-" + via, **same), "nginx " + via.upper()))
        if via:
            refs.append((find(rows, target="direct", **same), "direct"))
    elif r["section"] == "mesh" and r["shadow"] in ("tee", "mesh"):
        same = dict(section="mesh", shape=r["shape"], target=r["target"], conns=r["conns"])
        refs.append((find(rows, shadow="none", **same), "no mirroring"))
        if r["shadow"] == "mesh":
            refs.append((find(rows, shadow="tee", **same), "tee"))
    elif r["section"] == "cmp" and r["shadow"] in ("compare", "redis"):
        refs.append((find(rows, section="cmp", shadow="mirror", conns=r["conns"]), "mirror only"))
        if r["shadow"] == "redis":
            refs.append((find(rows, section="cmp", shadow="compare", conns=r["conns"]), "compare"))
    return [(ref, label) for ref, label in refs if ref is not None]


def mirrored_rps(r):
    """Mirrored requests per second: nginx's mirror copies every request
    (blocking the connection), shadowtee reports its share in /metrics."""
    if r["rps"] is None:
        return None
    if r["target"] == "nginx-mirror":
        return r["rps"]
    if r["mirror"] is not None and r["shadow"] not in NO_MIRROR:
        return r["rps"] * r["mirror"]["mirrored"]
    return None


def fmt_mirror(r):
    if r["section"] == "mesh":
        w = r.get("mesh_window")
        if r["shadow"] == "none" or not w or not r["requests"]:
            return "—"
        return "compared %.1f%% of requests" % (100.0 * w["pairs"] / r["requests"])
    if r["target"] == "nginx-mirror":
        return "100%% (%s/s)" % fmt(mirrored_rps(r), "%.0f")
    m = r["mirror"]
    if m is None or r["shadow"] in NO_MIRROR:
        return "—"
    text = "%.1f%% (%s/s)" % (100 * m["mirrored"], fmt(mirrored_rps(r), "%.0f"))
    for reason, share in sorted(m["skipped"].items(), key=lambda x: -x[1]):
        text += "; skipped %s %.1f%%" % (reason, 100 * share)
    if m["shadow_errors"] > 0:
        text += "; shadow errors %s/s" % fmt(m["shadow_errors"] * r["rps"] if r["rps"] else None, "%.0f")
    share = compared_share(m)
    if share is not None:
        text += "; compared %.1f%% of mirrored" % (100 * share)
        for reason, v in sorted(m["cmp_skipped"].items(), key=lambda x: -x[1]):
            if v > 0:
                text += "; not compared: %s %.1f%%" % (reason, 100 * v / m["mirrored"])
    return text


def compared_share(m):
    """Compared pairs over mirrored ones in a window, None without a comparator."""
    if m is None or m.get("compared") is None or not m["mirrored"]:
        return None
    return m["compared"] / m["mirrored"]


def busy_share(m):
    """Pairs the comparator queue dropped (length cap or byte budget) over mirrored."""
    if m is None or not m["mirrored"]:
        return None
    return sum(m["cmp_skipped"].get(k, 0.0) for k in ("comparator_busy", "queue_bytes")) / m["mirrored"]


def table(rows):
    head = ["section", "shape", "target", "shadow", "conns", "req/s", "p50 ms", "p99 ms", "errors",
            "CPU µs/req", "faults/req", "mirrored", "req/s ratio", "p99 ratio", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        refs = references(rows, r)
        rps = [fmt_ratio(rps_ratio(r, ref), label) for ref, label in refs]
        p99 = [fmt_ratio(p99_ratio(r, ref), label) for ref, label in refs]
        target = {"nginx-mirror": "nginx+mirror"}.get(r["target"], r["target"])
        cells = [r["section"], r["shape"], target, SHADOW_NAMES.get(r["shadow"], r["shadow"]),
                 str(r["conns"]), fmt(r["rps"], "%.0f"), fmt(r["p50"], "%.3f"), fmt(r["p99"], "%.3f"),
                 str(r["errors"]), fmt(r["cpu"], "%.1f"), fmt(r["faults"], "%.2f"), fmt_mirror(r),
                 " · ".join(x for x in rps if x) or "—", " · ".join(x for x in p99 if x) or "—",
                 r["note"] or ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def clean(r):
    """1 when a run finished without socket errors or non-2xx answers; wrk
    leaves timed-out requests out of its percentiles, so a p99 from a run
    with timeouts flatters the target."""
    return r["errors"] == 0 and r["rps"] is not None and not r["note"]


def verdict(ok, *runs):
    if not all(clean(r) for r in runs):
        return "FAIL (errors or timeouts in the run)"
    return "PASS" if ok else "FAIL"


def shadowtee_nginx_pairs(rows, section):
    """(shape, conns, shadowtee row, nginx row) of a section, both measured."""
    for shape in ("unpinned", "sidecar"):
        for conns in (32, 4):
            st = find(rows, section=section, target="shadowtee", shape=shape, conns=conns)
            ng = find(rows, section=section, target="nginx", shape=shape, conns=conns)
            if st and ng:
                yield shape, conns, st, ng


def goals(rows):
    """The goal lines under the table. Issue 2's: shadowtee >= CORE_GOAL x
    nginx in req/s with p99 at or below nginx's, per shape and connection
    count. Issue 3's: shadowtee mirroring req/s >= 2x nginx + mirror (judged
    at c32, the throughput case; c4 is shown too) and client p99 with a slow
    or blackholed shadow within 10% of no mirroring (c4, the latency case,
    and c32). TLS: shadowtee at or above nginx, both terminating TLS."""
    out = []
    for shape, conns, st, ng in shadowtee_nginx_pairs(rows, "core"):
        v, p = rps_ratio(st, ng), p99_ratio(st, ng)
        if v is None or p is None:
            out.append("- core, %s, c%d: FAIL (no measurement: %s)"
                       % (shape, conns, st["note"] or ng["note"] or "wrk gave no figure"))
            continue
        out.append("- core req/s, %s, c%d: shadowtee / nginx = %.2f%s (goal ≥ %.1f) and p99 ratio "
                   "%.2f%s (goal ≤ 1.00): %s; CPU µs/req %s vs %s"
                   % (shape, conns, v, per_round(st, ng, "rps"), CORE_GOAL, p,
                      per_round(st, ng, "p99"), verdict(v >= CORE_GOAL and p <= 1.0, st, ng),
                      fmt(st["cpu"], "%.1f"), fmt(ng["cpu"], "%.1f")))
    for conns in (32, 4):
        for shadow in ("fast", "slow", "blackhole"):
            st = find(rows, section="tee", target="shadowtee", shadow=shadow, conns=conns)
            ng = find(rows, section="tee", target="nginx-mirror", shadow=shadow, conns=conns)
            if not (st and ng):
                continue
            v = ratio(st["rps"], ng["rps"])
            if v is None:
                out.append("- tee req/s, shadow %s, c%d: FAIL (no measurement: %s)"
                           % (shadow, conns, st["note"] or ng["note"] or "wrk gave no figure"))
                continue
            mv = ratio(mirrored_rps(st), mirrored_rps(ng))
            out.append("- tee req/s, shadow %s, c%d: shadowtee / nginx+mirror = %.2f (goal ≥ %.1f): %s%s"
                       % (shadow, conns, v, TEE_GOAL, verdict(v >= TEE_GOAL, st),
                          "" if mv is None else "; mirrored req/s ratio %.2f" % mv))
    for conns in (4, 32):
        base = find(rows, section="tee", target="shadowtee", shadow="none", conns=conns)
        twin = find(rows, section="tee", target="shadowtee", shadow="twin", conns=conns)
        noise = p99_ratio(twin, base) if base and twin else None
        if noise:
            out.append("- tee noise floor, c%d: p99 of the twin no-mirroring instance / the baseline = %.2f%s "
                       "(an A/A pair: the same binary and flags, so any distance from 1.00 is this run's "
                       "noise; a p99 goal is only decided when its ratio is further from 1 than this)"
                       % (conns, noise, per_round(twin, base, "p99")))
        for shadow in ("slow", "blackhole"):
            st = find(rows, section="tee", target="shadowtee", shadow=shadow, conns=conns)
            if not (st and base):
                continue
            v = p99_ratio(st, base)
            if v is None:
                out.append("- tee client p99, shadow %s, c%d: FAIL (no measurement: %s)"
                           % (shadow, conns, st["note"] or base["note"] or "wrk gave no figure"))
            else:
                inside = ""
                if noise and v > 0 and within_noise(v, noise):
                    inside = " (no further from 1 than this run's A/A ratio %.2f: not a finding either way)" % noise
                out.append("- tee client p99, shadow %s, c%d: %.3f ms vs %.3f ms without mirroring = %.2f%s "
                           "(goal ≤ %.2f): %s%s" % (shadow, conns, st["p99"], base["p99"], v,
                                                     per_round(st, base, "p99"), P99_GOAL,
                                                     verdict(v <= P99_GOAL, st, base), inside))
    for shape, conns, st, ng in shadowtee_nginx_pairs(rows, "tls"):
        v = rps_ratio(st, ng)
        if v is None:
            out.append("- tls req/s, %s, c%d: FAIL (no measurement: %s)"
                       % (shape, conns, st["note"] or ng["note"] or "wrk gave no figure"))
            continue
        cpu = ratio(st["cpu"], ng["cpu"])
        out.append("- tls req/s, %s, c%d: shadowtee / nginx, both terminating TLS = %.2f%s (goal ≥ %.2f): %s; "
                   "CPU µs/req %s vs %s%s"
                   % (shape, conns, v, per_round(st, ng, "rps"), TLS_GOAL, verdict(v >= TLS_GOAL, st, ng),
                      fmt(st["cpu"], "%.1f"), fmt(ng["cpu"], "%.1f"), "" if cpu is None else " (%.2f×)" % cpu))
    for kind in UNIX_KINDS:
        for proxy in ("shadowtee", "nginx"):
            tcp = find(rows, section="unix", target=proxy + "-tcp", shadow=kind)
            unix = find(rows, section="unix", target=proxy + "-unix", shadow=kind)
            if not (tcp and unix):
                continue
            v, p = rps_ratio(unix, tcp), p99_ratio(unix, tcp)
            p50 = paired_ratio(unix, tcp, "p50")
            cpu = paired_ratio(unix, tcp, "cpu")
            if None in (v, p, p50):
                out.append("- unix, %s, %s: no figure (%s)" % (SHADOW_NAMES[kind], proxy,
                                                              unix["note"] or tcp["note"] or "wrk gave no figure"))
                continue
            out.append("- unix, %s, %s: Unix socket / TCP upstream: req/s %.2f%s, p50 %.2f, p99 %.2f%s, "
                       "CPU µs/req %s vs %s%s (no fixed goal)%s"
                       % (SHADOW_NAMES[kind], proxy, v, per_round(unix, tcp, "rps"), p50, p,
                          per_round(unix, tcp, "p99"), fmt(unix["cpu"], "%.1f"), fmt(tcp["cpu"], "%.1f"),
                          "" if cpu is None else " (%.2f×)" % cpu,
                          "" if clean(unix) and clean(tcp) else " (a run had errors: see warnings)"))
    out += payload_goals(rows)
    mirror = find(rows, section="cmp", shadow="mirror")
    for key, what in (("compare", "comparison"), ("redis", "comparison + Redis")):
        other = find(rows, section="cmp", shadow=key)
        v = ratio(other and other["rps"], mirror and mirror["rps"])
        if v is not None:
            out.append("- cmp: req/s with %s / mirroring only = %.2f (no fixed goal)" % (what, v))
    for r in rows:
        if not clean(r):
            out.append("- warning: %s/%s/%s/%s c%d: %d socket errors or non-2xx%s" % (
                r["section"], r["shape"], r["target"], r["shadow"], r["conns"], r["errors"],
                "; " + r["note"] if r["note"] else ""))
    return out


def payload_goals(rows):
    """Issue 13's goal lines for the payload section, per body and connection
    count: at the paced load the client p99 with --compare on within
    PAYLOAD_P99_GOAL of --compare off (both 100% mirrored) with at least
    PAYLOAD_COMPARED_GOAL of the mirrored pairs compared and none dropped as
    busy; at saturation --compare on req/s at least PAYLOAD_RPS_GOAL of
    --compare off (drops allowed there, and shown)."""
    out = []
    for target in ("24KiB", "200KiB"):
        for conns in (4, 32):
            same = dict(section="payload", target=target, conns=conns)
            on, off = find(rows, shape="paced", shadow="on", **same), find(rows, shape="paced", shadow="off", **same)
            none = find(rows, shape="paced", shadow="none", **same)
            if on and off:
                v = p99_ratio(on, off)
                share, busy = compared_share(on["mirror"]), busy_share(on["mirror"])
                if v is None or share is None:
                    out.append("- payload %s paced c%d: FAIL (no measurement: %s)"
                               % (target, conns, on["note"] or off["note"] or "no figure or no /metrics"))
                else:
                    ok = v <= PAYLOAD_P99_GOAL and share >= PAYLOAD_COMPARED_GOAL and busy == 0
                    aa = ""
                    if none:
                        aa = "; --compare off / no mirroring p99 = %s" % fmt(p99_ratio(off, none), "%.2f")
                    out.append("- payload %s paced c%d: client p99 --compare on %.3f ms vs off %.3f ms = %.2f%s "
                               "(goal ≤ %.2f), compared %.1f%% of mirrored (goal ≥ %.0f%%), dropped as busy "
                               "%.1f%% (goal 0), %s req/s: %s%s"
                               % (target, conns, on["p99"], off["p99"], v, per_round(on, off, "p99"),
                                  PAYLOAD_P99_GOAL, 100 * share, 100 * PAYLOAD_COMPARED_GOAL, 100 * busy,
                                  fmt(on["rps"], "%.0f"), verdict(ok, on, off), aa))
            on, off = (find(rows, shape="saturated", shadow="on", **same),
                       find(rows, shape="saturated", shadow="off", **same))
            if on and off:
                v = rps_ratio(on, off)
                share, busy = compared_share(on["mirror"]), busy_share(on["mirror"])
                if v is None:
                    out.append("- payload %s saturated c%d: FAIL (no measurement: %s)"
                               % (target, conns, on["note"] or off["note"] or "wrk gave no figure"))
                    continue
                out.append("- payload %s saturated c%d: req/s --compare on / off = %.2f%s (goal ≥ %.2f): %s; "
                           "compared %s of mirrored, dropped as busy %s (counted), p99 ratio %s"
                           % (target, conns, v, per_round(on, off, "rps"), PAYLOAD_RPS_GOAL,
                              verdict(v >= PAYLOAD_RPS_GOAL, on, off),
                              "—" if share is None else "%.1f%%" % (100 * share),
                              "—" if busy is None else "%.1f%%" % (100 * busy), fmt(p99_ratio(on, off), "%.2f")))
    return out


def read_lines(path):
    try:
        with open(path, errors="replace") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except OSError:
        return []


INSTR_JOBS = {"proxy": "proxy", "mirror": "mirror 100%, --compare off",
              "mirror+compare": "mirror 100% + compare",
              "mirror+compare+redis": "mirror 100% + compare + Redis",
              "tls": "proxy, TLS terminated, keep-alive",
              "tls-close": "proxy, TLS terminated, Connection: close (a handshake per request)"}
INSTR_REF = {"proxy": "proxy", "mirror": "+mirror", "tls": "TLS", "tls-close": "TLS close"}


def num(text, kind=int):
    try:
        return kind(text)
    except (TypeError, ValueError):
        return None


def read_instr(d):
    """Rows of INSTR_DIR/instr.tsv with instructions per request computed."""
    rows = []
    try:
        with open(os.path.join(d, "instr.tsv")) as f:
            lines = f.read().splitlines()
    except OSError:
        return rows
    for line in lines:
        p = line.split("\t")
        if len(p) < 12:
            continue
        r = {"case": p[0], "program": p[1], "job": p[2], "requests": num(p[3]), "source": p[4],
             "wrk_requests": num(p[5]), "rps": num(p[6], float), "errors": num(p[7]),
             "instr": num(p[8]), "mirrored": num(p[9]), "seen": num(p[10]), "note": p[11],
             "memfn": num(p[12]) if len(p) > 12 else None,
             "conns": num(p[13]) if len(p) > 13 else None}
        r["per_req"] = (r["instr"] / r["requests"]
                        if r["instr"] is not None and r["requests"] else None)
        rows.append(r)
    return rows


def instr_clean(r):
    return r["per_req"] is not None and r["errors"] == 0 and not r["note"]


def handshakes(r):
    """Full TLS handshakes in a case's window: the client connections the
    proxy accepted minus one, wrk's address probe (wrk.resolve connects once
    to the target and closes without sending anything)."""
    return None if r["conns"] is None else max(r["conns"] - 1, 0)


def tls_split(ka, close):
    """Splits the TLS keep-alive case's instructions into a cost per request
    and a cost per full handshake (TCP accept + handshake + close), from two
    equations: instr = requests * R + handshakes * H for the keep-alive case
    (a handshake per wrk connection) and the Connection: close case (one per
    request). Returns (R, H) or None."""
    try:
        a, b = handshakes(ka) / ka["requests"], handshakes(close) / close["requests"]
        h = (close["per_req"] - ka["per_req"]) / (b - a)
    except (TypeError, ZeroDivisionError):
        return None
    return ka["per_req"] - a * h, h


def instr_table(d):
    """Markdown lines: instructions per request for each case, against nginx
    doing the same job and against the same program's plain proxy case."""
    rows = read_instr(d)
    if not rows:
        return ["(no instr measurement ran)"]
    nginx = {r["job"]: r for r in rows if r["program"] == "nginx"}
    plain = {r["program"]: r for r in rows if r["job"] == "proxy"}
    head = ["program", "job", "requests", "instructions", "instr/req", "vs nginx", "added over plain proxy",
            "in memset/memcpy", "new client conns", "mirrored", "shadow received", "wrk req/s (under callgrind)",
            "errors", "note"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ref_job = "mirror" if r["job"].startswith("mirror") else r["job"]
        ref = nginx.get(ref_job)
        vs = "—"
        if r["program"] == "shadowtee" and ref is not None:
            v = ratio(r["per_req"], ref["per_req"])
            if v is not None:
                vs = "%.2f× nginx %s" % (v, INSTR_REF.get(ref_job, ref_job))
        base = plain.get(r["program"])
        added = "—"
        if r["job"] != "proxy" and base is not None and None not in (r["per_req"], base["per_req"]):
            added = "%+.0f" % (r["per_req"] - base["per_req"])
        mirrored = "—"
        if r["mirrored"] is not None and r["requests"]:
            mirrored = "%.1f%%" % (100.0 * r["mirrored"] / r["requests"])
        seen = "—"
        if r["job"] != "proxy" and r["seen"] is not None and r["requests"]:
            seen = "%d (%.1f%%)" % (r["seen"], 100.0 * r["seen"] / r["requests"])
        job = INSTR_JOBS.get(r["job"], r["job"])
        if r["program"] == "nginx" and r["job"] == "mirror":
            job = "mirror 100% (ngx_http_mirror_module)"
        mem = "—"
        if r["memfn"] is not None and r["requests"] and r["instr"]:
            mem = "%.0f (%.0f%%)" % (r["memfn"] / r["requests"], 100.0 * r["memfn"] / r["instr"])
        cells = [r["program"], job, fmt(r["requests"], "%d"),
                 "—" if r["instr"] is None else "{:,}".format(r["instr"]),
                 fmt(r["per_req"], "%.0f"), vs, added, mem, fmt(r["conns"], "%d"), mirrored, seen,
                 fmt(r["rps"], "%.0f"),
                 fmt(r["errors"], "%d"), r["note"]]
        out.append("| " + " | ".join(cells) + " |")
    summary = []
    for job, label in (("proxy", "plain proxy"), ("mirror", "mirroring 100% (--compare off)"),
                       ("tls", "TLS-terminating proxy, keep-alive")):
        st = next((r for r in rows if r["program"] == "shadowtee" and r["job"] == job), None)
        ng = nginx.get(job)
        if st is None or ng is None:
            continue
        v = ratio(st["per_req"], ng["per_req"])
        if v is None:
            summary.append("- %s: no figure (%s)" % (label, st["note"] or ng["note"] or "no requests counted"))
            continue
        summary.append("- %s: shadowtee %.0f vs nginx %.0f instructions/request = %.2f×%s"
                       % (label, st["per_req"], ng["per_req"], v,
                          "" if instr_clean(st) and instr_clean(ng) else " (a run had errors: see notes)"))
        if job != "tls":
            continue
        # wrk opens its connections afresh in every run: the keep-alive
        # window holds one full handshake per wrk connection
        split = {}
        for prog, ka in (("shadowtee", st), ("nginx", ng)):
            close = next((r for r in rows if r["program"] == prog and r["job"] == "tls-close"), None)
            split[prog] = tls_split(ka, close) if close else None
        if None in split.values():
            summary.append("- TLS handshakes in the keep-alive window: %s (shadowtee) and %s (nginx), one per "
                           "wrk connection; no Connection: close case to price them"
                           % (fmt(handshakes(st), "%d"), fmt(handshakes(ng), "%d")))
            continue
        (rs, hs), (rn, hn) = split["shadowtee"], split["nginx"]
        share = [100.0 * handshakes(r) * h / r["instr"] for r, h in ((st, hs), (ng, hn))]
        summary.append("- TLS handshakes in the keep-alive window: %d (shadowtee) and %d (nginx): wrk opens its "
                       "connections afresh in every run, so the warm-up does not keep them out. Priced by the "
                       "Connection: close cases at %.0f and %.0f instructions each (accept + handshake + "
                       "close: %.2f×), they are %.1f%% and %.1f%% of the counts. Per request without them: "
                       "shadowtee %.0f vs nginx %.0f = %.2f×"
                       % (handshakes(st), handshakes(ng), hs, hn, ratio(hs, hn) or 0, share[0], share[1],
                          rs, rn, ratio(rs, rn) or 0))
        ps, pn = plain.get("shadowtee"), plain.get("nginx")
        if ps and pn and ps["per_req"] and pn["per_req"]:
            summary.append("- TLS adds per request (handshakes excluded) over the same program's plain proxy: "
                           "shadowtee %+.0f, nginx %+.0f" % (rs - ps["per_req"], rn - pn["per_req"]))
    for r in rows:
        if r["requests"] is not None and r["wrk_requests"] is not None:
            gap = r["requests"] - r["wrk_requests"]
            if abs(gap) > 2 * 64:
                summary.append("- warning: %s: the proxy counted %d requests, wrk %d"
                               % (r["case"], r["requests"], r["wrk_requests"]))
        if r["per_req"] is not None and not instr_clean(r):
            summary.append("- warning: %s: %s errors in wrk%s" % (r["case"], fmt(r["errors"], "%d"),
                                                                   "; " + r["note"] if r["note"] else ""))
    if summary:
        out += [""] + summary
    return out


def instr_report(d):
    out = ["# shadowtee instructions per request (%s)" % os.path.basename(os.path.normpath(d)), ""]
    out += ["- " + n for n in read_lines(os.path.join(d, "notes.txt"))]
    out.append("")
    out += instr_table(d)
    skipped = read_lines(os.path.join(d, "skipped.tsv"))
    if skipped:
        out += [""] + ["- %s skipped: %s" % tuple(s.split("\t", 1)) if "\t" in s else "- " + s
                       for s in skipped]
    return out




def main(argv):
    if len(argv) == 2 and argv[0] == "--instr":
        if not os.path.isfile(os.path.join(argv[1], "instr.tsv")):
            print("usage: report.py --instr INSTR_DIR (a bench/callgrind.sh dir with instr.tsv)", file=sys.stderr)
            return 2
        print("\n".join(instr_report(argv[1])))
        return 0
    if len(argv) != 1 or not os.path.isfile(os.path.join(argv[0], "results.tsv")):
        print("usage: report.py RESULTS_DIR | --instr INSTR_DIR (bench/run.sh or bench/callgrind.sh output)", file=sys.stderr)
        return 2
    d = argv[0]
    rows = read_rows(d)
    out = ["# shadowtee bench (%s)" % os.path.basename(os.path.normpath(d)), ""]
    out += ["- " + n for n in read_lines(os.path.join(d, "notes.txt"))]
    out.append("")
    instr_dir = os.path.join(d, "instr")
    has_instr = os.path.isfile(os.path.join(instr_dir, "instr.tsv"))
    if rows:
        out += table(rows)
    elif not has_instr:
        out.append("(no measurement ran)")
    g = goals(rows) + mesh_goals(d, rows)
    if g:
        out += ["", "## Goals and warnings", ""] + g
    skipped = read_lines(os.path.join(d, "skipped.tsv"))
    if skipped:
        out += ["", "## Skipped", ""]
        out += ["- %s skipped: %s" % tuple(s.split("\t", 1)) if "\t" in s else "- " + s for s in skipped]
    mt = mesh_tables(d, rows)
    if mt:
        out += ["", "## mesh: Redis and the join", ""] + mt
    cmp_text = read_lines(os.path.join(d, "cmp_bench.txt"))
    if cmp_text:
        out += ["", "## cmp_bench (comparator micro-benchmark)", "", "```"] + cmp_text + ["```"]
    if has_instr:
        out += ["", "## instr: instructions per request (callgrind)", ""]
        out += ["- " + n for n in read_lines(os.path.join(instr_dir, "notes.txt"))]
        out.append("")
        out += instr_table(instr_dir)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
