"""Every LLM call goes through here: endpoint choice, concurrency caps, retries, accounting.

- Several base URLs (replicas of one deployment) form a Router; each call goes to the endpoint with
  the lowest load (requests in flight / its cap).
- Each endpoint caps its requests in flight. vLLM queues instead of answering 429, so the cap is
  what keeps latency bounded; `adaptive` makes it AIMD: +1 after each window of healthy calls,
  halved on an error or when latency exceeds twice its running median.
- Timeouts, refused connections, HTTP 408/409/429/5xx and empty replies are retried with exponential
  backoff and full jitter; past the retry budget the call raises LLMFailure (the document fails, the
  run goes on).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

import openai
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr


def api_key() -> SecretStr:
    """OPENAI_API_KEY (a local server needs none), held as a SecretStr: never in a repr, a log or a
    manifest."""
    return SecretStr(os.environ.get("OPENAI_API_KEY") or "EMPTY")


# -- how each server takes a grammar ---------------------------------------------------------------
LLAMA_CPP = "llama.cpp"  # top-level "grammar" (llama-cpp-python and llama.cpp's llama-server)
VLLM = "vllm"  # "structured_outputs": {"grammar": ...} (vLLM >= 0.10.2)
# "guided_grammar" (vLLM 0.6 .. 0.10.1; removed in 0.12, then silently ignored)
VLLM_GUIDED = "vllm-guided"


def request_fields(style: str, grammar: str) -> dict:
    """The `extra_body` fields that constrain one request, for a server of `style` ("" = none)."""
    if not grammar or not style:
        return {}
    if style == LLAMA_CPP:
        return {"grammar": grammar}
    if style == VLLM:
        return {"structured_outputs": {"grammar": grammar}}
    if style == VLLM_GUIDED:
        return {"guided_grammar": grammar}
    raise ValueError(f"unknown grammar style {style!r}")


RETRYABLE = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
    openai.ConflictError,
)


class LLMFailure(Exception):
    """A call that still failed after its retries."""


class EmptyReply(Exception):
    pass


@dataclass
class RoleStats:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    failures: int = 0
    latencies: list[float] = field(default_factory=list)


class Accounting:
    """Calls, tokens, retries and latencies per role ("conductor", "expert:<Name>",
    "fallback:<Name>")."""

    def __init__(self) -> None:
        self.roles: dict[str, RoleStats] = defaultdict(RoleStats)
        self.errors: dict[str, int] = defaultdict(int)

    def success(self, role: str, seconds: float, reply: AIMessage) -> None:
        stats, usage = self.roles[role], reply.usage_metadata or {}
        stats.calls += 1
        stats.prompt_tokens += usage.get("input_tokens", 0)
        stats.completion_tokens += usage.get("output_tokens", 0)
        stats.latencies.append(seconds)

    def retry(self, role: str, reason: str) -> None:
        self.roles[role].retries += 1
        self.errors[reason] += 1

    def failure(self, role: str) -> None:
        self.roles[role].failures += 1

    def add(self, other: Accounting) -> None:
        """Count another process's calls in this one (graph.run --workers merges its workers')."""
        for role, theirs in other.roles.items():
            mine = self.roles[role]
            mine.calls += theirs.calls
            mine.prompt_tokens += theirs.prompt_tokens
            mine.completion_tokens += theirs.completion_tokens
            mine.retries += theirs.retries
            mine.failures += theirs.failures
            mine.latencies.extend(theirs.latencies)
        for reason, n in other.errors.items():
            self.errors[reason] += n

    @staticmethod
    def _summary(stats: list[RoleStats]) -> dict:
        latencies = sorted(x for s in stats for x in s.latencies)

        def pct(q: float) -> float | None:
            return (
                round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 3)
                if latencies
                else None
            )

        return {
            "calls": sum(s.calls for s in stats),
            "prompt_tokens": sum(s.prompt_tokens for s in stats),
            "completion_tokens": sum(s.completion_tokens for s in stats),
            "retries": sum(s.retries for s in stats),
            "failures": sum(s.failures for s in stats),
            "latency_s": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
        }

    def summary(self) -> dict:
        groups: dict[str, list[RoleStats]] = defaultdict(list)
        for role, stats in self.roles.items():
            groups[role.split(":")[0]].append(stats)
        return {
            "by_role": {g: self._summary(s) for g, s in sorted(groups.items())},
            "by_name": {r: self._summary([s]) for r, s in sorted(self.roles.items())},
            "errors": dict(self.errors),
        }


class Limiter:
    """A cap on requests in flight; with `adaptive`, an AIMD cap between 1 and `maximum`."""

    def __init__(self, maximum: int, adaptive: bool = False, window: int = 8) -> None:
        self.maximum, self.adaptive, self.window = maximum, adaptive, window
        self.limit = max(1, maximum // 4) if adaptive else maximum
        self.inflight = 0
        # callers queued for a slot: counted in `load`, so queues stay even across replicas
        self.waiting = 0
        self.healthy = 0
        self.recent: deque[float] = deque(maxlen=64)
        self.cond = asyncio.Condition()

    @property
    def load(self) -> float:
        return (self.inflight + self.waiting) / self.limit

    async def __aenter__(self) -> "Limiter":
        self.waiting += 1
        try:
            async with self.cond:
                await self.cond.wait_for(lambda: self.inflight < self.limit)
                self.inflight += 1
        finally:
            self.waiting -= 1
        return self

    async def __aexit__(self, *exc) -> None:
        async with self.cond:
            self.inflight -= 1
            self.cond.notify_all()

    async def observe(self, seconds: float | None) -> None:
        """Feed the AIMD rule: a latency (success) or None (error)."""
        if not self.adaptive:
            return
        async with self.cond:
            slow = (
                seconds is not None
                and len(self.recent) >= 8
                and seconds > 2 * statistics.median(self.recent)
            )
            if seconds is not None:
                self.recent.append(seconds)
            if seconds is None or slow:
                self.limit, self.healthy = max(1, self.limit // 2), 0
            else:
                self.healthy += 1
                if self.healthy >= self.window and self.limit < self.maximum:
                    self.limit, self.healthy = self.limit + 1, 0
            self.cond.notify_all()


@dataclass(frozen=True)
class Sampling:
    """Repetition controls, sent only to a server known to take them (by the kind the grammar probe
    found: agents.llm.grammar_style); a setting at its neutral value is not sent at all."""

    repeat_penalty: float = 1.0  # llama.cpp repeat_penalty, vLLM repetition_penalty
    dry_multiplier: float = 0.0  # llama.cpp's DRY (vLLM has none)
    min_p: float = 0.0  # both

    def fields(self, style: str) -> dict:
        if style == LLAMA_CPP:
            chosen = {
                "repeat_penalty": (self.repeat_penalty, 1.0),
                "dry_multiplier": (self.dry_multiplier, 0.0),
                "min_p": (self.min_p, 0.0),
            }
        elif style == VLLM:
            chosen = {"repetition_penalty": (self.repeat_penalty, 1.0), "min_p": (self.min_p, 0.0)}
        else:
            return {}
        return {name: value for name, (value, neutral) in chosen.items() if value != neutral}


@dataclass
class Endpoint:
    base_url: str
    limiter: Limiter
    grammar_style: str = ""  # how this server takes a grammar (styles above): "" = none


class Router:
    """Chat calls for one role (conductor or experts) over one or more endpoints serving `model`.
    Each endpoint's `grammar_style` is its server's kind (agents.llm.grammar_style): it decides the
    fields a grammar and the repetition controls go in; `grammars=False` (--constrain off) never
    sends a grammar, the controls still go."""

    def __init__(
        self,
        base_urls: list[str],
        model: str,
        temperature: float,
        max_tokens: int,
        *,
        max_inflight: int = 32,
        adaptive: bool = False,
        timeout: float = 600.0,
        retries: int = 5,
        backoff: float = 0.5,
        accounting: Accounting | None = None,
        grammar_style: str = "",
        sampling: Sampling = Sampling(),
        grammars: bool = True,
    ) -> None:
        self.model, self.temperature, self.max_tokens = model, temperature, max_tokens
        self.sampling, self.grammars = sampling, grammars
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.endpoints = [
            Endpoint(url, Limiter(max_inflight, adaptive), grammar_style) for url in base_urls
        ]
        self.accounting = accounting or Accounting()
        self.api_key = api_key()  # read once, a SecretStr: never in a repr or a log
        self._clients: dict[str, ChatOpenAI] = {}

    def client(self, endpoint: Endpoint) -> ChatOpenAI:
        if endpoint.base_url not in self._clients:
            self._clients[endpoint.base_url] = ChatOpenAI(
                base_url=endpoint.base_url,
                model=self.model,
                api_key=self.api_key,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                extra_body=self.extra_body(endpoint),
                # The SDK's own Timeout type (httpx's, or httpx2's from openai 3 on) is unhashable,
                # so this client gets its own connection pool, bound to the running event loop,
                # instead of langchain's process-wide cached one.
                timeout=openai.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                max_retries=0,  # retries are ours: counted, jittered, and they may change endpoint
            )
        return self._clients[endpoint.base_url]

    def extra_body(self, endpoint: Endpoint | None = None, grammar: str = "") -> dict:
        """Fields beyond the OpenAI API. A per-call extra_body replaces the client's, so calls that
        add a grammar send the whole dict again."""
        fields = {"max_tokens": self.max_tokens}  # llama.cpp ignores max_completion_tokens
        if endpoint is not None:
            fields.update(self.sampling.fields(endpoint.grammar_style))
            fields.update(request_fields(endpoint.grammar_style, grammar))
        return fields

    def pick(self) -> Endpoint:
        return min(self.endpoints, key=lambda e: (e.limiter.load, random.random()))

    async def call(self, messages: list, role: str, grammar: str = "") -> AIMessage:
        """One chat completion, constrained by `grammar` (GBNF) where the endpoint takes one."""
        last = "no attempt"
        for attempt in range(self.retries + 1):
            endpoint = self.pick()
            async with endpoint.limiter:
                start = time.perf_counter()
                try:
                    extra = (
                        self.extra_body(endpoint, grammar)
                        if grammar and self.grammars and endpoint.grammar_style
                        else None
                    )
                    reply = await self.client(endpoint).ainvoke(
                        messages, **({"extra_body": extra} if extra else {})
                    )
                    if not reply.text.strip():
                        raise EmptyReply()
                except (*RETRYABLE, EmptyReply) as e:
                    # langchain-openai re-raises as its own subclasses: name the openai class
                    last = next(
                        (c.__name__ for c in (*RETRYABLE, EmptyReply) if isinstance(e, c)),
                        type(e).__name__,
                    )
                    error = True
                else:
                    error = False
                seconds = time.perf_counter() - start
            await endpoint.limiter.observe(None if error else seconds)
            if not error:
                self.accounting.success(role, seconds, reply)
                return reply
            if attempt < self.retries:
                self.accounting.retry(role, last)
                await asyncio.sleep(random.uniform(0, min(30.0, self.backoff * 2**attempt)))
        self.accounting.failure(role)
        raise LLMFailure(f"{role}: {last} after {self.retries} retries")
