#!/usr/bin/env bash
# Starts (and stops) the real backends msp's full test suite talks to:
# etcd, PostgreSQL, Redis and NATS with JetStream, all on 127.0.0.1.
#
#   scripts/services.sh start   # install what is missing, start what is down,
#                               # print the MSP_* variables to export
#   scripts/services.sh stop    # stop what `start` started (nothing else)
#   scripts/services.sh env     # print the MSP_* variables only
#
# On a fresh Debian/Ubuntu machine `start` installs the packages it needs with
# apt-get (etcd-server, protobuf-compiler, postgresql, redis-server,
# nats-server, and for the dashboard's browser test chromium, nodejs and npm)
# and playwright-core from npm into examples/ecommerce/tests/browser (it
# drives Debian's chromium; it never downloads a browser). Services already
# running are reused and left alone.
#
# Ports: etcd uses non-default ports (client 23790, peer 23800) and a
# temporary data directory, so it never collides with a system etcd.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${MSP_SERVICES_STATE:-$ROOT/.ci-work}"
mkdir -p "$STATE"
STARTED="$STATE/started"

ETCD_CLIENT_PORT="${MSP_ETCD_CLIENT_PORT:-23790}"
ETCD_PEER_PORT="${MSP_ETCD_PEER_PORT:-23800}"
export MSP_ETCD_ENDPOINT="${MSP_ETCD_ENDPOINT:-http://127.0.0.1:$ETCD_CLIENT_PORT}"
export MSP_POSTGRES_URL="${MSP_POSTGRES_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
export MSP_REDIS_URL="${MSP_REDIS_URL:-redis://127.0.0.1:6379}"
export MSP_NATS_URL="${MSP_NATS_URL:-nats://127.0.0.1:4222}"

log() { printf '[services] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian packages for the given commands when a command is missing.
# usage: need <command> <package> [<command> <package> ...]
need() {
    local missing=()
    while [ $# -gt 0 ]; do
        command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/lib/postgresql/$1" ] || missing+=("$2")
        shift 2
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Waits up to $2 seconds for port $1 (polling, bounded).
wait_port() {
    local port=$1 secs=${2:-30} i
    for ((i = 0; i < secs * 10; i++)); do
        port_open "$port" && return 0
        sleep 0.1
    done
    return 1
}

start_etcd() {
    if curl -fsS "$MSP_ETCD_ENDPOINT/version" >/dev/null 2>&1; then
        log "etcd already answers on $MSP_ETCD_ENDPOINT"
        return
    fi
    local data
    data="$(mktemp -d "${TMPDIR:-/tmp}/msp-etcd.XXXXXX")"
    log "starting etcd on 127.0.0.1:$ETCD_CLIENT_PORT (data $data)"
    setsid etcd --name msp-test --data-dir "$data" \
        --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "msp-test=http://127.0.0.1:$ETCD_PEER_PORT" \
        >"$STATE/etcd.log" 2>&1 </dev/null &
    echo "$!" >"$STATE/etcd.pid"
    echo "$data" >"$STATE/etcd.data"
    echo etcd >>"$STARTED"
    local i
    for ((i = 0; i < 300; i++)); do
        curl -fsS "$MSP_ETCD_ENDPOINT/version" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "etcd did not answer within 30 s; its log:"
    cat "$STATE/etcd.log" >&2
    return 1
}

start_postgres() {
    if port_open 5432; then
        log "PostgreSQL already answers on 5432"
    else
        local ver
        ver="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
        if [ -z "$ver" ]; then
            log "no PostgreSQL cluster found"
            return 1
        fi
        log "starting PostgreSQL $ver"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
        echo "postgres:$ver" >>"$STARTED"
        wait_port 5432 30 || { log "PostgreSQL did not start"; return 1; }
    fi
    # The tests connect as postgres/postgres over TCP. Under `trust` (this
    # project's CI machines) the password is ignored; on a stock Debian
    # install (md5/scram) it has to be set once.
    if command -v psql >/dev/null 2>&1 && ! psql "$MSP_POSTGRES_URL" -Atqc 'select 1' >/dev/null 2>&1; then
        log "setting the postgres user's password for TCP logins"
        as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
    fi
}

start_redis() {
    if port_open 6379; then
        log "Redis already answers on 6379"
        return
    fi
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /tmp --logfile "$STATE/redis.log" --pidfile "$STATE/redis.pid"
    echo redis >>"$STARTED"
    wait_port 6379 30 || { log "Redis did not start"; return 1; }
}

start_nats() {
    if port_open 4222; then
        log "NATS already answers on 4222"
        return
    fi
    local bin
    bin="$(command -v nats-server || echo /usr/sbin/nats-server)"
    log "starting NATS with JetStream"
    mkdir -p "$STATE/nats"
    setsid "$bin" -a 127.0.0.1 -p 4222 -js -sd "$STATE/nats" -l "$STATE/nats.log" </dev/null >/dev/null 2>&1 &
    echo "$!" >"$STATE/nats.pid"
    echo nats >>"$STARTED"
    wait_port 4222 30 || { log "NATS did not start"; return 1; }
}

print_env() {
    cat <<EOF
export MSP_ETCD_ENDPOINT=$MSP_ETCD_ENDPOINT
export MSP_POSTGRES_URL=$MSP_POSTGRES_URL
export MSP_REDIS_URL=$MSP_REDIS_URL
export MSP_NATS_URL=$MSP_NATS_URL
EOF
    if [ -x "$SPRING_CLIENT_VENV/bin/python" ]; then
        echo "export MSP_PYTHON=$SPRING_CLIENT_VENV/bin/python"
    fi
}

# playwright-core for the dashboard's browser test (tests/dashboard.rs),
# from the committed package-lock.json.
browser_test_deps() {
    local dir="$ROOT/examples/ecommerce/tests/browser"
    if [ ! -d "$dir/node_modules/playwright-core" ]; then
        log "installing playwright-core (npm ci in $dir)"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    fi
}

# config-client (PyPI) for msp-config's Spring client test
# (tests/spring_client.rs), in a virtualenv under $STATE so a Debian
# python3 (PEP 668) is left alone; the test finds it through MSP_PYTHON.
SPRING_CLIENT_VENV="$STATE/spring-client-venv"
spring_client_deps() {
    need python3 python3
    if ! python3 -m venv --help >/dev/null 2>&1; then
        log "installing python3-venv"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    if ! "$SPRING_CLIENT_VENV/bin/python" -c 'from config.spring import ConfigClient' 2>/dev/null; then
        log "installing config-client==1.5.0 (pip, virtualenv $SPRING_CLIENT_VENV)"
        python3 -m venv "$SPRING_CLIENT_VENV" >&2
        "$SPRING_CLIENT_VENV/bin/python" -m pip install --quiet --disable-pip-version-check config-client==1.5.0 >&2
    fi
}

start() {
    need protoc protobuf-compiler etcd etcd-server curl curl
    need chromium chromium node nodejs npm npm
    # ZooKeeper tests start private servers from Debian's jar (msp-discovery/tests/common).
    [ -f /usr/share/java/zookeeper.jar ] || need zkServer.sh zookeeper
    browser_test_deps
    spring_client_deps
    port_open 5432 || need pg_ctlcluster postgresql psql postgresql-client
    port_open 6379 || need redis-server redis-server
    port_open 4222 || need nats-server nats-server
    : >"$STARTED.new"
    [ -f "$STARTED" ] && cat "$STARTED" >>"$STARTED.new"
    mv "$STARTED.new" "$STARTED"
    start_etcd
    start_postgres
    start_redis
    start_nats
    print_env >"$STATE/services.env"
    log "all backends answer; variables in $STATE/services.env"
    print_env
}

stop() {
    [ -f "$STARTED" ] || return 0
    while read -r what; do
        case "$what" in
            etcd)
                if [ -f "$STATE/etcd.pid" ]; then
                    kill "$(cat "$STATE/etcd.pid")" 2>/dev/null || true
                    rm -rf "$(cat "$STATE/etcd.data" 2>/dev/null)" "$STATE/etcd.pid" "$STATE/etcd.data"
                fi
                ;;
            postgres:*) as_root pg_ctlcluster --skip-systemctl-redirect "${what#postgres:}" main stop || true ;;
            redis) [ -f "$STATE/redis.pid" ] && kill "$(cat "$STATE/redis.pid")" 2>/dev/null || true ;;
            nats) [ -f "$STATE/nats.pid" ] && kill "$(cat "$STATE/nats.pid")" 2>/dev/null || true ;;
        esac
    done <"$STARTED"
    rm -f "$STARTED"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    env) print_env ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
