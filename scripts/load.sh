#!/usr/bin/env bash
# HTTP load benchmark for OFREP (results go in docs/benchmarks.md).
#
# The server runs on core 0 with one worker and wrk on core 1, so the two do not compete
# for a core. The server loads 200 flags (scripts/gen-flags.py); the single-flag run
# evaluates a flag with rules and a rollout, the bulk run evaluates the 50 client-visible
# flags with a client key.
#
# Each round first loads the ceiling (server/examples/ceiling.rs): a bare actix-web handler
# on the same core that reads the same POST and answers a constant single-flag body; then
# the same handler answering a constant body of fifty items, the size of the bulk answer,
# which shows what of the bulk's cost is sending a larger answer; then the floor: the same
# handler doing the bulk evaluation's own work (context, engine, OFREP writer, ETag) and
# nothing else, which shows what of the bulk's cost is evaluating and what is the server's
# authentication, routing, middleware and counting around it. What
# other tenants of the machine take moves every figure; a share of the ceiling measured in
# the same round moves less, so the summary gives each run as a share of its round's
# ceiling: in requests/s, and in the CPU time the process spent per request (the ceiling's
# over ours), which does not depend on how much of the core the process was left.
#
# Usage: scripts/load.sh [seconds per run, default 20] [rounds, default 1]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20}
rounds=${2:-1}
port=18181
ceiling_port=18182
base="http://127.0.0.1:$port"
admin_key="bench-admin-key-$(date +%s%N)"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -p ripcord-server --bin ripcord --example ceiling --quiet

work=$(mktemp -d)
server=
ceiling=
cleanup() {
  for pid in $server $ceiling; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
python3 scripts/gen-flags.py 200 >"$work/flags.json"

RIPCORD_ADMIN_KEY="$admin_key" RIPCORD_BOOTSTRAP="$work/flags.json" RIPCORD_LOG=warn \
  RIPCORD_WORKERS=1 RIPCORD_HTTP_ADDR="127.0.0.1:$port" RIPCORD_DATA_DIR="$work/data" \
  taskset -c 0 target/release/ripcord >"$work/server.out" 2>&1 &
server=$!
taskset -c 0 target/release/examples/ceiling "127.0.0.1:$ceiling_port" "$work/flags.json" \
  >"$work/ceiling.out" 2>&1 &
ceiling=$!
for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done
for _ in $(seq 100); do
  curl -fs -X POST -d '{}' "http://127.0.0.1:$ceiling_port/ofrep/v1/evaluate/flags" >/dev/null && break
  sleep 0.1
done

new_key() {
  curl -fs -X POST "$base/api/v1/keys" -H "Authorization: Bearer $admin_key" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"bench-$1\",\"scope\":\"$1\",\"environment\":\"default\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
server_key=$(new_key server)
client_key=$(new_key client)

# CPU time a process has used, user and system, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# Runs wrk against the process `pid`, prints wrk's report, and appends `name requests/s
# requests cpu-ticks` to the summary.
run() {
  local name=$1 pid=$2 key=$3 url=$4 out before after
  before=$(cpu_ticks "$pid")
  out=$(RIPCORD_KEY="$key" taskset -c 1 wrk -t1 -c64 -d"${duration}s" --latency \
    -s scripts/wrk-ofrep.lua "$url")
  after=$(cpu_ticks "$pid")
  echo "$out"
  echo "$name $(echo "$out" | awk '/^Requests\/sec/ { print $2 }')" \
    "$(echo "$out" | awk '/ requests in / { print $1 }') $((after - before))" >>"$work/summary"
}

for round in $(seq "$rounds"); do
  echo "== round $round: ceiling (bare actix-web, constant single-flag body), ${duration}s, 64 connections"
  run ceiling "$ceiling" none "http://127.0.0.1:$ceiling_port/ofrep/v1/evaluate/flags"
  echo "== round $round: ceiling with a bulk-sized answer (fifty constant items), ${duration}s, 64 connections"
  run ceiling-bulk "$ceiling" none "http://127.0.0.1:$ceiling_port/ceiling/bulk"
  echo "== round $round: floor (the same handler evaluating the 50 client-visible flags), ${duration}s, 64 connections"
  run floor "$ceiling" none "http://127.0.0.1:$ceiling_port/ceiling/evaluate"
  echo "== round $round: OFREP single flag (flag-00002: two rules, 25% rollout), ${duration}s, 64 connections"
  run single "$server" "$server_key" "$base/ofrep/v1/evaluate/flags/flag-00002"
  echo "== round $round: OFREP bulk (50 client-visible flags), ${duration}s, 64 connections"
  run bulk "$server" "$client_key" "$base/ofrep/v1/evaluate/flags"
done

echo "== server resident memory after the runs"
grep VmRSS "/proc/$server/status"

# Requests/s depend on how much of core 0 the other tenants leave; the CPU time the
# process spent per request does not, so its ratio to the ceiling's is the steadier figure.
echo "== summary: requests/s and CPU time per request, each as a share of its round's ceiling"
ticks=$(getconf CLK_TCK)
awk -v ticks="$ticks" '
  { rate = $2; cpu = 1e6 * $4 / ticks / $3 }
  $1 == "ceiling" {
    round++; ceiling_rate = rate; ceiling_cpu = cpu
    printf "round %d: ceiling %.0f/s %.1f us", round, rate, cpu
  }
  $1 == "ceiling-bulk" { bulk_ceiling_rate = rate; bulk_ceiling_cpu = cpu }
  $1 == "floor" { floor_rate = rate; floor_cpu = cpu }
  $1 != "ceiling" {
    printf "; %s %.0f/s (%.0f%%) %.1f us (%.0f%%)", $1, rate, 100 * rate / ceiling_rate, cpu,
      100 * ceiling_cpu / cpu
  }
  $1 == "bulk" {
    printf "; bulk as a share of ceiling-bulk: %.0f%% req/s, %.0f%% CPU", 100 * rate / bulk_ceiling_rate,
      100 * bulk_ceiling_cpu / cpu
    printf "; of the floor: %.0f%% req/s, %.0f%% CPU\n", 100 * rate / floor_rate, 100 * floor_cpu / cpu
  }
' "$work/summary"
