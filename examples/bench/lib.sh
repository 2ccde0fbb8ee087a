# What the benchmark scripts here share: a temp dir, free loopback ports, one
# agent started from a config, and everything stopped and removed on exit.
# Source it from the repository root: `. examples/bench/lib.sh`.

WORK=$(mktemp -d)
AGENT=        # the agent's pid while one runs
BACKGROUND=() # other processes a script starts (apps, load); killed on exit

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Stops the agent: SIGINT starts its drain, a second one ends it at once.
stop_agent() {
    if [ -n "$AGENT" ]; then
        kill -INT "$AGENT" 2>/dev/null || true; sleep 0.3; kill -INT "$AGENT" 2>/dev/null || true
        wait "$AGENT" 2>/dev/null || true
        AGENT=
    fi
}

cleanup() {
    for pid in "${BACKGROUND[@]}"; do kill "$pid" 2>/dev/null || true; done
    stop_agent
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# start_agent BIN [EXTRA_TOML]: an agent on four free loopback ports with a
# memory check and its own database file in $WORK, EXTRA_TOML appended (it must
# not repeat [listeners], [health.checks.mem] or [storage]). Waits until
# /health/live answers. Sets AGENT (pid), the ports PUBLIC, ADMIN, GRPC and
# HTTP, and ADMIN_URL. AGENT_WRAPPER runs the agent under a profiler, e.g.
# AGENT_WRAPPER="valgrind --tool=massif" (word-split on purpose).
start_agent() {
    PUBLIC=$(free_port); ADMIN=$(free_port); GRPC=$(free_port); HTTP=$(free_port)
    cat >"$WORK/agent.toml" <<TOML
[listeners]
public = "127.0.0.1:$PUBLIC"
admin = "127.0.0.1:$ADMIN"
otlp_grpc = "127.0.0.1:$GRPC"
otlp_http = "127.0.0.1:$HTTP"

[health.checks.mem]
kind = "memory"

[storage]
path = "$WORK/telltale-$RANDOM.db"

${2:-}
TOML
    # shellcheck disable=SC2086
    ${AGENT_WRAPPER:-} "$1" --config "$WORK/agent.toml" >"$WORK/agent.log" 2>&1 &
    AGENT=$!
    ADMIN_URL="http://127.0.0.1:$ADMIN"
    for _ in $(seq 600); do
        curl -fs "http://127.0.0.1:$PUBLIC/health/live" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "the agent did not start:" >&2; cat "$WORK/agent.log" >&2; exit 1
}
