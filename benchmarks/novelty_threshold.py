"""Where should the novelty gate sit? Cosine similarities (all-MiniLM-L6-v2) of real domain text
against light paraphrases of itself, and against the nearest *other* real document.

    .venv/bin/python -m benchmarks.novelty_threshold [--data ../shared/data] [--n 400]

A good threshold sits above nearly all distinct-document pairs (so real diversity passes) and below
most light paraphrases (so near-copies are sent back). Paraphrases are rule-based and seeded:
  drop10   - 10 % of words dropped
  shuffle  - sentence order shuffled (multi-sentence documents) or clause order swapped
  numbers  - every number replaced by another
  trim     - last 25 % of the words cut
  combo    - drop10 + numbers + trim
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import numpy as np

from memory.embedder import default_embedder


def load(data: Path, n: int, rng: random.Random) -> dict[str, list[str]]:
    fpb = [json.loads(line)["text"] for line in open(data / "finance" / "fpb.jsonl")]
    pubmed = [
        " ".join(json.loads(line)["contexts"])
        for line in open(data / "biomed" / "pubmedqa_pqal.jsonl")
    ]
    return {
        name: rng.sample(sorted(set(texts)), min(n, len(set(texts))))
        for name, texts in (
            ("finance (FPB sentences)", fpb),
            ("biomedicine (PubMedQA abstracts)", pubmed),
        )
    }


def drop(text, rng, p=0.1):
    words = text.split()
    kept = [w for w in words if rng.random() > p]
    return " ".join(kept or words)


def shuffle(text, rng):
    parts = re.split(r"(?<=[.!?])\s+", text)
    if len(parts) < 2:
        parts = re.split(r",\s+", text)
    if len(parts) < 2:
        return text
    rng.shuffle(parts)
    return " ".join(parts)


def numbers(text, rng):
    return re.sub(r"\d+(\.\d+)?", lambda m: str(rng.randint(1, 999)), text)


def trim(text, rng):
    words = text.split()
    return " ".join(words[: max(1, int(len(words) * 0.75))])


PERTURB = {
    "drop10": drop,
    "shuffle": shuffle,
    "numbers": numbers,
    "trim": trim,
    "combo": lambda t, r: trim(numbers(drop(t, r), r), r),
}


def pct(values: np.ndarray) -> str:
    return " ".join(f"p{q}={np.percentile(values, q):.3f}" for q in (1, 5, 50, 95, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.75, 0.80, 0.85, 0.90, 0.95]
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    embedder = default_embedder()
    for corpus, texts in load(Path(args.data), args.n, rng).items():
        base = embedder.encode(texts)
        sims = base @ base.T
        np.fill_diagonal(sims, -1)
        nearest_other = sims.max(axis=1)
        print(f"\n## {corpus}: {len(texts)} documents")
        print(f"nearest other real document: {pct(nearest_other)}")
        para = {}
        for name, fn in PERTURB.items():
            changed = [fn(t, rng) for t in texts]
            para[name] = np.sum(base * embedder.encode(changed), axis=1)
            print(f"paraphrase {name:<8}: {pct(para[name])}")
        allp = np.concatenate(list(para.values()))
        print(
            "threshold | distinct docs sent back (false positives) | paraphrases let through "
            "(misses)"
        )
        for t in args.thresholds:
            print(f"{t:.2f}      | {np.mean(nearest_other >= t):6.1%} | {np.mean(allp < t):6.1%}")


if __name__ == "__main__":
    main()
