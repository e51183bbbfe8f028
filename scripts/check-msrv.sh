#!/usr/bin/env bash
# Checks that each workspace crate's `rust-version` is honest: at least the
# highest `rust-version` declared by any crate in its normal dependency
# closure (all features on). Language features the code itself uses (let
# chains need 1.88) are covered by the workspace floor; std APIs newer than
# the declared version are caught by clippy's `incompatible_msrv`, which
# reads `rust-version` and runs in .ci/run with -D warnings.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo metadata --format-version 1 --all-features | python3 -c '
import json, sys
m = json.load(sys.stdin)
pkgs = {p["id"]: p for p in m["packages"]}
nodes = {n["id"]: n for n in m["resolve"]["nodes"]}
def ver(v):
    t = [int(x) for x in (v or "0").split(".")]
    return tuple(t + [0] * (3 - len(t)))
bad = 0
for w in m["workspace_members"]:
    own = pkgs[w].get("rust_version")
    seen, stack = set(), [w]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        for d in nodes[i]["deps"]:
            if any(k["kind"] is None for k in d["dep_kinds"]):
                stack.append(d["pkg"])
    need, by = max(((pkgs[i].get("rust_version"), pkgs[i]["name"]) for i in seen if i != w),
                   key=lambda x: ver(x[0]))
    status = "ok" if ver(own) >= ver(need) else "TOO LOW"
    name = pkgs[w]["name"]
    print("%-16s rust-version %-6s needs >= %s (%s): %s" % (name, own or "unset", need, by, status))
    if status != "ok":
        bad += 1
sys.exit(1 if bad else 0)
'
