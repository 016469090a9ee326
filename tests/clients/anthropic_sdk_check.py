"""Drives a running Tollgate with the official Anthropic Python SDK and prints what it saw as JSON.

Usage: python anthropic_sdk_check.py BASE_URL VIRTUAL_KEY
The Rust end-to-end test (tests/tests/e2e_clients.rs) starts the gateway and asserts on the output.
"""
import json
import sys

import anthropic

base_url, key = sys.argv[1], sys.argv[2]
out = {"sdk_version": anthropic.__version__}

client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=30)
bearer = anthropic.Anthropic(base_url=base_url, auth_token=key, max_retries=0, timeout=30)

msg = client.messages.create(
    model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
)
out["create"] = {"text": msg.content[0].text, "stop_reason": msg.stop_reason,
                 "input_tokens": msg.usage.input_tokens, "output_tokens": msg.usage.output_tokens}

with bearer.messages.stream(
    model="bedrock/global.anthropic.claude-sonnet-4-6", max_tokens=64,
    messages=[{"role": "user", "content": "Stream to me"}],
) as stream:
    chunks = [t for t in stream.text_stream]
    final = stream.get_final_message()
out["stream"] = {"chunks": len(chunks), "text": "".join(chunks), "stop_reason": final.stop_reason,
                 "output_tokens": final.usage.output_tokens}

tool = client.messages.create(
    model="claude-sonnet-4-6", max_tokens=64,
    tools=[{"name": "Read", "description": "Read a file",
            "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}],
    messages=[{"role": "user", "content": "[double:tool] read it"}],
)
uses = [b for b in tool.content if b.type == "tool_use"]
out["tool"] = {"stop_reason": tool.stop_reason, "name": uses[0].name if uses else None,
               "input": uses[0].input if uses else None}

try:
    client.messages.create(model="claude-sonnet-4-6", max_tokens=8,
                           messages=[{"role": "user", "content": "[double:throttle]"}])
    out["throttle"] = "no error"
except anthropic.RateLimitError as e:
    out["throttle"] = {"status": e.status_code, "type": e.body["error"]["type"] if isinstance(e.body, dict) else None}

try:
    anthropic.Anthropic(base_url=base_url, api_key="sk-tg-wrong", max_retries=0).messages.create(
        model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    out["bad_key"] = "no error"
except anthropic.AuthenticationError as e:
    out["bad_key"] = {"status": e.status_code}

count = client.messages.count_tokens(model="claude-sonnet-4-6",
                                     messages=[{"role": "user", "content": "count me please"}])
out["count_tokens"] = count.input_tokens

print(json.dumps(out))
