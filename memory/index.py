"""Which FAISS index the novelty gate uses, and how it is built, trained and retrained as the corpus
grows.

Kinds (`--index`):
  flat  exact inner-product search (IndexFlatIP).
  hnsw  IndexHNSWFlat (M=32, efSearch=256): kept for runs that chose it; slower and less exact than
        IVF here.
  ivf   IndexIVFFlat: k-means cells over the stored embeddings, NPROBE cells searched per query;
        vectors are stored whole, so a reported similarity is exact and only a miss (the
        near-duplicate sits in an unprobed cell) can change the gate's decision. Exact search until
        IVF_MIN documents (too few to train).
  auto  exact search below AUTO_IVF_AFTER documents, IVF from there (docs/novelty-index.md has the
        numbers).

IVF training: nlist = ivf_nlist(n) cells (about 4*sqrt(n), a power of two, >= 39 training points per
cell), trained on at most TRAIN_PER_CELL points per cell sampled from the stored embeddings. The
index is rebuilt and retrained from the stored embeddings (embeddings.f32) each time ivf_nlist(n)
doubles (at 10k, 20k, 40k, 132k, 525k, 2.1M documents): a one-off pause inside the commit, ~13 s at
100k and ~3 min at 1M on one loaded core (docs/novelty-index.md).
"""

from __future__ import annotations

import bisect
import math

import faiss
import numpy as np

KINDS = ("auto", "flat", "hnsw", "ivf")
AUTO_IVF_AFTER = 10_000
IVF_MIN = 1_000
NPROBE = 16
TRAIN_PER_CELL = 64
KMEANS_ITERATIONS = 10
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 40, 256


def ivf_nlist(n: int) -> int:
    """Cells for n vectors: the power of two nearest 4*sqrt(n), capped so each cell gets >= 39
    training points."""
    power = round(math.log2(4 * math.sqrt(max(n, 1))))
    while power > 0 and 39 * 2**power > n:
        power -= 1
    return 2**power


def kind_of(index) -> str:
    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    return "flat"


def wanted(kind: str, n: int) -> str:
    """The concrete index kind for a corpus of n documents under `--index kind`."""
    if kind == "auto":
        return "ivf" if n >= AUTO_IVF_AFTER else "flat"
    if kind == "ivf":
        return "ivf" if n >= IVF_MIN else "flat"
    return kind


def new_ivf(dim: int, n: int, nprobe: int = NPROBE):
    index = faiss.IndexIVFFlat(
        faiss.IndexFlatIP(dim), dim, ivf_nlist(n), faiss.METRIC_INNER_PRODUCT
    )
    index.cp.niter = KMEANS_ITERATIONS
    index.cp.seed = 1234
    index.nprobe = nprobe
    return index


def train_sample(
    vectors: np.ndarray, nlist: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    limit = TRAIN_PER_CELL * nlist
    if len(vectors) <= limit:
        return vectors
    rng = rng or np.random.default_rng(0)
    return np.ascontiguousarray(vectors[np.sort(rng.choice(len(vectors), limit, replace=False))])


def build(kind: str, dim: int, vectors: np.ndarray):
    """A new index of the concrete `kind` holding `vectors` (trained on them first for IVF)."""
    if kind == "ivf":
        index = new_ivf(dim, len(vectors))
        index.train(train_sample(vectors, index.nlist))
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction, index.hnsw.efSearch = HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(vectors)
    return index


def fits(index, kind: str, n: int) -> bool:
    """Whether `index` is what `--index kind` wants for n documents (else rebuild from the
    embeddings)."""
    concrete = wanted(kind, n)
    if kind_of(index) != concrete:
        return False
    if concrete == "ivf":
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = NPROBE  # a search parameter, not part of what was trained
        return ivf_nlist(n) < 2 * ivf.nlist
    return True


def rebuild_at(index, kind: str) -> float:
    """The corpus size from which `index` no longer `fits` `--index kind`: the commit that reaches
    it rebuilds, so no commit before it needs to ask (math.inf: it always fits). `index` must be
    what `kind` wants for its size now (as Memory builds and loads them)."""
    current = kind_of(index)
    if current == "ivf":  # retrained once the cells it would want have doubled
        doubled = 2 * faiss.extract_index_ivf(index).nlist
        return bisect.bisect_left(range(1 << 40), doubled, key=ivf_nlist)
    if current == "flat":
        return {"auto": AUTO_IVF_AFTER, "ivf": IVF_MIN}.get(kind, math.inf)
    return math.inf
