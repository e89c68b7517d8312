# shellcheck shell=bash disable=SC2034,SC2153
# (SC2034: BENCH_WRK_EXTRA, BENCH_CPU_EXTRA, BENCH_SNAPSHOT are read by lib.sh;
# SC2153: ST, BODY, BENCH_WORK... are set by run.sh, which sources this)
# The "mesh" section of bench/run.sh (issue 16): mesh mirroring next to the
# sidecar tee and to no mirroring, in the same run. Sourced after
# bench/lib.sh, never run.
#
# Two nginx apps serve the documents of bench/payload.py (primary and shadow:
# "24k", the ~24 KiB prediction document, whose shadow copy differs in one
# field, and "tiny", the 61-byte body, the same on both). One front nginx
# (bench/nginx/mesh_front.conf, standing in for Envoy: it sets X-Request-Id)
# has three servers, one per kind, measured back to back in every round:
#   none  front -> shadowtee (no mirroring) -> primary app
#   tee   front -> shadowtee --shadow shadow-app --compare on --redis R1 -> primary app
#   mesh  front -> shadowtee --mirror-mode mesh --mesh-role stable --redis R2 -> primary app,
#         and ngx_http_mirror_module copies every request -> shadowtee
#         --mesh-role shadow --redis R2 -> shadow app
# all at --mirror-percent MESH_PERCENT (default 100), --workers 1
# --compare-threads 1. Two loads: paced (MESH_PACED_CONNS connections each
# waiting MESH_PACED_THINK ms after every response: far below saturation)
# and saturated (c32, no think time). The tee and the mesh have a Redis each,
# so INFO deltas around each measured run price exactly that kind: Redis
# commands (total_commands_processed: calls made inside a script count too)
# and bytes received (total_net_input_bytes) per compared pair (the
# comparisons counted by the sidecars' /metrics over the same window). Then
# an accounting run per body at the paced load with `redis-cli MONITOR`
# attached (its figures are not used for latency): commands the sidecars
# sent vs calls made inside scripts, and the join latency, the second half's
# EVALSHA arrival minus the first's for the same request id, p50/p99 from
# MONITOR's timestamps (Redis's own clock, both halves alike).
# Each body starts from empty Redis data (FLUSHALL; the saturated runs leave
# halves whose partner was dropped as busy, swept later as orphans), and its
# accounting run follows its paced rounds, before the saturated ones.
# Rows: section mesh, shape paced|saturated, target tiny|24k, shadow KIND/rN;
# bench/mesh/ holds the snapshots and accounting files report.py reads.

MESH_REDIS_PORT=
MESH_TEE_REDIS_PORT=
MESH_STABLE_ADMIN=
MESH_SHADOW_ADMIN=
MESH_TEE_ADMIN=
MESH_KIND=

# mesh_snapshot 0|1 LABEL: BENCH_SNAPSHOT of the mesh section. Saves the INFO
# of the Redis of the kind measured and the /metrics of its sidecars.
mesh_snapshot() {
    local phase=$1 label=$2 d=$BENCH_OUT/mesh
    case $MESH_KIND in
    tee)
        redis-cli -p "$MESH_TEE_REDIS_PORT" INFO stats commandstats >"$d/$label.redis$phase" 2>/dev/null || true
        curl -fsS -m 2 -o "$d/$label.tee$phase" "http://127.0.0.1:$MESH_TEE_ADMIN/metrics" 2>/dev/null || true
        ;;
    mesh)
        redis-cli -p "$MESH_REDIS_PORT" INFO stats commandstats >"$d/$label.redis$phase" 2>/dev/null || true
        curl -fsS -m 2 -o "$d/$label.stable$phase" "http://127.0.0.1:$MESH_STABLE_ADMIN/metrics" 2>/dev/null || true
        curl -fsS -m 2 -o "$d/$label.shadow$phase" "http://127.0.0.1:$MESH_SHADOW_ADMIN/metrics" 2>/dev/null || true
        ;;
    esac
    [ "$phase" = 0 ] || [ "$MESH_KIND" = none ] ||
        printf '%s\t%s\n' "$label" "$MESH_KIND" >>"$d/snapshots.tsv"
}

# mesh_wait_idle ADMIN...: waits (at most 15 s) until each shadowtee's
# comparator queue is empty, so one run's backlog does not spill into the next.
mesh_wait_idle() {
    local admin i n
    for admin in "$@"; do
        for ((i = 0; i < 300; i++)); do
            n=$(curl -fsS -m 2 "http://127.0.0.1:$admin/metrics" 2>/dev/null |
                awk '$1 == "shadowtee_compare_queue_length" {print $2}')
            [ "${n:-0}" != 0 ] || break
            sleep 0.05
        done
    done
}

# mesh_redis_settle PORT: waits (at most 3 s) until the Redis at PORT has
# processed no command but INFO for 0.3 s: the last halves and the
# statistics' next flush (every 100 ms) have landed.
mesh_redis_settle() {
    local port=$1 i last=-1 n still=0
    for ((i = 0; i < 30; i++)); do
        n=$(redis-cli -p "$port" INFO stats commandstats 2>/dev/null | awk -F'[:,=]' '
            /^total_commands_processed:/ { t = $2 } /^cmdstat_info:/ { info = $3 }
            END { print t - info }')
        if [ "$n" = "$last" ]; then
            still=$((still + 1))
            [ "$still" -lt 3 ] || return 0
        else
            still=0
        fi
        last=$n
        sleep 0.1
    done
}

# mesh_redis NAME: starts a redis-server on a fresh port; sets MESH_R_PORT.
mesh_redis() {
    local exe
    exe=$(command -v redis-server) || return 1
    next_port; MESH_R_PORT=$NEXT_PORT
    mkdir -p "$BENCH_WORK/$1"
    bench_start "$1" "$exe" --port "$MESH_R_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$BENCH_WORK/$1"
    bench_wait_port "$MESH_R_PORT" "$BENCH_LAST_PID"
}

# mesh_acct PAYLOAD URL_PATH CONNS LUA KIND...: the accounting runs (tee,
# mesh) with bench/mesh_monitor.py attached to that kind's Redis (MONITOR).
mesh_acct() {
    local payload=$1 path=$2 conns=$3 lua=$4 kind rport url label mon i
    shift 4
    for kind in "$@"; do
        if [ "$kind" = tee ]; then rport=$MESH_TEE_REDIS_PORT; url=http://127.0.0.1:$MESH_TEE_FRONT$path
        else rport=$MESH_REDIS_PORT; url=http://127.0.0.1:$MESH_FRONT$path; fi
        label=acct-$payload-$kind
        bench_start "mesh-monitor-$label" "$BENCH_PY" "$ROOT/bench/mesh_monitor.py" "$rport" \
            "$BENCH_OUT/mesh/$label.monitor.json"
        mon=$BENCH_LAST_PID
        for ((i = 0; i < 200; i++)); do # it prints OK once MONITOR is attached
            grep -q '^OK' "$BENCH_WORK/mesh-monitor-$label.log" 2>/dev/null && break
            bench_alive "$mon" || break
            sleep 0.05
        done
        MESH_KIND=$kind
        mesh_snapshot 0 "$label"
        bench_log "run mesh $label (${BENCH_SECS}s at c$conns, MONITOR attached)"
        timeout -k 5 $((BENCH_SECS + 30)) wrk -t 1 -c "$conns" --timeout 2s -s "$lua" -d "${BENCH_SECS}s" \
            --latency "$url" >"$BENCH_OUT/mesh/$label.wrk" 2>&1 || true
        if [ "$kind" = tee ]; then mesh_wait_idle "$MESH_TEE_ADMIN"
        else mesh_wait_idle "$MESH_STABLE_ADMIN" "$MESH_SHADOW_ADMIN"; fi
        mesh_redis_settle "$rport"
        mesh_snapshot 1 "$label"
        bench_stop "$mon"
        printf '%s\t%s\t%s\t%s\n' "$label" "$kind" "$payload" "$conns" >>"$BENCH_OUT/mesh/acct.tsv"
    done
    MESH_KIND=
}

mesh_section() {
    if [ "$ST_OK" != 1 ]; then
        bench_skip mesh "$ST_WHY"
        return 0
    fi
    command -v redis-cli >/dev/null || { bench_skip mesh "redis-cli is missing"; return 0; }
    local pct=${BENCH_MESH_PERCENT:-100} rounds=${BENCH_MESH_ROUNDS:-$ROUNDS}
    local pconns=${BENCH_MESH_PACED_CONNS:-8} think=${BENCH_MESH_PACED_THINK:-10}
    local aconns=${BENCH_MESH_ACCT_CONNS:-2} athink=${BENCH_MESH_ACCT_THINK:-10}
    [[ $pct =~ ^([1-9]?[0-9]|100)$ ]] || bench_die "BENCH_MESH_PERCENT must be 0 to 100, got '$pct'"
    [[ $rounds =~ ^[1-9][0-9]?$ ]] || bench_die "BENCH_MESH_ROUNDS must be 1 to 99, got '$rounds'"
    [[ $pconns =~ ^[1-9][0-9]?$ ]] || bench_die "BENCH_MESH_PACED_CONNS must be 1 to 99"
    [[ $think =~ ^[1-9][0-9]{0,3}$ ]] || bench_die "BENCH_MESH_PACED_THINK must be 1 to 9999 (ms)"
    [[ $aconns =~ ^[1-9][0-9]?$ ]] || bench_die "BENCH_MESH_ACCT_CONNS must be 1 to 99"
    [[ $athink =~ ^[1-9][0-9]{0,3}$ ]] || bench_die "BENCH_MESH_ACCT_THINK must be 1 to 9999 (ms)"
    local dir=$BENCH_WORK/mesh out
    mkdir -p "$BENCH_OUT/mesh"
    out=$("$BENCH_PY" "$ROOT/bench/payload.py" "$dir") || { bench_skip mesh "bench/payload.py failed"; return 0; }
    printf '%s' "$BODY" >"$dir/primary/tiny.json"
    printf '%s' "$BODY" >"$dir/shadow/tiny.json"
    touch -d @1764000000 "$dir/primary/tiny.json" "$dir/shadow/tiny.json" # same ETag/Last-Modified
    local rules=${BENCH_COMPARE_RULES:-$BENCH_WORK/mesh-rules.json}
    [ -n "${BENCH_COMPARE_RULES:-}" ] || echo '{}' >"$rules"
    local app1 app2 pids=()
    next_port; app1=$NEXT_PORT
    bench_nginx mesh-app-primary static.conf - "$app1" WORKERS=1 "ROOT=$dir/primary"
    pids+=("$BENCH_LAST_PID")
    next_port; app2=$NEXT_PORT
    bench_nginx mesh-app-shadow static.conf - "$app2" WORKERS=1 "ROOT=$dir/shadow"
    pids+=("$BENCH_LAST_PID")
    mesh_redis mesh-redis-tee || { bench_skip mesh "redis-server did not start"; return 0; }
    MESH_TEE_REDIS_PORT=$MESH_R_PORT
    pids+=("$BENCH_LAST_PID")
    mesh_redis mesh-redis-mesh || { bench_skip mesh "redis-server did not start"; return 0; }
    MESH_REDIS_PORT=$MESH_R_PORT
    pids+=("$BENCH_LAST_PID")
    local common=(--workers 1 --compare-threads 1 "${ST_COMMON[@]}")
    local plain_port plain_admin tee_port stable_port shadow_port plain_pid tee_pid stable_pid shadow_pid
    next_port; plain_port=$NEXT_PORT
    next_port; plain_admin=$NEXT_PORT
    bench_shadowtee mesh-plain "$ST" - "$plain_port" "$plain_admin" --primary "127.0.0.1:$app1" "${common[@]}" ||
        { bench_skip mesh "$BENCH_FAIL_REASON"; return 0; }
    plain_pid=$BENCH_LAST_PID
    next_port; tee_port=$NEXT_PORT
    next_port; MESH_TEE_ADMIN=$NEXT_PORT
    bench_shadowtee mesh-tee "$ST" - "$tee_port" "$MESH_TEE_ADMIN" --primary "127.0.0.1:$app1" "${common[@]}" \
        --shadow "127.0.0.1:$app2" --mirror-percent "$pct" --compare on --compare-rules "$rules" \
        --redis "127.0.0.1:$MESH_TEE_REDIS_PORT" --service bench-tee ||
        { bench_skip mesh "$BENCH_FAIL_REASON"; return 0; }
    tee_pid=$BENCH_LAST_PID
    pids+=("$plain_pid" "$tee_pid")
    local mesh_args=(--mirror-percent "$pct" --compare-rules "$rules" --redis "127.0.0.1:$MESH_REDIS_PORT"
        --service bench-mesh --mirror-mode mesh)
    local kinds=(none tee mesh)
    next_port; stable_port=$NEXT_PORT
    next_port; MESH_STABLE_ADMIN=$NEXT_PORT
    next_port; shadow_port=$NEXT_PORT
    next_port; MESH_SHADOW_ADMIN=$NEXT_PORT
    stable_pid=-
    shadow_pid=-
    if bench_shadowtee mesh-stable "$ST" - "$stable_port" "$MESH_STABLE_ADMIN" --primary "127.0.0.1:$app1" \
        "${common[@]}" "${mesh_args[@]}" --mesh-role stable; then
        stable_pid=$BENCH_LAST_PID
        pids+=("$stable_pid")
        if bench_shadowtee mesh-shadow "$ST" - "$shadow_port" "$MESH_SHADOW_ADMIN" --primary "127.0.0.1:$app2" \
            "${common[@]}" "${mesh_args[@]}" --mesh-role shadow; then
            shadow_pid=$BENCH_LAST_PID
            pids+=("$shadow_pid")
        fi
    fi
    if [ "$shadow_pid" = - ]; then
        # the tee and no mirroring are still measured
        bench_skip mesh/mesh "$BENCH_FAIL_REASON"
        kinds=(none tee)
    fi
    local front_plain
    next_port; front_plain=$NEXT_PORT
    next_port; MESH_TEE_FRONT=$NEXT_PORT
    next_port; MESH_FRONT=$NEXT_PORT
    bench_nginx mesh-front mesh_front.conf - "$front_plain" WORKERS=1 "MESH_PORT=$MESH_FRONT" \
        "TEE_PORT=$MESH_TEE_FRONT" "PLAIN_UP=$plain_port" "TEE_UP=$tee_port" "STABLE_UP=$stable_port" \
        "SHADOW_UP=$shadow_port" "MIRROR_TIMEOUT=$SHADOW_TIMEOUT"
    pids+=("$BENCH_LAST_PID")
    bench_note "mesh: $(echo "$out" | head -n 1) (24k) and the ${#BODY}-byte body (tiny) from two nginx apps (1 worker, sendfile); front nginx (1 worker, bench/nginx/mesh_front.conf) sets X-Request-Id and, for mesh, mirrors every request (ngx_http_mirror_module, Host <host>-shadow) to the shadow sidecar; shadowtee --workers 1 --compare-threads 1 --mirror-percent $pct, rules ${BENCH_COMPARE_RULES:-{\}}; tee and mesh each have their own redis-server"
    bench_note "mesh: kinds none (no mirroring), tee (--shadow --compare on --redis), mesh (--mirror-mode mesh, stable + shadow sidecars); CPU µs/req = the sidecars' CPU (mesh: stable + shadow), not nginx's, the apps' or Redis's; paced = c$pconns with a wrk delay() of $think ms after each response, saturated = c32; $rounds rounds of ${ROUND_SECS}s (+${BENCH_WARMUP_SECS}s warm-up), the three kinds back to back, the order rotated each round"
    local lua_paced=$BENCH_WORK/mesh-paced.lua lua_acct=$BENCH_WORK/mesh-acct.lua
    printf 'function delay()\n    return %d\nend\n' "$think" >"$lua_paced"
    printf 'function delay()\n    return %d\nend\n' "$athink" >"$lua_acct"
    bench_note "mesh: accounting runs (not in the table): c$aconns with a $athink ms think time, ${ROUND_SECS}s, tee then mesh, bench/mesh_monitor.py attached to that kind's Redis with MONITOR"
    local -A front_of=([none]=$front_plain [tee]=$MESH_TEE_FRONT [mesh]=$MESH_FRONT)
    local -A pid_of=([none]=$plain_pid [tee]=$tee_pid [mesh]=$stable_pid)
    local -A admin_of=([none]=$plain_admin [tee]=$MESH_TEE_ADMIN [mesh]=$MESH_STABLE_ADMIN)
    local payload path load c r i kind
    local BENCH_SECS=$ROUND_SECS # read by bench_measure
    BENCH_SNAPSHOT=mesh_snapshot
    for payload in tiny 24k; do
        path=/tiny.json
        [ "$payload" = tiny ] || path=/small.json
        # A saturated run leaves halves whose partner was dropped as busy:
        # they wait out the pair TTL and are swept (64 per script call) by
        # whatever runs next. Each body starts from empty Redis data (the
        # scripts stay loaded), and its accounting run comes right after its
        # paced rounds, before the saturated ones.
        redis-cli -p "$MESH_TEE_REDIS_PORT" FLUSHALL >/dev/null 2>&1 || true
        redis-cli -p "$MESH_REDIS_PORT" FLUSHALL >/dev/null 2>&1 || true
        for load in paced acct saturated; do
            if [ "$load" = acct ]; then
                BENCH_SNAPSHOT=
                BENCH_CPU_EXTRA=()
                BENCH_WRK_EXTRA=()
                mesh_acct "$payload" "$path" "$aconns" "$lua_acct" "${kinds[@]:1}"
                BENCH_SNAPSHOT=mesh_snapshot
                continue
            fi
            c=32
            BENCH_WRK_EXTRA=()
            [ "$load" = saturated ] || { c=$pconns; BENCH_WRK_EXTRA=(-s "$lua_paced"); }
            for ((r = 1; r <= rounds; r++)); do
                for ((i = 0; i < ${#kinds[@]}; i++)); do
                    kind=${kinds[$(((i + r - 1) % ${#kinds[@]}))]}
                    MESH_KIND=$kind
                    BENCH_CPU_EXTRA=()
                    [ "$kind" != mesh ] || BENCH_CPU_EXTRA=("$shadow_pid")
                    bench_measure mesh "$load" "$payload" "$kind/r$r" "$c" \
                        "http://127.0.0.1:${front_of[$kind]}$path" "${pid_of[$kind]}" "${admin_of[$kind]}"
                    case $kind in
                    tee) mesh_wait_idle "$MESH_TEE_ADMIN" ;;
                    mesh) mesh_wait_idle "$MESH_STABLE_ADMIN" "$MESH_SHADOW_ADMIN" ;;
                    esac
                done
            done
        done
        BENCH_CPU_EXTRA=()
        BENCH_WRK_EXTRA=()
    done
    BENCH_SNAPSHOT=
    MESH_KIND=
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        bench_stop "${pids[$i]}"
    done
}
