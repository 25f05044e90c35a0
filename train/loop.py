"""The one training loop: train.cpt (packed blocks) and train.sft (padded chats) both run `fit`.

A readable loop (nanoGPT-style) on top of accelerate, which makes it multi-GPU and multi-node:
AdamW, linear warmup then cosine decay, gradient accumulation, gradient clipping, optional gradient
checkpointing, bf16 on GPUs, validation loss every --eval-every steps, checkpoints every
--save-every steps and `--resume` from the last one (same step, same data order). It logs loss, lr,
tokens/s, MFU (6 * params * tokens/s / peak FLOP/s) and the time left to stdout, metrics.jsonl and
TensorBoard. What differs between the trainers is the data: a `Data` built from the tokenizer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import UserError
from core.lock import LOCK, hold
from core.rundir import TRAIN_METRICS

# Dense bf16 peaks (FLOP/s) for MFU; others via --peak-flops.
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}
CONFIG = "train_config.json"
FINAL = "final"


def add_flags(p: argparse.ArgumentParser, batch_size: int, weight_decay: float) -> None:
    """The flags of the loop itself, the same in train.cpt and train.sft."""
    from core.cli import positive, within

    p.add_argument(
        "--model", default="embedded", help="'embedded', a local folder, or a hub id (with network)"
    )
    p.add_argument(
        "--batch-size",
        type=positive(int),
        default=batch_size,
        help=f"examples per device per micro-step (default {batch_size})",
    )
    p.add_argument("--max-steps", type=positive(int), help="optimizer steps (overrides --epochs)")
    p.add_argument("--lr", type=positive(float), default=2e-5)
    p.add_argument(
        "--min-lr-ratio", type=within(float, 0, 1), default=0.1, help="cosine decays to lr x this"
    )
    p.add_argument(
        "--warmup",
        type=within(float, 0),
        default=0.03,
        help="warmup steps, or a fraction of the steps if < 1",
    )
    p.add_argument(
        "--weight-decay",
        type=within(float, 0),
        default=weight_decay,
        help=f"on matrices only (default {weight_decay})",
    )
    p.add_argument("--grad-clip", type=within(float, 0), default=1.0, help="0 = off")
    p.add_argument("--eval-every", type=positive(int), default=100)
    p.add_argument("--save-every", type=positive(int), default=500)
    p.add_argument("--log-every", type=positive(int), default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in --out"
    )
    p.add_argument(
        "--stop-after-steps",
        type=positive(int),
        help="end this invocation after N steps (checkpointed), keeping the schedule of "
        "the whole run: for time-sliced jobs; --resume continues",
    )
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="auto: bf16 on GPU, fp32 on CPU",
    )
    p.add_argument(
        "--optimizer",
        choices=["adamw", "adamw8bit"],
        default="adamw",
        help="adamw8bit: bitsandbytes, GPU only",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument(
        "--peak-flops",
        type=positive(float),
        help="accelerator peak FLOP/s for MFU (detected for common GPUs)",
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow model code from the hub (off by default)",
    )


@dataclass
class Data:
    """What one run trains on, built once the tokenizer is loaded."""

    train: Sequence  # items the DataLoader batches (packed blocks, encoded chats)
    val: Sequence
    collate: Callable
    accumulation: int  # micro-steps per optimizer step
    total_steps: int
    drop_last: bool = True
    config: dict = field(default_factory=dict)  # extra fields for train_config.json


def lr_at(step: int, total: int, warmup: int, lr: float, min_ratio: float) -> float:
    """Linear warmup to lr, then cosine decay to lr * min_ratio at `total`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def for_training(model):
    """Training needs no KV cache; without one, transformers (>= 5) also turns position ids that
    restart at each document (--boundaries) into a block-diagonal attention mask, so documents
    packed into one block do not attend to each other. With the cache on, only the rotary positions
    restart."""
    model.config.use_cache = False
    return model


def peak_flops(args: argparse.Namespace, device_name: str) -> float | None:
    if args.peak_flops:
        return args.peak_flops
    return next((v for k, v in PEAKS.items() if k in device_name), None)


def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a `.tmp` folder is a save that a kill interrupted)."""
    return sorted(p for p in (out / "checkpoints").glob("step-*") if not p.name.endswith(".tmp"))


def is_main_rank() -> bool:
    """Rank 0 of a launched job, or a plain process (the lock and the folder checks are its job)."""
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def output_folder(out: Path, resume: bool) -> Iterator[None]:
    """One writer per --out (core.lock), and never over an earlier run unless it is resumed."""
    if not is_main_rank():
        yield
        return
    with hold(out):
        leftovers = [p for p in out.iterdir() if p.name != LOCK]
        if leftovers and not resume:
            raise UserError(
                f"{out} is not empty; pass --resume to continue it or choose another --out"
            )
        if resume and not checkpoints(out):
            raise UserError(f"--resume: no checkpoint in {out / 'checkpoints'}")
        yield


def make_accelerator(bf16: bool, out: Path):
    """accelerate's Accelerator, with FSDP also on CPU processes (for tests of the FSDP path).

    accelerate (1.15) turns `distributed_type: FSDP` on only for GPU-like backends (state.py); on
    CPU processes it silently makes each one a separate single-process run, which then race on the
    same files. torch itself shards on CPU over gloo, so a launched CPU job with ACCELERATE_USE_FSDP
    gets the FSDP plugin here, and accelerate's own FSDP code does the rest (prepare, sharded
    checkpoints, the gathered final model)."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cpu = not torch.cuda.is_available()
    accelerator = Accelerator(
        mixed_precision="bf16" if bf16 else "no",
        log_with="tensorboard",
        project_dir=str(out),
        cpu=cpu,
        # the loop steps the schedule once per optimizer step itself;
        # accelerate would step it once per process
        step_scheduler_with_optimizer=False,
    )
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if cpu and fsdp and world > 1 and accelerator.distributed_type != DistributedType.FSDP:
        plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables the launcher set
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        accelerator.state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = plugin
    if accelerator.num_processes != world:
        raise UserError(
            f"launched as {world} processes but accelerate sees "
            f"{accelerator.num_processes}: check the accelerate config"
        )
    return accelerator


def _optimizer(args: argparse.Namespace, model):
    import torch

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if args.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise UserError(
                "--optimizer adamw8bit needs bitsandbytes (GPU): pip install bitsandbytes"
            ) from None
        return bnb.optim.AdamW8bit(groups, lr=args.lr, betas=(0.9, 0.95))
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95))


def fit(args: argparse.Namespace, out: Path, build: Callable[..., Data], tracker: str) -> bool:
    """Train `args.model` on what `build(tokenizer, num_processes)` returns; True when the run
    reached its last step (final/ saved), False when --stop-after-steps ended it early."""
    import torch
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    from agents.checkpoint import load

    cuda = torch.cuda.is_available()
    bf16 = args.precision == "bf16" or (args.precision == "auto" and cuda)
    accelerator = make_accelerator(bf16, out)
    set_seed(args.seed)
    model, tokenizer = load(args.model, trust_remote_code=args.trust_remote_code)
    data = build(tokenizer, accelerator.num_processes)
    accelerator.gradient_accumulation_steps = data.accumulation
    total = data.total_steps
    warmup = int(args.warmup if args.warmup >= 1 else args.warmup * total)

    for_training(model)
    if args.gradient_checkpointing:  # the method's name since transformers 5, and before it
        enable = getattr(model, "activation_checkpointing_enable", None)
        (enable or model.gradient_checkpointing_enable)()
    if args.compile:
        model = torch.compile(model)
    optimizer = _optimizer(args, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_at(s, total, warmup, args.lr, args.min_lr_ratio) / args.lr
    )
    generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(
        data.train,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=data.drop_last,
        collate_fn=data.collate,
        generator=generator,
    )
    val_loader = (
        DataLoader(data.val, batch_size=args.batch_size, collate_fn=data.collate)
        if len(data.val)
        else None
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "tokens": 0}
    if args.resume:
        state = _resume(accelerator, out)
    n_params = sum(p.numel() for p in accelerator.unwrap_model(model).parameters())
    device = torch.cuda.get_device_name() if cuda else "cpu"
    peak = peak_flops(args, device)
    config = {
        **vars(args),
        **data.config,
        "accumulation": data.accumulation,
        "total_steps": total,
        "warmup_steps": warmup,
        "params": n_params,
        "device": device,
        "peak_flops": peak,
        "processes": accelerator.num_processes,
        "distributed": str(accelerator.distributed_type),
        "bf16": bf16,
        "train_items": len(data.train),
        "val_items": len(data.val),
    }
    accelerator.init_trackers(
        tracker, config={k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}
    )
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG).write_text(json.dumps(config, indent=2))
    accelerator.print(
        f"{n_params / 1e6:.1f}M params on {device} x{accelerator.num_processes} "
        f"({config['distributed']}); {len(data.train)} training items; "
        f"{data.accumulation} micro-steps per step; {total} steps"
    )

    model.train()
    window_tokens, window_start, losses = 0, time.perf_counter(), []
    stop = min(total, args.stop_after_steps or total)
    while state["step"] < stop:
        # The shuffle depends on (seed, epoch) only, so a resumed run sees the same order.
        generator.manual_seed(args.seed + state["epoch"])
        skip = state["batch_in_epoch"]
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch in batches:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.grad_clip:
                    accelerator.clip_grad_norm_(model.parameters(), args.grad_clip)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            state["batch_in_epoch"] += 1
            losses.append(loss.detach().float())
            seen = _tokens(batch) * accelerator.num_processes
            window_tokens += seen
            state["tokens"] += seen
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            step = state["step"]
            if step % args.log_every == 0 or step == total:
                elapsed = time.perf_counter() - window_start
                tokens_per_s = window_tokens / elapsed
                mfu = (
                    6 * n_params * tokens_per_s / (peak * accelerator.num_processes)
                    if peak
                    else None
                )
                steps_done = args.log_every if step % args.log_every == 0 else step % args.log_every
                row = {
                    "step": step,
                    "total": total,
                    "loss": round(torch.stack(losses).mean().item(), 4),
                    "lr": scheduler.get_last_lr()[0],
                    "tokens": state["tokens"],
                    "tokens_per_s": round(tokens_per_s, 1),
                    "mfu": mfu and round(mfu, 4),
                    # at this window's speed
                    "eta_s": round((total - step) * elapsed / max(1, steps_done)),
                }
                log(accelerator, out, row)
                window_tokens, window_start, losses = 0, time.perf_counter(), []
            if val_loader is not None and (step % args.eval_every == 0 or step == total):
                val = evaluate_loss(model, val_loader, accelerator)
                log(accelerator, out, {"step": step, "val_loss": round(val, 4)})
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
        return False
    save_final(accelerator, model, tokenizer, out / FINAL)
    accelerator.end_training()
    accelerator.print(f"saved {out / FINAL}")
    return True


def _tokens(batch: dict) -> int:
    """Real tokens of a batch: padding (attention mask 0) does not count."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else batch["input_ids"].numel()


def _resume(accelerator, out: Path) -> dict:
    """Load the last checkpoint; the log keeps only what that checkpoint had seen, so a run killed
    after it logs the steps since then once, not twice."""
    last = checkpoints(out)[-1]
    accelerator.load_state(str(last))
    state = json.loads((last / "trainer_state.json").read_text())
    if accelerator.is_main_process and (out / TRAIN_METRICS).exists():
        rows = [
            json.loads(line)
            for line in (out / TRAIN_METRICS).read_text().splitlines()
            if line.strip()
        ]
        kept = "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= state["step"])
        (out / TRAIN_METRICS).write_text(kept)
    accelerator.print(f"resumed from {last} at step {state['step']}")
    return state


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


def log(accelerator, out: Path, row: dict) -> None:
    accelerator.log(
        {k: v for k, v in row.items() if k != "step" and v is not None}, step=row["step"]
    )
    if accelerator.is_main_process:
        accelerator.print(" ".join(f"{k}={v}" for k, v in row.items()))
        with open(out / TRAIN_METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")


def save(accelerator, out: Path, state: dict) -> None:
    """A checkpoint is complete or absent: written to a temporary folder, then renamed."""
    final = out / "checkpoints" / f"step-{state['step']:06d}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)  # an earlier save that a kill interrupted
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # every rank has written its shard before the rename
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()


def save_final(accelerator, model, tokenizer, final: Path) -> None:
    """The whole model (gathered from the shards under FSDP) as a normal transformers folder."""
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.config.use_cache = True  # generation from final/ wants its cache back
    unwrapped.save_pretrained(
        str(final),
        is_main_process=accelerator.is_main_process,
        save_function=accelerator.save,
        state_dict=accelerator.get_state_dict(model),
    )
    if accelerator.is_main_process:
        tokenizer.save_pretrained(str(final))
    accelerator.wait_for_everyone()
