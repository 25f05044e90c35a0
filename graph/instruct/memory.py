"""What an instruction run is built from: its source documents, its own memory of instructions,
and its Run (graph/session.py's, plus the instruct prompts and the sources)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from agents.calls import Accounting
from agents.instruction import InstructPrompts, load_instruct_prompts
from agents.prompts import PromptSet
from core.errors import UserError
from core.jsonl import read_documents
from core.rundir import CORPUS, INSTRUCTIONS
from graph.servers import Endpoints, routers
from graph.session import Run, run_dir, studio_run
from graph.settings import InstructSettings
from memory.embedder import default_embedder
from memory.store import Memory


class InstructionMemory(Memory):
    """The committed instructions of one run and their own FAISS index (the same gate and commit as
    the document memory). A record's `text` is its instruction: the field the gate embeds."""

    records_name = INSTRUCTIONS

    def type_counts(self) -> Counter:
        return Counter(r.get("type") for r in self.records if r.get("type"))


def instruction_memory(settings: InstructSettings) -> InstructionMemory:
    return InstructionMemory(
        run_dir(settings),
        default_embedder(),
        id_prefix=f"{settings.domain}-instr",
        index=settings.index,
    )


def source_path(corpus: str) -> Path:
    path = Path(corpus)
    return path / CORPUS if path.is_dir() else path


def read_sources(corpus: str) -> list[dict]:
    """The source documents (a run directory's corpus.jsonl, or a JSONL file with `text`)."""
    records = read_documents(source_path(corpus), "--corpus")
    return [{**r, "id": str(r.get("id") or f"line-{n}")} for n, r in enumerate(records, 1)]


class InstructRun(Run):
    """An instruction run's Run: `instruct` (its prompt files and types) and `sources` (the
    documents instructions are derived from) beside the shared parts; `memory` holds
    instructions."""

    def __init__(self, settings: InstructSettings, instruct: InstructPrompts, sources, **parts):
        super().__init__(settings, **parts)
        self.instruct, self.sources = instruct, sources

    @staticmethod
    def of(runtime) -> InstructRun:
        context = runtime.context
        if isinstance(context, Run):
            return context
        if not context.corpus:
            raise UserError(
                "set corpus: the run directory or JSONL file to derive instructions from"
            )
        context = replace(context, out_dir=context.directory())  # Studio's form may leave it empty
        return studio_run(context, build_instruct_run, INSTRUCTIONS, read_inputs)


def read_inputs(settings: InstructSettings) -> Callable[..., InstructRun]:
    """The instruction graph's prompt files and source corpus, read before Studio opens a run
    directory for them (a typo is one line, not a folder and a started server), and handed to
    the builder so that they are read once."""
    return partial(
        build_instruct_run,
        instruct=load_instruct_prompts(settings.domain, settings.prompts_dir or None),
        sources=read_sources(str(Path(settings.corpus).resolve())),
    )


def build_instruct_run(
    settings: InstructSettings,
    prompts: PromptSet,
    endpoints: Endpoints,
    accounting: Accounting,
    instruct: InstructPrompts | None = None,
    memory: InstructionMemory | None = None,
    sources: list[dict] | None = None,
) -> InstructRun:
    """An instruction run's Run (open_run's `build`); `instruct`, `sources`: its prompt files and
    source documents, if read already; `memory`: one shared with other settings (Studio)."""
    conductor, writer = routers(settings, endpoints, accounting)
    return InstructRun(
        settings,
        instruct or load_instruct_prompts(settings.domain, settings.prompts_dir or None),
        sources if sources is not None else read_sources(str(Path(settings.corpus).resolve())),
        prompts=prompts,
        memory=memory if memory is not None else instruction_memory(settings),
        conductor=conductor,
        writer=writer,
        endpoints=endpoints,
    )
