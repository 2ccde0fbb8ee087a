#!/usr/bin/env bash
# /health under wrk beside nginx answering a static `return 200;`, in one run on
# one machine, with a PostgreSQL, a Redis, a disk and an HTTP check configured.
#
#   bash examples/bench/health-vs-nginx.sh            # 2 threads, 64 connections, 10 s
#   DURATION=30s bash examples/bench/health-vs-nginx.sh
#
# Needs: wrk, nginx (Debian nginx-light), redis-server, and the machine's
# PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`). Loopback only.
# Prints a markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-10s}
INTERVAL=${INTERVAL:-2s}

for tool in wrk nginx redis-server psql; do
    command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin" command -v "$tool" >/dev/null ||
        { echo "health-vs-nginx: $tool is missing (apt-get install wrk nginx-light redis-server postgresql-client)" >&2; exit 1; }
done
NGINX=$(PATH="$PATH:/usr/sbin" command -v nginx)

cargo build --release -q -p telltale-agent --bin telltale
BIN=target/release/telltale

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Transactions committed in database `test`, read from another database so the
# reading does not count. A busy backend publishes its counts only when it
# disconnects, so PostgreSQL is read once before the agent starts and once after
# it exits: the whole run's total, against elapsed / interval.
pg_commits() { psql -XAtq -h 127.0.0.1 -U postgres -d postgres -c "select xact_commit from pg_stat_database where datname = 'test'"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NGINX_PORT=$(free_port)
REDIS_PORT=$(free_port)
PUBLIC=$(free_port); ADMIN=$(free_port); GRPC=$(free_port); HTTP=$(free_port)

# nginx: one worker per core, a static 200, no logging (as the agent does not log polls).
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
    server { listen 127.0.0.1:$NGINX_PORT; location / { return 200 "ok\n"; } }
}
EOF
"$NGINX" -c "$WORK/nginx.conf"

# A private Redis, so its command counter sees only the agent.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >"$WORK/redis.log" &
PIDS+=($!)

cat >"$WORK/telltale.toml" <<EOF
[listeners]
public = "127.0.0.1:$PUBLIC"
admin = "127.0.0.1:$ADMIN"
otlp_grpc = "127.0.0.1:$GRPC"
otlp_http = "127.0.0.1:$HTTP"

[health]
interval = "$INTERVAL"

[health.checks.db]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:5432/test"

[health.checks.cache]
kind = "redis"
url = "redis://127.0.0.1:$REDIS_PORT"

[health.checks.disk]
kind = "disk"
path = "/"

[health.checks.web]
kind = "http"
url = "http://127.0.0.1:$NGINX_PORT/"
EOF
PG_BEFORE=$(pg_commits)
"$BIN" --config "$WORK/telltale.toml" >"$WORK/agent.log" 2>&1 &
AGENT=$!
AGENT_STARTED=$(date +%s.%N)
PIDS+=("$AGENT")

for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PUBLIC/health" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs "http://127.0.0.1:$PUBLIC/health" >/dev/null || { echo "agent not healthy:"; cat "$WORK/agent.log"; curl -s "http://127.0.0.1:$PUBLIC/health"; exit 1; }
sleep 10
IDLE_RSS_KIB=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status")

pings() { redis-cli -p "$REDIS_PORT" info commandstats | sed -n 's/^cmdstat_ping:calls=\([0-9]*\),.*/\1/p' | tr -d '\r'; }

# Validation queries while idle (no polling), over the same duration as the run.
secs=${DURATION%s}
p0=$(pings)
sleep "$secs"
p1=$(pings)

run_wrk() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$1"; }
NGINX_OUT=$(run_wrk "http://127.0.0.1:$NGINX_PORT/")
p2=$(pings)
AGENT_OUT=$(run_wrk "http://127.0.0.1:$PUBLIC/health")
p3=$(pings)
LOADED_RSS_KIB=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT/status")
kill -INT "$AGENT"; sleep 0.5; kill -INT "$AGENT" 2>/dev/null || true   # the second skips the drain
wait "$AGENT" 2>/dev/null || true
AGENT_RAN=$(python3 -c "import time; print(f'{time.time() - $AGENT_STARTED:.1f}')")
sleep 1
PG_AFTER=$(pg_commits)

rps() { awk '/Requests\/sec/ {print $2}' <<<"$1"; }
pct() { awk -v p="$2" '$1 == p {print $2}' <<<"$1"; }
errors() { awk '/Non-2xx|Socket errors/ {print}' <<<"$1"; }
ratio=$(python3 -c "print(f'{$(rps "$AGENT_OUT") / $(rps "$NGINX_OUT"):.2f}')")
delta() { echo $(( $2 - $1 )); }

echo "### /health vs nginx — $(date -u +%Y-%m-%d), $(nproc) cores, wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
echo
echo "| | requests/s | p50 | p90 | p99 |"
echo "|---|---:|---:|---:|---:|"
echo "| nginx \`return 200\` | $(rps "$NGINX_OUT") | $(pct "$NGINX_OUT" 50%) | $(pct "$NGINX_OUT" 90%) | $(pct "$NGINX_OUT" 99%) |"
echo "| telltale \`/health\` (4 checks) | $(rps "$AGENT_OUT") | $(pct "$AGENT_OUT" 50%) | $(pct "$AGENT_OUT" 90%) | $(pct "$AGENT_OUT" 99%) |"
echo
echo "- ratio telltale / nginx: **$ratio**"
echo "- agent RSS at idle (4 checks, 10 s after start): $((IDLE_RSS_KIB / 1024)) MiB ($IDLE_RSS_KIB KiB); peak during the run: $((LOADED_RSS_KIB / 1024)) MiB"
echo "- Redis PINGs (server side, private instance), interval $INTERVAL, per $DURATION: idle $(delta "$p0" "$p1"), while wrk polled nginx $(delta "$p1" "$p2"), while wrk polled /health $(delta "$p2" "$p3")"
echo "- PostgreSQL transactions in database \`test\` (pg_stat_database, server side) over the agent's whole life of ${AGENT_RAN}s, two wrk runs included: $(delta "$PG_BEFORE" "$PG_AFTER") (one check every $INTERVAL: about $(python3 -c "print(int($AGENT_RAN / ${INTERVAL%s}) + 1)") expected)"
for out in "$NGINX_OUT" "$AGENT_OUT"; do e=$(errors "$out"); [ -n "$e" ] && echo "- wrk reported: $e"; done
true
