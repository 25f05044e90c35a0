"""`python -m train.evaluate --model PATH_OR_ID [--baseline PATH_OR_ID] --tasks fpb,pubmedqa --out DIR`

Held-out perplexity on real domain text (--perplexity FILE.jsonl) and classification tasks scored as
in AdaptLLM (train/tasks.py). Writes OUT/results.json ({"model": {...}, "baseline": {...}}, scores by
name) and OUT/results.md (base vs adapted, delta per score).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from core.errors import UserError
from core.jsonl import write_atomic

LOWER_IS_BETTER = {"perplexity"}


def option_losses(model, tokenizer, prompt: str, options: tuple[str, ...], max_len: int) -> list[float]:
    """Mean loss of each option's tokens after the prompt (the prompt is cut from the left to fit)."""
    import torch

    answers = [tokenizer(" " + o, add_special_tokens=False)["input_ids"] for o in options]
    context = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    context = context[-(max_len - max(map(len, answers))):]
    sequences = [context + a for a in answers]
    width = max(map(len, sequences))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    losses = []
    for row, answer in enumerate(answers):
        positions = range(len(context) - 1, len(context) - 1 + len(answer))
        losses.append(-sum(logprobs[row, p, t].item() for p, t in zip(positions, answer)) / len(answer))
    return losses


def perplexity(model, tokenizer, path: str, limit: int | None, max_len: int) -> float:
    import torch

    from train.data import read_texts

    texts = read_texts(path)[:limit]
    nll, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max_len - 1]
            ids = torch.tensor([[tokenizer.bos_token_id or tokenizer.eos_token_id] + ids])
            loss = model(input_ids=ids, labels=ids).loss.item()
            nll += loss * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    return math.exp(nll / count)


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True))


def score(name: str, args) -> dict:
    from agents.checkpoint import load
    from train.tasks import load_task, prompt, weighted_f1

    model, tokenizer = load(name, trust_remote_code=args.trust_remote_code)
    model.eval()
    results: dict = {"name": name}
    if args.perplexity:
        results["perplexity"] = round(perplexity(model, tokenizer, args.perplexity, args.limit, args.max_len), 4)
    for task_name in args.tasks:
        task, dev, test = load_task(task_name, args.task_file.get(task_name))
        test = test[: args.limit] if args.limit else test
        predicted = []
        with _progress() as bar:  # the full tasks take over an hour on CPU: show the count and an estimate
            job = bar.add_task(f"{name}: {task.name}", total=len(test))
            for example in test:
                losses = option_losses(model, tokenizer, prompt(task, dev, example, args.seed), task.options, args.max_len)
                predicted.append(task.options[losses.index(min(losses))])
                bar.advance(job)
        gold = [e.answer for e in test]
        accuracy = sum(g == p for g, p in zip(gold, predicted)) / len(gold)
        results[f"{task.name}_accuracy"] = round(accuracy, 4)
        if task.metric == "weighted_f1":
            results[f"{task.name}_weighted_f1"] = round(weighted_f1(gold, predicted, task.options), 4)
        results[f"{task.name}_n"] = len(gold)
    return results


def table(results: dict) -> str:
    model, base = results["model"], results.get("baseline")
    keys = [k for k in model if k != "name" and not k.endswith("_n")]
    if not base:
        return "| score | model |\n|---|---:|\n" + "".join(f"| {k} | {model[k]} |\n" for k in keys)
    rows = [f"| score | baseline ({base['name']}) | model ({model['name']}) | delta |", "|---|---:|---:|---:|"]
    for k in keys:
        arrow = "lower is better" if k in LOWER_IS_BETTER else "higher is better"
        rows.append(f"| {k} ({arrow}) | {base[k]} | {model[k]} | {model[k] - base[k]:+.4f} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    from core.cli import Parser, offline, positive

    offline()
    p = Parser(prog="python -m train.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="'embedded', a local folder (e.g. ckpt/finance/final) or a hub id")
    p.add_argument("--baseline", help="the model before continual pretraining, scored the same way")
    p.add_argument("--tasks", default="fpb,pubmedqa", help="comma-separated: fpb, pubmedqa (empty for none)")
    p.add_argument("--task-file", action="append", default=[], help="NAME=PATH (or NAME=hf:dataset[:split]) to override a task's data")
    p.add_argument("--perplexity", help="held-out real text, JSONL with a 'text' field")
    p.add_argument("--limit", type=positive(int),
                   help="examples (and perplexity documents) per task; on CPU the full tasks take hours (see the estimate)")
    p.add_argument("--max-len", type=positive(int), default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--trust-remote-code", action="store_true")
    try:
        args = p.parse_args(argv)
        args.tasks = [t for t in args.tasks.split(",") if t]
        try:
            args.task_file = dict(item.split("=", 1) for item in args.task_file)
        except ValueError:
            raise UserError("--task-file takes NAME=PATH") from None
        if not args.tasks and not args.perplexity:
            raise UserError("nothing to evaluate: give --tasks and/or --perplexity")
        results = {"model": score(args.model, args)}
        if args.baseline:
            results["baseline"] = score(args.baseline, args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(results, indent=2).encode())
    write_atomic(out / "results.md", table(results).encode())
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
