"""What filters calibrated on real text could still catch in the documents the gate let through.

    # needs ../shared/data; about 10 minutes on 2 cores (it embeds 38,000 sentences)
    .venv/bin/python -m benchmarks.residue

Blind readers (benchmarks.blind_read) labelled every committed document of the packs in ROOTS
(each folder's sources.json says which corpus a pack read): each document once, its first
reader's labels. The gate had
passed all of them. For each kind of residue, candidate rules are set by real text alone, the
rule the gate's other thresholds follow (at most 0.5 % of real PubMedQA abstracts flagged; FPB
lines are single sentences, which no repetition rule can flag), then scored against the labels:

- loops (a sentence or clause three times or more, or near-identical sentences; Gopher's
  repetition rules, in the gate, flag none of these documents): a run of n words that occurs 3
  times (the smallest n within the limit), and a sentence with two others at a cosine of at least t
  (the gate's sentence embedding; the lowest t, in steps of 0.05, within the limit);
- chatter: the talk probe (benchmarks.talk_probe), which the gate applies with its fit on the
  labels of docs/data/blind-2026-12-06, fitted again on every label but one domain's and scored
  on that domain's documents outside the shipped fit (which were generated with the shipped
  probe in the gate, so it passed every one of them).
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from benchmarks import talk_probe
from benchmarks.quality_real import real_texts
from memory.embedder import default_embedder

DOCS_DATA = talk_probe.DATA.parent
# the labelled packs as of 63b019f (docs/quality.md's figures); each folder has a sources.json
ROOTS = tuple(
    DOCS_DATA / name
    for name in (
        "blind-2026-12-06",
        "blind-2026-12-06-probe",
        "prompts-2026-12-06",
        "seeds-2026-12-06",
    )
)
REAL_LIMIT = talk_probe.REAL_LIMIT
TIMES = 3  # "repeated 3 or more times", the readers' definition of a loop
_WORD = re.compile(r"[a-z0-9]+")


def most_repeated(text: str, n: int) -> int:
    """How often the most frequent run of n words occurs in `text`."""
    words = _WORD.findall(text.lower())
    runs = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return max(runs.values(), default=0)


def near_copies(vectors: np.ndarray, threshold: float) -> int:
    """The most sentences at a cosine of at least `threshold` to one sentence, itself included."""
    if len(vectors) < 2:
        return len(vectors)
    return int(((vectors @ vectors.T) >= threshold).sum(axis=1).max())


def caught(name: str, flags: np.ndarray, labels: np.ndarray, real: float) -> str:
    """One loop rule's line: the `real` share of abstracts it flags, the labelled documents it
    catches and the others it flags."""
    hit, false = flags[labels], flags[~labels]
    return (
        f"  {name}: real abstracts flagged {real:.1%}; caught {hit.sum()} of {labels.sum()} "
        f"({hit.mean():.0%}), others flagged {false.sum()} of {(~labels).sum()} "
        f"({false.mean():.1%})"
    )


def loops(docs: list, abstracts: list[str], sentences) -> None:
    labels = np.array([d.loop for d in docs])
    print(f"loops: {labels.sum()} of {len(docs)} documents read as loops")
    for n in range(4, 31):
        share = np.mean([most_repeated(t, n) >= TIMES for t in abstracts])
        if share <= REAL_LIMIT:
            flags = np.array([most_repeated(d.text, n) >= TIMES for d in docs])
            print(caught(f"a {n}-word run {TIMES} times", flags, labels, share))
            break
    else:
        print("  no run length up to 30 words is within the real-text limit")
    real_vectors, doc_vectors = sentences(abstracts), sentences([d.text for d in docs])
    for step in range(14, 21):  # cosine 0.70 .. 1.00
        t = step * 0.05
        share = np.mean([near_copies(v, t) >= TIMES for v in real_vectors])
        if share <= REAL_LIMIT:
            flags = np.array([near_copies(v, t) >= TIMES for v in doc_vectors])
            print(caught(f"a sentence and 2 others at cosine >= {t:.2f}", flags, labels, share))
            break
    else:
        print("  no cosine threshold is within the real-text limit")


def chatter(docs: list, real: dict[str, list[str]], sentences) -> None:
    fitted = {d.text for d in talk_probe.labelled()}
    unseen = [d for d in docs if d.text not in fitted]
    print(
        f"chatter: {sum(d.chatter for d in docs)} of {len(docs)} documents read as chatter; "
        f"{len(unseen)} not in the shipped probe's fit (real documents: the threshold's rule)"
    )
    real_vectors = {name: sentences(texts) for name, texts in real.items()}
    for held in ("finance", "biomedicine"):
        weights, bias, threshold = talk_probe.fit_without(held, docs, real_vectors, sentences)
        scored = [d for d in unseen if d.domain == held]
        name = (
            f"fitted without {held} (threshold {threshold:.2f}), its documents made with the probe"
        )
        talk_probe.judge(name, scored, sentences, weights, bias, threshold)


def main() -> None:
    docs = talk_probe.labelled(ROOTS)
    real = real_texts()
    sentences = talk_probe.Sentences(default_embedder())
    print(f"{len(docs)} labelled documents from {', '.join(r.name for r in ROOTS)}")
    loops(docs, real["PubMedQA abstracts"], sentences)
    chatter(docs, real, sentences)


if __name__ == "__main__":
    main()
