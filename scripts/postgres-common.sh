# Sourced by scripts/postgres-up, postgres-down and postgres-restart (not run on its own).
#
# A throwaway cluster started for DIR keeps its files in DIR/data and its log in
# DIR/postgres.log. As root the server runs as the OS user postgres (initdb refuses
# root); when that user cannot reach DIR (a parent directory is private, as pytest's
# /tmp/pytest-of-root is), the files go to a /tmp/pgup.XXXXXX directory instead,
# named in DIR/pgroot and deleted by postgres-down.

set -euo pipefail
export LC_ALL=C
# The caller's libpq settings must not redirect what these scripts run.
unset PGDATA PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGSERVICE PGOPTIONS
cd /  # the postgres user must be able to read the working directory

die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }

if [[ $(id -u) -eq 0 ]]; then
    id -u postgres >/dev/null 2>&1 || die "no OS user 'postgres' (install the postgresql package: scripts/setup)"
    OS_USER=postgres
    as_pg() { runuser -u postgres -- "$@"; }
else
    OS_USER=$(id -un)
    as_pg() { "$@"; }
fi

# pg_locate DIR: set DIR (absolute), PGROOT, DATA and LOG.
pg_locate() {
    DIR=$(cd -- "$1" 2>/dev/null && pwd -P) || die "$1 does not exist"
    PGROOT=$DIR
    if [[ -s $DIR/pgroot ]]; then PGROOT=$(<"$DIR/pgroot"); fi
    DATA=$PGROOT/data
    LOG=$PGROOT/postgres.log
}

# pg_bin: set BIN to a directory holding initdb, pg_ctl and postgres: $PG_BIN, else the one
# DIR's cluster was created with, else the newest /usr/lib/postgresql/*/bin, else the one
# pg_ctl on PATH comes from.
pg_bin() {
    local d
    for d in ${PG_BIN:-} $(cat "$DIR/pg_bin" 2>/dev/null) $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV) \
             "$(dirname -- "$(readlink -f -- "$(command -v pg_ctl || echo /nonexistent)")")"; do
        if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then BIN=$d; return 0; fi
    done
    die "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; run scripts/setup as root," \
        "install the postgresql package, or set PG_BIN"
}

# pg_running: whether the cluster in DATA is up.
pg_running() {
    [[ -f $DATA/postmaster.pid ]] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}
