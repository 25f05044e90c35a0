"""One run of a generation graph: a `Run`, built once from the graph's settings, holds everything
its nodes use and is handed to the graph as its runtime context (`graph.ainvoke(input,
context=run)`).

    with open_run(settings, job, console, grammars) as run:   # graph.run, graph.instruct
        ... graph.ainvoke({"index": i}, context=run) ...

`open_servers` takes the run directory's lock (a second writer is refused in one line), starts the
embedded server or checks the given ones, puts every grammar through the servers' own parsers and
makes the directory ready to append to (cleared with --overwrite, a partial last line cut after a
hard stop); `open_run` then builds the Run: the prompts, the memory, the routers with the run's
accounting. Refusing to clobber a corpus and checking what --resume continues come first, in the
command lines (`prepare_run_dir`). LangGraph Studio hands nodes its settings form instead of a
Run: `Run.of` builds the Run those settings describe on first use (`studio_run`) and keeps it for
the dev server's life.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path

import numpy as np

from agents.calls import Accounting, Router
from agents.prompts import PromptSet, load_prompts
from agents.tokens import load_tokenizer
from core.cli import positive
from core.errors import UserError
from core.jsonl import read_jsonl, repair_tail
from core.lock import hold
from core.rundir import CORPUS, RunDir
from graph.documents.seeds import SeedPicker, read_seed_docs
from graph.servers import Endpoints, routers, serve
from graph.settings import DocumentSettings, IclSettings
from memory import quality
from memory.embedder import Embedder, default_embedder
from memory.remote import TAKEOVER_WAIT
from memory.store import Memory


@dataclass(frozen=True, kw_only=True)
class Job:
    """How one invocation runs a graph over its settings: the budget, the items in flight, the
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

    @staticmethod
    def add_flags(parser, budget, servers, items: str) -> None:
        """The flags both generation CLIs share (`items`: what they write, for the help), in the
        `budget` and `servers` argument groups."""
        budget.add_argument(
            "--max-attempts",
            type=positive(int),
            help=f"{items} tried at most (default 3 x the target)",
        )
        budget.add_argument(
            "--max-failures", type=int, default=10, help=f"failed {items} tolerated (default 10)"
        )
        servers.add_argument(
            "--concurrency",
            type=positive(int),
            default=4,
            help=f"{items} in flight (default 4; the embedded server gets one slot each)",
        )
        for kind in ("prompt", "completion"):
            text = f"USD per 1M {kind} tokens (the manifest's cost)"
            servers.add_argument(f"--price-{kind}", type=float, default=0.0, help=text)
        exclusive = parser.add_mutually_exclusive_group()
        exclusive.add_argument("--resume", action="store_true", help="continue the run directory")
        exclusive.add_argument(
            "--overwrite", action="store_true", help="delete the run directory's outputs first"
        )
        parser.add_argument(
            "--quiet", action="store_true", help="log lines only, no live progress display"
        )

    @classmethod
    def from_args(cls, args, **given) -> Job:
        """The Job the parsed flags describe (`given`: what the command fills in itself)."""
        names = [f.name for f in fields(cls) if f.name not in given and hasattr(args, f.name)]
        return cls(**{name: getattr(args, name) for name in names}, **given)


def run_dir(settings) -> Path:
    return Path(settings.out_dir or f"runs/{settings.domain}").resolve()


def prepare_run_dir(
    run: RunDir, resume: bool, overwrite: bool, holds: str = "a corpus"
) -> list[dict]:
    """Refuse to clobber a run; check the directory is writable; return the records to resume (their
    corruption is reported before anything starts). Deletes nothing and changes nothing."""
    out = run.root
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if run.other_records.exists():
        raise UserError(
            f"{out} holds another kind of run ({run.other_records.name}); choose another --out"
        )
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


def prompts_for(settings) -> PromptSet:
    """The run's prompt files (validated: a bad one is one line, before anything starts), with the
    settings' inline overrides (Studio)."""
    inline = {
        "expert.md": getattr(settings, "expert_prompt", ""),
        "conductor.md": getattr(settings, "conductor_prompt", ""),
    }
    return load_prompts(settings.domain, settings.prompts_dir or None, inline)


class Run:
    """What a graph's nodes use, built once per run: `settings` (plain values), `prompts`,
    `memory`, the `conductor` and `writer` routers (their calls counted in `accounting`), the
    `embedder`, and, built on first use (a driver whose documents Ray workers write needs none of
    them), the category table, MetaSynth's topic-aware `seeds` and template-icl's real
    `examples`. Decided once here: the conductor `protocol` (None outside the document graph) and
    the `tokenizer` the records' `count_tokens` uses. Nodes get it as `Run.of(runtime)`."""

    def __init__(
        self,
        settings,
        *,
        prompts: PromptSet,
        memory: Memory,
        conductor: Router,
        writer: Router,
        embedder: Embedder | None = None,
        endpoints: Endpoints | None = None,
    ) -> None:
        self.settings, self.prompts, self.memory = settings, prompts, memory
        self.conductor, self.writer = conductor, writer
        self.accounting = writer.accounting
        self.given_embedder, self.endpoints = embedder, endpoints
        self.tokenizer = load_tokenizer(settings.tokenizer)
        # decided once per run ('auto' included: Studio and the API may hand it unresolved)
        document = isinstance(settings, DocumentSettings)
        self.protocol = settings.resolved_protocol() if document else None

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the run's tokenizer (the records' and the budget's count)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @cached_property
    def embedder(self) -> Embedder:
        return self.given_embedder or default_embedder()

    @cached_property
    def talk(self) -> quality.Talk:
        """The quality gate's talk check (its probe read once)."""
        return quality.Talk(self.embedder)

    @cached_property
    def seeds(self) -> SeedPicker | None:
        """Real seed documents handed out far apart (embeds them all: ask off the event loop)."""
        if not isinstance(self.settings, DocumentSettings) or not self.settings.seed_docs:
            return None
        texts = read_seed_docs(self.settings.seed_docs)
        return SeedPicker(texts, self.embedder, self.settings.seed)

    @cached_property
    def examples(self) -> list[str]:
        """template-icl's real documents."""
        if not isinstance(self.settings, IclSettings) or not self.settings.seed_docs:
            return []
        return read_seed_docs(self.settings.seed_docs)

    @cached_property
    def categories(self) -> np.ndarray | None:
        """The domain's category labels embedded inside a sentence: bare one- or two-word labels put
        every generic document in the same category (5 of 5 SmolLM2 finance documents landed on
        one label, 3 labels this way)."""
        domain = self.prompts.domain
        if not domain.categories:
            return None
        sentences = [
            self.prompts.fragment("category_sentence", domain=domain.name, label=label)
            for label in domain.categories
        ]
        return self.embedder.encode(sentences)

    def ready(self) -> Run:
        """The parts built on first use, built now (model loads, embeddings): call it off the event
        loop, before documents need them."""
        _ = self.embedder, self.talk, self.categories, self.seeds, self.examples
        return self

    def category_of(self, vector: np.ndarray) -> str:
        """The nearest category label, for drafts that named none (every method's)."""
        if self.categories is None:
            return "uncategorized"
        return self.prompts.domain.categories[int(np.argmax(self.categories @ vector.reshape(-1)))]

    @staticmethod
    def of(runtime) -> Run:
        """The Run of a node's runtime: the one the command line (or a worker) handed the graph,
        or, under Studio, where the context is the settings form, the one built for those
        settings."""
        context = runtime.context
        return context if isinstance(context, Run) else studio_run(context)


def memory_for(settings) -> Memory:
    return Memory(
        run_dir(settings), default_embedder(), id_prefix=settings.domain, index=settings.index
    )


@contextmanager
def open_servers(
    settings, job: Job, console, grammars: dict[str, str] | None = None, rundir=None
) -> Iterator[Endpoints]:
    """The run's servers for the block: its directory's lock, the embedded server started (or the
    given ones checked), every grammar through the servers' parsers, then the directory made ready
    to append to (cleared with --overwrite, an unfinished last line cut after a hard stop). The
    embedded server stops and the lock is released when the block ends, however it ends."""
    rundir = rundir or RunDir(run_dir(settings))
    with ExitStack() as stack:
        stack.enter_context(hold(rundir.root))
        if rundir.memory.exists():  # the memory owner of a killed `--workers` run may be exiting
            with hold(rundir.memory, wait=TAKEOVER_WAIT):
                pass
        embedded_url = serve(stack, settings, job.concurrency, rundir, console)
        endpoints = Endpoints.resolve(settings, embedded_url)
        endpoints.check_grammars(grammars or {})
        if job.overwrite:
            clear_run_dir(rundir)
        for note in repair_run_dir(rundir):
            console.log(note)
        yield endpoints


@contextmanager
def open_run(
    settings,
    job: Job,
    console,
    grammars: dict[str, str] | None = None,
    build=None,
    prompts: PromptSet | None = None,
    rundir: RunDir | None = None,
) -> Iterator[Run]:
    """The run's Run for the block (open_servers, then `build(settings, prompts, endpoints,
    accounting)`; default: a document graph's Run, build_run)."""
    prompts = prompts or prompts_for(settings)
    with open_servers(settings, job, console, grammars, rundir) as endpoints:
        yield (build or build_run)(settings, prompts, endpoints, Accounting())


def build_run(
    settings, prompts: PromptSet, endpoints: Endpoints, accounting: Accounting, memory=None
) -> Run:
    """A document graph's Run (MetaSynth's or a baseline's); `memory`: one shared with others
    (graph/workers.py, Studio) instead of the run directory's own."""
    conductor, writer = routers(settings, endpoints, accounting)
    memory = memory if memory is not None else memory_for(settings)
    return Run(
        settings,
        prompts=prompts,
        memory=memory,
        conductor=conductor,
        writer=writer,
        endpoints=endpoints,
    )


# -- LangGraph Studio ------------------------------------------------------------------------------
# The dev server gives each run (one document) its settings as a new form object. A run directory
# is opened once, by the first settings that name it (its lock, its servers, its memory, kept for
# the server process's life; the embedded server dies with it); later settings for the same
# directory (another temperature, another protocol) get a Run of their own over that memory and
# accounting, with their own prompts and routers. The command line, the Python API and the workers
# never come here: they hand the graph the Run they opened.
_studio_runs: dict = {}  # settings -> Run
_studio_dirs: dict = {}  # run directory -> the Run that opened it
_studio_lock = threading.Lock()
_studio_stack = ExitStack()


def studio_run(settings, build=None, records: str = CORPUS, read_inputs=None) -> Run:
    """The Run for Studio's `settings` (`build`: the graph's Run builder, as in open_run;
    `records`: the file its graph commits to; `read_inputs(settings)`: reads and checks the
    graph's own inputs, and returns the builder with them bound, for the first open of a
    directory; later settings for it use `build`, which reads their inputs itself). Before a
    directory is first opened, the inputs and the directory are checked as the command lines check
    them, so a mistake is one line and no folder: Studio then appends, like --resume."""
    run = _studio_runs.get(settings)
    if run is not None:
        return run
    from rich.console import Console

    build = build or build_run
    with _studio_lock:
        if settings in _studio_runs:
            return _studio_runs[settings]
        directory, console = run_dir(settings), Console(stderr=True)
        first = _studio_dirs.get(directory)
        if first is None:
            prompts = prompts_for(settings)  # a bad prompt file or domain: before any folder
            if read_inputs is not None:
                build = read_inputs(settings)
            rundir = RunDir(directory, records)
            prepare_run_dir(rundir, resume=True, overwrite=False)
            opened = open_run(settings, Job(), console, build=build, prompts=prompts, rundir=rundir)
            run = _studio_dirs[directory] = _studio_stack.enter_context(opened)
        elif type(first.settings) is not type(settings):
            raise UserError(
                f"{directory} is open in this Studio server for {type(first.settings).__name__}; "
                "set another out_dir"
            )
        else:
            embedded = not (settings.base_url or first.settings.base_url)
            if embedded and first.settings.model == settings.model:  # the same embedded server
                url = first.endpoints.conductor[0]
            else:  # served models checked, or another embedded model started
                url = serve(_studio_stack, settings, 4, RunDir(directory), console)
            endpoints = Endpoints.resolve(settings, url)
            prompts = prompts_for(settings)
            run = build(settings, prompts, endpoints, first.accounting, memory=first.memory)
        _studio_runs[settings] = run
        return run
