"""`python -m train.evaluate --model PATH [--baseline PATH] --tasks fpb,pubmedqa --out DIR`

Held-out perplexity on real domain text (--perplexity: a JSONL with `text`, or `fpb` / `pubmedqa`
for that dataset's evaluation half) and classification tasks scored as in AdaptLLM (train/tasks.py),
on the evaluation half of their data by default (--split; core/splits.py), so nothing scored was
seen by generation. Writes OUT/results.json ({"model": {...}, "baseline": {...}, "split": {...}},
scores by name) and OUT/results.md (base vs adapted, delta per score). train.ablate scores every
checkpoint with `evaluate_model` here.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core.cli import make_dir, run_command
from core.errors import UserError
from core.jsonl import write_atomic
from core.splits import EVALUATION
from core.splits import VERSION as SPLIT_RULE

LOWER_IS_BETTER = {"perplexity"}


@dataclass
class Plan:
    """What to score and on which data."""

    tasks: list[str]
    perplexity: str | None = None  # a JSONL path, or a dataset name (its `split` half)
    limit: int | None = None
    max_len: int = 2048
    seed: int = 0
    split: str = EVALUATION
    task_file: dict = field(default_factory=dict)
    trust_remote_code: bool = False

    def describe(self) -> dict:
        """The data the scores come from, for results files."""
        return {
            "tasks": self.split,
            "rule": SPLIT_RULE,
            "perplexity": self.perplexity,
            "perplexity_split": self.split if self.perplexity in _datasets() else None,
            "limit": self.limit,
        }


def _datasets() -> tuple[str, ...]:
    from train.realtext import DATASETS

    return DATASETS


def option_losses(
    model, tokenizer, prompt: str, options: tuple[str, ...], max_len: int
) -> list[float]:
    """Mean loss of each option's tokens after the prompt (cut from the left to fit)."""
    import torch

    answers = [tokenizer(" " + o, add_special_tokens=False)["input_ids"] for o in options]
    context = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    context = context[-(max_len - max(map(len, answers))) :]
    if all(len(a) == 1 for a in answers):
        # One-token options (FPB's and PubMedQA's labels with SmolLM2's tokenizer): the prompt's
        # next-token distribution scores them all in one forward, a third of the work.
        ids = torch.tensor([context], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        return [-logprobs[a[0]].item() for a in answers]
    sequences = [context + a for a in answers]
    width = max(map(len, sequences))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences], device=model.device)
    mask = torch.tensor(
        [[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=model.device
    )
    # Only the positions that predict answer tokens need logits (all rows share the context):
    # the vocabulary projection of the whole prompt would cost more than the model on small models.
    keep = width - (len(context) - 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits.float()
    logprobs = torch.log_softmax(logits, dim=-1)  # position k predicts answer token k
    return [
        -sum(logprobs[row, k, t].item() for k, t in enumerate(answer)) / len(answer)
        for row, answer in enumerate(answers)
    ]


def perplexity_texts(source: str, split: str, limit: int | None) -> list[str]:
    """A JSONL file's texts, or a dataset's held-out half (train/realtext.py)."""
    from train.data import read_texts
    from train.realtext import held_out_texts

    if source in _datasets():
        texts = held_out_texts(source, None if split == "all" else split)
    else:
        texts = read_texts(source, "--perplexity")
    return texts[:limit]


def nll_items(model, tokenizer, texts: list[str], max_len: int, label: str = "") -> list[list]:
    """[summed negative log-likelihood, predicted tokens] per text: perplexity is
    exp(sum of the first / sum of the second), over any subset (the bootstrap resamples texts)."""
    import torch

    items = []
    with torch.no_grad(), _progress() as bar:
        job = bar.add_task(f"{label}perplexity", total=len(texts))
        for text in texts:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max_len - 1]
            start = tokenizer.bos_token_id
            if start is None:
                start = tokenizer.eos_token_id
            ids = torch.tensor([[start] + ids], device=model.device)
            loss = model(input_ids=ids, labels=ids).loss.item()
            items.append([loss * (ids.shape[1] - 1), ids.shape[1] - 1])
            bar.advance(job)
    return items


def perplexity_of(items: list[list]) -> float:
    return math.exp(sum(i[0] for i in items) / sum(i[1] for i in items))


def perplexity(model, tokenizer, path: str, limit: int | None, max_len: int) -> float:
    """Perplexity of a JSONL file's texts (its first `limit`)."""
    return perplexity_of(nll_items(model, tokenizer, perplexity_texts(path, "all", limit), max_len))


def _progress():
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


def predictions(model, tokenizer, task_name: str, plan: Plan, label: str = "") -> dict:
    """{"gold": [...], "predicted": [...]} over the task's test examples (in file order)."""
    from train.tasks import load_task, prompt

    task, dev, test = load_task(task_name, plan.task_file.get(task_name), plan.split)
    test = test[: plan.limit] if plan.limit else test
    if not test:
        raise UserError(f"{task_name}: no test examples in the {plan.split} split")
    predicted = []
    with _progress() as bar:  # the full tasks take a while on CPU: show the count and an estimate
        job = bar.add_task(f"{label}{task.name}", total=len(test))
        for example in test:
            losses = option_losses(
                model, tokenizer, prompt(task, dev, example, plan.seed), task.options, plan.max_len
            )
            predicted.append(task.options[losses.index(min(losses))])
            bar.advance(job)
    return {"gold": [e.answer for e in test], "predicted": predicted}


def summarize(items: dict) -> dict:
    """Scores by name from per-item results (train/bootstrap.py computes them on resamples)."""
    from train.tasks import TASKS, weighted_f1

    scores: dict = {}
    if "perplexity" in items:
        scores["perplexity"] = round(perplexity_of(items["perplexity"]), 4)
        scores["perplexity_n"] = len(items["perplexity"])
    for name, task in TASKS.items():
        if name not in items:
            continue
        gold, predicted = items[name]["gold"], items[name]["predicted"]
        correct = sum(g == p for g, p in zip(gold, predicted))
        scores[f"{name}_accuracy"] = round(correct / len(gold), 4)
        if task.metric == "weighted_f1":
            scores[f"{name}_weighted_f1"] = round(weighted_f1(gold, predicted, task.options), 4)
        scores[f"{name}_n"] = len(gold)
    return scores


def load_for_scoring(name: str, trust_remote_code: bool = False):
    """(model, tokenizer) in eval mode, on the GPU in bf16 when there is one."""
    import torch

    from agents.checkpoint import load

    cuda = torch.cuda.is_available()
    model, tokenizer = load(
        name, dtype=torch.bfloat16 if cuda else None, trust_remote_code=trust_remote_code
    )
    return model.to("cuda" if cuda else "cpu").eval(), tokenizer


def evaluate_model(name: str, plan: Plan, label: str = "") -> dict:
    """Per-item results: {"perplexity": [[nll, tokens], ...], task: {gold, predicted}}."""
    model, tokenizer = load_for_scoring(name, plan.trust_remote_code)
    items: dict = {}
    if plan.perplexity:
        texts = perplexity_texts(plan.perplexity, plan.split, plan.limit)
        items["perplexity"] = nll_items(model, tokenizer, texts, plan.max_len, label)
    for task_name in plan.tasks:
        items[task_name] = predictions(model, tokenizer, task_name, plan, label)
    return items


def score(name: str, plan: Plan) -> dict:
    return {"name": name, **summarize(evaluate_model(name, plan, f"{name}: "))}


def table(results: dict) -> str:
    model, base = results["model"], results.get("baseline")
    keys = [k for k in model if k != "name" and not k.endswith("_n")]
    if not base:
        return "| score | model |\n|---|---:|\n" + "".join(f"| {k} | {model[k]} |\n" for k in keys)
    rows = [
        f"| score | baseline ({base['name']}) | model ({model['name']}) | delta |",
        "|---|---:|---:|---:|",
    ]
    for k in keys:
        arrow = "lower is better" if k in LOWER_IS_BETTER else "higher is better"
        rows.append(f"| {k} ({arrow}) | {base[k]} | {model[k]} | {model[k] - base[k]:+.4f} |")
    return "\n".join(rows) + "\n"


def parse_args(argv: list[str] | None):
    from core.cli import Parser, positive
    from train.tasks import SPLIT_CHOICES

    p = Parser(prog="python -m train.evaluate", description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        required=True,
        help="'embedded', a local folder (e.g. ckpt/finance/final) or a hub id",
    )
    p.add_argument("--baseline", help="the model before continual pretraining, scored the same way")
    p.add_argument(
        "--tasks", default="fpb,pubmedqa", help="comma-separated: fpb, pubmedqa (empty for none)"
    )
    p.add_argument(
        "--task-file",
        action="append",
        default=[],
        help="NAME=PATH (or NAME=hf:dataset[:split]) to override a task's data",
    )
    p.add_argument(
        "--perplexity",
        help="held-out real text: a JSONL with a 'text' field, or fpb / pubmedqa "
        "(the --split half)",
    )
    p.add_argument(
        "--split",
        choices=SPLIT_CHOICES,
        default=EVALUATION,
        help="which half of the tasks' data is scored (default evaluation: never "
        "seen by generation; core/splits.py)",
    )
    p.add_argument(
        "--limit",
        type=positive(int),
        help="examples (and perplexity documents) per task; on CPU the full tasks "
        "take a while (see the estimate)",
    )
    p.add_argument("--max-len", type=positive(int), default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--trust-remote-code", action="store_true")
    args = p.parse_args(argv)
    try:
        task_file = dict(item.split("=", 1) for item in args.task_file)
    except ValueError:
        raise UserError("--task-file takes NAME=PATH") from None
    plan = Plan(
        [t for t in args.tasks.split(",") if t],
        args.perplexity,
        args.limit,
        args.max_len,
        args.seed,
        args.split,
        task_file,
        args.trust_remote_code,
    )
    if not plan.tasks and not plan.perplexity:
        raise UserError("nothing to evaluate: give --tasks and/or --perplexity")
    check_tasks(plan.tasks)
    check_tasks(list(task_file), "--task-file name")
    if plan.perplexity and plan.perplexity not in _datasets():
        perplexity_texts(plan.perplexity, plan.split, plan.limit)  # a bad file: before the model
    return args, plan


def check_tasks(names: list[str], what: str = "task") -> None:
    """Unknown task names fail before any model loads."""
    from train.tasks import TASKS

    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise UserError(f"unknown {what} {unknown[0]!r} (available: {', '.join(TASKS)})")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: _evaluate(*parse_args(argv)))


def _evaluate(args, plan: Plan) -> int:
    out = Path(args.out)
    make_dir(out)  # before the scoring, not after it
    results = {"model": score(args.model, plan)}
    if args.baseline:
        results["baseline"] = score(args.baseline, plan)
    results["split"] = plan.describe()
    write_atomic(out / "results.json", json.dumps(results, indent=2).encode())
    write_atomic(out / "results.md", table(results).encode())
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
