#!/usr/bin/env bash
# The judge through its real paths (results go in docs/benchmarks.md, section "Judge"):
# `POST /api/v1/judge` on a release server, timed by curl from the first byte sent to the
# last received, and `ripcord judge` on files, timed from exec to exit.
#
# Bodies: 100,000 lognormal latencies per arm (compact JSON, as clients send them), and two
# histograms of 1,000 log-spaced bins with millions of counts per bin. Fixed seeds.
#
# Usage: scripts/bench-judge.sh [requests per case, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
port=18183
base="http://127.0.0.1:$port"
key=bench-admin-key-0123456789abcdef

cargo build --release -p ripcord-server --quiet
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$work" <<'EOF'
import json, math, random, sys
work = sys.argv[1]
rng = random.Random(20261128)
def latencies(n, median):
    return [median * math.exp(0.6 * rng.gauss(0, 1)) for _ in range(n)]
treatment, control = latencies(100_000, 121.0), latencies(100_000, 120.0)
with open(f"{work}/values.json", "w") as f:
    json.dump({"treatment": treatment, "control": control, "tolerance": "5%"}, f, separators=(",", ":"))
for name, values in (("treatment", treatment), ("control", control)):
    with open(f"{work}/{name}.txt", "w") as f:
        f.write("".join(f"{v!r}\n" for v in values))
bins = [0.1 * 1.0134 ** i for i in range(1000)]
def histogram(median, per_value):
    counts = [0] * len(bins)
    for v in latencies(200_000, median):
        i = min(len(bins) - 1, max(0, math.ceil(math.log(v / 0.1) / math.log(1.0134))))
        counts[i] += per_value
    return {"bins": bins, "counts": counts}
with open(f"{work}/histograms.json", "w") as f:
    json.dump({"treatment": histogram(120.0, 37), "control": histogram(118.0, 41), "tolerance": "5%"}, f, separators=(",", ":"))
EOF
ls -l "$work"/*.json | awk '{print $5, $9}'

RIPCORD_ADMIN_KEY=$key RIPCORD_LOG=warn RIPCORD_HTTP_ADDR="127.0.0.1:$port" \
  RIPCORD_GRPC_ADDR=127.0.0.1:0 RIPCORD_DATA_DIR="$work/data" \
  target/release/ripcord >"$work/server.out" 2>&1 &
server=$!
until curl -fs "$base/healthz" >/dev/null 2>&1; do sleep 0.01; done

# Median, min and max of the times (seconds) on stdin, in milliseconds.
summary() { sort -n | awk '{t[NR]=$1*1000} END {printf "median %.1f ms, min %.1f, max %.1f (n=%d)\n", t[int((NR+1)/2)], t[1], t[NR], NR}'; }

for body in values histograms; do
  curl -fsS -o "$work/$body.answer" -H "Authorization: Bearer $key" -H 'content-type: application/json' \
    --data-binary "@$work/$body.json" "$base/api/v1/judge"
  echo "$body: $(head -c 300 "$work/$body.answer")"
  for _ in $(seq "$runs"); do
    curl -fsS -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $key" \
      -H 'content-type: application/json' --data-binary "@$work/$body.json" "$base/api/v1/judge"
  done | summary | sed "s/^/POST \/api\/v1\/judge, $body: /"
done

for _ in $(seq "$runs"); do
  began=$(date +%s%N)
  target/release/ripcord judge --treatment "$work/treatment.txt" --control "$work/control.txt" \
    --tolerance 5% --json >/dev/null || true
  ended=$(date +%s%N)
  echo "$(((ended - began) / 1000))e-6"
done | summary | sed 's/^/ripcord judge, 100,000 values per arm from files: /'
