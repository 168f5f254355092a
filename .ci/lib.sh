# Shared by .ci/setup and .ci/test: idempotent installation of everything hnsw_ext needs on a
# fresh Debian 12 machine (run as root), and helpers to run a Postgres server as `postgres`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# HNSW_EXT_PG_CONFIG points at another (e.g. relocated) Postgres 15 installation; the system one
# by default.
PG_CONFIG="${HNSW_EXT_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
PG_BIN="$(dirname "$PG_CONFIG")"
PGRX_VERSION=0.18.1
# Everything the servers write lives here: readable by `postgres`, outside the checkout.
STATE_DIR="${HNSW_EXT_STATE_DIR:-/var/tmp/hnsw_ext}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
    local pkgs=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang pkg-config
        sudo dataset-fashion-mnist)
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # Debian starts a cluster on port 5432 at install time; we run our own, so leave it be.
}

install_python_deps() {
    if ! python3 -c 'import psycopg, numpy, pgvector, matplotlib, pytest, wordllama' 2>/dev/null; then
        log "installing Python packages (psycopg, numpy, pgvector, matplotlib, pytest, wordllama)"
        python3 -m pip install -q 'psycopg[binary]>=3.1' numpy pgvector matplotlib pytest 'wordllama==0.4.0.post1'
    fi
}

# rustfmt and clippy for .ci/test's style step; rustup installs a component once, then no-ops.
install_rust_components() {
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        log "installing the rustfmt and clippy components"
        rustup component add rustfmt clippy
    fi
}

install_pgrx() {
    if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        log "installing cargo-pgrx $PGRX_VERSION (takes a few minutes)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    if ! grep -q "^pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
        log "cargo pgrx init against the system Postgres 15"
        cargo pgrx init --pg15 "$PG_CONFIG"
    fi
}

install_extension() {
    log "building and installing hnsw_ext (release)"
    (cd "$ROOT" && cargo pgrx package --pg-config "$PG_CONFIG" >/dev/null)
    # `install` writes a new file and renames it over the old one: a running server keeps the
    # library it has mapped, where copying in place (what `cargo pgrx install` does) would
    # change the pages under it and crash its backends.
    local pkg="$ROOT/target/release/hnsw_ext-pg15"
    local lib share
    lib="$("$PG_CONFIG" --pkglibdir)"
    share="$("$PG_CONFIG" --sharedir)/extension"
    as_root install -m 755 "$pkg$lib/hnsw_ext.so" "$lib/hnsw_ext.so"
    for f in "$pkg$share"/hnsw_ext*; do
        as_root install -m 644 "$f" "$share/$(basename "$f")"
    done
}

install_all() {
    install_packages
    install_python_deps
    install_rust_components
    install_pgrx
}

# pg_start NAME PORT [extra postgresql.conf lines...]: initdb (once) and (re)start a server whose
# data directory is $STATE_DIR/NAME, listening on 127.0.0.1:PORT and a socket in $STATE_DIR.
pg_start() {
    local name=$1 port=$2; shift 2
    local dir="$STATE_DIR/$name"
    as_root mkdir -p "$STATE_DIR"
    as_root chown postgres "$STATE_DIR"
    if [ ! -f "$dir/PG_VERSION" ]; then
        log "initdb $dir"
        as_root su postgres -c "$PG_BIN/initdb -D '$dir' -U postgres --auth=trust -E UTF8 --locale=C.UTF-8" >/dev/null
    fi
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$STATE_DIR'"
        for line in "$@"; do echo "$line"; done
    } | as_root su postgres -c "cat > '$dir/hnsw_ext.conf'"
    as_root su postgres -c "grep -q \"^include_if_exists = 'hnsw_ext.conf'\" '$dir/postgresql.conf' || echo \"include_if_exists = 'hnsw_ext.conf'\" >> '$dir/postgresql.conf'"
    # A restart picks up a freshly installed .so and the settings above.
    if as_root su postgres -c "$PG_BIN/pg_ctl -D '$dir' status" >/dev/null 2>&1; then
        as_root su postgres -c "unset RUST_BACKTRACE; $PG_BIN/pg_ctl -D '$dir' -w -m fast restart -l '$dir/server.log'" >/dev/null
    else
        as_root su postgres -c "unset RUST_BACKTRACE; $PG_BIN/pg_ctl -D '$dir' -w start -l '$dir/server.log'" >/dev/null
    fi
}

pg_stop() {
    local dir="$STATE_DIR/$1"
    if [ -f "$dir/PG_VERSION" ]; then
        as_root su postgres -c "$PG_BIN/pg_ctl -D '$dir' -w -m fast stop" >/dev/null 2>&1 || true
    fi
}

psql_at() {
    local port=$1; shift
    psql -X -v ON_ERROR_STOP=1 -h "$STATE_DIR" -p "$port" -U postgres "$@"
}
