"""Decontamination: the share of a corpus's documents that share an n-gram with the evaluation sets.

    python -m train.decontaminate --corpus metasynth=runs/finance --corpus template=runs/template \
        --against fpb,pubmedqa --out reports/decontamination [--write-clean]

As GPT-3 (Brown et al. 2020, appendix C) and Cosmopedia did: text is lower-cased and cut into words
(runs of letters and digits; punctuation dropped), and a document is contaminated when one of its
word n-grams occurs in an evaluation item. The n follows the evaluation text's length: 13-grams
(GPT-3's choice) for a set whose median item has at least 40 words (PubMedQA abstracts: ~200),
8-grams for shorter texts (FPB sentences: median 22 words), where a 13-gram would be most of a
sentence and only near-copies would match. An item shorter than n words matches when all of it
occurs in order (items under 5 words, such as "Profit rose .", are left out: too common a phrase to
mean a copy).

The evaluation items are every record of the evaluation half (core/splits.py), its dev part
(few-shot exemplars) included: FPB sentences; PubMedQA questions with their abstracts. Writes
OUT/report.json and OUT/report.md; `--write-clean` also writes OUT/<name>.clean.jsonl without the
contaminated documents. train.ablate runs the same report on every arm (and drops them with
--decontaminate).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core.cli import run_command
from core.errors import UserError
from core.jsonl import write_atomic
from core.splits import EVALUATION

LONG_N, SHORT_N, SHORT_BELOW_WORDS = 13, 8, 40
MIN_WHOLE = 5  # an item shorter than this ("Profit rose .") is too common a phrase to flag anything
EXAMPLES = 5  # matched n-grams shown per corpus
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def n_for(item_lengths: list[int]) -> int:
    """13 for long evaluation texts, 8 when the median item is shorter than 40 words."""
    return SHORT_N if statistics.median(item_lengths) < SHORT_BELOW_WORDS else LONG_N


@dataclass
class EvalSet:
    """An evaluation set's n-grams (and its items shorter than n, whole)."""

    name: str
    n: int
    items: int
    grams: set = field(default_factory=set)
    short: set = field(default_factory=set)  # tuples of fewer than n words
    short_lengths: set = field(default_factory=set)

    @classmethod
    def of(cls, name: str, texts: list[str]) -> EvalSet:
        tokenised = [words(t) for t in texts]
        n = n_for([len(w) for w in tokenised])
        found = cls(name, n, len(texts))
        for w in tokenised:
            if len(w) < n:
                if len(w) >= MIN_WHOLE:
                    found.short.add(tuple(w))
                    found.short_lengths.add(len(w))
            else:
                found.grams.update(tuple(w[i : i + n]) for i in range(len(w) - n + 1))
        return found

    def match(self, doc_words: list[str]) -> tuple | None:
        """The first n-gram (or whole short item) of the document found in this set."""
        sizes = [(self.n, self.grams)] + [(k, self.short) for k in sorted(self.short_lengths)]
        for size, pool in sizes:
            for i in range(len(doc_words) - size + 1):
                gram = tuple(doc_words[i : i + size])
                if gram in pool:
                    return gram
        return None


def evaluation_texts(dataset: str, split: str = EVALUATION) -> list[str]:
    """What an evaluation item shows the model: an FPB sentence; a PubMedQA question, abstract."""
    from core.splits import record_text
    from train.realtext import rows

    return [
        " ".join(t for t in (r.get("question", ""), record_text(r)) if t)
        for r in rows(dataset, split=split)
    ]


def evaluation_sets(datasets: list[str], split: str = EVALUATION) -> list[EvalSet]:
    return [EvalSet.of(d, evaluation_texts(d, split)) for d in datasets]


def matches(texts: list[str], sets: list[EvalSet]) -> list[dict]:
    """Per document, {set name: the matching n-gram as text} for the sets it overlaps."""
    found = []
    for text in texts:
        w = words(text)
        hits = {s.name: s.match(w) for s in sets}
        found.append({name: " ".join(gram) for name, gram in hits.items() if gram})
    return found


def report(name: str, texts: list[str], sets: list[EvalSet], path: str = "") -> dict:
    hits = matches(texts, sets)
    dirty = [i for i, h in enumerate(hits) if h]
    return {
        "corpus": name,
        "path": path,
        "documents": len(texts),
        "contaminated": len(dirty),
        "share": round(len(dirty) / len(texts), 4) if texts else 0.0,
        "by_set": {
            s.name: {"n": s.n, "items": s.items, "documents": sum(1 for h in hits if s.name in h)}
            for s in sets
        },
        "examples": [{"document": i, **hits[i]} for i in dirty[:EXAMPLES]],
        "contaminated_documents": dirty,
    }


def clean(texts: list[str], sets: list[EvalSet]) -> tuple[list[str], int]:
    """The documents that share no n-gram with the sets, and how many were dropped."""
    kept = [t for t, h in zip(texts, matches(texts, sets)) if not h]
    return kept, len(texts) - len(kept)


def table(reports: list[dict]) -> str:
    sets = list(reports[0]["by_set"]) if reports else []
    head = (
        "| corpus | documents | contaminated | share | "
        + " | ".join(
            f"{s} ({reports[0]['by_set'][s]['n']}-grams, {reports[0]['by_set'][s]['items']} items)"
            for s in sets
        )
        + " |"
    )
    rows = [head, "|---|---:|---:|---:|" + "---:|" * len(sets)]
    for r in reports:
        rows.append(
            f"| {r['corpus']} | {r['documents']} | {r['contaminated']} | "
            f"{r['share']:.2%} | "
            + " | ".join(str(r["by_set"][s]["documents"]) for s in sets)
            + " |"
        )
    return "\n".join(rows) + "\n"


def parse_corpora(items: list[str]) -> dict[str, str]:
    """NAME=PATH pairs, names unique and usable as file names."""
    corpora: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--corpus takes NAME=PATH, got {item!r}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise UserError(f"--corpus name {name!r}: use letters, digits, '.', '_' or '-'")
        if name in corpora:
            raise UserError(f"--corpus {name} given twice")
        corpora[name] = path
    return corpora


def main(argv: list[str] | None = None) -> int:
    from core.cli import Parser
    from train.realtext import DATASETS

    p = Parser(prog="python -m train.decontaminate", description=__doc__.splitlines()[0])
    p.add_argument(
        "--corpus",
        action="append",
        required=True,
        help="NAME=PATH: a run directory or a JSONL with 'text' (repeatable)",
    )
    p.add_argument(
        "--against",
        default=",".join(DATASETS),
        help=f"evaluation sets, comma-separated (default {','.join(DATASETS)})",
    )
    p.add_argument("--out", required=True, help="a new folder: report.json, report.md")
    p.add_argument(
        "--write-clean",
        action="store_true",
        help="also write OUT/<name>.clean.jsonl without the contaminated documents",
    )

    def command() -> int:
        from core.lock import hold
        from train.data import read_records

        args = p.parse_args(argv)
        corpora = parse_corpora(args.corpus)
        against = [d for d in args.against.split(",") if d]
        unknown = [d for d in against if d not in DATASETS]
        if unknown or not against:
            raise UserError(
                f"--against: unknown set {unknown[0] if unknown else ''!r} "
                f"(available: {', '.join(DATASETS)})"
            )
        out = Path(args.out)
        with hold(out):
            if (out / "report.json").exists():
                raise UserError(f"{out} already holds a report; choose another --out")
            records_of = {name: read_records(path) for name, path in corpora.items()}  # all first
            sets = evaluation_sets(against)
            reports = []
            for name, path in corpora.items():
                records = records_of[name]
                texts = [r["text"] for r in records]
                reports.append(report(name, texts, sets, path))
                if args.write_clean:
                    dirty = set(reports[-1]["contaminated_documents"])
                    lines = [json.dumps(r) + "\n" for i, r in enumerate(records) if i not in dirty]
                    write_atomic(out / f"{name}.clean.jsonl", "".join(lines).encode())
            write_atomic(out / "report.json", json.dumps(reports, indent=2).encode())
            write_atomic(out / "report.md", table(reports).encode())
        print(table(reports))
        return 0

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
