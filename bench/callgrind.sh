#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: a
# noise-free complement to bench/run.sh's wall-clock figures. Same run, same
# upstream, same client for every case:
#   proxy   shadowtee vs nginx (keep-alive reverse proxy), no shadow;
#   mirror  shadowtee --mirror-percent 100 to a fast shadow (--compare off;
#           --compare on; --compare on + --redis) vs nginx + mirror to the
#           same shadow;
#   tls     shadowtee --tls-cert vs nginx `listen ssl`, both terminating TLS
#           with one EC P-256 certificate, keep-alive (and with
#           `Connection: close`, one full handshake per request, to price the
#           handshakes left in the keep-alive window).
# Each proxy runs under `valgrind --tool=callgrind` with one worker (nginx:
# worker_processes 1, master_process off). After a wrk warm-up the counters
# are dumped and zeroed (`callgrind_control -d`), the measured wrk run
# follows, and a second dump holds exactly the instructions of that run.
# Divided by the requests served in between (shadowtee: its /metrics; nginx:
# stub_status on a separate port), that is instructions per request, start-up
# and warm-up excluded. See bench/README.md ("instr").
#
#   bash bench/callgrind.sh [OUT_DIR]     (default bench/results/instr-<time>)
# Options (environment):
#   BENCH_INSTR_DURATION=5s  measured wrk seconds per case (BENCH_QUICK=1: 2s)
#   BENCH_INSTR_WARMUP=1s    wrk warm-up before the first dump
#   BENCH_INSTR_CONNS=8      wrk connections (one wrk thread)
#   BENCH_COMPARE_RULES=FILE comparator rules (default "{}")
#   SHADOWTEE_BUILD=build    where shadowtee is (copied to a private path)
# Output: the markdown table on stdout and in OUT_DIR/instr.md and
# bench/results/instr-latest.md; raw dumps, wrk outputs, metrics and logs in
# OUT_DIR. Exit 0 with the table (a case that fails is a row with a note),
# 1 when a prerequisite is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=bench/tls.sh
source "$ROOT/bench/tls.sh"

secs_of() {
    local v=${1%s}
    [[ $v =~ ^[1-9][0-9]*$ ]] || bench_die "$2 must be whole seconds like 5 or 5s, got '$1'"
    echo "$v"
}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    CG_SECS=2
    CG_WARMUP=1
else
    CG_SECS=$(secs_of "${BENCH_INSTR_DURATION:-5s}" BENCH_INSTR_DURATION)
    CG_WARMUP=$(secs_of "${BENCH_INSTR_WARMUP:-1s}" BENCH_INSTR_WARMUP)
fi
CG_CONNS=${BENCH_INSTR_CONNS:-8}
[[ $CG_CONNS =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_INSTR_CONNS must be a positive integer"
BUILD=${SHADOWTEE_BUILD:-$ROOT/build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
BODY='{"id":42,"model":"bench","scores":[0.12,0.34,0.54],"ok":true}'
# Under valgrind a proxy is ~50x slower: start-up and dumps get more time.
CG_START_TIMEOUT=60
# --compress-strings=no: every dump names its functions itself, so each
# dump file can be read alone with callgrind_annotate (counts are the same)
CG=(valgrind --tool=callgrind --compress-strings=no)

for tool in valgrind callgrind_control wrk nginx curl awk; do
    command -v "$tool" >/dev/null || bench_die "$tool is missing (bash scripts/deps.sh installs it)"
done
[ -x "$BENCH_PY" ] || bench_die "$BENCH_PY is missing"
[ -x "$BUILD/shadowtee" ] || bench_die "$BUILD/shadowtee is not built (make)"

BENCH_OUT=${1:-$ROOT/bench/results/instr-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$BENCH_OUT/wrk" "$BENCH_OUT/callgrind" "$BENCH_OUT/logs"
BENCH_OUT=$(cd "$BENCH_OUT" && pwd)
: >"$BENCH_OUT/instr.tsv"
: >"$BENCH_OUT/skipped.tsv"
: >"$BENCH_OUT/notes.txt"
BENCH_WORK=$(mktemp -d /tmp/shadowtee-instr.XXXXXX)
chmod 755 "$BENCH_WORK" # nginx workers may run as nobody

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

bench_ports_init 32

# A private copy: the build dir may be rebuilt while this runs ("text file
# busy", or a half-written binary), and every case measures the same bytes.
ST=$BENCH_WORK/shadowtee
cp "$BUILD/shadowtee" "$ST"
ST_COMMIT=$(git -C "$ROOT" log -1 --format=%h 2>/dev/null || echo '?')
ST_SUM=$(sha256sum "$ST" | cut -c1-12)
if [ "$BUILD" = "$ROOT/build" ]; then
    # the binary may include uncommitted changes: say so
    ST_DIRTY=$(git -C "$ROOT" status --porcelain -- proxy include comparator 2>/dev/null | wc -l)
    ST_FROM="this tree at commit $ST_COMMIT$([ "$ST_DIRTY" = 0 ] || echo " + $ST_DIRTY uncommitted files in proxy/ include/ comparator/")"
else
    ST_FROM="a build outside this tree (this tree is at commit $ST_COMMIT)"
fi
bench_note "shadowtee: copy of $BUILD/shadowtee (built $(date -u -r "$BUILD/shadowtee" +%H:%M:%SZ), sha256 $ST_SUM), from $ST_FROM"
bench_note "$(valgrind --version), $(nginx -v 2>&1 | sed 's/.*: //'); wrk -t1 -c$CG_CONNS: ${CG_WARMUP}s warm-up, dump, ${CG_SECS}s measured, dump"
bench_note "upstream and fast shadow: native nginx return 200 with a ${#BODY}-byte JSON body; only the proxy runs under callgrind (user-space instructions of all its threads; kernel work is not counted)"

# --------------------------------------------------------- helpers ----
# cg_dump PID OUT: asks callgrind in PID to dump (and zero) its counters and
# waits until the new dump file is complete; prints its path. Dumps of
# --callgrind-out-file=OUT are OUT.1, OUT.2, ...
cg_dump() {
    local pid=$1 out=$2 n=1 deadline=$((SECONDS + 30)) f
    while [ -e "$out.$n" ]; do n=$((n + 1)); done
    f=$out.$n
    timeout -k 2 30 callgrind_control -d "$pid" >/dev/null 2>&1 || return 1
    while [ "$SECONDS" -lt "$deadline" ]; do
        if [ -s "$f" ] && grep -q '^totals:' "$f"; then
            echo "$f"
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# cg_total FILE: the instruction count (Ir) of a dump, as callgrind_annotate's
# PROGRAM TOTALS line reports it.
cg_total() {
    awk '/^totals:/ { print $2; found = 1; exit } END { if (!found) exit 1 }' "$1"
}

# metric_sum FILE PREFIX: sum of every series of FILE whose name starts with
# PREFIX ("" when the file is missing).
metric_sum() {
    [ -s "$1" ] || return 0
    awk -v p="$2" 'index($0, p) == 1 { s += $NF; n++ } END { if (n) printf "%.0f\n", s }' "$1"
}

# stub_requests PORT: nginx's total client requests (stub_status).
stub_requests() {
    curl -fsS -m 5 "http://127.0.0.1:$1/" 2>/dev/null | awk 'NR == 3 { print $3 }'
}

# stub_counts PORT: nginx's client connections accepted and requests, "A R"
# (one stub_status read: it counts itself in both).
stub_counts() {
    curl -fsS -m 5 "http://127.0.0.1:$1/" 2>/dev/null | awk 'NR == 3 { print $1, $3 }'
}

# record CASE PROGRAM JOB WRK_FILE REQUESTS SOURCE INSTR MIRRORED SEEN NOTE
#        [MEMFN] [CONNS]: one row of instr.tsv (empty figures become "-");
# wrk's own count, req/s and errors are read from WRK_FILE. CONNS: client
# connections the proxy accepted in the window (TLS: full handshakes).
record() {
    local wrk_reqs rps errs
    wrk_reqs=$(awk '/ requests in /{print $1; exit}' "$4" 2>/dev/null || true)
    rps=$(awk '/^Requests\/sec:/{print $2; exit}' "$4" 2>/dev/null || true)
    errs=$(awk '/Socket errors:/{gsub(",", ""); s += $4 + $6 + $8 + $10}
                /Non-2xx or 3xx/{s += $NF} END { print s + 0 }' "$4" 2>/dev/null || echo '?')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${5:--}" "${6:--}" \
        "${wrk_reqs:--}" "${rps:--}" "$errs" "${7:--}" "${8:--}" "${9:--}" "${10}" "${11:--}" "${12:--}" \
        >>"$BENCH_OUT/instr.tsv"
}

# delta FILE0 FILE1 PREFIX: metric_sum of FILE1 minus FILE0 ("" if missing).
delta() {
    local a b
    a=$(metric_sum "$1" "$3")
    b=$(metric_sum "$2" "$3")
    [ -n "$a" ] && [ -n "$b" ] && echo $((b - a))
    return 0
}

# measure CASE PROGRAM JOB PID URL KIND PORT [WRK_ARGS...]: wrk warm-up,
# dump 1, measured wrk run, dump 2 (WRK_ARGS, e.g. a header, go to both wrk
# runs). The requests served between the dumps are counted by the
# proxy itself: KIND "metrics" reads shadowtee's /metrics on admin PORT,
# "stub" nginx's stub_status on PORT. The shadow's stub_status counts what
# reached the shadow. Every counter is read outside the dump window, so the
# reads are not in the measured instructions.
measure() {
    local case=$1 program=$2 job=$3 pid=$4 url=$5 kind=$6 cport=$7
    shift 7
    local cg=$BENCH_OUT/callgrind/$case.out wrkf=$BENCH_OUT/wrk/$case.txt
    local m0=$BENCH_OUT/wrk/$case.metrics0 m1=$BENCH_OUT/wrk/$case.metrics1
    local wrk=(timeout -k 5 $((CG_SECS + 30)) wrk -t 1 -c "$CG_CONNS" --timeout 5s)
    wrk+=("$@")
    local d2 instr='' reqs='' src mirrored='' seen='' note='' r0='' r1='' s0 s1 n conns='' a0='' a1=''
    bench_log "instr $case: ${CG_WARMUP}s warm-up + ${CG_SECS}s under callgrind"
    "${wrk[@]}" -d "${CG_WARMUP}s" "$url" >"$BENCH_OUT/wrk/$case.warmup.txt" 2>&1 || true
    if [ "$kind" = metrics ]; then
        curl -fsS -m 5 -o "$m0" "http://127.0.0.1:$cport/metrics" || note="no /metrics before"
    else
        read -r a0 r0 <<<"$(stub_counts "$cport")" || true
    fi
    s0=$(stub_requests "$SHADOW_STATUS")
    if ! cg_dump "$pid" "$cg" >/dev/null; then
        record "$case" "$program" "$job" /dev/null "" - "" "" "" "first callgrind dump failed"
        return 0
    fi
    "${wrk[@]}" -d "${CG_SECS}s" "$url" >"$wrkf" 2>&1 || note="${note:+$note; }wrk exit $?"
    if ! d2=$(cg_dump "$pid" "$cg"); then
        record "$case" "$program" "$job" "$wrkf" "" - "" "" "" "${note:+$note; }second callgrind dump failed"
        return 0
    fi
    instr=$(cg_total "$d2") || note="${note:+$note; }no totals in $d2"
    # where they went, inclusive (valgrind 3.19's self-cost view of a dump
    # taken mid-run charges everything to clone())
    local ann=$BENCH_OUT/callgrind/$case.annotate.txt memfn
    timeout 60 callgrind_annotate --inclusive=yes --auto=no "$d2" >"$ann" 2>&1 || true
    # glibc's memset/memcpy/memmove: above ~2 KiB they use rep stosb/movsb,
    # which callgrind counts per byte (see README)
    memfn=$(awk '/:__mem(set|cpy|move)[_a-z0-9]* \[/ { gsub(",", "", $1); s += $1; n++ }
                 END { if (n) print s }' "$ann")
    if [ "$kind" = metrics ]; then
        curl -fsS -m 5 -o "$m1" "http://127.0.0.1:$cport/metrics" || note="${note:+$note; }no /metrics after"
        src='shadowtee /metrics 2xx'
        reqs=$(delta "$m0" "$m1" 'shadowtee_requests_total{code="2xx"}')
        n=$(delta "$m0" "$m1" 'shadowtee_requests_total{')
        if [ -n "$n" ] && [ -n "$reqs" ] && [ "$n" -ne "$reqs" ]; then
            note="${note:+$note; }$((n - reqs)) non-2xx answers"
        fi
        [ "${job#mirror}" = "$job" ] || mirrored=$(delta "$m0" "$m1" shadowtee_mirror_requests_total)
        conns=$(delta "$m0" "$m1" shadowtee_connections_total)
        n=$(delta "$m0" "$m1" shadowtee_shadow_errors_total)
        if [ -n "$n" ] && [ "$n" -gt 0 ]; then note="${note:+$note; }$n shadow errors"; fi
    else
        read -r a1 r1 <<<"$(stub_counts "$cport")" || true
        src='nginx stub_status'
        # each stub_status read counts itself: the first is in r0, the
        # second in r1 (and not in the dump window)
        [ -n "$r0" ] && [ -n "$r1" ] && reqs=$((r1 - r0 - 1))
        [ -n "$a0" ] && [ -n "$a1" ] && conns=$((a1 - a0 - 1))
    fi
    s1=$(stub_requests "$SHADOW_STATUS")
    [ -n "$s0" ] && [ -n "$s1" ] && seen=$((s1 - s0 - 1))
    record "$case" "$program" "$job" "$wrkf" "$reqs" "$src" "$instr" "$mirrored" "$seen" "$note" "$memfn" "$conns"
    bench_alive "$pid" || bench_log "instr $case: the proxy died (see logs/)"
}

# start_shadowtee CASE JOB ARGS...: shadowtee under callgrind, one worker;
# sets CASE_PID, CASE_PORT, CASE_ADMIN. Returns 1 (row recorded) when it is
# not ready.
start_shadowtee() {
    local case=$1 job=$2
    shift 2
    next_port; CASE_PORT=$NEXT_PORT
    next_port; CASE_ADMIN=$NEXT_PORT
    bench_start "$case" "${CG[@]}" --callgrind-out-file="$BENCH_OUT/callgrind/$case.out" \
        "$ST" --listen "127.0.0.1:$CASE_PORT" --admin "127.0.0.1:$CASE_ADMIN" --primary "127.0.0.1:$UP_PORT" \
        --workers 1 --log-level warn --drain-timeout 1s "$@"
    CASE_PID=$BENCH_LAST_PID
    if bench_wait_http "http://127.0.0.1:$CASE_ADMIN/readyz" "$CASE_PID" "$CG_START_TIMEOUT" &&
        bench_wait_port "$CASE_PORT" "$CASE_PID" 10; then
        return 0
    fi
    record "$case" shadowtee "$job" /dev/null "" - "" "" "" "not ready: $(tail -n 2 "$BENCH_WORK/$case.log" | tr '\n\t' '  ')"
    bench_stop "$CASE_PID"
    return 1
}

# render_nginx TEMPLATE PREFIX PORT STATUS_PORT KEY=VALUE...: renders
# bench/nginx/TEMPLATE to PREFIX/nginx.conf (one worker) with stub_status on
# an extra server block: its own port, so the measured location is unchanged.
render_nginx() {
    local tpl=$1 prefix=$2 port=$3 status=$4
    shift 4
    mkdir -p "$prefix/tmp"
    bench_render "$ROOT/bench/nginx/$tpl" "$prefix/base.conf" "PREFIX=$prefix" "PORT=$port" WORKERS=1 "$@"
    # insert the status server before the closing brace of http { }
    awk -v port="$status" '{ lines[NR] = $0 }
        END {
            for (last = NR; last > 0 && lines[last] !~ /^}/; last--) ;
            for (i = 1; i <= NR; i++) {
                if (i == last)
                    printf "    server {\n        listen 127.0.0.1:%s;\n        location / { stub_status; }\n    }\n", port
                print lines[i]
            }
        }' "$prefix/base.conf" >"$prefix/nginx.conf"
}

# start_nginx CASE JOB TEMPLATE KEY=VALUE...: nginx under callgrind, one
# process (master_process off, worker_processes 1), with stub_status; sets
# CASE_PID, CASE_PORT, CASE_STATUS. With CASE_TLS=1 the measured server
# terminates TLS with TLS_CERT/TLS_KEY (stub_status stays plain HTTP).
# Returns 1 (row recorded) when it is not ready.
start_nginx() {
    local case=$1 job=$2 tpl=$3 prefix=$BENCH_WORK/$1 scheme=http
    shift 3
    next_port; CASE_PORT=$NEXT_PORT
    next_port; CASE_STATUS=$NEXT_PORT
    render_nginx "$tpl" "$prefix" "$CASE_PORT" "$CASE_STATUS" "$@"
    if [ "${CASE_TLS:-0}" = 1 ]; then
        tls_nginx_conf "$prefix/nginx.conf" "$CASE_PORT" "$TLS_CERT" "$TLS_KEY"
        scheme=https
    fi
    bench_start "$case" "${CG[@]}" --callgrind-out-file="$BENCH_OUT/callgrind/$case.out" \
        nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" -g 'daemon off; master_process off;'
    CASE_PID=$BENCH_LAST_PID
    if tls_wait_https "$scheme://127.0.0.1:$CASE_PORT/" "$CASE_PID" "${TLS_CERT:-/dev/null}" "$CG_START_TIMEOUT" &&
        bench_wait_http "http://127.0.0.1:$CASE_STATUS/" "$CASE_PID" 10; then
        return 0
    fi
    record "$case" nginx "$job" /dev/null "" - "" "" "" "not ready: $(tail -n 2 "$prefix/error.log" "$BENCH_WORK/$case.log" 2>/dev/null | tr '\n\t' '  ')"
    bench_stop "$CASE_PID"
    return 1
}

# start_native NAME PORT STATUS_PORT: the upstream or the fast shadow, plain
# nginx (not under callgrind), one worker, with stub_status.
start_native() {
    local prefix=$BENCH_WORK/$1
    render_nginx upstream.conf "$prefix" "$2" "$3" "BODY=$BODY"
    bench_start "$1" nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" -g 'daemon off;'
    if ! bench_wait_http "http://127.0.0.1:$2/" "$BENCH_LAST_PID" ||
        ! bench_wait_http "http://127.0.0.1:$3/" "$BENCH_LAST_PID"; then
        bench_die "nginx $1 did not come up: $(tail -n 3 "$prefix/error.log" "$BENCH_WORK/$1.log" 2>/dev/null)"
    fi
}

# ----------------------------------------------------------- cases ----
next_port; UP_PORT=$NEXT_PORT
next_port; UP_STATUS=$NEXT_PORT
start_native instr-upstream "$UP_PORT" "$UP_STATUS"
next_port; SHADOW_PORT=$NEXT_PORT
next_port; SHADOW_STATUS=$NEXT_PORT
start_native instr-shadow "$SHADOW_PORT" "$SHADOW_STATUS"

REDIS_PORT=
if exe=$(command -v redis-server); then
    next_port; REDIS_PORT=$NEXT_PORT
    mkdir -p "$BENCH_WORK/redis"
    bench_start instr-redis "$exe" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$BENCH_WORK/redis"
    bench_wait_port "$REDIS_PORT" "$BENCH_LAST_PID" || { bench_skip instr/redis "redis-server did not start"; REDIS_PORT=; }
else
    bench_skip instr/redis "redis-server is missing"
fi
RULES=${BENCH_COMPARE_RULES:-$BENCH_WORK/compare-rules.json}
[ -n "${BENCH_COMPARE_RULES:-}" ] || echo '{}' >"$RULES"
MIRROR=(--shadow "127.0.0.1:$SHADOW_PORT" --mirror-percent 100 --shadow-timeout 1s --shadow-connect-timeout 1s)

# st_run CASE JOB SHADOWTEE_ARGS... / ng_run CASE JOB TEMPLATE KEY=VALUE...:
# start the proxy under callgrind, measure, stop. Set for one call:
# CASE_TLS=1 (https, the proxy terminates TLS); the array CASE_WRK: extra wrk
# arguments (wrk only takes a -H header written "Name: value").
CASE_TLS=0
CASE_WRK=()
st_run() {
    local case=$1 job=$2 scheme=http
    shift 2
    if [ "$CASE_TLS" = 1 ]; then
        set -- "$@" --tls-cert "$TLS_CERT" --tls-key "$TLS_KEY"
        scheme=https
    fi
    start_shadowtee "$case" "$job" "$@" || return 0
    measure "$case" shadowtee "$job" "$CASE_PID" "$scheme://127.0.0.1:$CASE_PORT/" metrics "$CASE_ADMIN" "${CASE_WRK[@]}"
    bench_stop "$CASE_PID"
}

ng_run() {
    local case=$1 job=$2 tpl=$3 scheme=http
    shift 3
    [ "$CASE_TLS" = 1 ] && scheme=https
    start_nginx "$case" "$job" "$tpl" "$@" || return 0
    measure "$case" nginx "$job" "$CASE_PID" "$scheme://127.0.0.1:$CASE_PORT/" stub "$CASE_STATUS" "${CASE_WRK[@]}"
    bench_stop "$CASE_PID"
}

st_run st-proxy proxy
ng_run nginx-proxy proxy proxy.conf "UPSTREAM_PORT=$UP_PORT"
st_run st-mirror mirror "${MIRROR[@]}" --compare off
st_run st-compare mirror+compare "${MIRROR[@]}" --compare on --compare-rules "$RULES"
if [ -n "$REDIS_PORT" ]; then
    st_run st-compare-redis mirror+compare+redis "${MIRROR[@]}" --compare on --compare-rules "$RULES" \
        --redis "127.0.0.1:$REDIS_PORT" --service bench
    keys=$(redis-cli -p "$REDIS_PORT" --scan --pattern 'shadowtee:*' 2>/dev/null | wc -l || echo '?')
    bench_note "Redis held $keys shadowtee:* keys after the compare+Redis case"
fi
ng_run nginx-mirror mirror proxy_mirror.conf "UPSTREAM_PORT=$UP_PORT" "SHADOW_PORT=$SHADOW_PORT" MIRROR_TIMEOUT=1s

# TLS termination, keep-alive: the measured wrk run opens its CG_CONNS
# connections afresh (each wrk run does), so the window holds exactly that
# many full handshakes; the "-close" cases (one handshake per request) price
# them, and report.py subtracts them.
if [ "${BENCH_INSTR_TLS:-1}" = 0 ]; then
    bench_skip instr/tls "BENCH_INSTR_TLS=0"
elif ! command -v openssl >/dev/null; then
    bench_skip instr/tls "the openssl CLI is missing"
elif ! tls_make_cert "$BENCH_WORK"; then
    bench_skip instr/tls "$BENCH_FAIL_REASON"
else
    bench_note "tls cases: one EC P-256 self-signed certificate (SAN IP:127.0.0.1) for both; $(openssl version | awk '{print $1, $2}') CLI; wrk negotiates what a default OpenSSL 3 client does (TLSv1.3, TLS_AES_256_GCM_SHA384)"
    CASE_TLS=1
    st_run st-tls tls
    ng_run nginx-tls tls proxy.conf "UPSTREAM_PORT=$UP_PORT"
    CASE_WRK=(-H "Connection: close")
    st_run st-tls-close tls-close
    ng_run nginx-tls-close tls-close proxy.conf "UPSTREAM_PORT=$UP_PORT"
    CASE_WRK=()
    CASE_TLS=0
fi

bench_stop_all
"$BENCH_PY" "$ROOT/bench/report.py" --instr "$BENCH_OUT" >"$BENCH_OUT/instr.md"
mkdir -p "$ROOT/bench/results"
cp "$BENCH_OUT/instr.md" "$ROOT/bench/results/instr-latest.md"
cat "$BENCH_OUT/instr.md"
bench_log "saved bench/results/instr-latest.md and ${BENCH_OUT#"$ROOT"/}/"
