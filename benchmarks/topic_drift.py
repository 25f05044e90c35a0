"""How far each corpus's documents drift from their seed keywords and toward each other.

    python -m benchmarks.topic_drift RUN [RUN ...]

For every document of each run: the cosine (all-MiniLM-L6-v2, the gate's embedder) between the
document and its own seed keywords, and the mean cosine over all pairs of documents. A writer that
stays on its keywords spreads the corpus in embedding space; one that drifts to a generic voice
pulls documents together (docs/metrics.md, "Three design variants").
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from core.jsonl import read_jsonl
from core.rundir import RunDir


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories (their corpus.jsonl)")
    args = parser.parse_args()
    from memory.embedder import default_embedder

    embedder = default_embedder()
    print(
        "| corpus | cosine to its own seed keywords | mean pairwise cosine | words per document |"
    )
    print("|---|---|---|---|")
    for run in args.runs:
        records = read_jsonl(RunDir(run).records, committed=True)
        docs = embedder.encode([r["text"] for r in records])
        seeds = embedder.encode([", ".join(r.get("seeds") or []) for r in records])
        n = len(records)
        pairwise = (float((docs @ docs.T).sum()) - n) / (n * n - n)
        words = np.mean([len(r["text"].split()) for r in records])
        print(
            f"| {run} | {float((docs * seeds).sum(1).mean()):.3f} | {pairwise:.3f} | {words:.0f} |"
        )


if __name__ == "__main__":
    main()
