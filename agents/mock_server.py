"""A scripted OpenAI-compatible server for tests and benchmarks (no model behind it).

`python -m agents.mock_server --port 8001` serves /v1/models and /v1/chat/completions on 127.0.0.1.
Replies follow the MetaSynth protocol and depend only on the request's content, so parallel
branches get deterministic answers:
  - a conductor conversation (its system prompt names the Conductor) with no expert output yet
    -> two expert calls; with expert outputs -> a final answer built from the seed keywords;
  - anything else (an expert) -> a paragraph on its instruction.
Documents differ with the seed, so the novelty gate passes them; identical seeds give identical text.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "mock-conductor"
WORDS = ("ledger", "margin", "covenant", "tranche", "spread", "hedge", "accrual", "liquidity", "coupon",
         "duration", "collateral", "arbitrage", "dividend", "leverage", "volatility", "solvency", "equity")


def _prose(topic: str, sentences: int = 8) -> str:
    """Deterministic but topic-specific filler: each topic hashes to its own word choices."""
    digest = hashlib.sha256(topic.encode()).digest()
    out = []
    for i in range(sentences):
        a, b, c = (WORDS[digest[(3 * i + j) % len(digest)] % len(WORDS)] for j in range(3))
        out.append(f"Regarding {topic}, the {a} and the {b} move with the {c} in case {digest[i] % 97}.")
    return " ".join(out)


def reply_for(messages: list[dict]) -> str:
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    conversation = "\n".join(str(m["content"]) for m in messages if m["role"] != "system")
    if "Conductor" in system:
        seed = re.search(r"Seed: (.*)", conversation)
        topic = seed[1].strip() if seed else "the topic"
        if "output:" not in conversation:
            return (f"Plan: consult two experts.\n\nExpert Analyst:\n\"\"\"\nDraft a note on {topic}.\n\"\"\"\n\n"
                    f"Expert Editor:\n\"\"\"\nList three style rules for {topic}.\n\"\"\"")
        revision = conversation.count("too close")
        body = _prose(f"{topic} (version {revision})" if revision else topic)
        return f">> FINAL ANSWER:\n\"\"\"\n{body}\n\"\"\"\nSummary: A note on {topic[:80]}.\nCategory: mock topic"
    instruction = messages[-1]["content"] if messages else ""
    return _prose(instruction[-200:], 3)


class Handler(BaseHTTPRequestHandler):
    latency = 0.0

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            return self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        self._send(404, {"error": {"message": "not found"}})

    def do_POST(self):
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send(404, {"error": {"message": "not found"}})
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        time.sleep(self.latency)
        text = reply_for(request.get("messages", []))
        prompt = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
        self._send(200, {
            "id": "mock", "object": "chat.completion", "created": int(time.time()), "model": request.get("model", MODEL),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": len(text.split()), "total_tokens": prompt + len(text.split())},
        })


class MockServer:
    """`with MockServer() as url:` a server on a free loopback port, in a background thread."""

    def __init__(self, port: int = 0, latency: float = 0.0):
        handler = type("H", (Handler,), {"latency": latency})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> str:
        self.thread.start()
        return self.base_url

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every completion")
    args = parser.parse_args()
    server = MockServer(args.port, args.latency)
    print(f"mock OpenAI server on {server.base_url}", flush=True)
    server.httpd.serve_forever()
