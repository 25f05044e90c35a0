"""Every file name of a run directory, in one place.

A generation run (`graph.run`) commits to corpus.jsonl, an instruction run (`graph.instruct`) to
instructions.jsonl; both keep rejects, failures, the manifest, the novelty memory and the embedded
server's log beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CORPUS = "corpus.jsonl"
INSTRUCTIONS = "instructions.jsonl"
REJECTS = "rejects.jsonl"
FAILURES = "failures.jsonl"
MANIFEST = "manifest.json"
MEMORY = "memory"  # a folder: embeddings.f32, index.faiss, index.json
EMBEDDINGS, INDEX, INDEX_META = "embeddings.f32", "index.faiss", "index.json"
SERVER_LOG = "server.log"
TRAIN_METRICS = "metrics.jsonl"  # a training output folder's log (train.cpt, train.sft)


def _file(name: str) -> property:
    return property(lambda self: self.root / name, doc=f"ROOT/{name}")


@dataclass(frozen=True)
class RunDir:
    root: Path
    records_name: str = CORPUS  # CORPUS for a generation run, INSTRUCTIONS for an instruction run

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def find(cls, path: str | Path) -> RunDir:
        """The run at `path`: an instruction run when it has instructions.jsonl and no
        corpus.jsonl."""
        path = Path(path)
        kind = (
            INSTRUCTIONS
            if (path / INSTRUCTIONS).exists() and not (path / CORPUS).exists()
            else CORPUS
        )
        return cls(path, kind)

    @property
    def records(self) -> Path:
        return self.root / self.records_name

    @property
    def other_records(self) -> Path:
        """The other kind of run's records (a folder holds one kind; other files share names)."""
        return self.root / (INSTRUCTIONS if self.records_name == CORPUS else CORPUS)

    rejects = _file(REJECTS)
    failures = _file(FAILURES)
    manifest = _file(MANIFEST)
    memory = _file(MEMORY)
    server_log = _file(SERVER_LOG)

    @property
    def appended(self) -> tuple[Path, ...]:
        """The files a run appends to, one committed line at a time."""
        return self.records, self.rejects, self.failures

    @property
    def outputs(self) -> tuple[Path, ...]:
        """Everything a run writes: what a fresh run into the same folder would overwrite."""
        return (*self.appended, self.manifest, self.memory, self.server_log)


def is_run_file(path: Path) -> bool:
    """Whether `path` is a record file a run appends to (read only up to its last newline)."""
    return path.name in (CORPUS, INSTRUCTIONS, REJECTS, FAILURES)
