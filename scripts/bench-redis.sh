#!/usr/bin/env bash
# Several nodes on Redis (results go in docs/benchmarks.md, "Several nodes on Redis"):
#
# 1. OFREP throughput of one node on Redis against one on sled: the same 200 flags, the
#    server on core 0 with one worker, wrk on core 1 (evaluation never reads the store, so
#    the two should be equal within noise);
# 2. admin write latency on each: sequential kill-switch flips, each waiting for the answer
#    (on Redis: the Lua script, with appendfsync always);
# 3. metric ingestion through Redis: batches posted to one node, the counts merged into
#    Redis before each batch is answered;
# 4. fan-out across nodes: SSE streams spread over three nodes, changes made on the first,
#    every stream timed from just before the admin write.
#
# Redis runs from Debian's redis-server (installed if missing) on a free port with
# appendonly and appendfsync always, in a temporary directory; everything is on loopback and
# stops by itself.
#
# Usage: scripts/bench-redis.sh [seconds per load run, default 10] [SSE streams, default
#        1000] [changes, default 5] [OFREP rounds, default 2]
# OFREP rounds alternate which node goes first, and each run reports the CPU time the node
# spent per request as well, which other tenants of the machine move less than requests/s.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
streams=${2:-1000}
changes=${3:-5}
rounds=${4:-2}
admin_key="bench-admin-key-$(date +%s%N)"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
cargo build --release --quiet -p ripcord-server --bin ripcord
cargo build --release --quiet -p ripcord-tests --example ingest_load --example streams
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

redis_port=$(free_port)
mkdir "$work/redis"
taskset -c 1 redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes \
  --appendfsync always --dir "$work/redis" >"$work/redis.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis="redis://127.0.0.1:$redis_port/"
target/release/ripcord store init --to "$redis" >/dev/null

python3 scripts/gen-flags.py 200 >"$work/flags.json"
cat >>"$work/ramped.yaml" <<'YAML'
flags:
  new-checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    rollout: {stickiness: userId, percentage: 0, split: [{variant: "on", weight: 1}]}
    ramp:
      stages: [1, 5, 25, 50, 100]
      min_stage_duration: 1h
      guards:
        - {metric: checkout_latency_ms, category: performance, kind: value, better: lower, tolerance: 5%, min_samples: 1000}
        - {metric: crash_rate, category: stability, kind: rate, better: lower, tolerance: 0.002, min_samples: 2000}
YAML

# start NAME STORE CORE: a release node; sets port_NAME and pid_NAME.
start() {
  local name=$1 store=$2 core=$3 port grpc
  port=$(free_port); grpc=$(free_port)
  RIPCORD_ADMIN_KEY="$admin_key" RIPCORD_BOOTSTRAP="$work/flags.json" RIPCORD_LOG=warn \
    RIPCORD_WORKERS=1 RIPCORD_HTTP_ADDR="127.0.0.1:$port" RIPCORD_GRPC_ADDR="127.0.0.1:$grpc" \
    RIPCORD_STORE="$store" RIPCORD_DATA_DIR="$work/$name" \
    taskset -c "$core" target/release/ripcord >"$work/$name.out" 2>&1 &
  pids+=($!)
  eval "port_$name=$port pid_$name=$!"
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
}
key() { # PORT SCOPE
  curl -fs -X POST "http://127.0.0.1:$1/api/v1/keys" -H "Authorization: Bearer $admin_key" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"bench-$2-$RANDOM\",\"scope\":\"$2\",\"environment\":\"default\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
wrk_rate() { # PID KEY URL: requests/s and the node's CPU time per request
  local before after out rate requests
  before=$(cpu_ticks "$1")
  out=$(RIPCORD_KEY="$2" taskset -c 1 wrk -t1 -c64 -d"${duration}s" -s scripts/wrk-ofrep.lua "$3")
  after=$(cpu_ticks "$1")
  rate=$(echo "$out" | awk '/^Requests\/sec/ { print $2 }')
  requests=$(echo "$out" | awk '/ requests in / { print $1 }')
  awk -v rate="$rate" -v n="$requests" -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.0f requests/s, %.1f us CPU a request", rate, 1e6 * ticks / hz / n }'
}
writes() { # PORT COUNT: admin write latency, sequential, on one kept-alive connection
  python3 - "$1" "$2" "$admin_key" <<'PY'
import http.client, json, sys, time
port, count, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
connection = http.client.HTTPConnection("127.0.0.1", port)
times = []
for i in range(count):
    body = json.dumps({"enabled": i % 2 == 1})
    started = time.perf_counter()
    connection.request("PUT", "/api/v1/environments/default/flags/flag-00001/enabled", body,
                       {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    times.append(time.perf_counter() - started)
    if response.status != 200:
        sys.exit(f"write {i} answered {response.status}")
times.sort()
print(f"{count} writes: p50 {1000 * times[count // 2]:.2f} ms, p99 {1000 * times[int(count * 0.99)]:.2f} ms")
PY
}

echo "== 1. OFREP, one node on sled against one on Redis, ${duration}s each"
start sled sled 0
start redis "$redis" 0
for name in sled redis; do
  eval "port=\$port_$name"
  eval "server_key_$name=$(key "$port" server) client_key_$name=$(key "$port" client)"
done
for round in $(seq "$rounds"); do
  order="sled redis"
  [ $((round % 2)) = 0 ] && order="redis sled"
  for name in $order; do
    eval "port=\$port_$name pid=\$pid_$name server_key=\$server_key_$name client_key=\$client_key_$name"
    single=$(wrk_rate "$pid" "$server_key" "http://127.0.0.1:$port/ofrep/v1/evaluate/flags/flag-00002")
    bulk=$(wrk_rate "$pid" "$client_key" "http://127.0.0.1:$port/ofrep/v1/evaluate/flags")
    echo "round $round, $name: single flag $single; bulk of 50 $bulk"
  done
done

echo "== 2. admin write latency"
for name in sled redis; do
  eval "port=\$port_$name"
  echo "$name: $(writes "$port" 300)"
done

echo "== 3. metric ingestion through Redis, ${duration}s, 16 connections, batches of 1000"
kill "$pid_sled" "$pid_redis"
start ramped "$redis" 0
curl -fs -X PUT "http://127.0.0.1:$port_ramped/api/v1/environments/default/document" \
  -H "Authorization: Bearer $admin_key" -H 'Content-Type: application/yaml' \
  --data-binary @"$work/ramped.yaml" >/dev/null
curl -fs -X POST "http://127.0.0.1:$port_ramped/api/v1/environments/default/flags/new-checkout/ramp/start" \
  -H "Authorization: Bearer $admin_key" -H 'Content-Type: application/json' \
  -d '{"reason":"ingestion benchmark"}' >/dev/null
sleep 1
ingest_key=$(key "$port_ramped" server)
taskset -c 1 target/release/examples/ingest_load "http://127.0.0.1:$port_ramped" "$ingest_key" \
  new-checkout 0 16 1000 "$duration" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
kill "$pid_ramped"

echo "== 4. $streams SSE streams over three nodes on Redis, $changes changes made on the first"
redis-cli -p "$redis_port" flushall >/dev/null
target/release/ripcord store init --to "$redis" >/dev/null
start a "$redis" 0
start b "$redis" 0
start c "$redis" 0
sse_key=$(key "$port_a" server)
sleep 1
nodes="http://127.0.0.1:$port_a,http://127.0.0.1:$port_b,http://127.0.0.1:$port_c"
taskset -c 1 target/release/examples/streams sse "$nodes" none "$sse_key" none "$admin_key" \
  "$pid_a" "$streams" "$changes"
