"""Tiny models for tests: a random Mistral with the embedded model's real tokenizer."""

from __future__ import annotations

from pathlib import Path

from agents.checkpoint import EMBEDDED, resolve


def tiny_mistral(folder: str | Path, vocab_from: str = EMBEDDED, seed: int = 0) -> Path:
    """A 2-layer, 64-wide Mistral (the Mistral code path in seconds) with a real tokenizer."""
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(resolve(vocab_from))
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    MistralForCausalLM(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
