#!/usr/bin/env bash
# The Tollgate benchmark (figures and method: BENCHMARKS.md). Not a test: it measures.
#
# Starts, on loopback ports of this machine, the Bedrock double (SigV4 verified on every request),
# the tollgate binary (fresh data dir, log level warn) in front of it, and plain-proxy (a hyper
# reverse proxy doing no work) in front of it too; configures tollgate through its admin API; then
# drives, with tests/src/bin/loadgen.rs, non-streaming and streaming requests
#   direct to the double | through plain-proxy | through tollgate
# at a fixed 1,000 req/s (open loop, latency from the scheduled send time) and at maximum
# throughput (closed loop). Each proxy's CPU time (utime+stime, /proc/PID/stat) is read before and
# after its runs and divided by the requests it served. Prints a summary table; every process it
# started is stopped on exit.
#
# Usage: scripts/bench.sh            (about 4 minutes after the build)
# Knobs (environment): BENCH_RATE=1000 BENCH_CONNECTIONS=32 BENCH_CONCURRENCY=16
#   BENCH_DURATION=15s BENCH_MAX_DURATION=10s BENCH_WARMUP=3s BENCH_OUT=<dir for raw results>
#   BENCH_SKIP_BUILD=1
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${BENCH_RATE:-1000}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
CONCURRENCY=${BENCH_CONCURRENCY:-16}
DURATION=${BENCH_DURATION:-15s}
MAX_DURATION=${BENCH_MAX_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}

step() { printf '\n==> %s\n' "$*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }
for tool in curl python3; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

# --- Build ---------------------------------------------------------------------------------------
if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  step "cargo build --release (tollgate, bedrock-double, plain-proxy, loadgen)"
  cargo build --release -p tollgate
  cargo build --release -p tollgate-tests --bin bedrock-double --bin plain-proxy --bin loadgen
fi
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release"
for b in tollgate bedrock-double plain-proxy loadgen; do
  [ -x "$bin/$b" ] || die "missing $bin/$b"
done

# --- Processes -----------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench.XXXXXX")
out=${BENCH_OUT:-$work/results}
mkdir -p "$out"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work/data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
wait_port() { # name port pid
  local i
  for i in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    kill -0 "$3" 2>/dev/null || die "$1 exited during start-up (log: $work/$1.log)"
    sleep 0.1
  done
  die "$1 did not listen on 127.0.0.1:$2 (log: $work/$1.log)"
}

AKID=AKIDEXAMPLE
SECRET=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
p_double=$(free_port); p_plain=$(free_port); p_tollgate=$(free_port)

step "starting bedrock-double :$p_double, plain-proxy :$p_plain, tollgate :$p_tollgate (files in $work)"
"$bin/bedrock-double" --listen "127.0.0.1:$p_double" --credentials "$AKID:$SECRET" \
  >"$work/bedrock-double.log" 2>&1 &
pid_double=$!; pids+=("$pid_double")
"$bin/plain-proxy" --listen "127.0.0.1:$p_plain" --upstream "http://127.0.0.1:$p_double" \
  >"$work/plain-proxy.log" 2>&1 &
pid_plain=$!; pids+=("$pid_plain")
env -u TOLLGATE_DATABASE_URL -u TOLLGATE_ADMIN_TOKEN -u TOLLGATE_SECRET_KEY \
  AWS_ACCESS_KEY_ID="$AKID" AWS_SECRET_ACCESS_KEY="$SECRET" \
  "$bin/tollgate" --listen "127.0.0.1:$p_tollgate" --data-dir "$work/data" --log warn \
  >"$work/tollgate.log" 2>&1 &
pid_tollgate=$!; pids+=("$pid_tollgate")
wait_port bedrock-double "$p_double" "$pid_double"
wait_port plain-proxy "$p_plain" "$pid_plain"
wait_port tollgate "$p_tollgate" "$pid_tollgate"

# --- Configure tollgate --------------------------------------------------------------------------
tg="http://127.0.0.1:$p_tollgate"
api() { # method path json
  local code
  code=$(curl -sS -o "$work/api.out" -w '%{http_code}' -X "$1" "$tg$2" \
    -H 'content-type: application/json' -d "$3") || die "admin API $1 $2: curl failed"
  case "$code" in 2??) ;; *) die "admin API $1 $2 -> $code: $(cat "$work/api.out")" ;; esac
}
step "configuring tollgate (provider bedrock -> double, one SigV4 key, one virtual key)"
api POST /api/providers '{"provider": "bedrock"}'
api PUT /api/providers/bedrock "{\"network_config\": {\"base_url\": \"http://127.0.0.1:$p_double\"}}"
api POST /api/providers/bedrock/keys '{"name": "bench", "models": ["*"], "weight": 1.0,
  "aliases": {"claude-sonnet-4-6": "global.anthropic.claude-sonnet-4-6"},
  "bedrock_key_config": {"access_key": "env.AWS_ACCESS_KEY_ID",
    "secret_key": "env.AWS_SECRET_ACCESS_KEY", "region": "us-east-1"}}'
api POST /api/virtual-keys '{"name": "bench", "provider": "bedrock"}'
vk=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["value"])' "$work/api.out")

# The same conversation in both dialects: what the client sends tollgate, and what tollgate
# sends Bedrock (the direct and plain-proxy runs send the latter, signed like tollgate signs).
anthropic_body() { # stream
  printf '{"model":"claude-sonnet-4-6","max_tokens":64,"messages":[{"role":"user","content":"hi"}],"stream":%s}' "$1"
}
bedrock_body='{"max_tokens":64,"messages":[{"role":"user","content":"hi"}],"anthropic_version":"bedrock-2023-05-31"}'
model_path=/model/global.anthropic.claude-sonnet-4-6

smoke() { # label expected-substring curl-args...
  local label=$1 expect=$2; shift 2
  local body
  body=$(curl -sS --max-time 10 "$@") || die "smoke request $label failed"
  case "$body" in *"$expect"*) ;; *) die "smoke request $label: unexpected answer: ${body:0:400}" ;; esac
}
step "smoke requests"
smoke tollgate-json '"Hello from the Bedrock double."' "$tg/anthropic/v1/messages" \
  -H "x-api-key: $vk" -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' \
  -d "$(anthropic_body false)"
smoke tollgate-sse 'event: message_stop' -N "$tg/anthropic/v1/messages" \
  -H "x-api-key: $vk" -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' \
  -d "$(anthropic_body true)"
curl -sS -X DELETE "http://127.0.0.1:$p_double/_double/requests" >/dev/null

# --- Runs ----------------------------------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)
cpu_ticks() { # pid -> utime+stime (fields 14, 15; the command name may contain spaces)
  local stat
  stat=$(cat "/proc/$1/stat")
  stat=${stat##*) }
  set -- $stat
  echo $(( ${12} + ${13} ))
}

run() { # path(direct|plain|tollgate) stream(false|true) mode(rate|max)
  local path=$1 stream=$2 mode=$3
  local kind; kind=$([ "$stream" = true ] && echo stream || echo json)
  local label="$mode-$kind-$path"
  local args=(--label "$label" --warmup "$WARMUP" --json-out "$out/results.jsonl"
    -H 'content-type: application/json')
  if [ "$mode" = rate ]; then
    args+=(--rate "$RATE" --connections "$CONNECTIONS" --duration "$DURATION")
  else
    args+=(--concurrency "$CONCURRENCY" --duration "$MAX_DURATION")
  fi
  local op; op=$([ "$stream" = true ] && echo invoke-with-response-stream || echo invoke)
  case $path in
    direct)
      args+=(--url "http://127.0.0.1:$p_double$model_path/$op" --sigv4 "$AKID:$SECRET"
        -H 'accept: application/json' --body "$bedrock_body") ;;
    plain)
      args+=(--url "http://127.0.0.1:$p_plain$model_path/$op" --host "127.0.0.1:$p_double"
        --sigv4 "$AKID:$SECRET" -H 'accept: application/json' --body "$bedrock_body") ;;
    tollgate)
      args+=(--url "$tg/anthropic/v1/messages" -H "x-api-key: $vk"
        -H 'anthropic-version: 2023-06-01' --body "$(anthropic_body "$stream")") ;;
  esac
  local pids_watch=("$pid_double" "$pid_plain" "$pid_tollgate") before=() after=() p
  for p in "${pids_watch[@]}"; do before+=("$(cpu_ticks "$p")"); done
  "$bin/loadgen" "${args[@]}" | grep -v '^{' >&2
  for p in "${pids_watch[@]}"; do after+=("$(cpu_ticks "$p")"); done
  printf '{"label":"%s","clk_tck":%s,"cpu_ticks":{"double":%s,"plain":%s,"tollgate":%s}}\n' \
    "$label" "$clk_tck" $((after[0] - before[0])) $((after[1] - before[1])) \
    $((after[2] - before[2])) >>"$out/cpu.jsonl"
  # The double records every request; keep its memory flat between runs.
  curl -sS -X DELETE "http://127.0.0.1:$p_double/_double/requests" >/dev/null
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || die "process $p died (logs in $work)"; done
}

: >"$out/results.jsonl"; : >"$out/cpu.jsonl"
for mode in rate max; do
  for stream in false true; do
    for path in direct plain tollgate; do
      step "$mode $([ "$stream" = true ] && echo streaming || echo non-streaming) $path"
      run "$path" "$stream" "$mode"
    done
  done
done

# --- Summary -------------------------------------------------------------------------------------
step "summary (raw: $out)"
python3 - "$out" "$(nproc)" <<'PY'
import json, sys
out, cores = sys.argv[1], sys.argv[2]
res = {}
for line in open(f"{out}/results.jsonl"):
    r = json.loads(line)
    res[r["label"]] = r
for line in open(f"{out}/cpu.jsonl"):
    c = json.loads(line)
    res[c["label"]]["cpu"] = c

def ms(us):
    return "-" if us is None else f"{us / 1000:.3f}"

def cpu_us(r, proc):
    c = r["cpu"]
    n = r.get("completed_total") or r["requests"]
    return c["cpu_ticks"][proc] * 1e6 / c["clk_tck"] / n if n else None

rows = []
print(f"{cores} cores, all processes on this machine; latency = scheduled send -> last byte (open loop), send -> last byte (closed loop)\n")
hdr = f"{'run':<28} {'req/s':>9} {'err':>4} {'p50 ms':>8} {'p99 ms':>8} {'p99.9':>8} {'+p50 ms':>8} {'+p99 ms':>8} {'ttfb p50':>8} {'proxy CPU us/req':>16} {'double CPU us/req':>17}"
print(hdr); print("-" * len(hdr))
summary = {}
for mode in ("rate", "max"):
    for kind in ("json", "stream"):
        direct = res.get(f"{mode}-{kind}-direct")
        for path in ("direct", "plain", "tollgate"):
            r = res.get(f"{mode}-{kind}-{path}")
            if r is None:
                continue
            lat = r["latency_us"] or {}
            d = (direct or {}).get("latency_us") or {}
            add50 = add99 = None
            if path != "direct" and d and lat:
                add50 = lat["p50"] - d["p50"]; add99 = lat["p99"] - d["p99"]
            proc = {"plain": "plain", "tollgate": "tollgate"}.get(path)
            pcpu = cpu_us(r, proc) if proc else None
            dcpu = cpu_us(r, "double")
            summary[r["label"]] = dict(rps=r["rps"], p50=lat.get("p50"), p99=lat.get("p99"),
                                       add50=add50, add99=add99, cpu=pcpu)
            err = r["errors"] + r["non_2xx"]
            print(f"{r['label']:<28} {r['rps']:>9.1f} {err:>4} {ms(lat.get('p50')):>8} {ms(lat.get('p99')):>8} "
                  f"{ms(lat.get('p999')):>8} {ms(add50):>8} {ms(add99):>8} {ms((r['ttfb_us'] or {}).get('p50')):>8} "
                  f"{'-' if pcpu is None else f'{pcpu:.1f}':>16} {dcpu:>17.1f}")
    print()

print("targets:")
for kind in ("json", "stream"):
    t = summary.get(f"rate-{kind}-tollgate"); p = summary.get(f"rate-{kind}-plain")
    if t and t["add99"] is not None:
        verdict = "MET" if t["add99"] < 1000 else "MISSED"
        print(f"  {kind:<6} added p99 at the fixed rate: {t['add99'] / 1000:.3f} ms (< 1 ms: {verdict})")
    for mode in ("rate", "max"):
        t = summary.get(f"{mode}-{kind}-tollgate"); p = summary.get(f"{mode}-{kind}-plain")
        if t and p and t["cpu"] and p["cpu"]:
            ratio = t["cpu"] / p["cpu"]
            verdict = "MET" if ratio <= 2 else "MISSED"
            print(f"  {kind:<6} {mode:<4} CPU/request tollgate {t['cpu']:.1f} us vs plain-proxy {p['cpu']:.1f} us = {ratio:.2f}x (<= 2x: {verdict})")
PY
