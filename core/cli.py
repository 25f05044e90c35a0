"""What every command line shares: one-line argument errors (exit 2), positive-number types, and
the offline start every command makes."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from core.errors import UserError, exit_code


def offline(tokenizer_threads: bool = True) -> None:
    """Hugging Face reads only local files: nothing downloads at run time. Without tokenizer threads,
    a generation run's tokenizer stays off the cores its own threads use."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not tokenizer_threads:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_command(command: Callable[[], int], tokenizer_threads: bool = True) -> int:
    """A command's exit code, started offline; a UserError is one line on stderr and exit 2."""
    offline(tokenizer_threads)
    return exit_code(command)


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message otherwise)
        raise UserError(message)


def positive(kind):
    def check(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return check
