"""What every command line shares: one-line argument errors (exit 2), positive-number types, flags
generated from a settings dataclass, and the offline start every command makes."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import MISSING, fields
from pathlib import Path

from core.errors import UserError, exit_code


def offline(tokenizer_threads: bool = True) -> None:
    """Hugging Face reads only local files: nothing downloads at run time. Without tokenizer
    threads, a generation run's tokenizer stays off the cores its own threads use."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not tokenizer_threads:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_command(command: Callable[[], int], tokenizer_threads: bool = True) -> int:
    """A command's exit code, started offline; a UserError is one line on stderr and exit 2."""
    offline(tokenizer_threads)
    return exit_code(command)


def make_dir(path: Path, flag: str = "--out") -> None:
    """Make an output folder and its parents, or say in one line (UserError) why it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        blocker = next((p for p in (path, *path.parents) if p.is_file()), None)
        why = f"{blocker} is a file" if blocker else e.strerror
        raise UserError(f"{flag} {path} cannot be made: {why}") from None


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message otherwise)
        raise UserError(message)


NAMES = {int: "an integer", float: "a number"}


def out_of_bounds(value: float, low: float, high: float = math.inf, low_open: bool = False):
    """Why `value` is not a finite number in [low, high] ((low, high] with `low_open`), or None.
    NaN fails every comparison, so `value <= low` alone would let it through: it is refused, as
    is inf."""
    above = low < value if low_open else low <= value
    if above and value <= high and math.isfinite(value):
        return None
    if low_open and high == math.inf and low == 0:
        return "must be positive"
    if high == math.inf:
        return f"must be a finite number at least {low:g}"
    return f"must be in {'(' if low_open else '['}{low:g}, {high:g}]"


def bounded(kind: type, low: float, high: float = math.inf, low_open: bool = False):
    """An argparse type: a `kind` that is not `out_of_bounds`."""

    def check(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {NAMES[kind]}, got {text!r}") from None
        if why := out_of_bounds(value, low, high, low_open):
            raise argparse.ArgumentTypeError(f"{why}, got {text}")
        return value

    return check


def positive(kind: type):
    """An argparse type: a finite `kind` above 0."""
    return bounded(kind, 0, low_open=True)


def within(kind: type, low: float, high: float = math.inf):
    """An argparse type: a finite `kind` in [low, high]."""
    return bounded(kind, low, high)


_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def cli_fields(cls) -> list[str]:
    """The fields of a settings dataclass that are command-line flags (metadata cli=False: Studio
    only)."""
    return [f.name for f in fields(cls) if f.metadata.get("cli", True)]


def add_fields(
    parser: argparse.ArgumentParser, cls, names: Iterable[str], groups: dict | None = None
) -> None:
    """One flag per field of the dataclass `cls` named in `names`, so the command line and every
    other reader of the dataclass (LangGraph Studio) share one default and one description. The flag
    is --the-name (metadata `flag` renames it), in the argument group metadata `group` names;
    metadata `choices`, `positive` (must be > 0) and `append` (repeatable, joined with commas) shape
    it. A flag not given is absent from the parsed namespace (its default is the dataclass's), so
    `field_values` tells given flags from defaults."""
    by_name = {f.name: f for f in fields(cls)}
    for name in names:
        f = by_name[name]
        meta, default = f.metadata, (f.default if f.default is not MISSING else None)
        target = (groups or {}).get(meta.get("group"), parser)
        kind = _TYPES[f.type if isinstance(f.type, str) else f.type.__name__]
        flag = meta.get("flag") or "--" + name.replace("_", "-")
        text = meta.get("description", "").replace("%", "%%")
        if kind is bool:
            target.add_argument(
                flag, dest=name, action="store_true", default=argparse.SUPPRESS, help=text
            )
        elif meta.get("append"):
            target.add_argument(
                flag, dest=name, action="append", default=argparse.SUPPRESS, help=text
            )
        else:
            shown = f" (default {default})" if default not in ("", None) else ""
            target.add_argument(
                flag,
                dest=name,
                type=positive(kind) if meta.get("positive") else kind,
                default=argparse.SUPPRESS,
                choices=meta.get("choices"),
                help=text + shown,
            )


def field_values(cls, args: argparse.Namespace, names: Iterable[str]) -> dict:
    """The fields among `names` whose flags were given, ready for cls(**values) (repeated flags
    joined with commas); the others keep the dataclass's defaults."""
    by_name = {f.name: f for f in fields(cls)}
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return {
        name: ",".join(value) if by_name[name].metadata.get("append") else value
        for name, value in given.items()
    }
