"""What each document is conditioned on: sampled keywords, or a real seed document."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np

from agents.prompts import Domain
from core.errors import UserError
from core.jsonl import read_documents


def sample_seeds(domain: Domain, k: int, rng: random.Random) -> dict:
    """k distinct keywords from the pool, plus a genre and an audience when the domain lists
    them."""
    if k < 1:
        raise UserError("keywords per document must be at least 1")
    return {
        "seeds": rng.sample(domain.keywords, min(k, len(domain.keywords))),
        "genre": rng.choice(domain.genres) if domain.genres else "",
        "audience": rng.choice(domain.audiences) if domain.audiences else "",
    }


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
