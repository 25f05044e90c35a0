"""What every command line shares: one-line argument errors (exit 2) and positive-number types."""

from __future__ import annotations

import argparse

from core.errors import UserError


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
