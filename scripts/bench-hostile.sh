#!/usr/bin/env bash
# Large and hostile inputs against the release build (results go in docs/benchmarks.md,
# "Large imports and the judge under load").
#
# One server with one HTTP worker (RIPCORD_WORKERS=1), so that anything an import or a
# judge request does on the worker shows in the evaluations it answers meanwhile:
#   1. an import of about MEGABYTES of YAML (default 31, under the default 32 MiB
#      RIPCORD_MAX_IMPORT_BYTES), then of 200 KB nested 100,000 levels deep, while one client
#      evaluates a flag back to back;
#   2. 16 clients sending judge requests of two samples of 1,000,000 values each, again after
#      Retry-After while refused, until all are judged; the peak resident memory and the
#      evaluations' latency meanwhile.
# The server binary may be given, to measure another build: BINARY=path scripts/bench-hostile.sh
# TRACE=1 prints when each evaluation slower than 15 ms was sent, counted from the import's
# start; SKIP_JUDGE=1 runs the imports only.
#
# Usage: scripts/bench-hostile.sh [megabytes, default 31] [judge clients, default 16]
set -euo pipefail
cd "$(dirname "$0")/.."
megabytes=${1:-31}
clients=${2:-16}
port=18183
base="http://127.0.0.1:$port"
admin_key="bench-admin-key-$(date +%s%N)"
binary=${BINARY:-target/release/ripcord}
[ -n "${BINARY:-}" ] || cargo build --release -p ripcord-server --bin ripcord --quiet

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

start() {
  rm -rf "$work/data"
  RIPCORD_ADMIN_KEY="$admin_key" RIPCORD_LOG=warn RIPCORD_WORKERS=1 \
    RIPCORD_HTTP_ADDR="127.0.0.1:$port" RIPCORD_GRPC_ADDR=127.0.0.1:0 \
    RIPCORD_DATA_DIR="$work/data" "$binary" >"$work/server.out" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done
  curl -fs -X PUT "$base/api/v1/environments/default/document" \
    -H "Authorization: Bearer $admin_key" -H 'Content-Type: application/yaml' \
    --data-binary $'flags:\n  checkout:\n    type: boolean\n    variants: {"on": true, "off": false}\n    default_variant: "on"\n' \
    >/dev/null
  server_key=$(curl -fs -X POST "$base/api/v1/keys" -H "Authorization: Bearer $admin_key" \
    -H 'Content-Type: application/json' \
    -d '{"name":"bench","scope":"server","environment":"default"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
}
stop() {
  kill -TERM "$server"
  wait "$server" || true
  server=
}

echo "== imports, one worker"
start
python3 scripts/bench-hostile.py import "$base" "$admin_key" "$server_key" "$megabytes"
stop

echo "== judge, one worker, $clients clients"
start
[ "${SKIP_JUDGE:-}" ] || python3 scripts/bench-hostile.py judge "$base" "$server_key" "$server" "$clients" 1000000
stop
