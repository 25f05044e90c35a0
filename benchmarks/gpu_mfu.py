"""GPU training throughput and MFU of a Mistral-architecture model (~1.2B, randomly initialised).

    python -m benchmarks.gpu_mfu [--seq-lens 2048 4096] [--steps 10] [--peak 989e12]
        [--packing plain|documents|both]

bf16 weights, fused AdamW, SDPA attention, no gradient checkpointing; each sequence length with and
without torch.compile. `--packing documents` gives the batches per-document position ids (as
`train.cpt --boundaries` feeds them; documents of 100-1,500 tokens) instead of plain blocks.

Two MFU figures, both against `--peak` (dense bf16; H100/H200 SXM datasheet: 989 TFLOP/s):
  MFU(6N)   = 6 * N * tokens/s / peak, N = the parameters that do matrix work (the input embedding,
              a table lookup, is left out);
  MFU(attn) = (6N + 12 * layers * hidden * seq_len) * tokens/s / peak, the PaLM definition, which
              counts causal attention as full (as llm-foundry and torchtitan report it).
Runs on CPU too (`--device cpu --tiny`) to check the script, not to measure.
"""

from __future__ import annotations

import argparse
import time

import torch


def build(args: argparse.Namespace, seq_len: int):
    from transformers import MistralConfig, MistralForCausalLM

    size = (
        dict(
            hidden_size=256,
            intermediate_size=512,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
        if args.tiny
        else dict(
            hidden_size=2048,
            intermediate_size=7168,
            num_hidden_layers=20,
            num_attention_heads=16,
            num_key_value_heads=8,
        )
    )
    config = MistralConfig(
        vocab_size=32768, max_position_embeddings=seq_len, use_cache=False, **size
    )
    config._attn_implementation = "sdpa"
    return MistralForCausalLM(config).to(args.device, dtype=torch.bfloat16)


def document_positions(batch: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """Position ids restarting at random document starts (100-1,500 tokens apart), like
    train/data.py."""
    rows = []
    for _ in range(batch):
        row, left = [], seq_len
        while left > 0:
            n = min(left, int(torch.randint(100, 1500, (1,), generator=generator)))
            row.append(torch.arange(n))
            left -= n
        rows.append(torch.cat(row))
    return torch.stack(rows)


def keeps_documents_apart(device: str) -> bool:
    """Whether this transformers' SDPA path turns restarting position ids into a block-diagonal
    mask: the second document's logits in a packed row equal its logits alone."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    config._attn_implementation = "sdpa"
    config.use_cache = False  # as train.cpt trains: no cache, so transformers reads the restarts
    model = MistralForCausalLM(config).to(device)
    ids = torch.randint(0, 512, (1, 64), device=device)
    positions = torch.cat([torch.arange(32), torch.arange(32)])[None].to(device)
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=positions).logits[0, 32:]
        alone = model(input_ids=ids[:, 32:]).logits[0]
    return torch.allclose(packed, alone, atol=1e-3)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(
    args: argparse.Namespace, seq_len: int, batch: int, compile_model: bool, boundaries: bool
) -> str:
    torch.manual_seed(0)
    model = build(args, seq_len)
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    matmul_params = params - model.model.embed_tokens.weight.numel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=args.device == "cuda")
    torch._dynamo.reset()  # each setting compiles for its own static shapes
    step_fn = torch.compile(model, dynamic=False) if compile_model else model
    data = torch.randint(0, cfg.vocab_size, (batch, seq_len), device=args.device)
    inputs = {"input_ids": data, "labels": data}
    if boundaries:
        inputs["position_ids"] = document_positions(
            batch, seq_len, torch.Generator().manual_seed(0)
        ).to(args.device)
    warm = time.perf_counter()
    for i in range(args.steps + 3):  # 3 warm-up steps (compilation happens there)
        if i == 3:
            sync(args.device)
            start = time.perf_counter()
            warm = start - warm
        loss = step_fn(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(args.device)
    tokens_per_s = args.steps * batch * seq_len / (time.perf_counter() - start)
    flops_6n = 6 * matmul_params
    flops_attn = flops_6n + 12 * cfg.num_hidden_layers * cfg.hidden_size * seq_len
    memory = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else 0.0
    del model, optimizer, step_fn, inputs
    if args.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    packing = "documents" if boundaries else "plain"
    return (
        f"| {seq_len} | {batch} | {packing} | {'yes' if compile_model else 'no'} | "
        f"{params / 1e9:.2f}B | {tokens_per_s:,.0f} | {flops_6n * tokens_per_s / args.peak:.1%} | "
        f"{flops_attn * tokens_per_s / args.peak:.1%} | {memory:.1f} | {warm:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--tokens-per-step", type=int, default=32768)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--peak", type=float, default=989e12)
    parser.add_argument("--compile", choices=["both", "on", "off"], default="both")
    parser.add_argument(
        "--packing",
        choices=["plain", "documents", "both"],
        default="plain",
        help="plain blocks, and/or blocks with per-document position ids (train.cpt --boundaries)",
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--tiny", action="store_true", help="a 2-layer model: checks the script, measures nothing"
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "error: no CUDA GPU: this benchmark needs one (or --device cpu --tiny to check the "
            "script)"
        )
    import transformers

    name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(
        f"{name}, torch {torch.__version__}, transformers {transformers.__version__}, peak "
        f"{args.peak / 1e12:.0f} TFLOP/s"
    )
    packings = {"plain": (False,), "documents": (True,), "both": (False, True)}[args.packing]
    if True in packings:
        print(
            "restarting position ids keep documents apart in SDPA attention: "
            f"{keeps_documents_apart(args.device)}"
        )
    print(
        "| seq len | batch | packing | compile | params | tok/s | MFU(6N) | MFU(attn) | peak GiB | "
        "warm-up s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    compiles = {"both": (False, True), "on": (True,), "off": (False,)}[args.compile]
    runs = [(s, c, b) for b in packings for s in args.seq_lens for c in compiles]
    for seq_len, compile_model, boundaries in runs:
        batch = max(1, args.tokens_per_step // seq_len)
        try:
            print(measure(args, seq_len, batch, compile_model, boundaries), flush=True)
        except torch.OutOfMemoryError:
            print(
                f"| {seq_len} | {batch} | {'documents' if boundaries else 'plain'} | "
                f"{compile_model} | out of memory |",
                flush=True,
            )
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
