#!/usr/bin/env bash
# msp's mTLS beside nginx with `ssl_verify_client on`, with the same
# certificates, on loopback; and each beside its plain-HTTP self.
#
# Installs nginx (nginx-light) and openssl from Debian's packages when
# missing, builds msp-core's dev_ca, mtls_server and mtls_load examples in
# release mode, and creates a trust domain `bench` with the development CA:
# an X509-SVID for spiffe://bench/bench-server (both servers present it) and
# one for spiffe://bench/bench-client (every client presents it). Four
# servers answer `GET /` with the same 6-byte body, each pinned to CPU 0 with
# one worker (nginx: worker_processes 1; msp: a current-thread runtime):
#
#   msp-mtls     mtls_server, MtlsListener strict mode + with_peer_identity
#   nginx-mtls   ssl_verify_client on, ssl_client_certificate = the CA
#   msp-plain    mtls_server --plain (same axum app over TCP)
#   nginx-plain  the same nginx, a plain listener
#
# Session resumption is off on both mTLS servers (msp never resumes; nginx:
# ssl_session_cache off, ssl_session_tickets off): every connection is a
# full handshake with a client certificate. Clients run on CPU 1:
#
#   1. handshakes: `openssl s_time -new -www /` with the client certificate
#      (a full TLS 1.3 handshake + one HTTP/1.0 GET per connection; the
#      response only comes once the server has verified the certificate),
#      HS_CLIENTS processes in parallel. mTLS servers only.
#   2. new connection + GET: mtls_load --new-conn (rustls client, the same
#      for all four servers), NEW_CONNS concurrent connections.
#   3. keep-alive GET: mtls_load, CONNS concurrent keep-alive connections
#      (wrk cannot present a client certificate; the same client measures
#      all four servers).
#
# Before measuring it checks, with openssl s_client, that each mTLS server
# answers 200 to a client presenting the certificate and verifies the
# server's chain against the CA, and refuses a client without one.
# Prints rates, latency, the server's CPU use and CPU time per
# connection/request, the ratios msp/nginx and mTLS/plain, and the load
# average (other processes on the machine skew every figure).
#
#   benches/mtls/run.sh                     # 10 s per run
#   DURATION=5 CONNS="1 32" benches/mtls/run.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
DURATION="${DURATION:-10}"
DURATION="${DURATION%s}"
CONNS="${CONNS:-1 32}"
NEW_CONNS="${NEW_CONNS:-4}"
HS_CLIENTS="${HS_CLIENTS:-2}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
MSP_MTLS_PORT=18281 NGINX_MTLS_PORT=18282 MSP_PLAIN_PORT=18283 NGINX_PLAIN_PORT=18284

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi
export PATH="$PATH:/usr/sbin"

(cd "$root" && cargo build --release -q -p msp-core --features tls \
    --example dev_ca --example mtls_server --example mtls_load)
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples"

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/logs"
certs="$work/certs"
"$bin/dev_ca" --trust-domain bench --out "$certs" bench-server bench-client >/dev/null

cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $work/logs/nginx.err;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$NGINX_MTLS_PORT ssl backlog=4096;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate $certs/bench-server.pem;
        ssl_certificate_key $certs/bench-server-key.pem;
        ssl_client_certificate $certs/ca.pem;
        ssl_verify_client on;
        ssl_session_cache off;
        ssl_session_tickets off;
        location / { default_type "text/plain; charset=utf-8"; return 200 "hello\n"; }
    }
    server {
        listen 127.0.0.1:$NGINX_PLAIN_PORT backlog=4096;
        location / { default_type "text/plain; charset=utf-8"; return 200 "hello\n"; }
    }
}
CONF

taskset -c 0 nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
nginx_pid=$!
taskset -c 0 "$bin/mtls_server" --threads 1 --dir "$certs" --service bench-server \
    --listen "127.0.0.1:$MSP_MTLS_PORT" >"$work/logs/msp-mtls.log" 2>&1 & pids+=($!)
msp_mtls_pid=$!
taskset -c 0 "$bin/mtls_server" --threads 1 --plain \
    --listen "127.0.0.1:$MSP_PLAIN_PORT" >"$work/logs/msp-plain.log" 2>&1 & pids+=($!)
msp_plain_pid=$!

SERVERS="msp-mtls nginx-mtls msp-plain nginx-plain"
declare -A PORT=([msp-mtls]=$MSP_MTLS_PORT [nginx-mtls]=$NGINX_MTLS_PORT
    [msp-plain]=$MSP_PLAIN_PORT [nginx-plain]=$NGINX_PLAIN_PORT)
declare -A PID=([msp-mtls]=$msp_mtls_pid [nginx-mtls]=$nginx_pid
    [msp-plain]=$msp_plain_pid [nginx-plain]=$nginx_pid)

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "port $1 did not open" >&2; cat "$work"/logs/* >&2; exit 1
}
for s in $SERVERS; do wait_port "${PORT[$s]}"; done

# An HTTP/1.0 GET over openssl s_client; prints the status line.
tls_get() { # port [extra s_client args...]
    local port="$1"; shift
    printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -quiet -verify_return_error \
        -connect "127.0.0.1:$port" -CAfile "$certs/ca.pem" "$@" 2>/dev/null | head -1 | tr -d '\r' || true
}
client_cert=(-cert "$certs/bench-client.pem" -key "$certs/bench-client-key.pem")
echo "checks:"
for s in msp-mtls nginx-mtls; do
    port="${PORT[$s]}"
    with="$(tls_get "$port" "${client_cert[@]}")"
    without="$(tls_get "$port")"
    proto="$(timeout 10 openssl s_client -brief -connect "127.0.0.1:$port" -CAfile "$certs/ca.pem" \
        "${client_cert[@]}" </dev/null 2>&1 | awk -F': ' '/^(Protocol version|Ciphersuite|Server Temp Key)/ {printf "%s ", $2}')"
    printf '  %-11s with client cert: %-16s without: %-26s %s\n' "$s" "'$with'" "'${without:-no response}'" "$proto"
    [[ "$with" == "HTTP/1."?" 200 OK" ]] || { echo "$s does not answer 200 with the client certificate" >&2; exit 1; }
    [[ "$without" != *" 200 "* ]] || { echo "$s answers 200 without a client certificate" >&2; exit 1; }
done
for s in msp-plain nginx-plain; do
    curl -fsS -o /dev/null "http://127.0.0.1:${PORT[$s]}/" || { echo "$s does not answer 200" >&2; exit 1; }
done

proc_tree() { echo "$1"; pgrep -P "$1" || true; }
cpu_ticks() { local t=0; for p in $(proc_tree "$1"); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
hz="$(getconf CLK_TCK)"
now() { date +%s.%N; }
# cpu% and CPU microseconds per operation: ticks_before ticks_after seconds ops
cpu_use() { awk -v a="$2" -v b="$1" -v hz="$hz" -v s="$3" -v n="$4" \
    'BEGIN{printf "%.0f %.0f\n", 100*(a-b)/hz/s, (n > 0 ? 1e6*(a-b)/hz/n : 0)}'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo
echo "load average before: $(load)   (nproc $(nproc))"
declare -A HS NC KA KA99 NC99

echo
echo "1. full handshakes with a client certificate: openssl s_time -new -www / ($HS_CLIENTS clients, ${DURATION}s)"
printf '  %-11s %9s %8s %11s %11s\n' server conns/s cpu% cpu_us/conn bytes/conn
for s in msp-mtls nginx-mtls; do
    port="${PORT[$s]}" pid="${PID[$s]}"
    taskset -c 1 openssl s_time -connect "127.0.0.1:$port" -new "${client_cert[@]}" \
        -CAfile "$certs/ca.pem" -www / -time 1 >/dev/null 2>&1 # warm-up
    before="$(cpu_ticks "$pid")"; t0="$(now)"
    clients=()
    for i in $(seq 1 "$HS_CLIENTS"); do
        taskset -c 1 openssl s_time -connect "127.0.0.1:$port" -new "${client_cert[@]}" \
            -CAfile "$certs/ca.pem" -www / -time "$DURATION" >"$work/stime.$i" 2>&1 &
        clients+=($!)
    done
    wait "${clients[@]}"
    t1="$(now)"; after="$(cpu_ticks "$pid")"
    n=0 bytes=0
    for i in $(seq 1 "$HS_CLIENTS"); do
        read -r c b < <(awk '/connections in .* real seconds/ {print $1, $(NF-4)}' "$work/stime.$i")
        n=$((n + ${c:-0})); bytes="${b:-0}"
    done
    secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')"
    rate="$(awk -v n="$n" -v s="$secs" 'BEGIN{printf "%.0f", n/s}')"
    read -r cpu per < <(cpu_use "$before" "$after" "$secs" "$n")
    HS[$s]=$rate; HS[$s,cpu]=$per
    printf '  %-11s %9s %8s %11s %11s\n' "$s" "$rate" "$cpu" "$per" "$bytes"
done

# mtls_load against one server: prints "rps p50 p99 p999 errors reconnects cpu% cpu_us"
load_run() { # server conns [--new-conn]
    local s="$1" c="$2"; shift 2
    local port="${PORT[$s]}" pid="${PID[$s]}" args=(--target "127.0.0.1:${PORT[$s]}" --conns "$c")
    if [[ "$s" == *-plain ]]; then args+=(--plain); else args+=(--dir "$certs" --service bench-client); fi
    taskset -c 1 "$bin/mtls_load" "${args[@]}" "$@" --warmup 0 --duration 1 >/dev/null
    local before after out t0 t1
    before="$(cpu_ticks "$pid")"; t0="$(now)"
    out="$(taskset -c 1 "$bin/mtls_load" "${args[@]}" "$@" --warmup 0 --duration "$DURATION")"
    t1="$(now)"; after="$(cpu_ticks "$pid")"
    local line; line="$(grep '^RESULT' <<<"$out")"
    local rps p50 p99 p999 requests errors reconnects
    eval "${line#RESULT }"
    local secs; secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')"
    echo "$rps $p50 $p99 $p999 $errors $reconnects $(cpu_use "$before" "$after" "$secs" "$requests")"
}

echo
echo "2. new connection + GET: mtls_load --new-conn ($NEW_CONNS connections, ${DURATION}s)"
printf '  %-11s %9s %8s %8s %8s %11s %7s\n' server conns/s p50_us p99_us cpu% cpu_us/conn errors
for s in $SERVERS; do
    out="$(load_run "$s" "$NEW_CONNS" --new-conn)"
    read -r rps p50 p99 _ errors _ cpu per <<<"$out"
    NC[$s]=$rps; NC99[$s]=$p99; NC[$s,cpu]=$per
    printf '  %-11s %9s %8s %8s %8s %11s %7s\n' "$s" "$rps" "$p50" "$p99" "$cpu" "$per" "$errors"
done

echo
echo "3. keep-alive GET: mtls_load (${DURATION}s)"
printf '  %-11s %5s %9s %8s %8s %8s %8s %10s %7s %5s\n' server conns req/s p50_us p99_us p999_us cpu% cpu_us/req errors recon
for c in $CONNS; do
    for s in $SERVERS; do
        out="$(load_run "$s" "$c")"
        read -r rps p50 p99 p999 errors reconnects cpu per <<<"$out"
        KA[$s,$c]=$rps; KA99[$s,$c]=$p99; KA[$s,$c,cpu]=$per
        printf '  %-11s %5s %9s %8s %8s %8s %8s %10s %7s %5s\n' "$s" "$c" "$rps" "$p50" "$p99" "$p999" "$cpu" "$per" "$errors" "$reconnects"
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2fx", a/b; else print "-" }'; }
echo
echo "ratios msp / nginx (rate, p99, server CPU per op; rate > 1 and CPU < 1 favour msp)"
printf '  %-34s rate %6s  cpu/conn %6s\n' "handshakes (s_time), mTLS" "$(ratio "${HS[msp-mtls]}" "${HS[nginx-mtls]}")" \
    "$(ratio "${HS[msp-mtls,cpu]}" "${HS[nginx-mtls,cpu]}")"
for kind in mtls plain; do
    printf '  %-34s rate %6s  p99 %6s  cpu/conn %6s\n' "new conn + GET, $kind" \
        "$(ratio "${NC[msp-$kind]}" "${NC[nginx-$kind]}")" "$(ratio "${NC99[msp-$kind]}" "${NC99[nginx-$kind]}")" \
        "$(ratio "${NC[msp-$kind,cpu]}" "${NC[nginx-$kind,cpu]}")"
    for c in $CONNS; do
        printf '  %-34s rate %6s  p99 %6s  cpu/req  %6s\n' "keep-alive c=$c, $kind" \
            "$(ratio "${KA[msp-$kind,$c]}" "${KA[nginx-$kind,$c]}")" "$(ratio "${KA99[msp-$kind,$c]}" "${KA99[nginx-$kind,$c]}")" \
            "$(ratio "${KA[msp-$kind,$c,cpu]}" "${KA[nginx-$kind,$c,cpu]}")"
    done
done
echo
echo "ratios mTLS / plain, same server (rate, p99, server CPU per op)"
for srv in msp nginx; do
    printf '  %-34s rate %6s  p99 %6s  cpu/conn %6s\n' "$srv new conn + GET" \
        "$(ratio "${NC[$srv-mtls]}" "${NC[$srv-plain]}")" "$(ratio "${NC99[$srv-mtls]}" "${NC99[$srv-plain]}")" \
        "$(ratio "${NC[$srv-mtls,cpu]}" "${NC[$srv-plain,cpu]}")"
    for c in $CONNS; do
        printf '  %-34s rate %6s  p99 %6s  cpu/req  %6s\n' "$srv keep-alive c=$c" \
            "$(ratio "${KA[$srv-mtls,$c]}" "${KA[$srv-plain,$c]}")" "$(ratio "${KA99[$srv-mtls,$c]}" "${KA99[$srv-plain,$c]}")" \
            "$(ratio "${KA[$srv-mtls,$c,cpu]}" "${KA[$srv-plain,$c,cpu]}")"
    done
done
echo
echo "load average after: $(load)"
