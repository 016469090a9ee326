import json, threading, sys, base64
from http.server import BaseHTTPRequestHandler, HTTPServer
from openai import OpenAI

captured = []
ANSWER = {"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        body = self.rfile.read(n)
        captured.append(body)
        req = json.loads(body)
        if req.get("stream"):
            self.send_response(200); self.send_header("content-type","text/event-stream"); self.end_headers()
            self.wfile.write(b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
        else:
            out = json.dumps(ANSWER).encode()
            self.send_response(200); self.send_header("content-type","application/json"); self.send_header("content-length",str(len(out))); self.end_headers(); self.wfile.write(out)
    def log_message(self,*a): pass
srv = HTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
c = OpenAI(base_url=f"http://127.0.0.1:{srv.server_port}/v1", api_key="x", max_retries=0)
out_dir = sys.argv[1]
def save(name):
    with open(f"{out_dir}/{name}.json","wb") as f: f.write(captured[-1])

# 1x1 transparent PNG
png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
c.chat.completions.create(model="claude-sonnet-4-6", messages=[
  {"role":"system","content":"You are a careful assistant."},
  {"role":"developer","content":"Answer in French."},
  {"role":"user","content":[{"type":"text","text":"What is in this image?"},{"type":"image_url","image_url":{"url":f"data:image/png;base64,{png}","detail":"low"}},{"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}}]},
], max_completion_tokens=512, temperature=0.2, user="user-42", stop=["\n\nHuman:", " "])
save("request-system-image")

tools=[{"type":"function","function":{"name":"get_weather","description":"Current weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
       {"type":"function","function":{"name":"get_time","description":"Local time for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":False},"strict":True}}]
c.chat.completions.create(model="claude-sonnet-4-6", messages=[
  {"role":"user","content":"Weather and time in Paris and Tokyo?"},
  {"role":"assistant","content":None,"tool_calls":[
    {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}},
    {"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{\"city\":\"Tokyo\"}"}}]},
  {"role":"tool","tool_call_id":"call_1","content":"18C, cloudy"},
  {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"09:30"}]},
  {"role":"user","content":"Thanks. Which is warmer?"},
], tools=tools, tool_choice={"type":"function","function":{"name":"get_weather"}}, parallel_tool_calls=False, max_tokens=1024)
save("request-tools-roundtrip")

s = c.chat.completions.create(model="claude-haiku-4-5", messages=[{"role":"user","content":"Count to three."}], stream=True, stream_options={"include_usage":True}, top_p=0.9, seed=7, presence_penalty=0.5)
for _ in s: pass
save("request-stream-usage")

c.chat.completions.create(model="claude-sonnet-4-6", messages=[{"role":"user","content":"Extract: Alice meets Bob on Friday."}],
  response_format={"type":"json_schema","json_schema":{"name":"calendar_event","strict":True,"schema":{"type":"object","properties":{"title":{"type":"string"},"day":{"type":"string"},"participants":{"type":"array","items":{"type":"string"}}},"required":["title","day","participants"],"additionalProperties":False}}})
save("request-json-schema")

c.chat.completions.create(model="claude-opus-4-6", messages=[{"role":"user","content":"Prove there are infinitely many primes."}], reasoning_effort="medium", max_completion_tokens=2000, tools=[tools[0]], tool_choice="auto", metadata={"team":"search"}, store=False)
save("request-reasoning-effort")
print("captured", len(captured))
srv.shutdown()
