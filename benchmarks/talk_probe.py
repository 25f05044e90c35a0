"""Where the quality gate's talk probe comes from: blind readers' labels, fitted and calibrated.

    # needs ../shared/data; about 8 minutes on 2 cores (it embeds 19,000 sentences)
    .venv/bin/python -m benchmarks.talk_probe [--out memory/talk_probe.json]

The readers of benchmarks.blind_read marked committed documents as chatter (a sentence about the
writing task instead of the subject) and quoted the sentence. A logistic regression (scikit-learn)
on the gate's sentence embeddings learns that direction: the quoted sentences and WRITTEN (the
sentences the cosine check before it compared with) are its positives, every sentence of the
documents that all their readers called clean its negatives. The threshold is set on real text
the probe never saw: the lowest multiple of 0.25 (in log-odds) that flags at most 0.5 % of the
real documents of each domain, the rule the cosine check before it used. This is FineWeb-Edu's
recipe (LLM annotations, a linear classifier on embeddings) at a smaller scale.

Printed first, so the fit is judged on documents it did not learn from: the probe fitted on one
domain's labels, calibrated on real text, against the other domain's labelled documents (the
share of chatter documents it catches, of clean ones it flags). Then the shipped fit, on both.
"""

from __future__ import annotations

import argparse
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.blind_read import merge_keys, read_key, read_labels, read_quotes
from benchmarks.quality_real import real_texts
from memory import quality
from memory.embedder import default_embedder

DATA = Path(__file__).resolve().parents[1] / "docs" / "data" / "blind-2026-12-06"
STEP = 0.25  # threshold grid, log-odds
REAL_LIMIT = 0.005  # the share of real documents of each domain the threshold may flag
C = 1.0  # scikit-learn's default regularisation; not searched
# What a writer says about its task or its output, written on 2026-12-05 before any generated
# document was scored against them (the talk check compared sentences with these until the probe).
WRITTEN = (
    "I have written this document as you requested.",
    "Here is the text you asked me to write.",
    "This document was created according to your instructions.",
    "You may add more details or edit this text as needed.",
    "Let me know if you would like me to make any changes.",
    "As an AI assistant, I am happy to help you write this.",
    "This draft needs further editing before it can be published.",
    "I was asked to write an essay about this topic.",
    "Please provide more information so that I can complete the document.",
    "The article should be no longer than the word limit you gave me.",
    "I hope this document meets your requirements.",
    "The original text was revised as requested by the editor.",
)


@dataclass
class Labelled:
    """One committed document as its readers saw it."""

    domain: str
    text: str
    chatter: bool  # its first reader's label
    clean: bool  # no reader called it chatter
    quotes: list[str]  # the sentences readers quoted as chatter
    loop: bool = False  # its first reader's label


def labelled(roots: tuple[Path, ...] = (DATA,)) -> list[Labelled]:
    """Every document of the roots' packs (each root's sources.json) that a reader answered, once
    (a document read in two packs, or under two names, is one)."""
    docs: dict[tuple, Labelled] = {}
    for root in roots:
        for pack, source in json.loads((root / "sources.json").read_text())["packs"].items():
            texts = {}
            for name, corpus in source["corpora"].items():
                with gzip.open(root / corpus["path"], "rt") as f:
                    rows = [json.loads(line) for line in f if line.strip()]
                for row in rows[-corpus.get("last", len(rows)) :]:
                    texts[(name, str(row["id"]))] = row["text"]
            key = merge_keys([read_key(root / pack / "key.json")])
            for answers in sorted((root / pack).glob("*.txt")):
                quotes = read_quotes(answers)
                for header, labels in read_labels(answers, key).items():
                    text = texts[key[header]]
                    first = Labelled(
                        source["domain"], text, labels["chatter"], True, [], labels["loop"]
                    )
                    found = docs.setdefault((source["domain"], text), first)
                    found.clean &= not labels["chatter"]
                    if labels["chatter"] and quotes.get(header):
                        found.quotes.append(quotes[header])
    return list(docs.values())


def fit(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, float]:
    """The probe's weights and bias: chatter sentences against clean ones, classes balanced."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, class_weight="balanced", max_iter=2000)
    model.fit(
        np.vstack([positive, negative]), np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    )
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def calibrate(real_scores: dict[str, np.ndarray]) -> float:
    """The lowest multiple of STEP that flags at most REAL_LIMIT of each domain's real documents
    (a document's score is its highest sentence's)."""

    def allowed(threshold: float) -> bool:
        return all((s >= threshold).mean() <= REAL_LIMIT for s in real_scores.values())

    top = max(np.quantile(s, 1 - REAL_LIMIT) for s in real_scores.values())
    threshold = STEP * np.ceil(top / STEP)
    while allowed(threshold - STEP):
        threshold -= STEP
    while not allowed(threshold):
        threshold += STEP
    return float(threshold)


class Sentences:
    """Each text's sentence embeddings (quality.sentences, the gate's model), embedded once."""

    def __init__(self, embedder) -> None:
        self.embedder, self.cache = embedder, {}

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        found = [quality.sentences(t) for t in new]
        vectors = self.embedder.encode([s for f in found for s in f], batch_size=64)
        start = 0
        for text, sentences in zip(new, found):
            self.cache[text] = vectors[start : start + len(sentences)]
            start += len(sentences)
        return [self.cache[t] for t in texts]


def document_scores(vectors: list[np.ndarray], weights: np.ndarray, bias: float) -> np.ndarray:
    return np.array([float((v @ weights).max()) + bias if len(v) else -np.inf for v in vectors])


def probe(docs: list[Labelled], sentences: Sentences) -> tuple[np.ndarray, float, int, int]:
    positive = sentences([*WRITTEN, *(q for d in docs for q in d.quotes)])
    negative = [v for v in sentences([d.text for d in docs if d.clean]) if len(v)]
    weights, bias = fit(np.vstack(positive), np.vstack(negative))
    return weights, bias, sum(len(v) for v in positive), sum(len(v) for v in negative)


def fit_without(
    held: str, docs: list[Labelled], real: dict[str, list[np.ndarray]], sentences: Sentences
) -> tuple[np.ndarray, float, float]:
    """The probe fitted on every domain's labels but `held`'s, and its threshold set on the real
    documents' sentence vectors (`real`: name -> vectors), as the shipped probe's is."""
    weights, bias, _, _ = probe([d for d in docs if d.domain != held], sentences)
    return weights, bias, calibrate({n: document_scores(v, weights, bias) for n, v in real.items()})


def judge(name: str, docs: list[Labelled], sentences, weights, bias, threshold) -> None:
    """Print the share of `docs` read as chatter that the probe catches, of clean ones it flags."""
    scores = document_scores(sentences([d.text for d in docs]), weights, bias)
    chatter = np.array([d.chatter for d in docs])
    caught, flagged = (scores[chatter] >= threshold), (scores[~chatter] >= threshold)
    print(
        f"  {name}: {len(docs)} documents; chatter caught {caught.sum()} of {chatter.sum()} "
        f"({caught.mean():.0%}), clean flagged {flagged.sum()} of {(~chatter).sum()} "
        f"({flagged.mean():.1%})"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.talk_probe")
    p.add_argument("--out", type=Path, default=quality.PROBE_PATH, help="where to write the probe")
    args = p.parse_args(argv)
    docs = labelled()
    sentences = Sentences(default_embedder())
    real = {name: sentences(texts) for name, texts in real_texts().items()}
    domains = sorted({d.domain for d in docs})
    print(
        f"{len(docs)} labelled documents, {sum(len(d.quotes) for d in docs)} quotes; real: "
        + ", ".join(f"{name} {len(v)}" for name, v in real.items())
    )
    for held in domains:
        weights, bias, threshold = fit_without(held, docs, real, sentences)
        print(f"fitted without {held} (threshold {threshold:.2f}):")
        judge(held, [d for d in docs if d.domain == held], sentences, weights, bias, threshold)
    weights, bias, positives, negatives = probe(docs, sentences)
    real_scores = {n: document_scores(v, weights, bias) for n, v in real.items()}
    threshold = calibrate(real_scores)
    print(
        f"shipped fit, on both ({positives} quoted and written sentences, {negatives} clean "
        f"sentences; threshold {threshold:.2f}; in-sample):"
    )
    for domain in domains:
        judge(domain, [d for d in docs if d.domain == domain], sentences, weights, bias, threshold)
    for name, scores in real_scores.items():
        print(f"  real {name}: {(scores >= threshold).sum()} of {len(scores)} flagged")
    args.out.write_text(
        json.dumps(
            {
                "about": "memory.quality's talk probe, written by python -m benchmarks.talk_probe",
                "embedder": "all-MiniLM-L6-v2",
                "positives": positives,
                "clean_sentences": negatives,
                "threshold": threshold,
                "bias": round(bias, 6),
                "weights": [round(float(w), 6) for w in weights],
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
