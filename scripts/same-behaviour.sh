#!/usr/bin/env bash
# scripts/same-behaviour.sh OLD_BUILD_DIR NEW_BUILD_DIR
#
# Before/after proof for a refactoring that must not change the product:
#
#  (a) /metrics. For each configuration below, OLD/shadowtee and
#      NEW/shadowtee are started fresh (same flags, free loopback ports, their
#      own upstreams and redis-server), sent the same requests one after the
#      other, waited on until the counters of that traffic are complete, and
#      their /metrics compared line by line after masking what legitimately
#      differs from one run to the next:
#        - every sample of a *_seconds histogram (_bucket, _sum, _count:
#          latencies, comparator durations) and of a *_seconds_total counter
#          (comparator CPU and paused time)
#        - the names in MASK_VALUES (below: shadowtee_redis_flushes_total, one
#          per --redis-flush-interval that had something to write, so it
#          counts time; shadowtee_active_connections; extended by env
#          MASK_MORE)
#      A masked line keeps its name and labels: a series that appears or
#      disappears is still a difference.
#      Configurations:
#        plain   --primary only
#        tee     --shadow (answers differently on /div/*), --compare on,
#                --redis, --noise-upstream off
#        mesh    --mirror-mode mesh --mesh-role stable --redis
#  (b) shadowtee-report. The redis-server the OLD build's tee run filled
#      (mirrored traffic, half of it divergent) is read by OLD and NEW
#      shadowtee-report in text and --format json; the outputs must be
#      byte-identical (cmp), but the JSON's "generated_ms" (the time the
#      report ran), which is replaced by 0 first.
#
# Exit 0 only when nothing differs but lines whose metric name is listed in
# env ALLOW_NEW (space or comma separated names of metric families, e.g.
# ALLOW_NEW='shadowtee_client_closes_total'; _bucket/_sum/_count and HELP/TYPE
# lines of such a family are allowed too). Every difference is printed.
#
# Readiness is polled (a port that answers, counters reaching a number),
# never a fixed sleep; every wait has a deadline; loopback only; everything
# started is stopped on exit (trap). Env: PYTHON (default /usr/bin/python3),
# SB_REQUESTS (requests per configuration, default 20), SB_KEEP=1 keeps the
# work directory.
set -euo pipefail

if [ $# -ne 2 ] || [ ! -x "$1/shadowtee" ] || [ ! -x "$2/shadowtee" ]; then
	echo "usage: $0 OLD_BUILD_DIR NEW_BUILD_DIR (each holding shadowtee and shadowtee-report)" >&2
	exit 2
fi
OLD=$(cd "$1" && pwd)
NEW=$(cd "$2" && pwd)
PY=${PYTHON:-/usr/bin/python3}
N=${SB_REQUESTS:-20}
ALLOW=$(echo "${ALLOW_NEW:-}" | tr ',' ' ')
MASK_VALUES="shadowtee_redis_flushes_total shadowtee_active_connections ${MASK_MORE:-}"

WORK=$(mktemp -d /tmp/same-behaviour.XXXXXX)
PIDS=()
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [ "${SB_KEEP:-0}" = 1 ]; then
		echo "work dir kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT PID: until 127.0.0.1:PORT accepts (10 s), failing if PID exits
wait_port() {
	local i
	for ((i = 0; i < 200; i++)); do
		if ! kill -0 "$2" 2>/dev/null; then
			echo "process $2 exited before port $1 answered" >&2
			return 1
		fi
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.05
	done
	echo "port $1 did not answer within 10s" >&2
	return 1
}

# A JSON upstream on a free loopback port (written to $1.port): answers
# {"path": ..., "v": V} where V is $2, or $3 on paths under /div/.
UPSTREAM_PY='
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def answer(self):
        n = int(self.headers.get("content-length") or 0)
        if n: self.rfile.read(n)
        v = sys.argv[3] if self.path.startswith("/div/") else sys.argv[2]
        body = json.dumps({"path": self.path, "v": int(v)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = answer
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(sys.argv[1] + ".tmp", "w") as f: f.write(str(s.server_address[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.serve_forever()
'
# upstream NAME V V_DIV: starts one, sets UP_PORT
upstream() {
	local i
	"$PY" -c "$UPSTREAM_PY" "$WORK/$1.port" "$2" "$3" 2>"$WORK/$1.err" &
	PIDS+=($!)
	for ((i = 0; i < 200; i++)); do
		[ -s "$WORK/$1.port" ] && break
		sleep 0.05
	done
	UP_PORT=$(cat "$WORK/$1.port")
	wait_port "$UP_PORT" "${PIDS[-1]}"
}

# redis NAME: a redis-server on a free port, no persistence; sets REDIS_PORT
redis() {
	REDIS_PORT=$(free_port)
	mkdir -p "$WORK/$1.redis"
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
		--dir "$WORK/$1.redis" >"$WORK/$1.redis.log" 2>&1 &
	PIDS+=($!)
	wait_port "$REDIS_PORT" "${PIDS[-1]}"
}

# proxy BUILD NAME FLAGS...: BUILD/shadowtee on free ports; sets ST_PORT ADMIN_PORT ST_PID
proxy() {
	local build=$1 name=$2
	shift 2
	ST_PORT=$(free_port)
	ADMIN_PORT=$(free_port)
	"$build/shadowtee" --listen "127.0.0.1:$ST_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
		--workers 1 "$@" 2>"$WORK/$name.err" &
	ST_PID=$!
	PIDS+=("$ST_PID")
	wait_port "$ST_PORT" "$ST_PID"
	wait_port "$ADMIN_PORT" "$ST_PID"
}

metrics() {
	curl -sS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics"
}

# sum of the samples of metric $1 whose labels contain $2 (may be empty)
metric_sum() {
	metrics | awk -v m="$1" -v l="$2" '
		$1 == m || index($1, m "{") == 1 { if (l == "" || index($1, l)) s += $2 }
		END { printf "%d\n", s }'
}

# wait_metric NAME LABELS WANT: until the sum reaches WANT (20 s)
wait_metric() {
	local i v=0
	for ((i = 0; i < 400; i++)); do
		v=$(metric_sum "$1" "$2")
		[ "$v" -ge "$3" ] && return 0
		sleep 0.05
	done
	echo "$1{$2} is $v, not $3, after 20s" >&2
	return 1
}

# send KIND: N requests, one after the other, half of them under /div/
send() {
	local i path code
	for ((i = 0; i < N; i++)); do
		if ((i % 2)); then path="/div/$i"; else path="/same/$i"; fi
		if [ "$1" = mesh ]; then
			code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -X POST \
				-H 'Content-Type: application/json' -H "x-request-id: sb-$i" \
				--data "{\"i\": $i}" "http://127.0.0.1:$ST_PORT$path")
		else
			code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 \
				"http://127.0.0.1:$ST_PORT$path")
		fi
		if [ "$code" != 200 ]; then
			echo "request $path answered $code" >&2
			return 1
		fi
		# one mirror at a time: a copy still in flight when the next one
		# leaves would open a second shadow connection, and the connect
		# counters would depend on timing
		if [ "$1" = tee ]; then
			wait_metric shadowtee_shadow_responses_total "" $((i + 1)) || return 1
		fi
	done
}

# mask < metrics: HELP/TYPE lines kept verbatim; the values of volatile
# samples replaced by "<masked>"
mask() {
	awk -v names="$MASK_VALUES" '
		BEGIN { n = split(names, a, " "); for (i = 1; i <= n; i++) vol[a[i]] = 1 }
		/^#/ { print; next }
		{
			name = $1; sub(/\{.*/, "", name)
			base = name; sub(/_(bucket|sum|count)$/, "", base)
			if (base ~ /_seconds$/ || name ~ /_seconds_total$/ || (name in vol)) { $NF = "<masked>" }
			print
		}'
}

# run_config BUILD KIND: starts what KIND needs, sends, waits, writes $WORK/KIND.BUILDTAG.metrics
run_config() {
	local build=$1 kind=$2 tag=$3
	local -a flags
	upstream "$kind.$tag.primary" 1 1
	local primary=$UP_PORT
	case $kind in
	plain)
		flags=(--primary "127.0.0.1:$primary")
		;;
	tee)
		upstream "$kind.$tag.shadow" 1 2
		redis "$kind.$tag"
		flags=(--primary "127.0.0.1:$primary" --shadow "127.0.0.1:$UP_PORT" --compare on
			--mirror-percent 100 --redis "127.0.0.1:$REDIS_PORT" --service sb
			--redis-flush-interval 50ms)
		TEE_REDIS[$tag]=$REDIS_PORT
		;;
	mesh)
		redis "$kind.$tag"
		flags=(--primary "127.0.0.1:$primary" --mirror-mode mesh --mesh-role stable
			--mirror-percent 100 --redis "127.0.0.1:$REDIS_PORT" --service sbmesh
			--redis-flush-interval 50ms)
		;;
	esac
	proxy "$build" "$kind.$tag" "${flags[@]}"
	send "$kind"
	wait_metric shadowtee_requests_total "" "$N"
	case $kind in
	tee)
		wait_metric shadowtee_shadow_responses_total "" "$N"
		wait_metric shadowtee_comparisons_total "" "$N"
		wait_redis_compared "$REDIS_PORT" sb "$N"
		;;
	mesh)
		wait_metric shadowtee_mesh_sampled_total 'role="stable"' "$N"
		wait_redis_zcard "$REDIS_PORT" 'shadowtee:{sbmesh}:mesh:pending' "$N"
		;;
	esac
	metrics >"$WORK/$kind.$tag.metrics"
	kill "$ST_PID"
	wait "$ST_PID" || true
}

# wait_redis_compared PORT SERVICE N: until the comparisons of SERVICE in
# redis (the OLD shadowtee-report's top-level "compared") reach N (20 s)
wait_redis_compared() {
	local i got=0
	for ((i = 0; i < 400; i++)); do
		got=$("$OLD/shadowtee-report" --redis "127.0.0.1:$1" --service "$2" --format json 2>/dev/null |
			"$PY" -c 'import json, sys; print(json.load(sys.stdin).get("compared", 0))' 2>/dev/null || true)
		[ -n "$got" ] && [ "$got" -ge "$3" ] && return 0
		sleep 0.05
	done
	echo "redis holds ${got:-0} comparisons of $2, not $3, after 20s" >&2
	return 1
}

wait_redis_zcard() {
	local i got=0
	for ((i = 0; i < 400; i++)); do
		got=$(redis-cli -h 127.0.0.1 -p "$1" --raw ZCARD "$2" 2>/dev/null || true)
		[ -n "$got" ] && [ "$got" -ge "$3" ] && return 0
		sleep 0.05
	done
	echo "redis $2 holds ${got:-0}, not $3, after 20s" >&2
	return 1
}

# allowed LINE: is its metric family in ALLOW_NEW?
allowed() {
	local line=$1 name a
	if [[ $line == "# "* ]]; then
		name=$(echo "$line" | awk '{print $3}')
	else
		name=${line%%[\{ ]*}
	fi
	for a in $ALLOW; do
		case $name in
		"$a" | "${a}_bucket" | "${a}_sum" | "${a}_count") return 0 ;;
		esac
	done
	return 1
}

declare -A TEE_REDIS
FAIL=0
for kind in plain tee mesh; do
	run_config "$OLD" "$kind" old
	run_config "$NEW" "$kind" new
	mask <"$WORK/$kind.old.metrics" >"$WORK/$kind.old.masked"
	mask <"$WORK/$kind.new.metrics" >"$WORK/$kind.new.masked"
	if diff -u "$WORK/$kind.old.masked" "$WORK/$kind.new.masked" >"$WORK/$kind.diff"; then
		echo "metrics $kind: identical ($(wc -l <"$WORK/$kind.old.masked") lines)"
		continue
	fi
	bad=0
	while IFS= read -r line; do
		case $line in
		"---"* | "+++"* | "@@"* | " "*) continue ;;
		esac
		if allowed "${line:1}"; then
			echo "  allowed: $line"
		else
			echo "  DIFFERS: $line"
			bad=1
		fi
	done <"$WORK/$kind.diff"
	if [ "$bad" = 1 ]; then
		echo "metrics $kind: DIFFERENT"
		FAIL=1
	else
		echo "metrics $kind: identical apart from ALLOW_NEW families"
	fi
done

# (b) the reports on the redis the OLD build's tee run filled
rp=${TEE_REDIS[old]}
for fmt in text json; do
	for tag in old new; do
		build=$OLD
		[ "$tag" = new ] && build=$NEW
		rc=0
		"$build/shadowtee-report" --redis "127.0.0.1:$rp" --service sb --format "$fmt" \
			>"$WORK/report.$fmt.$tag" 2>"$WORK/report.$fmt.$tag.err" || rc=$?
		echo "exit $rc" >>"$WORK/report.$fmt.$tag"
		sed -i 's/^\(  "generated_ms": \)[0-9]*,$/\10,/' "$WORK/report.$fmt.$tag"
	done
	if cmp "$WORK/report.$fmt.old" "$WORK/report.$fmt.new"; then
		echo "report $fmt: identical ($(wc -c <"$WORK/report.$fmt.old") bytes)"
	else
		diff -u "$WORK/report.$fmt.old" "$WORK/report.$fmt.new" || true
		echo "report $fmt: DIFFERENT"
		FAIL=1
	fi
done
if ! grep -q '"diverged": *[1-9]' "$WORK/report.json.old"; then
	echo "report json: no divergence recorded: the fill did not work" >&2
	FAIL=1
fi

if [ "$FAIL" = 0 ]; then
	echo "same behaviour: OK"
else
	echo "same behaviour: DIFFERENT"
fi
exit "$FAIL"
