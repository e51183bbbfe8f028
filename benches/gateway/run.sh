#!/usr/bin/env bash
# Side-by-side HTTP/1.1 proxy benchmark on loopback: direct, nginx, haproxy
# and msp-gateway in front of one 1 KB backend.
#
# Installs nginx, haproxy and wrk from Debian's packages when missing, builds
# msp-gateway in release mode, pins each proxy to CPU 0 and the backend and
# wrk to CPU 1, and runs wrk at 1, 64 and 256 connections against each. It
# prints RPS, p50/p99/p99.9 latency, the proxy's CPU use and RSS, the ratios
# to haproxy, and the RSS of each proxy holding 1,000 idle keep-alive
# connections.
#
#   benches/gateway/run.sh                 # 10 s per run
#   DURATION=30s CONNS="64" benches/gateway/run.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-1 64 256}"
IDLE="${IDLE:-1000}"
# Which proxies to run (direct is always measured).
PROXIES="${PROXIES:-nginx haproxy msp-gateway}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
BACKEND_PORT=18181 NGINX_PORT=18182 HAPROXY_PORT=18183 MSP_PORT=18184

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi
export PATH="$PATH:/usr/sbin"

gateway_bin="$root/target/release/msp-gateway"
if [[ " $PROXIES " == *" msp-gateway "* ]]; then
    (cd "$root" && cargo build --release -q -p msp-gateway --bin msp-gateway)
fi

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

body="$(head -c 1024 /dev/zero | tr '\0' 'x')"
mkdir -p "$work/logs"

# Backend: nginx answering 1 KB from memory, on CPU 1.
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
    }
}
CONF

# nginx as a proxy, keepalive pool to the backend.
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $work/logs/nginx.err;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 128; }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
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
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend be
backend be
    server b1 127.0.0.1:$BACKEND_PORT
CONF

cat >"$work/gateway.yaml" <<CONF
listen: "127.0.0.1:$MSP_PORT"
routes:
  - path: "/*"
    service: "backend"
services:
  backend:
    instances: ["127.0.0.1:$BACKEND_PORT"]
CONF

taskset -c 1 nginx -c "$work/backend.conf" -p "$work" & pids+=($!)
declare -A PID PORT=([direct]=$BACKEND_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [msp-gateway]=$MSP_PORT)
PID[direct]=0
for name in $PROXIES; do
    case "$name" in
        nginx) taskset -c 0 nginx -c "$work/nginx.conf" -p "$work" & ;;
        haproxy) taskset -c 0 haproxy -f "$work/haproxy.cfg" & ;;
        msp-gateway) RUST_LOG=warn taskset -c 0 "$gateway_bin" --threads 1 --config "$work/gateway.yaml" >"$work/logs/gateway.log" 2>&1 & ;;
        *) echo "unknown proxy $name" >&2; exit 2 ;;
    esac
    pids+=($!); PID[$name]=$!
done

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "port $1 did not open" >&2; exit 1
}
for name in direct $PROXIES; do wait_port "${PORT[$name]}"; done
for name in direct $PROXIES; do p="${PORT[$name]}"
    curl -fsS -o /dev/null "http://127.0.0.1:$p/" || { echo "port $p does not answer 200" >&2; cat "$work/logs/gateway.log" >&2; exit 1; }
done

# All processes of a proxy (nginx: master + worker).
proc_tree() { echo "$1"; pgrep -P "$1" || true; }
cpu_ticks() { local t=0; for p in $(proc_tree "$1"); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
rss_kb() { local t=0; for p in $(proc_tree "$1"); do
    t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }
hz="$(getconf CLK_TCK)"
secs="${DURATION%s}"

declare -A RPS P99
printf '%-12s %6s %10s %9s %9s %9s %7s %8s\n' proxy conns rps p50_us p99_us p999_us cpu% rss_MB
for c in $CONNS; do
    threads=$(( c < 2 ? 1 : 2 ))
    for name in direct $PROXIES; do
        port="${PORT[$name]}" pid="${PID[$name]}"
        # warm-up
        taskset -c 1 wrk -t1 -c"$c" -d1s "http://127.0.0.1:$port/" >/dev/null
        before=0; [ "$pid" != 0 ] && before="$(cpu_ticks "$pid")"
        out="$(taskset -c 1 wrk -t"$threads" -c"$c" -d"$DURATION" -s "$here/latency.lua" "http://127.0.0.1:$port/")"
        line="$(grep '^RESULT' <<<"$out")"
        eval "${line#RESULT }"
        cpu="-"; rss="-"
        if [ "$pid" != 0 ]; then
            after="$(cpu_ticks "$pid")"
            cpu="$(awk -v a="$after" -v b="$before" -v hz="$hz" -v s="$secs" 'BEGIN{printf "%.0f", 100*(a-b)/hz/s}')"
            rss="$(awk -v k="$(rss_kb "$pid")" 'BEGIN{printf "%.1f", k/1024}')"
        fi
        RPS[$name,$c]=$rps; P99[$name,$c]=$p99
        printf '%-12s %6s %10s %9s %9s %9s %7s %8s%s\n' "$name" "$c" "$rps" "$p50" "$p99" "$p999" "$cpu" "$rss" \
            "$([ "$errors" != 0 ] && echo "  errors=$errors")"
    done
done

echo
echo "ratios (msp-gateway / peer): RPS and p99"
for c in $CONNS; do
    [ -n "${RPS[msp-gateway,$c]:-}" ] || continue
    for peer in haproxy nginx; do
        [ -n "${RPS[$peer,$c]:-}" ] || continue
        awk -v c="$c" -v peer="$peer" -v mr="${RPS[msp-gateway,$c]}" -v pr="${RPS[$peer,$c]}" \
            -v ml="${P99[msp-gateway,$c]}" -v pl="${P99[$peer,$c]}" \
            'BEGIN{printf "  c=%-4s vs %-8s RPS %.2fx  p99 %.2fx\n", c, peer, mr/pr, ml/pl}'
    done
done

echo
echo "RSS holding $IDLE idle keep-alive connections (MB)"
for name in $PROXIES; do
    port="${PORT[$name]}" pid="${PID[$name]}"
    exec {hold}> >(python3 "$here/idle_conns.py" 127.0.0.1 "$port" "$IDLE" >"$work/idle.out")
    for _ in $(seq 1 200); do grep -q READY "$work/idle.out" 2>/dev/null && break; sleep 0.1; done
    printf '  %-12s %s\n' "$name" "$(awk -v k="$(rss_kb "$pid")" 'BEGIN{printf "%.1f", k/1024}')"
    exec {hold}>&-
    sleep 0.5
done
