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
from dataclasses import replace
from pathlib import Path

from agents.calls import Accounting
from agents.prompts import GRAMMARS, grammar_samples, starting_at
from agents.tokens import load_tokenizer
from core.cli import Parser, add_fields, cli_fields, field_values, positive, run_command
from core.errors import UserError
from core.rundir import RunDir
from graph.documents.seeds import read_seed_docs
from graph.manifest import exit_status, summarize, terminate, write_manifest
from graph.servers import embedded_model, writer_sampling
from graph.session import Job, build_run, open_servers, prepare_run_dir, prompts_for
from graph.settings import (
    LOOP,
    METHODS,
    SERVERS,
    DocumentSettings,
    IclSettings,
    PriorSettings,
    check_ranges,
)

BUDGET = "budget"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The run's own flags (the Job: budget, concurrency, prices, resume), then one flag per field
    of the method's settings: its default and description are the ones Studio shows
    (graph/settings.py)."""
    p = Parser(prog="python -m graph.run", description=__doc__.splitlines()[0])
    p.add_argument(
        "--method",
        choices=list(METHODS),
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
    Job.add_flags(p, budget, server, "documents")
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
    # Every method's settings are a subset of MetaSynth's (graph/settings.py): one flag per field.
    add_fields(p, DocumentSettings, cli_fields(DocumentSettings), groups)
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> tuple[object, Job]:
    """The run's settings (the class of its --method) and its Job from its flags, checked
    (`check`). A flag the method does not read is refused, not ignored."""
    settings_type = METHODS[args.method]
    given = field_values(DocumentSettings, args, cli_fields(DocumentSettings))
    taken = set(cli_fields(settings_type))
    for name in given:
        if name not in taken:
            flag = "--" + ("out" if name == "out_dir" else name.replace("_", "-"))
            flag = "--prompts" if name == "prompts_dir" else flag
            raise UserError(f"{flag} does not apply to --method {args.method}")
    job = Job.from_args(args)
    return check(settings_type(**given), job)


def check(settings, job: Job) -> tuple[object, Job]:
    """Refuse settings that cannot run, in one line each (UserError), before anything starts; fill
    in what they leave to defaults (5 documents, runs/<domain>, the embedded model's name, the
    protocol 'auto' resolves to, so the manifest says which ran). The command line and the Python
    API both come through here."""
    if job.docs is None and job.tokens is None:
        job = replace(job, docs=5)
    if job.method not in METHODS:
        raise UserError(f"method {job.method!r} is not one of {', '.join(METHODS)}")
    if type(settings) is not METHODS[job.method]:
        raise UserError(
            f"--method {job.method} takes {METHODS[job.method].__name__}, not "
            f"{type(settings).__name__}"
        )
    if not 0 < getattr(settings, "threshold", 0.5) <= 1:
        raise UserError(f"--threshold is a cosine similarity in (0, 1], got {settings.threshold}")
    check_ranges(settings)
    negatives = {
        "--recall-k": getattr(settings, "recall_k", 0),
        "--max-revisions": settings.max_revisions,
        "--max-retries": settings.max_retries,
        "--max-failures": job.max_failures,
        "--reviews": getattr(settings, "reviews", 0),
    }
    for flag, value in negatives.items():
        if value < 0:
            raise UserError(f"{flag} cannot be negative, got {value}")
    if job.ray_address and not job.workers:
        raise UserError("--ray-address needs --workers N (the workers to start on that cluster)")
    if job.ray_address and not settings.base_url:
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
    if isinstance(settings, IclSettings) and not settings.seed_docs:
        raise UserError(
            "--method template-icl needs --seed-docs FILE.jsonl (the real documents it shows as "
            "examples)"
        )
    if isinstance(settings, PriorSettings) and settings.recall_k == 0:
        raise UserError(
            f"--method {job.method} shows --recall-k documents in its prompt; --recall-k 0 would "
            "make it plain template"
        )
    if job.resume and job.overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    if settings.expert_model and not (settings.base_url or settings.expert_base_url):
        raise UserError(
            "--expert-model needs --base-url or --expert-base-url (the embedded server has one "
            "model)"
        )
    if settings.expert_base_url and not settings.base_url:
        raise UserError(
            "--expert-base-url needs --base-url (the embedded server serves both roles)"
        )
    resolved = {
        "model": embedded_model(settings.base_url, settings.model),
        "out_dir": str(Path(settings.out_dir or f"runs/{settings.domain}")),
    }
    if isinstance(settings, DocumentSettings):  # 'auto' resolved once: the manifest says which ran
        resolved["protocol"] = settings.resolved_protocol()
    return replace(settings, **resolved), job


def prepare(rundir: RunDir, resume: bool, overwrite: bool, method: str) -> None:
    """session.prepare_run_dir, and a run resumes only with the method that wrote it."""
    records = prepare_run_dir(rundir, resume, overwrite)
    if resume and rundir.records.exists():
        try:  # the manifest's method; a run killed before writing one: its first record's
            written_by = json.loads(rundir.manifest.read_text()).get("method", "metasynth")
        except (OSError, ValueError):
            written_by = records[0].get("method", "metasynth") if records else "metasynth"
        if written_by != method:
            raise UserError(
                f"{rundir.root} was written with --method {written_by}; resume it with the same "
                "method"
            )


def start_workers(stack: ExitStack, settings, job: Job, console, embedded_url: str):
    """--workers: the memory owner and the workers on Ray (graph/workers.py), until `stack`
    closes; the driver's embedded server, if it runs one, serves them all."""
    from graph.workers import Workers

    where = job.ray_address or "on this machine"
    console.log(f"starting {job.workers} Ray workers ({where})")
    workers = Workers(settings, job.method, job.workers, job.ray_address, embedded_url)
    stack.callback(workers.close)
    return workers


def generate(settings, job: Job) -> int:
    """Write the corpus `settings` and `job` describe (checked by `check`); the exit status."""
    from rich.console import Console

    from graph.driver import Budget, Tally, drive, graph_for

    console = Console(stderr=True)
    prompts = prompts_for(settings)  # every prompt file and the domain, before anything else
    if getattr(settings, "seed_docs", ""):
        read_seed_docs(settings.seed_docs)
    if settings.tokenizer != "embedded":
        load_tokenizer(settings.tokenizer)  # a tokenizer that cannot load offline is bad input
    out = Path(settings.out_dir)
    rundir = RunDir(out)
    prepare(rundir, job.resume, job.overwrite, job.method)
    budget = Budget(
        docs=job.docs,
        tokens=job.tokens,
        max_failures=job.max_failures,
        max_attempts=job.max_attempts or (3 * job.docs if job.docs else None),
    )
    tally, interrupted, workers = Tally(), False, None
    if threading.current_thread() is threading.main_thread():  # not in graph.api's thread
        signal.signal(signal.SIGTERM, terminate)
    grammars = grammar_samples(prompts.texts, GRAMMARS) if job.method == "metasynth" else {}
    if grammars:  # the conductor's consult-only turn (graph/documents/text.py) must parse too
        consult = starting_at(grammars["conductor.gbnf"], "calls")
        grammars["conductor.gbnf (consult only)"] = consult

    with ExitStack() as stack:
        endpoints = stack.enter_context(open_servers(settings, job, console, grammars))
        memory = None
        if job.workers:  # closed before the servers: the stack unwinds last-in, first-out
            url = "" if settings.base_url else endpoints.conductor[0]  # the embedded server's
            workers = start_workers(stack, settings, job, console, url)
            memory = workers.memory
        run = build_run(settings, prompts, endpoints, Accounting(), memory)
        target = f"{job.docs} documents" if job.docs else f"{job.tokens:,} tokens"
        console.log(
            f"{prompts.domain.name} by {job.method}: {len(run.memory)} documents in {out}, "
            f"target {target}, {job.concurrency} in flight"
        )
        live = console.is_terminal and not job.quiet
        write = workers.write if workers else None
        try:
            asyncio.run(
                drive(
                    graph_for(job.method), run, budget, job.concurrency, tally, console, live, write
                )
            )
        except KeyboardInterrupt:
            interrupted = True
            console.log("interrupted: committed documents are safe; continue with --resume")
        finally:
            accounting, spread = workers.finish() if workers else (run.accounting, None)
            stats = summarize(tally, accounting.summary(), run.memory, job)
            stats["sampling"] = run.endpoints.sampling_sent(writer_sampling(settings))
            if spread:
                stats["workers"] = spread
            if job.method == "metasynth":
                stats["protocol"] = settings.protocol
                stats["grammar"] = run.endpoints.grammar_styles()
            run.memory.save_index()
            write_manifest(out, settings, prompts, stats, interrupted, job.concurrency, job.method)
    tried, gates = stats["this_run"], stats["gates"]
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
            f"{tried['fallback']} by the fallback; {tried['rejected']} rejected, {tried['failed']} "
            f"failed) in {stats['wall_seconds']}s; {settings.protocol} protocol, success "
            f"{stats['protocol_success_rate']}; revisions {stats['revisions']}",
            file=sys.stderr,
        )
    else:
        print(
            f"{out}: {stats['documents_in_corpus']} documents by {job.method} "
            f"({tried['rejected']} unusable replies, {tried['failed']} failed) in "
            f"{stats['wall_seconds']}s",
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
