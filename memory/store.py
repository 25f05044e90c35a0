"""One run directory's corpus and novelty memory.

`corpus.jsonl` is the source of truth. Beside it, `memory/` holds the embedding of every committed
document (`embeddings.f32`, raw float32 rows in corpus order, so a reload never re-embeds) and the
FAISS index (`index.faiss`, written atomically; rebuilt from the embeddings when it is stale).
FAISS's own serialisation is used, never pickle.

`admit` is the novelty gate and the commit in one critical section: two documents in flight can
never both pass the check against a corpus that lacks the other.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from core.errors import UserError
from core.jsonl import append_line, read_jsonl, write_atomic
from core.rundir import CORPUS, EMBEDDINGS, INDEX, INDEX_META, RunDir
from memory import index as indexes

# The gate's cosine limit, chosen by measurement on real text vs light paraphrases:
# docs/novelty-threshold.md.
DEFAULT_THRESHOLD = 0.85


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    # cosine similarity to the nearest committed document, None for the first
    similarity: float | None
    nearest: dict | None  # that document's record
    record: dict | None = None  # the committed record (with its id) when accepted


class Memory:
    """The committed documents of one run, their embeddings and a FAISS inner-product index."""

    records_name = CORPUS  # the file of committed records (an instruction run has its own)

    def __init__(
        self, run_dir: str | Path, embedder, id_prefix: str = "doc", index: str = "auto"
    ) -> None:
        if index not in indexes.KINDS:
            raise UserError(f"unknown index kind {index!r} ({', '.join(indexes.KINDS)})")
        self.run = RunDir(Path(run_dir), self.records_name)
        self.dir = self.run.root
        # the paths every commit writes, resolved once
        self.corpus_path, self.rejects_path = self.run.records, self.run.rejects
        self.memory_dir = self.run.memory
        self.embedder = embedder
        self.dim = embedder.dim
        self.id_prefix = id_prefix
        self.kind = index
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self.counters: dict[tuple[str, str | None], Counter] = {}  # see counts
        self.index = self._new_index(0)
        self._load()

    def _new_index(self, n: int, vectors: np.ndarray | None = None):
        """The index `--index` wants for n documents (memory/index.py), holding `vectors`."""
        vectors = np.zeros((0, self.dim), dtype=np.float32) if vectors is None else vectors
        return indexes.build(indexes.wanted(self.kind, n), self.dim, vectors)

    @property
    def index(self):
        return self._index

    @index.setter
    def index(self, index) -> None:
        self._index = index
        self.rebuild_at = indexes.rebuild_at(index, self.kind)

    def _switch_if_due(self) -> None:
        """Rebuild from the stored embeddings when the corpus outgrew the index (flat -> IVF, IVF
        retrain)."""
        if len(self.records) >= self.rebuild_at:
            self.index = self._new_index(
                len(self.records), self._stored_embeddings(len(self.records))
            )

    def _mem(self, name: str) -> Path:
        return self.memory_dir / name

    # -- loading -------------------------------------------------------------------------------
    def _load(self) -> None:
        self.records = read_jsonl(self.corpus_path, committed=True)
        n = len(self.records)
        vectors = self._stored_embeddings(n)
        # documents committed before their embeddings reached disk: embed the rest
        if len(vectors) < n:
            missing = self.embedder.encode([r["text"] for r in self.records[len(vectors) :]])
            vectors = np.vstack([vectors, missing])
            if n:
                self.memory_dir.mkdir(parents=True, exist_ok=True)
                write_atomic(self._mem(EMBEDDINGS), vectors.tobytes())
        self.index = self._stored_index(n) or self._new_index(n, vectors)

    def _stored_embeddings(self, n: int) -> np.ndarray:
        path = self._mem(EMBEDDINGS)
        if not path.exists():
            return np.zeros((0, self.dim), dtype=np.float32)
        raw = np.fromfile(path, dtype=np.float32)
        rows = len(raw) // self.dim
        vectors = raw[: rows * self.dim].reshape(rows, self.dim)
        if rows > n:  # rows past the corpus belong to commits that never completed: drop them
            vectors = vectors[:n]
            write_atomic(path, vectors.tobytes())
        return np.ascontiguousarray(vectors)

    def _stored_index(self, n: int):
        path, meta_path = self._mem(INDEX), self._mem(INDEX_META)
        if not (path.exists() and meta_path.exists()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            index = faiss.read_index(str(path))
        except (ValueError, RuntimeError, OSError):
            return None  # a damaged index is only a cache: rebuild it
        matches = meta.get("count") == n and index.ntotal == n and index.d == self.dim
        return index if matches and indexes.fits(index, self.kind, n) else None

    # -- queries -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def nearest(self, vector: np.ndarray, k: int) -> list[tuple[float, dict]]:
        """The k committed documents most similar to `vector`, best first."""
        if k <= 0 or self.index.ntotal == 0:
            return []
        scores, ids = self.index.search(vector.reshape(1, -1), min(k, self.index.ntotal))
        return [(float(s), self.records[i]) for s, i in zip(scores[0], ids[0]) if i >= 0]

    def category_counts(self) -> Counter:
        return self.counts(["category"], missing="uncategorized")["category"]

    def counts(self, fields: list[str], missing: str | None = None) -> dict[str, Counter]:
        """How many committed documents hold each value of each field (`missing` counts those
        without one; None leaves them out): the structured protocol's view of coverage. Counted
        once, then kept up to date by admit: every document asks, and the corpus can be large."""
        with self.lock:
            for name in fields:
                if (name, missing) not in self.counters:
                    values = (r.get(name) or missing for r in self.records)
                    self.counters[name, missing] = Counter(v for v in values if v is not None)
            return {name: Counter(self.counters[name, missing]) for name in fields}

    def recent(self, k: int) -> list[str]:
        """The texts of the k documents committed last, oldest first."""
        return [r["text"] for r in self.records[-k:]] if k > 0 else []

    def tokens(self) -> int:
        return sum(r.get("tokens", 0) for r in self.records)

    # -- writes --------------------------------------------------------------------------------
    def admit(self, record: dict, vector: np.ndarray, threshold: float) -> Verdict:
        """Gate and commit atomically: commit `record` unless a committed document is >= threshold
        similar."""
        vector = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        with self.lock:
            top = self.nearest(vector, 1)
            similarity, nearest = top[0] if top else (None, None)
            if similarity is not None and similarity >= threshold:
                return Verdict(False, similarity, nearest)
            committed = {
                "id": f"{self.id_prefix}-{len(self.records):06d}",
                **record,
                "nearest_similarity": None if similarity is None else round(similarity, 4),
            }
            self.memory_dir.mkdir(parents=True, exist_ok=True)
            # Embedding first, corpus line second: a crash in between leaves an extra row, which a
            # reload drops; the corpus line is the commit point.
            with open(self._mem(EMBEDDINGS), "ab") as f:
                f.write(vector.tobytes())
                f.flush()
                os.fsync(f.fileno())
            append_line(self.corpus_path, committed)
            self.index.add(vector)
            self.records.append(committed)
            for (name, missing), counter in self.counters.items():
                if (value := committed.get(name) or missing) is not None:
                    counter[value] += 1
            self._switch_if_due()
            return Verdict(True, similarity, nearest, committed)

    def reject(self, record: dict) -> None:
        with self.lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            append_line(self.rejects_path, record)

    def save_index(self) -> None:
        """Persist the FAISS index (atomically) so the next run loads it instead of rebuilding."""
        with self.lock:
            if not self.records:
                return
            self.memory_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self._mem(INDEX), faiss.serialize_index(self.index).tobytes())
            meta = {
                "count": len(self.records),
                "dim": self.dim,
                "metric": "inner_product_on_l2_normalised",
                "kind": indexes.kind_of(self.index),
            }
            write_atomic(self._mem(INDEX_META), json.dumps(meta).encode())
