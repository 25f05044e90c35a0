"""One run directory's corpus and novelty memory.

`corpus.jsonl` is the source of truth. Beside it, `memory/` holds the embedding of every committed
document (`embeddings.f32`, raw float32 rows in corpus order, so a reload never re-embeds) and the
FAISS index (`index.faiss`, written atomically; rebuilt from the embeddings when it is stale).
FAISS's own serialisation is used, never pickle.

`admit` is the novelty gate and the commit in one critical section: two documents in flight can never
both pass the check against a corpus that lacks the other.
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

from agents.errors import UserError
from memory import index as indexes

CORPUS, REJECTS = "corpus.jsonl", "rejects.jsonl"
MEMORY_DIR, EMBEDDINGS, INDEX, INDEX_META = "memory", "embeddings.f32", "index.faiss", "index.json"


def append_line(path: Path, record: dict) -> None:
    """Append one JSON line durably: a single write of the whole line, then fsync."""
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def repair_tail(path: Path) -> int:
    """Cut an unfinished last line (a hard stop inside a write); return the bytes dropped.

    Lines are written whole and end in a newline, so a line without one was never committed.
    """
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return 0
        f.seek(0)
        keep = f.read().rfind(b"\n") + 1
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep


def count_lines(path: Path) -> int:
    """Lines of a JSONL file (0 when it does not exist yet)."""
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def read_jsonl(path: Path, allow_partial_tail: bool = False) -> list[dict]:
    """Every record of a JSONL file; a corrupt line is a user error naming the line.
    With allow_partial_tail, an unfinished last line (no newline) is skipped: repair_tail cuts it."""
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip() or (allow_partial_tail and not line.endswith("\n")):
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}: line {number} is not valid JSON ({e.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise UserError(f"{path}: line {number} has no 'text' field")
            records.append(record)
    return records


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    similarity: float | None  # cosine similarity to the nearest committed document, None for the first
    nearest: dict | None  # that document's record
    record: dict | None = None  # the committed record (with its id) when accepted


class Memory:
    """The committed documents of one run, their embeddings and a FAISS inner-product index."""

    def __init__(self, run_dir: str | Path, embedder, id_prefix: str = "doc", index: str = "auto") -> None:
        if index not in indexes.KINDS:
            raise UserError(f"unknown index kind {index!r} ({', '.join(indexes.KINDS)})")
        self.dir = Path(run_dir)
        self.embedder = embedder
        self.dim = embedder.dim
        self.id_prefix = id_prefix
        self.kind = index
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self.index = self._new_index(0)
        self._load()

    def _new_index(self, n: int, vectors: np.ndarray | None = None):
        """The index `--index` wants for n documents (memory/index.py), holding `vectors`."""
        vectors = np.zeros((0, self.dim), dtype=np.float32) if vectors is None else vectors
        return indexes.build(indexes.wanted(self.kind, n), self.dim, vectors)

    def _switch_if_due(self) -> None:
        """Rebuild from the stored embeddings when the corpus outgrew the index (flat -> IVF, IVF retrain)."""
        if not indexes.fits(self.index, self.kind, self.index.ntotal):
            self.index = self._new_index(len(self.records), self._stored_embeddings(len(self.records)))

    # -- paths ---------------------------------------------------------------------------------
    @property
    def corpus_path(self) -> Path:
        return self.dir / CORPUS

    @property
    def rejects_path(self) -> Path:
        return self.dir / REJECTS

    def _mem(self, name: str) -> Path:
        return self.dir / MEMORY_DIR / name

    # -- loading -------------------------------------------------------------------------------
    def _load(self) -> None:
        self.records = read_jsonl(self.corpus_path)
        n = len(self.records)
        vectors = self._stored_embeddings(n)
        if len(vectors) < n:  # documents committed before their embeddings reached disk: embed the rest
            missing = self.embedder.encode([r["text"] for r in self.records[len(vectors):]])
            vectors = np.vstack([vectors, missing])
            if n:
                self.dir.joinpath(MEMORY_DIR).mkdir(parents=True, exist_ok=True)
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
        return Counter(r.get("category", "uncategorized") for r in self.records)

    # -- writes --------------------------------------------------------------------------------
    def admit(self, record: dict, vector: np.ndarray, threshold: float) -> Verdict:
        """Gate and commit atomically: commit `record` unless a committed document is >= threshold similar."""
        vector = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        with self.lock:
            top = self.nearest(vector, 1)
            similarity, nearest = top[0] if top else (None, None)
            if similarity is not None and similarity >= threshold:
                return Verdict(False, similarity, nearest)
            committed = {"id": f"{self.id_prefix}-{len(self.records):06d}", **record,
                         "nearest_similarity": None if similarity is None else round(similarity, 4)}
            self.dir.joinpath(MEMORY_DIR).mkdir(parents=True, exist_ok=True)
            # Embedding first, corpus line second: a crash in between leaves an extra row, which a
            # reload drops; the corpus line is the commit point.
            with open(self._mem(EMBEDDINGS), "ab") as f:
                f.write(vector.tobytes())
                f.flush()
                os.fsync(f.fileno())
            append_line(self.corpus_path, committed)
            self.index.add(vector)
            self.records.append(committed)
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
            self.dir.joinpath(MEMORY_DIR).mkdir(parents=True, exist_ok=True)
            write_atomic(self._mem(INDEX), faiss.serialize_index(self.index).tobytes())
            meta = {"count": len(self.records), "dim": self.dim, "metric": "inner_product_on_l2_normalised",
                    "kind": indexes.kind_of(self.index)}
            write_atomic(self._mem(INDEX_META), json.dumps(meta).encode())
