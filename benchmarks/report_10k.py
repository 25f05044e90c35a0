"""Wall time of the full diversity report on a 10,000-document corpus (goal: <= 5 min on 2 cores).

    .venv/bin/python -m benchmarks.report_10k [--docs 10000]
        [--data ../shared/data/finance/fpb.jsonl]

The corpus is built from real text so that lengths and vocabulary are realistic: each document joins
15 random Financial PhraseBank sentences (~330 words, about a synthetic document's length). It is a
plain JSONL file, so every embedding is computed (a run directory would bring its stored ones).
Prints the report's own per-metric seconds and the total wall time, Task2Vec included.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--docs", type=int, default=10_000)
    p.add_argument("--sentences", type=int, default=15)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "finance" / "fpb.jsonl"))
    args = p.parse_args()
    sentences = [json.loads(line)["text"] for line in open(args.data)]
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        corpus, out = Path(tmp) / "corpus10k.jsonl", Path(tmp) / "report"
        with open(corpus, "w") as f:
            for _ in range(args.docs):
                f.write(
                    json.dumps({"text": " ".join(rng.sample(sentences, args.sentences))}) + "\n"
                )
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "metrics.report", str(corpus), "--out", str(out)],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        report = json.loads((out / "metrics.json").read_text())
    stats = report["corpora"]["corpus10k"]
    print(f"documents {stats['documents']:,}  words {stats['words']:,}")
    for name, seconds in sorted(stats["seconds"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<22} {seconds:7.1f} s")
    print(
        f"report (measuring) {report['seconds']:.1f} s; wall time with start-up and plots "
        f"{wall:.1f} s ({'meets' if wall <= 300 else 'misses'} the 5 min goal)"
    )


if __name__ == "__main__":
    main()
