#!/usr/bin/env bash
# The full test suite with its real backends: installs and starts etcd,
# PostgreSQL, Redis and NATS on 127.0.0.1 when they are missing (see
# scripts/services.sh), runs every test of every crate with every feature,
# and stops what it started. A backend test whose server is absent fails here
# (MSP_REQUIRE_BACKENDS=1) instead of skipping as plain `cargo test` does.
#
# Extra arguments go to `cargo test` (e.g. `scripts/test-all.sh -p msp-saga`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${MSP_SERVICES_STARTED_BY_CALLER:-0}" != 1 ]; then
    eval "$(scripts/services.sh start)"
    trap 'scripts/services.sh stop' EXIT
fi

export MSP_REQUIRE_BACKENDS=1
cargo test --workspace --all-features "$@"

# Loom model checks (issue 15): every interleaving of a few threads over
# msp-resilience's lock-free algorithms (GCRA cell, retry budget slots,
# breaker probe permits, bulkhead count), the real code built with
# `--cfg msp_loom` (src/sync.rs), in a target dir of its own so the build
# above is not redone. Skipped when arguments narrow the run to other packages.
if [ "$#" -eq 0 ] || [ "${MSP_LOOM:-0}" = 1 ]; then
    RUSTFLAGS="--cfg msp_loom" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom" \
        cargo test -p msp-resilience --release --lib loom_tests
fi
