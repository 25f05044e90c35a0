"""Where the quality gate's talk threshold comes from: real text against memory.quality.TALK.

    # needs ../shared/data
    .venv/bin/python -m benchmarks.talk_threshold [CORPUS.jsonl | RUN_DIR ...]

Every sentence of every real document (PubMedQA abstracts, FPB sentences) is embedded with the
gate's model and compared with the TALK sentences (what a writer says about its task or its output);
a document scores its nearest sentence's cosine. Prints, per corpus, the share of documents at or
above a few thresholds and the real sentences nearest to TALK. The rule: the lowest multiple of 0.05
that flags at most 0.5 % of the real documents of each domain. Corpora given as arguments (generated
ones) are scored the same way, with a few of their flagged sentences to read.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from benchmarks.quality_real import real_texts
from memory import quality
from memory.embedder import default_embedder
from metrics.corpora import read_texts

THRESHOLDS = (0.40, 0.45, 0.50, 0.55, 0.60)
REAL_LIMIT = 0.005  # the share of real documents the threshold may flag


def scores(texts: list[str]) -> list[tuple[float, str]]:
    talk = quality.Talk(default_embedder())
    return [talk(text) for text in texts]


def show(name: str, found: list[tuple[float, str]], examples: int, rng: random.Random) -> None:
    values = np.array([s for s, _ in found])
    shares = ", ".join(f">= {t:.2f}: {(values >= t).mean():.1%}" for t in THRESHOLDS)
    print(f"{name}: {len(found)} documents; {shares}")
    flagged = [f for f in found if f[0] >= quality.TALK_THRESHOLD]
    nearest = sorted(found, reverse=True)[:examples] if not flagged else flagged
    for score, sentence in rng.sample(nearest, min(examples, len(nearest))):
        print(f"    {score:.3f}  {sentence[:160]}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.talk_threshold")
    p.add_argument("corpora", nargs="*", type=Path, help="generated corpora to score as well")
    p.add_argument("--examples", type=int, default=3, help="sentences shown per corpus")
    args = p.parse_args(argv)
    rng = random.Random(0)
    limits = []
    for name, texts in real_texts().items():
        found = scores(texts)
        show(name, found, args.examples, rng)
        values = np.array([s for s, _ in found])
        limits.append(
            min(t for t in np.arange(0.05, 1.0001, 0.05) if (values >= t).mean() <= REAL_LIMIT)
        )
    rule = max(limits)
    print(
        f"threshold by the rule: {rule:.2f} (memory.quality.TALK_THRESHOLD = "
        f"{quality.TALK_THRESHOLD:.2f})"
    )
    for path in args.corpora:
        texts = read_texts(path / "corpus.jsonl" if path.is_dir() else path)[0]
        show(str(path), scores(texts), args.examples, rng)


if __name__ == "__main__":
    main()
