"""Novelty-gate indexes on real-text embeddings: search + add latency, build time, size and \
near-duplicate recall.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.novelty_real [--sizes 10000 100000 1000000]
        [--ops 200]

Real texts (all-MiniLM-L6-v2 via memory/embedder.py): FPB sentences, PubMedQA passages (each
`contexts` entry and each `long_answer`) and generated documents found under `--runs`
(`*/corpus.jsonl`). 10 % of the real texts are held out as novel queries; the rest go into the
index.

Growing the base to N vectors: the indexed real texts are split in two halves, anchors and parents.
Each synthetic vector is m = normalise(w1*p1 + w2*p2 + w3*p3), three random parent embeddings with
weights ~ Dirichlet(5, 5, 5) (no parent dominates), then normalise(m + g), g isotropic Gaussian
noise of norm ~0.3. Mixtures stay in the span and the dense regions of real embeddings (their
anisotropy and topic clusters); balanced weights keep a synthetic vector from being a near-copy of
any one parent; and because near-duplicate queries are made only from anchors, which are never
parents, the grown base does not crowd the queries' sources with vectors derived from them (which
would make near-duplicates easy to find and inflate recall). Mixing two dominant parents, or no
noise, crowded the real rows: their nearest-neighbour similarity went to ~0.96 at 100k. The
benchmark prints the nearest-neighbour similarity of anchor rows and of synthetic rows at each size
against the real-only distribution (and the Kolmogorov-Smirnov distance).

Queries: near-copies of indexed real texts (anchors) (word dropout, clause reorder, number swaps,
entity swaps, truncation, a combination), embedded with the same model, kept when their exact
nearest similarity is >= the threshold (the gate must send them back); and the held-out real texts
(novel). Recall = share of those near-duplicate queries for which the index also reports a neighbour
>= threshold; "wrong" counts all queries where the index's gate decision differs from exact
search's.

Latency: one gate operation = search top-1 for one query, then add one vector (as Memory.admit
does); queries alternate between novel and near-duplicate ones, the added vectors are fresh
synthetic ones.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import random
import re
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from benchmarks.novelty_threshold import PERTURB

CACHE = Path("runs/novelty_real")


# -- texts and queries ----------------------------------------------------------------------------
def real_texts(data: Path, runs: str) -> list[str]:
    texts = [json.loads(line)["text"] for line in open(data / "finance" / "fpb.jsonl")]
    for line in open(data / "biomed" / "pubmedqa_pqal.jsonl"):
        record = json.loads(line)
        texts += record["contexts"] + [record["long_answer"]]
    for path in sorted(glob.glob(os.path.join(runs, "*", "corpus.jsonl"))):
        texts += [json.loads(line)["text"] for line in open(path) if line.strip()]
    seen, unique = set(), []
    for text in texts:
        text = text.strip()
        if len(text.split()) >= 5 and text not in seen:
            seen.add(text)
            unique.append(text)
    return unique


def swap_entities(text: str, rng: random.Random) -> str:
    """Swap capitalised words (names, companies, places) for other capitalised words of the text."""
    words = text.split()
    caps = [i for i, w in enumerate(words) if i and w[:1].isupper()]
    if len(caps) >= 2:
        picked = [words[i] for i in caps]
        rng.shuffle(picked)
        for i, w in zip(caps, picked):
            words[i] = w
    return " ".join(words)


def reorder_clauses(text: str, rng: random.Random) -> str:
    parts = [p for p in re.split(r",\s+|;\s+|\s+and\s+", text) if p]
    if len(parts) < 2:
        return PERTURB["shuffle"](text, rng)
    rng.shuffle(parts)
    return ", ".join(parts)


PERTURBATIONS = {
    **PERTURB,
    "entities": swap_entities,
    "clauses": reorder_clauses,
    "drop5": lambda t, r: PERTURB["drop10"](t, r, 0.05),
}


def cached_embeddings(texts: list[str], name: str) -> np.ndarray:
    """Embeddings of `texts`, cached as .npy (keyed by a hash of the texts; no pickle)."""
    key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"{name}-{key}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    from memory.embedder import default_embedder

    start = time.perf_counter()
    vectors = default_embedder().encode(texts)
    print(f"embedded {len(texts)} {name} texts in {time.perf_counter() - start:.0f} s", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors, allow_pickle=False)
    return vectors


# -- the base -------------------------------------------------------------------------------------
def normalise(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(
        rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32
    )


def synthetic(
    parents: np.ndarray,
    count: int,
    rng: np.random.Generator,
    k: int = 3,
    alpha: float = 5.0,
    noise: float = 0.3,
) -> np.ndarray:
    out = np.empty((count, parents.shape[1]), dtype=np.float32)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        w = rng.dirichlet([alpha] * k, n).astype(np.float32)
        mix = normalise(
            sum(w[:, j : j + 1] * parents[rng.integers(len(parents), size=n)] for j in range(k))
        )
        mix += rng.standard_normal(mix.shape, dtype=np.float32) * (
            noise / np.sqrt(parents.shape[1])
        )
        out[start : start + n] = normalise(mix)
    return out


def ks(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.linspace(0, 1, 201)
    return float(np.max(np.abs((a[:, None] <= grid).mean(0) - (b[:, None] <= grid).mean(0))))


def pct(values: np.ndarray) -> str:
    return (
        " ".join(f"p{q}={np.percentile(values, q):.3f}" for q in (5, 50, 95, 99))
        + f" >=0.85: {np.mean(values >= 0.85):.1%}"
    )


def nn_similarity(
    base: np.ndarray, rows: np.ndarray, sample: int, rng: np.random.Generator
) -> np.ndarray:
    """Similarity of sampled base rows to their nearest *other* base row (exact)."""
    picks = rng.choice(rows, min(sample, len(rows)), replace=False)
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    scores, ids = index.search(base[picks], 2)
    return np.where(ids[:, 0] == picks, scores[:, 1], scores[:, 0])


# -- index configurations -------------------------------------------------------------------------
def nlist_for(n: int) -> int:
    from memory.index import ivf_nlist

    return ivf_nlist(n)


def configs(size: int, kinds: set[str]):
    """(name, factory(base) -> index, build_seconds) for each configuration at this size."""
    d = 384
    out = []
    if "flat" in kinds:
        out.append(("flat", lambda: faiss.IndexFlatIP(d), {}))
    if "sq" in kinds:
        out.append(
            (
                "flat fp16",
                lambda: faiss.IndexScalarQuantizer(
                    d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
                ),
                {},
            )
        )
        out.append(
            (
                "flat SQ8",
                lambda: faiss.IndexScalarQuantizer(
                    d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
                ),
                {},
            )
        )
    if "rerank" in kinds:

        def refine():
            index = faiss.IndexRefineFlat(
                faiss.IndexScalarQuantizer(
                    d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
                )
            )
            index.k_factor = 8
            return index

        out.append(("SQ8 + exact re-rank (k*8)", refine, {}))
    if "hnsw" in kinds:

        def hnsw():
            index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 40
            return index

        out.append(("HNSW M=32", hnsw, {"efSearch": [16, 32, 64, 128, 256]}))
    if "ivf" in kinds:
        from memory.index import new_ivf

        nlist = nlist_for(size)
        out.append(
            (
                f"IVF-flat nlist={nlist}",
                lambda: new_ivf(d, size),
                {"nprobe": [1, 2, 4, 8, 16, 32, 64, 128]},
            )
        )
    return out


def set_param(index, name: str, value: int) -> None:
    if name == "efSearch":
        index.hnsw.efSearch = value
    else:
        faiss.extract_index_ivf(index).nprobe = value


def index_bytes(index) -> int:
    fd, path = tempfile.mkstemp(suffix=".faiss")
    os.close(fd)
    try:
        faiss.write_index(index, path)
        return os.path.getsize(path)
    finally:
        os.unlink(path)


def gate_latency(index, queries: np.ndarray, adds: np.ndarray, ops: int) -> tuple[float, float]:
    times = []
    for i in range(ops):
        q, a = queries[i % len(queries)][None], adds[i][None]
        t0 = time.perf_counter()
        index.search(q, 1)
        index.add(a)
        times.append(time.perf_counter() - t0)
    p50, p99 = np.percentile(times, [50, 99]) * 1000
    return p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument(
        "--runs",
        default="/work/main/runs",
        help="where generated corpora (*/corpus.jsonl) are read",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--threshold", type=float, default=0.85)
    parser.add_argument("--kinds", nargs="+", default=["flat", "sq", "rerank", "hnsw", "ivf"])
    parser.add_argument(
        "--hnsw-max",
        type=int,
        default=100_000,
        help="skip HNSW above this size (its build is minutes)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng, prng = np.random.default_rng(args.seed), random.Random(args.seed)

    texts = real_texts(Path(args.data), args.runs)
    vectors = cached_embeddings(texts, "real")
    order = np.random.default_rng(args.seed).permutation(len(texts))
    held = order[: len(texts) // 10]
    indexed = order[len(texts) // 10 :]
    names = list(PERTURBATIONS)
    real = vectors[indexed]
    anchors, parents = indexed[: len(indexed) // 2], real[len(indexed) // 2 :]
    sources = [int(i) for i in rng.choice(anchors, min(2000, len(anchors)), replace=False)]
    kinds = [names[k % len(names)] for k in range(len(sources))]
    perturbed = [PERTURBATIONS[kind](texts[i], prng) for i, kind in zip(sources, kinds)]
    near = cached_embeddings(perturbed, "near")
    novel = vectors[held]
    print(
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {os.cpu_count()} "
        f"cores, load {os.getloadavg()[0]:.2f}; {len(indexed)} indexed real texts, {len(held)} "
        f"held out, {len(perturbed)} perturbed queries"
    )
    real_nn = nn_similarity(real, np.arange(len(real)), 2000, rng)
    print(f"nearest-neighbour similarity, real texts only ({len(real)}): {pct(real_nn)}")

    rows = []
    for size in args.sizes:
        base = np.vstack([real, synthetic(parents, max(0, size - len(real)), rng)])
        adds = synthetic(parents, args.ops, rng)
        print(f"\n## {size:,} vectors ({len(real)} real + {len(base) - len(real):,} synthetic)")
        anchor_nn = nn_similarity(base, np.arange(len(anchors)), 2000, rng)
        print(
            f"NN similarity, anchor rows:    {pct(anchor_nn)}  KS vs real-only "
            f"{ks(anchor_nn, real_nn):.3f}"
        )
        if len(base) > len(real):
            synth_nn = nn_similarity(base, np.arange(len(real), len(base)), 2000, rng)
            print(
                f"NN similarity, synthetic rows: {pct(synth_nn)}  KS vs real-only "
                f"{ks(synth_nn, real_nn):.3f}"
            )
        exact = faiss.IndexFlatIP(base.shape[1])
        exact.add(base)
        queries = np.vstack([near, novel])
        truth = exact.search(queries, 1)[0][:, 0] >= args.threshold
        dup = truth[: len(near)]
        print(
            f"near-duplicate queries (exact >= {args.threshold}): {dup.sum()} of {len(near)} "
            "perturbed; novel held-out queries flagged by exact search: "
            f"{truth[len(near) :].sum()} of {len(novel)}"
        )
        by_kind = {
            k: f"{np.mean(dup[[i for i, x in enumerate(kinds) if x == k]]):.2f}" for k in names
        }
        print(
            "share of perturbed queries still >= threshold, by perturbation: "
            + ", ".join(f"{k} {v}" for k, v in by_kind.items())
        )
        mixed = np.empty((2 * min(len(novel), int(dup.sum())), base.shape[1]), dtype=np.float32)
        mixed[0::2], mixed[1::2] = novel[: len(mixed) // 2], near[dup][: len(mixed) // 2]
        del exact
        print(
            "index | param | build s | size MB | search+add p50 / p99 ms | near-dup recall | wrong "
            "decisions"
        )
        for name, factory, sweep in configs(size, set(args.kinds)):
            if name.startswith("HNSW") and size > args.hnsw_max:
                print(f"{name} | skipped above --hnsw-max {args.hnsw_max:,}")
                continue
            index = factory()
            start = time.perf_counter()
            if not index.is_trained:
                from memory.index import train_sample

                ivf = faiss.try_extract_index_ivf(index)
                index.train(train_sample(base, ivf.nlist if ivf else 1024, rng))
            for chunk in range(0, len(base), 50_000):
                index.add(base[chunk : chunk + 50_000])
            build = time.perf_counter() - start
            size_mb = index_bytes(index) / 2**20
            ((param, values),) = sweep.items() if sweep else [("-", [None])]
            for value in values:
                if value is not None:
                    set_param(index, param, value)
                found = index.search(queries, 1)[0][:, 0] >= args.threshold
                recall, wrong = found[: len(near)][dup].mean(), int((found != truth).sum())
                clone = faiss.clone_index(index) if len(values) > 1 else index
                p50, p99 = gate_latency(clone, mixed, adds, args.ops)
                del clone
                label = "-" if value is None else f"{param}={value}"
                rows.append((size, name, label, build, size_mb, p50, p99, recall, wrong))
                print(
                    f"{size:>9,} | {name} | {label} | {build:6.1f} | {size_mb:7.0f} | {p50:6.3f} / "
                    f"{p99:6.3f} | {recall:.4f} | {wrong}",
                    flush=True,
                )
            del index
    print(
        "\n| vectors | index | parameter | build (s) | size (MB) | search+add p50 / p99 (ms) | "
        "near-dup recall | wrong decisions |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for size, name, label, build, size_mb, p50, p99, recall, wrong in rows:
        print(
            f"| {size:,} | {name} | {label} | {build:.1f} | {size_mb:.0f} | {p50:.3f} / {p99:.3f} "
            f"| {recall:.4f} | {wrong} |"
        )


if __name__ == "__main__":
    main()
