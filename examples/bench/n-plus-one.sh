#!/usr/bin/env bash
# N+1 detection cost in the full pipeline: the same agent build with trace
# assembly off (`traces.enabled = false`), with traces assembled (recent-trace
# ring, span flame graphs) but the N+1 detector off (`nplusone.enabled =
# false`), and with everything on (the default), alternating ROUNDS times in
# one run, each taking the load generator flat out with an N+1 loop in every
# trace (a list query, 9 lookups with one template, one outbound call: 12
# spans). Then the time from a trace's completion (the end of its quiet
# period) to its finding on /api/v1/findings. Loopback only.
#
#   bash examples/bench/n-plus-one.sh                    # 10 s per phase, 2 rounds
#   DURATION=20s ROUNDS=3 bash examples/bench/n-plus-one.sh
#
# Prints a markdown report for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-4}

cargo build --release -q -p telltale-agent --bin telltale -p telltale-loadgen --bin telltale-loadgen
AGENT_BIN=target/release/telltale
LOADGEN=target/release/telltale-loadgen

. examples/bench/lib.sh

# Starts an agent with extra config; sets AGENT, ADMIN_URL, HTTP and ENDPOINT.
start_n1_agent() {
    start_agent "$AGENT_BIN" "$1"
    ENDPOINT="http://127.0.0.1:$GRPC"
}

cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$AGENT/stat"; }
metric() { curl -fs "$ADMIN_URL/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $2} END {print s + 0}'; }

# Flat-out load; sets RATE (accepted spans/s) and CPU (agent, % of one core).
load() {
    local before after
    before=$(cpu_seconds)
    "$LOADGEN" --endpoint "$ENDPOINT" --duration "$DURATION" --connections "$CONNECTIONS" \
        --spans-per-request 120 --repeated-queries 9 >"$WORK/report.json"
    after=$(cpu_seconds)
    RATE=$(python3 -c "import json; print(round(json.load(open('$WORK/report.json'))['accepted_spans_per_second']))")
    CPU=$(python3 -c "import json; r=json.load(open('$WORK/report.json')); print(f'{($after - $before) / r[\"seconds\"] * 100:.0f}')")
}

echo "### N+1 detection — $(date -u +%Y-%m-%d), $(nproc) cores, grpc, $CONNECTIONS connections, $DURATION per phase, 12-span traces with a 9-query N+1 loop"
echo
echo "| round | detection | accepted spans/s | agent CPU (of one core) | traces analysed | traces dropped unanalysed | findings | peak RSS MiB |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
peak_rss() { awk '$1 == "VmHWM:" {printf "%.1f", $2 / 1024}' "/proc/$AGENT/status"; }
OFF_RATES=(); NODETECT_RATES=(); ON_RATES=()
for round in $(seq "$ROUNDS"); do
    start_n1_agent "[traces]
enabled = false"
    load
    OFF_RATES+=("$RATE")
    echo "| $round | traces off (traces.enabled = false) | $RATE | $CPU % | - | - | - | $(peak_rss) |"
    stop_agent

    start_n1_agent "[n_plus_one]
enabled = false"
    load
    NODETECT_RATES+=("$RATE")
    sleep 3   # the last traces' quiet period
    echo "| $round | traces on, detector off (n_plus_one.enabled = false) | $RATE | $CPU % | - | $(metric telltale_traces_dropped_total) | - | $(peak_rss) |"
    stop_agent

    start_n1_agent ""
    load
    ON_RATES+=("$RATE")
    sleep 3
    echo "| $round | all on (default) | $RATE | $CPU % | $(metric telltale_n_plus_one_analysed_traces_total) | $(metric telltale_traces_dropped_total) | $(metric telltale_n_plus_one_findings) | $(peak_rss) |"
    stop_agent
done
echo
python3 - "${OFF_RATES[*]}" "${NODETECT_RATES[*]}" "${ON_RATES[*]}" <<'PY'
import sys, statistics
off, nodetect, on = ([float(x) for x in arg.split()] for arg in sys.argv[1:4])
def ratio(name, a, b):
    pairs = ", ".join(f"{y / x:.2f}" for x, y in zip(a, b))
    print(f"- {name}, per round: **{pairs}**; medians {statistics.median(b):.0f} vs {statistics.median(a):.0f} spans/s "
          f"(**{statistics.median(b) / statistics.median(a):.2f}**)")
ratio("detector on / off, traces assembled in both", nodetect, on)
ratio("everything on / trace assembly off", off, on)
PY

# Completion to finding: one N+1 trace at a time over OTLP/HTTP JSON; the
# trace is complete quiet_period after its last span arrived; poll the API.
start_n1_agent "[traces]
quiet_period = \"2s\""
python3 - "$HTTP" "$ADMIN_URL" <<'PY'
import json, os, sys, time, urllib.request
port, admin = sys.argv[1], sys.argv[2]
quiet = 2.0
samples = []
for n in range(20):
    trace = os.urandom(16).hex()
    now = time.time_ns()
    root = os.urandom(8).hex()
    def span(i, parent, kind, name, attrs):
        return {"traceId": trace, "spanId": f"{i + 1:016x}" if parent else root, "parentSpanId": parent,
                "name": name, "kind": kind, "startTimeUnixNano": str(now + i * 1000), "endTimeUnixNano": str(now + i * 1000 + 900),
                "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]}
    spans = [span(0, "", 2, "GET /orders", {"http.route": "/orders"})]
    for i in range(10):
        spans.append(span(i + 1, root, 3, "SELECT", {"db.system.name": "postgresql", "db.query.text": "SELECT * FROM customers WHERE id = $1"}))
    body = json.dumps({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bench"}}]},
                                          "scopeSpans": [{"spans": spans}]}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", body, {"content-type": "application/json"})
    urllib.request.urlopen(req).read()
    sent = time.monotonic()
    while True:
        found = json.load(urllib.request.urlopen(f"{admin}/api/v1/findings"))["findings"]
        if found and found[0]["exampleTraceId"] == trace:
            break
        time.sleep(0.002)
    samples.append((time.monotonic() - sent - quiet) * 1000)
samples.sort()
print(f"- completion → finding on /api/v1/findings (quiet_period 2s, 20 traces, 2 ms polling): "
      f"median **{samples[10]:.0f} ms**, max {samples[-1]:.0f} ms after the quiet period ended "
      f"(the sweep runs every quiet_period / 4, at most 250 ms)")
PY
