"""What the generation commands (graph.run, graph.instruct) share around a run: the run directory
(refuse to clobber, repair, clear), the servers, the run's summary and its manifest, and SIGTERM
handled like Ctrl-C."""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from agents.llm import check_server
from core.errors import UserError
from core.jsonl import read_jsonl, repair_tail, write_atomic
from core.lock import hold
from core.rundir import RunDir
from graph import resources
from graph.configuration import Context
from memory.remote import TAKEOVER_WAIT

PACKAGES = (
    "langgraph",
    "langchain-core",
    "langchain-openai",
    "openai",
    "faiss-cpu",
    "sentence-transformers",
    "transformers",
    "xllamacpp",
    "datatrove",
    "torch",
)


@dataclass(frozen=True, kw_only=True)
class Job:
    """How one invocation runs a graph over its settings: the budget, the documents in flight, the
    prices and what to do with an existing run directory. The command lines build it once from
    their flags, the Python API (graph/api.py) from keywords; nothing below them reads a flag."""

    method: str = "metasynth"  # graph.run's --method; graph.instruct's is "instruct"
    docs: int | None = None  # items the set should hold (graph.instruct: instructions)
    tokens: int | None = None  # corpus tokens it should hold
    max_attempts: int | None = None  # items tried at most (default 3 x docs)
    max_failures: int = 10
    concurrency: int = 4  # items in flight; the embedded server gets one slot each
    workers: int | None = None  # Ray workers (graph/workers.py); None: one process
    ray_address: str = ""
    price_prompt: float = 0.0  # USD per 1M tokens, for the manifest's cost
    price_completion: float = 0.0
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False


def embedded_model(base_url: str, model: str) -> str:
    """The model name to run with: a served model's as given; without a base URL the embedded server
    runs, and `model` picks one of the models shipped in PyPI packages (embedded:NAME). One that is
    not installed is one line with the pip command, before anything starts."""
    if base_url:
        return model
    from agents.embedded import gguf, model_name

    if model and not model.startswith("embedded"):
        raise UserError(
            f"--model {model} needs --base-url (without one, --model takes embedded:NAME)"
        )
    name = model_name(model or "")
    gguf(name)
    return name


# -- the run directory -----------------------------------------------------------------------------
def prepare_run_dir(
    run: RunDir, resume: bool, overwrite: bool, holds: str = "a corpus"
) -> list[dict]:
    """Refuse to clobber a run; check the directory is writable; return the records to resume (their
    corruption is reported before anything starts). Deletes nothing and changes nothing."""
    out = run.root
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    existing = run.records.exists()
    if existing and not (resume or overwrite):
        raise UserError(
            f"{out} already holds {holds}; pass --resume to continue it or --overwrite "
            "to replace it"
        )
    records = read_jsonl(run.records, committed=True) if resume and existing else []
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to {out}: {e.strerror}") from None
    return records


def repair_run_dir(run: RunDir) -> list[str]:
    """After a hard stop a JSONL file may end in a partial line (never a committed one): cut it."""
    return [
        f"{path.name}: dropped {n} bytes of an unfinished line"
        for path in run.appended
        if (n := repair_tail(path))
    ]


def clear_run_dir(run: RunDir) -> None:
    """Remove what a run writes (--overwrite), and nothing else in the folder. The server log stays:
    this run's embedded server is already appending to it (it starts before anything is cleared)."""
    for path in run.outputs:
        if path == run.server_log:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def gate_stats(results: list[dict]) -> dict:
    """What the gates did to this run's drafts: every refusal (sent back, or the last one before a
    reject) by reason and by quality rule, and the documents rejected by rule."""
    refusals = [s for r in results for s in r.get("sent_back") or []]
    committed = sum(r.get("ended") in ("final", "fallback") for r in results)
    drafts = committed + len(refusals)
    rejected = [
        r for r in results if r.get("ended") == "rejected" and r.get("reason") == "low quality"
    ]
    return {
        "drafts_checked": drafts,
        "refusals": len(refusals),
        "refused_share": round(len(refusals) / drafts, 3) if drafts else None,
        "refused_by_reason": dict(Counter(s["reason"] for s in refusals)),
        "refused_by_rule": dict(Counter(s["rule"] for s in refusals if s.get("rule"))),
        "rejected_low_quality_by_rule": dict(Counter(r.get("rule") for r in rejected)),
    }


def summarize(tally, accounting: dict, memory, job: Job) -> dict:
    wall = time.perf_counter() - tally.started
    tried = len(tally.results)
    ended = {k: tally.count(k) for k in ("final", "fallback", "rejected", "failed")}
    roles = accounting["by_role"]
    prompt = sum(r["prompt_tokens"] for r in roles.values())
    completion = sum(r["completion_tokens"] for r in roles.values())
    calls = sum(r["calls"] for r in roles.values())
    return {
        "documents_in_corpus": len(memory),
        "corpus_tokens": memory.tokens(),
        "this_run": {"tried": tried, **ended},
        # How each committed document was written: through the experts (the protocol ran), by the
        # conductor alone (where --min-expert-share allows it), by the fallback; a baseline by its
        # method.
        "written_by": dict(
            Counter(
                r.get("written_by")
                for r in tally.results
                if r.get("ended") in ("final", "fallback")
            )
        ),
        # Success means the protocol ran: the conductor planned and its experts wrote the document.
        "protocol_success_rate": round(
            sum(
                r.get("written_by") == "experts" and r.get("ended") == "final"
                for r in tally.results
            )
            / tried,
            3,
        )
        if tried and job.method == "metasynth"
        else None,
        "rejection_rate": round(ended["rejected"] / tried, 3) if tried else None,
        "revisions": sum(r.get("revisions", 0) for r in tally.results),
        "gates": gate_stats(tally.results),
        "protocol_errors": sum(r.get("protocol_errors", 0) for r in tally.results),
        "corpus_tokens_this_run": tally.corpus_tokens,
        "llm": {
            "calls": calls,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "calls_per_second": round(calls / wall, 2) if wall else None,
            # What a user pays in agent overhead: corpus tokens per generated token (different
            # tokenizers when the server's model is not the --tokenizer; same for the embedded
            # model).
            "corpus_over_generated_tokens": round(tally.corpus_tokens / completion, 3)
            if completion
            else None,
            "cost_usd": round(
                (prompt * job.price_prompt + completion * job.price_completion) / 1e6, 4
            ),
            **accounting,
        },
        "corpus_tokens_per_second": round(tally.corpus_tokens / wall, 1) if wall else None,
        "wall_seconds": round(wall, 1),
    }


def write_manifest(
    out: Path,
    ctx: Context,
    prompts,
    stats: dict,
    interrupted: bool,
    concurrency: int,
    method: str = "metasynth",
) -> None:
    manifest = {
        "method": method,
        "config": {**ctx.as_dict(), "concurrency": concurrency},
        "prompt_hash": prompts.hash,
        "versions": versions(),
        "interrupted": interrupted,
        **stats,
    }
    write_atomic(RunDir(out).manifest, json.dumps(manifest, indent=2).encode())


def open_run(
    stack: ExitStack,
    ctx: Context,
    job: Job,
    run: RunDir,
    console,
    grammars: dict[str, str] | None = None,
) -> None:
    """Start the servers (see serve) and put every grammar through their parsers (a grammar they
    refuse is bad input, found before anything on disk changes), then make the run directory ready
    to append to: cleared with --overwrite, an unfinished last line cut after a hard stop. Nothing
    built so far is rebuilt: the run's memory is opened only after this. What the run caches
    (memory, accounting, the routers to its server) is dropped when `stack` closes, so a second run
    in the same process starts clean. The run holds its directory's lock (core.lock) until then: a
    second writer is refused first."""
    stack.enter_context(hold(run.root))
    if run.memory.exists():  # the memory owner of a killed `--workers` run may still be exiting
        with hold(run.memory, wait=TAKEOVER_WAIT):
            pass
    stack.callback(resources.clear)
    serve(stack, ctx, job.concurrency, run.root, console)
    resources.check_grammars(ctx, grammars or {})
    if job.overwrite:
        clear_run_dir(run)
    for note in repair_run_dir(run):
        console.log(note)


def exit_status(
    tally, interrupted: bool, max_failures: int, failures: Path, items: str, met: bool
) -> int:
    """130 after Ctrl-C; 1 when more than --max-failures items failed (one line naming the file) or
    the budget was not met; else 0."""
    if interrupted:
        return 130
    if tally.failures > max_failures:
        print(
            f"error: {tally.failures} {items} failed (more than --max-failures {max_failures}); "
            f"see {failures}",
            file=sys.stderr,
        )
        return 1
    return 0 if met else 1


# SIGTERM ends a run like Ctrl-C: committed work is kept, manifest written
def terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def serve(stack: ExitStack, ctx: Context, concurrency: int, out: Path, console) -> None:
    """Check the servers given (a bad one ends the run in one line), or start the embedded one for
    the length of `stack` (its log in out/server.log). The Context is unchanged: with no base URL
    the routers find the embedded server already up (agents.embedded.shared_server, Studio's path
    too)."""
    for url in resources.urls(ctx.base_url):
        check_server(url, ctx.model)
    for url in resources.urls(ctx.expert_base_url):
        check_server(url, ctx.expert_model or None)
    if ctx.base_url:
        return
    from agents import embedded

    slots = max(concurrency, 1)  # one slot per document in flight
    console.log(f"starting the embedded model server ({ctx.model}, {slots} slots)")
    stack.callback(embedded.stop_shared, ctx.model)
    embedded.shared_server(ctx.model, log_path=RunDir(out).server_log, slots=slots)
