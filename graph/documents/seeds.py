"""Real seed documents: what MetaSynth documents are conditioned on under --seed-docs (and the
examples template-icl shows). Sampled keywords: agents.prompts.Domain.sample_seeds."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np

from core.jsonl import read_documents


def read_seed_docs(path: str | Path) -> list[str]:
    """The `text` of every document of a JSONL file or a run directory (errors name the line:
    core.jsonl.read_documents)."""
    return [r["text"].strip() for r in read_documents(path, "seed documents file")]


class SeedPicker:
    """Topic-aware seeding: hands out real documents so that consecutive picks are far apart.

    Farthest-point sampling over the seed embeddings: among a random pool of unused documents, take
    the one whose highest cosine similarity to the last `window` picks is lowest.
    """

    def __init__(
        self, texts: list[str], embedder, seed: int = 0, pool: int = 256, window: int = 8
    ) -> None:
        self.texts = texts
        self.vectors = embedder.encode(texts)
        self.rng = random.Random(seed)
        self.pool, self.window = pool, window
        self.recent: list[int] = []
        self.unused = set(range(len(texts)))
        self.lock = threading.Lock()

    def next(self) -> str:
        with self.lock:
            if not self.unused:  # every seed used once: start another pass
                self.unused = set(range(len(self.texts)))
            candidates = self.rng.sample(sorted(self.unused), min(self.pool, len(self.unused)))
            if self.recent:
                closeness = (self.vectors[candidates] @ self.vectors[self.recent].T).max(axis=1)
                choice = candidates[int(np.argmin(closeness))]
            else:
                choice = candidates[0]
            self.unused.discard(choice)
            self.recent = (self.recent + [choice])[-self.window :]
            return self.texts[choice]
