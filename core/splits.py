"""Which half of a real dataset a record belongs to: "generation" or "evaluation".

Documents that generation sees (seed documents, in-context examples) must never be scored as
held-out text. Each record goes to one half by a stable hash of its text, not by its position in the
file: the split then survives reordering, appends and subsets (a record keeps its half whatever else
the file holds), two copies of the same text always land in the same half, and any program (the
generation CLI, train/) computes it alone, with nothing stored. An index split (`i % 10`) moves
every later record when one line is inserted.

    split_of(text) -> "generation" | "evaluation"
    record_text(record) -> the text that decides a record's half (and that decontamination compares)
    select(records, split) -> the records of that half, in their order

The hash: SHA-256 of the text with whitespace runs collapsed and ends stripped (so re-wrapping a
line does not move it), read as a number in [0, 1); below GENERATION_SHARE is "generation".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from core.errors import UserError

GENERATION = "generation"
EVALUATION = "evaluation"
SPLITS = (GENERATION, EVALUATION)
GENERATION_SHARE = 0.5
VERSION = "sha256-ws-0.5"  # recorded in results, so a changed rule is visible


def _normalise(text: str) -> str:
    return " ".join(text.split())


def position(text: str) -> float:
    """The text's place in [0, 1), uniform over texts, fixed forever for a given text."""
    digest = hashlib.sha256(_normalise(text).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(text: str) -> str:
    """ "generation" or "evaluation" for this text."""
    return GENERATION if position(text) < GENERATION_SHARE else EVALUATION


def record_text(record: dict) -> str:
    """The text of a real record: its `text` (FPB and any corpus JSONL), else the abstract of a
    PubMedQA record (its `contexts` joined by spaces: what a seed-document file would hold)."""
    if isinstance(record.get("text"), str):
        return record["text"]
    contexts = record.get("contexts")
    if isinstance(contexts, list) and all(isinstance(c, str) for c in contexts):
        return " ".join(contexts)
    if isinstance(record.get("context"), str):
        return record["context"]
    raise UserError("record has neither 'text' nor 'contexts'")


def check(split: str) -> str:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    return split


def select(records: Iterable[dict], split: str) -> list[dict]:
    """The records of `split`, in their original order."""
    check(split)
    return [r for r in records if split_of(record_text(r)) == split]
