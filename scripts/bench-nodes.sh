#!/usr/bin/env bash
# Propagation between nodes on one Redis (results in docs/benchmarks.md): a write on node A,
# timed until node B's server-sent events stream, or an SDK following node B over gRPC,
# has it; and the same write timed on node A's own stream, for comparison.
#
# Starts its own redis-server (appendonly yes, appendfsync always) and two release nodes on
# the loopback, with the 200-flag document of scripts/gen-flags.py; every change flips
# flag-00000's kill switch through node A's admin API, one after another. Everything it
# started is stopped when it ends; each run of the tool is bounded by `timeout`.
#
# Usage: scripts/bench-nodes.sh [changes, default 200]
set -euo pipefail
cd "$(dirname "$0")/.."
changes=${1:-200}
redis_port=18290
a_port=18291 a_grpc=18292 b_port=18293 b_grpc=18294
admin_key="bench-admin-key-$(date +%s%N)"

command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
cargo build --release --quiet --locked -p ripcord-server --bin ripcord
cargo build --release --quiet --locked -p ripcord-tests --example propagation
propagation=target/release/examples/propagation

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/redis"
python3 scripts/gen-flags.py 200 >"$work/flags.json"

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly yes \
  --appendfsync always --dir "$work/redis" >"$work/redis.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break
  sleep 0.1
done
target/release/ripcord store init --to "redis://127.0.0.1:$redis_port/" >/dev/null

start_node() { # http port, gRPC port
  RIPCORD_STORE="redis://127.0.0.1:$redis_port/" RIPCORD_ADMIN_KEY="$admin_key" \
    RIPCORD_BOOTSTRAP="$work/flags.json" RIPCORD_LOG=warn RIPCORD_WORKERS=1 \
    RIPCORD_HTTP_ADDR="127.0.0.1:$1" RIPCORD_GRPC_ADDR="127.0.0.1:$2" \
    target/release/ripcord >"$work/node-$1.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1/readyz" >/dev/null && return; sleep 0.1; done
  echo "the node on port $1 did not start:" >&2
  cat "$work/node-$1.out" >&2
  exit 1
}
start_node "$a_port" "$a_grpc"
start_node "$b_port" "$b_grpc"
a="http://127.0.0.1:$a_port"
b="http://127.0.0.1:$b_port"

server_key=$(curl -fs -X POST "$a/api/v1/keys" -H "Authorization: Bearer $admin_key" \
  -H 'Content-Type: application/json' \
  -d '{"name":"bench-nodes","scope":"server","environment":"default"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
# The key was made on A: wait until B honours it too.
for _ in $(seq 100); do
  curl -fs "$b/api/v1/sdk/ruleset" -H "Authorization: Bearer $server_key" >/dev/null && break
  sleep 0.05
done

echo "== write on A -> server-sent events stream on A (same node), $changes changes"
timeout 300 "$propagation" sse "http://127.0.0.1:$a_grpc" "$a" "$server_key" "$admin_key" "$changes" "$a"

echo "== write on A -> server-sent events stream on B, $changes changes"
timeout 300 "$propagation" sse "http://127.0.0.1:$b_grpc" "$a" "$server_key" "$admin_key" "$changes" "$b"

echo "== write on A -> SDK following B over gRPC Watch, $changes changes"
timeout 300 "$propagation" sdk "http://127.0.0.1:$b_grpc" "$a" "$server_key" "$admin_key" "$changes"
