#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL server, for the InterlockPostgres tests,
# stress runs and benchmarks:
#
#   Postgres/scripts/with-postgres.sh swift test --package-path Postgres
#
# It finds PostgreSQL's server programs (installing Debian's `postgresql` package with apt-get
# when they are missing and it runs as root), makes a cluster in a new temporary folder
# (initdb), starts it on 127.0.0.1 on a free port (as the `postgres` user when run as root:
# the server refuses to run as root), creates a role and a database for the tests, runs the
# command with these exported, and stops the server and deletes the folder when the command
# ends, however it ends:
#
#   INTERLOCK_PG_HOST, INTERLOCK_PG_PORT      where the server listens (127.0.0.1, the port)
#   INTERLOCK_PG_USER, INTERLOCK_PG_PASSWORD  a role that owns the database (password auth)
#   INTERLOCK_PG_DATABASE                     its database
#   INTERLOCK_PG_ADMIN_USER, INTERLOCK_PG_ADMIN_PASSWORD   the cluster's superuser
#   INTERLOCK_PG_DATA                         the cluster's folder (for pg_ctl restart)
#   INTERLOCK_PG_BINDIR                       where pg_ctl and postgres are
#   INTERLOCK_PG_RUNAS                        "runuser -u postgres --" when run as root, else empty
#
# Environment: PG_VERSION (default 15) picks /usr/lib/postgresql/$PG_VERSION/bin.
set -euo pipefail

if [ $# -eq 0 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,26p' "$0"
    exit 2
fi

version="${PG_VERSION:-15}"
bindir="/usr/lib/postgresql/$version/bin"
if [ ! -x "$bindir/initdb" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "with-postgres: installing PostgreSQL $version (apt-get)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq "postgresql-$version" >&2 || apt-get install -y -qq postgresql >&2
    fi
    if [ ! -x "$bindir/initdb" ]; then
        echo "with-postgres: no PostgreSQL $version server programs in $bindir; install them (Debian: apt-get install postgresql-$version) or set PG_VERSION" >&2
        exit 1
    fi
fi

runas=()
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    runas=(runuser -u postgres --)
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/interlock-pg.XXXXXX")"
chmod 700 "$dir"
[ "${#runas[@]}" -gt 0 ] && chown postgres: "$dir"
stop() {
    local status=$?
    if [ -f "$dir/data/postmaster.pid" ]; then
        "${runas[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            "${runas[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    exit "$status"
}
trap stop EXIT
trap 'exit 130' INT TERM

admin_password="admin-$RANDOM$RANDOM"
user_password="interlock-$RANDOM$RANDOM"
printf '%s\n' "$admin_password" > "$dir/pwfile"
[ "${#runas[@]}" -gt 0 ] && chown postgres: "$dir/pwfile"
"${runas[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; echo "with-postgres: initdb failed" >&2; exit 1; }
rm -f "$dir/pwfile"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}
started=0
for _ in 1 2 3 4 5; do
    port="$(free_port)"
    if "${runas[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=200 -c fsync=off" \
        start >/dev/null; then
        started=1
        break
    fi
done
if [ "$started" = 0 ]; then
    cat "$dir/server.log" >&2 || true
    echo "with-postgres: the server did not start" >&2
    exit 1
fi

export PGPASSWORD="$admin_password"
psql_admin() { "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"; }
psql_admin -d postgres -c "CREATE ROLE interlock LOGIN PASSWORD '$user_password'" \
    -c "CREATE DATABASE interlock_test OWNER interlock" >/dev/null
unset PGPASSWORD

export INTERLOCK_PG_HOST=127.0.0.1 INTERLOCK_PG_PORT="$port"
export INTERLOCK_PG_USER=interlock INTERLOCK_PG_PASSWORD="$user_password" INTERLOCK_PG_DATABASE=interlock_test
export INTERLOCK_PG_ADMIN_USER=postgres INTERLOCK_PG_ADMIN_PASSWORD="$admin_password"
export INTERLOCK_PG_DATA="$dir/data" INTERLOCK_PG_BINDIR="$bindir" INTERLOCK_PG_RUNAS="${runas[*]}"
echo "with-postgres: PostgreSQL $version on 127.0.0.1:$port (database interlock_test, role interlock)" >&2
"$@"
