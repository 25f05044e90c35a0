"""Task2Vec diversity coefficient (Miranda et al., 2023, "Beyond Scale").

A batch of documents is embedded as the diagonal of the Fisher information of a causal-LM probe's
output head, after the head alone was briefly fine-tuned on that batch. The coefficient is the mean
pairwise cosine distance between batch embeddings.

Choices (the reference used GPT-2 and 512-sequence batches; these fit 2 CPU cores):
- The body is frozen, so its final hidden states are computed once per batch; the head (a copy of
  the output embedding, untied) trains on them with Adam.
- The Fisher is the exact one, not a Monte Carlo estimate: for the head weight W[v, i] and a token
  with hidden state h and predictive distribution p, E_y[(d log p_y / dW[v, i])^2] = p_v (1 - p_v)
  h_i^2. Summed over tokens that is one matrix product, (P * (1 - P))^T @ H^2.
- The confidence interval is a bootstrap over batches (pairs of a batch with itself are skipped).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass
class Task2VecSettings:
    # batch embeddings per corpus, at most documents // batch_size (no document in two batches)
    batches: int = 12
    batch_size: int = 8  # documents per batch
    max_tokens: int = 128  # tokens per document (truncated)
    head_steps: int = 2  # Adam steps on the head before the Fisher is taken
    lr: float = 1e-4
    seed: int = 0


def head_fisher(h: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """Exact Fisher diagonal of a softmax head W [vocab, hidden] over tokens with features h
    [tokens, hidden]: sum_t E_{y ~ p_t}[(d log p_t,y / dW)^2] = sum_t p_t (1 - p_t) h_t^2, as a
    [vocab, hidden] matrix."""
    p = torch.softmax(h @ head.T, dim=-1)
    return (p * (1 - p)).T @ (h * h)


class Probe:
    """A causal LM whose frozen body gives features and whose output head is re-trained per
    batch."""

    def __init__(self, name: str = "embedded") -> None:
        from transformers.utils import logging as hf_logging

        from agents.checkpoint import load

        hf_logging.disable_progress_bar()
        self.name = name
        self.model, self.tokenizer = load(name, dtype=torch.float32)
        self.model.eval().requires_grad_(False)
        self.head = self.model.get_output_embeddings().weight.detach().clone()  # [vocab, hidden]
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @torch.no_grad()
    def features(self, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Final hidden states of every position that predicts a next token, and those tokens."""
        batch = self.tokenizer(
            texts, return_tensors="pt", padding=True, truncation=True, max_length=max_tokens
        )
        hidden = self.model.base_model(**batch).last_hidden_state  # after the final norm
        mask = batch["attention_mask"].bool()
        predicts = mask[:, :-1] & mask[:, 1:]
        return hidden[:, :-1][predicts], batch["input_ids"][:, 1:][predicts]

    def embed(self, texts: list[str], settings: Task2VecSettings) -> np.ndarray:
        """The batch's Task2Vec embedding: the head's Fisher diagonal after a short fine-tune."""
        h, y = self.features(texts, settings.max_tokens)
        if len(y) == 0:
            raise ValueError("a batch without a single token to predict")
        head = self.head.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([head], lr=settings.lr)
        for _ in range(settings.head_steps):
            loss = torch.nn.functional.cross_entropy(h @ head.T, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            fisher = head_fisher(h, head).reshape(-1)
        return (fisher / fisher.norm()).numpy()  # unit length: only directions are compared


def batches_of(n_docs: int, settings: Task2VecSettings) -> list[list[int]]:
    """Disjoint batches of documents, as many as asked for and the corpus allows. (Batches that
    shared documents would look alike and bias the coefficient low on small corpora.)"""
    count = min(settings.batches, n_docs // settings.batch_size)
    if count < 2:
        raise ValueError(
            f"{n_docs} documents make fewer than 2 batches of {settings.batch_size}; "
            "lower --t2v-batch-size"
        )
    order = random.Random(settings.seed).sample(range(n_docs), n_docs)
    return [order[i * settings.batch_size : (i + 1) * settings.batch_size] for i in range(count)]


def cosine_distances(units: list[np.ndarray]) -> np.ndarray:
    """Pairwise cosine distances of unit vectors, without stacking them (each is vocab x hidden
    long)."""
    n = len(units)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            d[i, j] = d[j, i] = max(0.0, 1.0 - float(np.dot(units[i], units[j])))
    return d


def coefficient(distances: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    """Mean pairwise distance and a 95 % bootstrap interval over batches."""
    n = len(distances)
    upper = distances[np.triu_indices(n, 1)]
    if n < 3:  # one pair: nothing to resample, no interval
        return {"value": float(upper.mean()), "ci95": None, "pairs": int(len(upper))}
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(resamples):
        pick = rng.integers(0, n, n)
        d = distances[np.ix_(pick, pick)]
        distinct = pick[:, None] != pick[None, :]
        if distinct.any():
            means.append(d[distinct].mean())
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "value": float(upper.mean()),
        "ci95": [float(low), float(high)],
        "pairs": int(len(upper)),
    }


def diversity_coefficient(
    texts: list[str], probe: Probe, settings: Task2VecSettings | None = None
) -> dict:
    settings = settings or Task2VecSettings()
    if settings.batches < 2:
        raise ValueError("the diversity coefficient needs at least 2 batches")
    batches = batches_of(len(texts), settings)
    embeddings = [probe.embed([texts[i] for i in batch], settings) for batch in batches]
    return {
        **coefficient(cosine_distances(embeddings), seed=settings.seed),
        "probe": probe.name,
        "batches": len(batches),
        "settings": asdict(settings),
    }
