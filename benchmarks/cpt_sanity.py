"""Sanity experiment: does continual pretraining move held-out finance perplexity?

    .venv/bin/python -m benchmarks.cpt_sanity --generated runs/finance/corpus.jsonl [--epochs 2]

1. Continue pretraining SmolLM2-135M on FPB sentences of the generation half (core/splits.py), as
   many as the first 10 % of the file held before the halves existed.
2. The same, on a generated corpus cut to the same number of tokens.
Prints held-out perplexity (FPB sentences of the evaluation half) of the base model and of both.
(train.ablate is the full version of this: equal token budgets, seeds, tasks and intervals.)
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path


def main() -> None:
    from agents.checkpoint import load
    from train.cpt import main as cpt
    from train.evaluate import perplexity

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fpb", default="../shared/data/finance/fpb.jsonl")
    parser.add_argument("--generated", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--held-out", type=int, default=300, help="held-out sentences for perplexity"
    )
    parser.add_argument("--lr", type=float, default=5e-5)
    args = parser.parse_args()
    from core.splits import EVALUATION, GENERATION, select

    records = [json.loads(line) for line in open(args.fpb)]
    dev = [r["text"] for r in select(records, GENERATION)][: len(records[::10])]
    test = [r["text"] for r in select(records, EVALUATION)][: args.held_out]
    _, tokenizer = load("embedded")

    def count(texts):
        return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)

    budget = count(dev)
    generated, used = [], 0
    for line in open(args.generated):
        if used >= budget:
            break
        text = json.loads(line)["text"]
        generated.append(text)
        used += count([text])
    if used < budget:
        print(
            f"note: the generated corpus has {used} tokens, fewer than the {budget} of the "
            "FPB sentences"
        )
    seq_len, per_step = 256, 1024
    steps = max(1, math.ceil(args.epochs * budget / per_step))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "test.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in test))
        rows = {}
        for name, texts in (("fpb-generation", dev), ("generated", generated)):
            (tmp / f"{name}.jsonl").write_text(
                "".join(json.dumps({"text": t}) + "\n" for t in texts)
            )
            assert (
                cpt(
                    [
                        "--corpus",
                        str(tmp / f"{name}.jsonl"),
                        "--out",
                        str(tmp / name),
                        "--seq-len",
                        str(seq_len),
                        "--tokens-per-step",
                        str(per_step),
                        "--max-steps",
                        str(steps),
                        "--lr",
                        str(args.lr),
                        "--held-out",
                        "0",
                        "--log-every",
                        "10",
                        "--save-every",
                        "100000",
                    ]
                )
                == 0
            )
            rows[name] = str(tmp / name / "final")
        results = {}
        for name, model_name in (("base", "embedded"), *rows.items()):
            model, tok = load(model_name)
            model.eval()
            results[name] = perplexity(model, tok, str(tmp / "test.jsonl"), None, 512)
    print(
        f"training tokens: FPB generation half {budget}, generated {used}; {steps} steps of "
        f"{per_step} tokens, lr {args.lr}"
    )
    print(
        f"held-out FPB perplexity ({len(test)} sentences): "
        + ", ".join(f"{k} {v:.2f}" for k, v in results.items())
    )


if __name__ == "__main__":
    main()
