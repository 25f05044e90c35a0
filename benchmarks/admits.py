"""How many admits per second the memory owner of `graph.run --workers` sustains.

    .venv/bin/python -m benchmarks.admits [--clients 1 2 4] [--admits 2000] [--corpus 0 10000]

The owner is the one process every committed document goes through (memory/remote.py): gate,
append, fsync. Clients (Ray tasks, each in its own process) admit random unit vectors back to back,
so nearly all are accepted; the corpus starts with --corpus documents already committed (the
gate's search grows with it). Printed: admits/s through the owner and the latency a client sees
(p50, p99), and the same Memory.admit called in one process without Ray, for comparison.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from core.rundir import EMBEDDINGS, RunDir
from memory.embedder import DIM, LazyEmbedder
from memory.remote import MemoryOwner
from memory.store import Memory


def unit_vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def seeded_run(directory: str, corpus: int) -> None:
    """A run directory already holding `corpus` committed documents and their embeddings."""
    run = RunDir(Path(directory))
    run.memory.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps({"id": f"doc-{i:06d}", "text": f"document {i}"}) for i in range(corpus))
    run.records.write_text("".join(f"{line}\n" for line in lines))
    (run.memory / EMBEDDINGS).write_bytes(unit_vectors(corpus, seed=1).tobytes())


def in_process(directory: str, admits: int) -> tuple[float, np.ndarray]:
    memory = Memory(directory, LazyEmbedder(), index="auto")
    seconds = []
    t0 = time.perf_counter()
    for vector in unit_vectors(admits, seed=2):
        t = time.perf_counter()
        memory.admit({"text": "x"}, vector, threshold=2.0)
        seconds.append(time.perf_counter() - t)
    return admits / (time.perf_counter() - t0), np.array(seconds)


def through_owner(ray, directory: str, clients: int, admits: int) -> tuple[float, np.ndarray]:
    owner = ray.remote(MemoryOwner).options(num_cpus=0).remote(directory, "doc", "auto")
    ray.get(owner.size.remote())

    @ray.remote(num_cpus=0)
    def client(owner, seed: int, n: int, start: float) -> list[float]:
        time.sleep(max(0.0, start - time.time()))
        seconds = []
        for vector in unit_vectors(n, seed):
            t = time.perf_counter()
            ray.get(owner.admit.remote({"text": "x"}, vector, 2.0, None))
            seconds.append(time.perf_counter() - t)
        return seconds

    share = admits // clients
    start = time.time() + 2  # every client starts at once, after its process is up
    refs = [client.remote(owner, 10 + c, share, start) for c in range(clients)]
    seconds = np.concatenate([np.array(s) for s in ray.get(refs)])
    rate = share * clients / (time.time() - start)
    ray.kill(owner)
    return rate, seconds


def show(label: str, rate: float, seconds: np.ndarray) -> None:
    p50, p99 = np.percentile(seconds * 1000, [50, 99])
    print(f"  {label}: {rate:,.0f} admits/s, latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--admits", type=int, default=2000)
    parser.add_argument("--corpus", type=int, nargs="+", default=[0, 10_000])
    args = parser.parse_args()
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        for corpus in args.corpus:
            print(f"corpus of {corpus:,} documents, {args.admits:,} admits:")
            with tempfile.TemporaryDirectory() as tmp:
                seeded_run(tmp, corpus)
                show("one process, no Ray", *in_process(tmp, args.admits))
            for clients in args.clients:
                with tempfile.TemporaryDirectory() as tmp:
                    seeded_run(tmp, corpus)
                    show(
                        f"owner actor, {clients} clients",
                        *through_owner(ray, tmp, clients, args.admits),
                    )
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
