#!/usr/bin/env bash
# The built-in dashboard under load, on loopback:
# (1) time to first render with data of every page in a real headless Chromium,
#     with 1,000 routes and 1,000 RUM pages loaded;
# (2) the overview's API requests, refresh after refresh, while the agent ingests
#     a steady 50,000 spans/s;
# (3) flat-out ingest with and without dashboards open (each polling the overview
#     API once a second, five times the page's own cadence), alternating ROUNDS
#     times, as a ratio.
#
#   bash examples/bench/dashboard.sh                 # 7 loads per page, 20 s phases, 3 rounds
#   RUNS=15 DURATION=30s ROUNDS=5 DASHBOARDS=20 bash examples/bench/dashboard.sh
#
# Needs: wrk, chromium and chromium-driver (tests/run.sh installs them). Prints a
# markdown report for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

RUNS=${RUNS:-7}
DURATION=${DURATION:-20s}
ROUNDS=${ROUNDS:-3}
DASHBOARDS=${DASHBOARDS:-10}
SECONDS_OF=${DURATION%s}

command -v wrk >/dev/null || { echo "dashboard: wrk is missing (apt-get install wrk)" >&2; exit 1; }

cargo build --release -q -p telltale-agent --bin telltale -p telltale-loadgen --bin telltale-loadgen -p telltale-tests --bin dashboard_bench
BIN=target/release/telltale
LOADGEN=target/release/telltale-loadgen
BENCH=target/release/dashboard_bench

. examples/bench/lib.sh

# Beacons all come from 127.0.0.1 here: the RUM rate limits are lifted.
start_agent "$BIN" '[rum]
client_rate = 10000000
client_burst = 10000000
global_rate = 10000000
global_burst = 10000000'

counter() { curl -fs "$ADMIN_URL/metrics" | awk -v name="$1" '$1 == name {s += $2} END {print s + 0}'; }
spans() { counter 'telltale_ingest_accepted_items_total{signal="traces"}'; }
loadgen() { "$LOADGEN" --endpoint "http://127.0.0.1:$GRPC" --connections 4 --report json "$@"; }

# Load: 1,000 routes (one service), an N+1 in every trace, then 1,000 RUM pages.
# 1,000 spans per request: the 64 pooled requests then hold ~5,000 traces, enough to hit every route.
loadgen --services 1 --routes 1000 --repeated-queries 6 --spans-per-request 1000 --rate 20000 --duration 10s >/dev/null
wrk -t2 -c32 -d5s -s examples/bench/rum-beacons.lua "http://127.0.0.1:$PUBLIC/rum" >/dev/null
ROUTES=$(curl -fs "$ADMIN_URL/api/v1/services?window=1h" | python3 -c 'import json,sys; print(sum(s["routes"] for s in json.load(sys.stdin)["services"]))')
PAGES=$(counter telltale_rum_pages)

echo "### Dashboard — $(date -u +%F), $(nproc) cores, ${ROUTES} routes and ${PAGES} RUM pages loaded"
echo
echo '```sh'
echo "RUNS=$RUNS DURATION=$DURATION ROUNDS=$ROUNDS DASHBOARDS=$DASHBOARDS bash examples/bench/dashboard.sh"
echo '```'
echo
echo "Each page opened cold ($RUNS times: about:blank, then the page's URL) in headless Chromium;"
echo "time from navigation start to the \`telltale:first-render\` mark (first render with data):"
echo
"$BENCH" page-load "$ADMIN_URL" "$RUNS"
echo

# The overview's API while ingesting a steady 50,000 spans/s.
loadgen --services 1 --routes 1000 --rate 50000 --duration "$DURATION" >"$WORK/steady.json" &
LOAD=$!
sleep 1
"$BENCH" api "$ADMIN_URL" "$((SECONDS_OF - 2))" >"$WORK/api.md"
wait "$LOAD"
STEADY=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["accepted_spans_per_second"]))' "$WORK/steady.json")
echo "The overview's requests, one refresh after another, while ingesting a steady 50,000 spans/s"
echo "(accepted: $STEADY spans/s):"
echo
cat "$WORK/api.md"
echo

# Ingest flat out, with and without DASHBOARDS open dashboards.
poll() { "$BENCH" api "$ADMIN_URL" "$SECONDS_OF" 1000 >/dev/null 2>&1 || true; }
flat_out() { loadgen --services 1 --routes 1000 --duration "$DURATION" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["accepted_spans_per_second"]))'; }
echo "| round | flat-out spans/s, no dashboard | with $DASHBOARDS dashboards polling the overview every second | ratio |"
echo "|---:|---:|---:|---:|"
SUM_RATIO=0
for round in $(seq "$ROUNDS"); do
    WITHOUT=$(flat_out)
    BACKGROUND=()
    for _ in $(seq "$DASHBOARDS"); do poll & BACKGROUND+=($!); done
    WITH=$(flat_out)
    for pid in "${BACKGROUND[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait "${BACKGROUND[@]}" 2>/dev/null || true
    BACKGROUND=()
    RATIO=$(awk -v a="$WITH" -v b="$WITHOUT" 'BEGIN {printf "%.3f", a / b}')
    SUM_RATIO=$(awk -v s="$SUM_RATIO" -v r="$RATIO" 'BEGIN {print s + r}')
    echo "| $round | $WITHOUT | $WITH | $RATIO |"
done
echo
echo "- mean ratio with / without dashboards: **$(awk -v s="$SUM_RATIO" -v n="$ROUNDS" 'BEGIN {printf "%.3f", s / n}')**"
