"""Continual pretraining: `python -m train.cpt --corpus runs/finance --out ckpt/finance`.

Documents are packed into blocks (train/data.py) and trained by the shared loop (train/loop.py:
AdamW, warmup then cosine, accumulation up to --tokens-per-step, checkpoints and --resume, bf16 on
GPUs); multi-GPU and multi-node through `accelerate launch --config_file train/configs/fsdp.yaml -m
train.cpt ...` (docs/training.md). `--tokens N` trains on exactly N tokens of the corpus (counted
with the model's tokenizer, EOS separators included): a shorter corpus is refused unless `--epochs`
allows repeating it. train.ablate runs every arm through `train` here.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

from core.cli import run_command
from core.errors import UserError

# Re-exported: tests and benchmarks name them from here.
from train.loop import Data, add_flags, fit, for_training, lr_at, output_folder  # noqa: F401


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from core.cli import Parser, positive

    p = Parser(prog="python -m train.cpt", description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="corpus.jsonl ({'text': ...} per line)")
    p.add_argument(
        "--out",
        required=True,
        help="output folder: checkpoints/, final/, metrics.jsonl, tensorboard",
    )
    add_flags(p, batch_size=1, weight_decay=0.1)
    p.add_argument(
        "--seq-len", type=positive(int), help="block length (default 4096 on GPU, 512 on CPU)"
    )
    p.add_argument(
        "--tokens-per-step",
        type=positive(int),
        help="tokens per optimizer step; sets gradient accumulation (default one micro-batch)",
    )
    p.add_argument(
        "--tokens",
        type=positive(int),
        help="train on exactly this many corpus tokens (a multiple of the tokens per step)",
    )
    p.add_argument(
        "--epochs",
        type=positive(int),
        default=1,
        help="passes over the corpus; with --tokens, the most passes allowed to reach it",
    )
    p.add_argument(
        "--held-out",
        type=float,
        default=0.02,
        help="fraction of documents kept for validation loss",
    )
    p.add_argument("--validation", help="JSONL of text for validation loss instead of --held-out")
    p.add_argument(
        "--boundaries",
        action="store_true",
        help="position ids restart at each document (see train/data.py)",
    )
    p.add_argument(
        "--replay",
        help="real text JSONL mixed into training (off by default; the paper mixes none)",
    )
    p.add_argument(
        "--replay-ratio",
        type=float,
        default=0.0,
        help="fraction of training documents drawn from --replay",
    )
    args = p.parse_args(argv)
    if args.replay_ratio and not args.replay:
        raise UserError("--replay-ratio needs --replay FILE")
    if not 0 <= args.replay_ratio < 1 or not 0 <= args.held_out < 1:
        raise UserError("--replay-ratio and --held-out must be in [0, 1)")
    if args.tokens and args.max_steps:
        raise UserError("--tokens and --max-steps both set the length of the run: give one")
    return args


def training_texts(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from train.data import read_texts, split

    held_out = 0.0 if args.validation else args.held_out
    train, val = split(read_texts(args.corpus), held_out, args.seed)
    if args.validation:
        val = read_texts(args.validation, "--validation")
    if args.replay:
        real = read_texts(args.replay, "--replay")
        want = round(args.replay_ratio / (1 - args.replay_ratio) * len(train))
        train = train + random.Random(args.seed).sample(real, min(want, len(real)))
    return train, val


def seq_len_of(args: argparse.Namespace) -> int:
    import torch

    return args.seq_len or (4096 if torch.cuda.is_available() else 512)


def step_shape(args: argparse.Namespace, processes: int) -> tuple[int, int]:
    """(micro-steps per optimizer step, tokens per optimizer step) over all processes."""
    micro = args.batch_size * seq_len_of(args) * processes
    accumulation = max(1, math.ceil((args.tokens_per_step or micro) / micro))
    return accumulation, micro * accumulation


def check_budget(tokens: int, per_step: int, args: argparse.Namespace, processes: int) -> None:
    if tokens % per_step:
        low, high = tokens // per_step * per_step, (tokens // per_step + 1) * per_step
        raise UserError(
            f"--tokens {tokens} is not a multiple of the {per_step} tokens per step "
            f"(--seq-len {seq_len_of(args)} x --batch-size {args.batch_size} x "
            f"{processes} process(es) x accumulation): use {low or high} or {high}"
        )


def build(args: argparse.Namespace, train_texts: list[str], val_texts: list[str]):
    """The loop's data for these texts: the `Data` builder that train.loop.fit calls."""
    from train.data import budget_blocks, collate, pack

    def make(tokenizer, processes: int) -> Data:
        seq_len = seq_len_of(args)
        accumulation, per_step = step_shape(args, processes)
        extra = {"seq_len": seq_len, "tokens_per_step": per_step}
        if args.tokens:
            check_budget(args.tokens, per_step, args, processes)
            blocks, info = budget_blocks(
                train_texts,
                tokenizer,
                seq_len,
                args.tokens,
                args.epochs,
                args.seed,
                args.boundaries,
                corpus=args.corpus,
            )
            total = args.tokens // per_step
            extra.update(info)
        else:
            blocks = pack(train_texts, tokenizer, seq_len, args.boundaries)
            per_epoch = len(blocks) // (args.batch_size * processes) // accumulation
            if per_epoch == 0:
                raise UserError(
                    f"the corpus fills {len(blocks)} blocks of {seq_len}, fewer "
                    f"than one step ({per_step} tokens): lower --tokens-per-step "
                    "or --seq-len"
                )
            total = args.max_steps or per_epoch * args.epochs
        val = pack(val_texts, tokenizer, seq_len, required=False) if val_texts else []
        extra.update(train_blocks=len(blocks), val_blocks=len(val))
        return Data(blocks, val, collate, accumulation, total, config=extra)

    return make


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: train(parse_args(argv)))


def train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    with output_folder(out, args.resume):
        train_texts, val_texts = training_texts(args)
        fit(args, out, build(args, train_texts, val_texts), tracker="cpt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
