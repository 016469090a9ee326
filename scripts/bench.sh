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
# Usage: scripts/bench.sh            (about 5 minutes after the build, more on a busy machine)
# Knobs (environment): BENCH_RATE=1000 BENCH_CONNECTIONS=32 BENCH_CONCURRENCY=16
#   BENCH_DURATION=15s BENCH_MAX_DURATION=10s BENCH_WARMUP=3s BENCH_OUT=<dir for raw results>
#   BENCH_REPEAT=1 (run everything N times; the summary keeps, per run label, the repetition in
#   which processes outside the benchmark used the least CPU)
#   BENCH_SKIP_BUILD=1 BENCH_QUIET_WAIT=90 (seconds to wait for a quiet machine before each run)
#   BENCH_ONLY=<regex over run labels, e.g. 'max-json'>
#   BENCH_PERF=1 (profile the proxy of each plain/tollgate run with `perf record`; reports in
#   BENCH_OUT; BENCH_PERF=dwarf for DWARF call graphs, heavier)
#   BENCH_BODY=small (default: a one-line "hi", under 100 bytes) | claude-code (the first request
#   of a real Claude Code session, testdata/claude-code/requests.json, every elided text filled
#   back to its recorded length: about 88 KB, 25 tools, system blocks, thinking, metadata)
#   BENCH_BIN=<dir> (take the four binaries from there, e.g. another checkout's target/release,
#   to measure an older commit with this script; implies BENCH_SKIP_BUILD)
#   BENCH_VK_JSON=<the virtual key's create body> (default: no limits; BENCH_VK_JSON=limits gives it
#   two budgets, a request and a token rate limit and max_concurrent, none of which the run reaches,
#   so the admission and settlement of every level are measured)
#   BENCH_API=openai (with BENCH_CALLGRIND and BENCH_BODY=small: the requests go to
#   /openai/v1/chat/completions as OpenAI Chat Completions bodies, translated to the same Bedrock
#   call, so the two figures compare the translation's cost)
#   BENCH_CALLGRIND=1 (instead of the runs above: tollgate under valgrind's callgrind, and the
#   instructions it executes per request, non-streaming and streaming, over BENCH_CALLGRIND_REQUESTS
#   (default 1000) requests sent at 50/s after a warm-up. Deterministic to about 0.1 %, unlike
#   wall-clock figures, so it shows small changes; needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${BENCH_VK_JSON:-}" = limits ]; then
  BENCH_VK_JSON='{"name": "bench", "provider": "bedrock",
    "budgets": [{"max_limit": 1000000, "reset_duration": "1M", "calendar_aligned": true},
                {"max_limit": 100000, "reset_duration": "1d"}],
    "rate_limit": {"request_max_limit": 1000000000, "request_reset_duration": "1m",
                   "token_max_limit": 1000000000000, "token_reset_duration": "1h"},
    "max_concurrent": 100000}'
fi

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
if [ -z "${BENCH_SKIP_BUILD:-}" ] && [ -z "${BENCH_BIN:-}" ]; then
  step "cargo build --release (tollgate, bedrock-double, plain-proxy, loadgen)"
  cargo build --release -p tollgate
  cargo build --release -p tollgate-tests --bin bedrock-double --bin plain-proxy --bin loadgen
fi
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin=${BENCH_BIN:-$target_dir/release}
for b in tollgate bedrock-double plain-proxy loadgen; do
  [ -x "$bin/$b" ] || die "missing $bin/$b"
done

read -r load1 _ </proc/loadavg
if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0.5 else 1)' "$load1"; then
  echo "bench: warning: load average is $load1 before starting; other processes share these" \
    "$(nproc) cores and will add noise (see the other% column)." >&2
fi

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
  for i in $(seq 1 "${wait_tries:-150}"); do
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
under=()
if [ -n "${BENCH_CALLGRIND:-}" ]; then
  command -v valgrind >/dev/null || die "BENCH_CALLGRIND needs valgrind"
  under=(valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out")
  wait_tries=1200
fi
env -u TOLLGATE_DATABASE_URL -u TOLLGATE_ADMIN_TOKEN -u TOLLGATE_SECRET_KEY \
  AWS_ACCESS_KEY_ID="$AKID" AWS_SECRET_ACCESS_KEY="$SECRET" \
  "${under[@]}" "$bin/tollgate" --listen "127.0.0.1:$p_tollgate" --data-dir "$work/data" --log warn \
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
vk_json='{"name": "bench", "provider": "bedrock"}'
api POST /api/virtual-keys "${BENCH_VK_JSON:-$vk_json}"
vk=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["value"])' "$work/api.out")

# The same conversation in both dialects: what the client sends tollgate, and what tollgate
# sends Bedrock (the direct and plain-proxy runs send the latter, signed like tollgate signs).
# Written to files: a Claude Code body is larger than one command-line argument may be.
python3 - "${BENCH_BODY:-small}" "$work" testdata/claude-code/requests.json <<'PY' ||
import json, re, sys
kind, work, recorded = sys.argv[1:4]
if kind == "small":
    base = {"model": "claude-sonnet-4-6", "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}]}
elif kind == "claude-code":
    # Elided texts come back as prose with the characters JSON must escape (quotes, newlines).
    filler = 'The "Bash" tool runs a command in a shell.\nPrefer dedicated tools.\t'
    def expand(v):
        if isinstance(v, str):
            m = re.fullmatch(r"<text: (\d+) chars>", v)
            if m:
                n = int(m.group(1))
                return (filler * (n // len(filler) + 1))[:n]
            return v
        if isinstance(v, list):
            return [expand(x) for x in v]
        if isinstance(v, dict):
            return {k: expand(x) for k, x in v.items()}
        return v
    base = next(expand(r["body"]) for r in json.load(open(recorded)) if "body" in r)
    base["model"] = "claude-sonnet-4-6"
    # This Claude Code release sends a message with role "system", which Bedrock (and its
    # double) reject; its text joins the user turn, so the size stays the same.
    turns = []
    for m in base["messages"]:
        blocks = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        if m["role"] == "system" and turns:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append(dict(m, content=list(blocks)))
    base["messages"] = turns
else:
    sys.exit(f"BENCH_BODY={kind}: expected small or claude-code")
for stream in (False, True):
    body = dict(base, stream=stream)
    open(f"{work}/anthropic-{str(stream).lower()}.json", "w").write(json.dumps(body, separators=(",", ":")))
    if kind == "small":
        # The same request as an OpenAI Chat Completions client sends it (BENCH_API=openai).
        chat = {"model": base["model"], "max_completion_tokens": base["max_tokens"],
                "messages": base["messages"], "stream": stream}
        if stream:
            chat["stream_options"] = {"include_usage": True}
        open(f"{work}/openai-{str(stream).lower()}.json", "w").write(json.dumps(chat, separators=(",", ":")))
bedrock = {k: v for k, v in base.items() if k not in ("model", "stream")}
bedrock["anthropic_version"] = "bedrock-2023-05-31"
open(f"{work}/bedrock.json", "w").write(json.dumps(bedrock, separators=(",", ":")))
print(f"request body: {kind}, {len(json.dumps(base, separators=(',', ':')))} bytes", file=sys.stderr)
PY
  die "cannot build the request bodies"
model_path=/model/global.anthropic.claude-sonnet-4-6

smoke() { # label expected-substring curl-args...
  local label=$1 expect=$2; shift 2
  local body
  body=$(curl -sS --max-time 60 "$@") || die "smoke request $label failed"
  case "$body" in *"$expect"*) ;; *) die "smoke request $label: unexpected answer: ${body:0:400}" ;; esac
}
step "smoke requests"
smoke tollgate-json '"Hello from the Bedrock double."' "$tg/anthropic/v1/messages" \
  -H "x-api-key: $vk" -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' \
  --data-binary @"$work/anthropic-false.json"
smoke tollgate-sse 'event: message_stop' -N "$tg/anthropic/v1/messages" \
  -H "x-api-key: $vk" -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' \
  --data-binary @"$work/anthropic-true.json"
curl -sS -X DELETE "http://127.0.0.1:$p_double/_double/requests" >/dev/null

# --- Instructions per request (BENCH_CALLGRIND) -----------------------------------------------------
if [ -n "${BENCH_CALLGRIND:-}" ]; then
  n=${BENCH_CALLGRIND_REQUESTS:-1000}
  for stream in false true; do
    kind=$([ "$stream" = true ] && echo stream || echo json)
    args=(--url "$tg/anthropic/v1/messages" -H "x-api-key: $vk" -H 'content-type: application/json'
      -H 'anthropic-version: 2023-06-01' --body-file "$work/anthropic-$stream.json"
      --rate 50 --connections 4 --warmup 0s --timeout 60s)
    if [ "${BENCH_API:-anthropic}" = openai ]; then
      [ -f "$work/openai-$stream.json" ] || die "BENCH_API=openai needs BENCH_BODY=small"
      args=(--url "$tg/openai/v1/chat/completions" -H "authorization: Bearer $vk"
        -H 'content-type: application/json' --body-file "$work/openai-$stream.json"
        --rate 50 --connections 4 --warmup 0s --timeout 60s)
    fi
    step "callgrind $kind: warm-up (100 requests), then $n requests counted"
    "$bin/loadgen" "${args[@]}" --duration 2s >/dev/null
    callgrind_control -z "$pid_tollgate" >/dev/null 2>&1
    "$bin/loadgen" "${args[@]}" --duration "$(python3 -c "print($n / 50)")s" --label "$kind" \
      --json-out "$out/callgrind-$kind.jsonl" >/dev/null
    rm -f "$out"/callgrind.out.*
    callgrind_control -d "$pid_tollgate" >/dev/null 2>&1
    dump="$out/callgrind-$kind.out"
    mv "$(ls "$out"/callgrind.out.* | head -1)" "$dump"
    python3 - "$dump" "$out/callgrind-$kind.jsonl" "$kind" <<'PY'
import json, sys
dump, run, kind = sys.argv[1:4]
total = next(int(l.split()[1]) for l in open(dump) if l.startswith(("totals:", "summary:")))
r = json.loads(open(run).read().splitlines()[-1])
n = r["completed_total"]
errors = r.get("errors", 0)
print(f"{kind}: {total / n:,.0f} instructions per request ({total:,} over {n} requests, {errors} errors; {dump})")
PY
  done
  exit 0
fi

# --- Runs ----------------------------------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)
cpu_ticks() { # pid -> utime+stime (fields 14, 15; the command name may contain spaces)
  local stat
  stat=$(cat "/proc/$1/stat")
  stat=${stat##*) }
  set -- $stat
  echo $(( ${12} + ${13} ))
}

thread_ticks() { # pid -> JSON object {thread name: utime+stime} over the live threads
  local t stat name fields out="{" sep=""
  declare -A sum=()
  for t in /proc/"$1"/task/*; do
    stat=$(cat "$t/stat" 2>/dev/null) || continue
    name=${stat#*(}; name=${name%)*}; name=${name//[^A-Za-z0-9_.-]/_}
    fields=${stat##*) }
    set -- $fields
    sum[$name]=$(( ${sum[$name]:-0} + ${12} + ${13} ))
  done
  for name in "${!sum[@]}"; do out+="$sep\"$name\":${sum[$name]}"; sep=","; done
  echo "$out}"
}

machine_ticks() { # -> "busy total" over all cores (/proc/stat)
  local cpu user nice system idle iowait irq softirq steal rest
  read -r cpu user nice system idle iowait irq softirq steal rest </proc/stat
  echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

# This machine may be shared: before each run, wait (up to BENCH_QUIET_WAIT seconds, default
# 90) for a second in which processes outside the benchmark use under 10 % of the CPU.
wait_quiet() {
  local deadline=$((SECONDS + ${BENCH_QUIET_WAIT:-90})) a b busy total
  while :; do
    a=($(machine_ticks)); sleep 1; b=($(machine_ticks))
    busy=$((b[0] - a[0])); total=$((b[1] - a[1]))
    if [ $((busy * 10)) -lt "$total" ]; then return 0; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "bench: warning: the machine is still busy ($((busy * 100 / total))% CPU); running anyway" >&2
      return 0
    fi
  done
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
        -H 'accept: application/json' --body-file "$work/bedrock.json") ;;
    plain)
      args+=(--url "http://127.0.0.1:$p_plain$model_path/$op" --host "127.0.0.1:$p_double"
        --sigv4 "$AKID:$SECRET" -H 'accept: application/json' --body-file "$work/bedrock.json") ;;
    tollgate)
      args+=(--url "$tg/anthropic/v1/messages" -H "x-api-key: $vk"
        -H 'anthropic-version: 2023-06-01' --body-file "$work/anthropic-$stream.json") ;;
  esac
  local pids_watch=("$pid_double" "$pid_plain" "$pid_tollgate") before=() after=() p
  local m0 m1
  wait_quiet
  for p in "${pids_watch[@]}"; do before+=("$(cpu_ticks "$p")"); done
  local threads0 threads1
  threads0=$(thread_ticks "$pid_tollgate")
  m0=($(machine_ticks))
  local perf_pid=
  if [ -n "${BENCH_PERF:-}" ] && [ "$path" != direct ] && command -v perf >/dev/null; then
    local ppid_=$pid_tollgate; [ "$path" = plain ] && ppid_=$pid_plain
    local cg=(-g); [ "$BENCH_PERF" = dwarf ] && cg=(--call-graph dwarf,16384)
    perf record -q -F 499 "${cg[@]}" -p "$ppid_" -o "$out/perf-$label.data" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  "$bin/loadgen" "${args[@]}" | grep -v '^{' >&2
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf report -q -i "$out/perf-$label.data" --no-children --sort dso,symbol --percent-limit 0.7 \
      >"$out/perf-$label.txt" 2>/dev/null || true
  fi
  m1=($(machine_ticks))
  for p in "${pids_watch[@]}"; do after+=("$(cpu_ticks "$p")"); done
  threads1=$(thread_ticks "$pid_tollgate")
  printf '{"label":"%s","clk_tck":%s,"cpu_ticks":{"double":%s,"plain":%s,"tollgate":%s},"machine_busy":%s,"machine_total":%s,"tollgate_threads_before":%s,"tollgate_threads_after":%s}\n' \
    "$label" "$clk_tck" $((after[0] - before[0])) $((after[1] - before[1])) \
    $((after[2] - before[2])) $((m1[0] - m0[0])) $((m1[1] - m0[1])) "$threads0" "$threads1" \
    >>"$out/cpu.jsonl"
  # The double records every request; keep its memory flat between runs.
  curl -sS -X DELETE "http://127.0.0.1:$p_double/_double/requests" >/dev/null
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || die "process $p died (logs in $work)"; done
}

: >"$out/results.jsonl"; : >"$out/cpu.jsonl"
for rep in $(seq 1 "${BENCH_REPEAT:-1}"); do
for mode in rate max; do
  for stream in false true; do
    for path in direct plain tollgate; do
      label="$mode-$([ "$stream" = true ] && echo stream || echo json)-$path"
      if [ -n "${BENCH_ONLY:-}" ] && ! [[ $label =~ $BENCH_ONLY ]]; then continue; fi
      step "$mode $([ "$stream" = true ] && echo streaming || echo non-streaming) $path"
      run "$path" "$stream" "$mode"
    done
  done
done
done

# --- Summary -------------------------------------------------------------------------------------
step "summary (raw: $out)"
python3 - "$out" "$(nproc)" <<'PY'
import json, sys
out, cores = sys.argv[1], int(sys.argv[2])
runs = [json.loads(l) for l in open(f"{out}/results.jsonl")]
cpus = [json.loads(l) for l in open(f"{out}/cpu.jsonl")]
for r, c in zip(runs, cpus):
    assert r["label"] == c["label"], (r["label"], c["label"])
    r["cpu"] = c

def ms(us):
    return "-" if us is None else f"{us / 1000:.3f}"

def cpu_us(r, proc):
    c, n = r["cpu"], r["completed_total"]
    return c["cpu_ticks"][proc] * 1e6 / c["clk_tck"] / n if n else None

def other_load(r):
    # CPU used by processes that are not part of the benchmark, in % of the machine.
    c = r["cpu"]
    ours = sum(c["cpu_ticks"].values()) + (r.get("client_cpu_ticks") or 0)
    return max(0, c["machine_busy"] - ours) * 100 / c["machine_total"] if c["machine_total"] else 0

# With BENCH_REPEAT > 1, keep per label the least disturbed repetition.
res = {}
for r in runs:
    if r["label"] not in res or other_load(r) < other_load(res[r["label"]]):
        res[r["label"]] = r
reps = max(sum(1 for r in runs if r["label"] == l) for l in res)

print(f"{cores} cores, every process on this machine. Latency: scheduled send -> last byte (fixed rate),")
print("send -> last byte (max). +p50/+p99: minus the direct run of the same kind. CPU: utime+stime / requests.")
print("other%: CPU used by processes outside the benchmark during the run (noise), in % of the machine.")
print(f"repetitions: {reps} (each row is the least disturbed one)\n" if reps > 1 else "")
hdr = (f"{'run':<22} {'req/s':>8} {'err':>4} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'p99.9':>7} "
       f"{'+p50':>7} {'+p99':>7} {'ttfb50':>7} {'proxy us/req':>12} {'double us/req':>13} {'client us/req':>13} {'other%':>6}")
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
            pcpu = cpu_us(r, path) if path != "direct" else None
            dcpu = cpu_us(r, "double")
            ccpu = (r.get("client_cpu_ticks") or 0) * 1e6 / r["cpu"]["clk_tck"] / max(1, r["completed_total"])
            other = other_load(r)
            summary[r["label"]] = dict(rps=r["rps"], errors=r["errors"] + r["non_2xx"], latency_us=lat,
                                       ttfb_us=r["ttfb_us"], added_p50_us=add50, added_p99_us=add99,
                                       proxy_cpu_us_per_req=pcpu, double_cpu_us_per_req=dcpu,
                                       client_cpu_us_per_req=ccpu, other_load_pct=other)
            label = f"{'1k/s' if mode == 'rate' else 'max'} {kind} {path}"
            print(f"{label:<22} {r['rps']:>8.0f} {summary[r['label']]['errors']:>4} {ms(lat.get('p50')):>7} "
                  f"{ms(lat.get('p90')):>7} {ms(lat.get('p99')):>7} {ms(lat.get('p999')):>7} {ms(add50):>7} "
                  f"{ms(add99):>7} {ms((r['ttfb_us'] or {}).get('p50')):>7} "
                  f"{'-' if pcpu is None else f'{pcpu:.1f}':>12} {dcpu:>13.1f} {ccpu:>13.1f} {other:>6.1f}")
    print()
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)

print("tollgate CPU by thread (us per request; threads that exited during a run are not listed):")
for label, r in sorted(res.items()):
    if not label.endswith("-tollgate"):
        continue
    c = r["cpu"]
    b, a = c.get("tollgate_threads_before", {}), c.get("tollgate_threads_after", {})
    parts = []
    for name in sorted(a, key=lambda n: -(a[n] - b.get(n, 0))):
        d = a[name] - b.get(name, 0)
        if d > 0:
            parts.append(f"{name} {d * 1e6 / c['clk_tck'] / max(1, r['completed_total']):.1f}")
    print(f"  {label:<22} " + ", ".join(parts))
print()
print("targets:")
for kind in ("json", "stream"):
    t = summary.get(f"rate-{kind}-tollgate")
    if t and t["added_p99_us"] is not None:
        verdict = "met" if t["added_p99_us"] < 1000 else "MISSED"
        print(f"  {kind:<6} added p99 at the fixed rate: {t['added_p99_us'] / 1000:.3f} ms (target < 1 ms: {verdict})")
    for mode in ("rate", "max"):
        t = summary.get(f"{mode}-{kind}-tollgate"); p = summary.get(f"{mode}-{kind}-plain")
        if t and p and t["proxy_cpu_us_per_req"] and p["proxy_cpu_us_per_req"]:
            ratio = t["proxy_cpu_us_per_req"] / p["proxy_cpu_us_per_req"]
            verdict = "met" if ratio <= 2 else "MISSED"
            print(f"  {kind:<6} {'1k/s' if mode == 'rate' else 'max':<4} CPU per request: tollgate "
                  f"{t['proxy_cpu_us_per_req']:.1f} us, plain-proxy {p['proxy_cpu_us_per_req']:.1f} us "
                  f"= {ratio:.2f}x (target <= 2x: {verdict})")
PY
