"""Continual pretraining on a corpus: `python -m train.cpt --corpus runs/finance/corpus.jsonl --model embedded --out ckpt/finance`.

One readable loop (nanoGPT-style) on top of accelerate, which also makes it multi-GPU/multi-node:
`accelerate launch --config_file train/configs/fsdp.yaml -m train.cpt ...` (docs/training.md).
Packed blocks (train/data.py), AdamW, linear warmup then cosine decay, gradient accumulation up to
--tokens-per-step, optional gradient checkpointing, bf16 on GPUs, a held-out split for validation
loss, checkpoints every --save-every steps and --resume from the last one (same step, same data order).
Logs loss, tokens/s and MFU (6 * params * tokens/s / peak FLOP/s) to stdout, metrics.jsonl and TensorBoard.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

from core.cli import run_command
from core.errors import UserError

# Dense bf16 peaks (FLOP/s) for MFU; others via --peak-flops.
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from core.cli import Parser, positive

    p = Parser(prog="python -m train.cpt", description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="corpus.jsonl ({'text': ...} per line)")
    p.add_argument("--model", default="embedded", help="'embedded', a local folder, or a hub id (with network)")
    p.add_argument("--out", required=True, help="output folder: checkpoints/, final/, metrics.jsonl, tensorboard")
    p.add_argument("--seq-len", type=positive(int), help="block length (default 4096 on GPU, 512 on CPU)")
    p.add_argument("--batch-size", type=positive(int), default=1, help="blocks per device per micro-step (default 1)")
    p.add_argument("--tokens-per-step", type=positive(int),
                   help="tokens per optimizer step; sets gradient accumulation (default one micro-batch)")
    p.add_argument("--max-steps", type=positive(int), help="optimizer steps (default: one pass over the corpus)")
    p.add_argument("--tokens", type=positive(int), help="train on this many tokens (sets --max-steps)")
    p.add_argument("--lr", type=positive(float), default=2e-5)
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine decays to lr x this")
    p.add_argument("--warmup", type=float, default=0.03, help="warmup steps, or a fraction of the steps if < 1")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--held-out", type=float, default=0.02, help="fraction of documents kept for validation loss")
    p.add_argument("--eval-every", type=positive(int), default=100)
    p.add_argument("--save-every", type=positive(int), default=500)
    p.add_argument("--log-every", type=positive(int), default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--stop-after-steps", type=positive(int),
                   help="end this invocation after N steps (checkpointed), keeping the schedule of --max-steps: "
                        "for time-sliced jobs; --resume continues")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--boundaries", action="store_true", help="position ids restart at each document (see train/data.py)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto", help="auto: bf16 on GPU, fp32 on CPU")
    p.add_argument("--optimizer", choices=["adamw", "adamw8bit"], default="adamw", help="adamw8bit: bitsandbytes, GPU only")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--peak-flops", type=float, help="accelerator peak FLOP/s for MFU (detected for common GPUs)")
    p.add_argument("--replay", help="real text JSONL mixed into training (off by default; the paper mixes none)")
    p.add_argument("--replay-ratio", type=float, default=0.0, help="fraction of training documents drawn from --replay")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub (off by default)")
    args = p.parse_args(argv)
    if args.replay_ratio and not args.replay:
        raise UserError("--replay-ratio needs --replay FILE")
    if not 0 <= args.replay_ratio < 1 or not 0 <= args.held_out < 1:
        raise UserError("--replay-ratio and --held-out must be in [0, 1)")
    return args


def lr_at(step: int, total: int, warmup: int, lr: float, min_ratio: float) -> float:
    """Linear warmup to lr, then cosine decay to lr * min_ratio at `total`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def for_training(model):
    """Training needs no KV cache; without one, transformers (>= 5) also turns position ids that restart
    at each document (--boundaries) into a block-diagonal attention mask, so documents packed into one
    block do not attend to each other. With the cache on, only the rotary positions restart."""
    model.config.use_cache = False
    return model


def peak_flops(args, device_name: str) -> float | None:
    if args.peak_flops:
        return args.peak_flops
    return next((v for k, v in PEAKS.items() if k in device_name), None)


def checkpoints(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("step-*"))


def training_texts(args) -> tuple[list[str], list[str]]:
    import random

    from train.data import read_texts, split

    train, val = split(read_texts(args.corpus), args.held_out, args.seed)
    if args.replay:
        real = read_texts(args.replay)
        want = round(args.replay_ratio / (1 - args.replay_ratio) * len(train))
        train = train + random.Random(args.seed).sample(real, min(want, len(real)))
    return train, val


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: train(parse_args(argv)))


def train(args: argparse.Namespace) -> int:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    from agents.checkpoint import load
    from train.data import collate, pack

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise UserError(f"{out} is not empty; pass --resume to continue it or choose another --out")
    if args.resume and not checkpoints(out):
        raise UserError(f"--resume: no checkpoint in {out / 'checkpoints'}")
    cuda = torch.cuda.is_available()
    bf16 = args.precision == "bf16" or (args.precision == "auto" and cuda)
    seq_len = args.seq_len or (4096 if cuda else 512)
    train_texts, val_texts = training_texts(args)

    accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no", log_with="tensorboard", project_dir=str(out))
    set_seed(args.seed)
    model, tokenizer = load(args.model, trust_remote_code=args.trust_remote_code)
    train_blocks = pack(train_texts, tokenizer, seq_len, args.boundaries)
    val_blocks = pack(val_texts, tokenizer, seq_len, required=False) if val_texts else []
    micro_tokens = args.batch_size * seq_len * accelerator.num_processes
    accumulation = max(1, math.ceil((args.tokens_per_step or micro_tokens) / micro_tokens))
    accelerator.gradient_accumulation_steps = accumulation
    tokens_per_step = micro_tokens * accumulation
    steps_per_epoch = max(1, len(train_blocks) // (args.batch_size * accelerator.num_processes) // accumulation)
    total = args.max_steps or (math.ceil(args.tokens / tokens_per_step) if args.tokens else steps_per_epoch)
    warmup = int(args.warmup if args.warmup >= 1 else args.warmup * total)

    for_training(model)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if args.compile:
        model = torch.compile(model)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if args.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise UserError("--optimizer adamw8bit needs bitsandbytes (GPU): pip install bitsandbytes") from None
        optimizer = bnb.optim.AdamW8bit(groups, lr=args.lr, betas=(0.9, 0.95))
    else:
        optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, total, warmup, args.lr, args.min_lr_ratio) / args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(train_blocks, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        collate_fn=collate, generator=generator)
    val_loader = DataLoader(val_blocks, batch_size=args.batch_size, collate_fn=collate) if val_blocks else None
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "tokens": 0}
    if args.resume:
        last = checkpoints(out)[-1]
        accelerator.load_state(str(last))
        state = json.loads((last / "trainer_state.json").read_text())
        accelerator.print(f"resumed from {last} at step {state['step']}")
    n_params = sum(p.numel() for p in accelerator.unwrap_model(model).parameters())
    device = torch.cuda.get_device_name() if cuda else "cpu"
    peak = peak_flops(args, device)
    config = {**vars(args), "seq_len": seq_len, "accumulation": accumulation, "tokens_per_step": tokens_per_step,
              "total_steps": total, "warmup_steps": warmup, "params": n_params, "device": device,
              "peak_flops": peak, "processes": accelerator.num_processes, "bf16": bf16,
              "train_blocks": len(train_blocks), "val_blocks": len(val_blocks)}
    accelerator.init_trackers("cpt", config={k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))})
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(config, indent=2))
    accelerator.print(f"{n_params / 1e6:.1f}M params on {device} x{accelerator.num_processes}; {len(train_blocks)} blocks of "
                      f"{seq_len}; {tokens_per_step} tokens/step ({accumulation} micro-steps); {total} steps")

    model.train()
    window_tokens, window_start, losses = 0, time.perf_counter(), []
    stop = min(total, args.stop_after_steps or total)
    while state["step"] < stop:
        # The shuffle depends on (seed, epoch) only, so a resumed run sees the same order.
        generator.manual_seed(args.seed + state["epoch"])
        batches = accelerator.skip_first_batches(loader, state["batch_in_epoch"]) if state["batch_in_epoch"] else loader
        for batch in batches:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.grad_clip:
                    accelerator.clip_grad_norm_(model.parameters(), args.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            state["batch_in_epoch"] += 1
            losses.append(loss.detach().float())
            window_tokens += batch["input_ids"].numel() * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            state["tokens"] += tokens_per_step
            step = state["step"]
            if step % args.log_every == 0 or step == total:
                elapsed = time.perf_counter() - window_start
                tokens_per_s = window_tokens / elapsed
                mfu = 6 * n_params * tokens_per_s / (peak * accelerator.num_processes) if peak else None
                eta = (total - step) * tokens_per_step / tokens_per_s  # at this window's speed
                row = {"step": step, "total": total, "loss": round(torch.stack(losses).mean().item(), 4),
                       "lr": scheduler.get_last_lr()[0], "tokens": state["tokens"], "tokens_per_s": round(tokens_per_s, 1),
                       "mfu": mfu and round(mfu, 4), "eta_s": round(eta)}
                _log(accelerator, out, row)
                window_tokens, window_start, losses = 0, time.perf_counter(), []
            if val_loader is not None and (step % args.eval_every == 0 or step == total):
                _log(accelerator, out, {"step": step, "val_loss": round(evaluate_loss(model, val_loader, accelerator), 4)})
                model.train()
            stopping = args.stop_after_steps is not None and step >= args.stop_after_steps
            if step % args.save_every == 0 or step == total or stopping:
                save(accelerator, out, state)
            if step >= total or stopping:
                break
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    if state["step"] < total:
        accelerator.end_training()
        accelerator.print(f"stopped at step {state['step']} of {total}; continue with --resume")
        return 0
    final = out / "final"
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.config.use_cache = True  # generation from final/ wants its cache back
    unwrapped.save_pretrained(str(final), is_main_process=accelerator.is_main_process,
                              save_function=accelerator.save, state_dict=accelerator.get_state_dict(model))
    if accelerator.is_main_process:
        tokenizer.save_pretrained(str(final))
    accelerator.end_training()
    accelerator.print(f"saved {final}")
    return 0


def evaluate_loss(model, loader, accelerator) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            loss = accelerator.gather(model(**batch).loss.detach().reshape(1))
            total += loss.sum().item()
            count += loss.numel()
    return total / max(count, 1)


def _log(accelerator, out: Path, row: dict) -> None:
    accelerator.log({k: v for k, v in row.items() if k != "step" and v is not None}, step=row["step"])
    if accelerator.is_main_process:
        accelerator.print(" ".join(f"{k}={v}" for k, v in row.items()))
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


def save(accelerator, out: Path, state: dict) -> None:
    """A checkpoint is complete or absent: written to a temporary folder, then renamed."""
    final = out / "checkpoints" / f"step-{state['step']:06d}"
    tmp = final.with_name(final.name + ".tmp")
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    sys.exit(main())
