"""Tokenise and pack (as HF run_clm does): documents joined by EOS into fixed-length blocks.

With `boundaries`, each block also carries position ids that restart at every document. transformers
(>= 5) turns them into a block-diagonal causal mask when no KV cache is in use (train.cpt turns it
off), so documents keep apart in SDPA attention too. Its cost on one H200 (docs/benchmarks.md, GPU):
none with documents of 100-1,500 tokens, 11 % fewer tokens/s with sentence-length documents.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.jsonl import read_documents


def read_records(path: str | Path, label: str = "corpus") -> list[dict]:
    """The records with non-blank `text` of a corpus: a JSONL file, or a run directory's corpus."""
    return read_documents(path, label)


def read_texts(path: str | Path, label: str = "corpus") -> list[str]:
    return [r["text"] for r in read_records(path, label)]


def split(texts: list[str], held_out: float, seed: int) -> tuple[list[str], list[str]]:
    """A held-out set of whole documents (at least one when there are two or more)."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    n_val = 0
    if held_out > 0 and len(texts) > 1:
        n_val = min(len(texts) - 1, max(1, round(held_out * len(texts))))
    val = {i for i in order[:n_val]}
    train = [t for i, t in enumerate(texts) if i not in val]
    return train, [t for i, t in enumerate(texts) if i in val]


def _documents(texts: list[str], tokenizer) -> list[np.ndarray]:
    """Each text's token ids with the EOS that separates it from the next, as int32."""
    return [
        np.asarray(ids + [tokenizer.eos_token_id], dtype=np.int32)
        for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]
    ]


def _blocks(
    docs: list[np.ndarray], seq_len: int, boundaries: bool, limit: int | None = None
) -> list[dict]:
    """The documents' stream (cut at `limit` tokens) in whole blocks; the tail is dropped."""
    stream = np.concatenate(docs) if docs else np.zeros(0, dtype=np.int32)
    starts = np.zeros(len(stream), dtype=bool)
    starts[np.cumsum([0] + [len(d) for d in docs])[:-1]] = True
    if limit is not None:
        stream, starts = stream[:limit], starts[:limit]
    blocks = []
    for b in range(len(stream) // seq_len):
        block = {"input_ids": stream[b * seq_len : (b + 1) * seq_len]}
        if boundaries:
            block["position_ids"] = _positions(starts[b * seq_len : (b + 1) * seq_len])
        blocks.append(block)
    return blocks


def pack(
    texts: list[str], tokenizer, seq_len: int, boundaries: bool = False, required: bool = True
) -> list[dict]:
    """Blocks of exactly seq_len tokens: {"input_ids", ("position_ids")}, int32 arrays (a Python
    int list would take ~2 GB at the paper's 25 M tokens). The tail that does not fill a block is
    dropped (as run_clm does); text shorter than one block is an error when `required`, and gives
    no blocks otherwise (a validation split too small to use)."""
    docs = _documents(texts, tokenizer)
    blocks = _blocks(docs, seq_len, boundaries)
    if not blocks and required:
        n = sum(len(d) for d in docs)
        raise UserError(f"the corpus has {n} tokens, fewer than one block of --seq-len {seq_len}")
    return blocks


def budget_blocks(
    texts: list[str],
    tokenizer,
    seq_len: int,
    tokens: int,
    epochs: int,
    seed: int,
    boundaries: bool = False,
    corpus: str = "the corpus",
) -> tuple[list[dict], dict]:
    """Exactly `tokens` tokens of the corpus (a multiple of seq_len) in blocks, and what they hold.

    Documents are taken in an order shuffled by `seed` (a corpus longer than the budget is sampled
    across its length, not cut after its first documents); a corpus shorter than the budget is
    repeated, reshuffled each pass, only when `epochs` allows that many passes."""
    docs = _documents(texts, tokenizer)
    corpus_tokens = int(sum(len(d) for d in docs))
    passes = math.ceil(tokens / corpus_tokens)
    if passes > epochs:
        more = "" if epochs == 1 else f" even in {epochs} passes"
        raise UserError(
            f"{corpus} has {corpus_tokens} tokens, fewer than --tokens {tokens}{more}; "
            f"pass --epochs {passes} to repeat it"
        )
    stream: list[np.ndarray] = []
    for p in range(passes):
        order = list(range(len(docs)))
        random.Random(f"{seed}:{p}").shuffle(order)
        stream += [docs[i] for i in order]
    used = np.searchsorted(np.cumsum([len(d) for d in stream]), tokens) + 1
    info = {
        "trained_tokens": tokens,
        "corpus_tokens": corpus_tokens,
        "corpus_documents": len(docs),
        "passes": round(tokens / corpus_tokens, 4),
        "documents_seen": int(used),
    }
    return _blocks(stream[:used], seq_len, boundaries, limit=tokens), info


def _positions(starts: np.ndarray) -> np.ndarray:
    """Position ids that restart at each document start and at the block's first token (a document
    that continues from the previous block cannot attend to its start, so it counts from 0 here)."""
    index = np.arange(len(starts), dtype=np.int32)
    marks = np.where(starts, index, 0)
    marks[0] = 0
    return index - np.maximum.accumulate(marks)


def collate(blocks: list[dict]) -> dict:
    import torch

    batch = {
        k: torch.from_numpy(np.stack([b[k] for b in blocks]).astype(np.int64)) for k in blocks[0]
    }
    batch["labels"] = batch["input_ids"].clone()
    return batch
