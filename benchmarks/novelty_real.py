"""Novelty-gate indexes on real-text embeddings: search + add latency, build time, size and near-duplicate recall.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.novelty_real [--sizes 10000 100000 1000000] [--ops 200]

Real texts (all-MiniLM-L6-v2 via memory/embedder.py): FPB sentences, PubMedQA passages (each `contexts`
entry and each `long_answer`) and generated documents found under `--runs` (`*/corpus.jsonl`). 10 % of
the real texts are held out as novel queries; the rest go into the index.

Growing the base to N vectors: each synthetic vector is normalise(a*x_i + (1-a)*x_j + noise) with x_i,
x_j two random real embeddings, a ~ U(0.3, 0.7) and isotropic Gaussian noise of norm ~0.25. Mixtures
stay in the span of real embeddings (their directions, anisotropy and cluster structure), and with two
random parents and mid-range weights a synthetic vector is not a near-copy of either parent. The
benchmark prints how the nearest-neighbour similarity of the grown base compares with the real one.

Queries: near-copies of indexed real texts (word dropout, clause reorder, number swaps, entity swaps,
truncation, a combination), embedded with the same model, kept when their exact nearest similarity
is >= the threshold (the gate must send them back); and the held-out real texts (novel). Recall = share
of those near-duplicate queries for which the index also reports a neighbour >= threshold; "wrong"
counts all queries where the index's gate decision differs from exact search's.

Latency: one gate operation = search top-1 for one query, then add one vector (as Memory.admit does);
queries alternate between novel and near-duplicate ones, the added vectors are fresh synthetic ones.
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


PERTURBATIONS = {**PERTURB, "entities": swap_entities, "clauses": reorder_clauses,
                 "drop5": lambda t, r: PERTURB["drop10"](t, r, 0.05)}


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
    return np.ascontiguousarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


def synthetic(real: np.ndarray, count: int, rng: np.random.Generator, noise: float = 0.25) -> np.ndarray:
    out = np.empty((count, real.shape[1]), dtype=np.float32)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        a = rng.uniform(0.3, 0.7, (n, 1)).astype(np.float32)
        mix = a * real[rng.integers(len(real), size=n)] + (1 - a) * real[rng.integers(len(real), size=n)]
        mix += rng.standard_normal(mix.shape, dtype=np.float32) * (noise / np.sqrt(real.shape[1]))
        out[start:start + n] = normalise(mix)
    return out


def pct(values: np.ndarray) -> str:
    return " ".join(f"p{q}={np.percentile(values, q):.3f}" for q in (5, 50, 95, 99)) + f" >=0.85: {np.mean(values >= 0.85):.1%}"


def nn_similarity(base: np.ndarray, rows: np.ndarray, sample: int, rng: np.random.Generator) -> np.ndarray:
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
        out.append(("flat fp16", lambda: faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT), {}))
        out.append(("flat SQ8", lambda: faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT), {}))
    if "rerank" in kinds:
        def refine():
            index = faiss.IndexRefineFlat(faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT))
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
        out.append((f"IVF-flat nlist={nlist}", lambda: new_ivf(d, size), {"nprobe": [1, 2, 4, 8, 16, 32, 64]}))
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
    parser.add_argument("--runs", default="/work/main/runs", help="where generated corpora (*/corpus.jsonl) are read")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--threshold", type=float, default=0.85)
    parser.add_argument("--kinds", nargs="+", default=["flat", "sq", "rerank", "hnsw", "ivf"])
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW above this size (its build is minutes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng, prng = np.random.default_rng(args.seed), random.Random(args.seed)

    texts = real_texts(Path(args.data), args.runs)
    vectors = cached_embeddings(texts, "real")
    order = np.random.default_rng(args.seed).permutation(len(texts))
    held = order[: len(texts) // 10]
    indexed = order[len(texts) // 10:]
    names = list(PERTURBATIONS)
    sources = [int(i) for i in rng.choice(indexed, min(2000, len(indexed)), replace=False)]
    kinds = [names[k % len(names)] for k in range(len(sources))]
    perturbed = [PERTURBATIONS[kind](texts[i], prng) for i, kind in zip(sources, kinds)]
    near = cached_embeddings(perturbed, "near")
    novel = vectors[held]
    real = vectors[indexed]
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}; {len(indexed)} indexed real texts, {len(held)} held out, "
          f"{len(perturbed)} perturbed queries")
    real_nn = nn_similarity(real, np.arange(len(real)), 2000, rng)
    print(f"nearest-neighbour similarity, real texts only ({len(real)}): {pct(real_nn)}")

    rows = []
    for size in args.sizes:
        base = np.vstack([real, synthetic(real, max(0, size - len(real)), rng)])
        adds = synthetic(real, args.ops, rng)
        print(f"\n## {size:,} vectors ({len(real)} real + {len(base) - len(real):,} synthetic)")
        print(f"NN similarity, real rows:      {pct(nn_similarity(base, np.arange(len(real)), 2000, rng))}")
        if len(base) > len(real):
            print(f"NN similarity, synthetic rows: {pct(nn_similarity(base, np.arange(len(real), len(base)), 2000, rng))}")
        exact = faiss.IndexFlatIP(base.shape[1])
        exact.add(base)
        queries = np.vstack([near, novel])
        truth = exact.search(queries, 1)[0][:, 0] >= args.threshold
        dup = truth[: len(near)]
        print(f"near-duplicate queries (exact >= {args.threshold}): {dup.sum()} of {len(near)} perturbed; "
              f"novel held-out queries flagged by exact search: {truth[len(near):].sum()} of {len(novel)}")
        by_kind = {k: f"{np.mean(dup[[i for i, x in enumerate(kinds) if x == k]]):.2f}" for k in names}
        print("share of perturbed queries still >= threshold, by perturbation: " + ", ".join(f"{k} {v}" for k, v in by_kind.items()))
        mixed = np.empty((2 * min(len(novel), int(dup.sum())), base.shape[1]), dtype=np.float32)
        mixed[0::2], mixed[1::2] = novel[: len(mixed) // 2], near[dup][: len(mixed) // 2]
        del exact
        print("index | param | build s | size MB | search+add p50 / p99 ms | near-dup recall | wrong decisions")
        for name, factory, sweep in configs(size, set(args.kinds)):
            if name.startswith("HNSW") and size > args.hnsw_max:
                print(f"{name} | skipped above --hnsw-max {args.hnsw_max:,}")
                continue
            index = factory()
            start = time.perf_counter()
            if not index.is_trained:
                from memory.index import train_sample

                index.train(train_sample(base, faiss.extract_index_ivf(index).nlist, rng))
            for chunk in range(0, len(base), 50_000):
                index.add(base[chunk:chunk + 50_000])
            build = time.perf_counter() - start
            size_mb = index_bytes(index) / 2**20
            (param, values), = sweep.items() if sweep else [("-", [None])]
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
                print(f"{size:>9,} | {name} | {label} | {build:6.1f} | {size_mb:7.0f} | {p50:6.3f} / {p99:6.3f} | "
                      f"{recall:.4f} | {wrong}", flush=True)
            del index
    print("\n| vectors | index | parameter | build (s) | size (MB) | search+add p50 / p99 (ms) | near-dup recall | wrong decisions |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for size, name, label, build, size_mb, p50, p99, recall, wrong in rows:
        print(f"| {size:,} | {name} | {label} | {build:.1f} | {size_mb:.0f} | {p50:.3f} / {p99:.3f} | {recall:.4f} | {wrong} |")


if __name__ == "__main__":
    main()
