"""Supervised fine-tuning on an instruction set: `python -m train.sft --data runs/finance-instruct --out ckpt/sft`.

Each example is a chat (`messages`: the user's instruction, the assistant's response) rendered with the
model's chat template. The loss is on the response only: every token of the prompt (system prompt,
instruction, the assistant header) has label -100, so the model learns to answer, not to write
instructions. Only the last assistant turn of a multi-turn chat is trained. Examples are padded into
batches (no packing: packing would let a response attend to another example's prompt). AdamW,
linear warmup then cosine decay (train/cpt.py's schedule), fp32 on CPU and bf16 on a GPU; the
embedded model (`--model embedded`) is the SmolLM2 checkpoint converted the way train/cpt.py loads it.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

from core.cli import run_command
from core.errors import UserError
from core.jsonl import iter_jsonl, write_atomic
from core.rundir import INSTRUCTIONS, RunDir, is_run_file

IGNORE = -100  # the label that PyTorch's cross-entropy (and so every HF causal LM) skips


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from core.cli import Parser, positive

    p = Parser(prog="python -m train.sft", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="an instruction run directory, its instructions.jsonl, or a chat JSONL "
                   "export ('messages' per line)")
    p.add_argument("--model", default="embedded", help="'embedded', a local folder (e.g. a train.cpt final/), or a hub id")
    p.add_argument("--out", required=True, help="output folder: final/, metrics.jsonl, train_config.json")
    p.add_argument("--epochs", type=positive(int), default=1, help="passes over the data (default 1)")
    p.add_argument("--max-steps", type=positive(int), help="optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=positive(int), default=4)
    p.add_argument("--max-len", type=positive(int), default=1024, help="tokens per example; longer ones are cut from the end")
    p.add_argument("--lr", type=positive(float), default=2e-5)
    p.add_argument("--warmup", type=float, default=0.03, help="warmup steps, or a fraction of the steps if < 1")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--log-every", type=positive(int), default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub (off by default)")
    return p.parse_args(argv)


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
        if messages is None and isinstance(record, dict) and record.get("instruction") and record.get("response"):
            messages = [{"role": "user", "content": record["instruction"]}, {"role": "assistant", "content": record["response"]}]
        if not messages or messages[-1].get("role") != "assistant":
            raise UserError(f"{path}: line {number} has neither 'messages' ending in an assistant turn nor "
                            "'instruction' and 'response'")
        chats.append(messages)
    if not chats:
        raise UserError(f"{path}: no examples")
    return chats


def encode(messages: list[dict], tokenizer, max_len: int) -> dict | None:
    """input_ids and labels of one chat: the prompt (everything before the last assistant turn, with
    the assistant header) labelled -100, the response (and its end-of-turn tokens) labelled with itself.
    None when the cut at max_len leaves no response token."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):  # a template that rewrites earlier turns cannot be masked this way
        raise UserError("the chat template does not render the prompt as a prefix of the whole chat; cannot mask it")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
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
    return {"input_ids": torch.tensor([e["input_ids"] + [pad_id] * n for e, n in zip(examples, pad)]),
            "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * n for e, n in zip(examples, pad)]),
            "labels": torch.tensor([e["labels"] + [IGNORE] * n for e, n in zip(examples, pad)])}


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: train(parse_args(argv)))


def train(args: argparse.Namespace) -> int:
    import torch

    from agents.checkpoint import load
    from train.cpt import lr_at

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty; choose another --out")
    chats = read_chats(args.data)
    torch.manual_seed(args.seed)
    cuda = torch.cuda.is_available()
    model, tokenizer = load(args.model, dtype=torch.bfloat16 if cuda else None, trust_remote_code=args.trust_remote_code)
    if not tokenizer.chat_template:
        raise UserError(f"{args.model}: the tokenizer has no chat template")
    examples = [e for e in (encode(c, tokenizer, args.max_len) for c in chats) if e]
    if not examples:
        raise UserError(f"no example keeps a response token within --max-len {args.max_len}")
    device = "cuda" if cuda else "cpu"
    model.to(device).train()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    steps_per_epoch = math.ceil(len(examples) / args.batch_size)
    total = args.max_steps or args.epochs * steps_per_epoch
    warmup = int(args.warmup if args.warmup >= 1 else args.warmup * total)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, total, warmup, args.lr, 0.1) / args.lr)
    out.mkdir(parents=True, exist_ok=True)
    config = {**vars(args), "examples": len(examples), "dropped": len(chats) - len(examples), "total_steps": total,
              "response_tokens": sum(sum(label != IGNORE for label in e["labels"]) for e in examples),
              "prompt_tokens": sum(sum(label == IGNORE for label in e["labels"]) for e in examples), "device": device}
    write_atomic(out / "train_config.json", json.dumps(config, indent=2).encode())
    print(f"{len(examples)} examples ({config['response_tokens']} response tokens trained, {config['prompt_tokens']} "
          f"prompt tokens masked); {total} steps on {device}", file=sys.stderr)
    rng, step, started = random.Random(args.seed), 0, time.perf_counter()
    while step < total:
        order = rng.sample(range(len(examples)), len(examples))
        for start in range(0, len(order), args.batch_size):
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in order[start:start + args.batch_size]], pad_id).items()}
            loss = model(**batch).loss  # HF shifts the labels and skips -100: the response tokens only
            loss.backward()
            if args.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % args.log_every == 0 or step == total:
                seconds = time.perf_counter() - started
                row = {"step": step, "total": total, "loss": round(loss.item(), 4), "lr": scheduler.get_last_lr()[0],
                       "seconds": round(seconds, 1), "eta_s": round(seconds / step * (total - step))}
                print(" ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr)
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
            if step >= total:
                break
    final = out / "final"
    model.save_pretrained(str(final))
    tokenizer.save_pretrained(str(final))
    print(f"saved {final}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
