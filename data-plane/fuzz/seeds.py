#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target, built from the repository's testdata/.

    python3 data-plane/fuzz/seeds.py [OUT_DIR]     (default: data-plane/fuzz/seeds)

OUT_DIR/<target>/ gets one file per seed (names are stable, so re-running overwrites them):

| target       | seeds |
|--------------|-------|
| eventstream  | testdata/eventstream/*.bin (AWS-produced), and frames made here: exception, error, unknown types, every header value type, invocation metrics |
| request_body | `BETAS\\nBODY`: the Claude Code requests of testdata/claude-code/requests.json with their `anthropic-beta` header, and small bodies for each branch |
| sse          | the events of testdata/eventstream/*.json as Anthropic SSE (LF, CRLF, CR line ends, comments, BOM, multi-line data) |
| format_pairs | a mode byte, then: the request bodies of testdata/openai/ (0), the answers there (1), the Anthropic SSE streams there (2), the OpenAI streams there and the Converse streams of testdata/converse/ (3) |
| snapshot     | protobuf `Snapshot`s (encoded here from proto/tollgate/config/v1/config.proto), raw and in the cache file format |

Standard library only.
"""

import base64
import hashlib
import json
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT / "testdata"


def write(out: Path, target: str, name: str, data: bytes) -> None:
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


# --- event stream --------------------------------------------------------------------------------


def es_header(name: str, type_: int, value: bytes = b"") -> bytes:
    n = name.encode()
    return bytes([len(n)]) + n + bytes([type_]) + value


def es_str(name: str, value: str) -> bytes:
    v = value.encode()
    return es_header(name, 7, struct.pack(">H", len(v)) + v)


def es_frame(headers: bytes, payload: bytes) -> bytes:
    total = 16 + len(headers) + len(payload)
    prelude = struct.pack(">II", total, len(headers))
    out = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    return out + struct.pack(">I", zlib.crc32(out))


def es_chunk(event: dict) -> bytes:
    headers = (
        es_str(":event-type", "chunk")
        + es_str(":content-type", "application/json")
        + es_str(":message-type", "event")
    )
    encoded = base64.b64encode(json.dumps(event).encode()).decode()
    return es_frame(headers, json.dumps({"bytes": encoded, "p": "abc"}).encode())


def eventstream_seeds(out: Path) -> None:
    vectors = sorted((TESTDATA / "eventstream").glob("*.bin"))
    for path in vectors:
        write(out, "eventstream", path.name, path.read_bytes())
    events = json.loads((TESTDATA / "eventstream/invoke-stream-thinking-tool.events.json").read_text())
    stream = b"".join(es_chunk(e) for e in events)
    write(out, "eventstream", "gen-thinking-tool.bin", stream)
    # The final chunk with Bedrock's invocation metrics (removed before forwarding).
    stop = {
        "type": "message_stop",
        "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": 25,
            "outputTokenCount": 9,
            "invocationLatency": 420,
            "firstByteLatency": 180,
            "cacheReadInputTokenCount": 3,
            "cacheWriteInputTokenCount": 4,
        },
    }
    write(out, "eventstream", "gen-metrics.bin", es_chunk(events[0]) + es_chunk(stop))
    exception = es_frame(
        es_str(":exception-type", "modelStreamErrorException")
        + es_str(":content-type", "application/json")
        + es_str(":message-type", "exception"),
        b'{"message":"The model stream failed.","originalStatusCode":424}',
    )
    write(out, "eventstream", "gen-exception.bin", es_chunk(events[0]) + exception)
    error = es_frame(
        es_str(":error-code", "InternalFailure") + es_str(":error-message", "boom")
        + es_str(":message-type", "error"),
        b"",
    )
    write(out, "eventstream", "gen-error.bin", error + es_chunk(events[0]))
    anthropic_error = es_chunk(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    write(out, "eventstream", "gen-anthropic-error.bin", es_chunk(events[0]) + anthropic_error)
    every_type = (
        es_header("t", 0)
        + es_header("f", 1)
        + es_header("b", 2, b"\x7f")
        + es_header("s", 3, struct.pack(">h", -2))
        + es_header("i", 4, struct.pack(">i", 7))
        + es_header("l", 5, struct.pack(">q", -9))
        + es_header("a", 6, struct.pack(">H", 3) + b"\x00\x01\x02")
        + es_str(":message-type", "event")
        + es_header("ts", 8, struct.pack(">q", 1700000000000))
        + es_header("u", 9, bytes(range(16)))
        + es_str(":event-type", "future-event")
    )
    write(out, "eventstream", "gen-every-header-type.bin", es_frame(every_type, b"{}"))
    write(out, "eventstream", "gen-unknown-message-type.bin",
          es_frame(es_str(":message-type", "telemetry"), b""))
    write(out, "eventstream", "gen-empty-frame.bin", es_frame(b"", b""))


# --- request bodies ------------------------------------------------------------------------------


def request_body_seeds(out: Path) -> None:
    captured = json.loads((TESTDATA / "claude-code/requests.json").read_text())
    n = 0
    for req in captured:
        body = req.get("body")
        if body is None:
            continue
        betas = next((v for k, v in req["headers"].items() if k.lower() == "anthropic-beta"), "")
        compact = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        write(out, "request_body", f"claude-code-{n}.txt", betas.encode() + b"\n" + compact)
        # A short one: the same top level with small messages, tools and system.
        small = {k: v for k, v in body.items()}
        small["messages"] = [{"role": "user", "content": "hi"}]
        small["tools"] = body.get("tools", [])[:1]
        small["system"] = body.get("system", [])[:1]
        write(out, "request_body", f"claude-code-{n}-small.txt",
              betas.encode() + b"\n" + json.dumps(small, indent=1).encode())
        n += 1
    cases = {
        "minimal": (b"", b'{"model":"claude-sonnet-4-6","max_tokens":1,"messages":[]}'),
        "stream-null": (b"", b'{"model":"m","stream":null}'),
        "body-betas": (
            b"interleaved-thinking-2025-05-14, advanced-tool-use-2025-11-20,,x",
            b'{"model":"bedrock/us.anthropic.claude-opus-4-6-v1","anthropic_beta":'
            b'["token-counting-2024-11-01","nope"],"stream":true,"messages":[]}',
        ),
        "version-kept": (b"output-128k-2025-02-19", b'{"anthropic_version":"x","model":"a:b/c d","max_tokens":5}'),
        "escaped-keys": (b"", b'{"\\u006dodel":"m\\u00e9","m\\"x":{"a":[1,2.50,"\\ud83e\\udd80"]}}'),
        "duplicate": (b"", b'{"model":"a","model":"b"}'),
        "not-object": (b"", b'["model"]'),
        "model-not-string": (b"", b'{"model":5}'),
        "whitespace": (b"  effort-2025-11-24  ", b' \r\n\t{ "model" : "m" , "stream" : false } \n'),
        "profile": (b"", b'{"model":"us.anthropic.claude-haiku-4-5-20251001-v1:0"}'),
    }
    for name, (betas, body) in cases.items():
        write(out, "request_body", f"{name}.txt", betas + b"\n" + body)


# --- SSE -----------------------------------------------------------------------------------------


def sse_seeds(out: Path) -> None:
    events = json.loads((TESTDATA / "eventstream/invoke-stream-thinking-tool.events.json").read_text())
    lf = b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + json.dumps(e).encode() + b"\n\n" for e in events
    )
    lf += b"event: ping\ndata: {\"type\": \"ping\"}\n\n"
    write(out, "sse", "thinking-tool-lf.txt", lf)
    write(out, "sse", "thinking-tool-crlf.txt", lf.replace(b"\n", b"\r\n"))
    write(out, "sse", "thinking-tool-cr.txt", lf.replace(b"\n", b"\r"))
    throttled = json.loads((TESTDATA / "eventstream/invoke-stream-midstream-throttling.expected.json").read_text())
    err = {"type": "error", "error": {"type": "rate_limit_error", "message": throttled["message"]}}
    sse = b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + json.dumps(e).encode() + b"\n\n"
        for e in throttled["events_before_exception"] + [err]
    )
    write(out, "sse", "throttled.txt", sse)
    write(
        out,
        "sse",
        "fields.txt",
        b"\xef\xbb\xbf: comment\nid: 1\nretry: 10\nevent:\ndata\ndata:  two spaces\n"
        b"data:{\ndata: \"a\": 1}\n\nevent: x\n\ndata: no event name\nunknown: field\n\n"
        b"event: cut\ndata: unterminated",
    )
    pretty = json.dumps(events[0], indent=2).encode()
    write(out, "sse", "multiline.txt", b"event: message_start\n" + b"".join(
        b"data: " + line + b"\n" for line in pretty.split(b"\n")) + b"\n")


# --- snapshots (protobuf) ------------------------------------------------------------------------
# Field numbers from proto/tollgate/config/v1/config.proto.


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(num: int, n: int) -> bytes:
    return varint(num << 3) + varint(n)


def f_bytes(num: int, b: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(b)) + b


def f_str(num: int, s: str) -> bytes:
    return f_bytes(num, s.encode())


def f_double(num: int, x: float) -> bytes:
    return varint(num << 3 | 1) + struct.pack("<d", x)


def f_map(num: int, entries: dict) -> bytes:
    return b"".join(f_bytes(num, f_str(1, k) + f_str(2, v)) for k, v in entries.items())


def value_ref(literal: str = None, env: str = None) -> bytes:
    return f_str(1, literal) if literal is not None else f_str(2, env)


def provider_key(id_, name, models=(), weight=1.0, aliases=None, value=None, bedrock=None, enabled=True):
    out = f_str(1, id_) + f_str(2, name)
    out += b"".join(f_str(3, m) for m in models)
    out += f_double(4, weight)
    out += f_map(5, aliases or {})
    if value is not None:
        out += f_bytes(6, value)
    if bedrock is not None:
        out += f_bytes(7, bedrock)
    if enabled:
        out += f_varint(8, 1)
    return out


def provider(name, kind, keys=(), network=None):
    out = f_str(1, name) + f_varint(2, kind)
    if network is not None:
        out += f_bytes(3, network)
    return out + b"".join(f_bytes(4, k) for k in keys)


def virtual_key(id_, name, key_hash, providers=(), budget=0.0, active=True):
    out = f_str(1, id_) + f_str(2, name) + f_bytes(3, key_hash)
    out += b"".join(f_str(4, p) for p in providers)
    if budget:
        out += f_double(5, budget)
    if active:
        out += f_varint(6, 1)
    return out


def snapshot(version, providers=(), virtual_keys=(), created_at=1767225600000):
    out = f_varint(1, version)
    out += b"".join(f_bytes(2, p) for p in providers)
    out += b"".join(f_bytes(3, v) for v in virtual_keys)
    return out + f_varint(4, created_at)


def cache_file(payload: bytes) -> bytes:
    # data-plane/src/source.rs: magic, format version (u32 LE), length (u64 LE), SHA-256, payload.
    return b"TGSNAP\r\n" + struct.pack("<IQ", 1, len(payload)) + hashlib.sha256(payload).digest() + payload


def snapshot_seeds(out: Path) -> None:
    bedrock_static = (
        f_bytes(1, value_ref(literal="AKIDEXAMPLE"))
        + f_bytes(2, value_ref(env="AWS_SECRET_ACCESS_KEY"))
        + f_bytes(4, value_ref(literal="us-east-1"))
        + f_str(8, "arn:aws:bedrock:us-east-1:123456789012:")
    )
    bedrock_role = (
        f_bytes(4, value_ref(env="AWS_REGION"))
        + f_bytes(5, value_ref(literal="arn:aws:iam::123456789012:role/bedrock"))
        + f_bytes(6, value_ref(literal="ext-id"))
        + f_str(7, "tollgate")
    )
    network = (
        f_str(1, "https://bedrock-runtime.us-east-1.amazonaws.com/")
        + f_varint(2, 5000)
        + f_varint(3, 600000)
        + f_varint(4, 300000)
        + f_map(5, {"x-team": "platform"})
    )
    bedrock = provider("bedrock", 1, [
        provider_key("k1", "static", ["claude-sonnet-4-6", "*"], 2.0,
                     {"Claude-Sonnet-4-6": "global.anthropic.claude-sonnet-4-6"}, bedrock=bedrock_static),
        provider_key("k2", "role", [], 0.5, bedrock=bedrock_role),
        provider_key("k3", "api-key", value=value_ref(literal="bedrock-api-key")),
        provider_key("k4", "disabled", enabled=False),
    ], network)
    anthropic = provider("anthropic", 2, [
        provider_key("a1", "main", ["claude-haiku-4-5"], 1.0, value=value_ref(env="ANTHROPIC_API_KEY")),
    ], f_str(1, "http://127.0.0.1:18081"))
    vk = virtual_key("vk1", "team", hashlib.sha256(b"sk-tg-example").digest(), ["bedrock"], 100.0)
    vk_all = virtual_key("vk2", "all", hashlib.sha256(b"sk-tg-other").digest(), active=False)
    seeds = {
        "empty": snapshot(0),
        "full": snapshot(42, [bedrock, anthropic], [vk, vk_all]),
        "duplicate-provider": snapshot(3, [anthropic, anthropic]),
        "bad-weight": snapshot(4, [provider("p", 2, [provider_key("x", "x", weight=0.0, value=value_ref(literal="v"))])]),
        "bad-hash": snapshot(5, [], [virtual_key("v", "v", b"short")]),
        "no-kind": snapshot(6, [provider("p", 0)]),
        "bad-header": snapshot(7, [provider("p", 2, [], f_map(5, {"bad header": "v"}))]),
        "half-static": snapshot(8, [provider("b", 1, [provider_key("x", "x", bedrock=f_bytes(1, value_ref(literal="AKID")))])]),
    }
    for name, payload in seeds.items():
        write(out, "snapshot", f"{name}.pb", payload)
        write(out, "snapshot", f"{name}.cache", cache_file(payload))


def format_pairs_seeds(out: Path) -> None:
    openai = TESTDATA / "openai"
    for f in sorted(openai.glob("*.json")):
        text = f.read_bytes()
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        # Answers carry `choices` (OpenAI), `content` (Anthropic) or `output` (Converse, Responses).
        mode = 1 if any(k in doc for k in ("choices", "content", "output")) else 0
        write(out, "format_pairs", f"{mode}-{f.stem}", bytes([mode]) + text)
    for f in sorted(openai.glob("*.sse")):
        mode = 3 if f.name.startswith("egress-") else 2
        write(out, "format_pairs", f"{mode}-{f.stem}", bytes([mode]) + f.read_bytes())
    converse = TESTDATA / "converse"
    if converse.is_dir():
        for f in sorted(converse.iterdir()):
            if f.suffix in (".bin", ".json"):
                mode = 3 if f.suffix == ".bin" else 1
                write(out, "format_pairs", f"{mode}-converse-{f.stem}", bytes([mode]) + f.read_bytes())


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "seeds"
    eventstream_seeds(out)
    request_body_seeds(out)
    sse_seeds(out)
    snapshot_seeds(out)
    format_pairs_seeds(out)
    for target in sorted(p.name for p in out.iterdir() if p.is_dir()):
        print(f"{target}: {len(list((out / target).iterdir()))} seeds")


if __name__ == "__main__":
    main()
