"""The quality gate: what a draft must pass before the novelty gate compares it with the corpus.

Rules, checked in this order (the first one failed is the draft's `rule`):

- `length`: at least MIN_WORDS words that are not punctuation (Gopher's minimum document length,
  counted as datatrove's GopherQualityFilter counts them).
- `repetition`: Gopher's repetition rules (Rae et al. 2021, table A1), as datatrove's
  GopherRepetitionFilter implements them and with its thresholds: duplicate line and paragraph
  shares, the top 2-4-gram's character share, the duplicated 5-10-grams' character share.
- `not_prose`: Gopher's quality rules on word statistics (table A1), as datatrove's
  GopherQualityFilter implements them and with its thresholds: mean word length 3 to 10 characters,
  at least 2 of Gopher's English stop words, '#' and ellipses at most 0.1 per word, at most 90 % of
  lines bullets and 30 % ending in an ellipsis. Left out: its length rule (`length` above) and its
  80 %-alphabetic-words rule (datatrove counts punctuation tokens as words, so it flags 300 of 500
  real PubMedQA abstracts). It catches invented-word strings, other languages and all-caps lists
  that the repetition rules let through (docs/quality.md).
- `task_text`: text about the task instead of the domain: a chat preamble ("Here is the document"),
  placeholders ("[Company Name]"), lines that are the brief's own fields ("Genre: ..."), sentences
  about the instructions ("300 to 600 words", "your answer should"), or a run of ECHO_WORDS words
  copied from the instruction the writer was given, outside what was filled into it (the keywords,
  genre, audience, angle: those a document may well repeat). Also (`talk`) a sentence that reads
  as a writer talking about its task or its output ("I have prepared this excerpt as per your
  request", "This text needs editing"): a linear probe on its embedding, fitted on blind readers'
  labels of committed documents, reaches the probe's threshold, calibrated on real text
  (talk_probe.json, written by benchmarks/talk_probe.py; docs/quality.md).
  And (`persona`) the name of a persona its writer was given ("John Doe Clinician, a renowned
  ...", "We are John Doe Engineer"): the conductor invents expert names, and a document that
  introduces its writer by one is about its writing. All 929 expert names of the runs read blind,
  tried on each of the 2,931 real documents, flag one ("a senior manager at Cramo", for an expert
  named "Senior Manager"; docs/quality.md).
- `off_topic`: a document that never touches its seed keywords: the cosine of its embedding (the
  one the novelty gate computes) to the keywords' is below TOPIC_THRESHOLD, calibrated on real
  abstracts against their own MeSH terms (docs/quality.md, benchmarks/topic_threshold.py).

`check` returns the figures behind every rule, so a record shows how close it came, and a
metrics report can give the flagged share of any corpus, real text included.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

RULES = ("length", "repetition", "not_prose", "task_text", "off_topic")
REFUSED = "low quality"  # the reason of a draft the gate refuses, and of a try it rejects
MIN_WORDS = 50  # Gopher's min_doc_words
ECHO_WORDS = 8  # consecutive words of the instruction: longer than any keyword, genre or audience
# The 1st percentile of real PubMedQA abstracts against 4 of their own MeSH terms (0.235), rounded
# down to a multiple of 0.05: 0.4 % of those abstracts fall below it, 80 % of mismatched pairs do.
TOPIC_THRESHOLD = 0.20
# The talk probe: weights over the embedder's dimensions, a bias and a threshold in log-odds
# (benchmarks/talk_probe.py writes it; read once, here, so check() and Talk agree).
PROBE_PATH = Path(__file__).with_name("talk_probe.json")
PROBE = json.loads(PROBE_PATH.read_text())
TALK_THRESHOLD = float(PROBE["threshold"])

_TASK_PATTERNS = {
    "preamble": r"\A\s*(?:here is|here's|here are|below is|sure|certainly|of course)\b",
    "placeholder": r"\[(?:insert|your|company|client|recipient|name|date|address|title|author|"
    r"amount|number|x{2,})\b[^\]\n]{0,40}\]|\{[a-z_]{2,30}\}|<(?:insert|your|name)\b[^>\n]{0,40}>|"
    # "[Investor's Name]", "[Fictitious Title]" (added 2026-12-05, read in committed documents)
    r"\[[^\]\n]{0,30}\b(?:name|date|address|title|email|phone)\]",
    "brief_field": r"^[ \t*#>-]*(?:category|genre|audience|angle|entity|expert|keywords?|summary|"
    r"seed|word count)[ \t*]*:",
    # the writer talking about its output anywhere (the preamble rule sees only the start)
    "about_itself": r"\b(?:here is|here's|below is) (?:the|a|an|my) (?:\w+ ){0,2}"
    r"(?:document|article|text|draft|outline|version|leaflet|essay)\b|"
    r"\bI will (?:write|talk) about\b|"
    # assistant chatter: "I'm here to help you craft a finance glossary entry" (2026-12-05)
    r"\bI(?: am|'m|’m) here to (?:help|assist)\b",
    "instructions": r"\b(?:these|your|the above) instructions?\b|"
    r"\binstructions? (?:above|below)\b|\bword count\b|"
    r"\b\d{2,4} (?:to|-|–) \d{2,4} words\b|\b(?:at least|no more than|up to) \d+ "
    r"(?:words|placeholders|paragraphs|sentences|bullet points)\b|"
    # "a research note of 300 words" (2026-12-05)
    r"\b(?:of|in|about|around|under|within|approximately) \d{2,4}[- ]words?\b|"
    r"\byour (?:answer|response|document|essay|article|text) (?:should|must|will)\b|"
    r"\bas an ai\b|\b(?:an ai|a) language model\b",
    # The writer stepping outside its text: the document seen from outside, its task, its drafts,
    # whoever asked, itself as a model. Written 2026-12-06 from blind readers' quotes of chatter the
    # rules above let through (benchmarks/blind_read, docs/quality.md), each phrase narrowed to
    # its talking-about-the-writing sense ("the task at hand", not "the task was repeated"; "your
    # previous draft", not "a previous attempt to quit"; "END OF", not "End of life care").
    "about_the_writing": r"\b(?:the above|the following) (?:document|text|passage)\b|"
    r"\b(?:the|this) (?:document|text) (?:continues|ends)\b|\bthe above (?:title|message)\b|"
    r"\bthe task (?:at hand|requires|is to|was to)\b|\bthis task has been\b|"
    r"\b(?:in|of) the (?:original )?prompt\b|\bword limit\b|\b(?:your|its|a) first sentence\b|"
    r"\b(?:your|my) (?:previous|earlier|last|first) (?:attempt|response|draft|message|version)\b|"
    r"\b(?:what|as) you (?:asked for|requested)\b|\byou asked me\b|\bI asked you\b|"
    r"\byou (?:mentioned|said) (?:earlier|before|above)\b|"
    r"\bhere(?: is|'s|’s) your (?:feedback|own copy|revised|rewritten|edited)\b|"
    r"^[ \t*#>\-<]*(?:(?-i:END OF)|end summary|title line)\b|"
    r"\b(?:hugging ?face|smollm\w*)\b|\bwhen I was (?:first )?created\b|"
    r"\b(?:document|text|article|draft|passage) (?:has been|was) edited\b|"
    r"\bwritten from scratch\b",
}
_TASK = {
    name: re.compile(pattern, re.IGNORECASE | re.MULTILINE)
    for name, pattern in _TASK_PATTERNS.items()
}
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_lock = threading.Lock()


@dataclass(frozen=True)
class Quality:
    """A draft's figures per rule and the rules it failed (in RULES order)."""

    flags: tuple[str, ...]
    figures: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.flags

    @property
    def rule(self) -> str:
        return self.flags[0] if self.flags else ""

    def as_record(self) -> dict:
        return {"flags": list(self.flags), **self.figures}


def _repetition(text: str, words: list[str]) -> tuple[str, dict]:
    """Gopher's repetition figures, datatrove's helpers and thresholds; the first rule exceeded."""
    from datatrove.pipeline.filters.gopher_repetition_filter import (
        find_all_duplicate,
        find_duplicates,
        find_top_duplicate,
        get_n_grams,
    )

    rules = _gopher()
    figures, failed = {}, ""

    def share(name: str, value: float, limit: float | None) -> None:
        nonlocal failed
        figures[name] = round(value, 4)
        if limit and value > limit and not failed:
            failed = name

    paragraphs = re.split(r"\n{2,}", text.strip())
    dup, chars = find_duplicates(paragraphs)
    share("dup_para_frac", dup / len(paragraphs), rules.dup_para_frac)
    share("dup_para_char_frac", chars / len(text), rules.dup_para_char_frac)
    lines = re.split(r"\n+", text)
    dup, chars = find_duplicates(lines)
    share("dup_line_frac", dup / len(lines), rules.dup_line_frac)
    share("dup_line_char_frac", chars / len(text), rules.dup_line_char_frac)
    for n, limit in rules.top_n_grams:
        grams = get_n_grams(words, n)
        share(f"top_{n}_gram", find_top_duplicate(grams) / len(text) if grams else 0.0, limit)
    for n, limit in rules.dup_n_grams:
        share(f"dup_{n}_gram", find_all_duplicate(words, n) / len(text), limit)
    return failed, figures


def _gopher():
    from datatrove.pipeline.filters import GopherRepetitionFilter

    return GopherRepetitionFilter()  # its defaults are the paper's thresholds


@lru_cache(maxsize=1)
def _prose_filter():
    from datatrove.pipeline.filters import GopherQualityFilter

    # its defaults are the paper's thresholds; length is our own rule, the alphabetic share is off
    return GopherQualityFilter(
        min_doc_words=None, max_doc_words=None, max_non_alpha_words_ratio=None
    )


def not_prose(text: str) -> str:
    """Which of Gopher's word-statistics rules `text` fails ("" for none): datatrove's
    GopherQualityFilter's reason, less its "gopher_" prefix ("above_avg_threshold": mean word
    length over 10, "enough_stop_words": fewer than 2 stop words, ...)."""
    from datatrove.data import Document

    with _lock:  # its tokenizer is datatrove's spaCy one: one thread at a time (see _words)
        verdict = _prose_filter().filter(Document(text=text, id=""))
    return "" if verdict is True else verdict[1].removeprefix("gopher_")


def _words(text: str) -> list[str]:
    from datatrove.utils.text import split_into_words

    # datatrove's spaCy tokenizer is built lazily and uses memory zones: one thread at a time
    with _lock:
        return list(split_into_words(text))


def _spans(words: list[str]) -> set[str]:
    return {" ".join(words[i : i + ECHO_WORDS]) for i in range(len(words) - ECHO_WORDS + 1)}


def task_text(
    text: str,
    instruction: str = "",
    values: tuple[str, ...] | list[str] = (),
    personas: tuple[str, ...] | list[str] = (),
) -> list[str]:
    """Which task-text patterns `text` shows; `echo` when it copies ECHO_WORDS words of
    `instruction` that are the instruction's own wording, not one of the `values` filled into it;
    `persona` when it names one of `personas` (its writers' names, two words or more)."""
    found = [name for name, pattern in _TASK.items() if pattern.search(text)]
    named = [p for p in personas if len(p.split()) >= 2]
    if named and re.search(
        r"\b(?:" + "|".join(re.escape(p.strip()) for p in named) + r")\b", text, re.IGNORECASE
    ):
        found.append("persona")
    filled = [v for v in values if v and v.strip()]
    parts = (
        re.split(
            "|".join(re.escape(v) for v in sorted(filled, key=len, reverse=True)),
            instruction,
            flags=re.IGNORECASE,
        )
        if filled
        else [instruction]
    )
    spans = set().union(*(_spans(_WORD.findall(part.lower())) for part in parts))
    if spans and _spans(_WORD.findall(text.lower())) & spans:
        found.append("echo")
    return found


def sentences(text: str, least_words: int = 4, most: int = 80) -> list[str]:
    """The sentences and lines of `text` with at least `least_words` words (the first `most`)."""
    found = (s.strip() for s in _SENTENCE.split(text))
    return [s for s in found if len(s.split()) >= least_words][:most]


class Talk:
    """The talk check: `Talk(embedder)(text)` is the sentence of `text` the probe scores highest
    and that score in log-odds ((-inf, "") for a text without sentences). `embedder` is the
    novelty gate's (memory.embedder.Embedder), the model the probe was fitted on. The sentences
    are embedded apart from the draft: in one batch the short ones are padded to its length."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder
        self.weights = np.asarray(PROBE["weights"], dtype=np.float32)
        self.bias = float(PROBE["bias"])
        if self.weights.shape != (embedder.dim,):
            raise ValueError(
                f"{PROBE_PATH.name} has {self.weights.size} weights for a "
                f"{embedder.dim}-dimensional embedder; refit it (benchmarks.talk_probe)"
            )

    def __call__(self, text: str) -> tuple[float, str]:
        found = sentences(text)
        if not found:
            return float("-inf"), ""
        scores = self.embedder.encode(found) @ self.weights + self.bias
        best = int(scores.argmax())
        return float(scores[best]), found[best]


def check(
    text: str,
    instruction: str = "",
    topic_similarity: float | None = None,
    values: tuple[str, ...] | list[str] = (),
    talked: tuple[float, str] | None = None,
    personas: tuple[str, ...] | list[str] = (),
) -> Quality:
    """Every rule's figures for `text`. `instruction`: what its writer was asked, `values`: what was
    filled into it (for echoes); `topic_similarity`: cosine of the text's embedding to its seed
    keywords' (None: not checked); `talked`: `Talk(embedder)(text)` (None: not checked);
    `personas`: the names its writers were given."""
    from datatrove.utils.text import PUNCTUATION_SET

    words = _words(text)
    counted = sum(1 for w in words if any(ch not in PUNCTUATION_SET for ch in w))
    flags = []
    if counted < MIN_WORDS:
        flags.append("length")
    repeated, figures = _repetition(text, words) if text.strip() else ("empty", {})
    if repeated:
        flags.append("repetition")
    prose = not_prose(text) if text.strip() else "empty"
    if prose:
        flags.append("not_prose")
    said = task_text(text, instruction, values, personas)
    if talked is not None and talked[0] >= TALK_THRESHOLD:
        said.append("talk")
    if said:
        flags.append("task_text")
    if topic_similarity is not None and topic_similarity < TOPIC_THRESHOLD:
        flags.append("off_topic")
    figures = {
        "words": counted,
        "repetition": repeated or None,
        "not_prose": prose or None,
        "task_text": said,
        "topic_similarity": None if topic_similarity is None else round(float(topic_similarity), 4),
        "talk": None
        if talked is None
        else {"score": round(talked[0], 4) if talked[1] else None, "sentence": talked[1][:200]},
        "gopher": figures,
    }
    return Quality(flags=tuple(flags), figures=figures)


def subject(keywords: list[str]) -> str:
    """What a document's topic is compared against: its seed keywords, as the calibration wrote
    the MeSH terms."""
    return ", ".join(keywords)


def topic_similarity(text_vector: np.ndarray, subject_vector: np.ndarray) -> float:
    return float(np.asarray(text_vector).reshape(-1) @ np.asarray(subject_vector).reshape(-1))


def inspect(
    talk: Talk,
    text: str,
    keywords: list[str],
    instruction: str = "",
    values: tuple[str, ...] | list[str] = (),
    personas: tuple[str, ...] | list[str] = (),
) -> tuple[np.ndarray, Quality]:
    """A draft's embedding (with `talk`'s embedder, the novelty gate's) and every rule's figures,
    as the gate computes them: the topic against its seed `keywords` (none: not checked, as for a
    real seed document), the talk check on each sentence, the names its writers were given."""
    about = subject(keywords) if keywords else ""
    vectors = talk.embedder.encode([text, about] if about else [text])
    topic = topic_similarity(vectors[0], vectors[1]) if about else None
    return vectors[0], check(text, instruction, topic, values, talk(text), personas)
