"""The Python API: a corpus from a notebook or a pipeline in two calls, no shell.

    from graph.api import documents, generate

    run = generate(domain="finance", docs=20, out_dir="runs/notebook")  # the run directory
    for record in documents(run):  # its committed documents, one dict per corpus line
        print(record["id"], record["text"][:80])

`generate` takes the settings `python -m graph.run` takes, by the same names with underscores: the
fields of the method's settings (graph/settings.py: `DocumentSettings` for metasynth,
`TemplateSettings` and its kin for the baselines) and of `Job` (graph/session.py: method, docs,
tokens, concurrency, resume, overwrite, ...). It checks them the
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
from graph.run import check
from graph.run import generate as run
from graph.session import Job
from graph.settings import METHODS, DocumentSettings

__all__ = ["DocumentSettings", "Job", "RunIncomplete", "UserError", "documents", "generate"]


class RunIncomplete(RuntimeError):
    """The run stopped before its budget was met (too many failures, attempts spent)."""


def generate(settings=None, job: Job | None = None, **keywords) -> Path:
    """Write a corpus; its run directory. `settings`: the method's settings object (default: the
    method's defaults); `keywords` override its fields and the Job's by name (an unknown name, or
    one the method does not read, is a UserError)."""
    job = job or Job()
    method = keywords.get("method") or job.method
    if settings is not None and "method" not in keywords and job.method == "metasynth":
        method = next((m for m, kind in METHODS.items() if type(settings) is kind), method)
    if method not in METHODS:
        raise UserError(f"method {method!r} is not one of {', '.join(METHODS)}")
    kind = METHODS[method]
    names = {f.name for f in fields(kind)}
    job_names = {f.name for f in fields(Job)}
    every = {f.name for f in fields(DocumentSettings)}
    unknown = sorted(set(keywords) - every - job_names)
    if unknown:
        raise UserError(f"unknown setting {', '.join(unknown)} (settings or Job field names)")
    foreign = sorted(set(keywords) - names - job_names)
    if foreign:
        raise UserError(f"{', '.join(foreign)} does not apply to method {method}")
    settings = replace(settings or kind(), **{k: v for k, v in keywords.items() if k in names})
    job_keywords = {k: v for k, v in keywords.items() if k in job_names}
    job = replace(job, **{**job_keywords, "method": method})
    offline()
    settings, job = check(settings, job)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a script: run here
        status = run(settings, job)
    else:  # a notebook's loop is running in this thread: the run gets its own thread and loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            status = pool.submit(run, settings, job).result()
    if status == 130:
        raise KeyboardInterrupt
    if status != 0:
        raise RunIncomplete(
            f"{settings.out_dir}: the budget was not met; see its manifest.json and failures.jsonl "
            "(resume=True continues it)"
        )
    return Path(settings.out_dir)


def documents(run: str | Path) -> Iterator[dict]:
    """The committed documents of a run directory (or of a corpus JSONL file), in commit order.
    Safe while the run still writes: a line is read only once it is whole (core.jsonl)."""
    yield from read_documents(run)
