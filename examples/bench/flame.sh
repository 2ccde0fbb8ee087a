#!/usr/bin/env bash
# Flame graphs: (1) render time of a 100,000-line folded profile through the
# agent's API (GET /api/v1/flamegraph, HTTP included) against inferno's own
# `inferno-flamegraph` on the same file, as a ratio; (2) CPU profile ingest
# rate (POST /v1/profiles of a 5,000-stack folded profile, 2 clients with
# keep-alive); (3) the SDK profiler's overhead on a CPU-bound program (work
# done in 5 s with and without it, alternating); (4) span-fold cost per trace
# (criterion). Loopback only.
#
#   bash examples/bench/flame.sh              # 7 renders each, 10 s of ingest
#   RUNS=15 INGEST_SECONDS=30 bash examples/bench/flame.sh
#   SKIP_OVERHEAD=1 SKIP_CRITERION=1 bash examples/bench/flame.sh   # render + ingest only
#
# `inferno` is installed with `cargo install` into a temp root (not the
# repository). Prints a markdown report for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

RUNS=${RUNS:-7}
INGEST_SECONDS=${INGEST_SECONDS:-10}
INFERNO_VERSION=${INFERNO_VERSION:-0.12.8}

cargo build --release -q -p telltale-agent --bin telltale
AGENT_BIN=target/release/telltale
CPU_BUSY=target/release/cpu_busy
[ -n "${SKIP_OVERHEAD:-}" ] || cargo build --release -q -p telltale-tests --bin cpu_busy

. examples/bench/lib.sh
INFERNO_ROOT=${INFERNO_ROOT:-$WORK/inferno}

if [ ! -x "$INFERNO_ROOT/bin/inferno-flamegraph" ]; then
    cargo install -q --locked --root "$INFERNO_ROOT" inferno --version "$INFERNO_VERSION"
fi
INFERNO="$INFERNO_ROOT/bin/inferno-flamegraph"

start_agent "$AGENT_BIN" '[flame]
# The 100,000-line profile is ~20 MB of text: above the 16 MiB default.
max_profile_size = "64 MiB"
max_bytes = "256 MiB"'

# Deterministic synthetic profiles: stacks over 3,000 function names, depth
# 6-30, a few hot paths and a long tail, as a large service's profile looks.
python3 - "$WORK" <<'PY'
import random, sys
work = sys.argv[1]
def profile(lines, seed):
    rng = random.Random(seed)
    names = [f"c{c}::m{m}::f{f}" for c in range(10) for m in range(15) for f in range(20)]
    stacks = set()
    while len(stacks) < lines:
        depth = rng.randint(6, 30)
        frames = ["main", "runtime::block_on"] + [names[min(len(names) - 1, int(rng.paretovariate(1.2) * 3) + d * 7) % len(names)] for d in range(depth)]
        stacks.add(";".join(frames))
    return "".join(f"{s} {rng.randint(1, 1000)}\n" for s in sorted(stacks))
open(f"{work}/big.folded", "w").write(profile(100_000, 1))
open(f"{work}/ingest.folded", "w").write(profile(5_000, 2))
PY

curl -fsS -o /dev/null -X POST --data-binary "@$WORK/big.folded" -H 'content-type: text/plain' \
    "$ADMIN_URL/v1/profiles?service=bench&sample_rate=99"
GET_URL="$ADMIN_URL/api/v1/flamegraph?source=cpu&service=bench"

python3 - "$WORK" "$INFERNO" "$GET_URL" "$RUNS" "$(wc -c <"$WORK/big.folded")" <<'PY'
import statistics, subprocess, sys, time, urllib.request
work, inferno, url, runs, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def timed(f):
    samples = []
    for _ in range(runs):
        t = time.perf_counter(); out = f(); samples.append(time.perf_counter() - t)
    return statistics.median(samples), min(samples), out
def api():
    with urllib.request.urlopen(url) as r:
        assert r.status == 200
        return len(r.read())
def cli():
    with open(f"{work}/big.folded", "rb") as src:
        out = subprocess.run([inferno], stdin=src, stdout=subprocess.PIPE, check=True).stdout
    return len(out)
api_median, api_min, api_bytes = timed(api)
cli_median, cli_min, cli_bytes = timed(cli)
print(f"### Flame graph rendering — 100,000-line folded profile ({size / 1e6:.1f} MB), {runs} runs each")
print()
print("| renderer | median s | best s | SVG bytes |")
print("|---|---:|---:|---:|")
print(f"| agent `GET /api/v1/flamegraph` (HTTP included) | {api_median:.3f} | {api_min:.3f} | {api_bytes:,} |")
print(f"| `inferno-flamegraph` CLI (file on stdin) | {cli_median:.3f} | {cli_min:.3f} | {cli_bytes:,} |")
print()
print(f"Ratio agent / inferno (medians): **{api_median / cli_median:.2f}×** (floor: at most 1.5×)")
print()
PY

# Ingest: 2 keep-alive clients post the same 5,000-stack profile for INGEST_SECONDS.
python3 - "$WORK" "$ADMIN" "$INGEST_SECONDS" "$AGENT" <<'PY'
import http.client, os, sys, threading, time
work, port, seconds, pid = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
body = open(f"{work}/ingest.folded", "rb").read()
def cpu():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
counts = [0, 0]
deadline = time.perf_counter() + seconds
def client(i):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    while time.perf_counter() < deadline:
        conn.request("POST", f"/v1/profiles?service=ingest{i}&format=folded", body, {"content-type": "text/plain"})
        r = conn.getresponse(); r.read()
        assert r.status == 200, r.status
        counts[i] += 1
cpu0, t0 = cpu(), time.perf_counter()
threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
for t in threads: t.start()
for t in threads: t.join()
elapsed, used = time.perf_counter() - t0, cpu() - cpu0
total = sum(counts)
print(f"### CPU profile ingest — 5,000-stack folded profile ({len(body) / 1e3:.0f} kB), 2 clients, {seconds:.0f} s")
print()
print(f"{total / elapsed:.0f} profiles/s ({total / elapsed * 5000:,.0f} stacks/s); agent CPU {used / elapsed * 100:.0f} % of one core")
print()
PY

# SDK profiler overhead: the same CPU-bound loop with and without it.
OVERHEAD_RUNS=${OVERHEAD_RUNS:-3}
[ -n "${SKIP_OVERHEAD:-}" ] && OVERHEAD_RUNS=0
for i in $(seq "$OVERHEAD_RUNS"); do
    "$CPU_BUSY" "$ADMIN" overhead seconds 5 off 2>&1 | sed -n 's/^iterations=/off /p'
    "$CPU_BUSY" "$ADMIN" overhead seconds 5 2>&1 | sed -n 's/^iterations=/on /p'
done >"$WORK/overhead.txt"
[ -n "${SKIP_OVERHEAD:-}" ] || python3 - "$WORK/overhead.txt" <<'PY'
import statistics, sys
runs = {"off": [], "on": []}
for line in open(sys.argv[1]):
    mode, n = line.split()
    runs[mode].append(int(n))
off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
print("### SDK profiler overhead — CPU-bound loop, 5 s per run, median of", len(runs["on"]), "runs each")
print()
print(f"work done without the profiler: {off:,.0f} iterations; with it (99 Hz, posting every 1 s): {on:,.0f}; "
      f"overhead **{(off - on) / off * 100:.1f} %** (runs: off {runs['off']}, on {runs['on']})")
print()
PY
stop_agent

if [ -z "${SKIP_CRITERION:-}" ]; then
    echo "### Span folding per trace (criterion, \`cargo bench -p telltale-agent --bench flame_fold\`)"
    echo
    echo "| benchmark | time per trace |"
    echo "|---|---:|"
    cargo bench -q -p telltale-agent --bench flame_fold -- --warm-up-time 1 --measurement-time 3 2>/dev/null |
        awk '/^[a-z_]+\/[0-9]+/ {name=$1} /time:/ {gsub(/\[|\]/, ""); print "| " name " spans | " $(NF-3) " " $(NF-2) " |"}'
fi
