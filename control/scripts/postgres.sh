#!/usr/bin/env bash
# Starts a throwaway Postgres cluster for the ledger's tests and benchmark, on a free loopback
# port, and prints its URL (postgres://postgres@127.0.0.1:PORT/postgres) as the only stdout line.
#
#   postgres.sh start        start, print the URL, leave it running (data dir on stderr)
#   postgres.sh stop DIR     stop the cluster in DIR and delete DIR
#   postgres.sh run          start, print the URL, and stop + delete it when stdin closes
#                            (tests hold the pipe, so the cluster dies with the test process)
#
# Needs the Debian package `postgresql` (initdb, pg_ctl under /usr/lib/postgresql/N/bin). As
# root the cluster runs as the `postgres` system user (Postgres refuses to run as root). The data
# directory lives under the cargo target dir (CARGO_TARGET_DIR or <workspace>/target).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

find_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$d" && -x "$d/initdb" ]]; then echo "$d"; return; fi
    if command -v pg_config >/dev/null 2>&1; then pg_config --bindir; return; fi
    echo "postgres.sh: no Postgres found (apt-get install postgresql, or set PG_BIN)" >&2
    exit 2
}

as_pg() {
    if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    local bin dir port tries=0
    bin="$(find_bin)"
    mkdir -p "$target/pg"
    local parent="$target/pg"
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || { echo "postgres.sh: no postgres system user" >&2; exit 2; }
        # A checkout under a private home (e.g. /root, mode 700) is out of the postgres user's
        # reach; the cluster then lives under /tmp instead.
        if ! runuser -u postgres -- test -x "$parent"; then
            echo "postgres.sh: $parent is not reachable by the postgres user; using /tmp" >&2
            parent=/tmp
        fi
    fi
    dir="$(mktemp -d "$parent/sluice-pg.XXXXXX")"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$dir"
    # Unix socket paths are limited to ~107 bytes; a deep checkout puts the socket in /tmp.
    local sockdir="$dir"
    ((${#dir} > 80)) && sockdir=/tmp
    as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    while :; do
        tries=$((tries + 1))
        port=$((20000 + RANDOM % 40000))
        port_free "$port" || continue
        if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
            -o "-p $port -k $sockdir -c listen_addresses=127.0.0.1" >/dev/null 2>&1; then
            break
        fi
        if ((tries >= 5)); then
            echo "postgres.sh: could not start Postgres; log:" >&2
            cat "$dir/server.log" >&2 || true
            exit 1
        fi
    done
    echo "postgres.sh: cluster in $dir (port $port)" >&2
    STARTED_DIR="$dir"
    echo "postgres://postgres@127.0.0.1:$port/postgres"
}

stop() {
    local dir="$1" bin
    bin="$(find_bin)"
    if [[ -f "$dir/data/postmaster.pid" ]]; then
        as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:?usage: postgres.sh stop DIR}" ;;
    run)
        STARTED_DIR=""
        trap '[[ -n "$STARTED_DIR" ]] && stop "$STARTED_DIR"' EXIT
        trap 'exit 0' TERM INT HUP
        start
        # Blocks until whoever started us closes our stdin (or exits).
        cat >/dev/null || true
        ;;
    *)
        echo "usage: postgres.sh start | stop DIR | run" >&2
        exit 64
        ;;
esac
