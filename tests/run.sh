#!/usr/bin/env bash
# The project's test command.
#
#   tests/run.sh [cargo test args...]
#
# 1. installs the Debian packages the end-to-end tests need (only the missing
#    ones; `apt-get update` only when something is missing);
# 2. starts the machine's shared PostgreSQL, Redis and MariaDB when they are
#    stopped, and makes sure each has a database `test` reachable over TCP
#    without a password (the URLs in tests/src/shared.rs);
# 3. builds the whole workspace and exports TELLTALE_BIN and SHOP_BIN (the agent
#    and example shop binaries the tests run);
# 4. runs `cargo test --workspace --no-fail-fast "$@"`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { printf 'run.sh: %s\n' "$*" >&2; }
die() {
    printf 'run.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------- packages --

# Succeeds when the command exists on PATH or in one of the given paths/globs.
have() {
    local name="$1"
    shift
    command -v "$name" >/dev/null 2>&1 && return 0
    local candidate path
    for candidate in "$@"; do
        # Unquoted on purpose: globs like /usr/lib/postgresql/*/bin/initdb.
        for path in $candidate; do
            [[ -x "$path" ]] && return 0
        done
    done
    return 1
}

missing=()
need() {
    local package="$1"
    shift
    if ! "$@" >/dev/null 2>&1; then
        missing+=("$package")
    fi
}

need postgresql have initdb '/usr/lib/postgresql/*/bin/initdb'
need postgresql-contrib compgen -G '/usr/lib/postgresql/*/lib/pg_stat_statements.so'
need mariadb-server have mariadbd /usr/sbin/mariadbd
need mariadb-client have mariadb
need redis-server have redis-server
need haproxy have haproxy /usr/sbin/haproxy
need wrk have wrk
need nginx-light have nginx /usr/sbin/nginx
need chromium have chromium
need prometheus have prometheus
need chromium-driver have chromedriver

if ((${#missing[@]} > 0)); then
    say "installing missing packages: ${missing[*]}"
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found; install these packages by hand: ${missing[*]}"
    [[ $(id -u) -eq 0 ]] ||
        die "installing ${missing[*]} needs root: run tests/run.sh as root (or install them by hand)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || die "apt-get update failed (needed to install: ${missing[*]})"
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        # Find out which package(s) apt-get cannot install, to name them.
        failed=()
        for package in "${missing[@]}"; do
            apt-get install -y -q --no-install-recommends "$package" || failed+=("$package")
        done
        ((${#failed[@]} == 0)) ||
            die "apt-get could not install package(s): ${failed[*]}"
    fi
fi

# --------------------------------------------------------- shared services --

# Polls "$@" every half second for up to 30 s.
wait_for() {
    local i
    for ((i = 0; i < 60; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

# PostgreSQL: postgres://postgres@127.0.0.1:5432/test
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
pg_sql() { psql -X -h 127.0.0.1 -p 5432 -U postgres -d postgres -tAc "$1"; }
if ! pg_up; then
    say "starting the shared PostgreSQL"
    [[ -d /etc/postgresql ]] && [[ -n "$(ls /etc/postgresql)" ]] ||
        die "no PostgreSQL cluster in /etc/postgresql: create one with pg_createcluster <version> main"
    install -d -o postgres -g postgres -m 2775 /var/run/postgresql
    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start ||
        die "pg_ctlcluster could not start PostgreSQL (see /var/log/postgresql/)"
    wait_for pg_up ||
        die "the shared PostgreSQL did not accept connections on 127.0.0.1:5432 within 30 s (see /var/log/postgresql/)"
fi
if ! pg_sql 'SELECT 1' >/dev/null 2>&1; then
    # The tests log in over TCP without a password: trust loopback.
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
        say "allowing passwordless loopback logins in $hba"
        sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    done
    runuser -u postgres -- psql -X -tAc 'SELECT pg_reload_conf()' >/dev/null
    sleep 1
    pg_sql 'SELECT 1' >/dev/null ||
        die "cannot log in to the shared PostgreSQL as postgres@127.0.0.1 without a password"
fi
if [[ "$(pg_sql "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]]; then
    say "creating PostgreSQL database test"
    pg_sql 'CREATE DATABASE test' >/dev/null
fi

# Redis: redis://127.0.0.1:6379/
redis_up() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == PONG ]]; }
if ! redis_up; then
    say "starting the shared Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log ||
        die "redis-server could not start (see /var/log/redis/ci.log)"
    wait_for redis_up ||
        die "the shared Redis did not answer PING on 127.0.0.1:6379 within 30 s (see /var/log/redis/ci.log)"
fi

# MariaDB: mysql://root@127.0.0.1:3306/test
maria_up() { mariadb -uroot -h127.0.0.1 -e 'select 1'; }
maria_listening() { mariadb-admin --protocol=tcp -h127.0.0.1 -P3306 ping; }
if ! maria_up >/dev/null 2>&1; then
    if ! maria_listening >/dev/null 2>&1; then
        say "starting the shared MariaDB"
        install -d -o mysql -g mysql /run/mysqld
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd ||
            die "start-stop-daemon could not start /usr/sbin/mariadbd"
        wait_for maria_listening ||
            die "the shared MariaDB did not accept connections on 127.0.0.1:3306 within 30 s (see /var/log/mysql/error.log)"
    fi
    if ! maria_up >/dev/null 2>&1; then
        # The tests log in over TCP as root without a password; Debian's root
        # only logs in through the unix socket. Allow both.
        say "allowing passwordless root logins over TCP to the shared MariaDB"
        mariadb -uroot -e "
            ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket
                OR mysql_native_password USING PASSWORD('');
            CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
            GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
            FLUSH PRIVILEGES;" ||
            die "cannot reach the shared MariaDB as root through its unix socket to allow TCP logins"
        maria_up >/dev/null ||
            die "cannot log in to the shared MariaDB as root@127.0.0.1 without a password"
    fi
fi
mariadb -uroot -h127.0.0.1 -e 'CREATE DATABASE IF NOT EXISTS test' ||
    die "cannot create MariaDB database test"

# ------------------------------------------------------------- build, test --

say "building the workspace"
cargo build --workspace --all-targets
target_dir="${CARGO_TARGET_DIR:-$root/target}"
[[ "$target_dir" = /* ]] || target_dir="$root/$target_dir"
TELLTALE_BIN="$target_dir/debug/telltale"
[[ -x "$TELLTALE_BIN" ]] || die "the build did not produce $TELLTALE_BIN"
export TELLTALE_BIN
SHOP_BIN="$target_dir/debug/shop"
[[ -x "$SHOP_BIN" ]] || die "the build did not produce $SHOP_BIN"
export SHOP_BIN
say "testing with TELLTALE_BIN=$TELLTALE_BIN SHOP_BIN=$SHOP_BIN"

cargo test --workspace --no-fail-fast "$@"
