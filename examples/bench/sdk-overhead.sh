#!/usr/bin/env bash
# examples/shop under wrk in its three instrumentation modes, in one run:
# `none` (no subscriber: every span disabled), `sdk` (telltale_sdk::init,
# 100 % sampling, exporting to a real telltale agent) and `hand-wired`
# (tracing-opentelemetry + opentelemetry-otlp's batch processor set up by hand,
# the same spans, exporting to the same agent). Modes alternate over ROUNDS so
# drift on the machine hits them all alike.
#
#   bash examples/bench/sdk-overhead.sh                  # /orders/fast, 5 rounds of 10 s
#   ROUTE=/products/7 ROUNDS=5 bash examples/bench/sdk-overhead.sh
#
# Needs: wrk, the machine's PostgreSQL (127.0.0.1:5432, database `test`) and
# Redis (127.0.0.1:6379). Loopback only. Prints a markdown table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

ROUTE=${ROUTE:-/orders/fast}
ROUNDS=${ROUNDS:-5}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-10s}

command -v wrk >/dev/null || { echo "sdk-overhead: wrk is missing (apt-get install wrk)" >&2; exit 1; }

cargo build --release -q -p telltale-agent --bin telltale -p telltale-example-shop --bin shop
AGENT_BIN=target/release/telltale
SHOP=target/release/shop

. examples/bench/lib.sh
start_agent "$AGENT_BIN"

accepted() { curl -fs "http://127.0.0.1:$ADMIN/metrics" | awk '/^telltale_ingest_accepted_items_total\{signal="traces"\}/ {print $2}'; }

# One mode for one round: start the shop, warm up, measure, stop.
# Prints "requests/s p99_ms".
measure() {
    local mode=$1 port pid
    port=$(free_port)
    SHOP_LISTEN="127.0.0.1:$port" SHOP_INSTRUMENTATION="$mode" OTEL_SERVICE_NAME="shop-$mode" \
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$GRPC" RUST_LOG=warn \
        "$SHOP" >"$WORK/shop-$mode.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    wrk -t"$THREADS" -c"$CONNECTIONS" -d3s "http://127.0.0.1:$port$ROUTE" >/dev/null
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$port$ROUTE" >"$WORK/wrk-$mode.txt"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    local rps p99
    rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk-$mode.txt")
    p99=$(awk '$1 == "99%" { v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v }' "$WORK/wrk-$mode.txt")
    if grep -q "Non-2xx" "$WORK/wrk-$mode.txt"; then
        echo "sdk-overhead: $mode answered errors:" >&2; cat "$WORK/wrk-$mode.txt" >&2; exit 1
    fi
    echo "$rps $p99"
}

echo "| round | none req/s | sdk req/s | hand-wired req/s | sdk/none | sdk/hand-wired | p99 none | p99 sdk | p99 hand-wired | sdk p99 added |"
echo "|---|---|---|---|---|---|---|---|---|---|"
before=$(accepted)
for round in $(seq "$ROUNDS"); do
    read -r none_rps none_p99 < <(measure none)
    read -r sdk_rps sdk_p99 < <(measure sdk)
    read -r hand_rps hand_p99 < <(measure hand-wired)
    python3 - "$round" "$none_rps" "$sdk_rps" "$hand_rps" "$none_p99" "$sdk_p99" "$hand_p99" <<'PY'
import sys
r, n, s, h, pn, ps, ph = sys.argv[1], *map(float, sys.argv[2:])
print(f"| {r} | {n:,.0f} | {s:,.0f} | {h:,.0f} | {s/n:.2f} | {s/h:.2f} | {pn:.2f} ms | {ps:.2f} ms | {ph:.2f} ms | {ps-pn:+.2f} ms |")
PY
    echo "$none_rps $sdk_rps $hand_rps $none_p99 $sdk_p99" >>"$WORK/rounds.txt"
done
echo
# The VM's own throughput moves by several percent between rounds: the mean
# over rounds is the figure to hold against the floors.
python3 - "$WORK/rounds.txt" <<'PY'
import sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1])]
sdk_none = [s / n for n, s, h, pn, ps in rows]
sdk_hand = [s / h for n, s, h, pn, ps in rows]
added = [ps - pn for n, s, h, pn, ps in rows]
mean = lambda xs: sum(xs) / len(xs)
print(f"over {len(rows)} rounds: sdk/none mean {mean(sdk_none):.3f} (min {min(sdk_none):.2f}, max {max(sdk_none):.2f}); "
      f"sdk/hand-wired mean {mean(sdk_hand):.3f} (min {min(sdk_hand):.2f}); p99 added mean {mean(added):+.2f} ms")
PY
echo
echo "spans the agent accepted during the run: $(( $(accepted) - before ))"
echo "route $ROUTE, wrk -t$THREADS -c$CONNECTIONS -d$DURATION per mode and round; release builds"
