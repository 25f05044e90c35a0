"""Novelty-gate cost as the corpus grows: one search (top-1) + one add, exact vs HNSW.

    .venv/bin/python -m benchmarks.novelty_latency [--sizes 10000 100000 1000000] [--ops 200]

Vectors are random unit vectors (384-d, like all-MiniLM-L6-v2). Recall is measured on the gate's own
case: queries that are near-duplicates of stored vectors (cosine ~0.9 to the original), where the
approximate index must still report the near-duplicate above the threshold.
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

DIM = 384


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def build(kind: str, data: np.ndarray, m: int, ef_search: int):
    index = (
        faiss.IndexFlatIP(DIM)
        if kind == "flat"
        else faiss.IndexHNSWFlat(DIM, m, faiss.METRIC_INNER_PRODUCT)
    )
    if kind == "hnsw":
        index.hnsw.efConstruction = 40
        index.hnsw.efSearch = ef_search
    start = time.perf_counter()
    for chunk in range(0, len(data), 50_000):
        index.add(data[chunk : chunk + 50_000])
    return index, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--m", type=int, default=32)
    parser.add_argument("--ef-search", type=int, default=256)  # as memory/store.py ships
    parser.add_argument("--threshold", type=float, default=0.85)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; HNSW M={args.m} "
        f"efSearch={args.ef_search}"
    )
    print("size | index | build s | search+add ms (p50 / p99) | near-duplicate recall")
    for size in args.sizes:
        data = unit(rng.standard_normal((size, DIM), dtype=np.float32))
        picks = rng.choice(size, args.ops, replace=False)
        near = unit(
            data[picks]
            + 0.5 / np.sqrt(DIM) * rng.standard_normal((args.ops, DIM), dtype=np.float32)
        )
        fresh = unit(rng.standard_normal((args.ops, DIM), dtype=np.float32))
        for kind in ("flat", "hnsw"):
            index, seconds = build(kind, data, args.m, args.ef_search)
            found = index.search(near, 1)[0][:, 0] >= args.threshold
            times = []
            for i in range(args.ops):  # the gate: search the nearest, then commit one new vector
                t0 = time.perf_counter()
                index.search(fresh[i : i + 1], 1)
                index.add(fresh[i : i + 1])
                times.append(time.perf_counter() - t0)
            p50, p99 = np.percentile(times, [50, 99]) * 1000
            print(
                f"{size:>9,} | {kind:<5} | {seconds:7.1f} | {p50:7.2f} / {p99:7.2f} | "
                f"{found.mean():.3f}",
                flush=True,
            )
            del index


if __name__ == "__main__":
    main()
