#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, trust auth, roles postgres + root) and
# RabbitMQ (127.0.0.1:5672, guest/guest) are reachable. Idempotent: when both
# already answer it returns within a second or so.
#
# Order of attempts per service: already reachable -> start the installed
# service -> (root only) install the Debian package, then start it.
# Installs PgBouncer (only the binary: the tests run their own) where absent (root only).
# Optionally installs Debian chromium + chromium-driver for the browser test
# (non-fatal; skipped with REGISTRAR_SKIP_BROWSER=1).
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
AMQP_HOST=127.0.0.1
AMQP_PORT=5672
PG_WAIT=${REGISTRAR_PG_WAIT:-60}
AMQP_WAIT=${REGISTRAR_AMQP_WAIT:-120}
PG_ETC=${PG_ETC:-/etc/postgresql} # overridable for testing only
HBA_MARKER="# registrar: trust local connections (added by scripts/ensure-services.sh)"

log() { printf 'ensure-services: %s\n' "$*" >&2; }
warn() { printf 'ensure-services: WARNING: %s\n' "$*" >&2; }
die() {
    printf 'ensure-services: ERROR: %s\n' "$*" >&2
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

port_open() { # host port
    timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

pg_ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 3 >/dev/null 2>&1
    else
        port_open "$PG_HOST" "$PG_PORT"
    fi
}

amqp_ready() { port_open "$AMQP_HOST" "$AMQP_PORT"; }

wait_for() { # seconds description probe-function
    local seconds=$1 what=$2 probe=$3 waited=0
    while ! "$probe"; do
        if [ "$waited" -ge "$seconds" ]; then
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "$what is reachable (waited ${waited}s)"
}

APT_UPDATED=0
apt_install() { # packages...
    is_root || return 1
    command -v apt-get >/dev/null 2>&1 || return 1
    export DEBIAN_FRONTEND=noninteractive
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get -o DPkg::Lock::Timeout=300 update -qq >&2 || return 1
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" >&2
}

# ---------------------------------------------------------------- PostgreSQL

# Echo "VERSION" of the cluster to use: the one configured for port 5432,
# else the newest installed one. Empty when no cluster exists.
pg_cluster_version() {
    local conf ver best=""
    for conf in "$PG_ETC"/*/main/postgresql.conf; do
        [ -e "$conf" ] || continue
        ver=$(basename "$(dirname "$(dirname "$conf")")")
        if grep -Eq "^[[:space:]]*port[[:space:]]*=[[:space:]]*${PG_PORT}\b" "$conf"; then
            echo "$ver"
            return 0
        fi
        best=$ver
    done
    if [ -n "$best" ]; then
        # the glob is sorted lexically; pick the highest version numerically
        for conf in "$PG_ETC"/*/main/postgresql.conf; do
            basename "$(dirname "$(dirname "$conf")")"
        done | sort -V | tail -n 1
    fi
}

pg_start_cluster() { # version
    local ver=$1
    log "starting PostgreSQL cluster $ver/main"
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        # exits non-zero if already running; readiness is checked afterwards
        pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || true
    else
        warn "pg_ctlcluster not found"
        return 1
    fi
}

pg_create_cluster() {
    local ver
    # shellcheck disable=SC2012 # version directories only
    ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$ver" ] || return 1
    log "creating PostgreSQL cluster $ver/main"
    pg_createcluster "$ver" main >&2
}

# Put trust rules in front of pg_hba.conf (first matching rule wins) and reload.
pg_trust_local() { # version
    local ver=$1 hba
    hba=$PG_ETC/$ver/main/pg_hba.conf
    [ -f "$hba" ] || return 1
    if grep -qF "$HBA_MARKER" "$hba"; then
        return 0
    fi
    log "configuring trust authentication in $hba"
    cp -p "$hba" "$hba.registrar-backup"
    {
        echo "$HBA_MARKER"
        echo "local   all             all                                     trust"
        echo "host    all             all             127.0.0.1/32            trust"
        echo "host    all             all             ::1/128                 trust"
        echo "local   replication     all                                     trust"
        echo "host    replication     all             127.0.0.1/32            trust"
        echo "host    replication     all             ::1/128                 trust"
        echo "# registrar: end"
        cat "$hba.registrar-backup"
    } >"$hba"
    chown --reference="$hba.registrar-backup" "$hba"
    chmod --reference="$hba.registrar-backup" "$hba"
}

pg_reload() { # version
    log "reloading PostgreSQL cluster $1/main"
    pg_ctlcluster --skip-systemctl-redirect "$1" main reload >&2 ||
        su postgres -s /bin/sh -c "psql -qAtX -c 'SELECT pg_reload_conf()'" >/dev/null
}

pg_query_as_postgres() { # sql  (trust over TCP)
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -qAtX \
        -v ON_ERROR_STOP=1 -c "$1" 2>/dev/null
}

# Make sure trust auth works for postgres and that a superuser role root exists.
pg_configure() {
    if ! command -v psql >/dev/null 2>&1; then
        warn "psql not found; cannot verify authentication and roles"
        return 0
    fi
    if ! pg_query_as_postgres 'SELECT 1' >/dev/null; then
        is_root || die "PostgreSQL on $PG_HOST:$PG_PORT does not accept user postgres without a password; configure trust auth (pg_hba.conf) or run this script as root"
        local ver
        ver=$(pg_cluster_version)
        [ -n "$ver" ] || die "PostgreSQL rejects user postgres and no local cluster config was found to fix"
        pg_trust_local "$ver" || die "could not configure pg_hba.conf for cluster $ver/main"
        pg_reload "$ver" || warn "reload of cluster $ver/main failed"
        for _ in $(seq 1 10); do
            pg_query_as_postgres 'SELECT 1' >/dev/null && break
            sleep 1
        done
        pg_query_as_postgres 'SELECT 1' >/dev/null ||
            die "PostgreSQL still rejects user postgres on $PG_HOST:$PG_PORT after enabling trust auth"
    fi
    if [ "$(pg_query_as_postgres "SELECT 1 FROM pg_roles WHERE rolname = 'root'")" != "1" ]; then
        log "creating PostgreSQL superuser role root"
        pg_query_as_postgres 'CREATE ROLE root SUPERUSER LOGIN' >/dev/null ||
            warn "could not create role root"
    fi
}

ensure_postgres() {
    local ver=""
    if pg_ready; then
        log "PostgreSQL is reachable on $PG_HOST:$PG_PORT"
    else
        ver=$(pg_cluster_version)
        if [ -n "$ver" ]; then
            is_root || [ "$(id -un)" = postgres ] ||
                warn "not root; trying to start cluster $ver/main anyway"
            pg_start_cluster "$ver" || true
        elif is_root; then
            if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
                apt_install postgresql || die "could not install PostgreSQL with apt-get"
            fi
            ver=$(pg_cluster_version)
            if [ -z "$ver" ]; then
                pg_create_cluster || die "could not create a PostgreSQL cluster"
                ver=$(pg_cluster_version)
            fi
            [ -n "$ver" ] || die "no PostgreSQL cluster found after installation"
            # Trust auth before the first start, so no reload is needed.
            pg_trust_local "$ver" || warn "could not pre-configure pg_hba.conf"
            pg_start_cluster "$ver" || true
        else
            die "PostgreSQL is not reachable on $PG_HOST:$PG_PORT and is not installed; install it (apt-get install postgresql) or re-run as root"
        fi
        log "waiting up to ${PG_WAIT}s for PostgreSQL"
        wait_for "$PG_WAIT" PostgreSQL pg_ready ||
            die "PostgreSQL did not become reachable on $PG_HOST:$PG_PORT within ${PG_WAIT}s (see /var/log/postgresql/)"
    fi
    pg_configure
}

# ------------------------------------------------------------------ RabbitMQ

# Every quorum queue holds file handles; with Debian's default soft limit of 1024 the
# broker's file handle cache runs out after a few hundred queues and it stops accepting
# connections (they hang in the handshake). Raise the soft limit to the hard one.
rabbit_raise_fd_limit() {
    local conf=/etc/rabbitmq/rabbitmq-env.conf
    [ "$(id -u)" -eq 0 ] && [ -d /etc/rabbitmq ] || return 0
    grep -q '^ulimit -S -n' "$conf" 2>/dev/null && return 0
    log "raising RabbitMQ's open-files limit in $conf"
    echo 'ulimit -S -n "$(ulimit -H -n)" 2>/dev/null || true' >>"$conf"
}

rabbit_start() {
    rabbit_raise_fd_limit
    log "starting RabbitMQ (rabbitmq-server -detached)"
    # fails if a node is already starting; readiness is checked afterwards
    rabbitmq-server -detached >&2 || true
}

ensure_rabbitmq() {
    if amqp_ready; then
        log "RabbitMQ is reachable on $AMQP_HOST:$AMQP_PORT"
        return 0
    fi
    if command -v rabbitmq-server >/dev/null 2>&1; then
        is_root || warn "not root; trying to start RabbitMQ anyway"
        rabbit_start
    elif is_root; then
        apt_install rabbitmq-server || die "could not install RabbitMQ with apt-get"
        # the package's postinst may already have started it
        amqp_ready || rabbit_start
    else
        die "RabbitMQ is not reachable on $AMQP_HOST:$AMQP_PORT and is not installed; install it (apt-get install rabbitmq-server) or re-run as root"
    fi
    log "waiting up to ${AMQP_WAIT}s for RabbitMQ"
    local started=$SECONDS remaining
    if command -v rabbitmqctl >/dev/null 2>&1; then
        # may fail at once if the node has not registered yet; the port probe follows
        timeout "$AMQP_WAIT" rabbitmqctl await_startup >/dev/null 2>&1 || true
    fi
    remaining=$((AMQP_WAIT - (SECONDS - started)))
    [ "$remaining" -gt 0 ] || remaining=1
    wait_for "$remaining" RabbitMQ amqp_ready ||
        die "RabbitMQ did not become reachable on $AMQP_HOST:$AMQP_PORT within ${AMQP_WAIT}s (see /var/log/rabbitmq/)"
}

# ----------------------------------------------------------------- PgBouncer

# `make test` runs the end-to-end tests a second time through PgBouncer; the tests start
# their own pgbouncer (own ini, free port), so only the binary is needed here, and the
# Debian package's service (port 6432) is stopped and disabled: nothing should depend on it.
pgbouncer_installed() { [ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1; }

pgbouncer_service_off() {
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now pgbouncer >/dev/null 2>&1 || true
    else
        command -v update-rc.d >/dev/null 2>&1 && update-rc.d pgbouncer disable >/dev/null 2>&1
        [ -x /etc/init.d/pgbouncer ] && /etc/init.d/pgbouncer stop >/dev/null 2>&1
    fi
    return 0
}

ensure_pgbouncer() {
    if pgbouncer_installed; then
        return 0
    fi
    if ! is_root; then
        warn "pgbouncer not installed and not root; the PgBouncer run of make test will fail (apt-get install pgbouncer)"
        return 0
    fi
    apt_install pgbouncer || die "could not install PgBouncer with apt-get"
    pgbouncer_service_off
}

# ------------------------------------------------------------------- browser

ensure_browser() {
    if [ "${REGISTRAR_SKIP_BROWSER:-0}" = 1 ]; then
        return 0
    fi
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
        return 0
    fi
    if ! is_root; then
        warn "chromium/chromedriver not installed and not root; browser tests may be skipped"
        return 0
    fi
    log "installing chromium and chromium-driver (for the browser test; set REGISTRAR_SKIP_BROWSER=1 to skip)"
    apt_install chromium chromium-driver ||
        warn "could not install chromium/chromium-driver; browser tests may be skipped"
}

main() {
    ensure_postgres
    ensure_rabbitmq
    ensure_pgbouncer
    ensure_browser
    log "done"
}

# Allow `source scripts/ensure-services.sh --functions-only` for testing.
if [ "${1:-}" != "--functions-only" ]; then
    main
fi
