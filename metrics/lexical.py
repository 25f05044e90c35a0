"""Surface-form diversity: compression ratio, n-gram diversity, self-repetition, ROUGE-L
homogenization.

Compression ratio and n-gram diversity come from the `diversity` package (Shaib et al.). Two are
computed here, with the package's definitions, because its code is quadratic where it need not be:
self-repetition concatenates lists with sum() (15.6 s at 3,000 documents, ~3 min at 10,000), and
homogenization runs a pure-Python LCS on every ordered pair. tests/test_metrics.py checks both
against the package on the same input.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from functools import cache

import numpy as np


@cache
def diversity_package():
    """Import the `diversity` package without its import-time download of NLTK data (which none of
    the metrics used here need, and which cannot succeed offline)."""
    import nltk

    download, nltk.download = nltk.download, lambda *args, **kwargs: False
    try:
        import diversity
    finally:
        nltk.download = download
    return diversity


def compression_ratio(texts: list[str]) -> float:
    """gzip size ratio of the concatenated corpus (original / compressed): lower = more diverse."""
    return float(diversity_package().compression_ratio(texts, "gzip"))


def ngram_diversity(texts: list[str], n: int = 4) -> float:
    """Sum over k = 1..n of unique / total k-grams of whitespace tokens: higher = more diverse (max
    n)."""
    if len(" ".join(texts).split(" ")) < n:
        return float("nan")  # no n-gram at all: undefined (the package would divide by zero)
    return float(diversity_package().ngram_diversity_score(texts, n))


def self_repetition(texts: list[str], n: int = 4) -> float:
    """Mean over documents of log(1 + occurrences of the document's distinct n-grams in *other*
    documents) (Salkar et al. 2022, as in `diversity`): lower = more diverse."""
    per_doc = [set(zip(*(words[i:] for i in range(n)))) for words in (t.split() for t in texts)]
    counts = Counter(itertools.chain.from_iterable(per_doc))
    return float(
        np.mean([math.log(sum(counts[g] for g in grams) - len(grams) + 1) for grams in per_doc])
    )


@cache
def _rouge_tokenizer():
    from rouge_score import tokenizers

    # what rouge_scorer uses: lowercase alphanumeric runs
    return tokenizers.DefaultTokenizer(use_stemmer=False)


def homogenization(texts: list[str], max_docs: int = 500, seed: int = 0) -> dict:
    """Mean pairwise ROUGE-L F1 over documents (Padmakumar & He 2023): higher = more homogeneous.

    ROUGE-L F1 is symmetric, so each unordered pair is scored once; the LCS runs in rapidfuzz (C++).
    Past `max_docs` documents a seeded random subset is scored (the cost is quadratic).
    """
    from rapidfuzz.distance import LCSseq

    if len(texts) > max_docs:
        texts = random.Random(seed).sample(texts, max_docs)
    vocab: dict[str, int] = {}
    docs = [
        [vocab.setdefault(w, len(vocab)) for w in _rouge_tokenizer().tokenize(t)] for t in texts
    ]
    scores = []
    for a, b in itertools.combinations(docs, 2):
        lcs = LCSseq.similarity(a, b)
        # F1 of P = lcs/|a|, R = lcs/|b|
        scores.append(0.0 if lcs == 0 else 2 * lcs / (len(a) + len(b)))
    return {"value": float(np.mean(scores)) if scores else float("nan"), "docs": len(docs)}
