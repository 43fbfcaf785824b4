#!/usr/bin/env bash
# Memory and start-up with 10,000 flags (results go in docs/benchmarks.md).
#
# The first start imports the document (RIPCORD_BOOTSTRAP); the measured start is the
# second one, which loads the 10,000 flags from the data directory as every later restart
# does. Start-up is the time from exec until /healthz answers.
#
# Usage: scripts/bench-memory.sh [number of flags, default 10000]
set -euo pipefail
cd "$(dirname "$0")/.."
flags=${1:-10000}
port=18182
base="http://127.0.0.1:$port"

cargo build --release -p ripcord-server --quiet
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 scripts/gen-flags.py "$flags" >"$work/flags.json"
echo "document: $flags flags, $(du -h "$work/flags.json" | cut -f1)"

start() {
  RIPCORD_ADMIN_KEY=bench-admin-key-0123456789abcdef RIPCORD_BOOTSTRAP="$work/flags.json" RIPCORD_LOG=warn \
    RIPCORD_HTTP_ADDR="127.0.0.1:$port" RIPCORD_DATA_DIR="$work/data" \
    target/release/ripcord >>"$work/server.out" 2>&1 &
  server=$!
  local began ended
  began=$(date +%s%N)
  until curl -fs "$base/healthz" >/dev/null 2>&1; do sleep 0.005; done
  ended=$(date +%s%N)
  echo "$1: ready in $(((ended - began) / 1000000)) ms"
}
stop() { kill -TERM "$server"; wait "$server" || true; }

start "first start (imports the document)"
grep -E 'VmRSS|VmHWM' "/proc/$server/status"
stop
start "restart (loads $flags flags from sled)"
grep -E 'VmRSS|VmHWM' "/proc/$server/status"
stop
