#!/usr/bin/env bash
# Runs syncledger's whole test suite: formatting, lints, and every test on SQLite,
# PostgreSQL and NATS JetStream, and the dashboard's browser tests in headless Chromium.
# Brings up PostgreSQL and NATS when they are not running: starts them if installed, and as
# root installs them from Debian's packages first; installs Chromium and chromedriver the
# same way, the OpenAPI test's pinned Python tools (scripts/py-tools.txt) from PyPI, and jq
# and curl (the README's quick start, which a test runs).
#
#   scripts/test.sh            # everything
#   scripts/test.sh --no-lint  # tests only
#
# Environment: SYNCLEDGER_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable),
# NATS_URL (default nats://127.0.0.1:4222). With CI=true, a test that needs a missing server
# or tool fails.
set -euo pipefail
cd "$(dirname "$0")/.."

lint=1
[[ "${1:-}" == "--no-lint" ]] && lint=0

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 what=$2
  for _ in $(seq 1 100); do
    port_open "$port" && return 0
    # Bounded wait for a server process we just started (not a test).
    sleep 0.2
  done
  log "$what did not start listening on port $port"
  return 1
}

apt_updated=0
apt_install() {
  if [[ $(id -u) -ne 0 ]]; then
    log "$* is not installed and this is not root: install it, or run as root"
    return 1
  fi
  if [[ $apt_updated -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if port_open 5432; then return 0; fi
  log "PostgreSQL is not running on 127.0.0.1:5432; starting it"
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  # The tests connect as postgres over loopback without a password.
  if [[ -w "$hba" ]] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
  wait_port 5432 PostgreSQL
}

ensure_nats() {
  if port_open 4222; then return 0; fi
  log "NATS is not running on 127.0.0.1:4222; starting it with JetStream"
  if ! command -v nats-server >/dev/null 2>&1 && [[ ! -x /usr/sbin/nats-server ]]; then
    apt_install nats-server
  fi
  local bin
  bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  local store="${TMPDIR:-/tmp}/syncledger-nats"
  mkdir -p "$store"
  nohup "$bin" -a 127.0.0.1 -p 4222 -js -sd "$store" >"$store/nats.log" 2>&1 &
  wait_port 4222 NATS
}

ensure_chromium() {
  local missing=()
  [[ -x /usr/bin/chromium ]] || missing+=(/usr/bin/chromium)
  [[ -x /usr/bin/chromedriver ]] || missing+=(/usr/bin/chromedriver)
  if [[ ${#missing[@]} -eq 0 ]]; then return 0; fi
  log "${missing[*]} missing (the browser tests need them)"
  # Debian's chromedriver comes with its Chromium, so the two versions always match.
  apt_install chromium chromium-driver
}

# The OpenAPI test's independent tools (tests/tests/api/openapi.rs): openapi-spec-validator
# checks the served document, openapi-python-client generates the client that test calls
# the API with. Every package is pinned in scripts/py-tools.txt; they go into a venv under
# the target directory once, and again when that list changes. The test finds them through
# SYNCLEDGER_PY_TOOLS.
py_tools="${CARGO_TARGET_DIR:-target}/py-tools"
ensure_py_tools() {
  if [[ -x "$py_tools/bin/openapi-spec-validator" ]] && cmp -s scripts/py-tools.txt "$py_tools/installed.txt"; then
    return 0
  fi
  log "installing the OpenAPI test's Python tools into $py_tools"
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3 python3-venv || return 1
  fi
  rm -rf "$py_tools"
  python3 -m venv "$py_tools" || return 1
  "$py_tools/bin/pip" install --quiet --disable-pip-version-check --no-deps -r scripts/py-tools.txt || return 1
  cp scripts/py-tools.txt "$py_tools/installed.txt"
}

ensure_tools() {
  local missing=()
  command -v jq >/dev/null 2>&1 || missing+=(jq)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  if [[ ${#missing[@]} -eq 0 ]]; then return 0; fi
  log "${missing[*]} missing (the README's quick start, run by a test, needs them)"
  apt_install "${missing[@]}"
}

ensure_tools || { [[ "${CI:-}" == "true" ]] && exit 1; log "continuing without jq or curl (the quick-start test will skip)"; }
ensure_postgres || { [[ "${CI:-}" == "true" ]] && exit 1; log "continuing without PostgreSQL (its tests will skip)"; }
ensure_nats || { [[ "${CI:-}" == "true" ]] && exit 1; log "continuing without NATS (its tests will skip)"; }
ensure_chromium || { [[ "${CI:-}" == "true" ]] && exit 1; log "continuing without Chromium (the browser tests will skip)"; }
if ensure_py_tools; then
  SYNCLEDGER_PY_TOOLS="$(cd "$py_tools/bin" && pwd)"
  export SYNCLEDGER_PY_TOOLS
else
  [[ "${CI:-}" == "true" ]] && exit 1
  log "continuing without the Python tools (the OpenAPI validation test will skip)"
fi

export SYNCLEDGER_TEST_PG_URL="${SYNCLEDGER_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"

# --- cargo deny: licenses, duplicate versions and sources always; advisories when the RustSec
# database can be had (deny.toml; the README's "Deploying" says what is not checked here).
CARGO_DENY_VERSION=0.20.2
ensure_cargo_deny() {
  if [[ "$(cargo deny --version 2>/dev/null)" == "cargo-deny $CARGO_DENY_VERSION" ]]; then return 0; fi
  log "installing cargo-deny $CARGO_DENY_VERSION (once: it stays in ~/.cargo/bin)"
  nice cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION"
}

cargo_deny() {
  log "cargo deny check licenses bans sources"
  cargo deny --locked check --hide-inclusion-graph licenses bans sources
  # The RustSec database is a git repository on GitHub, which this project's machines cannot
  # reach. SYNCLEDGER_ADVISORY_DB names a local clone of it to fetch from instead.
  # cargo-deny clones it with git, so git's url.<base>.insteadOf (here through the environment)
  # sends that clone to the local copy.
  local upstream=https://github.com/RustSec/advisory-db
  local redirect=()
  if [[ -n "${SYNCLEDGER_ADVISORY_DB:-}" ]]; then
    local local_db
    local_db="file://$(realpath "$SYNCLEDGER_ADVISORY_DB")"
    redirect=(GIT_CONFIG_COUNT=1 "GIT_CONFIG_KEY_0=url.$local_db.insteadOf" "GIT_CONFIG_VALUE_0=$upstream")
  fi
  if env "${redirect[@]}" timeout 120 cargo deny --locked fetch db >/dev/null 2>&1; then
    local from="$upstream"
    [[ -n "${SYNCLEDGER_ADVISORY_DB:-}" ]] &&
      from="$SYNCLEDGER_ADVISORY_DB, last changed $(git -C "$SYNCLEDGER_ADVISORY_DB" log -1 --format=%cs main)"
    log "cargo deny check advisories (database: $from)"
    cargo deny --locked --offline check advisories
  else
    log "advisories NOT checked: the RustSec database could not be fetched (set SYNCLEDGER_ADVISORY_DB to a local clone)"
  fi
}

if ensure_cargo_deny; then
  cargo_deny
elif [[ "${CI:-}" == "true" ]]; then
  log "cargo-deny could not be installed"
  exit 1
else
  log "cargo-deny could not be installed: licenses, duplicates, sources and advisories NOT checked"
fi

if [[ $lint -eq 1 ]]; then
  log "cargo fmt --check"
  cargo fmt --all -- --check
  log "cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi

log "cargo test (SQLite, PostgreSQL, NATS, Chromium)"
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-4}"
