# shellcheck shell=bash disable=SC2034,SC2153
# (SC2034: BENCH_WRK_CPUS is read by lib.sh; SC2153: ST, BODY, BENCH_WORK...
# are set by the script that sources this)
# The "tls" section of bench/run.sh, and the TLS helpers bench/callgrind.sh
# shares. Sourced after bench/lib.sh, never run.
#
# tls: the fast upstream (plain HTTP nginx, as in core) reached over https
# with keep-alive through shadowtee terminating TLS (--tls-cert/--tls-key)
# and through nginx terminating TLS with the same certificate and key
# (bench/nginx/proxy.conf with its listen line made `ssl`), in core's two
# shapes. See bench/README.md ("tls").

# tls_make_cert DIR: an EC P-256 key and a self-signed certificate for
# IP:127.0.0.1 (SAN), valid 2 days, made with the openssl CLI: DIR/tls-key.pem
# and DIR/tls-cert.pem. The certificate is its own CA (clients verify with
# --cacert DIR/tls-cert.pem). Sets TLS_CERT, TLS_KEY; returns 1 with
# BENCH_FAIL_REASON when openssl fails.
tls_make_cert() {
    local dir=$1
    TLS_CERT=$dir/tls-cert.pem
    TLS_KEY=$dir/tls-key.pem
    if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$TLS_KEY" -out "$TLS_CERT" >"$dir/tls-cert.log" 2>&1; then
        BENCH_FAIL_REASON="openssl req failed: $(tail -n 2 "$dir/tls-cert.log" | tr '\n' ' ')"
        return 1
    fi
}

# tls_nginx_conf CONF PORT CERT KEY: makes the server listening on
# 127.0.0.1:PORT in the rendered nginx CONF (its line `listen
# 127.0.0.1:PORT backlog=4096;`) terminate TLS 1.2/1.3 with CERT and KEY;
# every other line stays as rendered. Dies when CONF has no such line.
tls_nginx_conf() {
    local conf=$1 port=$2 cert=$3 key=$4
    grep -q "^ *listen 127\.0\.0\.1:$port backlog=4096;\$" "$conf" ||
        bench_die "tls: no 'listen 127.0.0.1:$port backlog=4096;' line in $conf"
    sed -i "s|^\( *\)listen 127\.0\.0\.1:$port backlog=4096;\$|\1listen 127.0.0.1:$port ssl backlog=4096;\\
\1ssl_certificate $cert;\\
\1ssl_certificate_key $key;\\
\1ssl_protocols TLSv1.2 TLSv1.3;|" "$conf"
}

# tls_wait_https URL PID CA [TIMEOUT_S]: polls until URL answers 200 over
# TLS with the certificate verified against CA (name: IP 127.0.0.1).
tls_wait_https() {
    local url=$1 pid=$2 ca=$3 deadline=$((SECONDS + ${4:-15}))
    while [ "$SECONDS" -lt "$deadline" ]; do
        bench_alive "$pid" || return 1
        if curl -fsS -o /dev/null -m 1 --cacert "$ca" "$url" 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

# tls_session PORT CA: prints what a default OpenSSL client negotiates with
# 127.0.0.1:PORT offering ALPN http/1.1, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384,
# ALPN http/1.1, verify ok" (wrk links the same OpenSSL with its defaults).
tls_session() {
    local out proto cipher alpn verify
    out=$(timeout 10 openssl s_client -connect "127.0.0.1:$1" -CAfile "$2" -alpn http/1.1 \
        </dev/null 2>/dev/null) || true
    proto=$(awk '/^New, /{ sub(/,$/, "", $2); print $2; exit }' <<<"$out")
    cipher=$(awk '/^New, .*Cipher is /{ print $NF; exit }' <<<"$out")
    alpn=$(awk -F': ' '/^ALPN protocol:/{ print $2; exit }' <<<"$out")
    verify=$(awk -F': ' '/Verify return code:/{ print $2; exit }' <<<"$out")
    echo "${proto:-?} ${cipher:-?}, ALPN ${alpn:-none}, verify ${verify:-?}"
}

# tls_nginx NAME CPUS PORT KEY=VALUE...: like bench_nginx with proxy.conf,
# but the proxy's listen terminates TLS with TLS_CERT/TLS_KEY; waits until
# https://127.0.0.1:PORT/ answers. Sets BENCH_LAST_PID.
tls_nginx() {
    local name=$1 cpus=$2 port=$3 prefix
    shift 3
    prefix=$BENCH_WORK/$name
    mkdir -p "$prefix/tmp"
    bench_render "$BENCH_ROOT/bench/nginx/proxy.conf" "$prefix/nginx.conf" "PREFIX=$prefix" "PORT=$port" "$@"
    tls_nginx_conf "$prefix/nginx.conf" "$port" "$TLS_CERT" "$TLS_KEY"
    local cmd=(nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" -g 'daemon off;')
    [ "$cpus" = - ] || cmd=(taskset -c "$cpus" "${cmd[@]}")
    bench_start "$name" "${cmd[@]}"
    tls_wait_https "https://127.0.0.1:$port/" "$BENCH_LAST_PID" "$TLS_CERT" ||
        bench_die "nginx $name did not come up over TLS: $(tail -n 3 "$prefix/error.log" "$BENCH_WORK/$name.log" 2>/dev/null)"
}

# tls_shape SHAPE PROXY_CPUS WRK_CPUS WORKERS: like core_shape in run.sh
# (same upstream, same pinning, wrk at c32 and c4), the proxies over https.
# Each connection count is measured in TLS_ROUNDS rounds of TLS_ROUND_SECS,
# shadowtee and nginx back to back in each round, the order flipped every
# round, so slow changes in the machine's load hit both alike; report.py
# pairs them by round (rows "rN" in the shadow column of results.tsv).
# Uses lib.sh's next_port and run.sh's ST, ST_OK, ST_WHY, ST_COMMON, BODY.
tls_shape() {
    local shape=$1 cpus=$2 wrk_cpus=$3 workers=$4
    local up_port st_port st_admin ng_port up_pid st_pid=- ng_pid c r
    local BENCH_SECS=$TLS_ROUND_SECS # read by bench_measure
    next_port; up_port=$NEXT_PORT
    next_port; st_port=$NEXT_PORT
    next_port; st_admin=$NEXT_PORT
    next_port; ng_port=$NEXT_PORT
    BENCH_WRK_CPUS=$wrk_cpus
    bench_nginx "tls-$shape-upstream" upstream.conf "$cpus" "$up_port" "WORKERS=$workers" "BODY=$BODY"
    up_pid=$BENCH_LAST_PID
    if [ "$ST_OK" != 1 ]; then
        bench_skip "tls/$shape/shadowtee" "$ST_WHY"
    elif bench_shadowtee "tls-$shape-shadowtee" "$ST" "$cpus" "$st_port" "$st_admin" \
        --primary "127.0.0.1:$up_port" --workers "$workers" "${ST_COMMON[@]}" \
        --tls-cert "$TLS_CERT" --tls-key "$TLS_KEY"; then
        st_pid=$BENCH_LAST_PID
        if ! tls_wait_https "https://127.0.0.1:$st_port/" "$st_pid" "$TLS_CERT" 10; then
            bench_skip "tls/$shape/shadowtee" "no 200 over https from shadowtee with the certificate verified"
            bench_stop "$st_pid"
            st_pid=-
        fi
    else
        bench_skip "tls/$shape/shadowtee" "$BENCH_FAIL_REASON"
    fi
    tls_nginx "tls-$shape-nginx" "$cpus" "$ng_port" "WORKERS=$workers" "UPSTREAM_PORT=$up_port"
    ng_pid=$BENCH_LAST_PID
    if [ "$shape" = unpinned ]; then
        [ "$st_pid" = - ] || bench_note "tls: shadowtee negotiates $(tls_session "$st_port" "$TLS_CERT")"
        bench_note "tls: nginx negotiates $(tls_session "$ng_port" "$TLS_CERT")"
    fi
    for c in 32 4; do
        for ((r = 1; r <= TLS_ROUNDS; r++)); do
            if [ $((r % 2)) = 0 ]; then
                bench_measure tls "$shape" nginx "r$r" "$c" "https://127.0.0.1:$ng_port/" "$ng_pid"
            fi
            [ "$st_pid" = - ] || bench_measure tls "$shape" shadowtee "r$r" "$c" "https://127.0.0.1:$st_port/" "$st_pid"
            if [ $((r % 2)) = 1 ]; then
                bench_measure tls "$shape" nginx "r$r" "$c" "https://127.0.0.1:$ng_port/" "$ng_pid"
            fi
        done
    done
    bench_stop "$ng_pid"
    [ "$st_pid" = - ] || bench_stop "$st_pid"
    bench_stop "$up_pid"
    BENCH_WRK_CPUS=
}

# tls_section: the certificate in BENCH_WORK, then both shapes.
# BENCH_TLS_ROUNDS (default 3) rounds of half BENCH_SECS each (rounded up).
tls_section() {
    TLS_ROUNDS=${BENCH_TLS_ROUNDS:-3}
    [[ $TLS_ROUNDS =~ ^[1-9][0-9]?$ ]] || bench_die "BENCH_TLS_ROUNDS must be 1 to 99, got '$TLS_ROUNDS'"
    TLS_ROUND_SECS=$(((BENCH_SECS + 1) / 2))
    if ! command -v openssl >/dev/null; then
        bench_skip tls "the openssl CLI is missing (apt-get install openssl)"
        return 0
    fi
    if ! tls_make_cert "$BENCH_WORK"; then
        bench_skip tls "$BENCH_FAIL_REASON"
        return 0
    fi
    bench_note "tls: one EC P-256 key and self-signed certificate (SAN IP:127.0.0.1, openssl req) for shadowtee and nginx; ssl_protocols TLSv1.2 TLSv1.3 in nginx; the upstream behind both is plain HTTP; wrk (linked with $(ldd "$(command -v wrk)" 2>/dev/null | awk '/libssl/{print $1; exit}')) keeps its connections alive: one full handshake per connection per wrk run (32 or 4 per measured run, against tens of thousands of requests)"
    bench_note "tls: $TLS_ROUNDS rounds of ${TLS_ROUND_SECS}s (+${BENCH_WARMUP_SECS}s warm-up) per proxy and connection count, shadowtee and nginx back to back, order flipped each round; a tls row gives the median of its rounds, its req/s ratio the median of the per-round ratios"
    tls_shape unpinned - "" 2
    tls_shape sidecar 0 1 1
}
