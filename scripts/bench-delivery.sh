#!/usr/bin/env bash
# Delivery benchmarks (results go in docs/benchmarks.md): gRPC Evaluate throughput,
# propagation of admin writes to a watching SDK and to a server-sent events stream, and
# fan-out to many Watch streams.
#
# The server runs on core 0 with one worker (HTTP and gRPC each get one thread) and the
# load on core 1. The server loads 200 flags (scripts/gen-flags.py).
#
# Usage: scripts/bench-delivery.sh [seconds of gRPC load, default 20] [changes, default 1000]
#        [streams, default 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20}
changes=${2:-1000}
streams=${3:-1000}
port=18182
grpc_port=18183
base="http://127.0.0.1:$port"
grpc="http://127.0.0.1:$grpc_port"
admin_key="bench-admin-key-$(date +%s%N)"

cargo build --release --quiet -p ripcord-server --bin ripcord
cargo build --release --quiet -p ripcord-tests --examples
examples=target/release/examples

work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 scripts/gen-flags.py 200 >"$work/flags.json"

RIPCORD_ADMIN_KEY="$admin_key" RIPCORD_BOOTSTRAP="$work/flags.json" RIPCORD_LOG=warn \
  RIPCORD_WORKERS=1 RIPCORD_HTTP_ADDR="127.0.0.1:$port" RIPCORD_GRPC_ADDR="127.0.0.1:$grpc_port" \
  RIPCORD_DATA_DIR="$work/data" taskset -c 0 target/release/ripcord >"$work/server.out" 2>&1 &
server=$!
for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done

new_key() {
  curl -fs -X POST "$base/api/v1/keys" -H "Authorization: Bearer $admin_key" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"bench-$1-$RANDOM\",\"scope\":\"$1\",\"environment\":\"default\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
server_key=$(new_key server)

echo "== gRPC Evaluate (flag-00002: two rules, 25% rollout), ${duration}s, 4 connections x 16 in flight"
taskset -c 1 "$examples/grpc_load" "$grpc" "$server_key" flag-00002 4 16 "$duration"

echo "== propagation: admin write -> watching SDK, $changes changes"
taskset -c 1 "$examples/propagation" sdk "$grpc" "$base" "$server_key" "$admin_key" "$changes"

echo "== propagation: admin write -> server-sent events stream, $changes changes"
taskset -c 1 "$examples/propagation" sse "$grpc" "$base" "$server_key" "$admin_key" "$changes"

echo "== fan-out: $streams Watch streams, 10 changes"
taskset -c 1 "$examples/fanout" "$grpc" "$base" "$server_key" "$admin_key" "$server" "$streams" 10
