"""Domain evaluation tasks, scored as AdaptLLM does: each option's mean answer-token loss given a
few-shot prompt, lowest wins. Data comes from local files (../shared/data by default), or from the
hub with `hf:<dataset>[:<split>]` when online.

Which records: by default the evaluation half of the dataset (core/splits.py: a stable hash of the
record's text), so nothing scored was seen by generation as a seed document or an in-context
example. Inside that half, every 10th example is the dev part (the few-shot exemplars: held out from
generation too, and never scored) and the rest is test. `split="all"` gives the whole file (the
behaviour before the halves existed).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.errors import UserError
from core.jsonl import read_jsonl
from core.splits import EVALUATION, SPLITS, select

# The tasks' real data: METASYNTH_DATA, else ../shared/data beside a checkout (--task-file
# overrides one task).
DATA = Path(
    os.environ.get("METASYNTH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


@dataclass(frozen=True)
class Example:
    query: str  # the prompt for this example, without the answer
    answer: str  # one of the task's options
    shot: str  # this example written as a solved demonstration


@dataclass(frozen=True)
class Task:
    name: str
    default_file: str
    options: tuple[str, ...]
    to_example: Callable[[dict], Example]
    metric: str  # "weighted_f1" or "accuracy"
    shots: int


def _fpb(row: dict) -> Example:
    query = f"Sentence: {row['text']}\nSentiment:"
    return Example(query, row["label"], f"{query} {row['label']}\n\n")


def _pubmedqa(row: dict) -> Example:
    contexts = row.get("contexts")
    context = " ".join(contexts) if isinstance(contexts, list) else row.get("context", "")
    query = f"Abstract: {context}\nQuestion: {row['question']}\nAnswer (yes, no or maybe):"
    return Example(query, row["final_decision"], f"{query} {row['final_decision']}\n\n")


TASKS = {
    "fpb": Task(
        "fpb",
        "finance/fpb.jsonl",
        ("positive", "neutral", "negative"),
        _fpb,
        "weighted_f1",
        shots=5,
    ),
    "pubmedqa": Task(
        "pubmedqa",
        "biomed/pubmedqa_pqal.jsonl",
        ("yes", "no", "maybe"),
        _pubmedqa,
        "accuracy",
        shots=1,
    ),
}


def read_rows(source: str) -> list[dict]:
    if source.startswith("hf:"):
        from datasets import load_dataset

        name, _, split = source[3:].partition(":")
        return [dict(r) for r in load_dataset(name, split=split or "train")]
    path = Path(source)
    if not path.is_file():
        raise UserError(f"task data not found: {path}")
    return read_jsonl(path, field=None)


SPLIT_CHOICES = (*SPLITS, "all")


def load_task(
    name: str, source: str | None = None, split: str = EVALUATION
) -> tuple[Task, list[Example], list[Example]]:
    """(task, dev examples, test examples) of one half of the data (or "all")."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r} (available: {', '.join(TASKS)})")
    task = TASKS[name]
    if source is None and not (DATA / task.default_file).is_file():
        raise UserError(
            f"{name}: no data at {DATA / task.default_file}; set METASYNTH_DATA to the "
            f"folder holding {task.default_file}, or pass --task-file {name}=PATH"
        )
    if split not in SPLIT_CHOICES:
        raise UserError(f"unknown split {split!r} (available: {', '.join(SPLIT_CHOICES)})")
    rows = read_rows(source or str(DATA / task.default_file))
    try:
        rows = rows if split == "all" else select(rows, split)
        examples = [task.to_example(r) for r in rows]
    except (KeyError, TypeError) as e:
        raise UserError(f"{name}: rows lack the field {e}") from None
    except UserError as e:  # a row without the text that decides its half
        raise UserError(f"{name}: {e}") from None
    bad = {e.answer for e in examples} - set(task.options)
    if bad:
        raise UserError(f"{name}: answers outside the options {task.options}: {sorted(bad)[:3]}")
    return task, examples[::10], [e for i, e in enumerate(examples) if i % 10]


def prompt(task: Task, dev: list[Example], example: Example, seed: int) -> str:
    shots = random.Random(f"{seed}:{example.query}").sample(dev, min(task.shots, len(dev)))
    return "".join(s.shot for s in shots) + example.query


def weighted_f1(gold: list[str], predicted: list[str], labels: tuple[str, ...]) -> float:
    """F1 per label, weighted by the label's support in `gold` (AdaptLLM's FPB metric)."""
    from sklearn.metrics import f1_score

    return float(
        f1_score(gold, predicted, labels=list(labels), average="weighted", zero_division=0)
    )
