"""Supervised fine-tuning: `python -m train.sft --data runs/finance-instruct --out ckpt/sft`.

Each example is a chat (`messages`: the user's instruction, the assistant's response) rendered with
the model's chat template. The loss is on the response only: every token of the prompt (system
prompt, instruction, the assistant header) has label -100, so the model learns to answer, not to
write instructions. Only the last assistant turn of a multi-turn chat is trained. Examples are
padded into batches (no packing: packing would let a response attend to another example's prompt).
Training is train.cpt's loop (train/loop.py), with its flags: schedule, accumulation, checkpoints
and --resume, bf16 on GPUs, accelerate launch for several; the embedded model (`--model embedded`)
is the SmolLM2 checkpoint converted the way train/cpt.py loads it.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from functools import partial
from pathlib import Path

from agents.instruction import as_chat
from core.cli import run_command
from core.errors import UserError
from core.jsonl import iter_jsonl
from core.rundir import INSTRUCTIONS, RunDir, is_run_file
from train.loop import Data, add_flags, fit, output_folder

IGNORE = -100  # the label that PyTorch's cross-entropy (and so every HF causal LM) skips


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from core.cli import Parser, positive

    p = Parser(prog="python -m train.sft", description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        required=True,
        help="an instruction run directory, its "
        "instructions.jsonl, or a chat JSONL export ('messages' per line)",
    )
    p.add_argument(
        "--out", required=True, help="output folder: final/, metrics.jsonl, train_config.json"
    )
    add_flags(p, batch_size=4, weight_decay=0.0)
    p.add_argument(
        "--epochs", type=positive(int), default=1, help="passes over the data (default 1)"
    )
    p.add_argument(
        "--accumulation",
        type=positive(int),
        default=1,
        help="micro-batches per optimizer step (default 1)",
    )
    p.add_argument(
        "--max-len",
        type=positive(int),
        default=1024,
        help="tokens per example; longer ones are cut from the end",
    )
    p.add_argument(
        "--held-out",
        type=float,
        default=0.0,
        help="fraction of examples kept for validation loss (default none)",
    )
    args = p.parse_args(argv)
    if not 0 <= args.held_out < 1:
        raise UserError("--held-out must be in [0, 1)")
    return args


def read_chats(path: str | Path) -> list[list[dict]]:
    """Chats from an instruction run (instruction + response) or a chat export (`messages`)."""
    path = Path(path)
    if path.is_dir():
        path = RunDir(path, INSTRUCTIONS).records
    if not path.is_file():
        raise UserError(f"--data: {path} not found")
    chats = []
    for number, record in iter_jsonl(path, committed=is_run_file(path)):
        messages = record.get("messages") if isinstance(record, dict) else None
        pair = isinstance(record, dict) and record.get("instruction") and record.get("response")
        if messages is None and pair:
            messages = as_chat(record)["messages"]
        well_formed = isinstance(messages, list) and all(
            isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
        )
        if not (well_formed and messages and messages[-1].get("role") == "assistant"):
            raise UserError(
                f"{path}: line {number} has neither 'messages' ending in an assistant "
                "turn nor 'instruction' and 'response'"
            )
        chats.append(messages)
    if not chats:
        raise UserError(f"{path}: no examples")
    return chats


def encode(messages: list[dict], tokenizer, max_len: int) -> dict | None:
    """input_ids and labels of one chat: the prompt (everything before the last assistant turn,
    with the assistant header) labelled -100, the response (and its end-of-turn tokens) labelled
    with itself. None when the cut at max_len leaves no response token."""
    prompt = tokenizer.apply_chat_template(
        messages[:-1], add_generation_prompt=True, tokenize=False
    )
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):  # a template that rewrites earlier turns cannot be masked so
        raise UserError(
            "the chat template does not render the prompt as a prefix of the whole "
            "chat; cannot mask it"
        )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + response_ids)[:max_len]
    labels = ([IGNORE] * len(prompt_ids) + response_ids)[:max_len]
    if all(label == IGNORE for label in labels):
        return None
    return {"input_ids": ids, "labels": labels}


def collate(examples: list[dict], pad_id: int) -> dict:
    """Right-padded batch; padding is masked from attention and from the loss."""
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    pad = [width - len(e["input_ids"]) for e in examples]
    rows = list(zip(examples, pad))
    return {
        "input_ids": torch.tensor([e["input_ids"] + [pad_id] * n for e, n in rows]),
        "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * n for e, n in rows]),
        "labels": torch.tensor([e["labels"] + [IGNORE] * n for e, n in rows]),
    }


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: train(parse_args(argv)))


def build(args: argparse.Namespace, chats: list[list[dict]]):
    """The loop's data: encoded chats, padded per batch (no packing), the last batch kept."""

    def make(tokenizer, processes: int) -> Data:
        if not tokenizer.chat_template:
            raise UserError(f"{args.model}: the tokenizer has no chat template")
        examples = [e for e in (encode(c, tokenizer, args.max_len) for c in chats) if e]
        if not examples:
            raise UserError(f"no example keeps a response token within --max-len {args.max_len}")
        order = list(range(len(examples)))
        random.Random(args.seed).shuffle(order)
        n_val = round(args.held_out * len(examples)) if len(examples) > 1 else 0
        val = [examples[i] for i in sorted(order[:n_val])]
        train = [examples[i] for i in sorted(order[n_val:])]
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.eos_token_id
        batches = math.ceil(len(train) / (args.batch_size * processes))
        per_epoch = math.ceil(batches / args.accumulation)  # the epoch's last batch ends a step too
        masked = [sum(label == IGNORE for label in e["labels"]) for e in train]
        config = {
            "examples": len(examples),
            "dropped": len(chats) - len(examples),
            "response_tokens": sum(len(e["labels"]) for e in train) - sum(masked),
            "prompt_tokens": sum(masked),
        }
        print(
            f"{len(examples)} examples ({config['response_tokens']} response tokens trained, "
            f"{config['prompt_tokens']} prompt tokens masked)",
            file=sys.stderr,
        )
        return Data(
            train,
            val,
            partial(collate, pad_id=pad_id),
            args.accumulation,
            args.max_steps or args.epochs * per_epoch,
            drop_last=False,
            config=config,
        )

    return make


def train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    with output_folder(out, args.resume):
        chats = read_chats(args.data)
        fit(args, out, build(args, chats), tracker="sft")
    return 0


if __name__ == "__main__":
    sys.exit(main())
