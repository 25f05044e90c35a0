"""`python -m graph.instruct --corpus runs/finance --out runs/finance-instruct`: MetaSynth-Instruct.

For each source document the conductor plans an instruction, a fresh-eyes expert derives it, it is
evolved over --evolve-rounds checked steps, answered from the document, and gated for novelty
against the instructions already made (graph/instruct/graph.py). Same run directory conventions as
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
from functools import partial
from pathlib import Path

from agents.instruction import GRAMMARS, load_instruct_prompts
from agents.prompts import grammar_samples
from core.cli import Parser, add_fields, field_values, positive, run_command
from core.errors import UserError
from core.rundir import CORPUS, INSTRUCTIONS, RunDir
from graph.instruct.memory import build_instruct_run, read_sources, source_path
from graph.instruct.nodes import METHOD
from graph.manifest import exit_status, summarize, terminate, write_manifest
from graph.servers import embedded_model
from graph.session import Job, open_run, prepare_run_dir
from graph.settings import LOOP, SERVERS, InstructSettings, check_ranges, instruct_out_dir

# The InstructSettings fields the command line sets (their defaults and help come from the
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
    groups = {
        SERVERS: p.add_argument_group("servers (as graph.run)"),
        LOOP: p.add_argument_group(LOOP),
    }
    Job.add_flags(p, budget, groups[SERVERS], "instructions")
    add_fields(p, InstructSettings, FLAGS, groups)
    return p.parse_args(argv)


def check(settings: InstructSettings, max_failures: int) -> None:
    """Settings that cannot run are one line each (UserError), before anything starts."""
    if not (
        0 < settings.threshold <= 1
        and 0 < settings.paraphrase_threshold <= 1
        and 0 <= settings.drift_threshold < settings.paraphrase_threshold
    ):
        raise UserError(
            "--threshold and --paraphrase-threshold are cosine similarities in (0, 1]; "
            "--drift-threshold in [0, --paraphrase-threshold)"
        )
    check_ranges(settings)
    counts = {
        "--evolve-rounds": settings.evolve_rounds,
        "--recall-k": settings.recall_k,
        "--max-revisions": settings.max_revisions,
        "--max-retries": settings.max_retries,
        "--max-failures": max_failures,
    }
    for flag, value in counts.items():
        if value < 0:
            raise UserError(f"{flag} cannot be negative, got {value}")
    if (settings.expert_model or settings.expert_base_url) and not settings.base_url:
        raise UserError(
            "--expert-model and --expert-base-url need --base-url (the embedded server serves both "
            "roles)"
        )


def settings_from(args: argparse.Namespace) -> tuple[InstructSettings, Job, list[dict]]:
    """The run's settings and its source documents, from its flags; an unreadable corpus is bad
    input, reported before anything starts."""
    sources = read_sources(args.corpus)
    out = args.out or instruct_out_dir(args.corpus)
    source = source_path(args.corpus)
    if source.name == CORPUS and Path(out).resolve() == source.resolve().parent:
        raise UserError(
            "--out must not be the source run directory (the instruction memory is its own)"
        )
    settings = InstructSettings(
        **field_values(InstructSettings, args, FLAGS),
        domain=args.domain or _source_domain(args.corpus, sources),
        out_dir=str(Path(out)),
        corpus=str(args.corpus),
    )
    check(settings, args.max_failures)
    settings = replace(settings, model=embedded_model(settings.base_url, settings.model))
    job = Job.from_args(args, method=METHOD, docs=args.instructions or len(sources))
    return settings, job, sources


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


def generate(settings: InstructSettings, job: Job, sources: list[dict]) -> int:
    from rich.console import Console

    from graph.driver import Budget, Tally, drive
    from graph.instruct.graph import graph

    console = Console(stderr=True)
    # every prompt file, grammar and the domain, before anything else
    instruct = load_instruct_prompts(settings.domain, settings.prompts_dir or None)
    out = Path(settings.out_dir)
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
        grammars = grammar_samples(instruct.texts, GRAMMARS)
        build = partial(build_instruct_run, instruct=instruct, sources=sources)
        opened = open_run(settings, job, console, grammars, build, rundir=rundir)
        run = stack.enter_context(opened)
        console.log(
            f"{run.prompts.domain.name} instructions from {len(sources)} documents "
            f"({settings.corpus}): {len(run.memory)} in {out}, target {job.docs}, "
            f"{settings.evolve_rounds} evolution rounds, {job.concurrency} in flight"
        )
        live = console.is_terminal and not job.quiet
        try:
            asyncio.run(drive(graph, run, budget, job.concurrency, tally, console, live))
        except KeyboardInterrupt:
            interrupted = True
            console.log("interrupted: committed instructions are safe; continue with --resume")
        finally:
            stats = summarize(tally, run.accounting.summary(), run.memory, job)
            stats = {
                "instructions_in_set": stats.pop("documents_in_corpus"),
                "source": str(settings.corpus),
                "source_documents": len(sources),
                **evolution_stats(tally.results),
                **stats,
                "grammar": run.endpoints.grammar_styles(),
            }
            run.memory.save_index()
            write_manifest(out, settings, run.instruct, stats, interrupted, job.concurrency, METHOD)
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
        stats["instructions_in_set"] >= job.docs,
    )


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: generate(*settings_from(parse_args(argv))))


if __name__ == "__main__":
    sys.exit(main())
