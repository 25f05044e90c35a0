"""Corpora to compare: read, label, sample to equal size, and what a run directory adds.

A corpus is a JSONL file with a `text` per line, or PubMedQA's shape (`contexts` list plus
`long_answer`, joined into the abstract), or an instruction set (graph.instruct's
`instructions.jsonl` or its chat export): there the instruction is the text measured. A
`corpus.jsonl` inside a run directory also brings the run's own embeddings (memory/embeddings.f32,
same order) and its rejection rate (rejects.jsonl).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.jsonl import count_lines, iter_jsonl
from core.rundir import CORPUS, EMBEDDINGS, INSTRUCTIONS, RunDir, is_run_file
from memory.embedder import DIM


@dataclass
class Corpus:
    name: str
    path: Path
    texts: list[str]
    reference: bool = False  # real text, the target diversity approaches
    embeddings: np.ndarray | None = None  # the run's stored vectors, row i = texts[i]
    rejection_rate: float | None = None
    method: str | None = None
    # each text's seed keywords ([] for real text)
    seeds: list[list[str]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def _text(record: dict) -> str:
    if isinstance(record.get("text"), str):
        return record["text"]
    # PubMedQA: the abstract is its contexts and conclusion
    if isinstance(record.get("contexts"), list):
        return " ".join(
            [*map(str, record["contexts"]), str(record.get("long_answer") or "")]
        ).strip()
    if isinstance(record.get("instruction"), str):
        return record["instruction"]
    # a chat export: the user's turns are the instruction
    if isinstance(record.get("messages"), list):
        return "\n".join(
            str(m.get("content", ""))
            for m in record["messages"]
            if isinstance(m, dict) and m.get("role") == "user"
        )
    return ""


def read_texts(path: Path) -> tuple[list[str], list[dict]]:
    """Texts and records; a line that is not JSON or has no text is a user error naming the line.
    A run's own file is read up to its last newline (the run may still be writing)."""
    texts, records = [], []
    for number, record in iter_jsonl(path, committed=is_run_file(path)):
        text = _text(record) if isinstance(record, dict) else ""
        if not text.strip():
            raise UserError(f"{path}: line {number} has no 'text' (or PubMedQA 'contexts')")
        texts.append(text.strip())
        records.append(record)
    return texts, records


def load(spec: str, reference: bool = False) -> Corpus:
    """`PATH` or `NAME=PATH`. A run's corpus is named after its directory, other files after their
    stem."""
    name, sep, path_text = spec.partition("=")
    if not sep or "/" in name:  # a plain path (which may itself contain "=")
        name, path_text = "", spec
    path = Path(path_text)
    if path.is_dir():
        path = RunDir.find(path).records
    if not path.is_file():
        raise UserError(f"corpus not found: {path_text}")
    texts, records = read_texts(path)
    if len(texts) < 2:
        raise UserError(f"{path}: {len(texts)} document(s); diversity needs at least 2")
    name = name or (path.parent.name if path.name in (CORPUS, INSTRUCTIONS) else path.stem)
    corpus = Corpus(name=name, path=path, texts=texts, reference=reference)
    corpus.method = next((r.get("method") for r in records if r.get("method")), None)
    corpus.seeds = [
        list(r.get("seeds") or []) if isinstance(r.get("seeds"), list) else [] for r in records
    ]
    _attach_run(corpus)
    return corpus


def _attach_run(corpus: Corpus) -> None:
    if corpus.path.name not in (CORPUS, INSTRUCTIONS):  # an instruction run has its own memory/
        return
    run = RunDir(corpus.path.parent, corpus.path.name)
    if run.rejects.exists() or run.manifest.exists():
        rejected = count_lines(run.rejects)
        corpus.rejection_rate = rejected / (rejected + len(corpus.texts))
    stored = run.memory / EMBEDDINGS
    if stored.exists() and stored.stat().st_size % 4 == 0:
        vectors = np.fromfile(stored, dtype=np.float32)
        # exactly one all-MiniLM vector per line: trust the order
        if vectors.size == len(corpus.texts) * DIM:
            corpus.embeddings = vectors.reshape(len(corpus.texts), DIM)


def sample(
    corpus: Corpus, docs: int | None = None, tokens: int | None = None, count=None, seed: int = 0
) -> list[int]:
    """Indices of a seeded random sample: `docs` documents, or whole documents until `tokens`
    tokens (as counted by `count`) are reached."""
    order = random.Random(seed).sample(range(len(corpus.texts)), len(corpus.texts))
    if docs is not None:
        return sorted(order[:docs])  # the caller checks docs against the corpus size
    taken, total = [], 0
    for i in order:
        if total >= tokens:
            break
        taken.append(i)
        total += count(corpus.texts[i])
    if total < tokens:
        raise UserError(
            f"{corpus.name} holds {total:,} tokens, fewer than the {tokens:,} asked for; lower "
            "--tokens"
        )
    if len(taken) < 2:
        raise UserError(
            f"{tokens:,} tokens are one document of {corpus.name}; diversity needs at least 2: "
            "raise --tokens"
        )
    return sorted(taken)
