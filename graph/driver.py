"""Runs many documents through the graph at once: budgets, failures, progress.

Documents are independent graph runs (`graph.ainvoke`), `concurrency` of them in flight. The novelty
gate's check-and-commit is atomic in Memory.admit, so concurrent documents never both pass against a
corpus that lacks the other. A document that raises (an LLM call that failed all its retries, a
server that answers 4xx) is written to failures.jsonl and the run goes on.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from core.jsonl import append_line, count_lines
from graph.baselines.graph import template, template_icl, template_prior
from graph.documents.graph import graph as metasynth


def graph_for(method: str):
    """The compiled graph that writes documents by `method`."""
    graphs = {
        "metasynth": metasynth,
        "template": template,
        "template-prior": template_prior,
        "template-icl": template_icl,
    }
    return graphs[method]


def failure_record(index: int, e: BaseException) -> dict:
    """The line failures.jsonl gets for a document that raised."""
    return {
        "index": index,
        "ended": "failed",
        "error": f"{type(e).__name__}: {e}"[:500],
        "where": traceback.format_exception(e)[-2].strip()[:300] if e.__traceback__ else "",
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


async def write_document(graph, run, index: int) -> dict:
    """Item `index` through the graph, with the run as its runtime context: its record, or its
    failure record if it raised."""
    try:
        state = await graph.ainvoke({"index": index}, context=run)
    except Exception as e:  # noqa: BLE001 - any document-level failure is recorded, the run goes on
        return failure_record(index, e)
    return {**(state.get("result") or {}), "ended": state.get("ended", "failed")}


@dataclass
class Budget:
    docs: int | None = None  # documents the corpus should hold
    tokens: int | None = None  # corpus tokens it should hold
    max_attempts: int | None = None  # documents tried in this run, at most
    max_failures: int = 10  # documents failed in this run before it stops


@dataclass
class Tally:
    """What this run did, for the progress line and the manifest."""

    results: list[dict] = field(default_factory=list)
    failures: int = 0
    started: float = field(default_factory=time.perf_counter)
    corpus_tokens_before: int = 0

    def count(self, ended: str) -> int:
        return sum(r.get("ended") == ended for r in self.results)

    @property
    def corpus_tokens(self) -> int:
        return sum(
            r.get("tokens", 0) for r in self.results if r.get("ended") in ("final", "fallback")
        )


def _doc_line(record: dict, seconds: float, size: int, target: int | None) -> str:
    sim = record.get("nearest_similarity")
    label = record.get("id") or record.get("reason") or record.get("error", "-")
    return (
        f"[{size}/{target or '-'}] {label} {record['ended']:<8} rounds={record.get('rounds', 0)} "
        f"revisions={record.get('revisions', 0)} experts={record.get('experts', [])} "
        f"sim={'-' if sim is None else f'{sim:.3f}'} {seconds:.1f}s  "
        f"{str(record.get('summary', ''))[:70]}"
    )


class Display:
    """A live progress bar on a terminal; plain per-document log lines otherwise (or with
    --quiet)."""

    def __init__(
        self, console: Console, budget: Budget, live: bool, size: int, tokens: int
    ) -> None:
        self.console, self.budget = console, budget
        self.progress = None
        if live:
            by_tokens = budget.tokens is not None and budget.docs is None
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self.task = self.progress.add_task(
                "tokens" if by_tokens else "documents",
                total=budget.tokens if by_tokens else budget.docs,
                completed=tokens if by_tokens else size,
                stats="",
            )
            self.by_tokens = by_tokens

    def __enter__(self):
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()

    def update(self, tally: Tally, size: int, corpus_tokens: int, line: str) -> None:
        if not self.progress:
            self.console.log(line)
            return
        elapsed = time.perf_counter() - tally.started
        tried = len(tally.results)
        stats = (
            f"{corpus_tokens:,} tok  {tally.corpus_tokens / max(elapsed, 1e-9):.0f} tok/s  "
            f"rejected {tally.count('rejected') / max(tried, 1):.0%}  failures {tally.failures}"
        )
        self.progress.update(
            self.task, completed=corpus_tokens if self.by_tokens else size, stats=stats
        )


async def drive(
    graph,
    run,
    budget: Budget,
    concurrency: int,
    tally: Tally,
    console: Console,
    live: bool,
    write: Callable[[int], Awaitable[dict]] | None = None,
) -> None:
    """Generate until the budget is met (or attempts/failures run out). Mutates `tally` as it goes,
    so an interrupted run still reports what it did. Each item goes through `graph` with `run` as
    its context, unless `write` writes item `index` elsewhere (graph/workers.py: `run.memory` is
    then the one the workers share)."""
    if concurrency > 1:
        # Embedding is the run's main CPU cost (measured 49 ms one thread vs 63 ms CPU on two for a
        # 180-token document): one thread is cheaper per document and leaves a core to the event
        # loop.
        torch.set_num_threads(1)
    memory = run.memory
    tally.started = time.perf_counter()  # throughput counts generation, not start-up
    # Counted here from the records that come back, not asked of the memory each time: it may be
    # another process's (graph/workers.py). Every commit is a record that ended final or fallback.
    size = len(memory)
    start_index = size + count_lines(memory.rejects_path) + count_lines(memory.run.failures)
    tally.corpus_tokens_before = memory.tokens()

    def corpus_tokens() -> int:
        return tally.corpus_tokens_before + tally.corpus_tokens

    def met() -> bool:
        return bool(
            (budget.docs and size >= budget.docs)
            or (budget.tokens and corpus_tokens() >= budget.tokens)
        )

    async def one(index: int) -> tuple[dict, float]:
        t0 = time.perf_counter()
        if write is None:
            record = await write_document(graph, run, index)
        else:
            record = await write(index)
        if record["ended"] == "failed":
            await asyncio.to_thread(append_line, memory.run.failures, record)
        return record, time.perf_counter() - t0

    in_flight: set[asyncio.Task] = set()
    attempt = 0
    with Display(console, budget, live, size, corpus_tokens()) as display:
        try:
            while True:
                while (
                    not met()
                    and len(in_flight) < concurrency
                    and tally.failures <= budget.max_failures
                    and (budget.max_attempts is None or attempt < budget.max_attempts)
                    and (budget.docs is None or size + len(in_flight) < budget.docs)
                ):
                    in_flight.add(asyncio.create_task(one(start_index + attempt)))
                    attempt += 1
                if not in_flight:
                    break
                finished, in_flight = await asyncio.wait(
                    in_flight, return_when=asyncio.FIRST_COMPLETED
                )
                for task in finished:
                    record, seconds = task.result()
                    tally.results.append(record)
                    tally.failures += record["ended"] == "failed"
                    size += record["ended"] in ("final", "fallback")
                    line = _doc_line(record, seconds, size, budget.docs)
                    display.update(tally, size, corpus_tokens(), line)
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
