"""The Python API: a corpus from a notebook or a pipeline in two calls, no shell.

    from graph.api import documents, generate

    run = generate(domain="finance", docs=20, out_dir="runs/notebook")  # the run directory
    for record in documents(run):  # its committed documents, one dict per corpus line
        print(record["id"], record["text"][:80])

`generate` takes the settings `python -m graph.run` takes, by the same names with underscores: the
fields of `Context` (graph/configuration.py: servers, the loop, prompts) and of `Job`
(graph/session.py: method, docs, tokens, concurrency, resume, overwrite, ...). It checks them the
way the command line does and runs the same code: the same run directory, manifest, lock, resume.
Bad settings raise `UserError` with the command line's one-line message, before anything on disk
changes; a run that ends short of its budget raises `RunIncomplete` (its documents stay committed;
`resume=True` continues it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

from core.cli import offline
from core.errors import UserError
from core.jsonl import read_documents
from graph.configuration import Context
from graph.run import check
from graph.run import generate as run
from graph.session import Job

__all__ = ["Context", "Job", "RunIncomplete", "UserError", "documents", "generate"]


class RunIncomplete(RuntimeError):
    """The run stopped before its budget was met (too many failures, attempts spent)."""


def generate(context: Context | None = None, job: Job | None = None, **settings) -> Path:
    """Write a corpus; its run directory. `settings` override fields of `context` and `job` by
    name (an unknown name is a UserError)."""
    ctx_names = {f.name for f in fields(Context)}
    job_names = {f.name for f in fields(Job)}
    unknown = sorted(set(settings) - ctx_names - job_names)
    if unknown:
        raise UserError(f"unknown setting {', '.join(unknown)} (Context or Job field names)")
    ctx = replace(context or Context(), **{k: v for k, v in settings.items() if k in ctx_names})
    job = replace(job or Job(), **{k: v for k, v in settings.items() if k in job_names})
    offline()
    ctx, job = check(ctx, job)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a script: run here
        status = run(ctx, job)
    else:  # a notebook's loop is running in this thread: the run gets its own thread and loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            status = pool.submit(run, ctx, job).result()
    if status == 130:
        raise KeyboardInterrupt
    if status != 0:
        raise RunIncomplete(
            f"{ctx.out_dir}: the budget was not met; see its manifest.json and failures.jsonl "
            "(resume=True continues it)"
        )
    return Path(ctx.out_dir)


def documents(run: str | Path) -> Iterator[dict]:
    """The committed documents of a run directory (or of a corpus JSONL file), in commit order.
    Safe while the run still writes: a line is read only once it is whole (core.jsonl)."""
    yield from read_documents(run)
