# shellcheck shell=bash disable=SC2034,SC2153
# (SC2034: BENCH_WRK_CPUS and BENCH_WRK_EXTRA are read by lib.sh; SC2153: ST,
# BODY, BENCH_WORK... are set by run.sh, which sources this)
# The "unix" section of bench/run.sh: TCP vs Unix-domain socket upstreams
# (issue 17), shadowtee and nginx in the same run. Sourced after
# bench/lib.sh, never run.
#
# One upstream (bench/nginx/upstream_unix.conf) answers on a TCP port and on
# a Unix socket at once. In front of it, in the sidecar shape (upstream and
# proxies on core 0, wrk on core 1, one worker each): shadowtee with
# --primary 127.0.0.1:PORT and with --primary unix:SOCK, nginx with
# `server 127.0.0.1:PORT` and `server unix:SOCK` (proxy.conf, its upstream
# line changed); wrk also hits the upstream directly (TCP: wrk cannot speak
# to a Unix socket). Two payloads: GET of the 61-byte body ("tiny") and a
# POST of a ~24 KiB inference JSON answered by a ~24 KiB one ("24k"); two
# loads: saturation (c32) and paced (wrk's delay(): UNIX_PACED_CONNS
# connections, each waiting UNIX_PACED_DELAY_MS between a response and its
# next request, far below saturation, where latency and CPU per request
# matter). All five targets are measured back to back in each of
# UNIX_ROUNDS rounds, the order rotated each round; report.py pairs them.

# unix_json BYTES: an inference-shaped JSON document of about BYTES bytes
# (predictions with labels and class probabilities), one line.
unix_json() {
    "$BENCH_PY" - "$1" <<'EOF'
import json, random, sys
want = int(sys.argv[1])
random.seed(7)
preds = []
while True:
    p = [random.random() for _ in range(10)]
    s = sum(p)
    p = [round(x / s, 6) for x in p]
    preds.append({"row": len(preds), "label": max(range(10), key=lambda i: p[i]),
                  "probabilities": p, "model": "digits-v1"})
    text = json.dumps({"model": {"name": "digits", "version": "v1"}, "predictions": preds,
                       "latency_ms": 3.2}, separators=(",", ":"))
    if len(text) >= want - 200:
        break
print(text)
EOF
}

# unix_nginx_conf CONF PORT SOCK: the proxy's upstream line `server
# 127.0.0.1:PORT;` becomes `server unix:SOCK;` when SOCK is not "-"; either
# way request bodies up to 64 KiB stay in memory (nginx's default 16 KiB
# would write the 24 KiB ones to a temp file, which shadowtee never does).
unix_nginx_conf() {
    local conf=$1 port=$2 sock=$3
    grep -q "^ *server 127\.0\.0\.1:$port;\$" "$conf" ||
        bench_die "unix: no 'server 127.0.0.1:$port;' line in $conf"
    [ "$sock" = - ] || sed -i "s|^\( *\)server 127\.0\.0\.1:$port;\$|\1server unix:$sock;|" "$conf"
    sed -i "s|^\( *\)access_log off;\$|\1access_log off;\\
\1client_body_buffer_size 64k;|" "$conf"
}

# unix_nginx NAME CPUS PORT UPSTREAM_PORT SOCK: nginx proxy.conf towards the
# upstream over TCP (SOCK "-") or the Unix socket; waits until GET / answers.
unix_nginx() {
    local name=$1 cpus=$2 port=$3 up_port=$4 sock=$5 prefix
    prefix=$BENCH_WORK/$name
    mkdir -p "$prefix/tmp"
    bench_render "$BENCH_ROOT/bench/nginx/proxy.conf" "$prefix/nginx.conf" "PREFIX=$prefix" "PORT=$port" \
        WORKERS=1 "UPSTREAM_PORT=$up_port"
    unix_nginx_conf "$prefix/nginx.conf" "$up_port" "$sock"
    local cmd=(taskset -c "$cpus" nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" -g 'daemon off;')
    bench_start "$name" "${cmd[@]}"
    bench_wait_http "http://127.0.0.1:$port/" "$BENCH_LAST_PID" ||
        bench_die "nginx $name did not come up: $(tail -n 3 "$prefix/error.log" "$BENCH_WORK/$name.log" 2>/dev/null)"
}

# unix_check URL BYTES: 0 when POSTing the 24 KiB body to URL/infer answers
# 200 with exactly BYTES bytes (every target must serve the same answer).
unix_check() {
    local got
    got=$(curl -fsS -m 5 -o /dev/null -w '%{size_download}' -H 'Content-Type: application/json' \
        --data-binary "@$UNIX_REQ" "$1/infer" 2>/dev/null) || return 1
    [ "$got" = "$2" ]
}

unix_section() {
    UNIX_ROUNDS=${BENCH_UNIX_ROUNDS:-3}
    UNIX_PACED_CONNS=${BENCH_UNIX_PACED_CONNS:-8}
    UNIX_PACED_DELAY_MS=${BENCH_UNIX_PACED_DELAY_MS:-2}
    [[ $UNIX_ROUNDS =~ ^[1-9][0-9]?$ ]] || bench_die "BENCH_UNIX_ROUNDS must be 1 to 99, got '$UNIX_ROUNDS'"
    [[ $UNIX_PACED_CONNS =~ ^[1-9][0-9]?$ ]] || bench_die "BENCH_UNIX_PACED_CONNS must be 1 to 99"
    [[ $UNIX_PACED_DELAY_MS =~ ^[1-9][0-9]{0,3}$ ]] || bench_die "BENCH_UNIX_PACED_DELAY_MS must be 1 to 9999"
    if [ "$ST_OK" != 1 ]; then
        bench_skip unix "$ST_WHY"
        return 0
    fi
    local dir=$BENCH_WORK/unix
    mkdir -p "$dir"
    local sock=$dir/upstream.sock up_port st_tcp st_unix ng_tcp ng_unix a1 a2 up_pid
    unix_json 24576 >"$dir/infer.json"
    unix_json 24576 >"$dir/request.json" # the request: same shape and size
    UNIX_REQ=$dir/request.json
    local infer_bytes req_bytes
    infer_bytes=$(wc -c <"$dir/infer.json")
    req_bytes=$(wc -c <"$UNIX_REQ")
    for load in sat paced; do
        for payload in tiny 24k; do
            {
                [ "$payload" = tiny ] || printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nlocal f = io.open("%s", "rb")\nwrk.body = f:read("*a")\nf:close()\n' "$UNIX_REQ"
                [ "$load" = sat ] || printf 'function delay()\n    return %d\nend\n' "$UNIX_PACED_DELAY_MS"
            } >"$dir/$payload-$load.lua"
        done
    done
    next_port; up_port=$NEXT_PORT
    next_port; st_tcp=$NEXT_PORT
    next_port; a1=$NEXT_PORT
    next_port; st_unix=$NEXT_PORT
    next_port; a2=$NEXT_PORT
    next_port; ng_tcp=$NEXT_PORT
    next_port; ng_unix=$NEXT_PORT
    BENCH_WRK_CPUS=1
    bench_nginx unix-upstream upstream_unix.conf 0 "$up_port" WORKERS=1 "BODY=$BODY" "SOCK=$sock" \
        "INFER_FILE=$dir/infer.json"
    up_pid=$BENCH_LAST_PID
    local -A url_of=() pid_of=()
    url_of[direct]=http://127.0.0.1:$up_port
    pid_of[direct]=-
    if bench_shadowtee unix-shadowtee-tcp "$ST" 0 "$st_tcp" "$a1" --primary "127.0.0.1:$up_port" \
        --workers 1 "${ST_COMMON[@]}"; then
        url_of[shadowtee-tcp]=http://127.0.0.1:$st_tcp
        pid_of[shadowtee-tcp]=$BENCH_LAST_PID
    else
        bench_skip unix/shadowtee-tcp "$BENCH_FAIL_REASON"
    fi
    if bench_shadowtee unix-shadowtee-unix "$ST" 0 "$st_unix" "$a2" --primary "unix:$sock" \
        --workers 1 "${ST_COMMON[@]}"; then
        url_of[shadowtee-unix]=http://127.0.0.1:$st_unix
        pid_of[shadowtee-unix]=$BENCH_LAST_PID
    else
        bench_skip unix/shadowtee-unix "$BENCH_FAIL_REASON"
    fi
    unix_nginx unix-nginx-tcp 0 "$ng_tcp" "$up_port" -
    url_of[nginx-tcp]=http://127.0.0.1:$ng_tcp
    pid_of[nginx-tcp]=$BENCH_LAST_PID
    unix_nginx unix-nginx-unix 0 "$ng_unix" "$up_port" "$sock"
    url_of[nginx-unix]=http://127.0.0.1:$ng_unix
    pid_of[nginx-unix]=$BENCH_LAST_PID
    local t targets=()
    for t in direct shadowtee-tcp shadowtee-unix nginx-tcp nginx-unix; do
        [ -n "${url_of[$t]:-}" ] || continue
        if unix_check "${url_of[$t]}" "$infer_bytes"; then
            targets+=("$t")
        else
            bench_skip "unix/$t" "POST ${url_of[$t]}/infer did not answer 200 with the $infer_bytes-byte body"
        fi
    done
    bench_note "unix: one nginx upstream (1 worker) listening on 127.0.0.1:$up_port and on a Unix socket; shadowtee --primary 127.0.0.1:PORT vs --primary unix:PATH, nginx proxy.conf with server 127.0.0.1:PORT vs server unix:PATH (client_body_buffer_size 64k in both); sidecar shape: upstream and proxies on core 0 (1 worker each), wrk on core 1"
    bench_note "unix: payloads tiny = GET, ${#BODY}-byte answer; 24k = POST of a $req_bytes-byte inference JSON, $infer_bytes-byte JSON answer. Loads: c32 saturation; c$UNIX_PACED_CONNS paced (wrk delay() of ${UNIX_PACED_DELAY_MS} ms between a response and the connection's next request). $UNIX_ROUNDS rounds of ${ROUND_SECS}s (+${BENCH_WARMUP_SECS}s warm-up), the targets back to back, order rotated each round; direct is wrk to the upstream over TCP (wrk cannot use a Unix socket)"
    local BENCH_SECS=$ROUND_SECS r i kind load payload conns n=${#targets[@]} # BENCH_SECS: read by bench_measure
    for payload in tiny 24k; do
        for load in sat paced; do
            kind=$payload
            conns=32
            [ "$load" = sat ] || { kind=$payload-paced; conns=$UNIX_PACED_CONNS; }
            BENCH_WRK_EXTRA=(-s "$dir/$payload-$load.lua")
            local path=/
            [ "$payload" = tiny ] || path=/infer
            for ((r = 1; r <= UNIX_ROUNDS; r++)); do
                for ((i = 0; i < n; i++)); do
                    t=${targets[$(((i + r - 1) % n))]}
                    bench_measure unix sidecar "$t" "$kind/r$r" "$conns" "${url_of[$t]}$path" "${pid_of[$t]}"
                done
            done
        done
    done
    BENCH_WRK_EXTRA=()
    BENCH_WRK_CPUS=
    for t in nginx-unix nginx-tcp shadowtee-unix shadowtee-tcp; do
        [ -z "${pid_of[$t]:-}" ] || bench_stop "${pid_of[$t]}"
    done
    bench_stop "$up_pid"
}
