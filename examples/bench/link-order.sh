#!/usr/bin/env bash
# Regenerates agent/link-order.txt, the order the linker lays out the agent's
# functions in (see that file's header and agent/build.rs): the agent runs
# under callgrind through a workload like production's, phase by phase
# (start-up and idle health checks; OTLP traces over gRPC; over HTTP; RUM
# beacons; scrapes and API reads; then PostgreSQL, MariaDB and Redis checks),
# and the functions that ran are listed phase by phase, the hottest first
# within each. Loopback only; needs valgrind, wrk and the local PostgreSQL,
# MariaDB and Redis. Rebuild afterwards to link with the new order.
#
#   bash examples/bench/link-order.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

for tool in valgrind callgrind_control wrk nm curl python3; do
    command -v "$tool" >/dev/null || { echo "link-order: $tool is missing" >&2; exit 1; }
done
cargo build --release -q -p telltale-agent --bin telltale -p telltale-loadgen --bin telltale-loadgen
AGENT_BIN=target/release/telltale
LOADGEN=target/release/telltale-loadgen
ORDER=agent/link-order.txt

. examples/bench/lib.sh

listed=$(grep -cv '^#' "$ORDER" || true)
present=$(comm -12 <(grep -v '^#' "$ORDER" | sort -u) <(nm --defined-only "$AGENT_BIN" | awk '{print $3}' | sort -u) | wc -l)
echo "before: $present of $listed listed functions are in the current binary"

# One profile a phase: callgrind_control dumps what ran since the last dump.
phase() { callgrind_control --dump="$1" "$AGENT" >/dev/null; sleep 1; }
profiled() { # NAME EXTRA_TOML
    AGENT_WRAPPER="valgrind --tool=callgrind --demangle=no --callgrind-out-file=$WORK/$1" \
        start_agent "$AGENT_BIN" "$2"
}

# Flame history compressed as in otlp-plateau.sh, so that its expiry and
# roll-up, which a production agent runs all day, run within the profile.
profiled features '[health]
interval = "1s"

[health.checks.disk]
kind = "disk"
path = "/"

[flame]
bucket = "1s"
retention = "30s"
rollup_after = "5s"
rollup_bucket = "2s"'
sleep 5
phase idle
"$LOADGEN" --protocol grpc --endpoint "http://127.0.0.1:$GRPC" --duration 20s --rate 1000 --connections 2 >/dev/null
phase grpc
"$LOADGEN" --protocol http --endpoint "http://127.0.0.1:$HTTP" --duration 5s --rate 500 --connections 2 >/dev/null
"$LOADGEN" --protocol http --json --gzip --endpoint "http://127.0.0.1:$HTTP" --duration 5s --rate 200 --connections 1 --repeated-queries 5 >/dev/null
phase http
wrk -t1 -c2 -d5s -s examples/bench/rum-beacons.lua "http://127.0.0.1:$PUBLIC/rum" >/dev/null
phase rum
for path in /health /health/disk /health/live; do curl -fs "http://127.0.0.1:$PUBLIC$path" >/dev/null || true; done
for path in /metrics /api/v1/services /api/v1/traces /api/v1/findings /; do curl -fs "$ADMIN_URL$path" >/dev/null || true; done
sleep 1
stop_agent

# Database and cache checks last: an agent that checks none never maps them.
profiled checks '[health]
interval = "1s"

[health.checks.db]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:5432/postgres"

[health.checks.orders-db]
kind = "mysql"
url = "mysql://root@127.0.0.1:3306/test"

[health.checks.cache]
kind = "redis"
url = "redis://127.0.0.1:6379/"'
sleep 5
# A failing check would profile only its error path.
curl -fs "http://127.0.0.1:$PUBLIC/health" >/dev/null ||
    { echo "link-order: PostgreSQL, MariaDB or Redis is not answering on loopback" >&2; exit 1; }
stop_agent

# callgrind numbers the dumps (features.1, .2, ...) in the order they were made;
# what ran after the last one is in the file written at exit (features).
mapfile -t dumps < <(find "$WORK" -maxdepth 1 -name 'features.*' | sort -V)
[ "${#dumps[@]}" -eq 4 ] || { echo "link-order: expected 4 phase dumps, found ${#dumps[@]}" >&2; exit 1; }
python3 examples/bench/link_order.py "$AGENT_BIN" "$ORDER" "${dumps[@]}" "$WORK/features" "$WORK/checks" | {
    read -r written; echo "wrote $ORDER: $written functions"
}
