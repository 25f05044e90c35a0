"""Semantic diversity from document embeddings (unit vectors, all-MiniLM-L6-v2 by default).

All take L2-normalised rows, so inner product is cosine similarity.
"""

from __future__ import annotations

import faiss
import numpy as np


def remote_clique(x: np.ndarray) -> float:
    """Mean cosine distance over pairs of distinct documents: higher = more diverse.

    Exact in O(n d): the sum of all pairwise similarities is |sum x|^2, minus the n self-pairs.
    (The `diversity` package averages over all n^2 entries, self-pairs included: (n-1)/n of this.)
    """
    n = len(x)
    total = np.square(x.sum(axis=0, dtype=np.float64)).sum()
    return float(1.0 - (total - n) / (n * (n - 1)))


def chamfer(x: np.ndarray) -> float:
    """Mean cosine distance to the nearest other document: higher = more diverse."""
    return float(1.0 - _nearest_other(x).mean())


def near_duplicates(x: np.ndarray, threshold: float) -> float:
    """Share of documents with another document at cosine similarity >= threshold (the novelty
    gate's own test, applied after the fact to the whole sample)."""
    return float((_nearest_other(x) >= threshold).mean())


def _nearest_other(x: np.ndarray) -> np.ndarray:
    """Similarity of each row to its nearest other row (exact search; duplicates count)."""
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(x, dtype=np.float32))
    sims, ids = index.search(np.ascontiguousarray(x, dtype=np.float32), 2)
    # Row i's own entry is normally first; with exact duplicates the order of ties is arbitrary.
    own_first = ids[:, 0] == np.arange(len(x))
    return np.where(own_first, sims[:, 1], sims[:, 0]).clip(-1.0, 1.0)


def vendi(x: np.ndarray) -> float:
    """Vendi score (Friedman & Dieng 2023) with the cosine kernel: the effective number of distinct
    documents, from 1 (all identical) to n. Computed from the d x d dual by the vendi-score
    package."""
    from vendi_score import vendi

    return float(vendi.score_dual(x.astype(np.float64), normalize=True))
