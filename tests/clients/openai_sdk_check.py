"""Drives a running Tollgate with the official OpenAI Python SDK and prints what it saw as JSON.

Usage: python openai_sdk_check.py BASE_URL VIRTUAL_KEY MODEL
BASE_URL is the gateway's OpenAI-format root (http://HOST:PORT/openai/v1). The Rust end-to-end
test (tests/tests/e2e_openai.rs) starts the gateway with the Bedrock double behind it and asserts
on the output.
"""
import json
import sys

import openai

base_url, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
out = {"sdk_version": openai.__version__}
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)

# Chat Completions, whole.
chat = client.chat.completions.create(
    model=model,
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
    max_completion_tokens=64,
)
out["chat"] = {
    "id": chat.id, "model": chat.model, "text": chat.choices[0].message.content,
    "finish_reason": chat.choices[0].finish_reason,
    "prompt_tokens": chat.usage.prompt_tokens, "completion_tokens": chat.usage.completion_tokens,
}

# Chat Completions, streamed, with the usage chunk.
stream = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Stream to me"}], stream=True,
    stream_options={"include_usage": True},
)
pieces, finish, usage = [], None, None
for chunk in stream:
    if chunk.choices:
        delta = chunk.choices[0].delta
        if delta.content:
            pieces.append(delta.content)
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        usage = chunk.usage
out["stream"] = {"chunks": len(pieces), "text": "".join(pieces), "finish_reason": finish,
                 "completion_tokens": usage.completion_tokens if usage else None}

# A tool round trip: the model calls a tool, the result goes back, the model answers.
tools = [{"type": "function", "function": {
    "name": "Read", "description": "Read a file",
    "parameters": {"type": "object", "properties": {"file_path": {"type": "string"}},
                   "required": ["file_path"]}}}]
messages = [{"role": "user", "content": "[double:tool] read it"}]
first = client.chat.completions.create(model=model, messages=messages, tools=tools,
                                       tool_choice="auto")
call = first.choices[0].message.tool_calls[0]
messages.append(first.choices[0].message.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": "file contents: 42"})
second = client.chat.completions.create(model=model, messages=messages, tools=tools)
out["tool"] = {
    "finish_reason": first.choices[0].finish_reason, "name": call.function.name,
    "arguments": json.loads(call.function.arguments),
    "answer": second.choices[0].message.content, "answer_finish": second.choices[0].finish_reason,
}

# Errors, as the SDK's exception classes.
def error(fn):
    try:
        fn()
        return "no error"
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {"class": type(e).__name__, "status": e.status_code,
                "code": body.get("code"), "param": body.get("param"), "type": body.get("type")}

out["bad_key"] = error(lambda: openai.OpenAI(base_url=base_url, api_key="sk-tg-wrong", max_retries=0)
                       .chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}]))
out["throttle"] = error(lambda: client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "[double:throttle]"}]))
out["bad_request"] = error(lambda: client.chat.completions.create(
    model=model, temperature=1.7, messages=[{"role": "user", "content": "x"}]))
out["unknown_model"] = error(lambda: client.chat.completions.create(
    model="nowhere/none", messages=[{"role": "user", "content": "x"}]))

# Responses, whole and streamed.
resp = client.responses.create(model=model, instructions="Be brief.", input="Hello", store=False)
out["responses"] = {"id": resp.id, "status": resp.status, "text": resp.output_text,
                    "input_tokens": resp.usage.input_tokens}
with client.responses.stream(model=model, input="Stream to me") as events:
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    final = events.get_final_response()
out["responses_stream"] = {"deltas": len(deltas), "text": final.output_text, "status": final.status}

# A Responses tool round trip.
rtools = [{"type": "function", "name": "Read", "description": "Read a file",
           "parameters": {"type": "object", "properties": {"file_path": {"type": "string"}}}}]
r1 = client.responses.create(model=model, input="[double:tool] read it", tools=rtools)
calls = [i for i in r1.output if i.type == "function_call"]
r2 = client.responses.create(model=model, tools=rtools, input=[
    {"role": "user", "content": "[double:tool] read it"},
    {"type": "function_call", "call_id": calls[0].call_id, "name": calls[0].name,
     "arguments": calls[0].arguments},
    {"type": "function_call_output", "call_id": calls[0].call_id, "output": "file contents: 42"},
])
out["responses_tool"] = {"name": calls[0].name, "arguments": json.loads(calls[0].arguments),
                         "answer": r2.output_text}

out["models"] = sorted(m.id for m in client.models.list())
print(json.dumps(out))
