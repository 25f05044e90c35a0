"""Aggregate tokens/s of the embedded server at several concurrencies (128-token completions).

    .venv/bin/python -m benchmarks.embedded_throughput [--concurrency 1 4 8] [--requests 8]

Prints server start time and, per concurrency, completion tokens/s summed over all requests.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from langchain_core.messages import HumanMessage

from agents.embedded import MODEL_NAME, EmbeddedServer
from agents.calls import Router

TOPICS = ["bond ladders", "deposit betas", "credit default swaps", "dividend policy", "inflation swaps",
          "venture debt", "FX hedging", "loan covenants"]


async def measure(model, concurrency: int, requests: int) -> float:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> int:
        async with semaphore:
            reply = await model.call([HumanMessage(f"Write a detailed paragraph about {TOPICS[i % len(TOPICS)]} (request {i}).")], "bench")
            return reply.usage_metadata["output_tokens"]

    start = time.perf_counter()
    tokens = await asyncio.gather(*(one(i) for i in range(requests)))
    return sum(tokens) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests", type=int, default=8)
    args = parser.parse_args()
    t0 = time.perf_counter()
    with EmbeddedServer() as server:
        print(f"server start: {time.perf_counter() - t0:.1f}s ({server.threads} threads)")
        # temperature 0 and a fixed 128-token budget keep completions comparable across runs
        model = Router([server.base_url], MODEL_NAME, 0.0, 128)
        asyncio.run(sweep(model, args.concurrency, args.requests))


async def sweep(model, concurrencies: list[int], requests: int) -> None:
    """One event loop for every measurement: the client's async connection pool is bound to it."""
    await measure(model, 1, 1)  # warm-up
    for c in concurrencies:
        print(f"concurrency {c}: {await measure(model, c, max(requests, c)):.1f} tok/s", flush=True)


if __name__ == "__main__":
    main()
