"""The one exception type for user mistakes: the CLI prints its message on one line and exits 2."""

import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input from the user (flags, files, prompts, servers): reported in one line, never a
    traceback."""


def exit_code(command: Callable[[], int]) -> int:
    """Run a CLI command: its exit code, or 2 with the UserError's message on one line of stderr."""
    try:
        return command()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
