"""`python -m graph.export RUN_DIR --format hf|parquet|jsonl --out PATH`: a run's corpus as a \
dataset.

hf      a Hugging Face dataset folder (`datasets.load_from_disk(PATH)`)
parquet one parquet file with every metadata column
jsonl   the committed documents, one per line (no partial line, whatever state the run is in)

Nested metadata (lists of seeds and experts) stays as list columns. The output is never overwritten.
An instruction run (graph.instruct: instructions.jsonl) exports in chat form: a `messages` column
(user: the instruction, assistant: the response) beside its metadata, which fine-tuning tools read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agents.instruction import as_chat
from core.cli import Parser, make_dir, run_command
from core.errors import UserError
from core.jsonl import read_jsonl, write_atomic
from core.rundir import CORPUS, INSTRUCTIONS, RunDir


def load(run_dir: Path) -> list[dict]:
    """The run's committed records (an instruction run's in chat form)."""
    corpus = RunDir.find(run_dir).records
    if not corpus.exists():
        raise UserError(f"no {CORPUS} in {run_dir}")
    records = read_jsonl(corpus, committed=True)
    if not records:
        raise UserError(f"{corpus} holds no documents")
    if corpus.name == INSTRUCTIONS:
        for i, r in enumerate(records, 1):
            if not (isinstance(r.get("instruction"), str) and isinstance(r.get("response"), str)):
                raise UserError(f"{corpus}: record {i} has no 'instruction' and 'response' text")
        records = [as_chat(r) for r in records]
    return records


def as_dataset(records: list[dict]):
    """One table for all rows: a key missing from some rows becomes None there."""
    import pyarrow as pa
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    keys = list(dict.fromkeys(k for r in records for k in r))
    try:
        return Dataset.from_list([{k: r.get(k) for k in keys} for r in records])
    # a column of mixed types, or an integer too large for Arrow (records edited by hand)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
        raise UserError(f"the records do not fit one table: {e}; export --format jsonl") from None


def export(run_dir: Path, fmt: str, out: Path) -> int:
    if out.exists():
        raise UserError(f"{out} already exists; choose another --out")
    records = load(run_dir)
    dataset = as_dataset(records) if fmt != "jsonl" else None
    make_dir(out.parent, "--out's folder")
    if fmt == "hf":
        dataset.save_to_disk(str(out))
    elif fmt == "parquet":
        dataset.to_parquet(str(out))
    else:
        write_atomic(
            out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
        )
    return len(records)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m graph.export", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--format", choices=["hf", "parquet", "jsonl"], default="hf")
    parser.add_argument("--out", type=Path, required=True)

    def command() -> int:
        args = parser.parse_args(argv)
        n = export(args.run_dir, args.format, args.out)
        print(f"{args.out}: {n} documents ({args.format})", file=sys.stderr)
        return 0

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
