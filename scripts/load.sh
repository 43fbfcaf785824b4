#!/usr/bin/env bash
# HTTP load benchmark for OFREP (results go in docs/benchmarks.md).
#
# The server runs on core 0 with one worker and wrk on core 1, so the two do not compete
# for a core. The server loads 200 flags (scripts/gen-flags.py); the single-flag run
# evaluates a flag with rules and a rollout, the bulk run evaluates the 50 client-visible
# flags with a client key.
#
# Usage: scripts/load.sh [seconds per run, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20}
port=18181
base="http://127.0.0.1:$port"
admin_key="bench-admin-key-$(date +%s%N)"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -p ripcord-server --quiet

work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 scripts/gen-flags.py 200 >"$work/flags.json"

RIPCORD_ADMIN_KEY="$admin_key" RIPCORD_BOOTSTRAP="$work/flags.json" RIPCORD_LOG=warn \
  RIPCORD_WORKERS=1 RIPCORD_HTTP_ADDR="127.0.0.1:$port" RIPCORD_DATA_DIR="$work/data" \
  taskset -c 0 target/release/ripcord >"$work/server.out" 2>&1 &
server=$!
for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done

new_key() {
  curl -fs -X POST "$base/api/v1/keys" -H "Authorization: Bearer $admin_key" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"bench-$1\",\"scope\":\"$1\",\"environment\":\"default\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
server_key=$(new_key server)
client_key=$(new_key client)

echo "== OFREP single flag (flag-00002: two rules, 25% rollout), ${duration}s, 64 connections"
RIPCORD_KEY="$server_key" taskset -c 1 wrk -t1 -c64 -d"${duration}s" --latency \
  -s scripts/wrk-ofrep.lua "$base/ofrep/v1/evaluate/flags/flag-00002"

echo "== OFREP bulk (50 client-visible flags), ${duration}s, 64 connections"
RIPCORD_KEY="$client_key" taskset -c 1 wrk -t1 -c64 -d"${duration}s" --latency \
  -s scripts/wrk-ofrep.lua "$base/ofrep/v1/evaluate/flags"

echo "== server resident memory after the runs"
grep VmRSS "/proc/$server/status"
