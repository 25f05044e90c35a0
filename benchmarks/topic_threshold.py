"""Where the quality gate's off-topic threshold comes from: real abstracts against their own
keywords.

    # needs ../shared/data/biomed/pubmedqa_pqal.jsonl
    .venv/bin/python -m benchmarks.topic_threshold

Each PubMedQA abstract (its contexts) is embedded with the gate's model (all-MiniLM-L6-v2), and so
are 4 of its own MeSH terms (check tags such as Humans or Female left out), written as the gate
writes a document's seed keywords (memory.quality.subject). Prints the percentiles of the cosine
for true pairs and for mismatched ones (another abstract's terms), and how much of each falls below
a few thresholds. The rule: the 1st percentile of true pairs, rounded down to a multiple of 0.05.
"""

from __future__ import annotations

import ast
import json
import random

import numpy as np

from memory import quality
from memory.embedder import default_embedder
from train.tasks import DATA

CHECK_TAGS = {
    "Humans",
    "Female",
    "Male",
    "Adult",
    "Aged",
    "Middle Aged",
    "Child",
    "Adolescent",
    "Young Adult",
    "Animals",
    "Infant",
    "Aged, 80 and over",
    "Child, Preschool",
    "Infant, Newborn",
    "Pregnancy",
    "Rats",
    "Mice",
}


def main() -> None:
    rows = [
        json.loads(line)
        for line in (DATA / "biomed" / "pubmedqa_pqal.jsonl").read_text().splitlines()
    ]
    docs, subjects = [], []
    for i, row in enumerate(rows):
        terms = (
            row["meshes"] if isinstance(row["meshes"], list) else ast.literal_eval(row["meshes"])
        )
        terms = [t for t in terms if t not in CHECK_TAGS]
        docs.append(" ".join(row["contexts"]))
        subjects.append(quality.subject(random.Random(i).sample(terms, min(4, len(terms)))))
    embedder = default_embedder()
    d, s = embedder.encode(docs), embedder.encode(subjects)
    true = (d * s).sum(1)
    mismatched = (d * s[np.random.default_rng(0).permutation(len(rows))]).sum(1)
    print(f"{len(rows)} abstracts; cosine to their own 4 MeSH terms vs to another abstract's")
    for q in (0.5, 1, 2, 5, 10, 50):
        print(
            f"  percentile {q:>4}: own {np.percentile(true, q):.3f}   other "
            f"{np.percentile(mismatched, q):.3f}"
        )
    for t in (0.15, 0.2, 0.25, 0.3):
        print(f"  below {t:.2f}: own {np.mean(true < t):.1%}   other {np.mean(mismatched < t):.1%}")
    rule = np.floor(np.percentile(true, 1) / 0.05) * 0.05
    print(
        f"rule (1st percentile of own, rounded down to 0.05): {rule:.2f}; shipped: "
        f"{quality.TOPIC_THRESHOLD:.2f}"
    )


if __name__ == "__main__":
    main()
