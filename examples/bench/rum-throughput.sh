#!/usr/bin/env bash
# RUM beacons accepted per second, beside /health on the same public listener
# in the same run, then the agent's memory after 1,000,000 beacons over 1,000
# pages.
#
#   bash examples/bench/rum-throughput.sh            # 2 threads, 64 connections, 10 s
#   DURATION=30s bash examples/bench/rum-throughput.sh
#
# Needs: wrk (Debian wrk). Loopback only. Prints a markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-10s}
TOTAL=${TOTAL:-1000000}

command -v wrk >/dev/null || { echo "rum-throughput: wrk is missing (apt-get install wrk)" >&2; exit 1; }

cargo build --release -q -p telltale-agent --bin telltale
BIN=target/release/telltale

. examples/bench/lib.sh

# Every beacon comes from 127.0.0.1 here, so the rate limits are lifted: the
# benchmark measures the intake and aggregation, not the limiter refusing.
start_agent "$BIN" '[rum]
client_rate = 10000000
client_burst = 10000000
global_rate = 10000000
global_burst = 10000000'
sleep 2
IDLE_RSS_KIB=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status")

counter() { curl -fs "http://127.0.0.1:$ADMIN/metrics" | awk -v name="$1" '$1 == name {print $2}'; }
refused() { curl -fs "http://127.0.0.1:$ADMIN/metrics" | awk '/^telltale_rum_refused_beacons_total/ {s += $2} END {print s + 0}'; }
# requests/s, p50, p90, p99 from wrk --latency output
wrk_line() { awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +90%/ {p90=$2} /^ +99%/ {p99=$2} END {print rps, p50, p90, p99}'; }
rum_wrk() { wrk "$@" -s examples/bench/rum-beacons.lua "http://127.0.0.1:$PUBLIC/rum"; }

# Each alone, one after the other.
HEALTH_OUT=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$PUBLIC/health")
B0=$(counter telltale_rum_beacons_total)
RUM_OUT=$(rum_wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency)
B1=$(counter telltale_rum_beacons_total)
read -r H_RPS H50 H90 H99 <<<"$(wrk_line <<<"$HEALTH_OUT")"
read -r R_RPS R50 R90 R99 <<<"$(wrk_line <<<"$RUM_OUT")"
RUM_REQUESTS=$(awk '/requests in/ {print $1}' <<<"$RUM_OUT")
RUM_ERRORS=$(awk '/Non-2xx/ {print $NF}' <<<"$RUM_OUT")

# Both at once: /health's rate while beacons keep coming.
HALF=$((CONNECTIONS / 2))
rum_wrk -t1 -c"$HALF" -d"$DURATION" --latency >"$WORK/both-rum.txt" &
BOTH_RUM=$!
BOTH_HEALTH_OUT=$(wrk -t1 -c"$HALF" -d"$DURATION" --latency "http://127.0.0.1:$PUBLIC/health")
wait "$BOTH_RUM"
read -r BH_RPS BH50 BH90 BH99 <<<"$(wrk_line <<<"$BOTH_HEALTH_OUT")"
read -r BR_RPS BR50 BR90 BR99 <<<"$(wrk_line <"$WORK/both-rum.txt")"

# Memory: keep posting until TOTAL beacons were accepted in all.
while [ "$(counter telltale_rum_beacons_total)" -lt "$TOTAL" ]; do
    rum_wrk -t"$THREADS" -c"$CONNECTIONS" -d5s >/dev/null
done
ACCEPTED=$(counter telltale_rum_beacons_total)
sleep 2
RSS_KIB=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status")
HWM_KIB=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT/status")
PAGES=$(counter telltale_rum_pages)
REFUSED=$(refused)
# And once idle for a while: what the allocator still held right after the
# load (freed but not yet returned) is gone by then.
sleep 10
SETTLED_RSS_KIB=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status")

ratio=$(awk -v a="$R_RPS" -v b="$H_RPS" 'BEGIN {printf "%.2f", a / b}')
both_ratio=$(awk -v a="$BR_RPS" -v b="$BH_RPS" 'BEGIN {printf "%.2f", a / b}')
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

cat <<REPORT
### RUM beacons — $(date -u +%F), $(nproc) cores, wrk -t$THREADS -c$CONNECTIONS -d$DURATION

| | requests/s | p50 | p90 | p99 |
|---|---:|---:|---:|---:|
| \`GET /health\` alone | $H_RPS | $H50 | $H90 | $H99 |
| \`POST /rum\` alone (a page load a beacon: 7 navigation + 5 vital values) | $R_RPS | $R50 | $R90 | $R99 |
| \`GET /health\` while beacons arrive (-t1 -c$HALF each) | $BH_RPS | $BH50 | $BH90 | $BH99 |
| \`POST /rum\` at the same time | $BR_RPS | $BR50 | $BR90 | $BR99 |

- beacons/s ÷ /health requests/s, each alone: **$ratio**; at the same time: **$both_ratio**
- beacons accepted by the agent in the /rum phase: $((B1 - B0)) of $RUM_REQUESTS sent (wrk non-2xx: ${RUM_ERRORS:-0}); refused in the whole run: $REFUSED
- RSS: $(mib "$IDLE_RSS_KIB") MiB idle; $(mib "$RSS_KIB") MiB after $ACCEPTED beacons over $PAGES pages (peak $(mib "$HWM_KIB") MiB); $(mib "$SETTLED_RSS_KIB") MiB after 10 s more idle
REPORT
