#!/usr/bin/env bash
# Where the agent's memory settles at a steady 10,000 spans/s (100 spans per
# request over OTLP/gRPC, full pipeline): RSS every 30 s over a long run.
# What the agent keeps grows until its longest history is full, which takes
# an hour for the flame graphs' 10 s buckets; SCALE compresses that history
# (flame buckets of 10 s / SCALE, retention 1 h / SCALE; buckets are whole
# seconds, so SCALE is 1, 2, 5 or 10) so the same number of buckets fills in
# minutes. SCALE=10 fills an hour's 360 buckets in 6 minutes; the roll-up
# (1 min buckets past 10 min) is compressed the same way, and ROLLUP=off
# turns it off (rollup_bucket = bucket) to show an hour at full resolution.
# The golden signals' own history (23 buckets a series, the last filling
# after an hour) is not compressed: at SCALE > 1 it is not yet full at the end.
# Loopback only.
#
#   bash examples/bench/otlp-plateau.sh                  # SCALE=10 MINUTES=7
#   SCALE=1 MINUTES=65 bash examples/bench/otlp-plateau.sh
#   AGENT_BIN=/tmp/telltale-other bash examples/bench/otlp-plateau.sh
#   EXTRA_TOML=$'[traces]\nquiet_period = "2s"' bash examples/bench/otlp-plateau.sh
#
# Prints a markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

SCALE=${SCALE:-10}
MINUTES=${MINUTES:-7}
RATE=${RATE:-10000}

# AGENT_BIN measures a binary built elsewhere (another allocator, an older
# commit) with the load generator already in target/release.
if [ -z "${AGENT_BIN:-}" ]; then
    cargo build --release -q -p telltale-agent --bin telltale -p telltale-loadgen --bin telltale-loadgen
    AGENT_BIN=target/release/telltale
fi
. examples/bench/lib.sh

case "$SCALE" in
    1 | 2 | 5 | 10) ;;
    *) echo "otlp-plateau: SCALE must be 1, 2, 5 or 10 (flame buckets are whole seconds)" >&2; exit 2 ;;
esac
BUCKET_S=$((10 / SCALE))
RETENTION_S=$((3600 / SCALE))
ROLLUP_AFTER_S=$((600 / SCALE))
ROLLUP_BUCKET_S=$((60 / SCALE))
[ "${ROLLUP:-on}" = off ] && ROLLUP_BUCKET_S=$BUCKET_S
start_agent "$AGENT_BIN" "[flame]
bucket = \"${BUCKET_S}s\"
retention = \"${RETENTION_S}s\"
rollup_after = \"${ROLLUP_AFTER_S}s\"
rollup_bucket = \"${ROLLUP_BUCKET_S}s\"
${EXTRA_TOML:-}"
target/release/telltale-loadgen --protocol grpc --endpoint "http://127.0.0.1:$GRPC" \
    --duration "${MINUTES}m" --spans-per-request 100 --connections 2 --rate "$RATE" >"$WORK/report.json" &
LOAD=$!
BACKGROUND+=("$LOAD")

status_kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$AGENT/status"; }
mib() { python3 -c "print(f'{$1 / 1024:.1f}')"; }
gauge() { curl -fs "$ADMIN_URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

echo "### Memory plateau — $(date -u +%Y-%m-%d), $(nproc) cores, $RATE spans/s, flame buckets ${BUCKET_S} s kept ${RETENTION_S} s, ${ROLLUP_BUCKET_S} s wide past ${ROLLUP_AFTER_S} s (SCALE=$SCALE)"
echo
if [ -n "${EXTRA_TOML:-}" ]; then
    printf 'Extra config: `%s`\n\n' "$(printf '%s' "$EXTRA_TOML" | tr '\n' ' ')"
fi
echo "| time | RSS MiB | of it anonymous | peak | spans in flight | flame stack bytes (upper bound) |"
echo "|---:|---:|---:|---:|---:|---:|"
started=$(date +%s)
while kill -0 "$LOAD" 2>/dev/null; do
    sleep 30
    kill -0 "$LOAD" 2>/dev/null || break
    echo "| $(($(date +%s) - started)) s | $(mib "$(status_kib VmRSS)") | $(mib "$(status_kib RssAnon)") | $(mib "$(status_kib VmHWM)") | $(gauge telltale_trace_spans_in_flight) | $(gauge 'telltale_flame_stored_bytes{source="spans"}') |"
done
wait "$LOAD" || true
echo
python3 -c "import json; r=json.load(open('$WORK/report.json')); print(f\"- load: {r['accepted_spans_per_second']:.0f} spans/s accepted, {r['requests_refused']} requests refused\")"
