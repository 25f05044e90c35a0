"""One writer per output folder: an OS file lock held for the life of the command.

`flock` on `<folder>/.lock`: the kernel releases it when the process exits, however it exits, so a
SIGKILL never leaves a stale lock behind. A second writer gets one line naming the holder (exit 2)
instead of interleaving its lines with the first one's.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.cli import make_dir
from core.errors import UserError

LOCK = ".lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return (
        f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {since} "
        f"({info.get('command', '?')})"
    )


@contextmanager
def hold(folder: str | Path, wait: float = 0.0) -> Iterator[Path]:
    """Hold `folder`'s lock until the block ends; UserError when another process still holds it
    after `wait` seconds."""
    folder = Path(folder)
    path = folder / LOCK
    make_dir(folder)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise UserError(
                        f"{folder} is in use by {_holder(path)}; wait for it or use another --out"
                    ) from None
                time.sleep(0.2)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
