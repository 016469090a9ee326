#!/usr/bin/env bash
# Runs every check of the project on a fresh machine: formatting, lints, unit tests, store
# conformance against SQLite and PostgreSQL, and end-to-end tests of the real binary with the
# official Anthropic Python SDK and Claude Code as clients. CI runs exactly this (.ci/run).
#
# Needs: cargo (rustup toolchain), python3 with venv, node + npm, and a PostgreSQL server:
# DATABASE_URL if set, else the local one on 127.0.0.1:5432 (started with pg_ctlcluster when it
# is installed but down).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

# --- PostgreSQL -------------------------------------------------------------------------------
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_ready() { python3 - "$DATABASE_URL" <<'PY'
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
try:
    socket.create_connection((u.hostname or "127.0.0.1", u.port or 5432), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}
step "PostgreSQL at ${DATABASE_URL%%@*}@…"
if ! pg_ready; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql >/dev/null 2>&1; then
    for v in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
    done
    for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
  fi
fi
if ! pg_ready; then
  echo "error: no PostgreSQL server answers at DATABASE_URL=$DATABASE_URL." >&2
  echo "Start one (Debian: apt-get install postgresql && pg_ctlcluster 15 main start)," >&2
  echo "or point DATABASE_URL at a server where this user may create databases." >&2
  exit 1
fi

# --- Real clients: the Anthropic Python SDK and Claude Code ------------------------------------
step "Python venv with the official Anthropic SDK (tests/.venv)"
if [ ! -x tests/.venv/bin/python ]; then
  python3 -m venv tests/.venv
fi
if ! tests/.venv/bin/python -c 'import anthropic' >/dev/null 2>&1; then
  tests/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
fi
export TOLLGATE_TEST_PYTHON="$root/tests/.venv/bin/python"

step "Claude Code 2.1.331 and 2.1.197 from npm (tests/clients/node_modules)"
claude_2_1_197=tests/clients/node_modules/claude-code-2-1-197/bin/claude.exe
if [ ! -x tests/clients/node_modules/.bin/claude ] || [ ! -x "$claude_2_1_197" ]; then
  (cd tests/clients && npm install --no-audit --no-fund --loglevel=error)
fi
export TOLLGATE_TEST_CLAUDE="$root/tests/clients/node_modules/.bin/claude"
export TOLLGATE_TEST_CLAUDE_2_1_197="$root/$claude_2_1_197"

# --- Rust ----------------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo build (the tollgate binary the end-to-end tests start)"
cargo build --quiet -p tollgate -p tollgate-tests --bins
export TOLLGATE_BIN="$root/target/debug/tollgate"

step "cargo test"
cargo test --workspace --no-fail-fast
