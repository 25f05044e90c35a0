"""Training tokens/s: train.cpt (packed blocks) vs a plain HF Trainer without packing, same model, \
same text.

    .venv/bin/python -m benchmarks.train_throughput [--data ../shared/data/finance/fpb.jsonl]
        [--docs 600] [--steps 12]

Both see the same documents and about the same real tokens per optimizer step (packed: one block of
--seq-len; unpacked: a batch of whole documents padded to the longest in the batch, ~the same real
tokens). Tokens/s counts real (non-padding) tokens; the first 2 steps are warm-up and not timed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def packed(corpus: Path, seq_len: int, steps: int, out: Path) -> float:
    from train.cpt import main as cpt

    flags = f"--corpus {corpus} --out {out} --seq-len {seq_len} --batch-size 1 --max-steps {steps}"
    flags += " --log-every 2 --save-every 100000 --held-out 0 --lr 2e-5"
    assert cpt(flags.split()) == 0
    rows = [
        json.loads(line)
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if "tokens_per_s" in line
    ]
    # windows of 2 steps, first one skipped
    return sum(r["tokens_per_s"] for r in rows[1:]) / len(rows[1:])


def unpacked(texts: list[str], batch_size: int, steps: int, out: Path) -> float:
    from datasets import Dataset
    from transformers import (
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from agents.checkpoint import load

    model, tokenizer = load("embedded")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    data = Dataset.from_dict({"text": texts}).map(
        lambda b: tokenizer(
            [t + tokenizer.eos_token for t in b["text"]], truncation=True, max_length=512
        ),
        batched=True,
        remove_columns=["text"],
    )
    seen = {"tokens": 0, "start": None}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 2:
                seen["start"], seen["tokens"] = time.perf_counter(), 0

    class Counting(DataCollatorForLanguageModeling):
        def __call__(self, features):
            batch = super().__call__(features)
            seen["tokens"] += int(batch["attention_mask"].sum())
            return batch

    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=batch_size,
        max_steps=steps,
        learning_rate=2e-5,
        logging_steps=1000,
        save_strategy="no",
        report_to=[],
        dataloader_drop_last=True,
        use_cpu=True,
        seed=0,
    )
    Trainer(
        model=model,
        args=args,
        train_dataset=data,
        data_collator=Counting(tokenizer, mlm=False),
        callbacks=[Clock()],
    ).train()
    return seen["tokens"] / (time.perf_counter() - seen["start"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/finance/fpb.jsonl")
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--seq-len", type=int, default=512)
    args = parser.parse_args()
    torch.manual_seed(0)
    texts = [json.loads(line)["text"] for line in open(args.data)][: args.docs]
    from agents.checkpoint import load

    _, tokenizer = load("embedded")
    mean_len = sum(len(tokenizer(t)["input_ids"]) + 1 for t in texts) / len(texts)
    # ~ the same real tokens per step as one packed block
    batch_size = max(1, round(args.seq_len / mean_len))
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        a = packed(corpus, args.seq_len, args.steps, Path(tmp) / "packed")
        b = unpacked(texts, batch_size, args.steps, Path(tmp) / "trainer")
    print(
        f"{len(texts)} documents, mean {mean_len:.1f} tokens; packed: 1 x {args.seq_len} "
        f"tokens/step; unpacked: batch {batch_size}, padded to the longest in the batch"
    )
    print(f"train.cpt packed: {a:.1f} tok/s; HF Trainer unpacked: {b:.1f} tok/s; ratio {a / b:.2f}")


if __name__ == "__main__":
    main()
