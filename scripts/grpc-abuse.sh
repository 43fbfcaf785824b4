#!/usr/bin/env bash
# Memory of the gRPC port under streams that send headers and never a body (results go in
# docs/benchmarks.md). Starts a release server on loopback ports, then for each attack reads
# the server's resident memory before, at the peak while the streams are held, and a few
# seconds after the client has closed every connection.
#
# Attacks: 20 connections x 10,000 streams without a key, then with a valid key.
#
# Usage: scripts/grpc-abuse.sh [server binary, default target/release/ripcord]
# Bounded in time: each attack holds its streams for 15 s.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/ripcord}
connections=${CONNECTIONS:-20}
streams=${STREAMS:-10000}
hold=${HOLD:-15}
http_port=18191
grpc_port=18192
admin=bench-admin-key-0123456789abcdef

if [ "$#" -eq 0 ]; then
  cargo build --release -p ripcord-server --quiet
fi
cargo build --release -p ripcord-tests --example grpc_abuse --quiet
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

RIPCORD_ADMIN_KEY=$admin RIPCORD_LOG=warn RIPCORD_WORKERS=2 \
  RIPCORD_HTTP_ADDR="127.0.0.1:$http_port" RIPCORD_GRPC_ADDR="127.0.0.1:$grpc_port" \
  RIPCORD_DATA_DIR="$work/data" "$binary" >"$work/server.out" 2>&1 &
server=$!
until curl -fs "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1; do sleep 0.05; done
key=$(curl -fs -H "authorization: Bearer $admin" -H 'content-type: application/json' \
  -d '{"name":"abuse","scope":"server","environment":"default"}' \
  "http://127.0.0.1:$http_port/api/v1/keys" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

rss() { awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$server/status"; }

attack() {
  local label=$1
  shift
  local before peak=0 now after
  before=$(rss)
  target/release/examples/grpc_abuse "127.0.0.1:$grpc_port" "$connections" "$streams" "$hold" "$@" \
    >"$work/client.out" &
  local client=$!
  while kill -0 "$client" 2>/dev/null; do
    now=$(rss)
    [ "$now" -gt "$peak" ] && peak=$now
    sleep 0.2
  done
  wait "$client" || true
  sleep 5
  after=$(rss)
  echo "$label: RSS before ${before} MB, peak ${peak} MB (+$((peak - before))), 5 s after close ${after} MB"
  echo "  client: $(cat "$work/client.out")"
}

attack "no key, ${connections} x ${streams} header-only streams"
attack "valid key, ${connections} x ${streams} header-only streams" "$key"
