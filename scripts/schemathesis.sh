#!/usr/bin/env bash
# Property-based tests of the admin API against its committed OpenAPI spec
# (openapi/admin.v1.json) with schemathesis: starts a throwaway all-in-one gateway (the binary
# at $TOLLGATE_BIN, an empty temporary data directory, an admin token, a free loopback port) and
# runs every phase against it (examples, coverage, fuzzing, stateful), mutating endpoints
# included. Every response must be one the spec lists, with the documented body, and never a 5xx.
#
#   scripts/schemathesis.sh [EXTRA SCHEMATHESIS ARGS...]
#
# Needs: TOLLGATE_BIN (a built `tollgate`), SCHEMATHESIS (default: schemathesis on PATH).
# SCHEMATHESIS_MAX_EXAMPLES (default 25) bounds the cases per operation and phase;
# SCHEMATHESIS_SEED (default 1, so runs repeat) picks the cases. The run's report (a VCR cassette
# of every request and response) is left in target/schemathesis/.
#
# Checks: all of schemathesis' checks except `positive_data_acceptance`. That one expects every
# request the schema allows to succeed, but the admin API validates more than a JSON schema can
# say (name syntax, header names, `provider` xor `providers`, secrets not empty) and answers such
# requests with a 400 naming the field, which the other checks still hold to the spec.
#
# The stateful phase leaves out the Bifrost-compatible aliases under /api/governance/: they are
# the same resources as /api/virtual-keys, and schemathesis cannot know that a DELETE through one
# path removed the resource it then looks up through the other.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

: "${TOLLGATE_BIN:?set TOLLGATE_BIN to a built tollgate binary}"
schemathesis=${SCHEMATHESIS:-schemathesis}
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-25}
report_dir="$root/target/schemathesis"
token="schemathesis-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A free port: bind to 0 and read what the kernel chose (a race is harmless: startup fails loudly).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
TOLLGATE_LOG=warn "$TOLLGATE_BIN" --listen "127.0.0.1:$port" --data-dir "$work/data" \
  --admin-token "$token" >"$work/gateway.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request, sys; urllib.request.urlopen('$base/openapi.json', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "error: the gateway exited at start:" >&2; cat "$work/gateway.log" >&2; exit 1
  fi
  sleep 0.1
done

# Existing resources for the operations that take an id: path parameters come from these
# (half of the time; otherwise generated) so updates and deletes reach their handlers, not only
# the 404 of an unknown id. Creates, reads, updates and deletes of new resources are exercised
# by every phase anyway.
python3 - "$base" "$token" "$work/schemathesis.toml" <<'PY'
import json, sys, urllib.request
base, token, config = sys.argv[1:]
def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)
post("/api/providers", {"provider": "bedrock"})
post("/api/providers", {"provider": "anthropic"})
keys = [post("/api/providers/bedrock/keys", {"name": f"seed-{i}", "bedrock_key_config": {"region": "us-east-1"}})["id"] for i in range(3)]
vks = [post("/api/virtual-keys", {"name": f"seed-{i}"})["id"] for i in range(3)]
with open(config, "w") as f:
    f.write(f"""
[dictionaries.providers]
values = ["bedrock", "anthropic"]
[dictionaries.keys]
values = {json.dumps(keys)}
[dictionaries.virtual_keys]
values = {json.dumps(vks)}
[parameters]
"path.provider" = {{ dictionary = "providers", probability = 0.5 }}
"path.key_id" = {{ dictionary = "keys", probability = 0.5 }}
"path.vk_id" = {{ dictionary = "virtual_keys", probability = 0.5 }}
""")
PY

mkdir -p "$report_dir"
common=(
  openapi/admin.v1.json --url "$base" -H "Authorization: Bearer $token"
  --checks all --exclude-checks positive_data_acceptance
  --max-examples "$max_examples" --seed "${SCHEMATHESIS_SEED:-1}" --workers 1
  --report vcr --report-dir "$report_dir"
)
status=0
"$schemathesis" --no-color --config-file "$work/schemathesis.toml" run "${common[@]}" --phases examples,coverage,fuzzing \
  --report-vcr-path "$report_dir/stateless.yaml" "$@" || status=$?
"$schemathesis" --no-color --config-file "$work/schemathesis.toml" run "${common[@]}" --phases stateful --exclude-path-regex '^/api/governance/' \
  --report-vcr-path "$report_dir/stateful.yaml" "$@" || status=$?

if grep -q -E 'panicked|ERROR' "$work/gateway.log"; then
  echo "error: the gateway logged errors during the run:" >&2
  grep -E 'panicked|ERROR' "$work/gateway.log" | head -20 >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed; requests and responses: $report_dir/{stateless,stateful}.yaml" >&2
fi
exit "$status"
