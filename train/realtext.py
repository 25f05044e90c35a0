"""Real domain text by split: the held-out text evaluation scores, the real arm of train.ablate, and
the generation half that seed documents may come from (core/splits.py decides the halves).

    python -m train.realtext --dataset fpb --split generation --out /tmp/fpb-generation.jsonl

writes one `{"text": ...}` line per document of that half (outside the project: the data are read by
path, never copied in) and prints the documents and their tokens under `--tokenizer`.

Documents, per dataset:
- fpb: the sentence (`text`).
- pubmedqa: as training text, the question, the abstract (`contexts` joined) and the conclusion
  (`long_answer`); as held-out perplexity text and for the split, the abstract alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.cli import make_dir, run_command
from core.errors import UserError
from core.jsonl import write_atomic
from core.splits import SPLITS, record_text, select

DATASETS = ("fpb", "pubmedqa")


def rows(dataset: str, source: str | None = None, split: str | None = None) -> list[dict]:
    """The dataset's records (from train.tasks.DATA unless `source`), of one half when `split`."""
    from train.tasks import DATA, TASKS, read_rows

    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r} (available: {', '.join(DATASETS)})")
    path = source or str(DATA / TASKS[dataset].default_file)
    if not source and not Path(path).is_file():
        raise UserError(
            f"{dataset}: no data at {path}; set METASYNTH_DATA to the folder holding "
            f"{TASKS[dataset].default_file}"
        )
    records = read_rows(path)
    try:
        return select(records, split) if split else records
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def document(dataset: str, row: dict) -> str:
    """A record as training text."""
    if dataset == "pubmedqa":
        return "\n\n".join(
            t for t in (row.get("question", ""), record_text(row), row.get("long_answer", "")) if t
        )
    return record_text(row)


def documents(dataset: str, split: str, source: str | None = None) -> list[str]:
    return [document(dataset, r) for r in rows(dataset, source, split)]


def held_out_texts(dataset: str, split: str, source: str | None = None) -> list[str]:
    """Perplexity text: the record's own text (an FPB sentence, a PubMedQA abstract)."""
    return [record_text(r) for r in rows(dataset, source, split)]


def count_tokens(texts: list[str], tokenizer) -> int:
    """Tokens as train.cpt counts them: each text's tokens plus the EOS that ends it."""
    return sum(len(ids) + 1 for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def tokenizer_of(name: str):
    """The tokenizer of a model (no weights loaded); never remote code."""
    from transformers import AutoTokenizer

    from agents.checkpoint import resolve

    try:
        return AutoTokenizer.from_pretrained(resolve(name))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load tokenizer {name!r}: {str(e).splitlines()[0]}") from None


def main(argv: list[str] | None = None) -> int:
    from core.cli import Parser

    p = Parser(prog="python -m train.realtext", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--split", choices=SPLITS, required=True)
    p.add_argument("--out", required=True, help="a new JSONL file")
    p.add_argument("--tokenizer", default="embedded", help="counts the tokens (train.cpt's count)")

    def command() -> int:
        args = p.parse_args(argv)
        out = Path(args.out)
        if out.exists():
            raise UserError(f"{out} exists; choose another --out")
        texts = documents(args.dataset, args.split)
        tokenizer = tokenizer_of(args.tokenizer)  # a bad one fails before anything is written
        make_dir(out.parent, "--out's folder")
        try:
            write_atomic(out, "".join(json.dumps({"text": t}) + "\n" for t in texts).encode())
        except OSError as e:
            raise UserError(f"cannot write {out}: {e.strerror}") from None
        print(
            f"{out}: {len(texts)} documents, {count_tokens(texts, tokenizer)} tokens "
            f"({args.dataset}, {args.split} half)"
        )
        return 0

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
