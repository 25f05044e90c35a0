"""A scripted OpenAI-compatible server for tests and benchmarks (no model behind it).

`python -m benchmarks.mock_server --port 8001` serves /v1/models and /v1/chat/completions on
127.0.0.1. Replies follow the MetaSynth protocol and depend only on the request's content, so
parallel branches get deterministic answers:
  - a conductor conversation (its system prompt names the Conductor) whose last turn holds no
    expert output (the start, or a draft sent back) -> two expert calls on the seed; with the
    experts' outputs -> a final answer that is the Analyst's draft;
  - anything else (an expert) -> a paragraph on its instruction.
Documents differ with the seed, so the novelty gate passes them; identical seeds give identical
text.

Faults, for tests and benchmarks (each request draws from a seeded RNG):
  --error-rate    HTTP 500 instead of an answer
  --hang-rate     no answer for --hang seconds (the client's timeout must fire)
  --malformed-rate  a conductor turn that is neither an expert call nor a final answer
  --api-key       answer 401 unless this bearer token is sent
  --capacity      a queueing server (like vLLM under load): past this many requests in flight, each
                  request's latency grows in proportion (latency x in-flight / capacity)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "mock-conductor"
# Filler for documents: varied enough to pass the quality gate (no repeated clauses, the topic named
# once), and different for every topic, so the novelty gate tells topics apart.
NOUNS = (
    "ledger",
    "margin",
    "covenant",
    "tranche",
    "spread",
    "hedge",
    "accrual",
    "liquidity",
    "coupon",
    "duration",
    "collateral",
    "arbitrage",
    "dividend",
    "leverage",
    "volatility",
    "solvency",
    "equity",
    "auditor",
    "regulator",
    "treasurer",
    "portfolio",
    "benchmark",
    "forecast",
    "reserve",
    "charter",
    "lender",
    "borrower",
    "exchange",
    "index",
    "mandate",
    "pension",
    "premium",
    "subsidy",
    "tariff",
)
VERBS = (
    "tightens",
    "widens",
    "outlasts",
    "reshapes",
    "follows",
    "anchors",
    "unsettles",
    "supports",
    "delays",
    "measures",
    "protects",
    "tests",
    "limits",
    "funds",
    "exposes",
    "rewards",
)
ADJS = (
    "quarterly",
    "regional",
    "fragile",
    "durable",
    "cautious",
    "surprising",
    "modest",
    "seasonal",
    "unhedged",
    "secured",
    "rising",
    "narrow",
    "annual",
    "distant",
    "local",
    "sovereign",
)
FRAMES = (
    "Markets moved on {topic} this quarter.",
    "A {a} {n1} {v} the {n2} when the {n3} moves.",
    "Few readers expect the {n1} to matter, yet it {v} every {a} {n2}.",
    "In {year}, one {n1} {v} a {a} {n2} for months.",
    "Its {n1} and its {n2} point in different directions for the {n3}.",
    "Nobody on the {a} desk saw how the {n1} {v} the {n2}.",
    "So the {n1} is worth watching, and the {a} {n2} with it.",
    "What follows depends on the {n3}, not on the {n1}.",
)


def prose(topic: str, sentences: int = 8) -> str:
    """Deterministic, topic-specific text: each topic hashes to its own word choices."""
    digest = hashlib.sha256(topic.encode()).digest()

    def pick(pool: tuple[str, ...], k: int) -> str:
        return pool[digest[k % len(digest)] % len(pool)]

    return " ".join(
        FRAMES[i % len(FRAMES)].format(
            topic=topic,
            a=pick(ADJS, 5 * i),
            n1=pick(NOUNS, 5 * i + 1),
            n2=pick(NOUNS, 5 * i + 2),
            n3=pick(NOUNS, 5 * i + 3),
            v=pick(VERBS, 5 * i + 4),
            year=1990 + digest[i] % 30,
        )
        for i in range(sentences)
    )


def _offered(conversation: str, label: str) -> str:
    match = re.search(rf"^{label}: ([^;\n]+)", conversation, re.MULTILINE)
    return match[1].strip() if match else "general"


def reply_for(messages: list[dict]) -> str:
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    conversation = "\n".join(str(m["content"]) for m in messages if m["role"] != "system")
    # the structured protocol's brief: the first option offered
    if "brief" in system and "Conductor" in system:
        keywords = re.search(r"Keywords: (.*)", conversation)
        topic = keywords[1].strip() if keywords else "the topic"
        return (
            f"Category: {_offered(conversation, 'Categories')}\n"
            f"Genre: {_offered(conversation, 'Genres')}\n"
            f"Audience: {_offered(conversation, 'Audiences')}\nExpert: Senior Analyst\n"
            f"Angle: What {topic[:120]} means in practice (attempt "
            f"{conversation.count('too close') + 1}).\n"
        )
    if "Verdict:" in (messages[-1]["content"] if messages else ""):
        return "Verdict: keep\nFix: None needed.\n"
    if "Conductor" in system:
        seed = re.search(r"Seed: (.*)", conversation)
        topic = seed[1].strip() if seed else "the topic"
        # the keywords only: a document that lists its genre and audience talks about its brief
        keywords = re.search(r"keywords: ([^;\n]+)", topic)
        topic = keywords[1].strip() if keywords else topic
        last = str(messages[-1]["content"]) if messages else ""
        drafts = re.findall(r"Analyst's output:\n\"\"\"\n(.*?)\n\"\"\"", last, re.DOTALL)
        # the first turn, or sent back: (re)consult the experts, a new version each time
        if not drafts:
            revision = conversation.count("too close") + conversation.count("quality check")
            about = f"{topic} (version {revision})" if revision else topic
            return (
                "Plan: consult two experts.\n\n"
                f'Expert Analyst:\n"""\nDraft a note on {about}.\n"""\n\n'
                f'Expert Editor:\n"""\nList three style rules for {about}.\n"""'
            )
        return (
            f'>> FINAL ANSWER:\n"""\n{drafts[0]}\n"""\n'
            f"Summary: A note on {topic[:80]}.\nCategory: mock topic"
        )
    instruction = messages[-1]["content"] if messages else ""
    # a writer's keywords
    subject = re.search(r"(?:about: |note on |rules for )([^\n]+)", instruction)
    return prose(subject[1].strip()[:200] if subject else instruction[-200:])


class Handler(BaseHTTPRequestHandler):
    latency = 0.0
    error_rate = hang_rate = malformed_rate = 0.0
    hang = 30.0
    api_key = ""
    capacity = 0
    inflight = 0
    completions = 0  # requests answered, for tests of routing
    rng = random.Random(0)
    rng_lock = threading.Lock()

    def log_message(self, *args):  # quiet
        pass

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on a hung request

    def _draw(self) -> float:
        with self.rng_lock:
            return self.rng.random()

    def _authorized(self) -> bool:
        if not self.api_key or self.headers.get("Authorization") == f"Bearer {self.api_key}":
            return True
        self._send(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
        return False

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if not self._authorized():
            return
        if self.path.rstrip("/") == "/v1/models":
            return self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        self._send(404, {"error": {"message": "not found"}})

    def do_POST(self):
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send(404, {"error": {"message": "not found"}})
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self._authorized():
            return
        with self.rng_lock:
            type(self).inflight += 1
            type(self).completions += 1
            load = max(1.0, type(self).inflight / self.capacity) if self.capacity else 1.0
        try:
            time.sleep(self.latency * load)
        finally:
            with self.rng_lock:
                type(self).inflight -= 1
        draw = self._draw()
        if draw < self.error_rate:
            return self._send(500, {"error": {"message": "injected fault"}})
        if draw < self.error_rate + self.hang_rate:
            time.sleep(self.hang)
            return self._send(504, {"error": {"message": "injected hang"}})
        messages = request.get("messages", [])
        conductor = any(
            m["role"] == "system" and "Conductor" in str(m["content"]) for m in messages
        )
        if conductor and self._draw() < self.malformed_rate:
            text = "Let me think about which experts would help here."
        else:
            text = reply_for(messages)
        prompt = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
        self._send(
            200,
            {
                "id": "mock",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model", MODEL),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": len(text.split()),
                    "total_tokens": prompt + len(text.split()),
                },
            },
        )


class MockServer:
    """`with MockServer() as url:` a server on a free loopback port, in a background thread."""

    def __init__(
        self,
        port: int = 0,
        latency: float = 0.0,
        error_rate: float = 0.0,
        hang_rate: float = 0.0,
        malformed_rate: float = 0.0,
        hang: float = 30.0,
        api_key: str = "",
        seed: int = 0,
        capacity: int = 0,
    ):
        handler = type(
            "H",
            (Handler,),
            {
                "latency": latency,
                "error_rate": error_rate,
                "hang_rate": hang_rate,
                "malformed_rate": malformed_rate,
                "hang": hang,
                "api_key": api_key,
                "capacity": capacity,
                "inflight": 0,
                "completions": 0,
                "rng": random.Random(seed),
                "rng_lock": threading.Lock(),
            },
        )
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def completions(self) -> int:
        return self.httpd.RequestHandlerClass.completions

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
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every completion"
    )
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--hang-rate", type=float, default=0.0)
    parser.add_argument("--hang", type=float, default=30.0)
    parser.add_argument("--malformed-rate", type=float, default=0.0)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--capacity", type=int, default=0)
    args = parser.parse_args()
    server = MockServer(
        args.port,
        args.latency,
        args.error_rate,
        args.hang_rate,
        args.malformed_rate,
        args.hang,
        args.api_key,
        args.seed,
        args.capacity,
    )
    print(f"mock OpenAI server on {server.base_url}", flush=True)
    server.httpd.serve_forever()
