#!/usr/bin/env bash
# OTLP ingest throughput: the full pipeline (decode, validate, golden signals)
# beside a decode-and-discard baseline built from the same receiver code
# (`ingest.discard = true`, flat out and at a steady 10,000 spans/s), then the
# full pipeline at a steady 10,000 spans/s with the agent's CPU and memory,
# then many small requests (1 span each). Loopback only.
#
#   bash examples/bench/otlp-throughput.sh                  # 10 s per phase, 60 s steady
#   DURATION=30s STEADY_DURATION=120s DISCARD_STEADY_DURATION=30s CONNECTIONS=8 bash examples/bench/otlp-throughput.sh
#
# The steady phase runs longer because memory there reaches its plateau only
# after some 30 s (traces in flight, recent-trace lists, time buckets filling).
#
# Prints a markdown report for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DURATION=${DURATION:-10s}
STEADY_DURATION=${STEADY_DURATION:-60s}
DISCARD_STEADY_DURATION=${DISCARD_STEADY_DURATION:-20s}
unset PHASE_DURATION # set for the steady phase alone, below
CONNECTIONS=${CONNECTIONS:-4}
PROTOCOL=${PROTOCOL:-grpc}

cargo build --release -q -p telltale-agent --bin telltale -p telltale-loadgen --bin telltale-loadgen
AGENT_BIN=target/release/telltale
LOADGEN=target/release/telltale-loadgen

. examples/bench/lib.sh

# Starts an agent with extra config; sets AGENT, ADMIN_URL and ENDPOINT.
start_otlp_agent() {
    start_agent "$AGENT_BIN" "$1"
    if [ "$PROTOCOL" = grpc ]; then ENDPOINT="http://127.0.0.1:$GRPC"; else ENDPOINT="http://127.0.0.1:$HTTP"; fi
}

# CPU seconds (user + system) the agent has used so far.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$AGENT/stat"; }
rss_mib() { awk -v k="$1" '$1 == k":" {printf "%.1f", $2 / 1024}' "/proc/$AGENT/status"; }

# Runs the load generator; prints its JSON report; records the agent's CPU use.
load() {
    local before after
    before=$(cpu_seconds)
    "$LOADGEN" --protocol "$PROTOCOL" --endpoint "$ENDPOINT" --duration "${PHASE_DURATION:-$DURATION}" "$@" >"$WORK/report.json"
    after=$(cpu_seconds)
    CPU_PERCENT=$(python3 -c "import json; r=json.load(open('$WORK/report.json')); print(f'{($after - $before) / r[\"seconds\"] * 100:.1f}')")
}
field() { python3 -c "import json; r=json.load(open('$WORK/report.json')); v=r$1; print(f'{v:.0f}' if isinstance(v, float) else v)"; }
processed() { curl -fs "$ADMIN_URL/metrics" | awk '/^telltale_ingest_processed_items_total\{signal="traces"\}/ {print $2}'; }

row() { # label
    echo "| $1 | $(field "['accepted_spans_per_second']") | $(field "['requests_per_second']") | $(field "['requests_refused']") | ${CPU_PERCENT} % | $(python3 -c "import json; r=json.load(open('$WORK/report.json')); print(f\"{r['latency_ms']['p50']:.2f} / {r['latency_ms']['p99']:.2f}\")") |"
}

echo "### OTLP ingest — $(date -u +%Y-%m-%d), $(nproc) cores, $PROTOCOL, $CONNECTIONS connections, $DURATION per phase, $STEADY_DURATION steady"
echo
echo "| phase | accepted spans/s | requests/s | refused requests | agent CPU (of one core) | request ms p50 / p99 |"
echo "|---|---:|---:|---:|---:|---:|"

start_otlp_agent "[ingest]
discard = true"
load --spans-per-request 100 --connections "$CONNECTIONS"
DISCARD_RATE=$(field "['accepted_spans_per_second']")
row "decode and discard, 100 spans/request, flat out"
# What receiving alone costs at the steady rate: the floor below for the whole
# pipeline cannot be lower than this.
PHASE_DURATION=$DISCARD_STEADY_DURATION load --spans-per-request 100 --connections 2 --rate 10000
DISCARD_STEADY_CPU=$CPU_PERCENT
row "decode and discard, steady 10,000 spans/s ($DISCARD_STEADY_DURATION)"
stop_agent

start_otlp_agent ""
load --spans-per-request 100 --connections "$CONNECTIONS"
FULL_RATE=$(field "['accepted_spans_per_second']")
row "full pipeline, 100 spans/request, flat out"
FULL_PROCESSED=$(processed)
FULL_ACCEPTED=$(field "['spans_accepted']")
FULL_RSS=$(rss_mib VmHWM)
stop_agent

start_otlp_agent ""
sleep 2
IDLE_RSS=$(rss_mib VmRSS)
PHASE_DURATION=$STEADY_DURATION load --spans-per-request 100 --connections 2 --rate 10000
STEADY_CPU=$CPU_PERCENT
row "full pipeline, steady 10,000 spans/s ($STEADY_DURATION)"
STEADY_RSS=$(rss_mib VmHWM)

load --spans-per-request 1 --connections "$CONNECTIONS"
row "full pipeline, 1 span/request, flat out"
SMALL_RSS=$(rss_mib VmHWM)
stop_agent

echo
echo "- full pipeline / decode-only: **$(python3 -c "print(f'{$FULL_RATE / $DISCARD_RATE:.2f}')")** ($FULL_RATE vs $DISCARD_RATE spans/s)"
echo "- every accepted span processed (flat-out run): accepted $FULL_ACCEPTED, processed ${FULL_PROCESSED:-?} when measured"
echo "- steady 10,000 spans/s: agent CPU $STEADY_CPU % of one core (receiving and decoding alone, the discarding agent at the same rate: $DISCARD_STEADY_CPU %); RSS idle $IDLE_RSS MiB, peak $STEADY_RSS MiB (peak over the 1-span phase too: $SMALL_RSS MiB)"
echo "- flat-out peak RSS: $FULL_RSS MiB"
