"""GPU training throughput and MFU of a Mistral-architecture model (~1.2B, randomly initialised).

    .venv/bin/python -m benchmarks.gpu_mfu [--seq-lens 2048 4096] [--steps 20] [--peak 989e12]

bf16 weights and autocast, fused AdamW, SDPA attention, gradient checkpointing off; each setting with
and without torch.compile. MFU = 6 * params * tokens/s / peak (dense bf16; H100/H200 SXM: 989 TFLOP/s);
the attention FLOPs are not counted, so this slightly understates the work done. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import time

import torch


def build(seq_len: int):
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(vocab_size=32768, hidden_size=2048, intermediate_size=7168, num_hidden_layers=20,
                           num_attention_heads=16, num_key_value_heads=8, max_position_embeddings=seq_len,
                           attn_implementation="sdpa", torch_dtype=torch.bfloat16)
    return MistralForCausalLM(config).to("cuda", dtype=torch.bfloat16)


def measure(seq_len: int, batch: int, steps: int, compile_model: bool, peak: float) -> str:
    torch.manual_seed(0)
    model = build(seq_len)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    step_fn = torch.compile(model) if compile_model else model
    data = torch.randint(0, model.config.vocab_size, (batch, seq_len), device="cuda")
    for i in range(steps + 3):  # 3 warm-up steps (compilation happens there)
        if i == 3:
            torch.cuda.synchronize()
            start = time.perf_counter()
        loss = step_fn(input_ids=data, labels=data).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    tokens_per_s = steps * batch * seq_len / (time.perf_counter() - start)
    mfu = 6 * params * tokens_per_s / peak
    memory = torch.cuda.max_memory_allocated() / 2**30
    del model, optimizer, step_fn
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return (f"seq {seq_len} x batch {batch} | compile {compile_model!s:<5} | {params / 1e9:.2f}B params | "
            f"{tokens_per_s:,.0f} tok/s | MFU {mfu:.1%} | peak memory {memory:.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--tokens-per-step", type=int, default=16384)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--peak", type=float, default=989e12)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA GPU: this benchmark needs one")
    print(torch.cuda.get_device_name(), torch.__version__)
    for seq_len in args.seq_lens:
        for compile_model in (False, True):
            print(measure(seq_len, max(1, args.tokens_per_step // seq_len), args.steps, compile_model, args.peak), flush=True)


if __name__ == "__main__":
    main()
