"""A run's memory owned by one process and used from others (`graph.run --workers`, over Ray).

One owner (a Ray actor, `MemoryOwner`) is the run directory's Memory, so the novelty gate
checks every document against every committed one, whichever worker wrote it. Workers embed their
own drafts and send vectors, never models. Ray runs one call at a time on an actor, so `admit`
(gate, append, fsync) stays one critical section across the whole cluster.

`RemoteMemory` is what the graph's nodes see in a worker: Memory's operations, each a call to the
owner. A worker that dies between the owner's commit and its reply has its document tried again
by Ray; the owner returns the first commit for that document's attempt instead of a second one.
At the end of a run the driver seals the owner: nothing commits after the manifest is written.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from core.lock import hold
from core.rundir import RunDir
from core.usage import cpu_seconds
from memory.embedder import LazyEmbedder
from memory.store import Memory, Verdict

# The document being written in this task (set by the worker, read by RemoteMemory.admit).
ATTEMPT: ContextVar[int | None] = ContextVar("attempt", default=None)
# Seconds a new owner waits for the owner of a killed run to exit (Ray ends it with its driver).
TAKEOVER_WAIT = 60.0


class MemoryOwner(Memory):
    """The run's Memory in the one process that writes its corpus, rejects and novelty index while
    workers run; every public method is an actor call."""

    def __init__(self, run_dir: str, id_prefix: str, index: str) -> None:
        self.stack = ExitStack()
        # A second lock beside the driver's: an owner left over from a killed driver must be gone
        # before this one reads the corpus.
        self.stack.enter_context(hold(RunDir(Path(run_dir)).memory, wait=TAKEOVER_WAIT))
        super().__init__(run_dir, LazyEmbedder(), id_prefix=id_prefix, index=index)
        self.admitted: dict[int, int] = {}  # attempt -> its row in the corpus
        self.seconds: list[float] = []
        self.sealed = False

    def size(self) -> int:
        return len(self)  # Ray calls no dunder methods

    def committed(self, attempt: int) -> dict | None:
        """The record `attempt` committed in this run, if it did."""
        row = self.admitted.get(attempt)
        return None if row is None else self.records[row]

    def admit(
        self, record: dict, vector: np.ndarray, threshold: float, attempt: int | None = None
    ) -> Verdict:
        if self.sealed:
            raise RuntimeError("the run has ended: nothing more is committed")
        if attempt is not None and attempt in self.admitted:
            return Verdict(True, None, None, self.committed(attempt))
        t0 = time.perf_counter()
        verdict = super().admit(record, vector, threshold)
        self.seconds.append(time.perf_counter() - t0)
        if verdict.accepted and attempt is not None:
            self.admitted[attempt] = len(self) - 1
        return verdict

    def seal(self) -> dict:
        """Refuse every later admit and reject; return how long each admit took (gate, append,
        fsync), for the manifest. One call at a time on an actor: an exact cut-off."""
        self.sealed = True
        ms = np.array(self.seconds) * 1000
        if not len(ms):
            return {"count": 0}
        p50, p99 = np.percentile(ms, [50, 99])
        return {"count": len(ms), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2)}

    def reject(self, record: dict) -> None:
        if not self.sealed:
            super().reject(record)

    def cpu_seconds(self) -> float:
        return cpu_seconds()


class RemoteMemory:
    """Memory's operations, answered by a MemoryOwner actor (blocking calls: nodes make them off
    the event loop, as they do for a local Memory's admit)."""

    def __init__(self, owner, run_dir: str | Path) -> None:
        self.owner = owner
        self.run = RunDir(Path(run_dir))

    @property
    def rejects_path(self) -> Path:
        return self.run.rejects

    def ask(self, method: str, *args):
        import ray

        return ray.get(getattr(self.owner, method).remote(*args))

    def __len__(self) -> int:
        return self.ask("size")

    def nearest(self, vector: np.ndarray, k: int) -> list[tuple[float, dict]]:
        return self.ask("nearest", np.asarray(vector, dtype=np.float32), k)

    def category_counts(self):
        return self.ask("category_counts")

    def counts(self, fields: list[str], missing: str | None = None):
        return self.ask("counts", fields, missing)

    def recent(self, k: int) -> list[str]:
        return self.ask("recent", k)

    def tokens(self) -> int:
        return self.ask("tokens")

    def admit(self, record: dict, vector: np.ndarray, threshold: float) -> Verdict:
        vector = np.asarray(vector, dtype=np.float32)
        return self.ask("admit", record, vector, threshold, ATTEMPT.get())

    def reject(self, record: dict) -> None:
        self.ask("reject", record)

    def committed(self, attempt: int) -> dict | None:
        return self.ask("committed", attempt)

    def save_index(self) -> None:
        self.ask("save_index")
