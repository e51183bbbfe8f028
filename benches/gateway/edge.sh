#!/usr/bin/env bash
# Edge policies side by side (issue 11): the same 1 KB backend behind
# msp-gateway, haproxy and nginx, each proxy pinned to CPU 0 (one thread /
# worker), backend and wrk on CPU 1, wrk at $CONNS connections:
#
#   plain      proxied, no policy (the baseline of each proxy)
#   jwt        a bearer token verified per request: RS256 with a pinned
#              algorithm — msp-gateway's jwt provider (JWKS file) against
#              haproxy's jwt_verify (2.5+) with the same key; nginx OSS has
#              no JWT verification
#   cache      a cache hit: msp-gateway's cache_ttl against nginx's
#              proxy_cache (haproxy's cache is also measured)
#   limited    a rate-limited route whose quota is never reached (the cost
#              of counting): msp-gateway's rate_limit against haproxy's
#              stick-table rate and nginx's limit_req
#
# Prints RPS, p50/p99 (µs) and errors per proxy and scenario, then the
# ratios msp-gateway / peer. Installs nginx, haproxy, wrk and openssl from
# Debian's packages when missing; builds msp-gateway in release mode.
#
#   benches/gateway/edge.sh
#   DURATION=5s CONNS=64 benches/gateway/edge.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
BACKEND_PORT=18281 NGINX_PORT=18282 HAPROXY_PORT=18283 MSP_PORT=18284

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi
export PATH="$PATH:/usr/sbin"

(cd "$root" && cargo build --release -q -p msp-gateway --bin msp-gateway)
target="$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
gateway_bin="$target/release/msp-gateway"

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/logs" "$work/nginx-cache"
# nginx's workers run unprivileged: they must reach and write the cache.
chmod 755 "$work"
chmod 777 "$work/nginx-cache"

# An RS256 key, its JWKS, and one token signed with it (valid for a day).
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
openssl genrsa -out "$work/key.pem" 2048 2>/dev/null
openssl rsa -in "$work/key.pem" -pubout -out "$work/pub.pem" 2>/dev/null
n="$(openssl rsa -in "$work/key.pem" -noout -modulus | cut -d= -f2 | xxd -r -p | b64url)"
printf '{"keys":[{"kty":"RSA","kid":"bench","alg":"RS256","use":"sig","n":"%s","e":"AQAB"}]}' "$n" >"$work/jwks.json"
now="$(date +%s)"
header="$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)"
claims="$(printf '{"sub":"bench-client","iss":"https://idp.bench","aud":"gateway","exp":%d}' $((now + 86400)) | b64url)"
sig="$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -sign "$work/key.pem" -binary | b64url)"
token="$header.$claims.$sig"

body="$(head -c 1024 /dev/zero | tr '\0' 'x')"
cat >"$work/backend.conf" <<CONF
worker_processes 1;
daemon off;
error_log $work/logs/backend.err;
pid $work/backend.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$BACKEND_PORT backlog=4096;
        location / { default_type text/plain; return 200 "$body"; }
        location /cache/ { default_type text/plain; add_header Cache-Control "max-age=300"; return 200 "$body"; }
    }
}
CONF

cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $work/logs/nginx.err;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    proxy_cache_path $work/nginx-cache keys_zone=edge:10m;
    limit_req_zone \$binary_remote_addr zone=perip:10m rate=100000000r/s;
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 128; }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location / { proxy_pass http://backend; }
        location /cache/ { proxy_pass http://backend; proxy_cache edge; proxy_cache_valid 200 300s; }
        location /limited/ { limit_req zone=perip burst=1000000 nodelay; proxy_pass http://backend; }
    }
}
CONF

cat >"$work/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
cache edge
    total-max-size 64
    max-age 300
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    stick-table type ip size 100k expire 60s store http_req_rate(1s)
    acl jwt_path path_beg /jwt/
    acl limited_path path_beg /limited/
    acl cache_path path_beg /cache/
    http-request set-var(txn.bearer) http_auth_bearer if jwt_path
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg') if jwt_path
    http-request deny deny_status 401 if jwt_path !{ var(txn.alg) -m str RS256 }
    http-request deny deny_status 401 if jwt_path !{ var(txn.bearer),jwt_verify(txn.alg,"$work/pub.pem") -m int 1 }
    http-request track-sc0 src if limited_path
    http-request deny deny_status 429 if limited_path { sc_http_req_rate(0) gt 100000000 }
    http-request set-var(txn.cached) bool(true) if cache_path
    http-request cache-use edge if cache_path
    http-response cache-store edge if { var(txn.cached) -m bool }
    default_backend be
backend be
    server b1 127.0.0.1:$BACKEND_PORT
CONF

cat >"$work/gateway.yaml" <<CONF
listen: "127.0.0.1:$MSP_PORT"
routes:
  - path: "/jwt/*"
    service: backend
    auth_required: true
  - path: "/cache/*"
    service: backend
    cache_ttl: 300
  - path: "/limited/*"
    service: backend
    rate_limit: 100000000/s
  - path: "/*"
    service: backend
services:
  backend:
    instances: ["127.0.0.1:$BACKEND_PORT"]
auth:
  providers:
    idp:
      jwt:
        algorithms: [RS256]
        issuer: "https://idp.bench"
        audience: ["gateway"]
        jwks: { file: "$work/jwks.json" }
CONF

taskset -c 1 nginx -c "$work/backend.conf" -p "$work" & pids+=($!)
taskset -c 0 nginx -c "$work/nginx.conf" -p "$work" & pids+=($!); nginx_pid=$!
taskset -c 0 haproxy -f "$work/haproxy.cfg" & pids+=($!); haproxy_pid=$!
RUST_LOG=warn taskset -c 0 "$gateway_bin" --threads 1 --config "$work/gateway.yaml" >"$work/logs/gateway.log" 2>&1 & pids+=($!)

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "port $1 did not open" >&2; cat "$work/logs/gateway.log" >&2; exit 1
}
declare -A PORT=([msp-gateway]=$MSP_PORT [haproxy]=$HAPROXY_PORT [nginx]=$NGINX_PORT)
for p in $BACKEND_PORT "${PORT[@]}"; do wait_port "$p"; done

# Which proxy runs which scenario, and a check that each answers as it
# should before measuring (a JWT route must refuse a missing or bad token).
declare -A RUNS=([plain]="msp-gateway haproxy nginx" [jwt]="msp-gateway haproxy" [cache]="msp-gateway haproxy nginx" [limited]="msp-gateway haproxy nginx")
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
for proxy in msp-gateway haproxy; do
    url="http://127.0.0.1:${PORT[$proxy]}/jwt/x"
    [ "$(code -H "authorization: Bearer $token" "$url")" = 200 ] || { echo "$proxy refuses the good token" >&2; exit 1; }
    [ "$(code "$url")" = 401 ] || { echo "$proxy accepts a request without a token" >&2; exit 1; }
    [ "$(code -H "authorization: Bearer ${token}x" "$url")" = 401 ] || { echo "$proxy accepts a bad signature" >&2; exit 1; }
done
for proxy in msp-gateway haproxy nginx; do
    for path in /plain /cache/x /limited/x; do
        [ "$(code "http://127.0.0.1:${PORT[$proxy]}$path")" = 200 ] || { echo "$proxy: $path is not 200" >&2; exit 1; }
    done
done
hit="$(curl -s -D - -o /dev/null "http://127.0.0.1:$MSP_PORT/cache/x" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')"
[ "$hit" = HIT ] || { echo "msp-gateway cache is not hit ($hit)" >&2; exit 1; }

printf 'edge policies: %s connections, %s per run, load average %s\n' "$CONNS" "$DURATION" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %-12s %9s %9s %9s %7s\n' scenario proxy rps p50_us p99_us errors
declare -A RPS P99
threads=$(( CONNS < 2 ? 1 : 2 ))
for scenario in plain jwt cache limited; do
    case "$scenario" in
        plain) path=/plain ;; jwt) path=/jwt/x ;; cache) path=/cache/x ;; limited) path=/limited/x ;;
    esac
    for proxy in ${RUNS[$scenario]}; do
        url="http://127.0.0.1:${PORT[$proxy]}$path"
        hdr=(); [ "$scenario" = jwt ] && hdr=(-H "authorization: Bearer $token")
        taskset -c 1 wrk -t1 -c"$CONNS" -d1s "${hdr[@]}" "$url" >/dev/null
        out="$(taskset -c 1 wrk -t"$threads" -c"$CONNS" -d"$DURATION" "${hdr[@]}" -s "$here/latency.lua" "$url")"
        line="$(grep '^RESULT' <<<"$out")"
        eval "${line#RESULT }"
        RPS[$scenario,$proxy]=$rps; P99[$scenario,$proxy]=$p99
        printf '%-9s %-12s %9s %9s %9s %7s\n' "$scenario" "$proxy" "$rps" "$p50" "$p99" "$errors"
    done
done

echo
echo "ratios msp-gateway / peer (RPS, p99), and each proxy's scenario / its own plain RPS"
for scenario in plain jwt cache limited; do
    for peer in haproxy nginx; do
        [ -n "${RPS[$scenario,$peer]:-}" ] || continue
        awk -v s="$scenario" -v p="$peer" -v mr="${RPS[$scenario,msp-gateway]}" -v pr="${RPS[$scenario,$peer]}" \
            -v ml="${P99[$scenario,msp-gateway]}" -v pl="${P99[$scenario,$peer]}" \
            'BEGIN{printf "  %-8s vs %-8s RPS %.2fx  p99 %.2fx\n", s, p, mr/pr, ml/pl}'
    done
done
for proxy in msp-gateway haproxy nginx; do
    for scenario in jwt cache limited; do
        [ -n "${RPS[$scenario,$proxy]:-}" ] || continue
        awk -v s="$scenario" -v p="$proxy" -v r="${RPS[$scenario,$proxy]}" -v b="${RPS[plain,$proxy]}" \
            'BEGIN{printf "  %-12s %-8s %.2fx its plain RPS\n", p, s, r/b}'
    done
done
