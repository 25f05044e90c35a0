"""Tokenise and pack (as HF run_clm does): documents joined with EOS into fixed-length blocks, no padding.

With `boundaries`, each block also carries position ids that restart at every document. transformers
(>= 5) turns them into a block-diagonal causal mask when no KV cache is in use (train.cpt turns it
off), so documents keep apart in SDPA attention too. Its cost on one H200 (docs/benchmarks.md, GPU):
none with documents of 100-1,500 tokens, 11 % fewer tokens/s with sentence-length documents.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.jsonl import read_jsonl
from core.rundir import is_run_file


def read_texts(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"corpus not found: {path}")
    texts = [r["text"] for r in read_jsonl(path, committed=is_run_file(path)) if r["text"].strip()]
    if not texts:
        raise UserError(f"{path}: no documents")
    return texts


def split(texts: list[str], held_out: float, seed: int) -> tuple[list[str], list[str]]:
    """A held-out set of whole documents (at least one when there are two or more)."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    n_val = min(len(texts) - 1, max(1, round(held_out * len(texts)))) if held_out > 0 and len(texts) > 1 else 0
    val = {i for i in order[:n_val]}
    return [t for i, t in enumerate(texts) if i not in val], [t for i, t in enumerate(texts) if i in val]


def pack(texts: list[str], tokenizer, seq_len: int, boundaries: bool = False, required: bool = True) -> list[dict]:
    """Blocks of exactly seq_len tokens: {"input_ids", ("position_ids")}, int32 arrays (a Python int
    list would take ~2 GB at the paper's 25 M tokens). The tail that does not fill a block is dropped
    (as run_clm does); text shorter than one block is an error when `required`, and gives no blocks
    otherwise (a validation split too small to use)."""
    docs = [np.asarray(ids + [tokenizer.eos_token_id], dtype=np.int32)
            for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    stream = np.concatenate(docs) if docs else np.zeros(0, dtype=np.int32)
    n_blocks = len(stream) // seq_len
    if n_blocks == 0 and required:
        raise UserError(f"the corpus has {len(stream)} tokens, fewer than one block of --seq-len {seq_len}")
    starts = np.zeros(len(stream), dtype=bool)
    starts[np.cumsum([0] + [len(d) for d in docs])[:-1]] = True
    blocks = []
    for b in range(n_blocks):
        block = {"input_ids": stream[b * seq_len:(b + 1) * seq_len]}
        if boundaries:
            block["position_ids"] = _positions(starts[b * seq_len:(b + 1) * seq_len])
        blocks.append(block)
    return blocks


def _positions(starts: np.ndarray) -> np.ndarray:
    """Position ids that restart at each document start and at the block's first token (a document
    that continues from the previous block cannot attend to its start, so it counts from 0 here)."""
    index = np.arange(len(starts), dtype=np.int32)
    marks = np.where(starts, index, 0)
    marks[0] = 0
    return index - np.maximum.accumulate(marks)


def collate(blocks: list[dict]) -> dict:
    import torch

    batch = {k: torch.from_numpy(np.stack([b[k] for b in blocks]).astype(np.int64)) for k in blocks[0]}
    batch["labels"] = batch["input_ids"].clone()
    return batch
