#!/usr/bin/env bash
# `make demo`: the whole shadow-traffic loop on loopback, in about a minute.
#
#   redis-server            statistics store (free port, no persistence)
#   app.py v1 :P1           stable model (primary)
#   app.py v2 :P2           candidate model (shadow)
#   app.py v1 :P3           second stable replica (noise baseline)
#   build/shadowtee :PL     in front: serves v1, tees 100% to v2 and the noise
#                           replica, compares with examples/flask-inference/rules.json
#
# It sends DEMO_REQUESTS (default 300) varied requests through the proxy,
# waits until the comparisons reach Redis, prints the divergence report and
# the promotion gate, and writes the HTML report to build/demo-report.html.
# Everything it starts is stopped on exit (trap). Readiness is polled (a port
# that answers, /readyz), never a fixed sleep; every wait has a deadline.
# Environment: SHADOWTEE_BUILD (default build), DEMO_REQUESTS (10..5000),
# DEMO_HTML (default $BUILD/demo-report.html), DEMO_KEEP=1 keeps the work dir
# (logs) after a successful run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${SHADOWTEE_BUILD:-$ROOT/build}
PY=/usr/bin/python3
REQUESTS=${DEMO_REQUESTS:-300}
SERVICE=flask-inference
APP=examples/flask-inference/app.py
RULES=examples/flask-inference/rules.json
HTML=${DEMO_HTML:-$BUILD/demo-report.html}

die() { echo "demo: $*" >&2; exit 1; }
if ! [[ "$REQUESTS" =~ ^[0-9]+$ ]] || [ "$REQUESTS" -lt 10 ] || [ "$REQUESTS" -gt 5000 ]; then
  echo "demo: DEMO_REQUESTS must be 10..5000, got '$REQUESTS'" >&2
  exit 2
fi
[ -x "$BUILD/shadowtee" ] || die "$BUILD/shadowtee is not built (run make)"
[ -x "$BUILD/shadowtee-report" ] || die "$BUILD/shadowtee-report is not built (run make)"
"$BUILD/shadowtee" --help 2>&1 | grep -q -- '--redis' ||
  die "$BUILD/shadowtee --help does not list --redis: this build cannot feed the report yet"
command -v redis-server >/dev/null || die "redis-server not found (run scripts/deps.sh)"
[ -x "$PY" ] || die "$PY not found (run scripts/deps.sh)"

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

# wait_port PORT NAME: polls until a TCP connect succeeds (15 s deadline),
# failing early when the process behind it has exited.
wait_port() {
  local port=$1 name=$2 pid=${PIDS[-1]} deadline=$((SECONDS + 15))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || die "$name exited before port $port answered (log: $WORK/$name.log)"
    [ "$SECONDS" -lt "$deadline" ] || die "$name: port $port did not answer within 15 s"
    sleep 0.05
  done
}

REDIS_PORT=$(free_port)
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK"
wait_port "$REDIS_PORT" redis
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

STABLE_PORT=$(free_port)
start stable-v1 env MODEL_VERSION=v1 "$PY" "$APP" --port "$STABLE_PORT"
wait_port "$STABLE_PORT" stable-v1
SHADOW_PORT=$(free_port)
start shadow-v2 env MODEL_VERSION=v2 "$PY" "$APP" --port "$SHADOW_PORT"
wait_port "$SHADOW_PORT" shadow-v2
NOISE_PORT=$(free_port)
start noise-v1 env MODEL_VERSION=v1 "$PY" "$APP" --port "$NOISE_PORT"
wait_port "$NOISE_PORT" noise-v1

PROXY_PORT=$(free_port)
ADMIN_PORT=$(free_port)
start shadowtee "$BUILD/shadowtee" --listen "127.0.0.1:$PROXY_PORT" --primary "127.0.0.1:$STABLE_PORT" \
  --admin "127.0.0.1:$ADMIN_PORT" --workers 2 --log-level warn \
  --shadow "127.0.0.1:$SHADOW_PORT" --noise-upstream "127.0.0.1:$NOISE_PORT" --mirror-percent 100 \
  --redis "$REDIS_URL" --service "$SERVICE" --compare-rules "$RULES" --drain-timeout 5s
wait_port "$PROXY_PORT" shadowtee
wait_port "$ADMIN_PORT" shadowtee
deadline=$((SECONDS + 15))
until curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz"; do
  [ "$SECONDS" -lt "$deadline" ] || die "shadowtee /readyz not 200 within 15 s"
  sleep 0.1
done
echo "demo: redis :$REDIS_PORT, stable v1 :$STABLE_PORT, shadow v2 :$SHADOW_PORT, noise v1 :$NOISE_PORT," \
  "shadowtee :$PROXY_PORT (admin :$ADMIN_PORT)"

# Varied, reproducible traffic: single and batch predictions, ~12% with the
# first feature above v2's label-flip threshold, a few invalid bodies (400 on
# both sides: a match), request ids on half. 4 client threads, 60 s cap.
echo "demo: sending $REQUESTS requests through shadowtee"
"$PY" - "$PROXY_PORT" "$REQUESTS" <<'EOF'
import json, random, sys, time, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor

port, total = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(42)
def body(i):
    kind = rng.random()
    if kind < 0.05:
        return b'{"features": ["not", "numbers"]}'
    if kind < 0.20:
        return json.dumps({"instances": [[round(rng.uniform(-1, 1), 3) for _ in range(rng.randint(1, 6))]
                                         for _ in range(rng.randint(2, 4))]}).encode()
    return json.dumps({"features": [round(rng.uniform(-1, 1), 3) for _ in range(rng.randint(1, 8))]}).encode()
jobs = [(i, body(i)) for i in range(total)]
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
            r.read()
            return str(r.status)
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
bad = sum(v for k, v in counts.items() if k not in ("200", "400"))
sys.exit(1 if bad else 0)
EOF

# Wait until the proxy's batched flush (every ~100 ms) has put every
# comparison into Redis: the sum of `compared` over the service's endpoints.
echo "demo: waiting for the comparisons to reach Redis"
"$PY" - "$REDIS_PORT" "$SERVICE" "$REQUESTS" <<'EOF'
import sys, time
import redis
port, service, want = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
r = redis.Redis(host="127.0.0.1", port=port)
deadline, got, last_change, last = time.monotonic() + 30, 0, time.monotonic(), -1
while time.monotonic() < deadline:
    got = sum(int(r.hget(k, "compared") or 0) for k in r.scan_iter("shadowtee:{%s}:ep:*:counts" % service))
    if got != last:
        last, last_change = got, time.monotonic()
    if got >= want or (got > 0 and time.monotonic() - last_change > 3):
        break
    time.sleep(0.1)
totals = {}
for k in r.scan_iter("shadowtee:{%s}:ep:*:counts" % service):
    for f in ("matched", "diverged", "noise", "errors"):
        totals[f] = totals.get(f, 0) + int(r.hget(k, f) or 0)
print("demo: %d of %d requests compared: %s" % (got, want, ", ".join("%s %d" % kv for kv in totals.items())))
sys.exit(0 if got > 0 else 1)
EOF

echo
"$BUILD/shadowtee-report" --redis "$REDIS_URL" --service "$SERVICE" --format text
"$BUILD/shadowtee-report" --redis "$REDIS_URL" --service "$SERVICE" --format html --output "$HTML"
echo
echo "demo: promotion gate (v2 flips the label when features[0] > 0.75, so it should FAIL;"
echo "      the latency ratio bound is loose: Flask's development server on a small box is noisy):"
gate=0
"$BUILD/shadowtee-report" --redis "$REDIS_URL" --service "$SERVICE" --format text --gate \
  --max-divergence 1 --max-shadow-errors 1 --max-latency-ratio 10 --min-compared 50 >"$WORK/gate.txt" 2>&1 || gate=$?
grep '^GATE' "$WORK/gate.txt" || tail -n 3 "$WORK/gate.txt"
case "$gate" in
  0) echo "demo: gate PASSED (exit 0)" ;;
  1) echo "demo: gate FAILED (exit 1): scripts/promote would refuse to promote v2" ;;
  *) die "gate could not be evaluated (exit $gate)" ;;
esac
echo "demo: HTML report written to ${HTML#"$ROOT"/}"
OK=1
