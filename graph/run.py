"""`python -m graph.run --domain finance`: write a MetaSynth corpus, many documents in flight.

Bad input (flags, prompt files, run directory, servers) ends in one line on stderr and exit code 2,
before anything on disk is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from contextlib import ExitStack
from dataclasses import fields, replace
from pathlib import Path

from agents import grammar
from agents.prompts import GRAMMARS
from agents.tokens import load_tokenizer
from core.cli import Parser, add_fields, cli_fields, field_values, positive, run_command
from core.errors import UserError
from core.rundir import RunDir
from graph.configuration import BUDGET, LOOP, METHODS, SERVERS, Context
from graph.seeds import read_seed_docs
from graph.session import (
    Job,
    embedded_model,
    exit_status,
    open_run,
    summarize,
    terminate,
    write_manifest,
)
from graph.session import prepare_run_dir as prepare_run_dir_for


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The run's own flags (the Job: budget, concurrency, prices, resume), then one flag per Context
    field: its default and description are the ones Studio shows (graph/configuration.py)."""
    p = Parser(prog="python -m graph.run", description=__doc__.splitlines()[0])
    p.add_argument(
        "--method",
        choices=METHODS,
        default="metasynth",
        help="metasynth (conductor and experts, default) or a template baseline to compare against",
    )
    groups = {name: p.add_argument_group(name) for name in (BUDGET, SERVERS, LOOP)}
    budget, server = groups[BUDGET], groups[SERVERS]
    budget.add_argument(
        "--docs",
        type=positive(int),
        help="documents the corpus should hold (default 5 without --tokens)",
    )
    budget.add_argument(
        "--tokens",
        type=positive(int),
        help="corpus tokens the corpus should hold (counted with --tokenizer)",
    )
    budget.add_argument(
        "--max-attempts", type=positive(int), help="documents tried at most (default 3 x --docs)"
    )
    budget.add_argument(
        "--max-failures",
        type=int,
        default=10,
        help="failed documents tolerated before the run stops (default 10)",
    )
    server.add_argument(
        "--concurrency",
        type=positive(int),
        default=4,
        help="documents in flight (default 4; the embedded server gets one slot per document)",
    )
    server.add_argument(
        "--workers",
        type=positive(int),
        help="write documents in N Ray worker processes (Ray starts on this machine unless "
        "--ray-address); default one process, no Ray",
    )
    server.add_argument(
        "--ray-address",
        default="",
        help="an existing Ray cluster for --workers (ray start --head prints it), e.g. HEAD:6379",
    )
    server.add_argument(
        "--price-prompt",
        type=float,
        default=0.0,
        help="USD per 1M prompt tokens (cost in the manifest)",
    )
    server.add_argument(
        "--price-completion", type=float, default=0.0, help="USD per 1M completion tokens"
    )
    add_fields(p, Context, cli_fields(Context), groups)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue an existing run directory")
    group.add_argument(
        "--overwrite", action="store_true", help="delete an existing run's files first"
    )
    p.add_argument("--quiet", action="store_true", help="log lines only, no live progress display")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> tuple[Context, Job]:
    """The run's two settings objects from its flags, checked (`check`)."""
    ctx = Context(**field_values(Context, args, cli_fields(Context)))
    job = Job(**{f.name: getattr(args, f.name) for f in fields(Job) if hasattr(args, f.name)})
    return check(ctx, job)


def check(ctx: Context, job: Job) -> tuple[Context, Job]:
    """Refuse settings that cannot run, in one line each (UserError), before anything starts; fill
    in what they leave to defaults (5 documents, runs/<domain>, the embedded model's name, the
    protocol 'auto' resolves to, so the manifest says which ran). The command line and the Python
    API both come through here."""
    if job.docs is None and job.tokens is None:
        job = replace(job, docs=5)
    if job.method not in METHODS:
        raise UserError(f"method {job.method!r} is not one of {', '.join(METHODS)}")
    if ctx.threshold > 1:
        raise UserError(f"--threshold is a cosine similarity in (0, 1], got {ctx.threshold}")
    negatives = (ctx.recall_k, ctx.max_revisions, ctx.max_retries, job.max_failures, ctx.reviews)
    if min(negatives) < 0:
        raise UserError(
            "--recall-k, --max-revisions, --max-retries, --max-failures and --reviews cannot be "
            "negative"
        )
    if job.ray_address and not job.workers:
        raise UserError("--ray-address needs --workers N (the workers to start on that cluster)")
    if job.ray_address and not ctx.base_url:
        raise UserError(
            "--ray-address needs --base-url: the embedded server listens on this machine's "
            "loopback, out of other nodes' reach"
        )
    if job.workers:
        try:
            import ray  # noqa: F401 - only whether it is there
        except ImportError:
            raise UserError("--workers needs Ray: pip install -e '.[ray]'") from None
    if job.workers and job.concurrency < job.workers:
        raise UserError(
            f"--concurrency {job.concurrency} leaves workers idle: give at least --workers "
            f"{job.workers} documents in flight"
        )
    if min(job.price_prompt, job.price_completion) < 0:
        raise UserError("prices cannot be negative")
    if job.method == "template-icl" and not ctx.seed_docs:
        raise UserError(
            "--method template-icl needs --seed-docs FILE.jsonl (the real documents it shows as "
            "examples)"
        )
    if job.method in ("template-prior", "template-icl") and ctx.recall_k == 0:
        raise UserError(
            f"--method {job.method} shows --recall-k documents in its prompt; --recall-k 0 would "
            "make it plain template"
        )
    if job.method in ("template", "template-prior") and ctx.seed_docs:
        raise UserError(
            f"--method {job.method} takes no --seed-docs (its prompt has keywords only)"
        )
    if job.resume and job.overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    if ctx.expert_model and not (ctx.base_url or ctx.expert_base_url):
        raise UserError(
            "--expert-model needs --base-url or --expert-base-url (the embedded server has one "
            "model)"
        )
    if ctx.expert_base_url and not ctx.base_url:
        raise UserError(
            "--expert-base-url needs --base-url (the embedded server serves both roles)"
        )
    ctx = replace(
        ctx,
        model=embedded_model(ctx.base_url, ctx.model),
        out_dir=str(Path(ctx.out_dir or f"runs/{ctx.domain}")),
    )
    return ctx, job


def prepare_run_dir(run: RunDir, resume: bool, overwrite: bool, method: str = "metasynth") -> None:
    """session.prepare_run_dir, and a run resumes only with the method that wrote it."""
    records = prepare_run_dir_for(run, resume, overwrite)
    if resume and run.records.exists():
        try:  # the manifest's method; a run killed before writing one: its first record's
            written_by = json.loads(run.manifest.read_text()).get("method", "metasynth")
        except (OSError, ValueError):
            written_by = records[0].get("method", "metasynth") if records else "metasynth"
        if written_by != method:
            raise UserError(
                f"{run.root} was written with --method {written_by}; resume it with the same method"
            )


def start_workers(stack: ExitStack, ctx: Context, job: Job, console):
    """--workers: the memory owner and the workers on Ray (graph/workers.py), until `stack`
    closes; the driver's embedded server, if it runs one, serves them all."""
    from graph.workers import Workers

    url = ""
    if not ctx.base_url:
        from agents import embedded

        url = embedded.shared_server(ctx.model).base_url
    console.log(f"starting {job.workers} Ray workers ({job.ray_address or 'on this machine'})")
    workers = Workers(ctx, job.method, job.workers, job.ray_address, url)
    stack.callback(workers.close)
    return workers


def generate(ctx: Context, job: Job) -> int:
    """Write the corpus `ctx` and `job` describe (checked by `check`); the exit status."""
    from rich.console import Console

    from graph import resources as res
    from graph.driver import Budget, Tally, drive

    console = Console(stderr=True)
    # 'auto' resolved once, so the manifest says which ran
    ctx = replace(ctx, protocol=res.protocol(ctx))
    prompts = res.prompts(ctx)  # validates every prompt file and the domain before anything else
    if ctx.seed_docs:
        read_seed_docs(ctx.seed_docs)
    if ctx.tokenizer != "embedded":
        load_tokenizer(ctx.tokenizer)  # a tokenizer that cannot load offline is bad input
    out = Path(ctx.out_dir)
    rundir = RunDir(out)
    prepare_run_dir(rundir, job.resume, job.overwrite, job.method)

    budget = Budget(
        docs=job.docs,
        tokens=job.tokens,
        max_failures=job.max_failures,
        max_attempts=job.max_attempts or (3 * job.docs if job.docs else None),
    )
    tally, interrupted = Tally(), False
    if threading.current_thread() is threading.main_thread():  # not in graph.api's thread
        signal.signal(signal.SIGTERM, terminate)
    with ExitStack() as stack:
        grammars = grammar.samples(prompts.texts, GRAMMARS) if job.method == "metasynth" else {}
        if grammars:  # the conductor's consult-only turn (graph/nodes.py) must parse too
            consult = grammar.starting_at(grammars["conductor.gbnf"], "calls")
            grammars["conductor.gbnf (consult only)"] = consult
        open_run(stack, ctx, job, rundir, console, grammars)
        workers = start_workers(stack, ctx, job, console) if job.workers else None
        memory = workers.memory if workers else res.memory(ctx)
        target = f"{job.docs} documents" if job.docs else f"{job.tokens:,} tokens"
        console.log(
            f"{prompts.domain.name} by {job.method}: {len(memory)} documents in {out}, target "
            f"{target}, {job.concurrency} in flight"
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
                    method=job.method,
                    memory=memory,
                    write=workers.write if workers else None,
                )
            )
        except KeyboardInterrupt:
            interrupted = True
            console.log("interrupted: committed documents are safe; continue with --resume")
        finally:
            accounting, spread = workers.finish() if workers else (res.accounting(ctx), None)
            stats = summarize(tally, accounting.summary(), memory, job)
            stats["sampling"] = res.sampling_sent(ctx)
            if spread:
                stats["workers"] = spread
            if job.method == "metasynth":
                stats["protocol"] = ctx.protocol
                stats["grammar"] = res.grammar_styles(ctx)
            memory.save_index()
            write_manifest(out, ctx, prompts, stats, interrupted, job.concurrency, job.method)
    run, gates = stats["this_run"], stats["gates"]
    print(
        f"gates: {gates['refusals']} of {gates['drafts_checked']} drafts sent back "
        f"{gates['refused_by_reason']}, quality rules {gates['refused_by_rule']}",
        file=sys.stderr,
    )
    if job.method == "metasynth":
        written = stats["written_by"]
        print(
            f"{out}: {stats['documents_in_corpus']} documents ({written.get('experts', 0)} written "
            f"through the experts, {written.get('conductor', 0)} by the conductor alone, "
            f"{run['fallback']} by the fallback; {run['rejected']} rejected, {run['failed']} "
            f"failed) in {stats['wall_seconds']}s; {ctx.protocol} protocol, success "
            f"{stats['protocol_success_rate']}; revisions {stats['revisions']}",
            file=sys.stderr,
        )
    else:
        print(
            f"{out}: {stats['documents_in_corpus']} documents by {job.method} ({run['rejected']} "
            f"unusable replies, {run['failed']} failed) in {stats['wall_seconds']}s",
            file=sys.stderr,
        )
    met = bool(
        (job.docs and stats["documents_in_corpus"] >= job.docs)
        or (job.tokens and stats["corpus_tokens"] >= job.tokens)
    )
    return exit_status(tally, interrupted, job.max_failures, rundir.failures, "documents", met)


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: generate(*settings_from(parse_args(argv))))


if __name__ == "__main__":
    sys.exit(main())
