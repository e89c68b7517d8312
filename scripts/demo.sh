#!/usr/bin/env bash
# `make demo`: the whole shadow-traffic loop on loopback, in about a minute,
# with a real scikit-learn model served by gunicorn.
#
#   train.py                trains v1 and v2 once (cached in $BUILD/models)
#   redis-server            statistics store (free port, no persistence)
#   gunicorn v1 unix:SOCK   stable model (primary): LogisticRegression, on a
#                           Unix socket in the work dir, as in the stable pod
#   gunicorn v2 :P2         candidate model (shadow): RBF SVC
#   gunicorn v1 :P3         second stable replica (noise baseline)
#   build/shadowtee :PL     in front: serves v1, tees 100% to v2 and the noise
#                           replica, compares with examples/flask-inference/rules.json
#
# It sends the held-out rows of the digits data set (rows no training saw),
# one per request, through the proxy, waits until the comparisons reach
# Redis, prints the divergence report, checks that its divergence equals the
# v1/v2 disagreement computed offline (offline.py, on the same saved models
# and rows), prints the promotion gate and writes the HTML and JSON reports.
# Everything it starts is stopped on exit (trap). Readiness is polled (GET
# /health answers, a port that answers, /readyz), never a fixed sleep; every
# wait has a deadline.
# Environment: SHADOWTEE_BUILD (default build), DEMO_REQUESTS (held-out rows
# to send, 10..450, default all 450), DEMO_MODEL_DIR (default
# $BUILD/models), DEMO_HTML (default $BUILD/demo-report.html), DEMO_JSON
# (default $BUILD/demo-report.json), DEMO_KEEP=1 keeps the work dir (logs)
# after a successful run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${SHADOWTEE_BUILD:-$ROOT/build}
PY=/usr/bin/python3
HELDOUT_ROWS=450 # len(model.heldout()): 25% of load_digits' 1797 rows
REQUESTS=${DEMO_REQUESTS:-$HELDOUT_ROWS}
SERVICE=flask-inference
EXAMPLE=examples/flask-inference
RULES=$EXAMPLE/rules.json
MODELS=${DEMO_MODEL_DIR:-$BUILD/models}
HTML=${DEMO_HTML:-$BUILD/demo-report.html}
JSON=${DEMO_JSON:-$BUILD/demo-report.json}

die() { echo "demo: $*" >&2; exit 1; }
if ! [[ "$REQUESTS" =~ ^[0-9]+$ ]] || [ "$REQUESTS" -lt 10 ] || [ "$REQUESTS" -gt "$HELDOUT_ROWS" ]; then
  echo "demo: DEMO_REQUESTS must be 10..$HELDOUT_ROWS (the held-out rows), got '$REQUESTS'" >&2
  exit 2
fi
[ -x "$BUILD/shadowtee" ] || die "$BUILD/shadowtee is not built (run make)"
[ -x "$BUILD/shadowtee-report" ] || die "$BUILD/shadowtee-report is not built (run make)"
"$BUILD/shadowtee" --help 2>&1 | grep -q -- '--redis' ||
  die "$BUILD/shadowtee --help does not list --redis: this build cannot feed the report yet"
command -v redis-server >/dev/null || die "redis-server not found (run scripts/deps.sh)"
[ -x "$PY" ] || die "$PY not found (run scripts/deps.sh)"
GUNICORN=/usr/bin/gunicorn # Debian's, on /usr/bin/python3
[ -x "$GUNICORN" ] || die "$GUNICORN not found (run scripts/deps.sh)"
"$PY" -c 'import sklearn, flask' 2>/dev/null || die "$PY cannot import sklearn and flask (run scripts/deps.sh)"

WORK=$(mktemp -d -t shadowtee-demo.XXXXXX)
PIDS=()
NAMES=()
OK=0
cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
  done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    # bounded: the proxy drains within its --drain-timeout, the rest exit at once
    timeout 30 tail --pid="${PIDS[$i]}" -f /dev/null 2>/dev/null || kill -KILL "${PIDS[$i]}" 2>/dev/null || true
  done
  if [ "$OK" = 1 ] && [ "${DEMO_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"
  else
    echo "demo: logs kept in $WORK" >&2
    [ "$OK" = 1 ] || for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start NAME CMD...: runs CMD in the background, logging to $WORK/NAME.log.
start() {
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
}

# alive PID NAME WHAT: fails when the process has exited.
alive() { kill -0 "$1" 2>/dev/null || die "$2 exited before $3 (log: $WORK/$2.log)"; }

# wait_port PORT NAME: polls until a TCP connect succeeds (15 s deadline),
# failing early when the process behind it has exited.
wait_port() {
  local port=$1 name=$2 pid=${PIDS[-1]} deadline=$((SECONDS + 15))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    alive "$pid" "$name" "port $port answered"
    [ "$SECONDS" -lt "$deadline" ] || die "$name: port $port did not answer within 15 s"
    sleep 0.05
  done
}

# app NAME VERSION ADDR: gunicorn serving model VERSION on ADDR (HOST:PORT
# or unix:PATH), as the image does; waits until GET /health is 200 there
# (the model is loaded), 30 s deadline.
app() {
  local name=$1 version=$2 addr=$3 deadline=$((SECONDS + 30))
  start "$name" env MODEL_VERSION="$version" MODEL_DIR="$MODELS" BIND="$addr" WEB_CONCURRENCY=2 \
    "$GUNICORN" --config "$EXAMPLE/gunicorn.conf.py"
  local pid=${PIDS[-1]}
  until "$PY" "$EXAMPLE/healthcheck.py" "$addr" 2>/dev/null; do
    alive "$pid" "$name" "GET /health answered on $addr"
    [ "$SECONDS" -lt "$deadline" ] || die "$name: GET /health on $addr not 200 within 30 s"
    sleep 0.1
  done
}

"$PY" "$EXAMPLE/train.py" --out "$MODELS" v1 v2 | sed 's/^/demo: /'

REDIS_PORT=$(free_port)
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK"
wait_port "$REDIS_PORT" redis
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

# The stable app's address: a Unix socket, as in the pod (an emptyDir there).
# The shadow and the noise replica stay on TCP ports, as their Services.
STABLE="unix:$WORK/stable.sock"
app stable-v1 v1 "$STABLE"
SHADOW_PORT=$(free_port)
app shadow-v2 v2 "127.0.0.1:$SHADOW_PORT"
NOISE_PORT=$(free_port)
app noise-v1 v1 "127.0.0.1:$NOISE_PORT"

# The demo sends its rows as one burst and wants every one compared. The
# comparator threads run at SCHED_IDLE (they only get CPU nothing else wants,
# so on a busy machine they wait until the burst is over) and a full queue
# sheds pairs (counted as comparator_busy): the queue here holds the whole
# burst. In production the default 256 sheds under a long burst instead.
PROXY_PORT=$(free_port)
ADMIN_PORT=$(free_port)
start shadowtee "$BUILD/shadowtee" --listen "127.0.0.1:$PROXY_PORT" --primary "$STABLE" \
  --admin "127.0.0.1:$ADMIN_PORT" --workers 2 --log-level warn \
  --shadow "127.0.0.1:$SHADOW_PORT" --noise-upstream "127.0.0.1:$NOISE_PORT" --mirror-percent 100 \
  --redis "$REDIS_URL" --service "$SERVICE" --compare-rules "$RULES" --drain-timeout 5s \
  --compare-queue $((REQUESTS + 64))
wait_port "$PROXY_PORT" shadowtee
wait_port "$ADMIN_PORT" shadowtee
deadline=$((SECONDS + 15))
until curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz"; do
  [ "$SECONDS" -lt "$deadline" ] || die "shadowtee /readyz not 200 within 15 s"
  sleep 0.1
done
echo "demo: redis :$REDIS_PORT, stable v1 $STABLE, shadow v2 :$SHADOW_PORT, noise v1 :$NOISE_PORT," \
  "shadowtee :$PROXY_PORT (admin :$ADMIN_PORT); gunicorn serves the models"

# The first $REQUESTS held-out rows, one per request, in the data set's
# split order; request ids on half of them. 4 client threads, 60 s cap.
# Every answer must be the stable model's 200.
echo "demo: sending $REQUESTS held-out digits through shadowtee"
"$PY" - "$PROXY_PORT" "$REQUESTS" "$EXAMPLE" <<'EOF'
import json, sys, time, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor

port, total = int(sys.argv[1]), int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
import model
rows = model.heldout()
if total > len(rows):
    sys.exit("demo: only %d held-out rows, %d asked" % (len(rows), total))
jobs = [(i, json.dumps({"features": features}).encode()) for i, (features, _) in enumerate(rows[:total])]
deadline = time.monotonic() + 60
def send(job):
    i, data = job
    if time.monotonic() > deadline:
        return "skipped"
    headers = {"Content-Type": "application/json"}
    if i % 2 == 0:
        headers["X-Request-Id"] = "demo-%04d" % i
    req = urllib.request.Request("http://127.0.0.1:%d/predict" % port, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = json.loads(r.read())
            return "200" if r.status == 200 and body.get("model_version") == "v1" else "not-v1"
    except urllib.error.HTTPError as e:
        e.read()
        return str(e.code)
    except OSError as e:
        return "error"
counts = {}
with ThreadPoolExecutor(4) as pool:
    for status in pool.map(send, jobs):
        counts[status] = counts.get(status, 0) + 1
print("demo: responses by status: " + ", ".join("%s=%d" % kv for kv in sorted(counts.items())))
sys.exit(0 if counts.get("200") == total else 1)
EOF

# Wait until the proxy says every mirrored request is accounted for and its
# comparisons are in Redis: no mirror in flight, nothing queued for a
# comparator thread (which may pause to keep within --compare-cpu, longer on a
# slow or loaded machine, so no quiet-period guess), and Redis's `compared`
# equal to the proxy's comparisons minus those it says never reached Redis.
echo "demo: waiting for the comparisons to reach Redis"
"$PY" - "$REDIS_PORT" "$SERVICE" "$REQUESTS" "$ADMIN_PORT" <<'EOF'
import re, sys, time, urllib.request
import redis
port, service, want, admin = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = redis.Redis(host="127.0.0.1", port=port)
why = {}
def metrics():
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5) as m:
        text = m.read().decode()
    sums = {}
    for line in text.splitlines():
        g = re.match(r"^(shadowtee_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if g:
            sums[g.group(1)] = sums.get(g.group(1), 0) + float(g.group(3))
            if g.group(2) and float(g.group(3)) and "skipped" in g.group(1):
                why[g.group(1) + g.group(2)] = int(float(g.group(3)))
    return sums
def in_redis():
    return sum(int(r.hget(k, "compared") or 0) for k in r.scan_iter("shadowtee:{%s}:ep:*:counts" % service))
deadline, got, m = time.monotonic() + 120, 0, {}
while time.monotonic() < deadline:
    m, got = metrics(), in_redis()
    compared = m.get("shadowtee_comparisons_total", 0) - m.get("shadowtee_redis_lost_comparisons_total", 0)
    settled = (m.get("shadowtee_mirror_inflight", 1) == 0 and m.get("shadowtee_compare_queue_length", 1) == 0
               and got >= compared)
    if settled:
        break
    time.sleep(0.1)
else:
    print("demo: the comparisons did not settle within 120 s")
totals = {}
for k in r.scan_iter("shadowtee:{%s}:ep:*:counts" % service):
    for f in ("matched", "diverged", "noise", "errors"):
        totals[f] = totals.get(f, 0) + int(r.hget(k, f) or 0)
print("demo: %d of %d requests compared: %s" % (got, want, ", ".join("%s %d" % kv for kv in totals.items())))
if got < want:
    print("demo: the proxy's accounting: mirrored %d, skipped %d, not compared %d, lost before Redis %d" % (
        m.get("shadowtee_mirror_requests_total", 0), m.get("shadowtee_mirror_skipped_total", 0),
        m.get("shadowtee_comparisons_skipped_total", 0), m.get("shadowtee_redis_lost_comparisons_total", 0)))
    for k, v in sorted(why.items()):
        print("demo:   %s %d" % (k, v))
sys.exit(0 if got > 0 else 1)
EOF

echo
"$BUILD/shadowtee-report" --redis "$REDIS_URL" --service "$SERVICE" --format text
"$BUILD/shadowtee-report" --redis "$REDIS_URL" --service "$SERVICE" --format html --output "$HTML"
"$BUILD/shadowtee-report" --redis "$REDIS_URL" --service "$SERVICE" --format json --output "$JSON"

# The same rows, offline: both saved models, the rules applied in Python.
# The report's divergence must equal it exactly, path by path.
echo
"$PY" - "$JSON" "$EXAMPLE" "$MODELS" "$RULES" "$REQUESTS" <<'EOF'
import json, sys
report_file, example, models, rules_file, rows = sys.argv[1:6]
sys.path.insert(0, example)
import offline
with open(rules_file) as fh:
    want = offline.disagreement(models, json.load(fh), int(rows))
print(offline.summary(want, rules_file.rsplit("/", 1)[-1]))
with open(report_file) as fh:
    report = json.load(fh)
got_paths = {}
for ep in report["endpoints"]:
    for p in ep["paths"]:
        key = "%s|%s" % (p["kind"], p["path"])
        got_paths[key] = got_paths.get(key, 0) + p["count"]
if (report["compared"], report["diverged"], got_paths) != (want["rows"], want["diverged"], want["paths"]):
    sys.exit("demo: the report (compared %d, diverged %d, paths %s) does not match the offline disagreement "
             "(rows %d, diverged %d, paths %s)" % (report["compared"], report["diverged"], got_paths,
                                                   want["rows"], want["diverged"], want["paths"]))
print("demo: the report's divergence (%d of %d, every path count) equals the offline disagreement"
      % (report["diverged"], report["compared"]))
EOF

echo
echo "demo: promotion gate (v2 disagrees with v1 on some held-out digits, so it should FAIL;"
echo "      the latency ratio bound is loose: on a small shared box latencies are noisy):"
gate=0
"$BUILD/shadowtee-report" --redis "$REDIS_URL" --service "$SERVICE" --format text --gate \
  --max-divergence 1 --max-shadow-errors 1 --max-latency-ratio 10 --min-compared 50 >"$WORK/gate.txt" 2>&1 || gate=$?
grep '^GATE' "$WORK/gate.txt" || tail -n 3 "$WORK/gate.txt"
case "$gate" in
  0) echo "demo: gate PASSED (exit 0)" ;;
  1) echo "demo: gate FAILED (exit 1): scripts/promote would refuse to promote v2" ;;
  3) die "gate INCONCLUSIVE (exit 3): too few comparisons for a verdict, see $WORK/gate.txt" ;;
  *) die "gate could not be evaluated (exit $gate)" ;;
esac
echo "demo: HTML report written to ${HTML#"$ROOT"/}, JSON to ${JSON#"$ROOT"/}"
OK=1
