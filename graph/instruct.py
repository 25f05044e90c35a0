"""`python -m graph.instruct --corpus runs/finance --out runs/finance-instruct`: MetaSynth-Instruct.

For each source document the conductor plans an instruction, a fresh-eyes expert derives it, it is
evolved over --evolve-rounds checked steps, answered from the document, and gated for novelty
against the instructions already made (graph/instruct_graph.py). Same run directory conventions as
`graph.run`: append + fsync, --resume after any stop, a manifest, progress; bad input ends in one
line on stderr and exit code 2, before anything on disk is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import Counter
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from agents import grammar
from agents.instruction import GRAMMARS
from core.cli import Parser, add_fields, field_values, positive, run_command
from core.errors import UserError
from core.rundir import INSTRUCTIONS, RunDir
from graph.configuration import LOOP, SERVERS
from graph.instruct_nodes import METHOD, read_sources, source_path
from graph.instruct_state import InstructContext
from graph.session import (
    Job,
    embedded_model,
    exit_status,
    open_run,
    prepare_run_dir,
    summarize,
    terminate,
    write_manifest,
)

# The InstructContext fields the command line sets (their defaults and help come from the
# dataclass); the rest of the document graph's settings do not apply to instructions.
FLAGS = (
    "base_url",
    "model",
    "expert_base_url",
    "expert_model",
    "max_inflight",
    "request_timeout",
    "max_retries",
    "evolve_rounds",
    "paraphrase_threshold",
    "drift_threshold",
    "threshold",
    "index",
    "choices",
    "recall_k",
    "max_revisions",
    "max_protocol_errors",
    "constrain",
    "max_tokens",
    "expert_max_tokens",
    "temperature",
    "expert_temperature",
    "document_chars",
    "prompts_dir",
    "seed",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m graph.instruct", description=__doc__.splitlines()[0])
    p.add_argument(
        "--corpus",
        required=True,
        help="source: a run directory (its corpus.jsonl) or a JSONL file with 'text'",
    )
    p.add_argument("--out", help="run directory (default: <corpus>-instruct)")
    p.add_argument(
        "--domain",
        help="prompts/domains/<domain>.yaml (default: the source run's domain, else finance)",
    )
    budget = p.add_argument_group("budget")
    budget.add_argument(
        "--instructions",
        "--docs",
        dest="instructions",
        type=positive(int),
        help="instructions the set should hold (default: one per source document)",
    )
    budget.add_argument(
        "--max-attempts",
        type=positive(int),
        help="instructions tried at most (default 3 x --instructions)",
    )
    budget.add_argument(
        "--max-failures", type=int, default=10, help="failed instructions tolerated (default 10)"
    )
    groups = {
        SERVERS: p.add_argument_group("servers (as graph.run)"),
        LOOP: p.add_argument_group(LOOP),
    }
    groups[SERVERS].add_argument(
        "--concurrency", type=positive(int), default=4, help="instructions in flight (default 4)"
    )
    groups[SERVERS].add_argument(
        "--price-prompt", type=float, default=0.0, help="USD per 1M prompt tokens"
    )
    groups[SERVERS].add_argument(
        "--price-completion", type=float, default=0.0, help="USD per 1M completion tokens"
    )
    add_fields(p, InstructContext, FLAGS, groups)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue an existing instruction run")
    group.add_argument(
        "--overwrite", action="store_true", help="delete an existing instruction run's files first"
    )
    p.add_argument("--quiet", action="store_true", help="log lines only, no live progress display")
    args = p.parse_args(argv)
    if (
        not 0 < args.threshold <= 1
        or not 0 < args.paraphrase_threshold <= 1
        or not 0 <= args.drift_threshold < args.paraphrase_threshold
    ):
        raise UserError(
            "--threshold and --paraphrase-threshold are cosine similarities in (0, 1]; "
            "--drift-threshold in [0, --paraphrase-threshold)"
        )
    if (
        min(
            args.evolve_rounds,
            args.recall_k,
            args.max_revisions,
            args.max_retries,
            args.max_failures,
        )
        < 0
    ):
        raise UserError(
            "--evolve-rounds, --recall-k, --max-revisions, --max-retries and --max-failures cannot "
            "be negative"
        )
    return args


def settings_from(args: argparse.Namespace) -> tuple[InstructContext, Job, list[dict]]:
    """The run's settings and its source documents, from its flags; an unreadable corpus is bad
    input, reported before anything starts."""
    sources = read_sources(args.corpus)
    out = args.out or f"{str(args.corpus).rstrip('/').removesuffix('.jsonl')}-instruct"
    if (
        Path(out).resolve() == source_path(args.corpus).resolve().parent
        and Path(args.corpus).is_dir()
    ):
        raise UserError(
            "--out must not be the source run directory (the instruction memory is its own)"
        )
    if (args.expert_model or args.expert_base_url) and not args.base_url:
        raise UserError(
            "--expert-model and --expert-base-url need --base-url (the embedded server serves both "
            "roles)"
        )
    ctx = InstructContext(
        **field_values(InstructContext, args, FLAGS),
        domain=args.domain or _source_domain(args.corpus, sources),
        out_dir=str(Path(out)),
        corpus=str(args.corpus),
    )
    ctx = replace(ctx, model=embedded_model(ctx.base_url, ctx.model))
    job = Job(
        method=METHOD,
        docs=args.instructions or len(sources),
        max_attempts=args.max_attempts,
        max_failures=args.max_failures,
        concurrency=args.concurrency,
        price_prompt=args.price_prompt,
        price_completion=args.price_completion,
        resume=args.resume,
        overwrite=args.overwrite,
        quiet=args.quiet,
    )
    return ctx, job, sources


def _source_domain(corpus: str, records: list[dict]) -> str:
    """The source run's domain: its manifest's, else its records' (a domain name is also its file
    name)."""
    try:
        return json.loads(RunDir(source_path(corpus).parent).manifest.read_text())["config"][
            "domain"
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return str(records[0].get("domain") or "finance")


def evolution_stats(results: list[dict]) -> dict:
    """Evolution steps accepted and rejected (and why) over this run's instructions, and the gate's
    refusals."""
    steps = [e for r in results for e in (r.get("evolution") or [])[1:]]
    why = Counter(e["check"] for e in steps if not e["accepted"])
    kept = [r for r in results if r.get("ended") in ("final", "fallback")]
    return {
        "steps_accepted": sum(e["accepted"] for e in steps),
        "steps_rejected": sum(not e["accepted"] for e in steps),
        "steps_rejected_by_reason": dict(why),
        "gate_rejections": sum(r.get("revisions", 0) for r in results)
        + sum(r.get("reason") == "too similar" for r in results),
        "mean_complexity_score": round(sum(r["complexity"]["score"] for r in kept) / len(kept), 2)
        if kept
        else None,
        "mean_accepted_steps": round(sum(r["complexity"]["steps"] for r in kept) / len(kept), 2)
        if kept
        else None,
    }


def generate(ctx: InstructContext, job: Job, sources: list[dict]) -> int:
    from rich.console import Console

    from graph import instruct_nodes as nodes
    from graph import resources as res
    from graph.driver import Budget, Tally, drive
    from graph.instruct_graph import graph

    console = Console(stderr=True)
    # validates every prompt file, grammar and the domain before anything else
    prompts = nodes.prompts(ctx)
    out = Path(ctx.out_dir)
    rundir = RunDir(out, INSTRUCTIONS)
    prepare_run_dir(rundir, job.resume, job.overwrite, holds="instructions")
    budget = Budget(
        docs=job.docs,
        max_failures=job.max_failures,
        max_attempts=job.max_attempts or 3 * job.docs,
    )
    tally, interrupted = Tally(), False
    signal.signal(signal.SIGTERM, terminate)
    with ExitStack() as stack:
        open_run(stack, ctx, job, rundir, console, grammar.samples(prompts.texts, GRAMMARS))
        memory = nodes.memory(ctx)
        console.log(
            f"{prompts.domain.name} instructions from {len(sources)} documents "
            f"({ctx.corpus}): {len(memory)} in {out}, target {job.docs}, "
            f"{ctx.evolve_rounds} evolution rounds, {job.concurrency} in flight"
        )
        try:
            asyncio.run(
                drive(
                    ctx,
                    budget,
                    job.concurrency,
                    tally,
                    console,
                    live=console.is_terminal and not job.quiet,
                    method=METHOD,
                    graph=graph,
                    memory=memory,
                )
            )
        except KeyboardInterrupt:
            interrupted = True
            console.log("interrupted: committed instructions are safe; continue with --resume")
        finally:
            stats = summarize(tally, res.accounting(ctx).summary(), memory, job)
            stats = {
                "instructions_in_set": stats.pop("documents_in_corpus"),
                "source": str(ctx.corpus),
                "source_documents": len(sources),
                **evolution_stats(tally.results),
                **stats,
                "grammar": res.grammar_styles(ctx),
            }
            memory.save_index()
            write_manifest(out, ctx, prompts, stats, interrupted, job.concurrency, METHOD)
    run = stats["this_run"]
    print(
        f"{out}: {stats['instructions_in_set']} instructions ({run['final']} planned by the "
        f"conductor, {run['fallback']} by the fallback, {run['rejected']} rejected, "
        f"{run['failed']} failed) in {stats['wall_seconds']}s; evolution steps "
        f"{stats['steps_accepted']} accepted, {stats['steps_rejected']} rejected "
        f"{stats['steps_rejected_by_reason']}; gate rejections {stats['gate_rejections']}",
        file=sys.stderr,
    )
    return exit_status(
        tally,
        interrupted,
        job.max_failures,
        rundir.failures,
        "instructions",
        len(memory) >= job.docs,
    )


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: generate(*settings_from(parse_args(argv))))


if __name__ == "__main__":
    sys.exit(main())
