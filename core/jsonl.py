"""JSON and JSONL files: the one reader of each, and the durable writes a run's commit relies on.

A run appends each record as one whole line ending in a newline, so a line without its newline was
never committed (a hard stop inside the write). Reading a run's own file (`committed=True`) stops at
the last newline; any other file must parse to its last line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from core.errors import UserError
from core.rundir import RunDir, is_run_file


def read_json(path: str | Path, what: str) -> dict:
    """A JSON object from a file a user named (`what` it should be, for the one-line error)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found ({what})") from None
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UserError(f"{path}: not a readable {what} ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a {what}")
    return data


def iter_jsonl(path: str | Path, committed: bool = False) -> Iterator[tuple[int, object]]:
    """(line number, value) for each non-blank line; a line that is not JSON is a UserError naming
    it."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        try:
            for number, line in enumerate(f, 1):
                if not line.strip() or (committed and not line.endswith("\n")):
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}: line {number} is not valid JSON ({e.msg})") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text (expected JSONL)") from None


def read_jsonl(path: str | Path, committed: bool = False, field: str | None = "text") -> list[dict]:
    """Every record of a JSONL file: JSON objects, each with a string `field` (None: any object)."""
    records = []
    for number, record in iter_jsonl(path, committed):
        if not isinstance(record, dict) or (field and not isinstance(record.get(field), str)):
            raise UserError(
                f"{path}: line {number} has no {field!r} field holding text"
                if field
                else f"{path}: line {number} is not a JSON object"
            )
        records.append(record)
    return records


def read_documents(path: str | Path, label: str = "corpus") -> list[dict]:
    """The one reader of a text corpus: the records with non-blank `text` of a JSONL file or of a
    run directory's record file (read up to its last newline: the run may still be writing). A
    missing or empty corpus is a UserError; `label` names it in the message."""
    path = Path(path)
    if path.is_dir():
        path = RunDir.find(path).records
    if not path.is_file():
        raise UserError(f"{label} not found: {path}")
    records = [r for r in read_jsonl(path, committed=is_run_file(path)) if r["text"].strip()]
    if not records:
        raise UserError(f"{path}: no documents")
    return records


def count_lines(path: Path) -> int:
    """Lines of a JSONL file (0 when it does not exist yet)."""
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def append_line(path: Path, record: dict) -> None:
    """Append one JSON line durably: a single write of the whole line, then fsync."""
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def repair_tail(path: Path) -> int:
    """Cut an unfinished last line (a hard stop inside a write); return the bytes dropped."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return 0
        f.seek(0)
        keep = f.read().rfind(b"\n") + 1
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep
