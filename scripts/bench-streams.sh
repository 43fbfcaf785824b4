#!/usr/bin/env bash
# Streams at scale (results go in docs/benchmarks.md): what an idle stream of each kind
# costs the server with a 3-flag and a 200-flag ruleset, and how fast a change reaches
# many streams at once.
#
# For each ruleset size and each kind of stream (SDK server-sent events, OFREP events,
# gRPC Watch, flagd's EventStream) a fresh release server gets `idle` streams, each on its
# own loopback connection; the tool reports the server's resident memory before and after
# they have read their opening. With 200 flags, two more measurements split what a Watch
# on its own connection costs: Watch streams sharing connections (100 to a connection,
# opened before the first reading) and gRPC connections with no call. Then, for each
# kind, one more server gets `fanout` streams and `changes` kill-switch flips, timing each
# delivery from just before the admin write.
#
# Usage: scripts/bench-streams.sh [idle streams, default 2000] [fan-out streams, default
#        10000] [changes, default 5]
# RIPCORD_BIN=path measures another build of the server (such as an earlier commit's)
# with the tool already built, instead of building both.
set -euo pipefail
cd "$(dirname "$0")/.."
idle=${1:-2000}
fanout=${2:-10000}
changes=${3:-5}
port=18192
grpc_port=18193
base="http://127.0.0.1:$port"
grpc="http://127.0.0.1:$grpc_port"
admin_key="bench-admin-key-$(date +%s%N)"

# One file descriptor per stream in each process (the tool's end and the server's).
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((fanout + 1000)) ]; then
  echo "open files are limited to $(ulimit -n): too few for $fanout streams" >&2
  exit 1
fi

bin=${RIPCORD_BIN:-target/release/ripcord}
tool=target/release/examples/streams
if [ -z "${RIPCORD_BIN:-}" ] || [ ! -x "$tool" ]; then
  cargo build --release --quiet -p ripcord-server --bin ripcord
  cargo build --release --quiet -p ripcord-tests --example streams
fi

work=$(mktemp -d)
server=
stop() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
  fi
}
trap 'stop; rm -rf "$work"' EXIT

start() { # flags
  stop
  rm -rf "$work/data"
  python3 scripts/gen-flags.py "$1" >"$work/flags.json"
  RIPCORD_ADMIN_KEY="$admin_key" RIPCORD_BOOTSTRAP="$work/flags.json" RIPCORD_LOG=warn \
    RIPCORD_FLAGD_ENVIRONMENT=default \
    RIPCORD_HTTP_ADDR="127.0.0.1:$port" RIPCORD_GRPC_ADDR="127.0.0.1:$grpc_port" \
    RIPCORD_DATA_DIR="$work/data" "$bin" >"$work/server.out" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done
  server_key=$(new_key server)
  client_key=$(new_key client)
}

new_key() {
  curl -fs -X POST "$base/api/v1/keys" -H "Authorization: Bearer $admin_key" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"bench-$1-$RANDOM\",\"scope\":\"$1\",\"environment\":\"default\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

run() { # kind streams changes
  timeout 600 "$tool" "$1" "$base" "$grpc" "$server_key" "$client_key" "$admin_key" "$server" "$2" "$3"
}

for flags in 3 200; do
  kinds="sse ofrep watch flagd"
  [ "$flags" = 200 ] && kinds="$kinds watch-shared grpc-connection"
  for kind in $kinds; do
    echo "== $flags flags, $idle idle $kind streams"
    start "$flags"
    run "$kind" "$idle" 0
  done
done

for kind in sse ofrep watch flagd; do
  echo "== fan-out: $fanout $kind streams, 200 flags, $changes changes"
  start 200
  run "$kind" "$fanout" "$changes"
done
