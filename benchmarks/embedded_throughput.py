"""Aggregate tokens/s of an embedded model's server at several concurrencies, free and \
grammar-constrained.

    .venv/bin/python -m benchmarks.embedded_throughput [--model embedded:NAME] [--concurrency 1 4 8]
        [--requests 8] [--slots 4]

Prints server start time and, per concurrency, completion tokens/s summed over all requests, for the
same brief prompt answered free (up to 128 tokens) and constrained by the structured protocol's
brief grammar (prompts/brief.gbnf). Wall time includes prompt processing, so short constrained
replies show its cost too.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from langchain_core.messages import HumanMessage

from agents.calls import LLAMA_CPP, Router
from agents.embedded import SLOTS, EmbeddedServer, model_name
from agents.prompts import load_prompts, render_grammar

TOPICS = [
    "bond ladders",
    "deposit betas",
    "credit default swaps",
    "dividend policy",
    "inflation swaps",
    "venture debt",
    "FX hedging",
    "loan covenants",
]
PROMPTS = load_prompts("finance")
OPTIONS = {
    "category": PROMPTS.domain.categories[:4],
    "genre": PROMPTS.domain.genres[:4],
    "audience": PROMPTS.domain.audiences[:4],
}


def brief_prompt(topic: str) -> list:
    system = PROMPTS.render(
        "structured/conductor.md", domain="finance", description=PROMPTS.domain.description
    )
    return [
        HumanMessage(
            f"{system}\n\nKeywords: {topic}\n\nCategories: {'; '.join(OPTIONS['category'])}\n"
            f"Genres: {'; '.join(OPTIONS['genre'])}\nAudiences: {'; '.join(OPTIONS['audience'])}"
        )
    ]


async def measure(model: Router, concurrency: int, requests: int, constrained: bool) -> float:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> int:
        topic = TOPICS[i % len(TOPICS)]
        async with semaphore:
            grammar = (
                render_grammar(PROMPTS.texts["brief.gbnf"], {**OPTIONS, "keyword": [topic]})
                if constrained
                else ""
            )
            reply = await model.call(
                brief_prompt(f"{topic} (request {i})" if not constrained else topic),
                "bench",
                grammar,
            )
            return reply.usage_metadata["output_tokens"]

    start = time.perf_counter()
    tokens = await asyncio.gather(*(one(i) for i in range(requests)))
    return sum(tokens) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="embedded", help="embedded:NAME (default: the embedded default)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--slots", type=int, default=SLOTS, help="the server's parallel slots")
    args = parser.parse_args()
    name = model_name(args.model)
    t0 = time.perf_counter()
    with EmbeddedServer(model=name, slots=args.slots) as server:
        print(
            f"{name}: server start {time.perf_counter() - t0:.1f}s ({server.threads} threads, "
            f"{server.slots} slots)"
        )
        # temperature 0 and a fixed 128-token budget keep completions comparable across runs
        model = Router([server.base_url], name, 0.0, 128, grammar_style=LLAMA_CPP)
        asyncio.run(sweep(model, args.concurrency, args.requests))


async def sweep(model: Router, concurrencies: list[int], requests: int) -> None:
    """One event loop for every measurement: the client's async connection pool is bound to it."""
    await measure(model, 1, 1, False)  # warm-up
    for c in concurrencies:
        free = await measure(model, c, max(requests, c), False)
        constrained = await measure(model, c, max(requests, c), True)
        print(
            f"concurrency {c}: {free:.1f} tok/s free, {constrained:.1f} tok/s with the brief "
            "grammar",
            flush=True,
        )


if __name__ == "__main__":
    main()
