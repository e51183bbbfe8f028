#!/usr/bin/env bash
# Load run through the gateway against the running e-commerce system (all
# seven services and msp-gateway in one process, SQLite files in a temp
# dir), with wrk from Debian's packages.
#
# Starts `ecommerce --gateway-config benches/ecommerce/gateway-load.yaml`
# (the seed's routes with their rate limits raised, so the run measures the
# system rather than 429s), then drives, each for DURATION at CONNS
# connections:
#   - GET /api/products/book-42       gateway → product-service (SQLite read)
#   - GET /api/orders/{id}            gateway (API-key auth) → order-service
#                                     (SQLite read + the saga's step log)
#   - POST /api/orders                gateway → order-service, which commits
#                                     the order, its outbox event and the
#                                     saga start, then runs the place-order
#                                     saga (inventory → payment → shipping)
# and prints requests/s, p50/p99 latency and the errors (socket errors and
# non-2xx answers; a correct run has none).
#
#   benches/ecommerce/run.sh
#   DURATION=30s CONNS=64 benches/ecommerce/run.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
DURATION="${DURATION:-15s}"
CONNS="${CONNS:-32}"
THREADS="${THREADS:-2}"
GW=http://127.0.0.1:18080

command -v wrk >/dev/null || {
    echo "installing wrk" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2
}
(cd "$root" && cargo build --release -q -p ecommerce)
target="$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

work="$(mktemp -d)"
pid=""
cleanup() {
    [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The data directory is the working directory's target/ecommerce-data:
# run from the temp dir so each run starts from empty stores.
mkdir -p "$work/run"
(cd "$work/run" && RUST_LOG=error exec "$target/release/ecommerce" \
    --gateway-config "$here/gateway-load.yaml" >"$work/ecommerce.log" 2>&1) &
pid=$!
for _ in $(seq 1 100); do
    curl -fsS "$GW/api/products" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "$GW/api/products" >/dev/null

order_json='{"sku":"book-42","quantity":1,"address":"1 Main St"}'
order_id="$(curl -fsS -X POST "$GW/api/orders" -H 'x-api-key: demo-key' \
    -H 'content-type: application/json' -d "$order_json" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"

cat >"$work/report.lua" <<'LUA'
-- Prints one machine-readable line after the run.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.0f p50_us=%d p99_us=%d requests=%d socket_errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status))
end
LUA
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$order_json'
wrk.headers["content-type"] = "application/json"
wrk.headers["x-api-key"] = "demo-key"
$(cat "$work/report.lua")
LUA

run() {
    local name=$1 url=$2 script=$3
    shift 3
    local line
    line="$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$script" "$@" "$url" | grep '^RESULT')"
    printf '%-22s %s\n' "$name" "${line#RESULT }"
}

echo "ecommerce load run: $CONNS connections, $THREADS wrk threads, $DURATION each ($(nproc) CPUs, wrk on the same machine)"
run "GET product" "$GW/api/products/book-42" "$work/report.lua"
run "GET order (auth)" "$GW/api/orders/$order_id" "$work/report.lua" -H 'x-api-key: demo-key'
run "POST order (saga)" "$GW/api/orders" "$work/post.lua"
sagas="$(curl -fsS "http://127.0.0.1:19090/dashboard/state" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(" ".join(sorted({x["state"] for x in s["sagas"]})))')"
echo "latest sagas' states after the run: $sagas"
