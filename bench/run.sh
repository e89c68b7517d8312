#!/usr/bin/env bash
# shadowtee benchmark: one run measures, side by side on this machine,
#   core  the upstream direct, through shadowtee and through nginx (keep-alive
#         reverse proxy), unpinned and in the sidecar shape (proxy + upstream
#         on core 0, wrk on core 1), with proxy CPU microseconds per request;
#   tls   the same upstream over https with keep-alive: shadowtee terminating
#         TLS vs nginx terminating TLS with the same certificate, in both
#         shapes (bench/tls.sh);
#   tee   shadowtee mirroring 100% to a fast, a 200 ms and a blackholed shadow
#         next to nginx + ngx_http_mirror_module to the same shadows;
#   cmp   mirroring with comparison + Redis against mirroring only, and
#         build/cmp_bench when it can be built;
#   payload  realistic inference bodies (~24 KiB and ~200 KiB JSON): no
#         mirroring, 100% mirrored with --compare off and with --compare on
#         (+ Redis) in the same rounds, at a paced load and at saturation;
#   instr instructions per request under callgrind, shadowtee vs nginx, plain
#         proxy and 100% mirroring (bench/callgrind.sh): free of CPU noise;
#   unix  TCP vs Unix-socket upstreams for shadowtee and nginx, a tiny and a
#         ~24 KiB inference JSON, at saturation and at a paced load
#         (bench/unix.sh);
#   mesh  mesh mirroring (nginx's mirror standing in for Envoy, a stable and a
#         shadow sidecar joined through Redis) next to the sidecar tee and to
#         no mirroring, tiny and ~24 KiB bodies, paced and saturated; Redis
#         commands and bytes per compared pair, join latency (bench/mesh.sh).
# See bench/README.md. Options (environment):
#   BENCH_DURATION=10s  measured seconds per wrk run (plain seconds: "8" or "8s")
#   BENCH_WARMUP=1s     wrk warm-up before each measured run
#   BENCH_QUICK=1       3 s runs: a smoke test of the whole script
#   BENCH_ROUNDS=3      core and tee: rounds of BENCH_DURATION/2 per target
#   BENCH_SECTIONS="core tls tee cmp payload unix mesh instr"   which sections to run
#   BENCH_PAYLOAD_ROUNDS=BENCH_ROUNDS  payload: rounds per load and payload
#   BENCH_PAYLOAD_THINK="1 10 10 100"  payload: think ms at c4 and c32 of the
#                                   paced loads, 24 KiB then 200 KiB body
#   BENCH_PAYLOAD_SIZES="24KiB 200KiB", BENCH_PAYLOAD_LOADS="paced saturated",
#   BENCH_PAYLOAD_CONNS="4 32"      payload: a subset of the bodies, loads, conns
#   BENCH_PAYLOAD_KINDS="none off on"  payload: instances measured; "batch"
#                                   adds --compare on with --compare-sched batch,
#                                   "nolimit" --compare on with --compare-cpu 0
#   BENCH_UNIX_ROUNDS=3             unix: rounds per target, payload and load
#   BENCH_UNIX_PACED_CONNS=8, BENCH_UNIX_PACED_DELAY_MS=2   unix: the paced load
#   BENCH_MESH_PERCENT=100, BENCH_MESH_ROUNDS=BENCH_ROUNDS, BENCH_MESH_PACED_CONNS=8,
#   BENCH_MESH_PACED_THINK=10 (ms), BENCH_MESH_ACCT_CONNS=2, BENCH_MESH_ACCT_THINK=10 (ms)
#                                   mesh: sampling, rounds, the paced load, the
#                                   load of the MONITOR accounting runs
#   BENCH_INSTR_DURATION=5s         measured seconds per instr case
#   BENCH_SHADOW_TIMEOUT=1s         shadow connect/response timeout, for
#                                   shadowtee and the nginx mirror leg alike
#   BENCH_COMPARE_RULES=FILE        rules for the cmp case (default: "{}")
#   SHADOWTEE_BUILD=build           where shadowtee and libstcmp.a are
# Output: stdout, bench/results/run-<time>/ (raw wrk output, logs) and
# bench/results/latest.md (the final table).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BENCH_ROOT=$ROOT
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/tls.sh
source "$ROOT/bench/tls.sh"
# shellcheck source=bench/unix.sh
source "$ROOT/bench/unix.sh"
# shellcheck source=bench/mesh.sh
source "$ROOT/bench/mesh.sh"

secs_of() {
    local v=${1%s}
    [[ $v =~ ^[1-9][0-9]*$ ]] || bench_die "$2 must be whole seconds like 8 or 8s, got '$1'"
    echo "$v"
}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    BENCH_SECS=3
    BENCH_WARMUP_SECS=1
else
    BENCH_SECS=$(secs_of "${BENCH_DURATION:-10s}" BENCH_DURATION)
    BENCH_WARMUP_SECS=$(secs_of "${BENCH_WARMUP:-1s}" BENCH_WARMUP)
fi
SECTIONS=" ${BENCH_SECTIONS:-core tls tee cmp payload unix mesh instr} "
SHADOW_TIMEOUT=${BENCH_SHADOW_TIMEOUT:-1s}
[[ $SHADOW_TIMEOUT =~ ^[1-9][0-9]*(ms|s)$ ]] || bench_die "BENCH_SHADOW_TIMEOUT must look like 1s or 500ms"
# Every shadowtee run: quiet logs, and a short drain so stopping it is quick.
ST_COMMON=(--log-level warn --drain-timeout 1s)
BUILD=${SHADOWTEE_BUILD:-$ROOT/build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
ST_BUILT=$BUILD/shadowtee
BODY='{"id":42,"model":"bench","scores":[0.12,0.34,0.54],"ok":true}'
ECHO_MODULE=/usr/lib/nginx/modules/ngx_http_echo_module.so
BENCH_WRK_CPUS=

for tool in wrk nginx taskset curl ps awk; do
    command -v "$tool" >/dev/null || bench_die "$tool is missing (bash scripts/deps.sh installs it)"
done
[ -x "$BENCH_PY" ] || bench_die "$BENCH_PY is missing"
[ "$(nproc)" -ge 2 ] || bench_die "needs 2 cores for the pinned shape, have $(nproc)"

BENCH_WORK=$(mktemp -d /tmp/shadowtee-bench.XXXXXX)
chmod 755 "$BENCH_WORK" # nginx workers may run as nobody
BENCH_OUT=$ROOT/bench/results/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$BENCH_OUT/wrk" "$BENCH_OUT/logs"
: >"$BENCH_OUT/results.tsv"
: >"$BENCH_OUT/skipped.tsv"
: >"$BENCH_OUT/notes.txt"

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# Ports are picked once, all distinct (about 45 are used).
bench_ports_init 96

bench_note "duration ${BENCH_SECS}s per run after ${BENCH_WARMUP_SECS}s warm-up; $(nproc) cores ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)); $(nginx -v 2>&1 | sed 's/.*: //'); wrk $(wrk -v 2>&1 | awk 'NR==1{print $2}')"
bench_note "upstream: nginx return 200 with a ${#BODY}-byte JSON body; all servers on 127.0.0.1, keep-alive"
# Other work on the machine moves req/s far more than anything measured here:
# the load average before and after tells a reader how quiet the run was.
bench_note "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min; $(nproc) cores)"

ST_OK=0
ST=$BENCH_WORK/bin/shadowtee
if [ -x "$ST_BUILT" ]; then
    ST_OK=1
    # A private copy: the build dir may be rebuilt while this runs, and every
    # section (instr too) measures the same bytes.
    mkdir -p "$BENCH_WORK/bin"
    cp "$ST_BUILT" "$ST"
    st_from="commit $(git -C "$ROOT" log -1 --format=%h 2>/dev/null || echo '?')"
    st_dirty=$(git -C "$ROOT" status --porcelain -- proxy include comparator 2>/dev/null | wc -l)
    [ "$st_dirty" = 0 ] || st_from="$st_from + $st_dirty uncommitted files in proxy/ include/ comparator/"
    st_last=$(git -C "$ROOT" log -1 --format=%ct -- proxy include comparator 2>/dev/null || echo 0)
    if [ "$(stat -c %Y "$ST_BUILT")" -lt "${st_last:-0}" ]; then
        st_from="$st_from; the binary is older than the last commit to proxy/ include/ comparator/ (run make)"
    fi
    bench_note "shadowtee: copy of $ST_BUILT (built $(date -u -r "$ST_BUILT" +%H:%M:%SZ), sha256 $(sha256sum "$ST" | cut -c1-12)); tree at $st_from; last proxy/ commit $(git -C "$ROOT" log -1 --format='%h %cd' --date=short -- proxy 2>/dev/null || echo '?')"
else
    ST_WHY="$ST_BUILT is not built (make)"
fi

# Rounds: core and tee measure the targets they compare back to back, in
# BENCH_ROUNDS rounds of half BENCH_SECS each (rounded up), the order changed
# every round, so slow changes in the machine's load (other tenants, other
# jobs) hit every target alike; report.py takes the median of each target's
# rounds and of the per-round ratios.
ROUNDS=${BENCH_ROUNDS:-3}
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || bench_die "BENCH_ROUNDS must be 1 to 99, got '$ROUNDS'"
ROUND_SECS=$(((BENCH_SECS + 1) / 2))
bench_note "core and tee: $ROUNDS rounds of ${ROUND_SECS}s (+${BENCH_WARMUP_SECS}s warm-up) per target and connection count, the targets back to back in each round, the order changed every round; a row gives the median of its rounds, a ratio the median of the per-round ratios"

# -------------------------------------------------------------- core ----
# core_shape SHAPE PROXY_CPUS WRK_CPUS WORKERS: the upstream direct, through
# shadowtee and through nginx, at c32 and c4, in ROUNDS rounds each.
core_shape() {
    local shape=$1 cpus=$2 wrk_cpus=$3 workers=$4
    local up_port st_port st_admin ng_port up_pid st_pid=- ng_pid c
    next_port; up_port=$NEXT_PORT
    next_port; st_port=$NEXT_PORT
    next_port; st_admin=$NEXT_PORT
    next_port; ng_port=$NEXT_PORT
    BENCH_WRK_CPUS=$wrk_cpus
    bench_nginx "core-$shape-upstream" upstream.conf "$cpus" "$up_port" "WORKERS=$workers" "BODY=$BODY"
    up_pid=$BENCH_LAST_PID
    if [ "$ST_OK" = 1 ]; then
        if bench_shadowtee "core-$shape-shadowtee" "$ST" "$cpus" "$st_port" "$st_admin" \
            --primary "127.0.0.1:$up_port" --workers "$workers" "${ST_COMMON[@]}"; then
            st_pid=$BENCH_LAST_PID
        else
            bench_skip "core/$shape/shadowtee" "$BENCH_FAIL_REASON"
        fi
    else
        bench_skip "core/$shape/shadowtee" "$ST_WHY"
    fi
    bench_nginx "core-$shape-nginx" proxy.conf "$cpus" "$ng_port" "WORKERS=$workers" "UPSTREAM_PORT=$up_port"
    ng_pid=$BENCH_LAST_PID
    local BENCH_SECS=$ROUND_SECS r t order # BENCH_SECS is read by bench_measure
    for c in 32 4; do
        for ((r = 1; r <= ROUNDS; r++)); do
            order=(direct shadowtee nginx)
            [ $((r % 2)) = 1 ] || order=(nginx shadowtee direct)
            for t in "${order[@]}"; do
                case $t in
                direct) bench_measure core "$shape" direct "r$r" "$c" "http://127.0.0.1:$up_port/" - ;;
                shadowtee)
                    [ "$st_pid" = - ] ||
                        bench_measure core "$shape" shadowtee "r$r" "$c" "http://127.0.0.1:$st_port/" "$st_pid"
                    ;;
                nginx) bench_measure core "$shape" nginx "r$r" "$c" "http://127.0.0.1:$ng_port/" "$ng_pid" ;;
                esac
            done
        done
    done
    bench_stop "$ng_pid"
    [ "$st_pid" = - ] || bench_stop "$st_pid"
    bench_stop "$up_pid"
    BENCH_WRK_CPUS=
}

if [[ $SECTIONS == *" core "* ]]; then
    core_shape unpinned - "" 2
    core_shape sidecar 0 1 1
fi

# --------------------------------------------------------------- tls ----
if [[ $SECTIONS == *" tls "* ]]; then
    tls_section
fi

# -------------------------------------------------------------- unix ----
if [[ $SECTIONS == *" unix "* ]]; then
    unix_section
fi

# --------------------------------------------------------- tee + cmp ----
# Shared by tee and cmp: one upstream and three shadows, all unpinned.
TEE_UP=
TEE_FAST=
declare -A SHADOW_PORT=()
tee_env_start() {
    next_port; TEE_UP=$NEXT_PORT
    bench_nginx tee-upstream upstream.conf - "$TEE_UP" WORKERS=2 "BODY=$BODY"
    next_port; TEE_FAST=$NEXT_PORT
    SHADOW_PORT[fast]=$TEE_FAST
    bench_nginx tee-shadow-fast upstream.conf - "$TEE_FAST" WORKERS=2 "BODY=$BODY"
    next_port; SHADOW_PORT[slow]=$NEXT_PORT
    if [ -r "$ECHO_MODULE" ]; then
        bench_nginx tee-shadow-slow shadow_delay.conf - "${SHADOW_PORT[slow]}" \
            "ECHO_MODULE=$ECHO_MODULE" DELAY=0.2 "BODY=$BODY"
        bench_note "slow shadow: nginx echo_sleep 0.2 (timer, keep-alive)"
    else
        bench_start tee-shadow-slow "$BENCH_PY" "$ROOT/bench/shadows.py" delay "${SHADOW_PORT[slow]}" --delay-ms 200
        bench_wait_http "http://127.0.0.1:${SHADOW_PORT[slow]}/" "$BENCH_LAST_PID" ||
            bench_die "slow shadow did not start: $(tail -n 3 "$BENCH_WORK/tee-shadow-slow.log")"
        bench_note "slow shadow: bench/shadows.py delay 200 ms (asyncio; no nginx echo module)"
    fi
    next_port; SHADOW_PORT[blackhole]=$NEXT_PORT
    bench_start tee-shadow-blackhole "$BENCH_PY" "$ROOT/bench/shadows.py" blackhole "${SHADOW_PORT[blackhole]}"
    bench_wait_port "${SHADOW_PORT[blackhole]}" "$BENCH_LAST_PID" ||
        bench_die "blackhole did not start: $(tail -n 3 "$BENCH_WORK/tee-shadow-blackhole.log")"
    bench_note "blackhole shadow: bench/shadows.py blackhole (accepts, reads, never answers)"
}

# st_case SECTION SHADOW CONNS... -- SHADOWTEE_ARGS...: one shadowtee
# instance measured at each CONNS, then stopped.
st_case() {
    local section=$1 shadow=$2 conns=() c port admin
    shift 2
    while [ "$1" != -- ]; do conns+=("$1"); shift; done
    shift
    next_port; port=$NEXT_PORT
    next_port; admin=$NEXT_PORT
    if ! bench_shadowtee "$section-shadowtee-$shadow" "$ST" - "$port" "$admin" \
        --primary "127.0.0.1:$TEE_UP" --workers 2 "${ST_COMMON[@]}" "$@"; then
        bench_skip "$section/shadowtee/$shadow" "$BENCH_FAIL_REASON"
        return 1
    fi
    local pid=$BENCH_LAST_PID
    for c in "${conns[@]}"; do
        bench_measure "$section" unpinned shadowtee "$shadow" "$c" "http://127.0.0.1:$port/" "$pid" "$admin"
    done
    bench_stop "$pid"
}

# tee_rounds: shadowtee without mirroring, a twin of it (the same flags: an
# A/A pair whose p99 ratio is the run's noise floor), and mirroring 100% to
# each shadow, five instances up at once (an idle one costs nothing),
# measured back to back in ROUNDS rounds per connection count with the order
# rotated every round, so each client p99 with a shadow is paired with the
# p99 without one from the same minute. Rows "KIND/rN".
tee_rounds() {
    local kinds=(none twin fast slow blackhole) kind c r i port admin args
    local -A port_of=() pid_of=() admin_of=()
    for kind in "${kinds[@]}"; do
        next_port; port=$NEXT_PORT
        next_port; admin=$NEXT_PORT
        args=()
        [ "$kind" = none ] || [ "$kind" = twin ] || args=(--shadow "127.0.0.1:${SHADOW_PORT[$kind]}" --mirror-percent 100
            --compare off --shadow-timeout "$SHADOW_TIMEOUT" --shadow-connect-timeout "$SHADOW_TIMEOUT")
        if bench_shadowtee "tee-shadowtee-$kind" "$ST" - "$port" "$admin" \
            --primary "127.0.0.1:$TEE_UP" --workers 2 "${ST_COMMON[@]}" "${args[@]}"; then
            port_of[$kind]=$port
            admin_of[$kind]=$admin
            pid_of[$kind]=$BENCH_LAST_PID
        else
            bench_skip "tee/shadowtee/$kind" "$BENCH_FAIL_REASON"
        fi
    done
    local BENCH_SECS=$ROUND_SECS # read by bench_measure
    for c in 32 4; do
        for ((r = 1; r <= ROUNDS; r++)); do
            for ((i = 0; i < ${#kinds[@]}; i++)); do
                kind=${kinds[$(((i + r - 1) % ${#kinds[@]}))]}
                [ -n "${pid_of[$kind]:-}" ] || continue
                bench_measure tee unpinned shadowtee "$kind/r$r" "$c" "http://127.0.0.1:${port_of[$kind]}/" \
                    "${pid_of[$kind]}" "${admin_of[$kind]}"
            done
        done
    done
    for kind in "${kinds[@]}"; do
        [ -z "${pid_of[$kind]:-}" ] || bench_stop "${pid_of[$kind]}"
    done
}

ng_mirror_case() {
    local shadow=$1 port c
    next_port; port=$NEXT_PORT
    bench_nginx "tee-nginx-mirror-$shadow" proxy_mirror.conf - "$port" WORKERS=2 \
        "UPSTREAM_PORT=$TEE_UP" "SHADOW_PORT=${SHADOW_PORT[$shadow]}" "MIRROR_TIMEOUT=$SHADOW_TIMEOUT"
    local pid=$BENCH_LAST_PID
    for c in 32 4; do
        bench_measure tee unpinned nginx-mirror "$shadow" "$c" "http://127.0.0.1:$port/" "$pid"
    done
    bench_stop "$pid"
}

if [[ $SECTIONS == *" tee "* || $SECTIONS == *" cmp "* ]]; then
    tee_env_start
fi

if [[ $SECTIONS == *" tee "* ]]; then
    bench_note "shadow timeouts: $SHADOW_TIMEOUT connect and response, shadowtee (--shadow-timeout) and nginx (proxy_*_timeout) alike; tee runs use shadowtee --compare off (mirroring only, like nginx)"
    if [ "$ST_OK" = 1 ]; then
        tee_rounds
    else
        bench_skip "tee/shadowtee" "$ST_WHY"
    fi
    for shadow in fast slow blackhole; do
        ng_mirror_case "$shadow"
    done
fi

cmp_redis() {
    local exe port pid rules
    exe=$(command -v redis-server) || { bench_skip cmp/redis "redis-server is missing"; return 0; }
    next_port; port=$NEXT_PORT
    mkdir -p "$BENCH_WORK/redis"
    bench_start cmp-redis "$exe" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$BENCH_WORK/redis"
    pid=$BENCH_LAST_PID
    bench_wait_port "$port" "$pid" || { bench_skip cmp/redis "redis-server did not start"; return 0; }
    rules=${BENCH_COMPARE_RULES:-$BENCH_WORK/compare-rules.json}
    [ -n "${BENCH_COMPARE_RULES:-}" ] || echo '{}' >"$rules"
    local mirror=(--shadow "127.0.0.1:$TEE_FAST" --mirror-percent 100)
    st_case cmp mirror 32 -- "${mirror[@]}" --compare off || true
    st_case cmp compare 32 -- "${mirror[@]}" --compare on --compare-rules "$rules" || true
    if st_case cmp redis 32 -- "${mirror[@]}" --compare on --compare-rules "$rules" \
        --redis "127.0.0.1:$port" --service bench; then
        local keys
        keys=$(redis-cli -p "$port" --scan --pattern 'shadowtee:*' 2>/dev/null | wc -l || echo '?')
        bench_note "cmp: Redis held $keys shadowtee:* keys after the compare run"
    fi
    bench_stop "$pid"
}

cmp_microbench() {
    local src=$ROOT/bench/cmp_bench.c bin=$BUILD/cmp_bench
    if [ ! -f "$src" ]; then bench_skip cmp_bench "bench/cmp_bench.c is not there yet"; return 0; fi
    # links the engine and the reference engine it is compared with
    if ! make -C "$ROOT" -f build.mk --no-print-directory BUILD="$BUILD" "$bin" \
        >"$BENCH_OUT/logs/cmp_bench-build.log" 2>&1; then
        bench_skip cmp_bench "build failed: $(head -n 2 "$BENCH_OUT/logs/cmp_bench-build.log" | tr '\n' ' ')"
        return 0
    fi
    bench_log "run cmp_bench"
    local rc=0
    timeout -k 5 300 "$bin" >"$BENCH_OUT/cmp_bench.txt" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        bench_skip cmp_bench "cmp_bench failed (exit $rc): $(tail -n 2 "$BENCH_OUT/cmp_bench.txt" | tr '\n' ' ')"
    fi
}

if [[ $SECTIONS == *" cmp "* ]]; then
    if [ "$ST_OK" = 1 ]; then cmp_redis; else bench_skip "cmp/redis" "$ST_WHY"; fi
    cmp_microbench
fi

# ----------------------------------------------------------- payload ----
# payload_wait_idle ADMIN: waits (at most 15 s) until the comparator queue of
# the shadowtee at ADMIN is empty, so a backlog left by one measured run does
# not spill into the next target's run.
payload_wait_idle() {
    local admin=$1 i n
    for ((i = 0; i < 300; i++)); do
        n=$(curl -fsS -m 2 "http://127.0.0.1:$admin/metrics" 2>/dev/null |
            awk '$1 == "shadowtee_compare_queue_length" {print $2}')
        [ "${n:-0}" != 0 ] || return 0
        sleep 0.05
    done
    bench_log "comparator queue at $admin not empty after 15 s"
}

# payload_section: the ~24 KiB and ~200 KiB prediction documents of
# bench/payload.py from two nginx (primary, shadow: one top-level field
# differs), through three shadowtee instances up together: no mirroring,
# 100% mirrored --compare off, 100% mirrored --compare on with Redis. Each
# load (paced c4 and c32 with a think time, saturated c4 and c32) is
# measured in PAYLOAD_ROUNDS rounds with the three back to back, the order
# rotated every round. Rows: section payload, shape paced|saturated,
# target 24KiB|200KiB, shadow KIND/rN.
payload_section() {
    local dir=$BENCH_WORK/payload up sh rport rpid exe out
    out=$("$BENCH_PY" "$ROOT/bench/payload.py" "$dir") || { bench_skip payload "bench/payload.py failed"; return 0; }
    bench_note "payload: $(echo "$out" | tr '\n' ' ')(bench/payload.py: 320 and 2,700 predictions {label, id, class_scores[3]}; the shadow's differs in one top-level field)"
    exe=$(command -v redis-server) || { bench_skip payload "redis-server is missing"; return 0; }
    next_port; up=$NEXT_PORT
    bench_nginx payload-primary static.conf - "$up" WORKERS=2 "ROOT=$dir/primary"
    next_port; sh=$NEXT_PORT
    bench_nginx payload-shadow static.conf - "$sh" WORKERS=2 "ROOT=$dir/shadow"
    next_port; rport=$NEXT_PORT
    mkdir -p "$BENCH_WORK/payload-redis"
    bench_start payload-redis "$exe" --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$BENCH_WORK/payload-redis"
    rpid=$BENCH_LAST_PID
    bench_wait_port "$rport" "$rpid" || { bench_skip payload "redis-server did not start"; return 0; }
    local think=() t
    read -r -a think <<<"${BENCH_PAYLOAD_THINK:-1 10 10 100}"
    [ ${#think[@]} = 4 ] || bench_die "BENCH_PAYLOAD_THINK needs 4 numbers (c4 and c32, small then big body)"
    for t in "${think[@]}"; do
        [[ $t =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_PAYLOAD_THINK: '$t' is not a whole number of ms"
    done
    local rounds=${BENCH_PAYLOAD_ROUNDS:-$ROUNDS}
    [[ $rounds =~ ^[1-9][0-9]?$ ]] || bench_die "BENCH_PAYLOAD_ROUNDS must be 1 to 99, got '$rounds'"
    local workers=${BENCH_PAYLOAD_WORKERS:-1}
    bench_note "payload: shadowtee --workers $workers --compare-threads 1 (defaults: --compare-queue 256, --compare-queue-bytes 32M, --compare-cpu 0.5, --compare-sched idle; batch: --compare-sched batch --compare-nice 10; nolimit: --compare-cpu 0); primary and shadow nginx (2 workers each) serve the files with sendfile; $rounds rounds of ${ROUND_SECS}s (+${BENCH_WARMUP_SECS}s warm-up) per load, the three instances back to back in each round, the order rotated; paced = wrk -s with a delay() think time of ${think[0]} ms at c4 and ${think[1]} ms at c32 for the 24 KiB body, ${think[2]} and ${think[3]} ms for the 200 KiB one (about the same compared MB/s)"
    local kinds=() kind payload file load c r i idx port admin
    read -r -a kinds <<<"${BENCH_PAYLOAD_KINDS:-none off on}"
    for kind in "${kinds[@]}"; do
        case $kind in none | off | on | batch | nolimit) ;; *) bench_die "BENCH_PAYLOAD_KINDS: unknown kind '$kind'" ;; esac
    done
    local BENCH_SECS=$ROUND_SECS # read by bench_measure
    local sizes=() loads=() conns=()
    read -r -a sizes <<<"${BENCH_PAYLOAD_SIZES:-24KiB 200KiB}"
    read -r -a loads <<<"${BENCH_PAYLOAD_LOADS:-paced saturated}"
    read -r -a conns <<<"${BENCH_PAYLOAD_CONNS:-4 32}"
    for payload in "${sizes[@]}"; do
        case $payload in 24KiB | 200KiB) ;; *) bench_die "BENCH_PAYLOAD_SIZES: unknown body '$payload'" ;; esac
    done
    for load in "${loads[@]}"; do
        case $load in paced | saturated) ;; *) bench_die "BENCH_PAYLOAD_LOADS: unknown load '$load'" ;; esac
    done
    for c in "${conns[@]}"; do
        case $c in 4 | 32) ;; *) bench_die "BENCH_PAYLOAD_CONNS: only 4 and 32, got '$c'" ;; esac
    done
    for payload in "${sizes[@]}"; do
        file=small.json
        idx=0
        [ "$payload" = 24KiB ] || { file=big.json; idx=2; }
        local -A port_of=() pid_of=() admin_of=()
        for kind in "${kinds[@]}"; do
            next_port; port=$NEXT_PORT
            next_port; admin=$NEXT_PORT
            local args=()
            case $kind in
            off) args=(--shadow "127.0.0.1:$sh" --mirror-percent 100 --compare off) ;;
            on | batch | nolimit) args=(--shadow "127.0.0.1:$sh" --mirror-percent 100 --compare on
                --redis "127.0.0.1:$rport" --service "bench-$payload-$kind") ;;
            esac
            case $kind in
            on) args+=(--compare-sched idle) ;;
            batch) args+=(--compare-sched batch --compare-nice 10) ;;
            nolimit) args+=(--compare-cpu 0) ;;
            esac
            if bench_shadowtee "payload-$payload-$kind" "$ST" - "$port" "$admin" \
                --primary "127.0.0.1:$up" --workers "$workers" --compare-threads 1 "${ST_COMMON[@]}" "${args[@]}"; then
                port_of[$kind]=$port
                admin_of[$kind]=$admin
                pid_of[$kind]=$BENCH_LAST_PID
            else
                bench_skip "payload/$payload/$kind" "$BENCH_FAIL_REASON"
            fi
        done
        for load in "${loads[@]}"; do
            for c in "${conns[@]}"; do
                BENCH_WRK_EXTRA=()
                if [ "$load" = paced ]; then
                    t=${think[$idx]}
                    [ "$c" = 4 ] || t=${think[$((idx + 1))]}
                    # wrk calls delay() after each response: the connection's think time
                    printf 'function delay()\n    return %d\nend\n' "$t" >"$BENCH_WORK/paced-$t.lua"
                    BENCH_WRK_EXTRA=(-s "$BENCH_WORK/paced-$t.lua")
                fi
                for ((r = 1; r <= rounds; r++)); do
                    for ((i = 0; i < ${#kinds[@]}; i++)); do
                        kind=${kinds[$(((i + r - 1) % ${#kinds[@]}))]}
                        [ -n "${pid_of[$kind]:-}" ] || continue
                        bench_measure payload "$load" "$payload" "$kind/r$r" "$c" \
                            "http://127.0.0.1:${port_of[$kind]}/$file" "${pid_of[$kind]}" "${admin_of[$kind]}"
                        case $kind in on | batch | nolimit) payload_wait_idle "${admin_of[$kind]}" ;; esac
                    done
                done
            done
        done
        BENCH_WRK_EXTRA=()
        for kind in "${kinds[@]}"; do
            [ -z "${pid_of[$kind]:-}" ] || bench_stop "${pid_of[$kind]}"
        done
        unset port_of pid_of admin_of
    done
    bench_stop "$rpid"
}

if [[ $SECTIONS == *" payload "* ]]; then
    if [ "$ST_OK" = 1 ]; then payload_section; else bench_skip payload "$ST_WHY"; fi
fi

# -------------------------------------------------------------- mesh ----
if [[ $SECTIONS == *" mesh "* ]]; then
    mesh_section
fi

bench_stop_all

# ------------------------------------------------------------- instr ----
# bench/callgrind.sh starts its own upstream, shadow and Redis (the servers
# above are stopped by now) and writes $BENCH_OUT/instr/, which report.py
# turns into the instr table.
if [[ $SECTIONS == *" instr "* ]]; then
    if [ "$ST_OK" != 1 ]; then
        bench_skip instr "$ST_WHY"
    elif ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
        bench_skip instr "valgrind is missing (bash scripts/deps.sh installs it)"
    else
        rc=0
        SHADOWTEE_BUILD=$BENCH_WORK/bin timeout -k 10 600 bash "$ROOT/bench/callgrind.sh" "$BENCH_OUT/instr" >/dev/null || rc=$?
        [ "$rc" = 0 ] || bench_skip instr "bench/callgrind.sh failed (exit $rc): see the log above"
    fi
fi

bench_note "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BENCH_PY" "$ROOT/bench/report.py" "$BENCH_OUT" >"$BENCH_OUT/report.md"
cp "$BENCH_OUT/report.md" "$ROOT/bench/results/latest.md"
cat "$BENCH_OUT/report.md"
bench_log "saved bench/results/latest.md and ${BENCH_OUT#"$ROOT"/}/"
