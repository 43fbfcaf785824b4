#!/usr/bin/env bash
# Metric ingestion under load (results go in docs/benchmarks.md): batches of observations
# posted to POST /api/v1/metrics for a flag whose ramp is running, accepted observations
# per second and the latency of a batch (which includes the flush to disk).
#
# The server runs on core 0 with one worker and the load (tests/examples/ingest_load.rs) on
# core 1. The ramp is started through the admin API, as a release engineer would.
#
# Usage: scripts/bench-ingest.sh [seconds, default 20] [connections, default 16]
#        [observations per batch, default 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20}
connections=${2:-16}
batch=${3:-1000}
port=18184
grpc_port=18185
base="http://127.0.0.1:$port"
admin_key="bench-admin-key-$(date +%s%N)"

cargo build --release --quiet -p ripcord-server --bin ripcord
cargo build --release --quiet -p ripcord-tests --example ingest_load

work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/flags.yaml" <<'YAML'
flags:
  new-checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    rollout:
      stickiness: userId
      percentage: 0
      split: [{variant: "on", weight: 1}]
    ramp:
      stages: [1, 5, 25, 50, 100]
      min_stage_duration: 1h
      guards:
        - {metric: checkout_latency_ms, category: performance, kind: value, better: lower, tolerance: 5%, min_samples: 1000}
        - {metric: crash_rate, category: stability, kind: rate, better: lower, tolerance: 0.002, min_samples: 2000}
YAML

RIPCORD_ADMIN_KEY="$admin_key" RIPCORD_BOOTSTRAP="$work/flags.yaml" RIPCORD_LOG=warn \
  RIPCORD_WORKERS=1 RIPCORD_HTTP_ADDR="127.0.0.1:$port" RIPCORD_GRPC_ADDR="127.0.0.1:$grpc_port" \
  RIPCORD_DATA_DIR="$work/data" taskset -c 0 target/release/ripcord >"$work/server.out" 2>&1 &
server=$!
for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done

server_key=$(curl -fs -X POST "$base/api/v1/keys" -H "Authorization: Bearer $admin_key" \
  -H 'Content-Type: application/json' \
  -d '{"name":"bench-server","scope":"server","environment":"default"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

start="$base/api/v1/environments/default/flags/new-checkout/ramp/start"
status=$(curl -s -o "$work/start.out" -w '%{http_code}' -X POST "$start" \
  -H "Authorization: Bearer $admin_key" -H 'Content-Type: application/json' \
  -d '{"reason":"ingestion benchmark"}')
if [ "${status:0:1}" != 2 ]; then
  echo "starting the ramp failed ($status): $(cat "$work/start.out")"
  exit 1
fi
# Observations made in the second the ramp started could fall before it.
sleep 1
timestamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)

echo "== POST /api/v1/metrics, ${duration}s, $connections connections, batches of $batch"
taskset -c 1 target/release/examples/ingest_load "$base" "$server_key" new-checkout 0 \
  "$connections" "$batch" "$duration" "$timestamp"
