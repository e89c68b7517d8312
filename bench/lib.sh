# shellcheck shell=bash disable=SC2034,SC2153
# (SC2034: variables read by run.sh; SC2153: BENCH_OUT is set by run.sh)
# Helpers for bench/run.sh and bench/callgrind.sh: processes, readiness, nginx instances, wrk runs
# and CPU accounting. Sourced, never run. Everything binds 127.0.0.1.
#
# State shared with run.sh (set by run.sh before use):
#   BENCH_WORK      scratch dir (nginx prefixes, logs), removed at exit
#   BENCH_OUT       results dir of this run (wrk outputs, results.tsv)
#   BENCH_SECS      measured seconds per wrk run; BENCH_WARMUP_SECS warm-up
#   BENCH_PIDS      every process started, stopped by bench_stop_all
#   BENCH_LAST_PID  pid of the process bench_start started last

BENCH_ROOT=${BENCH_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
BENCH_PY=/usr/bin/python3
BENCH_PIDS=()
BENCH_LAST_PID=
BENCH_FAIL_REASON=
BENCH_WRK_EXTRA=() # extra wrk arguments of bench_measure (e.g. -s script.lua), set by a section
BENCH_CPU_EXTRA=() # bench_measure: more process trees whose CPU is added to PROXY_PID's (mesh: the shadow sidecar)
BENCH_SNAPSHOT=    # bench_measure: a function called as "FN 0 LABEL" / "FN 1 LABEL" right before / after the measured run

bench_log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
bench_die() { bench_log "error: $*"; exit 1; }

# Prints N distinct free loopback ports, one per line. All N sockets are
# held at once while picking, so the ports differ from each other.
bench_free_ports() {
    "$BENCH_PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# bench_ports_init N: picks N distinct free ports once; next_port then sets
# NEXT_PORT to the next unused one.
bench_ports_init() {
    mapfile -t BENCH_PORTS < <(bench_free_ports "$1")
}
next_port() {
    [ ${#BENCH_PORTS[@]} -gt 0 ] || bench_die "ran out of pre-picked free ports (raise bench_ports_init's count)"
    NEXT_PORT=${BENCH_PORTS[0]}
    BENCH_PORTS=("${BENCH_PORTS[@]:1}")
}

# bench_cleanup: the EXIT trap of run.sh and callgrind.sh. Stops every process
# started, keeps the non-empty logs of BENCH_WORK in BENCH_OUT/logs, removes
# BENCH_WORK, and exits with the script's status.
bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    bench_stop_all
    find "$BENCH_WORK" -name '*.log' -size +0 | while read -r f; do
        cp "$f" "$BENCH_OUT/logs/$(echo "${f#"$BENCH_WORK"/}" | tr / _)"
    done
    rm -rf "$BENCH_WORK"
    exit "$rc"
}

# bench_alive PID: 0 while the process exists (and is not a zombie).
bench_alive() {
    local state
    [ -r "/proc/$1/stat" ] || return 1
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ]
}

# bench_wait_port PORT PID [TIMEOUT_S]: polls until a TCP connect to
# 127.0.0.1:PORT succeeds; fails when PID exits first or on timeout.
bench_wait_port() {
    local port=$1 pid=$2 deadline=$((SECONDS + ${3:-15}))
    while [ "$SECONDS" -lt "$deadline" ]; do
        bench_alive "$pid" || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

# bench_wait_http URL PID [TIMEOUT_S]: polls until URL answers 200.
bench_wait_http() {
    local url=$1 pid=$2 deadline=$((SECONDS + ${3:-15}))
    while [ "$SECONDS" -lt "$deadline" ]; do
        bench_alive "$pid" || return 1
        if curl -fsS -o /dev/null -m 1 "$url" 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

# bench_start NAME CMD...: starts CMD in the background, stdout+stderr to
# $BENCH_WORK/NAME.log; sets BENCH_LAST_PID and remembers the pid.
bench_start() {
    local name=$1
    shift
    "$@" </dev/null >"$BENCH_WORK/$name.log" 2>&1 &
    BENCH_LAST_PID=$!
    BENCH_PIDS+=("$BENCH_LAST_PID")
}

# bench_stop PID: SIGTERM, up to 5 s to exit, then SIGKILL. Only ever
# signals the pid it is given (nginx workers follow their master).
bench_stop() {
    local pid=$1 i
    [ -n "$pid" ] || return 0
    bench_alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        bench_alive "$pid" || break
        sleep 0.05
    done
    if bench_alive "$pid"; then
        bench_log "pid $pid ignored SIGTERM for 5 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Stops every process started with bench_start, newest first.
bench_stop_all() {
    local i
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        bench_stop "${BENCH_PIDS[$i]}"
    done
    BENCH_PIDS=()
}

# bench_render TEMPLATE OUT KEY=VALUE...: copies TEMPLATE to OUT with every
# @KEY@ replaced by VALUE (values must not contain '|', '&', '\\' or newlines).
bench_render() {
    local tpl=$1 out=$2 kv args=()
    shift 2
    for kv in "$@"; do
        args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
    done
    sed "${args[@]}" "$tpl" >"$out"
    if grep -q '@[A-Z_]*@' "$out"; then
        bench_die "unrendered placeholder in $out: $(grep -o '@[A-Z_]*@' "$out" | head -1)"
    fi
}

# bench_nginx NAME TEMPLATE CPUS PORT KEY=VALUE...: runs nginx in the
# foreground (daemon off) with its own prefix $BENCH_WORK/NAME, pinned with
# taskset to CPUS unless CPUS is "-", and waits until PORT answers HTTP.
# Sets BENCH_LAST_PID (the master; workers are its children).
bench_nginx() {
    local name=$1 tpl=$2 cpus=$3 port=$4 prefix
    shift 4
    prefix=$BENCH_WORK/$name
    mkdir -p "$prefix/tmp"
    bench_render "$BENCH_ROOT/bench/nginx/$tpl" "$prefix/nginx.conf" "PREFIX=$prefix" "PORT=$port" "$@"
    local cmd=(nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" -g 'daemon off;')
    [ "$cpus" = - ] || cmd=(taskset -c "$cpus" "${cmd[@]}")
    bench_start "$name" "${cmd[@]}"
    bench_wait_http "http://127.0.0.1:$port/" "$BENCH_LAST_PID" ||
        bench_die "nginx $name did not come up: $(tail -n 3 "$prefix/error.log" "$BENCH_WORK/$name.log" 2>/dev/null)"
}

# bench_shadowtee NAME BIN CPUS PORT ADMIN_PORT ARGS...: starts shadowtee and
# waits for GET /readyz == 200. Returns 1 (with BENCH_FAIL_REASON) when it
# exits or is not ready in 20 s; the process is then stopped.
bench_shadowtee() {
    local name=$1 bin=$2 cpus=$3 port=$4 admin=$5
    shift 5
    local cmd=("$bin" --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" "$@")
    [ "$cpus" = - ] || cmd=(taskset -c "$cpus" "${cmd[@]}")
    bench_start "$name" "${cmd[@]}"
    if bench_wait_http "http://127.0.0.1:$admin/readyz" "$BENCH_LAST_PID" 20 &&
        bench_wait_port "$port" "$BENCH_LAST_PID" 5; then
        return 0
    fi
    BENCH_FAIL_REASON="shadowtee ($*) not ready: $(tail -n 2 "$BENCH_WORK/$name.log" | tr '\n' ' ')"
    bench_stop "$BENCH_LAST_PID"
    return 1
}

# Prints PID and all its descendants, one per line.
bench_pid_tree() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1 }
        END {
            queue[0] = root; n = 1
            for (i = 0; i < n; i++) {
                print queue[i]
                m = split(kids[queue[i]], c, " ")
                for (j = 1; j <= m; j++) queue[n++] = c[j]
            }
        }'
}

# Prints "TICKS MINFLT": utime+stime (clock ticks) and minor page faults of
# PID and its descendants, all threads.
bench_cpu_ticks() {
    local total=0 faults=0 p line
    for p in $(bench_pid_tree "$1"); do
        line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        line=${line##*) }
        # after "pid (comm) " field 1 is state: minflt is field 8, utime/stime 12/13
        read -r -a f <<<"$line"
        total=$((total + f[11] + f[12]))
        faults=$((faults + f[7]))
    done
    echo "$total $faults"
}

# bench_cpu_sum PID...: bench_cpu_ticks of each tree, added up ("TICKS MINFLT").
bench_cpu_sum() {
    local total=0 faults=0 p t f
    for p in "$@"; do
        read -r t f <<<"$(bench_cpu_ticks "$p")"
        total=$((total + t))
        faults=$((faults + f))
    done
    echo "$total $faults"
}

# bench_measure SECTION SHAPE TARGET SHADOW CONNS URL PROXY_PID [ADMIN_PORT]
#   Runs a wrk warm-up, then the measured wrk --latency run (pinned with
#   taskset to $BENCH_WRK_CPUS when set, with ${BENCH_WRK_EXTRA[@]}), stores the output under
#   $BENCH_OUT/wrk/ and appends one row to $BENCH_OUT/results.tsv. PROXY_PID
#   ("-" for none) is the process tree whose CPU and minor page faults per
#   request are recorded (with the trees in ${BENCH_CPU_EXTRA[@]} added).
#   With ADMIN_PORT (shadowtee), GET /metrics is saved right before and after
#   the measured run as wrk/LABEL.metrics0 and .metrics1; with BENCH_SNAPSHOT
#   set, that function is called right before and after as well.
bench_measure() {
    local section=$1 shape=$2 target=$3 shadow=$4 conns=$5 url=$6 pid=$7 admin=${8:-}
    local metrics=-
    local threads=1 label file cpu=- faults=- note='' t0 t1 f0 f1 reqs
    [ "$conns" -ge 32 ] && [ -z "$BENCH_WRK_CPUS" ] && threads=2
    local wrk=(timeout -k 5 $((BENCH_SECS + 30)) wrk -t "$threads" -c "$conns" --timeout 2s "${BENCH_WRK_EXTRA[@]}")
    [ -n "$BENCH_WRK_CPUS" ] && wrk=(taskset -c "$BENCH_WRK_CPUS" "${wrk[@]}")
    label="$section-$shape-$target${shadow#-}-c$conns"
    [ "$shadow" = - ] || label="$section-$shape-$target-${shadow//\//-}-c$conns"
    file=$BENCH_OUT/wrk/$label.txt
    bench_log "run $label (${BENCH_WARMUP_SECS}s warm-up + ${BENCH_SECS}s)"
    "${wrk[@]}" -d "${BENCH_WARMUP_SECS}s" "$url" >/dev/null 2>&1 || true
    if [ -n "$admin" ]; then
        metrics=wrk/$label.metrics
        curl -fsS -m 2 -o "$BENCH_OUT/$metrics"0 "http://127.0.0.1:$admin/metrics" 2>/dev/null || true
    fi
    [ -z "$BENCH_SNAPSHOT" ] || "$BENCH_SNAPSHOT" 0 "$label"
    [ "$pid" = - ] || read -r t0 f0 <<<"$(bench_cpu_sum "$pid" "${BENCH_CPU_EXTRA[@]}")"
    "${wrk[@]}" -d "${BENCH_SECS}s" --latency "$url" >"$file" 2>&1 || note="wrk exit $?"
    [ "$pid" = - ] || read -r t1 f1 <<<"$(bench_cpu_sum "$pid" "${BENCH_CPU_EXTRA[@]}")"
    if [ -n "$admin" ]; then
        curl -fsS -m 2 -o "$BENCH_OUT/$metrics"1 "http://127.0.0.1:$admin/metrics" 2>/dev/null || true
    fi
    [ -z "$BENCH_SNAPSHOT" ] || "$BENCH_SNAPSHOT" 1 "$label"
    if [ "$pid" != - ]; then
        reqs=$(awk '/ requests in /{print $1; exit}' "$file")
        if [ -n "$reqs" ] && [ "$reqs" -gt 0 ]; then
            cpu=$(awk -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$reqs" \
                'BEGIN { printf "%.1f", d * 1e6 / hz / n }')
            faults=$(awk -v d=$((f1 - f0)) -v n="$reqs" 'BEGIN { printf "%.2f", d / n }')
        fi
        bench_alive "$pid" || note="${note:+$note; }target process died"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "$shape" "$target" "$shadow" "$conns" \
        "wrk/$label.txt" "$cpu" "$note" "$metrics" "$faults" >>"$BENCH_OUT/results.tsv"
}

# bench_skip SECTION REASON: prints and records "skipped: REASON".
bench_skip() {
    bench_log "$1 skipped: $2"
    printf '%s\t%s\n' "$1" "$2" >>"$BENCH_OUT/skipped.tsv"
}

# bench_note TEXT: a line for the report's notes.
bench_note() { printf '%s\n' "$*" >>"$BENCH_OUT/notes.txt"; }
